//! The runtime's clock instant.

use std::ops::Add;
use std::ops::AddAssign;
use std::ops::Sub;
use std::ops::SubAssign;
use std::time::Duration;

/// A point on the runtime's monotonic clock.
///
/// A newtype is needed because openraft's `Instant` trait is foreign and real tokio's
/// `Instant` is too; wrapping `tokio::time::Instant` (which madsim-tokio turns into the
/// simulated `std::time::Instant`) gives one type that follows simulated time under madsim.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Ord, PartialOrd, Hash)]
pub struct TidemarkInstant(tokio::time::Instant);

impl TidemarkInstant {
    /// The wrapped runtime instant, for handing to `tokio::time` APIs directly.
    pub fn into_inner(self) -> tokio::time::Instant {
        self.0
    }
}

impl From<tokio::time::Instant> for TidemarkInstant {
    fn from(instant: tokio::time::Instant) -> Self {
        Self(instant)
    }
}

impl Add<Duration> for TidemarkInstant {
    type Output = Self;

    #[inline]
    fn add(self, rhs: Duration) -> Self {
        Self(self.0 + rhs)
    }
}

impl AddAssign<Duration> for TidemarkInstant {
    #[inline]
    fn add_assign(&mut self, rhs: Duration) {
        self.0 += rhs;
    }
}

impl Sub<Duration> for TidemarkInstant {
    type Output = Self;

    #[inline]
    fn sub(self, rhs: Duration) -> Self {
        Self(self.0 - rhs)
    }
}

impl Sub<Self> for TidemarkInstant {
    type Output = Duration;

    /// Saturates at zero instead of panicking: std only promises saturation "currently".
    #[inline]
    fn sub(self, rhs: Self) -> Duration {
        self.0.saturating_duration_since(rhs.0)
    }
}

impl SubAssign<Duration> for TidemarkInstant {
    #[inline]
    fn sub_assign(&mut self, rhs: Duration) {
        self.0 -= rhs;
    }
}

impl openraft::Instant for TidemarkInstant {
    #[inline]
    fn now() -> Self {
        Self(tokio::time::Instant::now())
    }
}
