//! The stateful proxy (RFC 3261 §16) for calls being set up: an INVITE is routed,
//! forwarded by splicing our Via, Record-Route, Request-URI and Max-Forwards into its
//! bytes, and tried on one target at a time. Provisional responses are relayed, a 2xx
//! is relayed and confirms the dialog, failures fail over, and the best final goes
//! upstream, never a downstream 503. Timer C bounds ringing; CANCEL from upstream is
//! answered and propagated.
//!
//! Owns: calls between INVITE and final response. In-dialog routing is in `relay`.
//! Never touches sockets or admission policy.

mod originate;
mod relay;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::dialog::{DialogState, SideInit};
use crate::engine::{
    CallError, CallHandle, EndReason, Engine, Event, RouteDecision, SmallText, TxOwner,
    response_target,
};
use crate::guard::dedup::Previous;
use crate::guard::{AfterAnswer, InProgress, Refusal, Slot, TargetSlot, TrunkId};
use crate::route::{Target, attempt_order, normalize};
use crate::slab::Key;
use crate::status::reason;
use crate::time::Time;
use crate::timer::Owner;
use crate::transaction::{Class, ClientState};
use crate::wire::{self, Message, Splice, Transport};

/// A call between its INVITE and the final response upstream.
#[derive(Debug)]
pub(crate) struct Call {
    /// The upstream INVITE server transaction.
    pub(crate) server: Key,
    /// Dialled number as reported (normalised when possible).
    pub(crate) dialled: Box<str>,
    /// Calling number as reported.
    pub(crate) caller: Box<str>,
    /// The normalised dialled number, the routing and cache key.
    pub(crate) number: Option<Box<str>>,
    /// The route chosen (kept whole for the last-known-good cache).
    pub(crate) route: Option<Arc<[Target]>>,
    /// Targets in attempt order, and the next to try.
    pub(crate) targets: Vec<Target>,
    pub(crate) next: usize,
    /// The downstream INVITE being tried.
    pub(crate) branch: Option<Key>,
    /// The best final response so far.
    best: Option<Best>,
    /// Timer C.
    pub(crate) timer_c: Option<Time>,
    /// Deadline for the host's routing decision.
    pub(crate) route_by: Option<Time>,
    pub(crate) started: Time,
    pub(crate) scheduled: Option<Time>,
    pub(crate) dialog: Option<Key>,
    /// The trunk the call came in on.
    pub(crate) trunk: TrunkId,
    /// The call's place in node and trunk capacity (released when the call is dropped,
    /// or handed to the dialog on answer).
    pub(crate) slot: Option<Slot>,
    /// Its place on the destination being tried.
    pub(crate) target_slot: Option<TargetSlot>,
    /// Its key in the re-attempt table (none for anonymous callers).
    pub(crate) dedup: Option<u64>,
    /// Whether a target has been tried (later tries spend the retry budget).
    pub(crate) attempted: bool,
}

impl Call {
    fn next_wake(&self) -> Option<Time> {
        [self.route_by, self.timer_c].into_iter().flatten().min()
    }
}

/// A final response kept in case every target fails. `bytes` holds it ready to relay
/// (our Via removed); empty for finals the proxy must generate itself (503, timeouts).
#[derive(Debug)]
struct Best {
    rank: u8,
    status: u16,
    bytes: Vec<u8>,
}

/// RFC 3261 §16.7 step 6, simplified for sequential forking: a 6xx ends the search and
/// wins; then any real answer; then timeouts; a 503 is the last resort.
fn rank(status: u16) -> u8 {
    match status {
        600..=699 => 4,
        503 => 1,
        408 => 2,
        _ => 3,
    }
}

/// The URI inside a Contact or Route value (`"x" <uri>;p` or `uri;p`).
pub(crate) fn uri_of(value: &[u8]) -> &[u8] {
    if let Some(l) = value.iter().position(|&c| c == b'<') {
        let rest = &value[l + 1..];
        let r = rest.iter().position(|&c| c == b'>').unwrap_or(rest.len());
        return &rest[..r];
    }
    let end = value.iter().position(|&c| c == b';').unwrap_or(value.len());
    value[..end].trim_ascii()
}

/// The userinfo of a `sip:`/`sips:` URI (everything between the scheme and `@`).
fn userinfo(uri: &[u8]) -> Option<&[u8]> {
    let colon = uri.iter().position(|&c| c == b':')?;
    let rest = &uri[colon + 1..];
    let at = rest.iter().position(|&c| c == b'@')?;
    Some(&rest[..at])
}

/// The number of a `tel:` URI with its parameters (`tel:+1-555-0100;npdi` gives
/// `+1-555-0100;npdi`); `None` for other schemes.
fn tel_number(uri: &[u8]) -> Option<&[u8]> {
    let body = uri
        .get(..4)
        .filter(|s| s.eq_ignore_ascii_case(b"tel:"))
        .map(|_| &uri[4..])?;
    let end = body.iter().position(|&c| c == b'?').unwrap_or(body.len());
    Some(&body[..end]).filter(|n| !n.is_empty())
}

pub(crate) fn transport_token(t: Transport) -> &'static str {
    match t {
        Transport::Udp | Transport::Other => "UDP",
        Transport::Tcp => "TCP",
        Transport::Tls => "TLS",
        Transport::Sctp => "SCTP",
        Transport::Ws => "WS",
        Transport::Wss => "WSS",
    }
}

/// The Retry-After of a response, in seconds.
fn retry_after(msg: &Message<'_>) -> Option<u32> {
    let h = msg
        .headers()
        .find(|h| h.kind == crate::wire::HeaderName::RetryAfter)?;
    let digits = h.value.iter().take_while(|c| c.is_ascii_digit()).count();
    std::str::from_utf8(&h.value[..digits]).ok()?.parse().ok()
}

fn lossy(b: &[u8]) -> Box<str> {
    String::from_utf8_lossy(b).into()
}

impl Engine {
    /// A new INVITE (no To tag): 100 at once, then route and forward it.
    pub(crate) fn on_invite(
        &mut self,
        msg: &Message<'_>,
        remote: SocketAddr,
        local: SocketAddr,
        transport: Transport,
    ) {
        if self.replay_refusal(msg, remote, local, transport) {
            return;
        }
        // Admission comes first: a refused call leaves no state behind.
        let Some(trunk) = self.admission.classify(remote) else {
            self.refuse(msg, remote, local, transport, None, Refusal::UnknownSource);
            return;
        };
        let plan = self.routes.plan();
        let number = msg.request_user().and_then(|u| normalize(u, plan));
        let caller_number = msg.calling().and_then(|u| normalize(u, plan));
        let caller: Box<str> = match &caller_number {
            Some(n) => n.as_str().into(),
            None => lossy(msg.calling().unwrap_or_default()),
        };
        self.current_trunk = Some(trunk);
        if let Some(t) = self.stats.trunks.get_mut(trunk) {
            t.offered += 1;
        }
        self.health.offered(self.now);
        // Carrier re-attempts (guard::dedup) are recognised before admission, so a
        // suppressed one spends no tokens.
        let policy = self
            .cfg
            .admission
            .trunks
            .get(trunk)
            .map(|t| t.dedup.clone())
            .unwrap_or_default();
        let key = if policy.enabled {
            self.dedup
                .key(trunk, caller_number.as_deref(), number.as_deref())
        } else {
            None
        };
        let previous = key.and_then(|k| self.dedup.get(k, self.now));
        if let Some(w) = self.retry_windows.get_mut(trunk) {
            w.record(self.now, previous.is_some());
        }
        let mut inherited = None;
        if let Some(prev) = previous {
            let stat = |e: &mut Engine, f: fn(&mut crate::stats::TrunkStats)| {
                if let Some(t) = e.stats.trunks.get_mut(trunk) {
                    f(t)
                }
            };
            stat(self, |t| t.reattempts += 1);
            match prev {
                Previous::InProgress(old) if self.calls.get(old).is_some() => {
                    match policy.in_progress {
                        InProgress::Supersede => {
                            stat(self, |t| t.superseded += 1);
                            inherited = self.supersede(old);
                        }
                        InProgress::Reject(status) => {
                            stat(self, |t| t.duplicates_rejected += 1);
                            self.refuse_with(msg, remote, local, transport, status, 0);
                            return;
                        }
                    }
                }
                Previous::Refused { until, status, .. }
                    if policy.suppress_after_refusal && self.now < until =>
                {
                    stat(self, |t| t.suppressed += 1);
                    let left = until.saturating_since(self.now).as_secs_f64().ceil() as u32;
                    self.refuse_with(msg, remote, local, transport, status, left.max(1));
                    return;
                }
                Previous::Answered(at) if self.now < at + policy.answered_window => {
                    match policy.after_answer {
                        AfterAnswer::Allow => stat(self, |t| t.reattempts_allowed += 1),
                        AfterAnswer::Reject(status) => {
                            stat(self, |t| t.duplicates_rejected += 1);
                            self.refuse_with(msg, remote, local, transport, status, 0);
                            return;
                        }
                    }
                }
                _ => stat(self, |t| t.reattempts_allowed += 1),
            }
        }
        let protected = self.admission.is_protected(number.as_deref());
        let slot = match inherited {
            Some(slot) => slot,
            None => {
                let now = self.ledger_now();
                match self.admission.admit(now, trunk, protected, &mut self.rng) {
                    Ok(slot) => slot,
                    Err(why) => {
                        let (status, retry) =
                            self.refuse(msg, remote, local, transport, Some(trunk), why);
                        if let Some(k) = key
                            && retry > 0
                        {
                            let until = self.now + std::time::Duration::from_secs(retry as u64);
                            self.dedup.set(
                                k,
                                Previous::Refused {
                                    until,
                                    status,
                                    retry_after: retry,
                                },
                                self.now,
                                policy.window,
                            );
                        }
                        return;
                    }
                }
            }
        };
        let Some(server) = self.new_server_tx(msg, remote, local, transport, TxOwner::Uas) else {
            return;
        };
        if let Some(t) = self.stats.trunks.get_mut(trunk) {
            t.admitted += 1;
        }
        self.respond(server, Some(msg), 100, reason(100), b"");
        if msg.max_forwards() == Some(0) {
            self.stats.too_many_hops += 1;
            self.respond(server, Some(msg), 483, reason(483), b"");
            return;
        }
        // Every call in set-up may need a dialog: admit it only while the dialog table
        // has room for all of them, so an answer always finds its dialog a place.
        if self.calls.is_full()
            || self.calls.len() + self.dialogs.len() >= self.cfg.proxy.max_dialogs
        {
            self.stats.table_full += 1;
            let retry = SmallText::new(format_args!(
                "Retry-After: {}\r\n",
                self.cfg.limits.table_full_retry_after
            ));
            self.respond(server, Some(msg), 503, reason(503), retry.as_bytes());
            return;
        }
        if let Some(e) = self.txs.servers.get_mut(server) {
            e.request.extend_from_slice(msg.as_bytes());
        }
        let dialled = match &number {
            Some(n) => n.as_str().into(),
            None => lossy(msg.request_user().unwrap_or_default()),
        };
        let call = Call {
            server,
            dialled,
            caller,
            number: number.map(Into::into),
            route: None,
            targets: Vec::new(),
            next: 0,
            branch: None,
            best: None,
            timer_c: None,
            route_by: None,
            started: self.now,
            scheduled: None,
            dialog: None,
            trunk,
            slot: Some(slot),
            target_slot: None,
            dedup: key,
            attempted: false,
        };
        let Ok(id) = self.calls.insert(call) else {
            return;
        };
        if let Some(e) = self.txs.servers.get_mut(server) {
            e.owner = TxOwner::Call(id);
        }
        if let Some(k) = key {
            self.dedup
                .set(k, Previous::InProgress(id), self.now, policy.window);
        }
        self.stats.calls_started += 1;
        let c = &self.calls.get(id).expect("just inserted");
        let event = Event::CallStarted {
            call: CallHandle(id.to_u64()),
            dialled: c.dialled.to_string(),
            caller: c.caller.to_string(),
        };
        self.out.event(event);
        self.route_call(id, msg);
    }

    /// Routes a new call. `msg` is its INVITE while the datagram is at hand (saves a
    /// rescan of the kept copy when the call is forwarded at once).
    fn route_call(&mut self, id: Key, msg: &Message<'_>) {
        use crate::config::AskHost;
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let known = call.number.as_deref().and_then(|n| self.routes.lookup(n));
        match (self.cfg.routing.ask_host, known) {
            (AskHost::Always, _) | (AskHost::Unknown, None) => self.ask_host(id, msg),
            (_, Some(targets)) => self.start_targets(id, targets, Some(msg)),
            (AskHost::Never, None) => match self.routes.default_route() {
                Some(targets) => self.start_targets(id, targets, Some(msg)),
                None => self.reject_call(id, self.cfg.routing.no_route_status),
            },
        }
    }

    /// Routes a call from the last-known-good cache (the host did not answer, failed,
    /// or is being bypassed), else rejects it with the route failure status.
    fn route_from_cache(&mut self, id: Key) {
        let cached = self
            .calls
            .get(id)
            .and_then(|c| c.number.as_deref())
            .and_then(|n| self.lkg.get(n));
        match cached {
            Some(targets) => {
                self.stats.route_fallbacks += 1;
                self.start_targets(id, targets, None);
            }
            None => {
                self.health.failed(self.now);
                self.reject_call(id, self.cfg.routing.route_failure_status)
            }
        }
    }

    /// Records how a route request went; reports the routing service degrading.
    fn host_outcome(&mut self, ok: bool) {
        if !ok {
            self.stats.host_route_errors += 1;
        }
        if let Some(degraded) = self.host_health.record(ok, self.now) {
            self.out.event(Event::RoutingDegraded { degraded });
        }
    }

    fn ask_host(&mut self, id: Key, msg: &Message<'_>) {
        let (degraded, change) = self.host_health.degraded(self.now);
        if let Some(d) = change {
            self.out.event(Event::RoutingDegraded { degraded: d });
        }
        // Two-sided bypass: while the node is in bypass, calls still arriving on
        // tracking numbers take the fast path without asking the host.
        let bypass = self.health.state() == crate::health::HealthState::Bypass;
        if degraded || bypass {
            self.stats.host_bypassed += 1;
            let known = self
                .calls
                .get(id)
                .and_then(|c| c.number.as_deref())
                .and_then(|n| self.routes.lookup(n).or_else(|| self.lkg.get(n)));
            match known.or_else(|| self.routes.default_route()) {
                Some(targets) => self.start_targets(id, targets, Some(msg)),
                None => self.reject_call(id, self.cfg.routing.route_failure_status),
            }
            return;
        }
        let deadline = self.now + self.cfg.routing.route_request_timeout;
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        call.route_by = Some(deadline);
        let event = Event::RouteRequest {
            call: CallHandle(id.to_u64()),
            dialled: call.dialled.to_string(),
            caller: call.caller.to_string(),
        };
        self.stats.route_requests += 1;
        self.out.event(event);
        self.schedule_call(id);
    }

    pub(crate) fn on_route_decision(
        &mut self,
        handle: CallHandle,
        decision: RouteDecision,
    ) -> Result<(), CallError> {
        let id = Key::from_u64(handle.0);
        let call = self.calls.get(id).ok_or(CallError::UnknownCall)?;
        if call.route_by.is_none() {
            return Err(CallError::NotRouting);
        }
        match decision {
            RouteDecision::Targets(t) if t.is_empty() => Err(CallError::NoTargets),
            RouteDecision::Targets(t) => {
                self.host_outcome(true);
                self.start_targets(id, Arc::from(t), None);
                Ok(())
            }
            RouteDecision::Reject(status) if !(400..=699).contains(&status) => {
                Err(CallError::InvalidStatus)
            }
            RouteDecision::Reject(status) => {
                // A 5xx is honoured (the host may know better), but it is the routing
                // service failing: enough of them and the engine stops asking for a while
                // and routes from what worked before (RoutingDegraded). A call is never
                // asked about twice.
                self.host_outcome(!(500..600).contains(&status));
                let status = if status == 503 {
                    self.cfg.proxy.downstream_503_status
                } else {
                    status
                };
                self.reject_call(id, status);
                Ok(())
            }
        }
    }

    fn start_targets(&mut self, id: Key, targets: Arc<[Target]>, msg: Option<&Message<'_>>) {
        let order = attempt_order(&targets, &mut self.rng);
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        call.route = Some(targets);
        call.targets = order;
        call.next = 0;
        call.route_by = None;
        self.try_next_target(id, msg);
    }

    /// Forwards to the next target whose breaker is closed, or answers upstream with
    /// the best final when none is left. Every try after the first spends from the
    /// retry budget; when it is empty the call fails fast.
    fn try_next_target(&mut self, id: Key, msg: Option<&Message<'_>>) {
        loop {
            let Some(call) = self.calls.get_mut(id) else {
                return;
            };
            let Some(target) = call.targets.get(call.next).cloned() else {
                self.fail_call(id);
                return;
            };
            call.next += 1;
            let retry = call.attempted;
            if !self.breakers.allows(target.addr) {
                self.stats.breaker_skips += 1;
                continue;
            }
            if retry {
                if !self.budget.try_retry(self.now) {
                    self.stats.budget_exhausted += 1;
                    self.fail_call(id);
                    return;
                }
                self.stats.failovers += 1;
            } else {
                self.budget.first_attempt(self.now);
            }
            if self.forward_invite(id, &target, msg) {
                if let Some(call) = self.calls.get_mut(id) {
                    call.attempted = true;
                }
                return;
            }
        }
    }

    /// The carrier re-attempted a call that is still ringing: CANCEL the old leg,
    /// answer the old INVITE 487 and hand its capacity slot to the new attempt.
    fn supersede(&mut self, old: Key) -> Option<Slot> {
        let call = self.calls.get_mut(old)?;
        let slot = call.slot.take();
        let (server, branch) = (call.server, call.branch);
        if let Some(cid) = branch {
            self.abandon_branch(cid);
        }
        if self
            .txs
            .servers
            .get(server)
            .is_some_and(|e| !e.tx.answered())
        {
            self.respond(server, None, 487, reason(487), b"");
        }
        self.end_call(old, EndReason::Superseded);
        slot
    }

    /// Feeds a destination's answer (or silence) to its circuit breaker.
    pub(crate) fn breaker_signal(
        &mut self,
        target: SocketAddr,
        status: Option<u16>,
        retry_after: Option<u32>,
    ) {
        let change = match status {
            None => self.breakers.failure(target, true, self.now),
            Some(503) if retry_after.is_some() => {
                let secs = retry_after.unwrap_or(0).clamp(1, 3600) as u64;
                self.breakers
                    .unavailable(target, std::time::Duration::from_secs(secs), self.now)
            }
            Some(500 | 502 | 503 | 504) => self.breakers.failure(target, false, self.now),
            Some(_) => self.breakers.success(target),
        };
        if let Some((target, state)) = change {
            self.out.event(Event::BreakerChanged { target, state });
            self.schedule_guard();
        }
    }

    /// Sends the call's INVITE to `target`. False when it could not be sent.
    fn forward_invite(&mut self, id: Key, target: &Target, msg: Option<&Message<'_>>) -> bool {
        let Some(call) = self.calls.get(id) else {
            return false;
        };
        let server = call.server;
        let Some(e) = self.txs.servers.get(server) else {
            return false;
        };
        let (local, transport) = (e.local, e.transport);
        let Some(target_slot) = self.admission.ledger.acquire_target(target.addr) else {
            self.stats.targets_full += 1;
            return false;
        };
        let owner = TxOwner::Branch {
            call: id,
            server,
            abandoned: false,
        };
        let cid = self.send_request(
            true,
            target.addr,
            local,
            transport,
            owner,
            |engine, branch, out| {
                engine.write_forwarded(server, branch, Some(target), true, msg, out)
            },
        );
        let Some(cid) = cid else {
            return false;
        };
        self.stats.invites_forwarded += 1;
        let timer_c = self.now + self.cfg.proxy.ring_timeout;
        if let Some(call) = self.calls.get_mut(id) {
            call.branch = Some(cid);
            call.timer_c = Some(timer_c);
            call.target_slot = Some(target_slot);
        }
        self.schedule_call(id);
        true
    }

    /// Writes the request of server transaction `server` as forwarded on `branch`:
    /// our Via on top, Max-Forwards decremented, `received`/`rport` recorded, and for a
    /// dialog-creating request a Record-Route and the target's Request-URI.
    pub(crate) fn write_forwarded(
        &mut self,
        server: Key,
        branch: &[u8],
        target: Option<&Target>,
        record_route: bool,
        inbound: Option<&Message<'_>>,
        out: &mut Vec<u8>,
    ) -> bool {
        let limits = self.cfg.wire;
        let Some(e) = self.txs.servers.get(server) else {
            return false;
        };
        // The datagram's own scan when at hand; the kept copy holds the same bytes.
        let stored;
        let msg = match inbound {
            Some(m) => m,
            None => match wire::scan(&e.request, &limits) {
                Ok(m) => {
                    stored = m;
                    &stored
                }
                Err(_) => return false,
            },
        };
        let local = e.local;
        let mut via = SmallText::default();
        via.push(b"Via: SIP/2.0/")
            .push(transport_token(e.transport).as_bytes())
            .push(b" ")
            .push_addr(local)
            .push(b";branch=")
            .push(branch)
            .push(b";rport");
        let mut rr = SmallText::default();
        rr.push(b"Record-Route: <sip:")
            .push_addr(local)
            .push(b";lr>");
        let (_, received) = response_target(&msg.top_via(), e.peer);
        let received = received.map(|ip| {
            let mut t = SmallText::default();
            t.push_ip(ip);
            t
        });
        let mut ruri = std::mem::take(&mut self.buf2);
        ruri.clear();
        if let Some(t) = target {
            let uri = msg.request_uri().unwrap_or_default();
            // A `tel:` Request-URI has no userinfo: its number (with its parameters)
            // becomes the user part, as RFC 3261 §19.1.6 converts it.
            let tel = tel_number(uri);
            let user = tel.or_else(|| userinfo(uri)).filter(|_| !t.has_user());
            match user {
                Some(user) => {
                    let (scheme, rest) = t.uri.split_once(':').unwrap_or(("sip", &t.uri));
                    ruri.extend_from_slice(scheme.as_bytes());
                    ruri.push(b':');
                    ruri.extend_from_slice(user);
                    ruri.push(b'@');
                    ruri.extend_from_slice(rest.as_bytes());
                    if tel.is_some() && !rest.contains("user=") {
                        ruri.extend_from_slice(b";user=phone");
                    }
                }
                None => ruri.extend_from_slice(t.uri.as_bytes()),
            }
        }
        let mut splice = Splice::new(msg)
            .insert_via(via.as_bytes())
            .set_via_received(received.as_ref().map(SmallText::as_bytes), e.peer.port());
        if record_route {
            splice = splice.insert_record_route(rr.as_bytes());
        }
        if target.is_some() {
            splice = match splice.rewrite_request_uri(&ruri) {
                Ok(s) => s,
                Err(_) => return false,
            };
        }
        if self.is_our_route(msg, local) {
            splice = match splice.remove_top_route() {
                Ok(s) => s,
                Err(_) => return false,
            };
        }
        let ok = match splice.decrement_max_forwards() {
            Ok(s) => {
                s.write_to(out);
                true
            }
            Err(_) => false,
        };
        self.buf2 = ruri;
        ok
    }

    /// Whether the request's first Route names this node (loose routing: it is popped).
    pub(crate) fn is_our_route(&self, msg: &Message<'_>, local: SocketAddr) -> bool {
        let Some(route) = msg.route() else {
            return false;
        };
        let uri = uri_of(route);
        let rest = uri
            .strip_prefix(b"sip:")
            .or_else(|| uri.strip_prefix(b"sips:"))
            .unwrap_or(uri);
        let mut me = SmallText::default();
        me.push_addr(local);
        rest.starts_with(me.as_bytes())
            && matches!(rest.get(me.as_bytes().len()), None | Some(b';'))
    }

    /// A downstream response on branch `cid` of call `call`.
    pub(crate) fn on_branch_response(
        &mut self,
        cid: Key,
        call: Key,
        server: Key,
        abandoned: bool,
        msg: &Message<'_>,
    ) {
        let Some(status) = msg.status() else {
            return;
        };
        if status > 100
            && let Some(dest) = self.txs.clients.get(cid).map(|e| e.dest)
        {
            self.breaker_signal(dest, Some(status), retry_after(msg));
        }
        let current = self.calls.get(call).is_some_and(|c| c.branch == Some(cid));
        if !current && (200..300).contains(&status) && self.answers_dialog(msg) {
            // A retransmission of the 2xx that answered the call (the caller's ACK has
            // not reached the callee yet): relayed upstream like the first (RFC 6026
            // §8.4), never mistaken for a stray answer and hung up.
            self.relay_upstream(server, msg);
            return;
        }
        if abandoned || !current {
            self.on_abandoned_response(cid, msg, status);
            return;
        }
        match status {
            100 => {}
            101..=199 => {
                let timer_c = self.now + self.cfg.proxy.ring_timeout;
                if let Some(c) = self.calls.get_mut(call) {
                    // RFC 3261 §16.7 step 2: a provisional resets Timer C.
                    c.timer_c = Some(timer_c);
                }
                self.schedule_call(call);
                if msg.to_tag().is_some() {
                    self.open_dialog(call, cid, msg, false);
                }
                self.relay_upstream(server, msg);
            }
            200..=299 => {
                self.open_dialog(call, cid, msg, true);
                self.relay_upstream(server, msg);
                self.answered(call);
            }
            _ => {
                let retry_after = status == 503 && !self.cfg.proxy.relay_503;
                let relay = if retry_after {
                    Vec::new()
                } else {
                    let mut bytes = Vec::new();
                    if let Ok(s) = Splice::new(msg).remove_top_via() {
                        s.write_to(&mut bytes);
                    }
                    bytes
                };
                let failover = self.cfg.proxy.failover_statuses.contains(&status);
                let Some(c) = self.calls.get_mut(call) else {
                    return;
                };
                c.branch = None;
                let r = rank(status);
                if c.best.as_ref().is_none_or(|b| r >= b.rank) {
                    c.best = Some(Best {
                        rank: r,
                        status,
                        bytes: relay,
                    });
                }
                // A 6xx means nowhere will do (RFC 3261 §16.7 step 5).
                if failover && r < 4 {
                    self.try_next_target(call, None);
                } else {
                    self.fail_call(call);
                }
            }
        }
    }

    /// Whether a response belongs to a dialog the proxy tracks (same Call-ID and tags).
    fn answers_dialog(&self, msg: &Message<'_>) -> bool {
        match (msg.from_tag(), msg.to_tag()) {
            (Some(from), Some(to)) => self.dialogs.find(msg.call_id(), from, to).is_some(),
            _ => false,
        }
    }

    /// The current branch timed out (Timer B): a 408 for failover purposes.
    pub(crate) fn on_branch_timeout(
        &mut self,
        cid: Key,
        call: Key,
        abandoned: bool,
        dest: SocketAddr,
    ) {
        self.breaker_signal(dest, None, None);
        if abandoned {
            return;
        }
        let Some(c) = self.calls.get_mut(call) else {
            return;
        };
        if c.branch != Some(cid) {
            return;
        }
        c.branch = None;
        if c.best.as_ref().is_none_or(|b| rank(408) >= b.rank) {
            c.best = Some(Best {
                rank: rank(408),
                status: 408,
                bytes: Vec::new(),
            });
        }
        self.try_next_target(call, None);
    }

    /// A response on a branch whose call no longer wants it: CANCEL a ringing branch,
    /// ACK and BYE an answer that came too late. Finals are ACKed by the transaction.
    fn on_abandoned_response(&mut self, cid: Key, msg: &Message<'_>, status: u16) {
        match status {
            100..=199 => self.send_cancel(cid),
            200..=299 => self.hang_up_stray_answer(cid, msg),
            _ => {}
        }
    }

    fn relay_upstream(&mut self, server: Key, msg: &Message<'_>) {
        let Some(status) = msg.status() else {
            return;
        };
        let Ok(splice) = Splice::new(msg).remove_top_via() else {
            return;
        };
        let mut bytes = std::mem::take(&mut self.buf2);
        bytes.clear();
        splice.write_to(&mut bytes);
        self.respond_bytes(server, status, &bytes);
        self.buf2 = bytes;
    }

    /// Creates (early) or confirms the dialog of `call` from a response with a To tag.
    fn open_dialog(&mut self, call: Key, cid: Key, resp: &Message<'_>, confirm: bool) {
        let limits = self.cfg.wire;
        let Some(c) = self.calls.get(call) else {
            return;
        };
        let (server, existing) = (c.server, c.dialog);
        let Some(to_tag) = resp.to_tag() else {
            return;
        };
        let existing = existing.filter(|&d| {
            self.dialogs
                .get(d)
                .is_some_and(|d| d.tag(&d.callee) == to_tag)
        });
        let key = match existing {
            Some(d) => d,
            None => {
                // A different early dialog (a fork downstream) is replaced.
                if let Some(old) = c.dialog {
                    self.dialogs.remove(old);
                }
                let (Some(s), Some(b)) = (self.txs.servers.get(server), self.txs.clients.get(cid))
                else {
                    return;
                };
                let Ok(req) = wire::scan(&s.request, &limits) else {
                    return;
                };
                let caller = SideInit {
                    addr: s.peer,
                    local: s.local,
                    transport: s.transport,
                    tag: req.from_tag().unwrap_or_default(),
                    contact: req.contact().map(uri_of).unwrap_or_default(),
                    name_addr: req.from().value,
                    cseq: req.cseq().number,
                };
                let callee = SideInit {
                    addr: b.dest,
                    local: b.local,
                    transport: b.transport,
                    tag: to_tag,
                    contact: resp.contact().map(uri_of).unwrap_or_default(),
                    name_addr: resp.to().value,
                    cseq: 0,
                };
                let Some(d) =
                    self.dialogs
                        .insert(call.to_u64(), req.call_id(), caller, callee, self.now)
                else {
                    return;
                };
                let started = self.calls.get_mut(call).map_or(self.now, |c| {
                    c.dialog = Some(d);
                    c.started
                });
                if let Some(dd) = self.dialogs.get_mut(d) {
                    dd.started = started;
                }
                d
            }
        };
        if confirm {
            let ack_wait = self.cfg.timers.t1x64();
            let max = self.cfg.proxy.max_call_duration;
            self.dialogs.confirm(key, self.now, ack_wait, max);
            self.schedule_dialog(key);
        }
    }

    /// The call was answered: it leaves set-up; its dialog carries on.
    fn answered(&mut self, id: Key) {
        let Some(mut call) = self.calls.remove(id) else {
            return;
        };
        if let Some(k) = call.dedup {
            self.dedup.update(k, Previous::Answered(self.now));
        }
        let slots = call.slot.take().map(|s| (s, call.target_slot.take()));
        match call.dialog {
            Some(d)
                if self
                    .dialogs
                    .get(d)
                    .is_some_and(|d| d.state == DialogState::Confirmed) =>
            {
                if let Some(d) = self.dialogs.get_mut(d) {
                    d.slots = slots;
                }
            }
            // A 2xx without a To tag confirms no dialog: an early one it leaves behind
            // has no deadline of its own, so it goes now, and the slots are dropped
            // (released) here rather than leaked.
            Some(d) => {
                self.dialogs.remove(d);
            }
            None => {}
        }
        self.stats.calls_answered += 1;
        if let (Some(n), Some(route)) = (call.number.as_deref(), call.route.clone()) {
            self.lkg.remember(n, route);
        }
        self.out.event(Event::CallAnswered {
            call: CallHandle(id.to_u64()),
            setup: self.now.saturating_since(call.started),
        });
    }

    /// Every target failed: the best final goes upstream (a 503 never does).
    fn fail_call(&mut self, id: Key) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let server = call.server;
        match call.best.take() {
            Some(best) if !best.bytes.is_empty() => {
                self.respond_bytes(server, best.status, &best.bytes);
                self.end_call(
                    id,
                    EndReason::Rejected {
                        status: best.status,
                    },
                );
            }
            Some(best) => {
                let status = if best.status == 503 {
                    self.stats.downstream_503_rewritten += 1;
                    let trunk = self.calls.get(id).map(|c| c.trunk);
                    trunk
                        .and_then(|t| self.cfg.admission.trunks.get(t))
                        .and_then(|t| t.downstream_503_status)
                        .unwrap_or(self.cfg.proxy.downstream_503_status)
                } else {
                    best.status
                };
                self.respond(server, None, status, reason(status), b"");
                self.end_call(id, EndReason::Rejected { status });
            }
            // No target could even be tried. If open breakers are why, say when the
            // first of them may be tried again (RFC 3261 §20.33), so the carrier does
            // not re-attempt into the same refusal.
            None => {
                let targets = self.calls.get(id).map(|c| c.targets.clone());
                let wait = targets
                    .and_then(|t| self.breakers.reopens_in(t.iter().map(|t| t.addr), self.now));
                let status = self.cfg.routing.route_failure_status;
                match wait {
                    Some(w) => {
                        let secs = w.as_secs_f64().ceil().max(1.0) as u32;
                        let mut extra = SmallText::default();
                        extra.push(b"Retry-After: ").push_u32(secs).push(b"\r\n");
                        self.reject_call_with(id, status, extra.as_bytes());
                    }
                    None => self.reject_call(id, status),
                }
            }
        }
    }

    /// Answers the call upstream with a status of the proxy's own and ends it.
    pub(crate) fn reject_call(&mut self, id: Key, status: u16) {
        self.reject_call_with(id, status, b"");
    }

    /// [`Engine::reject_call`] with extra header lines (each ending in CRLF).
    fn reject_call_with(&mut self, id: Key, status: u16, extra: &[u8]) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let (server, branch) = (call.server, call.branch);
        if let Some(cid) = branch {
            self.abandon_branch(cid);
        }
        self.respond(server, None, status, reason(status), extra);
        self.end_call(id, EndReason::Rejected { status });
    }

    /// Removes a call that ended without an answer and reports it.
    fn end_call(&mut self, id: Key, reason: EndReason) {
        let Some(call) = self.calls.remove(id) else {
            return;
        };
        if let Some(k) = call.dedup
            && reason != EndReason::Superseded
        {
            self.dedup.update(k, Previous::Failed);
        }
        if let Some(d) = call.dialog {
            self.dialogs.remove(d);
        }
        match reason {
            EndReason::Superseded => self.stats.calls_superseded += 1,
            EndReason::Cancelled => self.stats.calls_cancelled += 1,
            EndReason::NoAnswer => self.stats.calls_no_answer += 1,
            _ => self.stats.calls_rejected += 1,
        }
        self.out.event(Event::CallEnded {
            call: CallHandle(id.to_u64()),
            reason,
            duration: self.now.saturating_since(call.started),
        });
    }

    /// The upstream no longer wants this branch: CANCEL it if it has rung (RFC 3261
    /// §9.1 forbids a CANCEL before a provisional), else the CANCEL goes out when one
    /// arrives.
    fn abandon_branch(&mut self, cid: Key) {
        let Some(e) = self.txs.clients.get_mut(cid) else {
            return;
        };
        if let TxOwner::Branch { abandoned, .. } = &mut e.owner {
            *abandoned = true;
        }
        // Nothing guards the branch once the call is gone (no Timer C): if no final
        // comes, the transaction ends 64·T1 from now (RFC 3261 §9.1).
        e.tx.abandon(self.now, &self.cfg.timers);
        let proceeding = e.tx.state == ClientState::Proceeding;
        self.schedule_client(cid);
        if proceeding {
            self.send_cancel(cid);
        }
    }

    /// Sends one CANCEL for client INVITE `cid` (never a second).
    fn send_cancel(&mut self, cid: Key) {
        let limits = self.cfg.wire;
        let Some(e) = self.txs.clients.get_mut(cid) else {
            return;
        };
        if e.cancel.is_some() || e.tx.finished() {
            return;
        }
        // The INVITE ends 64·T1 after its CANCEL even if no final ever comes.
        e.tx.abandon(self.now, &self.cfg.timers);
        self.schedule_client(cid);
        let Some(e) = self.txs.clients.get(cid) else {
            return;
        };
        let (dest, local, transport) = (e.dest, e.local, e.transport);
        let cancel = self.send_request(
            false,
            dest,
            local,
            transport,
            TxOwner::Own,
            |engine, _branch, out| {
                // The CANCEL reuses the INVITE's branch; the table links it to the INVITE.
                let Some(e) = engine.txs.clients.get(cid) else {
                    return false;
                };
                match wire::scan(e.tx.request(), &limits) {
                    Ok(invite) => {
                        wire::write_cancel(&invite, out);
                        true
                    }
                    Err(_) => false,
                }
            },
        );
        if let Some(c) = cancel {
            self.stats.cancels_sent += 1;
            if let Some(e) = self.txs.clients.get_mut(cid) {
                e.cancel = Some(c);
            }
        }
    }

    /// A CANCEL: 200 for the CANCEL itself if it matches an INVITE (RFC 3261 §9.2),
    /// then the INVITE is ended with 487 and its branch cancelled.
    pub(crate) fn on_cancel(
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
            self.respond(id, Some(msg), 481, reason(481), b"");
            return;
        };
        self.respond(id, Some(msg), 200, reason(200), b"");
        let Some(e) = self.txs.servers.get(invite) else {
            return;
        };
        if e.tx.answered() {
            return;
        }
        match e.owner {
            TxOwner::Call(call) => {
                if let Some(cid) = self.calls.get(call).and_then(|c| c.branch) {
                    self.abandon_branch(cid);
                }
                self.respond(invite, None, 487, reason(487), b"");
                self.end_call(call, EndReason::Cancelled);
            }
            TxOwner::RelayServer { client: Some(cid) } => {
                // A re-INVITE being relayed: the callee answers the CANCEL with 487,
                // which is relayed back.
                if self
                    .txs
                    .clients
                    .get(cid)
                    .is_some_and(|c| c.tx.state == ClientState::Proceeding)
                {
                    self.send_cancel(cid);
                } else {
                    self.respond(invite, None, 487, reason(487), b"");
                }
            }
            _ => self.respond(invite, None, 487, reason(487), b""),
        }
    }

    pub(crate) fn schedule_call(&mut self, id: Key) {
        let Some(c) = self.calls.get_mut(id) else {
            return;
        };
        if let Some(t) = c.next_wake()
            && c.scheduled != Some(t)
        {
            c.scheduled = Some(t);
            self.timers.schedule(t, Owner::Call(id));
        }
    }

    pub(crate) fn on_call_timer(&mut self, id: Key) {
        let now = self.now;
        let Some(c) = self.calls.get_mut(id) else {
            return;
        };
        if c.route_by.is_some_and(|t| t <= now) {
            c.route_by = None;
            self.stats.route_timeouts += 1;
            self.host_outcome(false);
            self.route_from_cache(id);
            return;
        }
        if c.timer_c.is_some_and(|t| t <= now) {
            c.timer_c = None;
            let branch = c.branch.take();
            let server = c.server;
            if let Some(cid) = branch {
                self.abandon_branch(cid);
            }
            let status = self.cfg.proxy.ring_timeout_status;
            self.respond(server, None, status, reason(status), b"");
            self.end_call(id, EndReason::NoAnswer);
            return;
        }
        self.schedule_call(id);
    }
}
