//! Arbitrary bytes into `parse_datagram`, `scan` and `scan_keys`.
//!
//! Asserts: no panic; every slice a scanned message hands out lies within the input;
//! the body ends where Content-Length says (or at the end of the datagram without
//! one); `scan_keys` succeeds with the same keys whenever `scan` does; `parse_datagram`
//! agrees with `scan`; a local response to a scanned request, a forwarded request and
//! a relayed response all scan again with the keys they must keep.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence::wire::{
    self, Datagram, HeaderName, Limits, Message, Method, ParseErrorKind, Reply, Splice,
};

/// Whether `inner` lies within `outer` (by address, not by content).
fn within(outer: &[u8], inner: &[u8]) -> bool {
    let o = outer.as_ptr_range();
    let i = inner.as_ptr_range();
    o.start <= i.start && i.end <= o.end
}

fn check_within(outer: &[u8], inner: &[u8], what: &str) {
    assert!(within(outer, inner), "{what} lies outside the message");
}

fn check_method(outer: &[u8], m: Method<'_>) {
    if let Method::Extension(t) = m {
        check_within(outer, t, "extension method");
        assert!(!t.is_empty());
    }
}

/// Limits generous enough that edits which add a few lines never hit them.
const ROOMY: Limits = Limits {
    max_message_len: Limits::MAX_MESSAGE_LEN,
    max_headers: 4096,
    max_vias: 4096,
};

fn check_spans(data: &[u8], m: &Message<'_>) {
    let all = m.as_bytes();
    check_within(data, all, "as_bytes");
    // Leading line ends are skipped; nothing else is.
    let skipped = all.as_ptr() as usize - data.as_ptr() as usize;
    assert!(data[..skipped].iter().all(|&c| c == b'\r' || c == b'\n'));
    assert!(!all.is_empty() && all[0] != b'\r' && all[0] != b'\n');

    if let Some(method) = m.method() {
        check_method(all, method);
    }
    for s in [m.request_uri(), m.request_user(), m.reason(), m.calling()]
        .into_iter()
        .flatten()
    {
        check_within(all, s, "start-line view");
    }
    assert_eq!(m.is_request(), m.method().is_some());
    assert_eq!(m.is_request(), m.status().is_none());
    if let Some(code) = m.status() {
        assert!((100..=699).contains(&code));
    }

    let via = m.top_via();
    for s in [Some(via.value), Some(via.transport), Some(via.host)]
        .into_iter()
        .chain([
            via.branch,
            via.received,
            via.oc,
            via.oc_algo,
            via.oc_validity,
            via.oc_seq,
        ])
        .flatten()
    {
        check_within(all, s, "Via view");
    }
    assert!(!via.host.is_empty());
    assert_eq!(m.branch(), via.branch);
    assert!(m.via_count() >= 1);

    let call_id = m.call_id();
    check_within(all, call_id, "Call-ID");
    assert!(!call_id.is_empty());
    let cseq = m.cseq();
    assert!(cseq.number < 1 << 31);
    check_method(all, cseq.method);
    if let Some(method) = m.method() {
        assert_eq!(method, cseq.method, "request CSeq method differs");
    }

    for na in [m.from(), m.to()] {
        for s in [Some(na.value), Some(na.uri), na.user, na.tag]
            .into_iter()
            .flatten()
        {
            check_within(all, s, "From/To view");
        }
    }
    assert_eq!(m.from_tag(), m.from().tag);
    assert_eq!(m.to_tag(), m.to().tag);
    for s in [m.contact(), m.route(), m.record_route()]
        .into_iter()
        .flatten()
    {
        check_within(all, s, "Contact/Route view");
    }

    let mut headers = 0;
    for h in m.headers() {
        check_within(all, h.name, "header name");
        check_within(all, h.value, "header value");
        assert!(!h.name.is_empty());
        headers += 1;
    }
    assert_eq!(
        headers,
        m.header_count(),
        "headers() disagrees with header_count()"
    );

    let body = m.body();
    check_within(all, body, "body");
    assert_eq!(
        body.as_ptr_range().end,
        all.as_ptr_range().end,
        "the body does not end the message"
    );
    match m.content_length() {
        Some(n) => assert_eq!(body.len(), n, "body length differs from Content-Length"),
        None => assert_eq!(
            all.as_ptr_range().end,
            data.as_ptr_range().end,
            "without Content-Length the message runs to the end of the datagram"
        ),
    }
}

fn check_keys(data: &[u8], m: &Message<'_>, limits: &Limits) {
    let k = match wire::scan_keys(data, limits) {
        Ok(k) => k,
        Err(e) => panic!("scan succeeded but scan_keys failed: {e}"),
    };
    assert_eq!(k.method(), m.method());
    assert_eq!(k.status(), m.status());
    assert_eq!(k.branch(), m.branch());
    assert_eq!(k.sent_by_host(), m.top_via().host);
    assert_eq!(k.sent_by_port(), m.top_via().port);
    assert_eq!(k.transport(), m.top_via().transport_kind());
    // CSeq is read for responses only (RFC 3261 §17.1.3 matches on it; §17.2.3 does not).
    let is_response = m.status().is_some();
    assert_eq!(k.cseq_number(), is_response.then(|| m.cseq().number));
    assert_eq!(k.cseq_method(), is_response.then(|| m.cseq().method));
}

fn check_response(m: &Message<'_>, out: &mut Vec<u8>) {
    let replies = [
        Reply::new(100, b"Trying"),
        Reply {
            to_tag: Some(b"rf-1"),
            headers: b"Retry-After: 5\r\n",
            via_params: b";oc=20",
            received: Some(b"192.0.2.1"),
            source_port: 5062,
            ..Reply::new(503, b"Service Unavailable")
        },
    ];
    for reply in &replies {
        out.clear();
        wire::write_response(m, reply, out);
        let r = match wire::scan(out, &ROOMY) {
            Ok(r) => r,
            Err(e) => panic!(
                "response to a scanned request does not scan: {e}\n{}",
                String::from_utf8_lossy(out)
            ),
        };
        assert_eq!(r.status(), Some(reply.status));
        assert_eq!(r.call_id(), m.call_id());
        assert_eq!(r.cseq(), m.cseq());
        assert_eq!(r.branch(), m.branch());
        assert_eq!(r.top_via().host, m.top_via().host);
        assert_eq!(r.via_count(), m.via_count());
        assert_eq!(r.from_tag(), m.from_tag());
        let tag = match (reply.to_tag, m.to_tag()) {
            (Some(t), None) if reply.status > 100 => Some(t),
            _ => m.to_tag(),
        };
        assert_eq!(r.to_tag(), tag);
        assert_eq!(r.body(), b"");
        if reply.received.is_some() {
            assert_eq!(r.top_via().received, reply.received);
        }
    }
}

const OUR_VIA: &[u8] = b"Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bKfuzz";
const OUR_RR: &[u8] = b"Record-Route: <sip:198.51.100.10;lr>";
const TARGET: &[u8] = b"sip:target@192.0.2.80:5080";

fn check_forward(m: &Message<'_>, out: &mut Vec<u8>) {
    let splice = Splice::new(m)
        .insert_via(OUR_VIA)
        .insert_record_route(OUR_RR)
        .rewrite_request_uri(TARGET)
        .expect("a request");
    let splice = match splice.clone().decrement_max_forwards() {
        Ok(s) => s,
        Err(_) => {
            assert_eq!(m.max_forwards(), Some(0));
            splice
        }
    };
    out.clear();
    splice.write_to(out);
    let f = match wire::scan(out, &ROOMY) {
        Ok(f) => f,
        Err(e) => panic!(
            "forwarded request does not scan: {e}\n{}",
            String::from_utf8_lossy(out)
        ),
    };
    assert_eq!(f.branch(), Some(&b"z9hG4bKfuzz"[..]));
    assert_eq!(f.request_uri(), Some(TARGET));
    assert_eq!(f.via_count(), m.via_count() + 1);
    assert_eq!(f.call_id(), m.call_id());
    assert_eq!(f.cseq(), m.cseq());
    assert_eq!(f.from_tag(), m.from_tag());
    assert_eq!(f.to_tag(), m.to_tag());
    assert_eq!(f.body(), m.body());
    let mf = match m.max_forwards() {
        None => 70,
        Some(0) => 0,
        Some(n) => n - 1,
    };
    assert_eq!(f.max_forwards(), Some(mf));
}

/// The scanner validates only the top Via (the others are counted); once the top one
/// is removed the second must stand on its own. Whether it does is checked here on a
/// minimal response carrying just that value.
fn second_via_is_valid(m: &Message<'_>) -> bool {
    let top = m.top_via().value.as_ptr_range();
    let mut vias = m.headers().filter(|h| h.kind == HeaderName::Via);
    let Some(first) = vias.next() else {
        return false;
    };
    let v = first.value.as_ptr_range();
    assert!(
        v.start <= top.start && top.end <= v.end,
        "top Via is not in the first Via line"
    );
    let rest = &first.value[top.end as usize - v.start as usize..];
    let rest = rest.trim_ascii_start();
    let second = match rest.split_first() {
        Some((b',', tail)) => tail,
        _ => match vias.next() {
            Some(h) => h.value,
            None => return false,
        },
    };
    let mut probe = b"SIP/2.0 200 OK\r\nVia: ".to_vec();
    probe.extend_from_slice(second);
    probe.extend_from_slice(
        b"\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
    );
    wire::scan(&probe, &ROOMY).is_ok()
}

fn check_relay(m: &Message<'_>, out: &mut Vec<u8>) {
    let splice = Splice::new(m)
        .remove_top_via()
        .expect("a response")
        .set_to_tag(b"rf-2");
    out.clear();
    splice.write_to(out);
    let r = match wire::scan(out, &ROOMY) {
        Ok(r) => r,
        Err(e) if e.kind == ParseErrorKind::BadVia && !second_via_is_valid(m) => return,
        Err(e) => panic!(
            "relayed response does not scan: {e}\n{}",
            String::from_utf8_lossy(out)
        ),
    };
    assert_eq!(r.via_count(), m.via_count() - 1);
    assert_eq!(r.status(), m.status());
    assert_eq!(r.call_id(), m.call_id());
    assert_eq!(r.cseq(), m.cseq());
    assert_eq!(r.to_tag(), Some(&b"rf-2"[..]));
    assert_eq!(r.body(), m.body());
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let scanned = wire::scan(data, &limits);
    let datagram = wire::parse_datagram(data, &limits);
    // Errors must point into the input (or just past it).
    if let Err(e) = &scanned {
        assert!(e.offset <= data.len().max(limits.max_message_len), "{e:?}");
        let _ = e.kind.reason_phrase();
        assert!(e.kind.index() < wire::ParseErrorKind::LABELS.len());
    }
    match (&datagram, &scanned) {
        (Ok(Datagram::KeepAlive), Err(_)) => {
            assert!(data.iter().all(|&c| c == b'\r' || c == b'\n'));
        }
        (Ok(Datagram::Message(a)), Ok(b)) => assert_eq!(a.as_bytes(), b.as_bytes()),
        (Err(a), Err(b)) => assert_eq!(a, b),
        (d, s) => panic!("parse_datagram {d:?} disagrees with scan {s:?}"),
    }
    let _ = wire::scan_keys(data, &limits);

    let mut out = Vec::new();
    match scanned {
        Ok(m) => {
            check_spans(data, &m);
            check_keys(data, &m, &limits);
            if m.is_request() {
                check_response(&m, &mut out);
                check_forward(&m, &mut out);
            } else if m.via_count() >= 2 {
                check_relay(&m, &mut out);
            }
        }
        Err(_) => {
            // Best-effort answers to what could not be scanned must not panic.
            let _ =
                wire::write_response_to_unparsed(data, &Reply::new(400, b"Bad Request"), &mut out);
        }
    }
});
