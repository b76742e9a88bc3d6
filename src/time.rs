//! Engine time: nanoseconds since the engine's epoch (the `now` it was created with).
//! The host passes `Instant`s in; nothing in the crate reads a clock.

use std::ops::{Add, Sub};
use std::time::{Duration, Instant};

/// A point in engine time. Eight bytes, ordered, cheap to store in every table entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Time(pub(crate) u64);

impl Time {
    pub(crate) const ZERO: Time = Time(0);

    pub(crate) fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(
            self.0
                .saturating_add(d.as_nanos().min(u64::MAX as u128) as u64),
        )
    }
}

impl Sub<Duration> for Time {
    type Output = Time;
    fn sub(self, d: Duration) -> Time {
        Time(
            self.0
                .saturating_sub(d.as_nanos().min(u64::MAX as u128) as u64),
        )
    }
}

/// Converts between host `Instant`s and engine [`Time`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub(crate) fn new(epoch: Instant) -> Self {
        Clock { epoch }
    }

    /// Engine time of `now`; instants before the epoch read as the epoch.
    pub(crate) fn at(&self, now: Instant) -> Time {
        Time(
            now.saturating_duration_since(self.epoch)
                .as_nanos()
                .min(u64::MAX as u128) as u64,
        )
    }

    pub(crate) fn instant(&self, t: Time) -> Instant {
        self.epoch + Duration::from_nanos(t.0)
    }
}
