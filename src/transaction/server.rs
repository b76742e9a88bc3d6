//! Server transactions (RFC 3261 §17.2 with RFC 6026): the state machines that answer a
//! request that arrived, absorb its retransmissions from the cached last response, and
//! retransmit INVITE finals over UDP until the ACK comes.

use std::time::Duration;

use super::Timers;
use crate::time::Time;

/// Server transaction states. Non-INVITE transactions use Trying, Proceeding,
/// Completed; INVITE transactions use Proceeding, Completed, Confirmed and (after a
/// 2xx, RFC 6026) Accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServerState {
    /// Non-INVITE, nothing sent yet.
    Trying,
    /// A provisional response was sent (INVITE starts here: 100 goes out at once).
    Proceeding,
    /// A final response was sent; retransmissions of the request get it again.
    Completed,
    /// INVITE only: the ACK for a non-2xx final arrived; absorbing stray ACKs.
    Confirmed,
    /// INVITE only (RFC 6026): a 2xx was sent; request retransmissions are absorbed and
    /// further 2xx (relayed retransmissions) may still be sent.
    Accepted,
}

/// Why a server transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ServerEnd {
    /// Its last timer (I, J, L) ran out.
    Done,
    /// Timer H: the ACK for a non-2xx final never came.
    NoAck,
}

/// What a timer firing asks of the engine.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ServerFired<'a> {
    /// Nothing due.
    Nothing,
    /// Resend these bytes (Timer G).
    Retransmit(&'a [u8]),
    /// The transaction is over; remove it.
    Terminated(ServerEnd),
    /// The transaction user never answered within the transaction's lifetime: the
    /// engine must answer now (it is still Trying/Proceeding).
    Unanswered,
    /// RFC 4320: a non-INVITE request has gone unanswered long enough that a 100 may be
    /// sent to stop the client's retransmissions.
    MaySend100,
}

/// Why the transaction user could not send a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RespondError {
    /// A final response was already sent (only 2xx retransmissions may follow a 2xx).
    FinalAlreadySent,
}

#[derive(Debug)]
pub(crate) struct ServerTx {
    pub(crate) invite: bool,
    pub(crate) state: ServerState,
    reliable: bool,
    /// Bytes of the last response sent: what a request retransmission gets.
    response: Vec<u8>,
    /// Status of the last response sent (0 before any).
    pub(crate) status: u16,
    interval: Duration,
    retransmit_at: Option<Time>,
    end_at: Option<Time>,
    /// Deadline for the transaction user to answer (Trying/Proceeding).
    answer_by: Option<Time>,
    may_100_at: Option<Time>,
}

impl ServerTx {
    /// A new INVITE transaction. The caller sends 100 Trying through [`Self::respond`]
    /// at once (RFC 3261 §17.2.1); `lifetime` bounds how long the transaction user may
    /// take to answer.
    pub(crate) fn invite(now: Time, reliable: bool, lifetime: Duration) -> Self {
        ServerTx {
            invite: true,
            state: ServerState::Proceeding,
            reliable,
            response: Vec::new(),
            status: 0,
            interval: Duration::ZERO,
            retransmit_at: None,
            end_at: None,
            answer_by: Some(now + lifetime),
            may_100_at: None,
        }
    }

    /// A new non-INVITE transaction.
    pub(crate) fn non_invite(now: Time, reliable: bool, timers: &Timers) -> Self {
        ServerTx {
            invite: false,
            state: ServerState::Trying,
            reliable,
            response: Vec::new(),
            status: 0,
            interval: Duration::ZERO,
            retransmit_at: None,
            end_at: None,
            // The client gives up at Timer F; answer before then or not at all.
            answer_by: Some(now + timers.t1x64()),
            may_100_at: (!reliable).then(|| now + timers.e_reaches_t2()),
        }
    }

    /// Whether a final response has been sent.
    pub(crate) fn answered(&self) -> bool {
        self.status >= 200
    }

    /// Records that `bytes` (a response with `status`) is being sent and moves the state
    /// machine. The caller queues the bytes only on `Ok`.
    pub(crate) fn respond(
        &mut self,
        now: Time,
        timers: &Timers,
        status: u16,
        bytes: &[u8],
    ) -> Result<(), RespondError> {
        match self.state {
            ServerState::Completed | ServerState::Confirmed => {
                return Err(RespondError::FinalAlreadySent);
            }
            ServerState::Accepted if !(200..300).contains(&status) => {
                return Err(RespondError::FinalAlreadySent);
            }
            ServerState::Accepted => {
                // A relayed 2xx retransmission: sent, state unchanged (RFC 6026 §8.6).
                return Ok(());
            }
            ServerState::Trying | ServerState::Proceeding => {}
        }
        self.response.clear();
        self.response.extend_from_slice(bytes);
        self.status = status;
        if status < 200 {
            self.state = ServerState::Proceeding;
            return Ok(());
        }
        self.answer_by = None;
        self.may_100_at = None;
        if self.invite && status < 300 {
            self.state = ServerState::Accepted;
            self.end_at = Some(now + timers.t1x64()); // Timer L
        } else if self.invite {
            self.state = ServerState::Completed;
            if !self.reliable {
                self.interval = timers.initial_retransmit();
                self.retransmit_at = Some(now + self.interval); // Timer G
            }
            self.end_at = Some(now + timers.t1x64()); // Timer H
        } else {
            self.state = ServerState::Completed;
            self.end_at = Some(now + timers.j(self.reliable)); // Timer J
        }
        Ok(())
    }

    /// A retransmission of the request arrived: the bytes to resend, if any. Nothing
    /// is allocated; the caller copies the slice into the transmit queue.
    pub(crate) fn on_retransmission(&self) -> Option<&[u8]> {
        match self.state {
            // An INVITE in Proceeding has at least the 100; a non-INVITE in Proceeding
            // has its provisional; Completed has its final.
            ServerState::Proceeding | ServerState::Completed if !self.response.is_empty() => {
                Some(&self.response)
            }
            _ => None,
        }
    }

    /// An ACK matched this INVITE transaction. Returns true when the transaction
    /// absorbed it (the ACK for our non-2xx final); false when it is not ours to absorb
    /// (an ACK for a 2xx goes end to end).
    pub(crate) fn on_ack(&mut self, now: Time, timers: &Timers) -> bool {
        match self.state {
            ServerState::Completed => {
                self.state = ServerState::Confirmed;
                self.retransmit_at = None;
                self.end_at = Some(now + timers.i(self.reliable)); // Timer I
                true
            }
            ServerState::Confirmed => true,
            _ => false,
        }
    }

    /// The earliest time this transaction needs [`Self::on_timer`].
    pub(crate) fn next_wake(&self) -> Option<Time> {
        [
            self.retransmit_at,
            self.end_at,
            self.answer_by,
            self.may_100_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs whatever is due at `now`, one thing per call (call again until `Nothing`).
    pub(crate) fn on_timer(&mut self, now: Time, timers: &Timers) -> ServerFired<'_> {
        if self.end_at.is_some_and(|t| t <= now) {
            self.end_at = None;
            self.retransmit_at = None;
            let end = if self.state == ServerState::Completed && self.invite {
                ServerEnd::NoAck
            } else {
                ServerEnd::Done
            };
            return ServerFired::Terminated(end);
        }
        if self.answer_by.is_some_and(|t| t <= now) {
            self.answer_by = None;
            self.may_100_at = None;
            return ServerFired::Unanswered;
        }
        if self.may_100_at.is_some_and(|t| t <= now) {
            self.may_100_at = None;
            return if self.state == ServerState::Trying {
                ServerFired::MaySend100
            } else {
                ServerFired::Nothing
            };
        }
        if let Some(t) = self.retransmit_at
            && t <= now
        {
            self.interval = timers.next_capped(self.interval);
            self.retransmit_at = Some(now + self.interval);
            return ServerFired::Retransmit(&self.response);
        }
        ServerFired::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn at(n: u64) -> Time {
        Time::ZERO + ms(n)
    }

    #[test]
    fn invite_non_2xx_retransmits_on_g_until_ack_then_waits_i() {
        let t = Timers::default();
        let mut tx = ServerTx::invite(at(0), false, Duration::from_secs(200));
        tx.respond(at(0), &t, 100, b"100").unwrap();
        assert_eq!(tx.on_retransmission(), Some(&b"100"[..]));
        tx.respond(at(10), &t, 486, b"486").unwrap();
        assert_eq!(tx.state, ServerState::Completed);
        assert_eq!(
            tx.respond(at(11), &t, 200, b"200"),
            Err(RespondError::FinalAlreadySent)
        );
        let mut fired = vec![];
        let mut now = at(10);
        while let Some(w) = tx.next_wake() {
            if w > at(10) + ms(16_000) {
                break;
            }
            now = w;
            if let ServerFired::Retransmit(b) = tx.on_timer(now, &t) {
                assert_eq!(b, b"486");
                fired.push(now.0 / 1_000_000 - 10);
            }
        }
        assert_eq!(fired, [500, 1500, 3500, 7500, 11500, 15500]);
        assert!(tx.on_ack(now, &t));
        assert_eq!(tx.state, ServerState::Confirmed);
        assert!(tx.on_ack(now, &t), "stray ACKs are absorbed too");
        assert_eq!(tx.next_wake(), Some(now + t.t4));
        assert_eq!(
            tx.on_timer(now + t.t4, &t),
            ServerFired::Terminated(ServerEnd::Done)
        );
    }

    #[test]
    fn invite_without_ack_ends_on_h() {
        let t = Timers::default();
        let mut tx = ServerTx::invite(at(0), false, Duration::from_secs(200));
        tx.respond(at(0), &t, 503, b"503").unwrap();
        let mut now;
        loop {
            now = tx.next_wake().unwrap();
            match tx.on_timer(now, &t) {
                ServerFired::Terminated(end) => {
                    assert_eq!(end, ServerEnd::NoAck);
                    break;
                }
                ServerFired::Retransmit(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(now, at(0) + t.t1x64());
    }

    #[test]
    fn invite_2xx_enters_accepted_absorbs_and_relays_2xx_until_l() {
        let t = Timers::default();
        let mut tx = ServerTx::invite(at(0), false, Duration::from_secs(200));
        tx.respond(at(0), &t, 200, b"200").unwrap();
        assert_eq!(tx.state, ServerState::Accepted);
        assert_eq!(tx.on_retransmission(), None, "RFC 6026: absorbed");
        assert!(
            !tx.on_ack(at(1), &t),
            "ACK for 2xx is not the transaction's"
        );
        assert_eq!(tx.respond(at(2), &t, 200, b"200"), Ok(()));
        assert_eq!(
            tx.respond(at(2), &t, 487, b"487"),
            Err(RespondError::FinalAlreadySent)
        );
        assert_eq!(tx.next_wake(), Some(at(0) + t.t1x64()));
    }

    #[test]
    fn reliable_transport_has_no_retransmissions_and_zero_i() {
        let t = Timers::default();
        let mut tx = ServerTx::invite(at(0), true, Duration::from_secs(200));
        tx.respond(at(0), &t, 404, b"404").unwrap();
        assert_eq!(tx.next_wake(), Some(at(0) + t.t1x64()));
        assert!(tx.on_ack(at(5), &t));
        assert_eq!(tx.next_wake(), Some(at(5)));
    }

    #[test]
    fn non_invite_answers_from_cache_and_ends_on_j() {
        let t = Timers::default();
        let mut tx = ServerTx::non_invite(at(0), false, &t);
        assert_eq!(tx.on_retransmission(), None, "Trying absorbs silently");
        tx.respond(at(1), &t, 200, b"200").unwrap();
        assert_eq!(tx.on_retransmission(), Some(&b"200"[..]));
        assert_eq!(tx.next_wake(), Some(at(1) + t.t1x64()));
        let mut rel = ServerTx::non_invite(at(0), true, &t);
        rel.respond(at(1), &t, 200, b"200").unwrap();
        assert_eq!(
            rel.next_wake(),
            Some(at(1)),
            "Timer J is zero on reliable transports"
        );
    }

    #[test]
    fn non_invite_may_send_100_only_after_e_reaches_t2_and_unanswered_fires() {
        let t = Timers::default();
        let mut tx = ServerTx::non_invite(at(0), false, &t);
        assert_eq!(tx.next_wake(), Some(at(3500)));
        assert_eq!(tx.on_timer(at(3499), &t), ServerFired::Nothing);
        assert_eq!(tx.on_timer(at(3500), &t), ServerFired::MaySend100);
        assert_eq!(tx.next_wake(), Some(at(0) + t.t1x64()));
        assert_eq!(tx.on_timer(at(0) + t.t1x64(), &t), ServerFired::Unanswered);
    }
}
