//! RFC 3261 Table 4 timer values (with RFC 6026's L and M), derived from T1, T2, T4.

use std::time::Duration;

/// Transaction timer configuration. Every other timer is derived from these as RFC 3261
/// Table 4 and RFC 6026 define, except Timer C (the proxy's INVITE guard) and the UDP
/// floor for Timer D, which the RFC leaves to the implementation within bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate (default 500 ms).
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses
    /// (default 4 s).
    pub t2: Duration,
    /// Maximum time a message stays in the network (default 5 s).
    pub t4: Duration,
    /// Timer D on unreliable transports: how long a client INVITE transaction absorbs
    /// retransmitted final responses (RFC: at least 32 s; default 32 s).
    pub timer_d: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_d: Duration::from_secs(32),
        }
    }
}

impl Timers {
    /// 64·T1: Timers B, F, H, J (unreliable), L and M.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer A / E / G initial interval.
    pub fn initial_retransmit(&self) -> Duration {
        self.t1
    }

    /// Timer A's next interval: doubles without a cap (RFC 3261 §17.1.1.2).
    pub fn next_a(&self, current: Duration) -> Duration {
        current * 2
    }

    /// Timer E's and G's next interval: doubles, capped at T2.
    pub fn next_capped(&self, current: Duration) -> Duration {
        (current * 2).min(self.t2)
    }

    /// Timer D: zero on reliable transports.
    pub fn d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.timer_d
        }
    }

    /// Timer I (INVITE server, Confirmed): T4, zero on reliable transports.
    pub fn i(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { self.t4 }
    }

    /// Timer J (non-INVITE server, Completed): 64·T1, zero on reliable transports.
    pub fn j(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t1x64()
        }
    }

    /// Timer K (non-INVITE client, Completed): T4, zero on reliable transports.
    pub fn k(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { self.t4 }
    }

    /// When a non-INVITE client's Timer E has grown to T2 (RFC 4320 §4.1): before this, a
    /// server must not send 100 to a non-INVITE request over UDP.
    pub fn e_reaches_t2(&self) -> Duration {
        let mut at = Duration::ZERO;
        let mut interval = self.t1;
        while interval < self.t2 {
            at += interval;
            interval = self.next_capped(interval);
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_defaults_and_schedules() {
        let t = Timers::default();
        assert_eq!(t.t1x64(), Duration::from_secs(32));
        let mut g = t.initial_retransmit();
        let mut seen = vec![g];
        for _ in 0..5 {
            g = t.next_capped(g);
            seen.push(g);
        }
        let ms: Vec<u64> = seen.iter().map(|d| d.as_millis() as u64).collect();
        assert_eq!(ms, [500, 1000, 2000, 4000, 4000, 4000]);
        let mut a = t.initial_retransmit();
        let mut doubled = vec![];
        for _ in 0..6 {
            doubled.push(a.as_millis() as u64);
            a = t.next_a(a);
        }
        assert_eq!(doubled, [500, 1000, 2000, 4000, 8000, 16000]);
        assert_eq!(t.e_reaches_t2(), Duration::from_millis(3500));
        assert_eq!(t.d(false), Duration::from_secs(32));
        assert_eq!(
            (t.d(true), t.i(true), t.j(true), t.k(true)),
            (
                Duration::ZERO,
                Duration::ZERO,
                Duration::ZERO,
                Duration::ZERO
            )
        );
        assert_eq!((t.i(false), t.k(false)), (t.t4, t.t4));
    }
}
