//! Requests the proxy sends on its own behalf: the ACK and BYE that end an answer that
//! arrived after the caller was already given a final, and the BYEs that end a call at
//! its maximum duration. Built from values the dialog copied byte-for-byte, so nothing
//! a peer wrote is re-serialised.

use std::net::SocketAddr;

use crate::engine::{Engine, Event, SmallText, TxOwner};
use crate::proxy::{transport_token, uri_of};
use crate::slab::Key;
use crate::wire::{self, Message, Transport};

/// Everything a BYE (or an ACK for a 2xx) needs.
pub(crate) struct Originated<'a> {
    pub(crate) method: &'a str,
    pub(crate) request_uri: &'a [u8],
    pub(crate) from: &'a [u8],
    pub(crate) to: &'a [u8],
    pub(crate) call_id: &'a [u8],
    pub(crate) cseq: u32,
}

fn write_request(
    req: &Originated<'_>,
    local: SocketAddr,
    transport: Transport,
    branch: &[u8],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(req.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.request_uri);
    out.extend_from_slice(b" SIP/2.0\r\n");
    let mut via = SmallText::default();
    via.push(b"Via: SIP/2.0/")
        .push(transport_token(transport).as_bytes())
        .push(b" ")
        .push_addr(local)
        .push(b";branch=");
    out.extend_from_slice(via.as_bytes());
    out.extend_from_slice(branch);
    out.extend_from_slice(b";rport\r\nMax-Forwards: 70\r\nFrom: ");
    out.extend_from_slice(req.from);
    out.extend_from_slice(b"\r\nTo: ");
    out.extend_from_slice(req.to);
    out.extend_from_slice(b"\r\nCall-ID: ");
    out.extend_from_slice(req.call_id);
    out.extend_from_slice(b"\r\nCSeq: ");
    wire::write_decimal(out, req.cseq);
    out.push(b' ');
    out.extend_from_slice(req.method.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
}

impl Engine {
    /// Sends a BYE as a client transaction of our own.
    pub(crate) fn send_bye(
        &mut self,
        req: &Originated<'_>,
        dest: SocketAddr,
        local: SocketAddr,
        transport: Transport,
    ) {
        let sent = self.send_request(
            false,
            dest,
            local,
            transport,
            TxOwner::Own,
            |_, branch, out| {
                write_request(req, local, transport, branch, out);
                true
            },
        );
        if sent.is_some() {
            self.stats.byes_sent += 1;
        }
    }

    /// A 2xx on a branch the caller no longer waits for (it was cancelled or timed out
    /// while the callee answered): ACK it so the callee stops retransmitting, then BYE
    /// it. Later retransmissions of the 2xx get the same ACK again; the BYE goes once.
    pub(crate) fn hang_up_stray_answer(&mut self, cid: Key, resp: &Message<'_>) {
        let limits = self.cfg.wire;
        let Some(e) = self.txs.clients.get(cid) else {
            return;
        };
        let (dest, local, transport) = (e.dest, e.local, e.transport);
        // Hung up already (the stored ACK says so): ACK again, never a second BYE.
        if matches!(e.owner, TxOwner::Own) || !e.tx.ack().is_empty() {
            if !e.tx.ack().is_empty() {
                self.out.send(dest, local, transport, e.tx.ack());
            }
            return;
        }
        // Rare path: copy the INVITE so the engine is free to send.
        let request = e.tx.request().to_vec();
        let Ok(invite) = wire::scan(&request, &limits) else {
            return;
        };
        let target = resp
            .contact()
            .map(uri_of)
            .unwrap_or(invite.request_uri().unwrap_or_default());
        let ack = Originated {
            method: "ACK",
            request_uri: target,
            from: invite.from().value,
            to: resp.to().value,
            call_id: invite.call_id(),
            cseq: invite.cseq().number,
        };
        // An ACK for a 2xx is its own transaction: a fresh branch derived from ours.
        let branch = self
            .txs
            .stateless_branch(invite.branch().unwrap_or_default());
        let mut bytes = Vec::with_capacity(512);
        write_request(&ack, local, transport, branch.as_bytes(), &mut bytes);
        self.out.send(dest, local, transport, &bytes);
        let bye = Originated {
            method: "BYE",
            cseq: ack.cseq + 1,
            ..ack
        };
        self.send_bye(&bye, dest, local, transport);
        if let Some(e) = self.txs.clients.get_mut(cid) {
            e.tx.set_ack(&bytes);
            // A call's branch stays the call's: if this was a second answer (a fork)
            // on a branch whose first answer the caller took, retransmissions of that
            // first answer must still be relayed to the caller.
            match &mut e.owner {
                TxOwner::Branch { abandoned, .. } => *abandoned = true,
                owner => *owner = TxOwner::Own,
            }
        }
    }
}

/// An OPTIONS probe built with rsip's typed model: nothing in it is copied from a
/// peer, so a typed builder is the clearest way to write it.
pub(crate) fn options_probe(
    target: SocketAddr,
    local: SocketAddr,
    branch: &str,
    call_id: &str,
    tag: &str,
) -> Vec<u8> {
    use rsip::headers::{CSeq, CallId, ContentLength, From, MaxForwards, To, Via};
    // rsip prints IPv6 hosts without brackets; give it the bracketed text.
    let host = |a: SocketAddr| match a {
        SocketAddr::V6(v6) => rsip::Host::Domain(format!("[{}]", v6.ip()).into()),
        SocketAddr::V4(v4) => rsip::Host::IpAddr((*v4.ip()).into()),
    };
    let uri = rsip::Uri {
        scheme: Some(rsip::Scheme::Sip),
        auth: None,
        host_with_port: rsip::HostWithPort {
            host: host(target),
            port: Some(target.port().into()),
        },
        params: Vec::new(),
        headers: Vec::new(),
    };
    let headers: Vec<rsip::Header> = vec![
        Via::from(format!("SIP/2.0/UDP {local};branch={branch};rport")).into(),
        MaxForwards::from("70").into(),
        From::from(format!("<sip:ringfence@{local}>;tag={tag}")).into(),
        To::from(format!("<{uri}>")).into(),
        CallId::from(call_id).into(),
        CSeq::from("1 OPTIONS").into(),
        ContentLength::from("0").into(),
    ];
    let req = rsip::Request {
        method: rsip::Method::Options,
        uri,
        version: rsip::Version::V2,
        headers: headers.into(),
        body: Vec::new(),
    };
    req.to_string().into_bytes()
}

impl Engine {
    /// Probes a half-open destination with OPTIONS.
    pub(crate) fn send_probe(&mut self, target: SocketAddr) {
        let Some(local) = self.last_local else {
            self.probe_not_sent(target);
            return;
        };
        let seq = self.rng.next_u64();
        let sent = self.send_request(
            false,
            target,
            local,
            Transport::Udp,
            TxOwner::Probe(target),
            |_, branch, out| {
                let call_id = format!("probe-{seq:016x}@ringfence");
                let tag = format!("{:08x}", seq as u32);
                out.extend_from_slice(&options_probe(
                    target,
                    local,
                    std::str::from_utf8(branch).unwrap_or_default(),
                    &call_id,
                    &tag,
                ));
                true
            },
        );
        if sent.is_some() {
            self.stats.probes_sent += 1;
        } else {
            self.probe_not_sent(target);
        }
    }

    /// A probe that could not go out (transaction table full) counts as one that got
    /// no answer: the breaker opens again and the probe is retried after another
    /// cool-down. Left half-open, the destination would be skipped and never probed
    /// again.
    fn probe_not_sent(&mut self, target: SocketAddr) {
        if let Some((target, state)) = self.breakers.failure(target, true, self.now) {
            self.out.event(Event::BreakerChanged { target, state });
        }
        self.schedule_guard();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Limits, Method, scan};

    #[test]
    fn probes_scan_as_options_to_the_target() {
        for (t, l) in [
            ("192.0.2.20:5080", "192.0.2.10:5060"),
            ("[2001:db8::20]:5080", "[2001:db8::10]:5060"),
        ] {
            let bytes = options_probe(
                t.parse().unwrap(),
                l.parse().unwrap(),
                "z9hG4bKrf1.0.ab",
                "c1@x",
                "t1",
            );
            let m = scan(&bytes, &Limits::default())
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
            assert_eq!(m.method(), Some(Method::Options));
            assert_eq!(m.request_uri().unwrap(), format!("sip:{t}").as_bytes());
            assert_eq!(m.branch(), Some(&b"z9hG4bKrf1.0.ab"[..]));
            assert_eq!(m.max_forwards(), Some(70));
            assert_eq!(m.from_tag(), Some(&b"t1"[..]));
        }
    }
}
