//! Host-decided routing and the routing table through the engine, in virtual time: route
//! requests and their answers, the route-request deadline and the last-known-good
//! fallback, misuse of call handles, hot reload, lookup precedence and number
//! normalisation end to end.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ringfence::{
    AskHost, CallError, CallHandle, Config, EndReason, Event, NumberPlan, RouteDecision,
    RouteEntry, RoutingTable, Target,
};
use support::sip::Req;
use support::*;

/// Two more destinations, for tables with several distinct routes.
const DEST3: &str = "192.0.2.22:5080";
const DEST4: &str = "192.0.2.23:5080";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn target(s: &str) -> Target {
    Target::parse(s).expect("test target")
}

fn entry(number: &str, targets: &[&str]) -> RouteEntry {
    RouteEntry {
        number: number.into(),
        targets: targets
            .iter()
            .enumerate()
            .map(|(i, t)| target(t).with_priority(i as u16, 1))
            .collect(),
    }
}

fn table(entries: &[(&str, &[&str])], default: &[&str], plan: NumberPlan) -> RoutingTable {
    let entries: Vec<RouteEntry> = entries.iter().map(|(n, t)| entry(n, t)).collect();
    let default: Vec<Target> = default.iter().map(|t| target(t)).collect();
    RoutingTable::new(&entries, &default, plan).expect("valid table")
}

/// A config that asks the host as `mode` says, with a readable ring timeout.
fn asking(mode: AskHost) -> Config {
    let mut c = Config::default();
    c.routing.ask_host = mode;
    c.proxy.ring_timeout = secs(30);
    c
}

/// A config routing by `entries` and `default` alone (the host is never asked).
fn tabled(entries: &[(&str, &[&str])], default: &[&str]) -> Config {
    let mut c = asking(AskHost::Never);
    c.routing.routes = entries.iter().map(|(n, t)| entry(n, t)).collect();
    c.routing.default_route = default.iter().map(|t| target(t)).collect();
    c
}

/// A caller number of its own for every call, so that no call looks like a carrier's
/// re-attempt of another (those are the dedup layer's business, tested elsewhere).
fn caller() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "+1415555{:04}",
        NEXT.fetch_add(1, Ordering::Relaxed) % 10_000
    )
}

/// An INVITE to `dialled` with its own branch, Call-ID, From tag and caller.
fn invite(dialled: &str, branch: &str) -> Req {
    Req::invite(dialled, branch)
        .with(|r| r.from = format!("<sip:{}@carrier.example>;tag=f-{branch}", caller()))
}

/// The statuses of what went to the carrier.
fn upstream(out: &[Sent]) -> Vec<u16> {
    to(out, CARRIER).iter().filter_map(|s| s.status()).collect()
}

fn ended(h: &Harness) -> Vec<(CallHandle, EndReason)> {
    h.events
        .iter()
        .filter_map(|e| match e {
            Event::CallEnded { call, reason, .. } => Some((*call, *reason)),
            _ => None,
        })
        .collect()
}

fn answered(h: &Harness) -> Vec<CallHandle> {
    h.events
        .iter()
        .filter_map(|e| match e {
            Event::CallAnswered { call, .. } => Some(*call),
            _ => None,
        })
        .collect()
}

/// Sends `inv`, expects only the 100 back and one route request; returns its handle.
fn ask(h: &mut Harness, inv: &Req) -> CallHandle {
    let before = h.route_requests().len();
    let out = h.send(CARRIER, &inv.bytes());
    assert_eq!(upstream(&out), [100], "only the 100 while the host decides");
    assert_eq!(out.len(), 1, "nothing forwarded before the host answers");
    let reqs = h.route_requests();
    assert_eq!(reqs.len(), before + 1, "one route request per call");
    reqs[before].0
}

/// Sends `inv` to a table-routed engine; returns the INVITE that went to `dest`.
fn forwarded(h: &mut Harness, inv: &Req, dest: &str) -> Sent {
    let out = h.send(CARRIER, &inv.bytes());
    assert_eq!(upstream(&out), [100]);
    let fwd = one_to(&out, dest);
    assert_eq!(fwd.method().as_deref(), Some("INVITE"));
    fwd
}

fn ruri(s: &Sent) -> String {
    String::from_utf8_lossy(s.msg().request_uri().unwrap_or_default()).into_owned()
}

fn tag_of(s: &Sent) -> String {
    String::from_utf8_lossy(s.msg().to_tag().expect("a To tag")).into_owned()
}

// ----- (a) the host decides -----

#[test]
fn ask_always_emits_a_route_request_with_normalised_numbers_and_forwards_to_the_hosts_targets() {
    // The table knows the number (and has a default): Always asks the host regardless.
    let mut cfg = asking(AskHost::Always);
    cfg.routing.routes = vec![entry("+18005550199", &[DEST2])];
    cfg.routing.default_route = vec![target(DEST2)];
    let mut h = Harness::new(cfg);
    let inv = Req::invite("+1-800-555-0199", "ask1")
        .with(|r| r.from = "<sip:4155550123@carrier.example>;tag=f-ask1".into());
    let call = ask(&mut h, &inv);

    let reqs = h.route_requests();
    assert_eq!(reqs[0].1, "18005550199", "dialled number in E.164 digits");
    assert_eq!(
        reqs[0].2, "14155550123",
        "national caller number gets the country code"
    );
    match &h.events[0] {
        Event::CallStarted {
            call: c,
            dialled,
            caller,
            ..
        } => {
            assert_eq!(*c, call, "CallStarted and RouteRequest name the same call");
            assert_eq!(
                (dialled.as_str(), caller.as_str()),
                ("18005550199", "14155550123")
            );
        }
        other => panic!("expected CallStarted first, got {other:?}"),
    }
    assert_eq!(h.engine.active_calls(), 1);

    let (r, out) = h.route(call, RouteDecision::Targets(vec![target(DEST)]));
    r.expect("the call was waiting for a route");
    let fwd = one(out);
    assert_eq!(
        fwd.to,
        addr(DEST),
        "sent where the host said, not to the table's target"
    );
    assert_eq!(fwd.method().as_deref(), Some("INVITE"));
    assert_eq!(
        ruri(&fwd),
        "sip:+1-800-555-0199@192.0.2.20:5080",
        "the dialled user is kept as written"
    );

    let ring = one(h.send(DEST, &answer(&fwd, 180, Some("cal"))));
    assert_eq!((ring.to, ring.status()), (addr(CARRIER), Some(180)));
    let ok = one(h.send(DEST, &answer(&fwd, 200, Some("cal"))));
    assert_eq!((ok.to, ok.status()), (addr(CARRIER), Some(200)));
    assert_eq!(answered(&h), [call]);

    // The route deadline passing after the answer changes nothing.
    assert!(to(&h.advance(secs(5)), CARRIER).is_empty());
    let s = h.engine.stats();
    assert_eq!(
        (
            s.route_requests,
            s.route_timeouts,
            s.route_fallbacks,
            s.invites_forwarded
        ),
        (1, 0, 0, 1)
    );
}

#[test]
fn the_hosts_targets_are_tried_in_priority_order_with_failover() {
    let mut h = Harness::new(asking(AskHost::Always));
    let call = ask(&mut h, &invite("+18005550199", "prio"));
    // Given lowest priority first in the list: order comes from priority, not position.
    let targets = vec![
        target(DEST2).with_priority(5, 1),
        target(DEST).with_priority(1, 1),
    ];
    let (r, out) = h.route(call, RouteDecision::Targets(targets));
    r.unwrap();
    let first = one_to(&out, DEST);
    let out = h.send(DEST, &answer(&first, 500, Some("x")));
    assert!(
        upstream(&out).is_empty(),
        "nothing upstream while failing over"
    );
    let second = one_to(&out, DEST2);
    assert_eq!(second.method().as_deref(), Some("INVITE"));
    let ok = one_to(&h.send(DEST2, &answer(&second, 200, Some("y"))), CARRIER);
    assert_eq!(ok.status(), Some(200));
    assert_eq!(h.engine.stats().failovers, 1);
}

// ----- (b) the host rejects -----

#[test]
fn a_host_reject_goes_upstream_and_503_becomes_the_downstream_503_status() {
    for (decision, expected) in [(486, 486), (404, 404), (603, 603), (503, 500)] {
        let mut h = Harness::new(asking(AskHost::Always));
        let inv = invite("+18005550199", &format!("rej{decision}"));
        let call = ask(&mut h, &inv);
        let (r, out) = h.route(call, RouteDecision::Reject(decision));
        r.unwrap();
        let fin = one(out);
        assert_eq!(fin.to, addr(CARRIER), "nothing goes downstream");
        assert_eq!(fin.status(), Some(expected), "host said {decision}");
        assert!(fin.msg().to_tag().is_some());
        assert!(
            fin.header("Retry-After").is_none(),
            "no Retry-After: this is not our overload"
        );
        assert_eq!(
            ended(&h),
            [(call, EndReason::Rejected { status: expected })]
        );
        assert_eq!(h.engine.active_calls(), 0);
        // A retransmitted INVITE gets the same final again; the ACK ends it.
        assert_eq!(one(h.send(CARRIER, &inv.bytes())).bytes, fin.bytes);
        assert!(h.send(CARRIER, &inv.ack(&tag_of(&fin)).bytes()).is_empty());
        assert_eq!(h.engine.stats().invites_forwarded, 0);
    }
}

#[test]
fn a_host_503_follows_the_configured_downstream_503_status() {
    let mut cfg = asking(AskHost::Always);
    cfg.proxy.downstream_503_status = 502;
    let mut h = Harness::new(cfg);
    let call = ask(&mut h, &invite("+18005550199", "r502"));
    let (r, out) = h.route(call, RouteDecision::Reject(503));
    r.unwrap();
    assert_eq!(statuses(&out), [502]);
    assert_eq!(ended(&h), [(call, EndReason::Rejected { status: 502 })]);
}

// ----- (c) the host does not answer -----

/// Routes one call to `+18005550199` through the host to DEST and has DEST answer it, so
/// the number has a last-known-good route.
fn establish_route(h: &mut Harness) {
    let call = ask(h, &invite("+18005550199", "lkg1"));
    let (r, out) = h.route(call, RouteDecision::Targets(vec![target(DEST)]));
    r.unwrap();
    let fwd = one_to(&out, DEST);
    assert_eq!(
        one(h.send(DEST, &answer(&fwd, 200, Some("a1")))).status(),
        Some(200)
    );
    assert_eq!(h.engine.table_sizes().last_known_good, 1);
}

#[test]
fn an_unanswered_route_request_falls_back_to_the_numbers_last_known_good_route() {
    let mut cfg = asking(AskHost::Always);
    cfg.routing.route_request_timeout = ms(750);
    let mut h = Harness::new(cfg);
    establish_route(&mut h);

    // The same number, written nationally; the host stays silent.
    let inv = invite("8005550199", "lkg2");
    let call = ask(&mut h, &inv);
    assert_eq!(h.route_requests()[1].1, "18005550199");
    let quiet = h.advance(ms(749));
    assert!(quiet.is_empty(), "nothing before the deadline: {quiet:?}");
    assert_eq!(h.engine.stats().route_timeouts, 0);
    let out = h.advance(ms(1));
    let fwd = one(out);
    assert_eq!(fwd.to, addr(DEST), "the route that answered last time");
    assert_eq!(ruri(&fwd), "sip:8005550199@192.0.2.20:5080");
    let s = h.engine.stats();
    assert_eq!(
        (s.route_requests, s.route_timeouts, s.route_fallbacks),
        (2, 1, 1)
    );

    // The host's late answer is refused and changes nothing; the call carries on.
    let (r, out) = h.route(call, RouteDecision::Reject(486));
    assert_eq!(r, Err(CallError::NotRouting));
    assert!(out.is_empty());
    let (r, _) = h.route(call, RouteDecision::Targets(vec![target(DEST2)]));
    assert_eq!(r, Err(CallError::NotRouting));
    let ok = one(h.send(DEST, &answer(&fwd, 200, Some("a2"))));
    assert_eq!((ok.to, ok.status()), (addr(CARRIER), Some(200)));
    assert_eq!(answered(&h).last(), Some(&call));
    assert_eq!(h.engine.stats().route_fallbacks, 1);
}

#[test]
fn an_unanswered_route_request_without_a_cached_route_gets_the_route_failure_status() {
    let mut cfg = asking(AskHost::Always);
    cfg.routing.route_failure_status = 504;
    let mut h = Harness::new(cfg);
    establish_route(&mut h);

    // A call the host rejected leaves nothing in the cache.
    let busy = invite("+18005550100", "busy");
    let rejected = ask(&mut h, &busy);
    let (r, out) = h.route(rejected, RouteDecision::Reject(486));
    r.unwrap();
    assert!(
        h.send(CARRIER, &busy.ack(&tag_of(&one(out))).bytes())
            .is_empty()
    );
    assert_eq!(h.engine.table_sizes().last_known_good, 1);

    // Neither that number nor any other borrows +18005550199's route.
    for (n, branch) in [("+18005550100", "nolkg1"), ("+18005550198", "nolkg2")] {
        let call = ask(&mut h, &invite(n, branch));
        let quiet = h.advance(secs(2) - ms(1));
        assert!(quiet.is_empty());
        let out = h.advance(ms(1));
        assert_eq!(
            statuses(&out),
            [504],
            "route_failure_status, nothing downstream"
        );
        assert_eq!(out[0].to, addr(CARRIER));
        let inv = invite(n, branch);
        assert!(
            h.send(CARRIER, &inv.ack(&tag_of(&out[0])).bytes())
                .is_empty()
        );
        assert_eq!(
            ended(&h).last(),
            Some(&(call, EndReason::Rejected { status: 504 }))
        );
        assert_eq!(
            h.route(call, RouteDecision::Reject(486)).0,
            Err(CallError::UnknownCall)
        );
    }
    let s = h.engine.stats();
    assert_eq!((s.route_timeouts, s.route_fallbacks), (2, 0));
}

// ----- (d) misuse of handles and decisions -----

#[test]
fn route_rejects_unknown_stale_repeated_and_invalid_decisions() {
    let mut h = Harness::new(asking(AskHost::Always));
    let never = CallHandle(0x0000_0007_0000_0003);
    assert_eq!(
        h.route(never, RouteDecision::Targets(vec![target(DEST)])).0,
        Err(CallError::UnknownCall)
    );

    let inv1 = invite("+18005550199", "misuse1");
    let call1 = ask(&mut h, &inv1);
    for bad in [0, 100, 200, 399, 700, 999] {
        let (r, out) = h.route(call1, RouteDecision::Reject(bad));
        assert_eq!(r, Err(CallError::InvalidStatus), "Reject({bad})");
        assert!(out.is_empty());
    }
    let (r, out) = h.route(call1, RouteDecision::Targets(vec![]));
    assert_eq!(r, Err(CallError::NoTargets));
    assert!(out.is_empty());
    assert_eq!(
        h.engine.active_calls(),
        1,
        "the call still waits for its route"
    );

    // A valid answer after the refused ones routes the call; a second answer is refused.
    let (r, out) = h.route(call1, RouteDecision::Targets(vec![target(DEST)]));
    r.unwrap();
    let fwd = one_to(&out, DEST);
    for second in [
        RouteDecision::Targets(vec![target(DEST2)]),
        RouteDecision::Reject(486),
    ] {
        let (r, out) = h.route(call1, second);
        assert_eq!(r, Err(CallError::NotRouting));
        assert!(out.is_empty(), "a refused decision sends nothing");
    }

    // Once the call is over its handle is stale.
    h.send(DEST, &answer(&fwd, 486, Some("b")));
    assert_eq!(ended(&h), [(call1, EndReason::Rejected { status: 486 })]);
    assert_eq!(
        h.route(call1, RouteDecision::Reject(486)).0,
        Err(CallError::UnknownCall)
    );

    // A new call (reusing the freed slot) is not reachable through the old handle.
    let call2 = ask(&mut h, &invite("+18005550199", "misuse2"));
    assert_ne!(call2, call1);
    let (r, out) = h.route(call1, RouteDecision::Reject(404));
    assert_eq!(r, Err(CallError::UnknownCall));
    assert!(
        out.is_empty(),
        "the stale handle must not touch the new call"
    );
    assert_eq!(h.engine.active_calls(), 1);
    let (r, out) = h.route(call2, RouteDecision::Reject(404));
    r.unwrap();
    assert_eq!(upstream(&out), [404]);

    // A call cancelled while the host decides: its handle goes stale at once.
    let inv3 = invite("+18005550199", "misuse3");
    let call3 = ask(&mut h, &inv3);
    let out = h.send(CARRIER, &inv3.cancel().bytes());
    assert_eq!(upstream(&out), [200, 487]);
    assert_eq!(ended(&h).last(), Some(&(call3, EndReason::Cancelled)));
    let (r, out) = h.route(call3, RouteDecision::Targets(vec![target(DEST)]));
    assert_eq!(r, Err(CallError::UnknownCall));
    assert!(out.is_empty(), "nothing forwarded for a cancelled call");
    // ...and its deadline passing later does nothing either.
    assert!(h.advance(secs(3)).iter().all(|s| s.status() != Some(480)));
    assert_eq!(h.engine.stats().route_timeouts, 0);
}

// ----- (e) asking only for unknown numbers -----

#[test]
fn ask_unknown_routes_table_numbers_directly_and_asks_the_host_for_the_rest() {
    let mut cfg = asking(AskHost::Unknown);
    cfg.routing.routes = vec![entry("+18005550199", &[DEST]), entry("+1888*", &[DEST2])];
    // The default route is not used when asking for unknown numbers.
    cfg.routing.default_route = vec![target(DEST4)];
    let mut h = Harness::new(cfg);

    forwarded(&mut h, &invite("8005550199", "known"), DEST);
    forwarded(&mut h, &invite("+18885550100", "prefix"), DEST2);
    assert!(
        h.route_requests().is_empty(),
        "table numbers route without asking"
    );

    let call = ask(&mut h, &invite("+442079460000", "intl"));
    assert_eq!(h.route_requests()[0].1, "442079460000");
    let (r, out) = h.route(call, RouteDecision::Targets(vec![target(DEST3)]));
    r.unwrap();
    assert_eq!(one(out).to, addr(DEST3));

    // Not a number at all: the host is asked with the user as written; no answer, no
    // cached route: route_failure_status (the default route is still not used).
    let call = ask(&mut h, &invite("alice", "name"));
    assert_eq!(h.route_requests()[1].1, "alice");
    let out = h.advance(secs(2));
    assert_eq!(statuses(&out), [480]);
    assert!(to(&out, DEST4).is_empty());
    assert_eq!(ended(&h), [(call, EndReason::Rejected { status: 480 })]);
    assert_eq!(h.engine.stats().route_requests, 2);
}

// ----- (f) hot reload -----

#[test]
fn set_routes_mid_call_keeps_the_call_on_its_target_and_new_calls_use_the_new_table() {
    let mut h = Harness::new(tabled(&[("+18005550199", &[DEST])], &[DEST3]));
    let inv = invite("+18005550199", "reload1");
    let fwd = forwarded(&mut h, &inv, DEST);

    h.engine.set_routes(table(
        &[("+18005550199", &[DEST2])],
        &[],
        NumberPlan::default(),
    ));

    // The call in progress rings, is answered, ACKed and hung up through DEST.
    let ring = one(h.send(DEST, &answer(&fwd, 180, Some("old"))));
    assert_eq!((ring.to, ring.status()), (addr(CARRIER), Some(180)));
    let ok = one(h.send(DEST, &answer(&fwd, 200, Some("old"))));
    assert_eq!((ok.to, ok.status()), (addr(CARRIER), Some(200)));
    let in_dialog = |method: &str, branch: &str, cseq: u32| {
        Req::new(
            method,
            "sip:callee@192.0.2.20:5080",
            "192.0.2.1:5060",
            branch,
        )
        .with(|r| {
            r.call_id = inv.call_id.clone();
            r.from = inv.from.clone();
            r.to = format!("{};tag=old", inv.to);
            r.cseq = cseq;
            r.extra.push("Route: <sip:192.0.2.10:5060;lr>".into());
        })
    };
    let ack = one(h.send(CARRIER, &in_dialog("ACK", "reload1ack", 1).bytes()));
    assert_eq!((ack.to, ack.method().as_deref()), (addr(DEST), Some("ACK")));
    let bye = one(h.send(CARRIER, &in_dialog("BYE", "reload1bye", 2).bytes()));
    assert_eq!((bye.to, bye.method().as_deref()), (addr(DEST), Some("BYE")));
    let done = one(h.send(DEST, &answer(&bye, 200, None)));
    assert_eq!((done.to, done.status()), (addr(CARRIER), Some(200)));
    assert!(matches!(
        ended(&h)[..],
        [(_, EndReason::Hangup { by_caller: true })]
    ));

    // A new call to the same number follows the new table...
    forwarded(&mut h, &invite("+18005550199", "reload2"), DEST2);
    // ...and the old table's default route is gone with it.
    let out = h.send(CARRIER, &invite("+442079460000", "reload3").bytes());
    assert_eq!(upstream(&out), [100, 404]);
    assert!(to(&out, DEST3).is_empty());
}

#[test]
fn set_routes_mid_call_failover_uses_the_targets_the_call_was_routed_with() {
    let mut h = Harness::new(tabled(&[("+18005550199", &[DEST, DEST2])], &[]));
    let first = forwarded(&mut h, &invite("+18005550199", "reloadfo"), DEST);
    h.engine.set_routes(table(
        &[("+18005550199", &[DEST3])],
        &[],
        NumberPlan::default(),
    ));
    let out = h.send(DEST, &answer(&first, 500, Some("x")));
    let second = one_to(&out, DEST2);
    assert_eq!(second.method().as_deref(), Some("INVITE"));
    assert!(
        to(&out, DEST3).is_empty(),
        "the new table is not consulted mid-call"
    );
    let ok = one_to(&h.send(DEST2, &answer(&second, 200, Some("y"))), CARRIER);
    assert_eq!(ok.status(), Some(200));
}

// ----- (g) precedence -----

#[test]
fn exact_beats_longest_prefix_beats_shorter_prefix_beats_default() {
    let entries: &[(&str, &[&str])] = &[
        ("+1800*", &[DEST2]),
        ("+1 800 555 0199", &[DEST]),
        ("1800555*", &[DEST3]),
    ];
    let mut h = Harness::new(tabled(entries, &[DEST4]));
    for (dialled, dest) in [
        ("+18005550199", DEST),   // exact, though two prefixes match too
        ("+18005550100", DEST3),  // the longest prefix
        ("+18001234567", DEST2),  // the shorter prefix
        ("+442079460000", DEST4), // nothing matches: default
        ("8005550142", DEST3),    // national form normalised first, then matched
    ] {
        let fwd = forwarded(&mut h, &invite(dialled, &format!("prec{dialled}")), dest);
        assert_eq!(fwd.to, addr(dest), "{dialled}");
    }

    // Without a default, an unmatched number gets no_route_status.
    let mut cfg = tabled(entries, &[]);
    cfg.routing.no_route_status = 480;
    let mut h = Harness::new(cfg);
    let out = h.send(CARRIER, &invite("+442079460000", "noroute").bytes());
    assert_eq!(upstream(&out), [100, 480]);
    assert_eq!(out.len(), 2, "nothing downstream");
    forwarded(&mut h, &invite("+18001234567", "stillprefix"), DEST2);
}

// ----- (h) normalisation end to end -----

#[test]
fn dialled_and_calling_numbers_are_normalised_in_route_requests() {
    let mut h = Harness::new(asking(AskHost::Always));
    let cases = [
        (
            "sip:+1-800-555-0199@192.0.2.10",
            "sip:+1-415-555-0123@carrier.example",
            "18005550199",
            "14155550123",
        ),
        (
            "sip:%2B18005550199@192.0.2.10",
            "sip:%2B14155550123@carrier.example",
            "18005550199",
            "14155550123",
        ),
        (
            "sip:8005550199@192.0.2.10;user=phone",
            "sip:4155550123@carrier.example;user=phone",
            "18005550199",
            "14155550123",
        ),
        (
            "sip:18005550199@192.0.2.10",
            "sip:14155550123@carrier.example",
            "18005550199",
            "14155550123",
        ),
        (
            "sip:(800)555-0199@192.0.2.10",
            "sip:415.555.0123@carrier.example",
            "18005550199",
            "14155550123",
        ),
        (
            "sip:+18005550199;npdi;rn=+18005550000@192.0.2.10;user=phone",
            "sip:+14155550123;cpc=ordinary@carrier.example;user=phone",
            "18005550199",
            "14155550123",
        ),
        (
            "tel:+1-800-555-0199",
            "tel:+1-415-555-0123",
            "18005550199",
            "14155550123",
        ),
        (
            "tel:8005550199;phone-context=+1",
            "sip:anonymous@anonymous.invalid",
            "18005550199",
            "anonymous",
        ),
        (
            "sip:01144207946000@192.0.2.10",
            "sip:+442079460000@carrier.example",
            "44207946000",
            "442079460000",
        ),
    ];
    for (i, (uri, from, dialled, caller)) in cases.iter().enumerate() {
        let branch = format!("norm{i}");
        let inv = Req::invite("x", &branch).with(|r| {
            r.uri = (*uri).into();
            r.to = format!("<{uri}>");
            r.from = format!("<{from}>;tag=f{i}");
        });
        let call = ask(&mut h, &inv);
        let (_, d, c) = h.route_requests()[i].clone();
        assert_eq!(
            (d.as_str(), c.as_str()),
            (*dialled, *caller),
            "{uri} from {from}"
        );
        h.route(call, RouteDecision::Reject(404)).0.unwrap();
    }
}

#[test]
fn every_written_form_of_a_number_finds_its_table_entry_and_keeps_its_user() {
    let mut h = Harness::new(tabled(&[("+1 (800) 555-0199", &[DEST])], &[]));
    for (i, (uri, user)) in [
        ("sip:+1-800-555-0199@192.0.2.10", "+1-800-555-0199"),
        ("sip:8005550199@192.0.2.10;user=phone", "8005550199"),
        ("sip:18005550199@192.0.2.10", "18005550199"),
        ("sip:%2B18005550199@192.0.2.10", "%2B18005550199"),
        (
            "sip:+18005550199;npdi@192.0.2.10;user=phone",
            "+18005550199;npdi",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let inv = Req::invite("x", &format!("form{i}")).with(|r| {
            r.uri = uri.into();
            r.from = format!("<sip:{}@carrier.example>;tag=form{i}", caller());
        });
        let fwd = forwarded(&mut h, &inv, DEST);
        assert_eq!(ruri(&fwd), format!("sip:{user}@192.0.2.20:5080"), "{uri}");
    }
    let out = h.send(CARRIER, &invite("8005550198", "other").bytes());
    assert_eq!(
        upstream(&out),
        [100, 404],
        "a neighbouring number is not routed"
    );
}

#[test]
fn a_tel_request_uri_is_forwarded_with_its_number() {
    let mut h = Harness::new(tabled(&[("+18005550199", &[DEST])], &[]));
    for (i, (uri, forwarded_as)) in [
        (
            "tel:+1-800-555-0199",
            "sip:+1-800-555-0199@192.0.2.20:5080;user=phone",
        ),
        (
            "tel:8005550199;phone-context=+1",
            "sip:8005550199;phone-context=+1@192.0.2.20:5080;user=phone",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let inv = Req::invite("x", &format!("tel{i}")).with(|r| {
            r.uri = uri.into();
            r.from = format!("<sip:{}@carrier.example>;tag=tel{i}", caller());
        });
        let fwd = forwarded(&mut h, &inv, DEST);
        // RFC 3261 §19.1.6: the destination must still see the dialled number.
        assert_eq!(ruri(&fwd), forwarded_as, "{uri}");
    }
}

#[test]
fn a_reloaded_table_brings_its_own_numbering_plan() {
    let mut h = Harness::new(tabled(&[("+442079460000", &[DEST])], &[]));
    // Under the default (NANP) plan a UK national number does not normalise to +44.
    let out = h.send(CARRIER, &invite("02079460000", "uk1").bytes());
    assert_eq!(upstream(&out), [100, 404]);
    let uk = NumberPlan {
        country_code: "44".into(),
        national_prefix: "0".into(),
        international_prefix: "00".into(),
        national_length: 10,
    };
    h.engine
        .set_routes(table(&[("+44 20 7946 0000", &[DEST2])], &[], uk));
    forwarded(&mut h, &invite("02079460000", "uk2"), DEST2);
    forwarded(&mut h, &invite("00442079460000", "uk3"), DEST2);
    forwarded(&mut h, &invite("+442079460000", "uk4"), DEST2);
}
