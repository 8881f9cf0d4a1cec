//! The run's trace: every nemesis action and every workload outcome, stamped with virtual
//! time, in the order they happened. Its fingerprint (FNV-1a over the lines) is how the
//! determinism check compares two runs of one seed: if anything the simulation does
//! depended on something outside the seed, the fingerprints differ.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// FNV-1a, 64 bit: tiny, stable across Rust versions and platforms (unlike `DefaultHasher`,
/// whose output is not promised to stay the same).
pub fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, b| (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

#[derive(Debug)]
struct Inner {
    lines: Vec<String>,
    hash: u64,
    keep_lines: bool,
}

/// Cheap to clone; clones append to one trace.
#[derive(Clone, Debug)]
pub struct Trace {
    inner: Arc<Mutex<Inner>>,
    start: tokio::time::Instant,
    echo: bool,
}

impl Trace {
    /// `verbose` keeps every line (and prints it as it happens); otherwise only the hash.
    pub fn new(verbose: bool) -> Trace {
        let inner = Inner { lines: Vec::new(), hash: FNV_OFFSET, keep_lines: verbose };
        Trace { inner: Arc::new(Mutex::new(inner)), start: tokio::time::Instant::now(), echo: verbose }
    }

    /// Virtual time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn event(&self, what: impl AsRef<str>) {
        let line = format!("{:>9.3} {}", self.elapsed().as_secs_f64(), what.as_ref());
        if self.echo {
            println!("trace {line}");
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.hash = fnv1a(fnv1a(inner.hash, line.as_bytes()), b"\n");
        if inner.keep_lines {
            inner.lines.push(line);
        }
    }

    pub fn fingerprint(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).hash
    }

    pub fn lines(&self) -> Vec<String> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).lines.clone()
    }
}
