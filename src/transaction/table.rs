//! Transaction tables: bounded slabs plus the indexes that match requests (by branch,
//! sent-by and method) and responses (by our own branch, which encodes the slot).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;

use super::{ClientTx, ServerTx};
use crate::hash::{SeededState, digest};
use crate::slab::{Key, Slab};
use crate::time::Time;
use crate::wire::{MAGIC_COOKIE, Method, Transport};

/// The method class a server transaction is matched by (RFC 3261 §17.2.3: ACK matches
/// the INVITE; CANCEL has its own transaction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class<'a> {
    Invite,
    Cancel,
    Other(&'a [u8]),
}

impl<'a> Class<'a> {
    pub(crate) fn of(method: Method<'a>) -> Class<'a> {
        match method {
            Method::Invite | Method::Ack => Class::Invite,
            Method::Cancel => Class::Cancel,
            other => Class::Other(other.as_bytes()),
        }
    }
}

#[derive(Debug)]
pub(crate) struct ServerEntry<O> {
    pub(crate) tx: ServerTx,
    /// Index key (kept to remove the index entry with the transaction).
    key: Box<[u8]>,
    /// Merged-request index key, for requests without a To tag (RFC 3261 §8.2.2.2).
    merge: Option<Box<[u8]>>,
    /// Where responses go (RFC 3261 §18.2.2 / RFC 3581).
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) transport: Transport,
    pub(crate) owner: O,
    pub(crate) scheduled: Option<Time>,
    /// The request, kept while the transaction user may still answer it later (an
    /// INVITE being routed): responses are built from its bytes. Emptied once a final
    /// response is sent.
    pub(crate) request: Vec<u8>,
}

#[derive(Debug)]
pub(crate) struct ClientEntry<O> {
    pub(crate) tx: ClientTx,
    pub(crate) dest: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) transport: Transport,
    pub(crate) owner: O,
    /// For an INVITE: the CANCEL transaction sharing its branch.
    pub(crate) cancel: Option<Key>,
    pub(crate) scheduled: Option<Time>,
}

/// `(from_tag, call_id, cseq, method)` of a request without a To tag.
pub(crate) type MergeKey<'a> = (&'a [u8], &'a [u8], u32, &'a [u8]);

/// Both transaction tables. Capacity is shared: `servers + clients <= capacity`.
#[derive(Debug)]
pub(crate) struct Table<O> {
    pub(crate) servers: Slab<ServerEntry<O>>,
    pub(crate) clients: Slab<ClientEntry<O>>,
    server_index: HashMap<Box<[u8]>, Key, SeededState>,
    merge_index: HashMap<Box<[u8]>, Key, SeededState>,
    secret: u64,
    capacity: usize,
    scratch: Vec<u8>,
}

const OUR_BRANCH: &[u8] = b"z9hG4bKrf";

impl<O> Table<O> {
    pub(crate) fn new(capacity: usize, seed: u64) -> Self {
        Table {
            servers: Slab::with_capacity(capacity),
            clients: Slab::with_capacity(capacity),
            server_index: HashMap::with_hasher(SeededState::new(seed)),
            merge_index: HashMap::with_hasher(SeededState::new(seed ^ 0x6d65_7267)),
            secret: digest(seed, &[0x6272_616e_6368]),
            capacity,
            scratch: Vec::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.servers.len() + self.clients.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }

    /// Builds the server index key into the scratch buffer. `None` without a
    /// magic-cookie branch.
    fn server_key(
        &mut self,
        branch: Option<&[u8]>,
        host: &[u8],
        port: Option<u16>,
        transport: Transport,
        class: Class<'_>,
    ) -> Option<&[u8]> {
        let branch = branch.filter(|b| b.starts_with(MAGIC_COOKIE))?;
        let k = &mut self.scratch;
        k.clear();
        match class {
            Class::Invite => k.push(b'I'),
            Class::Cancel => k.push(b'C'),
            Class::Other(m) => {
                k.push(b'N');
                k.extend_from_slice(m);
            }
        }
        k.push(0);
        k.extend_from_slice(branch);
        k.push(0);
        k.extend(host.iter().map(u8::to_ascii_lowercase));
        k.push(b':');
        let default = if transport == Transport::Tls {
            5061
        } else {
            5060
        };
        crate::wire::write_decimal(k, port.unwrap_or(default) as u32);
        Some(&self.scratch)
    }

    /// Finds the server transaction a request belongs to.
    pub(crate) fn find_server(
        &mut self,
        branch: Option<&[u8]>,
        host: &[u8],
        port: Option<u16>,
        transport: Transport,
        class: Class<'_>,
    ) -> Option<Key> {
        self.server_key(branch, host, port, transport, class)?;
        self.server_index.get(&self.scratch[..]).copied()
    }

    fn merge_key(&mut self, from_tag: &[u8], call_id: &[u8], cseq: u32, method: &[u8]) {
        let k = &mut self.scratch;
        k.clear();
        k.extend_from_slice(from_tag);
        k.push(0);
        k.extend_from_slice(call_id);
        k.push(0);
        crate::wire::write_decimal(k, cseq);
        k.push(0);
        k.extend_from_slice(method);
    }

    /// An ongoing transaction for the same request arriving by another path (same From
    /// tag, Call-ID and CSeq; RFC 3261 §8.2.2.2).
    pub(crate) fn find_merged(
        &mut self,
        from_tag: &[u8],
        call_id: &[u8],
        cseq: u32,
        method: &[u8],
    ) -> Option<Key> {
        self.merge_key(from_tag, call_id, cseq, method);
        self.merge_index.get(&self.scratch[..]).copied()
    }

    /// Inserts a server transaction. `merge` is `(from_tag, call_id, cseq, method)` for
    /// requests without a To tag. `Err` returns the transaction when the table is full
    /// or the branch lacks the magic cookie.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert_server(
        &mut self,
        tx: ServerTx,
        branch: Option<&[u8]>,
        host: &[u8],
        port: Option<u16>,
        class: Class<'_>,
        merge: Option<MergeKey<'_>>,
        peer: SocketAddr,
        local: SocketAddr,
        transport: Transport,
        owner: O,
    ) -> Result<Key, ServerTx> {
        if self.is_full() {
            return Err(tx);
        }
        let Some(key) = self.server_key(branch, host, port, transport, class) else {
            return Err(tx);
        };
        let key: Box<[u8]> = key.into();
        let merge = merge.map(|(tag, call_id, cseq, method)| {
            self.merge_key(tag, call_id, cseq, method);
            Box::<[u8]>::from(&self.scratch[..])
        });
        let entry = ServerEntry {
            tx,
            key: key.clone(),
            merge: merge.clone(),
            peer,
            local,
            transport,
            owner,
            scheduled: None,
            request: Vec::new(),
        };
        let id = self.servers.insert(entry).map_err(|e| e.tx)?;
        self.server_index.insert(key, id);
        if let Some(m) = merge {
            self.merge_index.insert(m, id);
        }
        Ok(id)
    }

    pub(crate) fn remove_server(&mut self, id: Key) -> Option<ServerEntry<O>> {
        let e = self.servers.remove(id)?;
        if self.server_index.get(&e.key) == Some(&id) {
            self.server_index.remove(&e.key);
        }
        if let Some(m) = &e.merge
            && self.merge_index.get(m) == Some(&id)
        {
            self.merge_index.remove(m);
        }
        Some(e)
    }

    /// Inserts a client transaction; returns its key, or `None` when the table is full.
    pub(crate) fn insert_client(&mut self, entry: ClientEntry<O>) -> Option<Key> {
        if self.is_full() {
            return None;
        }
        self.clients.insert(entry).ok()
    }

    pub(crate) fn remove_client(&mut self, id: Key) -> Option<ClientEntry<O>> {
        self.clients.remove(id)
    }

    /// The branch for client transaction `id` (`z9hG4bKrf<index>.<gen>.<mac>`, hex).
    /// The keyed MAC makes our branches unguessable, so a forged response that does not
    /// echo one is dropped rather than matched to a live transaction.
    pub(crate) fn branch(&self, id: Key) -> Branch {
        let mut b = Branch {
            buf: [0; 48],
            len: 0,
        };
        b.push(OUR_BRANCH);
        b.hex(id.index as u64);
        b.push(b".");
        b.hex(id.generation as u64);
        b.push(b".");
        b.hex(self.mac(id));
        b
    }

    /// A branch for a request forwarded statelessly (an ACK for a 2xx), derived from
    /// the incoming branch so that retransmissions get the same one (RFC 3261 §16.11).
    pub(crate) fn stateless_branch(&self, incoming: &[u8]) -> Branch {
        let mut h = SeededState::new(self.secret).build_hasher();
        h.write(incoming);
        let mut b = Branch {
            buf: [0; 48],
            len: 0,
        };
        b.push(b"z9hG4bKrfs.");
        b.hex(h.finish());
        b
    }

    fn mac(&self, id: Key) -> u64 {
        digest(self.secret, &[id.to_u64()]) & 0xffff_ffff
    }

    /// Decodes one of our branches back to its client transaction key.
    pub(crate) fn client_of_branch(&self, branch: &[u8]) -> Option<Key> {
        let rest = branch.strip_prefix(OUR_BRANCH)?;
        let mut parts = rest.split(|&c| c == b'.');
        let index = parse_hex(parts.next()?)?;
        let generation = parse_hex(parts.next()?)?;
        let mac = parse_hex(parts.next()?)?;
        if parts.next().is_some() || index > u32::MAX as u64 || generation > u32::MAX as u64 {
            return None;
        }
        let id = Key {
            index: index as u32,
            generation: generation as u32,
        };
        (self.mac(id) == mac && self.clients.get(id).is_some()).then_some(id)
    }
}

/// A branch value, built without allocating.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Branch {
    buf: [u8; 48],
    len: usize,
}

impl Branch {
    fn push(&mut self, s: &[u8]) {
        self.buf[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
    }

    fn hex(&mut self, v: u64) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digits = ((64 - v.leading_zeros()).div_ceil(4)).max(1);
        for i in (0..digits).rev() {
            self.buf[self.len] = HEX[((v >> (i * 4)) & 0xf) as usize];
            self.len += 1;
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &c| {
        let d = (c as char).to_digit(16)?;
        Some(acc << 4 | d as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::Timers;

    fn addr() -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], 5060))
    }

    #[test]
    fn server_matching_follows_17_2_3() {
        let mut t: Table<()> = Table::new(8, 1);
        let tx = ServerTx::invite(Time::ZERO, false, Timers::default().t1x64());
        let id = t
            .insert_server(
                tx,
                Some(b"z9hG4bKabc"),
                b"Carrier.Example",
                None,
                Class::Invite,
                None,
                addr(),
                addr(),
                Transport::Udp,
                (),
            )
            .unwrap();
        let find = |t: &mut Table<()>, b: &[u8], h: &[u8], p, c| {
            t.find_server(Some(b), h, p, Transport::Udp, c)
        };
        // ACK (class INVITE), host case-insensitive, default port explicit.
        assert_eq!(
            find(
                &mut t,
                b"z9hG4bKabc",
                b"carrier.example",
                Some(5060),
                Class::Invite
            ),
            Some(id)
        );
        assert_eq!(
            find(
                &mut t,
                b"z9hG4bKabc",
                b"carrier.example",
                None,
                Class::Cancel
            ),
            None
        );
        assert_eq!(
            find(
                &mut t,
                b"z9hG4bKabd",
                b"carrier.example",
                None,
                Class::Invite
            ),
            None
        );
        assert_eq!(
            find(&mut t, b"z9hG4bKabc", b"other.example", None, Class::Invite),
            None
        );
        assert_eq!(
            find(
                &mut t,
                b"z9hG4bKabc",
                b"carrier.example",
                Some(5070),
                Class::Invite
            ),
            None
        );
        assert!(t.remove_server(id).is_some());
        assert_eq!(
            find(
                &mut t,
                b"z9hG4bKabc",
                b"carrier.example",
                None,
                Class::Invite
            ),
            None
        );
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn branches_without_the_cookie_are_not_matched_or_inserted() {
        let mut t: Table<()> = Table::new(8, 1);
        let tx = ServerTx::invite(Time::ZERO, false, Timers::default().t1x64());
        assert!(
            t.insert_server(
                tx,
                Some(b"1234"),
                b"h",
                None,
                Class::Invite,
                None,
                addr(),
                addr(),
                Transport::Udp,
                ()
            )
            .is_err()
        );
        assert_eq!(
            t.find_server(Some(b"1234"), b"h", None, Transport::Udp, Class::Invite),
            None
        );
    }

    #[test]
    fn our_branches_round_trip_and_forgeries_miss() {
        let mut t: Table<()> = Table::new(8, 42);
        let tx = ClientTx::new(Time::ZERO, &Timers::default(), true, false, vec![]);
        let id = t
            .insert_client(ClientEntry {
                tx,
                dest: addr(),
                local: addr(),
                transport: Transport::Udp,
                owner: (),
                cancel: None,
                scheduled: None,
            })
            .unwrap();
        let b = t.branch(id).as_bytes().to_vec();
        assert!(b.starts_with(MAGIC_COOKIE));
        assert_eq!(t.client_of_branch(&b), Some(id));
        let mut forged = b.clone();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(t.client_of_branch(&forged), None);
        assert_eq!(t.client_of_branch(b"z9hG4bKrf0.0"), None);
        assert_eq!(t.client_of_branch(b"z9hG4bKsomeone-else"), None);
        t.remove_client(id);
        assert_eq!(
            t.client_of_branch(&b),
            None,
            "finished transactions no longer match"
        );
    }

    #[test]
    fn capacity_is_shared_between_servers_and_clients() {
        let mut t: Table<()> = Table::new(1, 1);
        let tx = ServerTx::invite(Time::ZERO, false, Timers::default().t1x64());
        t.insert_server(
            tx,
            Some(b"z9hG4bK1"),
            b"h",
            None,
            Class::Invite,
            None,
            addr(),
            addr(),
            Transport::Udp,
            (),
        )
        .unwrap();
        let c = ClientTx::new(Time::ZERO, &Timers::default(), false, false, vec![]);
        assert!(
            t.insert_client(ClientEntry {
                tx: c,
                dest: addr(),
                local: addr(),
                transport: Transport::Udp,
                owner: (),
                cancel: None,
                scheduled: None,
            })
            .is_none()
        );
    }
}
