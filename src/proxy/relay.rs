//! In-dialog routing (RFC 3261 §16.12 loose routing): requests inside a dialog go to
//! the other side without admission control. ACK for a 2xx is forwarded statelessly;
//! everything else (BYE, re-INVITE, UPDATE, INFO, PRACK...) through a server and a
//! client transaction whose responses are relayed back.

use std::net::SocketAddr;

use crate::dialog::{DialogFired, DialogState};
use crate::engine::{CallHandle, EndReason, Engine, Event, TxOwner};
use crate::proxy::originate::Originated;
use crate::slab::Key;
use crate::status::reason;
use crate::timer::Owner;
use crate::wire::{Message, Method, Splice, Transport};

impl Engine {
    /// A request with a To tag: find its dialog and relay it to the other side.
    pub(crate) fn on_in_dialog(
        &mut self,
        msg: &Message<'_>,
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
    ) {
        let method = msg.method();
        let found = match (msg.from_tag(), msg.to_tag()) {
            (Some(f), Some(t)) => self.dialogs.find(msg.call_id(), f, t),
            _ => None,
        };
        let dialog = found.and_then(|k| self.dialogs.get(k).map(|d| (k, d)));
        let Some((key, d)) = dialog
            .filter(|(_, d)| d.state != DialogState::Terminated || method == Some(Method::Ack))
        else {
            self.stats.no_dialog += 1;
            if method != Some(Method::Ack)
                && let Some(id) = self.new_server_tx(msg, remote, local, transport, TxOwner::Uas)
            {
                self.respond(id, Some(msg), 481, reason(481), b"");
            }
            return;
        };
        let from_caller = d.is_caller_tag(msg.from_tag().unwrap_or_default());
        let confirmed = d.state == DialogState::Confirmed;
        let to = if from_caller { &d.callee } else { &d.caller };
        let (dest, out_local, out_transport) = (to.addr, to.local, to.transport);
        if method == Some(Method::Ack) {
            self.forward_ack(key, msg, from_caller, dest, out_local, out_transport);
            return;
        }
        let Some(server) = self.new_server_tx(
            msg,
            remote,
            local,
            transport,
            TxOwner::RelayServer { client: None },
        ) else {
            return;
        };
        // Arm its timers now: a non-INVITE gets no 100 of ours, and if the other side
        // never answers, the transaction must still end (and may send a late 100).
        self.schedule_server(server);
        if msg.max_forwards() == Some(0) {
            self.stats.too_many_hops += 1;
            self.respond(server, Some(msg), 483, reason(483), b"");
            return;
        }
        let invite = method == Some(Method::Invite);
        if invite {
            self.respond(server, Some(msg), 100, reason(100), b"");
        }
        if let Some(e) = self.txs.servers.get_mut(server) {
            e.request.extend_from_slice(msg.as_bytes());
        }
        let cseq = msg.cseq().number;
        if let Some(d) = self.dialogs.get_mut(key) {
            let side = if from_caller {
                &mut d.caller
            } else {
                &mut d.callee
            };
            side.cseq = side.cseq.max(cseq);
        }
        let owner = TxOwner::RelayClient { server };
        let client = self.send_request(
            invite,
            dest,
            out_local,
            out_transport,
            owner,
            |engine, branch, out| {
                engine.write_forwarded(server, branch, None, false, Some(msg), out)
            },
        );
        match client {
            Some(c) => {
                self.stats.in_dialog_relayed += 1;
                if let Some(e) = self.txs.servers.get_mut(server) {
                    e.owner = TxOwner::RelayServer { client: Some(c) };
                }
                // Timer C for a relayed re-INVITE (RFC 3261 §16.6 step 11): once it has
                // rung, nothing else would end it if its final never came.
                let timer_c = self.now + self.cfg.proxy.ring_timeout;
                if let Some(e) = self.txs.clients.get_mut(c) {
                    e.tx.give_up_by(timer_c);
                }
                self.schedule_client(c);
            }
            None => {
                self.respond(server, None, 500, reason(500), b"");
                return;
            }
        }
        // A BYE in an early dialog does not end the call: the INVITE's final does.
        if method == Some(Method::Bye) && confirmed {
            self.end_dialog(
                key,
                EndReason::Hangup {
                    by_caller: from_caller,
                },
            );
        }
    }

    /// Forwards an ACK for a 2xx statelessly, with a branch derived from its own so its
    /// retransmissions carry the same one (RFC 3261 §16.11).
    fn forward_ack(
        &mut self,
        key: Key,
        msg: &Message<'_>,
        from_caller: bool,
        dest: SocketAddr,
        local: SocketAddr,
        transport: Transport,
    ) {
        if from_caller && let Some(d) = self.dialogs.get_mut(key) {
            d.on_ack();
            self.schedule_dialog(key);
        }
        let branch = self.txs.stateless_branch(msg.branch().unwrap_or_default());
        let mut via = crate::engine::SmallText::default();
        via.push(b"Via: SIP/2.0/")
            .push(crate::proxy::transport_token(transport).as_bytes())
            .push(b" ")
            .push_addr(local)
            .push(b";branch=")
            .push(branch.as_bytes());
        let mut splice = Splice::new(msg).insert_via(via.as_bytes());
        if self.is_our_route(msg, local) {
            match splice.remove_top_route() {
                Ok(s) => splice = s,
                Err(_) => return,
            }
        }
        let Ok(splice) = splice.decrement_max_forwards() else {
            // Max-Forwards exhausted: an ACK gets no response; drop it.
            self.stats.too_many_hops += 1;
            return;
        };
        let mut bytes = std::mem::take(&mut self.buf2);
        bytes.clear();
        splice.write_to(&mut bytes);
        self.out.send(dest, local, transport, &bytes);
        self.buf2 = bytes;
        self.stats.in_dialog_relayed += 1;
    }

    /// A response on a relayed in-dialog request: relayed back upstream (our own 100
    /// already went out for a re-INVITE).
    pub(crate) fn relay_response(&mut self, server: Key, msg: &Message<'_>) {
        if msg.status() == Some(100) {
            return;
        }
        let Some(status) = msg.status() else {
            return;
        };
        if status == 503 {
            // RFC 3261 §16.7 step 6: a downstream 503 is never relayed, in a dialog
            // either; it becomes the configured status (500 by default).
            let Some(e) = self.txs.servers.get(server).filter(|e| !e.tx.answered()) else {
                return;
            };
            let trunk = self.admission.classify(e.peer);
            let status = trunk
                .and_then(|t| self.cfg.admission.trunks.get(t))
                .and_then(|t| t.downstream_503_status)
                .unwrap_or(self.cfg.proxy.downstream_503_status);
            self.stats.downstream_503_rewritten += 1;
            self.respond(server, None, status, reason(status), b"");
            return;
        }
        let Ok(splice) = Splice::new(msg).remove_top_via() else {
            return;
        };
        let mut bytes = std::mem::take(&mut self.buf2);
        bytes.clear();
        splice.write_to(&mut bytes);
        self.respond_bytes(server, status, &bytes);
        self.buf2 = bytes;
    }

    /// The downstream leg of a relayed request timed out: a re-INVITE is answered 408;
    /// a non-INVITE is not (RFC 4320), its own Timer F ends the upstream side.
    pub(crate) fn relay_timeout(&mut self, server: Key) {
        if self
            .txs
            .servers
            .get(server)
            .is_some_and(|e| e.tx.invite && !e.tx.answered())
        {
            self.respond(server, None, 408, reason(408), b"");
        }
    }

    /// Ends an answered call: the dialog lingers terminated, the host hears of it.
    pub(crate) fn end_dialog(&mut self, key: Key, why: EndReason) {
        let linger = self.cfg.timers.t1x64();
        let now = self.now;
        let Some(d) = self.dialogs.get_mut(key) else {
            return;
        };
        if d.state == DialogState::Terminated {
            return;
        }
        let was_confirmed = d.state == DialogState::Confirmed;
        let since = d.answered.unwrap_or(d.started);
        let call = d.call;
        self.dialogs.terminate(key, now, linger);
        self.schedule_dialog(key);
        if was_confirmed {
            self.stats.calls_ended += 1;
        }
        self.out.event(Event::CallEnded {
            call: CallHandle(call),
            reason: why,
            duration: now.saturating_since(since),
        });
    }

    pub(crate) fn schedule_dialog(&mut self, key: Key) {
        let Some(d) = self.dialogs.get_mut(key) else {
            return;
        };
        if let Some(t) = d.next_wake()
            && d.scheduled != Some(t)
        {
            d.scheduled = Some(t);
            self.timers.schedule(t, Owner::Dialog(key));
        }
    }

    pub(crate) fn on_dialog_timer(&mut self, key: Key) {
        let now = self.now;
        let fired = match self.dialogs.get_mut(key) {
            Some(d) => d.on_timer(now),
            None => return,
        };
        match fired {
            DialogFired::Nothing => {}
            DialogFired::Remove => {
                self.dialogs.remove(key);
                return;
            }
            DialogFired::NoAck => self.end_dialog(key, EndReason::NoAck),
            DialogFired::MaxDuration => {
                if self.cfg.proxy.bye_on_max_duration {
                    self.hang_up_dialog(key);
                }
                self.end_dialog(key, EndReason::MaxDuration);
            }
        }
        self.schedule_dialog(key);
    }

    /// Sends BYE to both sides of a confirmed dialog.
    fn hang_up_dialog(&mut self, key: Key) {
        let Some(d) = self.dialogs.get(key) else {
            return;
        };
        let call_id = d.call_id().to_vec();
        let mut legs = Vec::with_capacity(2);
        for (to, from) in [(&d.callee, &d.caller), (&d.caller, &d.callee)] {
            let contact = d.contact(to);
            let fallback = format!("sip:{}", to.addr).into_bytes();
            let request_uri = if contact.is_empty() {
                fallback
            } else {
                contact.to_vec()
            };
            legs.push((
                request_uri,
                d.name_addr(from).to_vec(),
                d.name_addr(to).to_vec(),
                from.cseq.saturating_add(1),
                to.addr,
                to.local,
                to.transport,
            ));
        }
        for (request_uri, from, to, cseq, dest, local, transport) in legs {
            let req = Originated {
                method: "BYE",
                request_uri: &request_uri,
                from: &from,
                to: &to,
                call_id: &call_id,
                cseq,
            };
            self.send_bye(&req, dest, local, transport);
        }
    }
}
