//! Client transactions (RFC 3261 §17.1 with RFC 6026): the state machines for requests
//! the engine sends downstream. They retransmit over UDP (Timer A doubling without a
//! cap, Timer E capped at T2), give up on B/F, acknowledge non-2xx INVITE finals
//! themselves, and absorb retransmitted finals.

use std::time::Duration;

use super::Timers;
use crate::time::Time;

/// Client transaction states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientState {
    /// INVITE sent, nothing heard (Timer A retransmits, Timer B gives up).
    Calling,
    /// Non-INVITE sent, nothing heard (Timer E retransmits, Timer F gives up).
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived (non-2xx for INVITE); retransmitted finals are absorbed
    /// (INVITE: each gets the ACK again) until Timer D / K.
    Completed,
    /// INVITE only (RFC 6026): a 2xx arrived; further 2xx go to the transaction user
    /// until Timer M.
    Accepted,
}

/// What a response means for the transaction user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientOutcome {
    /// A new response for the transaction user.
    Deliver,
    /// The first non-2xx final to an INVITE: deliver it, and build and send the ACK
    /// (then store it with [`ClientTx::set_ack`]).
    DeliverAndAck,
    /// A retransmitted final: absorbed (INVITE: resend the stored ACK).
    Absorbed,
    /// A 2xx retransmission in Accepted: the transaction user relays it (RFC 6026).
    Deliver2xxRetransmission,
}

/// What a timer firing asks of the engine.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClientFired<'a> {
    Nothing,
    /// Resend the request (Timer A / E).
    Retransmit(&'a [u8]),
    /// Timer B / F: no final response in time. The transaction is over.
    Timeout,
    /// Timer D / K / M ran out: the transaction is over.
    Terminated,
}

#[derive(Debug)]
pub(crate) struct ClientTx {
    pub(crate) invite: bool,
    pub(crate) state: ClientState,
    reliable: bool,
    /// The request bytes as sent (for retransmission and for building CANCEL/ACK).
    request: Vec<u8>,
    /// The ACK sent for a non-2xx final, resent for each retransmitted final.
    ack: Vec<u8>,
    /// Highest status seen.
    pub(crate) status: u16,
    interval: Duration,
    retransmit_at: Option<Time>,
    timeout_at: Option<Time>,
    end_at: Option<Time>,
    /// Set when the transaction user gave up on an INVITE (CANCEL sent or due): the
    /// transaction times out then if no final came. Provisionals do not clear it.
    give_up_at: Option<Time>,
}

impl ClientTx {
    /// A transaction for `request`, which the caller sends now.
    pub(crate) fn new(
        now: Time,
        timers: &Timers,
        invite: bool,
        reliable: bool,
        request: Vec<u8>,
    ) -> Self {
        let interval = timers.initial_retransmit();
        ClientTx {
            invite,
            state: if invite {
                ClientState::Calling
            } else {
                ClientState::Trying
            },
            reliable,
            request,
            ack: Vec::new(),
            status: 0,
            interval,
            retransmit_at: (!reliable).then(|| now + interval),
            timeout_at: Some(now + timers.t1x64()),
            end_at: None,
            give_up_at: None,
        }
    }

    /// The transaction user no longer wants this INVITE (it is being cancelled): if no
    /// final response arrives within 64·T1, the transaction times out (RFC 3261 §9.1),
    /// whatever provisionals arrive meanwhile. Without this an INVITE in Proceeding,
    /// which has no timer of its own, would wait forever for a final.
    pub(crate) fn abandon(&mut self, now: Time, timers: &Timers) {
        self.give_up_by(now + timers.t1x64());
    }

    /// An INVITE times out at `at` unless a final comes first, whatever provisionals
    /// arrive meanwhile (the earliest such deadline holds). For INVITEs nothing else
    /// guards once in Proceeding (a proxy's Timer C).
    pub(crate) fn give_up_by(&mut self, at: Time) {
        if self.invite && !self.finished() {
            self.give_up_at = Some(self.give_up_at.map_or(at, |t| t.min(at)));
        }
    }

    pub(crate) fn request(&self) -> &[u8] {
        &self.request
    }

    /// Stores the request bytes (sent by the caller right after creating the
    /// transaction, once the branch they carry is known).
    pub(crate) fn set_request(&mut self, request: Vec<u8>) {
        self.request = request;
    }

    pub(crate) fn ack(&self) -> &[u8] {
        &self.ack
    }

    pub(crate) fn set_ack(&mut self, ack: &[u8]) {
        self.ack.clear();
        self.ack.extend_from_slice(ack);
    }

    /// Whether a final response has arrived.
    pub(crate) fn finished(&self) -> bool {
        self.status >= 200
    }

    /// A response matched this transaction.
    pub(crate) fn on_response(&mut self, now: Time, timers: &Timers, status: u16) -> ClientOutcome {
        use ClientState::*;
        match (self.state, status) {
            (Calling | Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                self.status = self.status.max(status);
                if self.invite {
                    // Timer A and B stop in Proceeding; the proxy's Timer C guards it.
                    self.retransmit_at = None;
                    self.timeout_at = None;
                } else if !self.reliable {
                    // Timer E continues at T2 in Proceeding (RFC 3261 §17.1.2.2).
                    self.interval = timers.t2;
                    self.retransmit_at = Some(now + self.interval);
                }
                ClientOutcome::Deliver
            }
            (Calling | Proceeding, 200..=299) if self.invite => {
                self.state = Accepted;
                self.status = status;
                self.retransmit_at = None;
                self.timeout_at = None;
                self.end_at = Some(now + timers.t1x64()); // Timer M
                self.give_up_at = None;
                ClientOutcome::Deliver
            }
            (Calling | Proceeding, _) if self.invite => {
                self.state = Completed;
                self.status = status;
                self.retransmit_at = None;
                self.timeout_at = None;
                self.end_at = Some(now + timers.d(self.reliable)); // Timer D
                self.give_up_at = None;
                ClientOutcome::DeliverAndAck
            }
            (Trying | Proceeding, _) => {
                self.state = Completed;
                self.status = status;
                self.retransmit_at = None;
                self.timeout_at = None;
                self.end_at = Some(now + timers.k(self.reliable)); // Timer K
                ClientOutcome::Deliver
            }
            (Accepted, 200..=299) => ClientOutcome::Deliver2xxRetransmission,
            // Completed absorbs finals (and late provisionals); Accepted absorbs the rest.
            _ => ClientOutcome::Absorbed,
        }
    }

    /// The earliest time this transaction needs [`Self::on_timer`].
    pub(crate) fn next_wake(&self) -> Option<Time> {
        [
            self.retransmit_at,
            self.timeout_at,
            self.end_at,
            self.give_up_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs whatever is due at `now`, one thing per call (call again until `Nothing`).
    pub(crate) fn on_timer(&mut self, now: Time, timers: &Timers) -> ClientFired<'_> {
        if self.end_at.is_some_and(|t| t <= now) {
            self.end_at = None;
            return ClientFired::Terminated;
        }
        if self.timeout_at.is_some_and(|t| t <= now) || self.give_up_at.is_some_and(|t| t <= now) {
            self.timeout_at = None;
            self.give_up_at = None;
            self.retransmit_at = None;
            return ClientFired::Timeout;
        }
        if let Some(t) = self.retransmit_at
            && t <= now
        {
            self.interval = match (self.invite, self.state) {
                (true, _) => timers.next_a(self.interval),
                (false, ClientState::Proceeding) => timers.t2,
                (false, _) => timers.next_capped(self.interval),
            };
            self.retransmit_at = Some(now + self.interval);
            return ClientFired::Retransmit(&self.request);
        }
        ClientFired::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Time {
        Time::ZERO + Duration::from_millis(ms)
    }

    fn retransmit_times(tx: &mut ClientTx, t: &Timers, until: Time) -> (Vec<u64>, Option<u64>) {
        let mut sent = vec![];
        let mut timeout = None;
        while let Some(w) = tx.next_wake() {
            if w > until {
                break;
            }
            match tx.on_timer(w, t) {
                ClientFired::Retransmit(_) => sent.push(w.0 / 1_000_000),
                ClientFired::Timeout => {
                    timeout = Some(w.0 / 1_000_000);
                    break;
                }
                _ => {}
            }
        }
        (sent, timeout)
    }

    #[test]
    fn invite_timer_a_doubles_uncapped_and_b_times_out() {
        let t = Timers::default();
        let mut tx = ClientTx::new(at(0), &t, true, false, b"INVITE".to_vec());
        let (sent, timeout) = retransmit_times(&mut tx, &t, at(40_000));
        assert_eq!(sent, [500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(timeout, Some(32_000));
    }

    #[test]
    fn non_invite_timer_e_caps_at_t2_and_f_times_out() {
        let t = Timers::default();
        let mut tx = ClientTx::new(at(0), &t, false, false, b"BYE".to_vec());
        let (sent, timeout) = retransmit_times(&mut tx, &t, at(40_000));
        assert_eq!(
            sent,
            [
                500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
            ]
        );
        assert_eq!(timeout, Some(32_000));
    }

    #[test]
    fn non_invite_proceeding_retransmits_every_t2() {
        let t = Timers::default();
        let mut tx = ClientTx::new(at(0), &t, false, false, b"BYE".to_vec());
        assert_eq!(tx.on_response(at(100), &t, 100), ClientOutcome::Deliver);
        let (sent, timeout) = retransmit_times(&mut tx, &t, at(40_000));
        assert_eq!(sent, [4100, 8100, 12100, 16100, 20100, 24100, 28100]);
        assert_eq!(timeout, Some(32_000), "Timer F keeps running in Proceeding");
    }

    #[test]
    fn invite_provisional_stops_a_and_b() {
        let t = Timers::default();
        let mut tx = ClientTx::new(at(0), &t, true, false, b"INVITE".to_vec());
        assert_eq!(tx.on_response(at(200), &t, 180), ClientOutcome::Deliver);
        assert_eq!(tx.next_wake(), None);
    }

    #[test]
    fn invite_non_2xx_is_acked_once_and_retransmissions_absorbed_until_d() {
        let t = Timers::default();
        let mut tx = ClientTx::new(at(0), &t, true, false, b"INVITE".to_vec());
        assert_eq!(
            tx.on_response(at(10), &t, 486),
            ClientOutcome::DeliverAndAck
        );
        tx.set_ack(b"ACK");
        assert_eq!(tx.on_response(at(600), &t, 486), ClientOutcome::Absorbed);
        assert_eq!(tx.ack(), b"ACK");
        assert_eq!(tx.next_wake(), Some(at(10) + t.timer_d));
        assert_eq!(tx.on_timer(at(10) + t.timer_d, &t), ClientFired::Terminated);
        let mut rel = ClientTx::new(at(0), &t, true, true, b"INVITE".to_vec());
        assert_eq!(
            rel.next_wake(),
            Some(at(0) + t.t1x64()),
            "no Timer A on TCP"
        );
        rel.on_response(at(10), &t, 404);
        assert_eq!(rel.next_wake(), Some(at(10)), "Timer D is zero on TCP");
    }

    #[test]
    fn invite_2xx_accepted_passes_retransmissions_until_m() {
        let t = Timers::default();
        let mut tx = ClientTx::new(at(0), &t, true, false, b"INVITE".to_vec());
        assert_eq!(tx.on_response(at(10), &t, 200), ClientOutcome::Deliver);
        assert_eq!(tx.state, ClientState::Accepted);
        assert_eq!(
            tx.on_response(at(500), &t, 200),
            ClientOutcome::Deliver2xxRetransmission
        );
        assert_eq!(tx.on_response(at(600), &t, 180), ClientOutcome::Absorbed);
        assert_eq!(tx.next_wake(), Some(at(10) + t.t1x64()));
    }

    #[test]
    fn an_abandoned_invite_times_out_even_while_provisionals_keep_coming() {
        let t = Timers::default();
        let mut tx = ClientTx::new(at(0), &t, true, false, b"INVITE".to_vec());
        tx.on_response(at(100), &t, 180);
        assert_eq!(tx.next_wake(), None, "Proceeding alone has no timer");
        tx.abandon(at(1_000), &t);
        assert_eq!(tx.next_wake(), Some(at(1_000) + t.t1x64()));
        tx.on_response(at(2_000), &t, 183);
        tx.abandon(at(3_000), &t);
        assert_eq!(
            tx.next_wake(),
            Some(at(1_000) + t.t1x64()),
            "kept, not pushed"
        );
        assert_eq!(tx.on_timer(at(1_000) + t.t1x64(), &t), ClientFired::Timeout);
        assert_eq!(tx.next_wake(), None);
        // A final in time clears it; a finished transaction is not abandoned.
        let mut tx = ClientTx::new(at(0), &t, true, false, b"INVITE".to_vec());
        tx.abandon(at(0), &t);
        tx.on_response(at(10), &t, 487);
        assert_eq!(tx.next_wake(), Some(at(10) + t.timer_d), "Timer D only");
        tx.abandon(at(20), &t);
        assert_eq!(tx.next_wake(), Some(at(10) + t.timer_d));
    }

    #[test]
    fn non_invite_final_completes_and_absorbs_until_k() {
        let t = Timers::default();
        let mut tx = ClientTx::new(at(0), &t, false, false, b"OPTIONS".to_vec());
        assert_eq!(tx.on_response(at(20), &t, 200), ClientOutcome::Deliver);
        assert_eq!(tx.on_response(at(30), &t, 200), ClientOutcome::Absorbed);
        assert_eq!(tx.next_wake(), Some(at(20) + t.t4));
    }
}
