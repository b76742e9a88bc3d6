//! Builders for the SIP messages scripted peers send. Plain text, CRLF line ends.

/// A request under construction. `to_string()`/`bytes()` render it.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub uri: String,
    pub via: Vec<String>,
    pub from: String,
    pub to: String,
    pub call_id: String,
    pub cseq: u32,
    pub cseq_method: Option<String>,
    pub max_forwards: Option<u32>,
    pub extra: Vec<String>,
    pub body: String,
}

impl Req {
    /// A request from the carrier at `host:port` with branch `z9hG4bK<branch>`.
    pub fn new(method: &str, uri: &str, via_host: &str, branch: &str) -> Req {
        Req {
            method: method.into(),
            uri: uri.into(),
            via: vec![format!("SIP/2.0/UDP {via_host};branch=z9hG4bK{branch}")],
            from: "<sip:+14155550123@carrier.example>;tag=ft-1".into(),
            to: "<sip:+18005550199@ringfence.example>".into(),
            call_id: format!("call-{branch}@carrier.example"),
            cseq: 1,
            cseq_method: None,
            max_forwards: Some(70),
            extra: Vec::new(),
            body: String::new(),
        }
    }

    /// An INVITE from the default carrier to `dialled`.
    pub fn invite(dialled: &str, branch: &str) -> Req {
        let mut r = Req::new(
            "INVITE",
            &format!("sip:{dialled}@192.0.2.10"),
            "192.0.2.1:5060",
            branch,
        );
        r.to = format!("<sip:{dialled}@192.0.2.10>");
        r.extra
            .push("Contact: <sip:+14155550123@192.0.2.1:5060>".into());
        r.extra.push("Content-Type: application/sdp".into());
        r.body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n".into();
        r
    }

    pub fn options(branch: &str) -> Req {
        Req::new("OPTIONS", "sip:192.0.2.10", "192.0.2.1:5060", branch)
    }

    pub fn with(mut self, f: impl FnOnce(&mut Req)) -> Req {
        f(&mut self);
        self
    }

    /// The CANCEL for this request (same branch, Call-ID, From, To, CSeq number).
    pub fn cancel(&self) -> Req {
        Req {
            method: "CANCEL".into(),
            cseq_method: None,
            extra: Vec::new(),
            body: String::new(),
            via: vec![self.via[0].clone()],
            ..self.clone()
        }
    }

    /// The ACK for a non-2xx final to this request, with the response's To tag.
    pub fn ack(&self, to_tag: &str) -> Req {
        Req {
            method: "ACK".into(),
            cseq_method: None,
            extra: Vec::new(),
            body: String::new(),
            via: vec![self.via[0].clone()],
            to: format!("{};tag={to_tag}", self.to),
            ..self.clone()
        }
    }

    pub fn text(&self) -> String {
        let mut s = format!("{} {} SIP/2.0\r\n", self.method, self.uri);
        for v in &self.via {
            s += &format!("Via: {v}\r\n");
        }
        if let Some(mf) = self.max_forwards {
            s += &format!("Max-Forwards: {mf}\r\n");
        }
        s += &format!(
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\n",
            self.from, self.to, self.call_id
        );
        s += &format!(
            "CSeq: {} {}\r\n",
            self.cseq,
            self.cseq_method.as_deref().unwrap_or(&self.method)
        );
        for e in &self.extra {
            s += e;
            s += "\r\n";
        }
        s += &format!("Content-Length: {}\r\n\r\n{}", self.body.len(), self.body);
        s
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.text().into_bytes()
    }
}

/// A response to a request the engine sent, built from that request's bytes as a UAS
/// would: all Vias, From, To (plus `to_tag`), Call-ID, CSeq copied.
pub fn response_to(
    request: &[u8],
    status: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[&str],
    body: &str,
) -> Vec<u8> {
    let msg = ringfence::wire::scan(request, &ringfence::wire::Limits::default()).expect("request");
    let mut s = format!("SIP/2.0 {status} {reason}\r\n");
    for h in msg.headers() {
        let name = String::from_utf8_lossy(h.name).to_string();
        let value = String::from_utf8_lossy(h.value).to_string();
        match h.kind {
            ringfence::wire::HeaderName::Via
            | ringfence::wire::HeaderName::From
            | ringfence::wire::HeaderName::CallId
            | ringfence::wire::HeaderName::CSeq
            | ringfence::wire::HeaderName::RecordRoute => s += &format!("{name}: {value}\r\n"),
            ringfence::wire::HeaderName::To => match (to_tag, msg.to_tag()) {
                (Some(tag), None) => s += &format!("{name}: {value};tag={tag}\r\n"),
                _ => s += &format!("{name}: {value}\r\n"),
            },
            _ => {}
        }
    }
    for e in extra {
        s += e;
        s += "\r\n";
    }
    s += &format!("Content-Length: {}\r\n\r\n{}", body.len(), body);
    s.into_bytes()
}
