//! Admission control through the engine: trunks, limits, shedding, drain, RFC 7339,
//! load feedback and the shared ledger.

mod support;

use ringfence::guard::{Refusal, TrunkConfig};
use ringfence::{Config, Event};
use support::sip::Req;
use support::*;

fn limited(max_calls: u32) -> Config {
    let mut c = routed(&[DEST]);
    c.admission.max_calls = Some(max_calls);
    // Hard limit only: no early shedding in these tests.
    c.admission.shed_watermark = 1.0;
    c
}

fn invite(n: u32) -> Req {
    Req::invite("+18005550199", &format!("adm{n}")).with(|r| {
        r.from = format!("<sip:+1415555{n:04}@carrier.example>;tag=f{n}");
    })
}

#[test]
fn concurrency_limit_refuses_statelessly_and_releases_on_end() {
    let mut h = Harness::new(limited(2));
    let a = one_to(&h.send(CARRIER, &invite(1).bytes()), DEST);
    one_to(&h.send(CARRIER, &invite(2).bytes()), DEST);
    let refused = invite(3);
    let r = one(h.send(CARRIER, &refused.bytes()));
    assert_eq!(r.status(), Some(503));
    let retry: u32 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!(
        (5..=10).contains(&retry),
        "base 5 + jitter up to 5: {retry}"
    );
    assert!(r.msg().to_tag().is_some());
    // Stateless, but a retransmission gets the same bytes.
    let again = one(h.send(CARRIER, &refused.bytes()));
    assert_eq!(again.bytes, r.bytes);
    let s = h.engine.stats();
    assert_eq!(s.refused[Refusal::NodeCalls.index()], 1);
    assert_eq!(
        s.retransmissions_absorbed, 1,
        "the retransmission replays the refusal"
    );
    assert_eq!(
        h.engine.table_sizes().calls,
        2,
        "no state for the refused call"
    );
    // End the first call: its slot comes back.
    h.send(DEST, &answer(&a, 486, Some("x")));
    assert_eq!(h.engine.stats().node_active_calls, 1);
    let out = h.send(CARRIER, &invite(4).bytes());
    assert_eq!(one_to(&out, DEST).method().as_deref(), Some("INVITE"));
}

#[test]
fn unknown_sources_get_403_when_not_assigned_to_a_trunk() {
    let mut c = routed(&[DEST]);
    let mut t = TrunkConfig::new("carrier-a");
    t.sources = vec!["192.0.2.0/24".parse().unwrap()];
    c.admission.trunks = vec![t];
    c.admission.unknown_sources = None;
    let mut h = Harness::new(c);
    assert_eq!(
        one_to(&h.send(CARRIER, &invite(1).bytes()), DEST)
            .method()
            .as_deref(),
        Some("INVITE")
    );
    let r = one(h.send(
        CARRIER2,
        &invite(2)
            .with(|r| r.via = vec!["SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKunk".into()])
            .bytes(),
    ));
    assert_eq!(r.status(), Some(403));
    let s = h.engine.stats();
    assert_eq!(s.refused[Refusal::UnknownSource.index()], 1);
    assert_eq!(s.trunks[0].admitted, 1);
}

#[test]
fn drain_refuses_new_calls_keeps_old_ones_and_reports_drained() {
    let mut h = Harness::new(routed(&[DEST]));
    let inv = invite(1);
    let fwd = one_to(&h.send(CARRIER, &inv.bytes()), DEST);
    h.send(DEST, &answer(&fwd, 200, Some("c")));
    h.engine.drain(h.now);
    let r = one(h.send(CARRIER, &invite(2).bytes()));
    assert_eq!(r.status(), Some(503));
    let retry: u32 = r.header("Retry-After").unwrap().parse().unwrap();
    assert!((30..=60).contains(&retry));
    let opt = one(h.send(CARRIER, &Req::options("dr").bytes()));
    assert_eq!(
        opt.status(),
        Some(503),
        "a draining node answers OPTIONS 503"
    );
    assert!(!h.events.iter().any(|e| matches!(e, Event::Drained)));
    let bye = Req::new(
        "BYE",
        "sip:callee@192.0.2.20:5080",
        "192.0.2.1:5060",
        "dbye",
    )
    .with(|r| {
        r.call_id = inv.call_id.clone();
        r.from = inv.from.clone();
        r.to = format!("{};tag=c", inv.to);
        r.cseq = 2;
    });
    let b = one_to(&h.send(CARRIER, &bye.bytes()), DEST);
    assert!(
        h.events.iter().any(|e| matches!(e, Event::Drained)),
        "last call ended"
    );
    h.send(DEST, &answer(&b, 200, None));
    h.engine.undrain(h.now);
    assert_eq!(
        one_to(&h.send(CARRIER, &invite(3).bytes()), DEST)
            .method()
            .as_deref(),
        Some("INVITE")
    );
}

#[test]
fn options_is_200_while_merely_busy() {
    let mut h = Harness::new(limited(1));
    h.send(CARRIER, &invite(1).bytes());
    assert_eq!(one(h.send(CARRIER, &invite(2).bytes())).status(), Some(503));
    assert_eq!(
        one(h.send(CARRIER, &Req::options("busy").bytes())).status(),
        Some(200)
    );
}

#[test]
fn protected_numbers_pass_a_full_node() {
    let mut c = limited(1);
    c.admission.protected_numbers = vec!["911".into()];
    c.routing.plan.national_length = 0;
    let mut h = Harness::new(c);
    h.send(CARRIER, &invite(1).bytes());
    let e = Req::invite("911", "emerg");
    let out = h.send(CARRIER, &e.bytes());
    assert_eq!(one_to(&out, DEST).method().as_deref(), Some("INVITE"));
}

#[test]
fn rfc7339_feedback_on_our_responses_when_asked() {
    let mut h = Harness::new(limited(10));
    let inv = invite(1).with(|r| {
        r.via = vec!["SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKoc1;oc;oc-algo=\"loss,A\"".into()]
    });
    let out = h.send(CARRIER, &inv.bytes());
    let trying = to(&out, CARRIER)[0].clone();
    let via = trying.header("Via").unwrap();
    assert!(
        via.contains(";oc=0;oc-algo=\"loss\";oc-validity=1000;oc-seq="),
        "{via}"
    );
    // Without `oc` the client gets nothing.
    let out = h.send(CARRIER, &invite(2).bytes());
    assert!(!to(&out, CARRIER)[0].header("Via").unwrap().contains("oc="));
}
