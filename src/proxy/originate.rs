//! Requests the proxy sends on its own behalf: the ACK and BYE that end an answer that
//! arrived after the caller was already given a final, and the BYEs that end a call at
//! its maximum duration. Built from values the dialog copied byte-for-byte, so nothing
//! a peer wrote is re-serialised.

use std::net::SocketAddr;

use crate::engine::{Engine, SmallText, TxOwner};
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
    out.extend_from_slice(
        SmallText::new(format_args!(
            "Via: SIP/2.0/{} {local};branch=",
            transport_token(transport)
        ))
        .as_bytes(),
    );
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
        if matches!(e.owner, TxOwner::Own) {
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
            e.owner = TxOwner::Own;
        }
    }
}
