//! The runtime's random number generator.

use std::convert::Infallible;

use madsim::rand::RngCore as _;

/// openraft's thread RNG, drawing from `madsim::rand::thread_rng()`.
///
/// Under madsim that is the simulation's seeded global RNG, so election timeouts (openraft's
/// main use of randomness) replay identically for a given seed; on plain tokio it is rand's
/// OS-seeded thread RNG. madsim is built on rand 0.8 while openraft-rt requires rand 0.10's
/// `Rng`, hence this adapter.
///
/// It holds no state and looks the generator up on every draw, so it works unchanged in both
/// builds (the two generator types differ) and never outlives the simulation it came from.
#[derive(Debug, Default, Clone, Copy)]
pub struct MadsimRng(());

impl MadsimRng {
    /// An adapter over the current thread's (or simulation's) generator.
    pub fn new() -> Self {
        Self(())
    }
}

impl rand::TryRng for MadsimRng {
    type Error = Infallible;

    #[inline]
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(madsim::rand::thread_rng().next_u32())
    }

    #[inline]
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(madsim::rand::thread_rng().next_u64())
    }

    #[inline]
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        madsim::rand::thread_rng().fill_bytes(dst);
        Ok(())
    }
}

/// `bytes` random bytes as lowercase hex, from the same generator (so a simulated run
/// draws the same values for the same seed). For identifiers such as a cluster id.
pub fn random_hex(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    madsim::rand::thread_rng().fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}
