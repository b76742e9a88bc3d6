//! The engine: the one façade a host drives. It dispatches each input to the layer that
//! owns it and collects their outputs; it makes no protocol decisions of its own.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::config::{Config, ConfigError};
use crate::hash::digest;
use crate::output::{Output, Transmit};
use crate::rng::Rng;
use crate::slab::Key;
use crate::stats::Stats;
use crate::status::reason;
use crate::time::{Clock, Time};
use crate::timer::{Owner, TimerQueue};
use crate::transaction::{
    Class, ClientState, RespondError, ServerEnd, ServerFired, ServerState, ServerTx, Table,
};
use crate::wire::{self, Message, Method, Reply, Transport, Via};

/// Something the host should know about or act on.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {}

/// Who a server transaction answers for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxOwner {
    /// The engine itself, as a plain UAS.
    Uas,
}

/// Methods the engine handles; listed in `Allow` on 405/501 and OPTIONS answers.
const ALLOW: &[u8] = b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK\r\n";

/// A sans-IO SIP engine. Feed it datagrams and time; drain datagrams to send and events.
///
/// ```
/// use std::time::Instant;
/// use ringfence::{Config, Engine};
///
/// let start = Instant::now();
/// let mut engine = Engine::new(Config::default(), start).unwrap();
/// let options = b"OPTIONS sip:node@192.0.2.10 SIP/2.0\r\n\
///     Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKprobe1\r\n\
///     From: <sip:monitor@192.0.2.1>;tag=a1\r\n\
///     To: <sip:node@192.0.2.10>\r\n\
///     Call-ID: probe-1@192.0.2.1\r\n\
///     CSeq: 1 OPTIONS\r\n\
///     Max-Forwards: 70\r\n\
///     Content-Length: 0\r\n\r\n";
/// let carrier = "192.0.2.1:5060".parse().unwrap();
/// let local = "192.0.2.10:5060".parse().unwrap();
/// engine.handle_datagram(start, carrier, local, options);
/// let out = engine.poll_transmit().expect("an answer");
/// assert_eq!(out.destination, carrier);
/// assert!(out.payload.starts_with(b"SIP/2.0 200 OK\r\n"));
/// ```
#[derive(Debug)]
pub struct Engine {
    cfg: Config,
    clock: Clock,
    now: Time,
    txs: Table<TxOwner>,
    timers: TimerQueue,
    out: Output<Event>,
    stats: Stats,
    rng: Rng,
    /// Scratch buffer for building messages; reused so steady state allocates little.
    buf: Vec<u8>,
    /// Extra header lines for generated responses (Server, Retry-After, Allow...).
    extra: Vec<u8>,
}

/// Where responses to a request go (RFC 3261 §18.2.2 with RFC 3581 `rport`), and the
/// `received` value to record on the top Via when the source differs from sent-by.
fn response_target(via: &Via<'_>, remote: SocketAddr) -> (SocketAddr, Option<IpAddr>) {
    let sent_by_ip = std::str::from_utf8(via.host)
        .ok()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .and_then(|h| h.parse::<IpAddr>().ok());
    let received = (sent_by_ip != Some(remote.ip()) || via.rport.is_some()).then(|| remote.ip());
    let port = if via.rport.is_some() {
        remote.port()
    } else {
        via.port
            .unwrap_or(if via.transport_kind() == Transport::Tls {
                5061
            } else {
                5060
            })
    };
    (SocketAddr::new(remote.ip(), port), received)
}

/// An IP address as text without allocating.
struct IpText {
    buf: [u8; 46],
    len: usize,
}

impl IpText {
    fn new(ip: IpAddr) -> Self {
        let mut t = IpText {
            buf: [0; 46],
            len: 0,
        };
        // Infallible: 46 bytes hold any IPv6 text form.
        let _ = write!(t, "{ip}");
        t
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Engine {
    /// Creates an engine whose clock starts at `now`. Fails if the config is invalid.
    pub fn new(config: Config, now: Instant) -> Result<Engine, ConfigError> {
        config.validate()?;
        Ok(Engine {
            txs: Table::new(config.limits.max_transactions, config.seed),
            out: Output::new(config.limits.transmit_queue_bytes, config.limits.max_events),
            rng: Rng::new(config.seed),
            clock: Clock::new(now),
            now: Time::ZERO,
            timers: TimerQueue::default(),
            stats: Stats::default(),
            buf: Vec::with_capacity(2048),
            extra: Vec::with_capacity(256),
            cfg: config,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn advance(&mut self, now: Instant) {
        // Time never runs backwards inside the engine, whatever the host passes.
        self.now = self.now.max(self.clock.at(now));
    }

    /// Handles one UDP datagram that arrived from `remote` on local address `local`.
    ///
    /// Never panics and never fails for what a peer sent: malformed input is counted in
    /// [`Stats::malformed`] and answered `400` when enough of it parses to answer.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        local: SocketAddr,
        data: &[u8],
    ) {
        self.advance(now);
        self.on_message(remote, local, Transport::Udp, data);
        self.run_timers();
    }

    /// Advances time: runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        self.run_timers();
    }

    /// When [`Engine::handle_timeout`] should next be called, if ever.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.prune_timers();
        self.timers.peek().map(|t| self.clock.instant(t))
    }

    /// The next datagram to send. Call until `None` after every `handle_*` call.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit<'_>> {
        self.out.pop_transmit()
    }

    /// The next event. Call until `None` after every `handle_*` call.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.pop_event()
    }

    /// A snapshot of every counter.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.dropped_transmits = self.out.dropped_transmits;
        s.dropped_events = self.out.dropped_events;
        for (_, e) in self.txs.servers.iter() {
            if e.tx.invite {
                s.transactions_active.server_invite += 1;
            } else {
                s.transactions_active.server_non_invite += 1;
            }
            match e.tx.state {
                ServerState::Trying => s.states.server_trying += 1,
                ServerState::Proceeding => s.states.server_proceeding += 1,
                ServerState::Completed => s.states.server_completed += 1,
                ServerState::Confirmed => s.states.server_confirmed += 1,
                ServerState::Accepted => s.states.server_accepted += 1,
            }
        }
        for (_, e) in self.txs.clients.iter() {
            if e.tx.invite {
                s.transactions_active.client_invite += 1;
            } else {
                s.transactions_active.client_non_invite += 1;
            }
            match e.tx.state {
                ClientState::Calling | ClientState::Trying => s.states.client_calling += 1,
                ClientState::Proceeding => s.states.client_proceeding += 1,
                ClientState::Completed => s.states.client_completed += 1,
                ClientState::Accepted => s.states.client_accepted += 1,
            }
        }
        s
    }

    // ----- input -----

    fn on_message(
        &mut self,
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
        data: &[u8],
    ) {
        self.stats.datagrams += 1;
        if !data.is_empty() && data.iter().all(|&c| c == b'\r' || c == b'\n') {
            self.stats.keepalives += 1;
            return;
        }
        // Absorb retransmissions first, from the keys alone.
        if let Ok(keys) = wire::scan_keys(data, &self.cfg.wire) {
            match keys.method() {
                Some(m) => {
                    self.stats.requests += 1;
                    if self.absorb_request(&keys, m) {
                        return;
                    }
                }
                None => {
                    self.stats.responses += 1;
                    self.on_response(&keys);
                    return;
                }
            }
        } else if data.len() >= 4 && data[..4].eq_ignore_ascii_case(b"SIP/") {
            self.stats.responses += 1;
        } else {
            self.stats.requests += 1;
        }
        match wire::scan(data, &self.cfg.wire) {
            Ok(msg) if msg.is_request() => self.on_request(&msg, remote, local, transport),
            // A response that scan_keys could not read but scan could: nothing matches it.
            Ok(_) => self.stats.stray_responses += 1,
            Err(e) => self.on_malformed(e.kind, data, remote, local, transport),
        }
    }

    fn on_malformed(
        &mut self,
        kind: wire::ParseErrorKind,
        data: &[u8],
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
    ) {
        self.stats.malformed[kind.index()] += 1;
        let reply = Reply::new(kind.status(), kind.reason_phrase().as_bytes());
        self.buf.clear();
        // Unscannable requests go back to their source: the Via was not understood.
        if wire::write_response_to_unparsed(data, &reply, &mut self.buf) {
            self.stats.malformed_answered += 1;
            self.stats.count_response(reply.status);
            self.out.send(remote, local, transport, &self.buf);
        }
    }

    /// A request that matches a live server transaction: answered from the cache (or
    /// absorbed) without a full scan and without allocating. False if it needs more.
    fn absorb_request(&mut self, keys: &wire::Keys<'_>, method: Method<'_>) -> bool {
        let Some(id) = self.txs.find_server(
            keys.branch(),
            keys.sent_by_host(),
            keys.sent_by_port(),
            keys.transport(),
            Class::of(method),
        ) else {
            return false;
        };
        let timers = self.cfg.timers;
        let Some(e) = self.txs.servers.get_mut(id) else {
            return false;
        };
        if method == Method::Ack {
            if !e.tx.on_ack(self.now, &timers) {
                // An ACK for a 2xx travels end to end; not this transaction's.
                return false;
            }
            self.stats.acks_absorbed += 1;
            self.schedule_server(id);
            return true;
        }
        self.stats.retransmissions_absorbed += 1;
        if let Some(bytes) = e.tx.on_retransmission() {
            self.out.send(e.peer, e.local, e.transport, bytes);
        }
        true
    }

    fn on_response(&mut self, keys: &wire::Keys<'_>) {
        // No client transactions exist yet without a proxy: every response is stray.
        let _ = keys;
        self.stats.stray_responses += 1;
    }

    fn on_request(
        &mut self,
        msg: &Message<'_>,
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
    ) {
        let via = msg.top_via();
        if !via.has_magic_cookie() {
            self.stats.no_magic_cookie += 1;
            if msg.method() != Some(Method::Ack) {
                self.reply_stateless(
                    msg,
                    remote,
                    local,
                    transport,
                    400,
                    b"Bad Request - RFC 2543 Branch Not Supported",
                );
            }
            return;
        }
        match msg.method() {
            Some(Method::Ack) => self.stats.stray_acks += 1,
            Some(Method::Cancel) => self.on_cancel(msg, remote, local, transport),
            Some(Method::Invite) => self.on_invite(msg, remote, local, transport),
            Some(_) => self.on_non_invite(msg, remote, local, transport),
            None => {}
        }
    }

    fn on_invite(
        &mut self,
        msg: &Message<'_>,
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
    ) {
        let Some(id) = self.new_server_tx(msg, remote, local, transport, TxOwner::Uas) else {
            return;
        };
        self.respond(id, Some(msg), 100, reason(100));
        let status = self.cfg.uas.invite_status;
        self.respond(id, Some(msg), status, reason(status));
    }

    fn on_non_invite(
        &mut self,
        msg: &Message<'_>,
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
    ) {
        let Some(id) = self.new_server_tx(msg, remote, local, transport, TxOwner::Uas) else {
            return;
        };
        let status = match msg.method() {
            Some(Method::Options) => 200,
            // In-dialog methods: there is no dialog they could belong to.
            Some(Method::Bye | Method::Update | Method::Info | Method::Prack) => 481,
            Some(Method::Extension(_)) => 501,
            _ => 405,
        };
        self.respond(id, Some(msg), status, reason(status));
    }

    fn on_cancel(
        &mut self,
        msg: &Message<'_>,
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
    ) {
        let Some(id) = self.new_server_tx(msg, remote, local, transport, TxOwner::Uas) else {
            return;
        };
        let via = msg.top_via();
        let invite = self.txs.find_server(
            via.branch,
            via.host,
            via.port,
            via.transport_kind(),
            Class::Invite,
        );
        let Some(invite) = invite else {
            self.respond(id, Some(msg), 481, reason(481));
            return;
        };
        // RFC 3261 §9.2: the CANCEL itself is always answered 200 once matched.
        self.respond(id, Some(msg), 200, reason(200));
        let unanswered = self
            .txs
            .servers
            .get(invite)
            .is_some_and(|e| !e.tx.answered());
        if unanswered {
            self.respond(invite, None, 487, reason(487));
        }
    }

    // ----- server transactions -----

    /// Creates the server transaction for a new request, or answers it statelessly when
    /// it cannot have one (table full: 503; merged: 482 within a new transaction).
    fn new_server_tx(
        &mut self,
        msg: &Message<'_>,
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
        owner: TxOwner,
    ) -> Option<Key> {
        let via = msg.top_via();
        let method = msg.method()?;
        let class = Class::of(method);
        let reliable = transport.is_reliable();
        let cseq = msg.cseq();
        let merged_key = match (msg.to_tag(), msg.from_tag()) {
            (None, Some(from_tag)) => {
                Some((from_tag, msg.call_id(), cseq.number, method.as_bytes()))
            }
            _ => None,
        };
        let merged =
            merged_key.is_some_and(|(t, c, n, m)| self.txs.find_merged(t, c, n, m).is_some());
        if self.txs.is_full() {
            self.stats.table_full += 1;
            self.extra.clear();
            self.extra.extend_from_slice(b"Retry-After: ");
            wire::write_decimal(&mut self.extra, self.cfg.limits.table_full_retry_after);
            self.extra.extend_from_slice(b"\r\n");
            let extra = std::mem::take(&mut self.extra);
            self.reply_stateless_with(msg, remote, local, transport, 503, reason(503), &extra);
            self.extra = extra;
            return None;
        }
        let timers = self.cfg.timers;
        let tx = if method == Method::Invite {
            // The transaction user must answer within Timer B's span after Timer C would
            // have: a safety net, not the routing deadline.
            ServerTx::invite(self.now, reliable, timers.t1x64() * 8)
        } else {
            ServerTx::non_invite(self.now, reliable, &timers)
        };
        let (peer, _) = response_target(&via, remote);
        let id = self
            .txs
            .insert_server(
                tx,
                via.branch,
                via.host,
                via.port,
                class,
                if merged { None } else { merged_key },
                peer,
                local,
                transport,
                owner,
            )
            .ok()?;
        self.count_created_server(method == Method::Invite);
        if merged {
            self.stats.merged_requests += 1;
            self.respond(id, Some(msg), 482, reason(482));
            return None;
        }
        if method == Method::Invite
            && let Some(e) = self.txs.servers.get_mut(id)
        {
            e.request.extend_from_slice(msg.as_bytes());
        }
        Some(id)
    }

    fn count_created_server(&mut self, invite: bool) {
        let c = &mut self.stats.transactions_created;
        if invite {
            c.server_invite += 1;
        } else {
            c.server_non_invite += 1;
        }
    }

    /// A stable To tag for responses the engine generates in transaction `id`.
    fn local_tag(&self, id: Key) -> [u8; 8] {
        let v = digest(self.cfg.seed, &[0x746167, id.to_u64()]) as u32;
        let mut tag = [0u8; 8];
        for (i, c) in tag.iter_mut().enumerate() {
            *c = b"0123456789abcdef"[(v >> ((7 - i) * 4)) as usize & 0xf];
        }
        tag
    }

    /// Sends a response generated by the engine in server transaction `id`. The request
    /// is `msg` when at hand, else the copy the transaction kept.
    fn respond(&mut self, id: Key, msg: Option<&Message<'_>>, status: u16, reason: &[u8]) {
        self.extra.clear();
        if status == 405 || status == 501 || status == 200 {
            self.extra.extend_from_slice(ALLOW);
        }
        if status == 200 {
            self.extra.extend_from_slice(b"Accept: application/sdp\r\n");
        }
        if !self.cfg.server_name.is_empty() && status > 100 {
            self.extra.extend_from_slice(b"Server: ");
            self.extra
                .extend_from_slice(self.cfg.server_name.as_bytes());
            self.extra.extend_from_slice(b"\r\n");
        }
        let tag = self.local_tag(id);
        let limits = self.cfg.wire;
        let Some(e) = self.txs.servers.get_mut(id) else {
            return;
        };
        let stored;
        let msg = match msg {
            Some(m) => m,
            None => match wire::scan(&e.request, &limits) {
                Ok(m) => {
                    stored = m;
                    &stored
                }
                // Only requests that scanned are stored; nothing to answer from otherwise.
                Err(_) => return,
            },
        };
        // `peer` is the source address with the response port: its IP is the source IP.
        let (_, received) = response_target(&msg.top_via(), e.peer);
        let received = received.map(IpText::new);
        let reply = Reply {
            status,
            reason,
            to_tag: (status > 100).then_some(&tag[..]),
            headers: &self.extra,
            via_params: b"",
            received: received.as_ref().map(IpText::as_bytes),
            source_port: e.peer.port(),
        };
        self.buf.clear();
        wire::write_response(msg, &reply, &mut self.buf);
        match e.tx.respond(self.now, &self.cfg.timers, status, &self.buf) {
            Ok(()) => {
                self.stats.count_response(status);
                self.out.send(e.peer, e.local, e.transport, &self.buf);
                if status >= 200 {
                    e.request = Vec::new();
                }
                self.schedule_server(id);
            }
            Err(RespondError::FinalAlreadySent) => {}
        }
    }

    fn reply_stateless(
        &mut self,
        msg: &Message<'_>,
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
        status: u16,
        reason: &[u8],
    ) {
        self.reply_stateless_with(msg, remote, local, transport, status, reason, b"");
    }

    #[allow(clippy::too_many_arguments)]
    fn reply_stateless_with(
        &mut self,
        msg: &Message<'_>,
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
        status: u16,
        reason: &[u8],
        extra: &[u8],
    ) {
        let (peer, received) = response_target(&msg.top_via(), remote);
        let received = received.map(IpText::new);
        let reply = Reply {
            status,
            reason,
            to_tag: None,
            headers: extra,
            via_params: b"",
            received: received.as_ref().map(IpText::as_bytes),
            source_port: remote.port(),
        };
        self.buf.clear();
        wire::write_response(msg, &reply, &mut self.buf);
        self.stats.count_response(status);
        self.out.send(peer, local, transport, &self.buf);
    }

    fn schedule_server(&mut self, id: Key) {
        let Some(e) = self.txs.servers.get_mut(id) else {
            return;
        };
        let wake = e.tx.next_wake();
        if wake.is_some()
            && wake != e.scheduled
            && let Some(t) = wake
        {
            e.scheduled = Some(t);
            self.timers.schedule(t, Owner::ServerTx(id));
        }
    }

    // ----- time -----

    fn run_timers(&mut self) {
        while let Some((t, owner)) = self.timers.pop_due(self.now) {
            match owner {
                Owner::ServerTx(id) => {
                    let due = self
                        .txs
                        .servers
                        .get_mut(id)
                        .filter(|e| e.scheduled == Some(t))
                        .map(|e| e.scheduled = None)
                        .is_some();
                    if due {
                        self.on_server_timer(id);
                    }
                }
                Owner::ClientTx(_) | Owner::Call(_) | Owner::Dialog(_) | Owner::Guard => {}
            }
        }
        self.compact_timers();
    }

    fn on_server_timer(&mut self, id: Key) {
        let timers = self.cfg.timers;
        loop {
            let Some(e) = self.txs.servers.get_mut(id) else {
                return;
            };
            match e.tx.on_timer(self.now, &timers) {
                ServerFired::Nothing => break,
                ServerFired::Retransmit(bytes) => {
                    self.stats.retransmissions_sent += 1;
                    self.out.send(e.peer, e.local, e.transport, bytes);
                }
                ServerFired::Terminated(end) => {
                    if end == ServerEnd::NoAck {
                        self.stats.ack_timeouts += 1;
                    }
                    self.txs.remove_server(id);
                    return;
                }
                ServerFired::Unanswered => {
                    self.stats.unanswered += 1;
                    if e.tx.invite {
                        self.respond(id, None, 500, reason(500));
                    } else {
                        // RFC 4320: no 408 to a non-INVITE; the client's Timer F ends it.
                        self.txs.remove_server(id);
                        return;
                    }
                }
                ServerFired::MaySend100 => {
                    if !e.request.is_empty() {
                        self.respond(id, None, 100, reason(100));
                    }
                }
            }
        }
        self.schedule_server(id);
    }

    /// Whether a timer entry still means something to its owner.
    fn timer_live(&self, t: Time, owner: Owner) -> bool {
        match owner {
            Owner::ServerTx(id) => self
                .txs
                .servers
                .get(id)
                .is_some_and(|e| e.scheduled == Some(t)),
            Owner::ClientTx(id) => self
                .txs
                .clients
                .get(id)
                .is_some_and(|e| e.scheduled == Some(t)),
            Owner::Call(_) | Owner::Dialog(_) | Owner::Guard => true,
        }
    }

    /// Pops stale entries off the top so `poll_timeout` names a real deadline.
    fn prune_timers(&mut self) {
        while let Some((t, owner)) = self.timers.peek_entry() {
            if self.timer_live(t, owner) {
                break;
            }
            self.timers.pop();
        }
    }

    /// Drops stale timer entries once they outnumber live owners.
    fn compact_timers(&mut self) {
        let live = self.txs.len();
        if self.timers.len() <= 2 * live + 1024 {
            return;
        }
        let mut timers = std::mem::take(&mut self.timers);
        timers.retain(|t, owner| self.timer_live(t, owner));
        self.timers = timers;
    }

    #[cfg(test)]
    pub(crate) fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    /// Draws from the engine's seeded generator (kept for the layers to come).
    #[allow(dead_code)]
    pub(crate) fn random(&mut self) -> u64 {
        self.rng.next_u64()
    }
}
