//! The C ABI: the whole engine for C and C++ hosts. The only `unsafe` in the crate.
//!
//! Conventions (rustls-ffi and quiche style):
//!
//! * Every function returns a [`ringfence_status`] (except the few that return a
//!   static string or a count), checks every pointer (`RINGFENCE_NULL_ARGUMENT`), and
//!   runs inside a panic boundary: a panic becomes `RINGFENCE_PANIC` and never unwinds
//!   into C. After `RINGFENCE_PANIC` from an engine call, free that engine.
//! * Objects are opaque and owned by the caller from the moment a constructor writes
//!   them through its out-pointer until the matching `_free`, which accepts `NULL`.
//! * Time is a monotonic `uint64_t` nanosecond count supplied by the host (for example
//!   `clock_gettime(CLOCK_MONOTONIC)`); the engine never reads a clock of its own. The
//!   same clock must be used for every call on one engine.
//! * Addresses are a small explicit struct, [`ringfence_addr`], not `sockaddr`, because
//!   `sockaddr` layouts differ between platforms.
//! * Output text goes into caller buffers, snprintf style: on `RINGFENCE_OK`
//!   `*out_len` is the length without the NUL; on `RINGFENCE_BUFFER_TOO_SMALL` it is the
//!   size needed, NUL included, and nothing is written to the buffer. `(NULL, 0)` asks
//!   for the size.
//! * Error messages (`err_buf`, `err_cap`) are truncated to `err_cap - 1` bytes plus a
//!   NUL; `err_cap` 0 (or `err_buf` `NULL`) leaves the buffer untouched. When a
//!   constructor fails, its `*out` is not written.
//! * Call handles are never 0: 0 in an event's `call` means "no call".
//! * No bit pattern from C can be an invalid Rust value: enum values C passes in
//!   (`ringfence_status_str`) or leaves in memory the library writes (the fields of
//!   `ringfence_event`) are plain `u32` on the Rust side, and caller structs that may be
//!   garbage or shorter than ours (`ringfence_event`, `ringfence_stats`) are written
//!   through raw pointers, never through a Rust reference.
//! * Threading: an engine is used by one thread at a time (it may move between
//!   threads). A ledger may be shared by engines on different threads.
#![allow(unsafe_code, non_camel_case_types)]
// These are C entry points: the Rust compiler cannot check their callers whatever the
// signature says. Every pointer is null-checked and its contract documented instead.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::ffi::{CStr, c_char};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{AskHost, Config};
use crate::engine::{CallError, CallHandle, EndReason, Engine, Event, RouteDecision};
use crate::guard::{BreakerState, NodeLedger};
use crate::health::{HealthState, Override};
use crate::route::Target;

/// Result of every call. Its numeric values are stable.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ringfence_status {
    /// Success.
    RINGFENCE_OK = 0,
    /// Nothing (more) to return: no datagram to send, no event, no timeout.
    RINGFENCE_DONE = 1,
    /// A required pointer was `NULL`.
    RINGFENCE_NULL_ARGUMENT = 2,
    /// The output buffer is too small; the required size was written to `out_len`.
    RINGFENCE_BUFFER_TOO_SMALL = 3,
    /// The configuration is invalid; the error buffer says which field and why.
    RINGFENCE_INVALID_CONFIG = 4,
    /// No call has this handle (it ended, or never existed).
    RINGFENCE_UNKNOWN_CALL = 5,
    /// The call is not waiting for a route.
    RINGFENCE_NOT_ROUTING = 6,
    /// An argument is out of range or does not parse (a status code, a target).
    RINGFENCE_INVALID_ARGUMENT = 7,
    /// A panic was caught at the boundary; free the engine.
    RINGFENCE_PANIC = 8,
}

use ringfence_status::*;

impl ringfence_status {
    const ALL: [ringfence_status; 9] = [
        RINGFENCE_OK,
        RINGFENCE_DONE,
        RINGFENCE_NULL_ARGUMENT,
        RINGFENCE_BUFFER_TOO_SMALL,
        RINGFENCE_INVALID_CONFIG,
        RINGFENCE_UNKNOWN_CALL,
        RINGFENCE_NOT_ROUTING,
        RINGFENCE_INVALID_ARGUMENT,
        RINGFENCE_PANIC,
    ];

    /// The status with this value, if any: C may pass any `uint32_t`.
    fn from_u32(v: u32) -> Option<ringfence_status> {
        Self::ALL.into_iter().find(|s| *s as u32 == v)
    }
}

/// A socket address: IPv4 (`family` 4, address in `ip[0..4]`) or IPv6 (`family` 6),
/// port in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ringfence_addr {
    /// 4 or 6.
    pub family: u8,
    /// Port, host byte order.
    pub port: u16,
    /// Address bytes, network order (IPv4 uses the first four).
    pub ip: [u8; 16],
}

impl ringfence_addr {
    fn to_socket(self) -> Option<SocketAddr> {
        let ip = match self.family {
            4 => IpAddr::V4(Ipv4Addr::new(
                self.ip[0], self.ip[1], self.ip[2], self.ip[3],
            )),
            6 => IpAddr::V6(Ipv6Addr::from(self.ip)),
            _ => return None,
        };
        Some(SocketAddr::new(ip, self.port))
    }

    fn from_socket(a: SocketAddr) -> Self {
        let mut out = ringfence_addr {
            port: a.port(),
            ..Default::default()
        };
        match a.ip() {
            IpAddr::V4(v4) => {
                out.family = 4;
                out.ip[..4].copy_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                out.family = 6;
                out.ip = v6.octets();
            }
        }
        out
    }
}

/// Kinds of [`ringfence_event`]: the values of its `kind` field.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ringfence_event_kind {
    /// Answer with `ringfence_engine_route` or `ringfence_engine_reject` (`call`,
    /// `dialled`, `caller`).
    RINGFENCE_EVENT_ROUTE_REQUEST = 1,
    /// A call was accepted (`call`, `dialled`, `caller`).
    RINGFENCE_EVENT_CALL_STARTED = 2,
    /// A call was answered (`call`, `duration_ms` = setup time).
    RINGFENCE_EVENT_CALL_ANSWERED = 3,
    /// A call ended (`call`, `end_reason`, `status` for rejections, `duration_ms`).
    RINGFENCE_EVENT_CALL_ENDED = 4,
    /// The node drained: the last call ended.
    RINGFENCE_EVENT_DRAINED = 5,
    /// Load feedback changed the admitted rate (`value` calls/s, 0 when lifted).
    RINGFENCE_EVENT_CAPACITY_CHANGED = 6,
    /// A destination's breaker changed (`target`, `state`: 0 closed, 1 open, 2 half-open).
    RINGFENCE_EVENT_BREAKER_CHANGED = 7,
    /// The routing service degraded or recovered (`state`: 1 degraded, 0 recovered).
    RINGFENCE_EVENT_ROUTING_DEGRADED = 8,
    /// Health changed (`state`: 0 healthy, 1 degraded, 2 bypass; `value` = score).
    RINGFENCE_EVENT_HEALTH_CHANGED = 9,
}

/// Why a call ended: the values of the `end_reason` field of
/// `RINGFENCE_EVENT_CALL_ENDED`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ringfence_end_reason {
    /// Not a call-ended event.
    RINGFENCE_END_NONE = 0,
    /// The caller got a non-2xx final (`status`).
    RINGFENCE_END_REJECTED = 1,
    /// The caller cancelled.
    RINGFENCE_END_CANCELLED = 2,
    /// Ring timeout.
    RINGFENCE_END_NO_ANSWER = 3,
    /// BYE from the caller.
    RINGFENCE_END_HANGUP_CALLER = 4,
    /// BYE from the callee.
    RINGFENCE_END_HANGUP_CALLEE = 5,
    /// Maximum call duration.
    RINGFENCE_END_MAX_DURATION = 6,
    /// The 2xx was never ACKed.
    RINGFENCE_END_NO_ACK = 7,
    /// A carrier re-attempt replaced this attempt.
    RINGFENCE_END_SUPERSEDED = 8,
}

/// An event, as a tagged struct: `kind` says which fields mean something; the others
/// are 0. `ringfence_engine_poll_event` writes every field.
///
/// `kind` and `end_reason` are `uint32_t` holding `ringfence_event_kind` and
/// `ringfence_end_reason` values (compare them with the enum constants as usual).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ringfence_event {
    /// What happened: a `ringfence_event_kind` value.
    pub kind: u32,
    /// The call handle (route requests, call events). Never 0 for a call: 0 means the
    /// event is not about a call.
    pub call: u64,
    /// Status sent upstream for a rejected call.
    pub status: u16,
    /// Why a call ended: a `ringfence_end_reason` value (`RINGFENCE_END_NONE` for
    /// other events).
    pub end_reason: u32,
    /// Setup time (answered) or duration (ended), milliseconds.
    pub duration_ms: u64,
    /// Calls per second (capacity) or score (health).
    pub value: f64,
    /// A state code, per `kind`.
    pub state: u32,
    /// A destination (breaker events).
    pub target: ringfence_addr,
    /// Dialled number, NUL-terminated (truncated to fit).
    pub dialled: [c_char; 48],
    /// Calling number, NUL-terminated (truncated to fit).
    pub caller: [c_char; 48],
}

/// A snapshot of the main counters (the full set is in the Prometheus text), versioned
/// by its size: set `struct_size` to `sizeof(ringfence_stats)` before calling
/// `ringfence_engine_stats`. Later versions only ever append fields, so a program built
/// against an older header gets the fields it knows and a newer one learns, from the
/// `struct_size` written back, which fields this library filled.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ringfence_stats {
    /// In: `sizeof(ringfence_stats)` as the caller knows it. Out: the bytes the library
    /// filled, the smaller of that and the size of the struct this library knows; the
    /// bytes past it are left untouched.
    pub struct_size: usize,
    /// Datagrams received.
    pub datagrams: u64,
    /// Requests received.
    pub requests: u64,
    /// Responses received.
    pub responses: u64,
    /// Unparseable datagrams.
    pub malformed: u64,
    /// Retransmissions absorbed.
    pub retransmissions_absorbed: u64,
    /// Calls started.
    pub calls_started: u64,
    /// Calls answered.
    pub calls_answered: u64,
    /// Calls rejected.
    pub calls_rejected: u64,
    /// Calls cancelled.
    pub calls_cancelled: u64,
    /// Calls that hit the ring timeout (answered upstream with `ring_timeout_status`).
    pub calls_no_answer: u64,
    /// Answered calls that ended.
    pub calls_ended: u64,
    /// INVITEs forwarded downstream (first attempts and failovers).
    pub invites_forwarded: u64,
    /// Attempts on a next target after a failure.
    pub failovers: u64,
    /// Responses the engine sent (generated or relayed), by class: `[0]` 1xx, `[1]` 2xx
    /// ... `[5]` 6xx. Retransmissions are not counted.
    pub responses_sent: [u64; 6],
    /// New calls refused by admission (all causes).
    pub refused: u64,
    /// Carrier re-attempts recognised.
    pub reattempts: u64,
    /// Re-attempts suppressed inside our Retry-After.
    pub suppressed: u64,
    /// Calls in progress now.
    pub active_calls: u64,
    /// 0 healthy, 1 degraded, 2 bypass.
    pub health_state: u32,
    /// Health score, 0..=1.
    pub health_score: f64,
    /// 1 while draining.
    pub draining: u8,
    /// Calls replaced by a carrier re-attempt while ringing (added after `draining`:
    /// callers built against an older header get everything before it).
    pub calls_superseded: u64,
}

/// A configuration under construction. Opaque.
#[derive(Debug)]
pub struct ringfence_config {
    config: Config,
}

/// A capacity ledger shared by engines. Opaque.
#[derive(Debug)]
pub struct ringfence_ledger {
    ledger: Arc<NodeLedger>,
    anchor: Instant,
    anchor_ns: u64,
}

/// An engine. Opaque.
#[derive(Debug)]
pub struct ringfence_engine {
    engine: Engine,
    anchor: Instant,
    anchor_ns: u64,
}

fn instant_at(anchor: Instant, anchor_ns: u64, now_ns: u64) -> Instant {
    if now_ns >= anchor_ns {
        anchor + Duration::from_nanos(now_ns - anchor_ns)
    } else {
        anchor
            .checked_sub(Duration::from_nanos(anchor_ns - now_ns))
            .unwrap_or(anchor)
    }
}

impl ringfence_engine {
    fn at(&self, now_ns: u64) -> Instant {
        instant_at(self.anchor, self.anchor_ns, now_ns)
    }

    fn ns(&self, t: Instant) -> u64 {
        match t.checked_duration_since(self.anchor) {
            Some(d) => self
                .anchor_ns
                .saturating_add(d.as_nanos().min(u64::MAX as u128) as u64),
            None => self.anchor_ns.saturating_sub(
                self.anchor
                    .duration_since(t)
                    .as_nanos()
                    .min(u64::MAX as u128) as u64,
            ),
        }
    }
}

/// Runs `f` inside the panic boundary.
fn guard(f: impl FnOnce() -> ringfence_status) -> ringfence_status {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(RINGFENCE_PANIC)
}

macro_rules! try_ref {
    ($p:expr) => {
        match unsafe { $p.as_ref() } {
            Some(r) => r,
            None => return RINGFENCE_NULL_ARGUMENT,
        }
    };
}

macro_rules! try_mut {
    ($p:expr) => {
        match unsafe { $p.as_mut() } {
            Some(r) => r,
            None => return RINGFENCE_NULL_ARGUMENT,
        }
    };
}

/// Writes `s` into `buf`/`cap`, truncated to `cap - 1` bytes and NUL-terminated;
/// nothing when `buf` is null or `cap` is 0.
fn write_error(buf: *mut c_char, cap: usize, s: &str) {
    if buf.is_null() || cap == 0 {
        return;
    }
    let n = s.len().min(cap - 1);
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), n);
        *buf.add(n) = 0;
    }
}

/// Copies text into a caller buffer, NUL-terminated, snprintf style: `RINGFENCE_OK`
/// with the length (without the NUL) in `out_len`, or `RINGFENCE_BUFFER_TOO_SMALL`
/// with the size needed (NUL included) in `out_len` and the buffer untouched.
/// `(NULL, 0)` is a size query; `NULL` with a non-zero `cap` is an error.
fn write_text(text: &str, buf: *mut c_char, cap: usize, out_len: *mut usize) -> ringfence_status {
    let out_len = try_mut!(out_len);
    if buf.is_null() && cap != 0 {
        return RINGFENCE_NULL_ARGUMENT;
    }
    if text.len() + 1 > cap {
        *out_len = text.len() + 1;
        return RINGFENCE_BUFFER_TOO_SMALL;
    }
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), text.len());
        *buf.add(text.len()) = 0;
    }
    *out_len = text.len();
    RINGFENCE_OK
}

fn fill_cstr(dst: &mut [c_char; 48], s: &str) {
    let n = s.len().min(dst.len() - 1);
    for (d, b) in dst.iter_mut().zip(s.as_bytes()[..n].iter()) {
        *d = *b as c_char;
    }
    dst[n] = 0;
}

/// A static, NUL-terminated description of `status` (never `NULL`). Any value is
/// accepted: one that is not a `ringfence_status` gets a static "unknown status" text.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_status_str(status: u32) -> *const c_char {
    let Some(status) = ringfence_status::from_u32(status) else {
        return c"unknown status: not a ringfence_status value".as_ptr();
    };
    let s: &'static CStr = match status {
        RINGFENCE_OK => c"ok",
        RINGFENCE_DONE => c"done: nothing more to return",
        RINGFENCE_NULL_ARGUMENT => c"a required pointer argument was NULL",
        RINGFENCE_BUFFER_TOO_SMALL => {
            c"output buffer too small; the required size was written to out_len"
        }
        RINGFENCE_INVALID_CONFIG => c"invalid configuration",
        RINGFENCE_UNKNOWN_CALL => c"no call with this handle: it ended or never existed",
        RINGFENCE_NOT_ROUTING => c"the call is not waiting for a route",
        RINGFENCE_INVALID_ARGUMENT => c"an argument is out of range or does not parse",
        RINGFENCE_PANIC => c"internal panic caught at the C boundary; free the engine",
    };
    s.as_ptr()
}

/// The library version, static and NUL-terminated.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Proves the panic boundary: panics inside it and returns `RINGFENCE_PANIC`. Like every
/// caught panic, Rust's panic message is printed to stderr first (by the default panic
/// hook).
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_selftest_panic() -> ringfence_status {
    guard(|| panic!("ringfence_selftest_panic: a deliberate panic at the C boundary"))
}

// ----- config -----

/// A default configuration, written to `*out`. Free with `ringfence_config_free`.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_config_new(out: *mut *mut ringfence_config) -> ringfence_status {
    guard(|| {
        let out = try_mut!(out);
        *out = Box::into_raw(Box::new(ringfence_config {
            config: Config::default(),
        }));
        RINGFENCE_OK
    })
}

/// A configuration read from TOML text (`len` bytes, UTF-8, not necessarily
/// NUL-terminated; the format of the router example). On `RINGFENCE_INVALID_CONFIG` a
/// message naming the field and line is written to `err_buf`.
///
/// On failure `*out` is not written. Error messages go to `err_buf` (may be `NULL`),
/// truncated to `err_cap - 1` bytes and NUL-terminated; with `err_cap` 0 the buffer is
/// untouched.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_config_from_toml(
    text: *const c_char,
    len: usize,
    out: *mut *mut ringfence_config,
    err_buf: *mut c_char,
    err_cap: usize,
) -> ringfence_status {
    guard(|| {
        let out = try_mut!(out);
        if text.is_null() {
            return RINGFENCE_NULL_ARGUMENT;
        }
        let bytes = unsafe { std::slice::from_raw_parts(text.cast::<u8>(), len) };
        let Ok(text) = std::str::from_utf8(bytes) else {
            write_error(err_buf, err_cap, "config text is not UTF-8");
            return RINGFENCE_INVALID_CONFIG;
        };
        match Config::from_toml(text) {
            Ok(config) => {
                *out = Box::into_raw(Box::new(ringfence_config { config }));
                RINGFENCE_OK
            }
            Err(e) => {
                write_error(err_buf, err_cap, &e.to_string());
                RINGFENCE_INVALID_CONFIG
            }
        }
    })
}

/// Frees a configuration (`NULL` is a no-op).
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_config_free(cfg: *mut ringfence_config) {
    if !cfg.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(cfg) })));
    }
}

/// Sets the random seed (use a random value in production).
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_config_set_seed(
    cfg: *mut ringfence_config,
    seed: u64,
) -> ringfence_status {
    guard(|| {
        try_mut!(cfg).config.seed = seed;
        RINGFENCE_OK
    })
}

/// Sets the node-wide concurrent call limit (0: unlimited).
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_config_set_max_calls(
    cfg: *mut ringfence_config,
    max_calls: u32,
) -> ringfence_status {
    guard(|| {
        try_mut!(cfg).config.admission.max_calls = (max_calls > 0).then_some(max_calls);
        RINGFENCE_OK
    })
}

/// Sets the node-wide new-call rate limit in calls per second (0: unlimited).
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_config_set_calls_per_second(
    cfg: *mut ringfence_config,
    rate: f64,
) -> ringfence_status {
    guard(|| {
        let cfg = try_mut!(cfg);
        if !rate.is_finite() || rate < 0.0 {
            return RINGFENCE_INVALID_ARGUMENT;
        }
        cfg.config.admission.calls_per_second = (rate > 0.0).then_some(rate);
        RINGFENCE_OK
    })
}

/// Sets the ring timeout (Timer C) in milliseconds.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_config_set_ring_timeout_ms(
    cfg: *mut ringfence_config,
    ms: u64,
) -> ringfence_status {
    guard(|| {
        try_mut!(cfg).config.proxy.ring_timeout = Duration::from_millis(ms);
        RINGFENCE_OK
    })
}

/// When the host is asked to route: 0 never, 1 for numbers the table does not know,
/// 2 always.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_config_set_ask_host(
    cfg: *mut ringfence_config,
    mode: u32,
) -> ringfence_status {
    guard(|| {
        let cfg = try_mut!(cfg);
        cfg.config.routing.ask_host = match mode {
            0 => AskHost::Never,
            1 => AskHost::Unknown,
            2 => AskHost::Always,
            _ => return RINGFENCE_INVALID_ARGUMENT,
        };
        RINGFENCE_OK
    })
}

/// Appends a target to the default route (`"host:port"` or a `sip:` URI with an IP
/// host, NUL-terminated).
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_config_add_default_target(
    cfg: *mut ringfence_config,
    target: *const c_char,
) -> ringfence_status {
    guard(|| {
        let cfg = try_mut!(cfg);
        if target.is_null() {
            return RINGFENCE_NULL_ARGUMENT;
        }
        let Ok(s) = unsafe { CStr::from_ptr(target) }.to_str() else {
            return RINGFENCE_INVALID_ARGUMENT;
        };
        match Target::parse(s) {
            Ok(t) => {
                let p = cfg.config.routing.default_route.len() as u16;
                cfg.config.routing.default_route.push(t.with_priority(p, 1));
                RINGFENCE_OK
            }
            Err(_) => RINGFENCE_INVALID_ARGUMENT,
        }
    })
}

// ----- ledger -----

/// A capacity ledger for the engines of one node, from `cfg`'s admission settings,
/// written to `*out`. Free with `ringfence_ledger_free`. `RINGFENCE_INVALID_CONFIG` with
/// a message when `cfg` does not validate.
///
/// On failure `*out` is not written. Error messages go to `err_buf` (may be `NULL`),
/// truncated to `err_cap - 1` bytes and NUL-terminated; with `err_cap` 0 the buffer is
/// untouched.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_ledger_new(
    cfg: *const ringfence_config,
    now_ns: u64,
    out: *mut *mut ringfence_ledger,
    err_buf: *mut c_char,
    err_cap: usize,
) -> ringfence_status {
    guard(|| {
        let cfg = try_ref!(cfg);
        let out = try_mut!(out);
        let anchor = Instant::now();
        match NodeLedger::new(&cfg.config, anchor) {
            Ok(ledger) => {
                *out = Box::into_raw(Box::new(ringfence_ledger {
                    ledger,
                    anchor,
                    anchor_ns: now_ns,
                }));
                RINGFENCE_OK
            }
            Err(e) => {
                write_error(err_buf, err_cap, &e.to_string());
                RINGFENCE_INVALID_CONFIG
            }
        }
    })
}

/// Frees the host's reference to a ledger (`NULL` is a no-op). Engines that share it
/// keep it alive until they are freed too.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_ledger_free(ledger: *mut ringfence_ledger) {
    if !ledger.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(ledger) })));
    }
}

/// Calls holding a capacity slot node-wide (0 for `NULL`).
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_ledger_active_calls(ledger: *const ringfence_ledger) -> u32 {
    catch_unwind(AssertUnwindSafe(|| {
        unsafe { ledger.as_ref() }.map_or(0, |l| l.ledger.active_calls())
    }))
    .unwrap_or(0)
}

// ----- engine -----

fn new_engine(
    cfg: *const ringfence_config,
    ledger: Option<&ringfence_ledger>,
    now_ns: u64,
    out: *mut *mut ringfence_engine,
    err_buf: *mut c_char,
    err_cap: usize,
) -> ringfence_status {
    let cfg = try_ref!(cfg);
    let out = try_mut!(out);
    let (anchor, anchor_ns) = match ledger {
        Some(l) => (l.anchor, l.anchor_ns),
        None => (Instant::now(), now_ns),
    };
    let now = instant_at(anchor, anchor_ns, now_ns);
    let made = match ledger {
        Some(l) => Engine::with_ledger(cfg.config.clone(), now, l.ledger.clone()),
        None => Engine::new(cfg.config.clone(), now),
    };
    match made {
        Ok(engine) => {
            *out = Box::into_raw(Box::new(ringfence_engine {
                engine,
                anchor,
                anchor_ns,
            }));
            RINGFENCE_OK
        }
        Err(e) => {
            write_error(err_buf, err_cap, &e.to_string());
            RINGFENCE_INVALID_CONFIG
        }
    }
}

/// An engine with its own ledger, written to `*out`. Free with `ringfence_engine_free`.
/// `cfg` is copied; free it whenever convenient. `RINGFENCE_INVALID_CONFIG` with a
/// message (naming the field) when `cfg` does not validate.
///
/// On failure `*out` is not written. Error messages go to `err_buf` (may be `NULL`),
/// truncated to `err_cap - 1` bytes and NUL-terminated; with `err_cap` 0 the buffer is
/// untouched.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_engine_new(
    cfg: *const ringfence_config,
    now_ns: u64,
    out: *mut *mut ringfence_engine,
    err_buf: *mut c_char,
    err_cap: usize,
) -> ringfence_status {
    guard(|| new_engine(cfg, None, now_ns, out, err_buf, err_cap))
}

/// An engine sharing `ledger` with the other engines of the node (one per thread),
/// written to `*out`. `RINGFENCE_INVALID_CONFIG` with a message when `cfg` does not
/// validate or its admission settings differ from the ledger's.
///
/// On failure `*out` is not written. Error messages go to `err_buf` (may be `NULL`),
/// truncated to `err_cap - 1` bytes and NUL-terminated; with `err_cap` 0 the buffer is
/// untouched.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_engine_new_with_ledger(
    cfg: *const ringfence_config,
    ledger: *const ringfence_ledger,
    now_ns: u64,
    out: *mut *mut ringfence_engine,
    err_buf: *mut c_char,
    err_cap: usize,
) -> ringfence_status {
    guard(|| {
        let ledger = try_ref!(ledger);
        new_engine(cfg, Some(ledger), now_ns, out, err_buf, err_cap)
    })
}

/// Frees an engine (`NULL` is a no-op).
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_engine_free(engine: *mut ringfence_engine) {
    if !engine.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(engine) })));
    }
}

/// Feeds one UDP datagram that arrived from `remote` on `local` (the address peers
/// reach this node at; it is written into Via and Record-Route).
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_engine_recv(
    engine: *mut ringfence_engine,
    now_ns: u64,
    remote: *const ringfence_addr,
    local: *const ringfence_addr,
    buf: *const u8,
    len: usize,
) -> ringfence_status {
    guard(|| {
        let e = try_mut!(engine);
        let (Some(remote), Some(local)) =
            (try_ref!(remote).to_socket(), try_ref!(local).to_socket())
        else {
            return RINGFENCE_INVALID_ARGUMENT;
        };
        if buf.is_null() && len > 0 {
            return RINGFENCE_NULL_ARGUMENT;
        }
        let data = if len == 0 {
            &[][..]
        } else {
            unsafe { std::slice::from_raw_parts(buf, len) }
        };
        let now = e.at(now_ns);
        e.engine.handle_datagram(now, remote, local, data);
        RINGFENCE_OK
    })
}

/// Takes the next datagram to send: copied into `out` (`out_cap` bytes), its length in
/// `*out_len`, where to send it in `*dest` and from which local address in `*src` (may be
/// `NULL`). `RINGFENCE_DONE` when there is nothing to send; on
/// `RINGFENCE_BUFFER_TOO_SMALL` the datagram stays queued and `*out_len` is its size.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_engine_send(
    engine: *mut ringfence_engine,
    out: *mut u8,
    out_cap: usize,
    out_len: *mut usize,
    dest: *mut ringfence_addr,
    src: *mut ringfence_addr,
) -> ringfence_status {
    guard(|| {
        let e = try_mut!(engine);
        let out_len = try_mut!(out_len);
        let dest = try_mut!(dest);
        if out.is_null() {
            return RINGFENCE_NULL_ARGUMENT;
        }
        let Some(len) = e.engine.peek_transmit_len() else {
            return RINGFENCE_DONE;
        };
        if len > out_cap {
            *out_len = len;
            return RINGFENCE_BUFFER_TOO_SMALL;
        }
        let Some(t) = e.engine.poll_transmit() else {
            return RINGFENCE_DONE;
        };
        unsafe { std::ptr::copy_nonoverlapping(t.payload.as_ptr(), out, t.payload.len()) };
        *out_len = t.payload.len();
        *dest = ringfence_addr::from_socket(t.destination);
        if let Some(src) = unsafe { src.as_mut() } {
            *src = ringfence_addr::from_socket(t.source);
        }
        RINGFENCE_OK
    })
}

/// When `ringfence_engine_on_timeout` should next be called, as an absolute time on
/// the host's clock, in `*out_ns`. `RINGFENCE_DONE` when there is no deadline.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_engine_timeout_ns(
    engine: *mut ringfence_engine,
    out_ns: *mut u64,
) -> ringfence_status {
    guard(|| {
        let e = try_mut!(engine);
        let out_ns = try_mut!(out_ns);
        match e.engine.poll_timeout() {
            Some(t) => {
                *out_ns = e.ns(t);
                RINGFENCE_OK
            }
            None => RINGFENCE_DONE,
        }
    })
}

/// Advances time: runs every timer due at `now_ns`.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_engine_on_timeout(
    engine: *mut ringfence_engine,
    now_ns: u64,
) -> ringfence_status {
    guard(|| {
        let e = try_mut!(engine);
        let now = e.at(now_ns);
        e.engine.handle_timeout(now);
        RINGFENCE_OK
    })
}

/// Takes the next event into `*out`, writing every field (what `*out` held before does
/// not matter). `RINGFENCE_DONE` when there is none; `*out` is then untouched.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_engine_poll_event(
    engine: *mut ringfence_engine,
    out: *mut ringfence_event,
) -> ringfence_status {
    guard(|| {
        let e = try_mut!(engine);
        if out.is_null() {
            return RINGFENCE_NULL_ARGUMENT;
        }
        let Some(event) = e.engine.poll_event() else {
            return RINGFENCE_DONE;
        };
        // A plain write through the pointer: no Rust reference is made to caller memory,
        // whatever it held.
        unsafe { out.write(to_c_event(&event)) };
        RINGFENCE_OK
    })
}

fn to_c_event(event: &Event) -> ringfence_event {
    use ringfence_end_reason::*;
    use ringfence_event_kind::*;
    let mut c = ringfence_event {
        kind: RINGFENCE_EVENT_DRAINED as u32,
        call: 0,
        status: 0,
        end_reason: RINGFENCE_END_NONE as u32,
        duration_ms: 0,
        value: 0.0,
        state: 0,
        target: ringfence_addr::default(),
        dialled: [0; 48],
        caller: [0; 48],
    };
    match event {
        Event::RouteRequest {
            call,
            dialled,
            caller,
            ..
        } => {
            c.kind = RINGFENCE_EVENT_ROUTE_REQUEST as u32;
            c.call = call.0;
            fill_cstr(&mut c.dialled, dialled);
            fill_cstr(&mut c.caller, caller);
        }
        Event::CallStarted {
            call,
            dialled,
            caller,
            ..
        } => {
            c.kind = RINGFENCE_EVENT_CALL_STARTED as u32;
            c.call = call.0;
            fill_cstr(&mut c.dialled, dialled);
            fill_cstr(&mut c.caller, caller);
        }
        Event::CallAnswered { call, setup, .. } => {
            c.kind = RINGFENCE_EVENT_CALL_ANSWERED as u32;
            c.call = call.0;
            c.duration_ms = setup.as_millis() as u64;
        }
        Event::CallEnded {
            call,
            reason,
            duration,
            ..
        } => {
            c.kind = RINGFENCE_EVENT_CALL_ENDED as u32;
            c.call = call.0;
            c.duration_ms = duration.as_millis() as u64;
            let end = match reason {
                EndReason::Rejected { status } => {
                    c.status = *status;
                    RINGFENCE_END_REJECTED
                }
                EndReason::Cancelled => RINGFENCE_END_CANCELLED,
                EndReason::NoAnswer => RINGFENCE_END_NO_ANSWER,
                EndReason::Hangup { by_caller: true } => RINGFENCE_END_HANGUP_CALLER,
                EndReason::Hangup { by_caller: false } => RINGFENCE_END_HANGUP_CALLEE,
                EndReason::MaxDuration => RINGFENCE_END_MAX_DURATION,
                EndReason::NoAck => RINGFENCE_END_NO_ACK,
                EndReason::Superseded => RINGFENCE_END_SUPERSEDED,
            };
            c.end_reason = end as u32;
        }
        Event::Drained => c.kind = RINGFENCE_EVENT_DRAINED as u32,
        Event::CapacityChanged {
            calls_per_second, ..
        } => {
            c.kind = RINGFENCE_EVENT_CAPACITY_CHANGED as u32;
            c.value = calls_per_second.unwrap_or(0.0);
        }
        Event::BreakerChanged { target, state, .. } => {
            c.kind = RINGFENCE_EVENT_BREAKER_CHANGED as u32;
            c.target = ringfence_addr::from_socket(*target);
            c.state = match state {
                BreakerState::Closed => 0,
                BreakerState::Open => 1,
                BreakerState::HalfOpen => 2,
            };
        }
        Event::RoutingDegraded { degraded, .. } => {
            c.kind = RINGFENCE_EVENT_ROUTING_DEGRADED as u32;
            c.state = u32::from(*degraded);
        }
        Event::HealthChanged { to, score, .. } => {
            c.kind = RINGFENCE_EVENT_HEALTH_CHANGED as u32;
            c.state = health_code(*to);
            c.value = *score;
        }
    }
    c
}

fn health_code(s: HealthState) -> u32 {
    match s {
        HealthState::Healthy => 0,
        HealthState::Degraded => 1,
        HealthState::Bypass => 2,
    }
}

fn call_status(r: Result<(), CallError>) -> ringfence_status {
    match r {
        Ok(()) => RINGFENCE_OK,
        Err(CallError::UnknownCall) => RINGFENCE_UNKNOWN_CALL,
        Err(CallError::NotRouting) => RINGFENCE_NOT_ROUTING,
        Err(_) => RINGFENCE_INVALID_ARGUMENT,
    }
}

/// Answers a route request with `n` targets (each `"host:port"` or a `sip:` URI with
/// an IP host, NUL-terminated), tried in the order given. `RINGFENCE_INVALID_ARGUMENT`
/// for `n` 0 or a target that does not parse (checked before the handle),
/// `RINGFENCE_UNKNOWN_CALL` when no call has this handle (it ended, or never existed:
/// 0 never does), `RINGFENCE_NOT_ROUTING` when the call is no longer waiting for a
/// route (already answered, or its route request timed out and the engine routed it).
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_engine_route(
    engine: *mut ringfence_engine,
    now_ns: u64,
    call: u64,
    targets: *const *const c_char,
    n: usize,
) -> ringfence_status {
    guard(|| {
        let e = try_mut!(engine);
        if targets.is_null() || n == 0 {
            return if targets.is_null() {
                RINGFENCE_NULL_ARGUMENT
            } else {
                RINGFENCE_INVALID_ARGUMENT
            };
        }
        let mut list = Vec::with_capacity(n);
        for (i, p) in unsafe { std::slice::from_raw_parts(targets, n) }
            .iter()
            .enumerate()
        {
            if p.is_null() {
                return RINGFENCE_NULL_ARGUMENT;
            }
            let Ok(s) = unsafe { CStr::from_ptr(*p) }.to_str() else {
                return RINGFENCE_INVALID_ARGUMENT;
            };
            match Target::parse(s) {
                Ok(t) => list.push(t.with_priority(i as u16, 1)),
                Err(_) => return RINGFENCE_INVALID_ARGUMENT,
            }
        }
        let now = e.at(now_ns);
        call_status(
            e.engine
                .route(now, CallHandle(call), RouteDecision::Targets(list)),
        )
    })
}

/// Answers a route request by rejecting the call with `status`, which must be
/// 400..=699: any other status is `RINGFENCE_INVALID_ARGUMENT`, checked before the
/// handle (so also for a stale one). Then `RINGFENCE_UNKNOWN_CALL` or
/// `RINGFENCE_NOT_ROUTING` as for `ringfence_engine_route`.
///
/// A 4xx or 6xx is sent upstream as given: use one (404, 480, 486, 603...) when this
/// call cannot be routed. A 5xx is sent upstream too, except that a 503 becomes the
/// configured `downstream_503_status` (500 by default: carriers fail a 503 over to the
/// rest of the fleet), but the engine also takes it as the routing service failing,
/// like a route request left unanswered: when failures (5xx answers and timeouts) make
/// up the configured share of the recent route requests (by default half of the last
/// 10), it emits `RINGFENCE_EVENT_ROUTING_DEGRADED` (`state` 1) and for a cool-down (10 s
/// by default) stops sending route requests: new calls are routed from the routing
/// table, else the number's last-known-good route (the last route that worked for it),
/// else the default route, else rejected with `route_failure_status`. The rejected call
/// itself is not re-routed.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_engine_reject(
    engine: *mut ringfence_engine,
    now_ns: u64,
    call: u64,
    status: u16,
) -> ringfence_status {
    guard(|| {
        let e = try_mut!(engine);
        if !(400..=699).contains(&status) {
            return RINGFENCE_INVALID_ARGUMENT;
        }
        let now = e.at(now_ns);
        call_status(
            e.engine
                .route(now, CallHandle(call), RouteDecision::Reject(status)),
        )
    })
}

/// Starts draining (new calls refused, OPTIONS answered 503; a
/// `RINGFENCE_EVENT_DRAINED` event follows the last call).
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_engine_drain(
    engine: *mut ringfence_engine,
    now_ns: u64,
) -> ringfence_status {
    guard(|| {
        let e = try_mut!(engine);
        let now = e.at(now_ns);
        e.engine.drain(now);
        RINGFENCE_OK
    })
}

/// Ends a drain.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_engine_undrain(
    engine: *mut ringfence_engine,
    now_ns: u64,
) -> ringfence_status {
    guard(|| {
        let e = try_mut!(engine);
        let now = e.at(now_ns);
        e.engine.undrain(now);
        RINGFENCE_OK
    })
}

/// Reports how busy the host is (0.0 idle, 1.0 saturated), about once per second.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_engine_report_load(
    engine: *mut ringfence_engine,
    now_ns: u64,
    utilisation: f64,
) -> ringfence_status {
    guard(|| {
        let e = try_mut!(engine);
        if !utilisation.is_finite() || utilisation < 0.0 {
            return RINGFENCE_INVALID_ARGUMENT;
        }
        let now = e.at(now_ns);
        e.engine.report_load(now, utilisation);
        RINGFENCE_OK
    })
}

/// Forces the health state: 0 automatic, 1 force bypass, 2 force normal.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_engine_set_health_override(
    engine: *mut ringfence_engine,
    now_ns: u64,
    mode: u32,
) -> ringfence_status {
    guard(|| {
        let e = try_mut!(engine);
        let o = match mode {
            0 => Override::Auto,
            1 => Override::ForceBypass,
            2 => Override::ForceNormal,
            _ => return RINGFENCE_INVALID_ARGUMENT,
        };
        let now = e.at(now_ns);
        e.engine.set_health_override(now, o);
        RINGFENCE_OK
    })
}

/// Writes the bypass signal line stamped with `wall_ms` (Unix ms).
///
/// Text output, snprintf style: on `RINGFENCE_OK` the text and its NUL are in `buf`
/// and `*out_len` is its length without the NUL; on `RINGFENCE_BUFFER_TOO_SMALL`
/// (`cap` below the length + 1) `buf` is untouched and `*out_len` is the size needed,
/// NUL included. `buf` `NULL` with `cap` 0 asks for that size; `buf` `NULL` with a
/// non-zero `cap` is `RINGFENCE_NULL_ARGUMENT`. `out_len` must not be `NULL`.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_engine_bypass_signal(
    engine: *mut ringfence_engine,
    now_ns: u64,
    wall_ms: u64,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> ringfence_status {
    guard(|| {
        let e = try_mut!(engine);
        let now = e.at(now_ns);
        let line = e.engine.bypass_signal(now, wall_ms).render();
        write_text(&line, buf, cap, out_len)
    })
}

/// Writes this node's fleet report line for node name `node` (NUL-terminated UTF-8, one
/// token: not empty, no spaces, no `=`; else `RINGFENCE_INVALID_ARGUMENT`).
///
/// Text output, snprintf style: on `RINGFENCE_OK` the text and its NUL are in `buf`
/// and `*out_len` is its length without the NUL; on `RINGFENCE_BUFFER_TOO_SMALL`
/// (`cap` below the length + 1) `buf` is untouched and `*out_len` is the size needed,
/// NUL included. `buf` `NULL` with `cap` 0 asks for that size; `buf` `NULL` with a
/// non-zero `cap` is `RINGFENCE_NULL_ARGUMENT`. `out_len` must not be `NULL`.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_engine_node_report(
    engine: *mut ringfence_engine,
    now_ns: u64,
    node: *const c_char,
    wall_ms: u64,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> ringfence_status {
    guard(|| {
        let e = try_mut!(engine);
        if node.is_null() {
            return RINGFENCE_NULL_ARGUMENT;
        }
        let Ok(name) = unsafe { CStr::from_ptr(node) }.to_str() else {
            return RINGFENCE_INVALID_ARGUMENT;
        };
        if !crate::health::is_report_token(name) {
            return RINGFENCE_INVALID_ARGUMENT;
        }
        let now = e.at(now_ns);
        let line = e.engine.node_report(now, name, wall_ms).render();
        write_text(&line, buf, cap, out_len)
    })
}

/// Fills `*out` with the main counters. Set `out->struct_size` to
/// `sizeof(ringfence_stats)` first: the library fills that many bytes at most (only the
/// first `sizeof(size_t)` bytes of `*out` are read), and writes back in `struct_size`
/// how many it filled. `RINGFENCE_INVALID_ARGUMENT` (and `*out` untouched) when
/// `struct_size` is smaller than `sizeof(size_t)`.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_engine_stats(
    engine: *const ringfence_engine,
    out: *mut ringfence_stats,
) -> ringfence_status {
    guard(|| {
        let e = try_ref!(engine);
        if out.is_null() {
            return RINGFENCE_NULL_ARGUMENT;
        }
        // Only the size is read, and no reference is made: the caller's struct may be an
        // older, shorter one than ours.
        let caller_size = unsafe { (&raw const (*out).struct_size).read() };
        if caller_size < size_of::<usize>() {
            return RINGFENCE_INVALID_ARGUMENT;
        }
        let n = caller_size.min(size_of::<ringfence_stats>());
        let s = e.engine.stats();
        let filled = ringfence_stats {
            struct_size: n,
            datagrams: s.datagrams,
            requests: s.requests,
            responses: s.responses,
            malformed: s.malformed_total(),
            retransmissions_absorbed: s.retransmissions_absorbed,
            calls_started: s.calls_started,
            calls_answered: s.calls_answered,
            calls_rejected: s.calls_rejected,
            calls_cancelled: s.calls_cancelled,
            calls_no_answer: s.calls_no_answer,
            calls_ended: s.calls_ended,
            invites_forwarded: s.invites_forwarded,
            failovers: s.failovers,
            responses_sent: s.responses_sent,
            refused: s.refused_total(),
            reattempts: s.trunks.iter().map(|t| t.reattempts).sum(),
            suppressed: s.trunks.iter().map(|t| t.suppressed).sum(),
            active_calls: e.engine.active_calls() as u64,
            health_state: health_code(s.health),
            health_score: s.health_score,
            draining: u8::from(s.draining),
            calls_superseded: s.calls_superseded,
        };
        // The first `n` bytes: `n` is at most our size and at most what the caller has.
        unsafe {
            std::ptr::copy_nonoverlapping((&raw const filled).cast::<u8>(), out.cast::<u8>(), n);
        }
        RINGFENCE_OK
    })
}

/// Writes every counter in the Prometheus text format.
///
/// Text output, snprintf style: on `RINGFENCE_OK` the text and its NUL are in `buf`
/// and `*out_len` is its length without the NUL; on `RINGFENCE_BUFFER_TOO_SMALL`
/// (`cap` below the length + 1) `buf` is untouched and `*out_len` is the size needed,
/// NUL included. `buf` `NULL` with `cap` 0 asks for that size; `buf` `NULL` with a
/// non-zero `cap` is `RINGFENCE_NULL_ARGUMENT`. `out_len` must not be `NULL`.
#[unsafe(no_mangle)]
pub extern "C" fn ringfence_engine_stats_prometheus(
    engine: *const ringfence_engine,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> ringfence_status {
    guard(|| {
        let e = try_ref!(engine);
        let mut text = String::new();
        if e.engine.stats().write_prometheus(&mut text).is_err() {
            return RINGFENCE_PANIC;
        }
        write_text(&text, buf, cap, out_len)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_have_descriptions_and_the_panic_boundary_holds() {
        for s in [
            RINGFENCE_OK,
            RINGFENCE_DONE,
            RINGFENCE_PANIC,
            RINGFENCE_BUFFER_TOO_SMALL,
        ] {
            let d = unsafe { CStr::from_ptr(ringfence_status_str(s as u32)) };
            assert!(!d.to_bytes().is_empty());
        }
        for (i, s) in ringfence_status::ALL.into_iter().enumerate() {
            assert_eq!(s as u32, i as u32, "the statuses are 0.. in order");
            assert_eq!(ringfence_status::from_u32(i as u32), Some(s));
        }
        for v in [9, 0xA5A5_A5A5, u32::MAX] {
            let d = unsafe { CStr::from_ptr(ringfence_status_str(v)) };
            assert!(d.to_str().unwrap().starts_with("unknown status"));
        }
        assert_eq!(ringfence_selftest_panic(), RINGFENCE_PANIC);
    }

    #[test]
    fn addresses_round_trip() {
        for a in ["192.0.2.1:5060", "[2001:db8::1]:5080"] {
            let s: SocketAddr = a.parse().unwrap();
            assert_eq!(ringfence_addr::from_socket(s).to_socket(), Some(s));
        }
        assert_eq!(
            ringfence_addr {
                family: 9,
                ..Default::default()
            }
            .to_socket(),
            None
        );
    }

    #[test]
    fn a_whole_exchange_through_the_abi() {
        let mut cfg = std::ptr::null_mut();
        assert_eq!(ringfence_config_new(&mut cfg), RINGFENCE_OK);
        assert_eq!(
            ringfence_config_add_default_target(cfg, c"127.0.0.1:5080".as_ptr()),
            RINGFENCE_OK
        );
        let mut engine = std::ptr::null_mut();
        let mut err = [0 as c_char; 256];
        assert_eq!(
            ringfence_engine_new(cfg, 1_000, &mut engine, err.as_mut_ptr(), err.len()),
            RINGFENCE_OK
        );
        ringfence_config_free(cfg);
        let remote = ringfence_addr::from_socket("127.0.0.1:5070".parse().unwrap());
        let local = ringfence_addr::from_socket("127.0.0.1:5060".parse().unwrap());
        let opt = b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKc1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            ringfence_engine_recv(engine, 2_000, &remote, &local, opt.as_ptr(), opt.len()),
            RINGFENCE_OK
        );
        let mut out = [0u8; 8];
        let (mut len, mut dest) = (0usize, ringfence_addr::default());
        assert_eq!(
            ringfence_engine_send(
                engine,
                out.as_mut_ptr(),
                out.len(),
                &mut len,
                &mut dest,
                std::ptr::null_mut()
            ),
            RINGFENCE_BUFFER_TOO_SMALL
        );
        let mut big = vec![0u8; len];
        assert_eq!(
            ringfence_engine_send(
                engine,
                big.as_mut_ptr(),
                big.len(),
                &mut len,
                &mut dest,
                std::ptr::null_mut()
            ),
            RINGFENCE_OK
        );
        assert!(big.starts_with(b"SIP/2.0 200 OK"));
        assert_eq!(dest, remote);
        assert_eq!(
            ringfence_engine_send(
                engine,
                big.as_mut_ptr(),
                big.len(),
                &mut len,
                &mut dest,
                std::ptr::null_mut()
            ),
            RINGFENCE_DONE
        );
        assert_eq!(
            ringfence_engine_reject(engine, 3_000, 42, 486),
            RINGFENCE_UNKNOWN_CALL
        );
        assert_eq!(
            ringfence_engine_recv(std::ptr::null_mut(), 0, &remote, &local, opt.as_ptr(), 0),
            RINGFENCE_NULL_ARGUMENT
        );
        ringfence_engine_free(engine);
        ringfence_engine_free(std::ptr::null_mut());
    }
}
