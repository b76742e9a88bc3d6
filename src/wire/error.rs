//! Parse errors: a kind saying what was wrong and the byte offset where it was found.

use super::header::HeaderName;

/// What was wrong with a message. Each kind maps to the reason phrase of the `400`
/// the engine sends when the request is well-formed enough to be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The input holds no message at all (empty, or only line ends).
    #[error("empty message")]
    Empty,
    /// The input is larger than the configured limit; it was not scanned.
    #[error("message larger than the configured limit")]
    TooLarge,
    /// The header section never ended (no empty line) before the input did.
    #[error("message truncated before the end of its headers")]
    Truncated,
    /// The body is shorter than its Content-Length says.
    #[error("body shorter than Content-Length")]
    BodyTooShort,
    /// A stream message carries no Content-Length (mandatory on streams, RFC 3261 §18.3).
    #[error("stream message without Content-Length")]
    MissingContentLength,
    /// The request or status line is malformed (spacing, missing parts, bad method).
    #[error("malformed start line")]
    BadStartLine,
    /// The protocol version is not SIP/2.0.
    #[error("unsupported SIP version")]
    BadVersion,
    /// The status code is not three digits in 100..=699.
    #[error("bad status code")]
    BadStatusCode,
    /// The Request-URI is malformed (no scheme, enclosed in `<>`, embedded whitespace, or
    /// a `sip:`/`sips:` URI carrying `?headers`).
    #[error("bad Request-URI")]
    BadRequestUri,
    /// A header line has no colon or an invalid name.
    #[error("malformed header line")]
    BadHeaderLine,
    /// A mandatory header is missing.
    #[error("missing {0:?} header")]
    MissingHeader(HeaderName),
    /// A header that may appear once appears more than once.
    #[error("duplicate {0:?} header")]
    DuplicateHeader(HeaderName),
    /// The top Via is malformed.
    #[error("bad Via")]
    BadVia,
    /// CSeq is not `number method` with a number below 2^31.
    #[error("bad CSeq")]
    BadCSeq,
    /// The CSeq method differs from the request method.
    #[error("CSeq method does not match the request method")]
    CSeqMethodMismatch,
    /// Call-ID is empty or contains whitespace.
    #[error("bad Call-ID")]
    BadCallId,
    /// From or To is malformed (unbalanced quotes or brackets, bad display name).
    #[error("bad From or To")]
    BadNameAddr,
    /// Max-Forwards is not a number in 0..=255.
    #[error("bad Max-Forwards")]
    BadMaxForwards,
    /// Content-Length is not a non-negative number that fits the limit.
    #[error("bad Content-Length")]
    BadContentLength,
    /// More header lines than the configured limit.
    #[error("too many headers")]
    TooManyHeaders,
    /// More Via values than the configured limit.
    #[error("too many Via values")]
    TooManyVias,
}

impl ParseErrorKind {
    /// The reason phrase of the `400` that answers this fault.
    pub fn reason_phrase(self) -> &'static str {
        match self {
            Self::Empty | Self::Truncated => "Bad Request - Truncated",
            Self::TooLarge => "Message Too Large",
            Self::BodyTooShort => "Bad Request - Body Shorter Than Content-Length",
            Self::MissingContentLength => "Bad Request - Missing Content-Length",
            Self::BadStartLine => "Bad Request - Malformed Request-Line",
            Self::BadVersion => "Version Not Supported",
            Self::BadStatusCode => "Bad Request - Bad Status Code",
            Self::BadRequestUri => "Bad Request - Bad Request-URI",
            Self::BadHeaderLine => "Bad Request - Malformed Header",
            Self::MissingHeader(h) => match h {
                HeaderName::Via => "Bad Request - Missing Via",
                HeaderName::From => "Bad Request - Missing From",
                HeaderName::To => "Bad Request - Missing To",
                HeaderName::CallId => "Bad Request - Missing Call-ID",
                HeaderName::CSeq => "Bad Request - Missing CSeq",
                _ => "Bad Request - Missing Header",
            },
            Self::DuplicateHeader(h) => match h {
                HeaderName::From => "Bad Request - Duplicate From",
                HeaderName::To => "Bad Request - Duplicate To",
                HeaderName::CallId => "Bad Request - Duplicate Call-ID",
                HeaderName::CSeq => "Bad Request - Duplicate CSeq",
                HeaderName::MaxForwards => "Bad Request - Duplicate Max-Forwards",
                HeaderName::ContentLength => "Bad Request - Duplicate Content-Length",
                _ => "Bad Request - Duplicate Header",
            },
            Self::BadVia => "Bad Request - Bad Via",
            Self::BadCSeq => "Bad Request - Bad CSeq",
            Self::CSeqMethodMismatch => "Bad Request - CSeq Method Mismatch",
            Self::BadCallId => "Bad Request - Bad Call-ID",
            Self::BadNameAddr => "Bad Request - Bad From/To",
            Self::BadMaxForwards => "Bad Request - Bad Max-Forwards",
            Self::BadContentLength => "Bad Request - Bad Content-Length",
            Self::TooManyHeaders => "Bad Request - Too Many Headers",
            Self::TooManyVias => "Bad Request - Too Many Via Values",
        }
    }

    /// The status code that answers this fault: `513` for oversize, `505` for an
    /// unsupported version, `400` otherwise.
    pub fn status(self) -> u16 {
        match self {
            Self::TooLarge => 513,
            Self::BadVersion => 505,
            _ => 400,
        }
    }

    /// Stable `snake_case` labels, one per kind family, indexed by [`Self::index`].
    pub const LABELS: [&'static str; 21] = [
        "empty",
        "too_large",
        "truncated",
        "body_too_short",
        "missing_content_length",
        "bad_start_line",
        "bad_version",
        "bad_status_code",
        "bad_request_uri",
        "bad_header_line",
        "missing_header",
        "duplicate_header",
        "bad_via",
        "bad_cseq",
        "cseq_method_mismatch",
        "bad_call_id",
        "bad_name_addr",
        "bad_max_forwards",
        "bad_content_length",
        "too_many_headers",
        "too_many_vias",
    ];

    /// Index of this kind's family in [`Self::LABELS`] (headers collapse into one family).
    pub fn index(self) -> usize {
        match self {
            Self::Empty => 0,
            Self::TooLarge => 1,
            Self::Truncated => 2,
            Self::BodyTooShort => 3,
            Self::MissingContentLength => 4,
            Self::BadStartLine => 5,
            Self::BadVersion => 6,
            Self::BadStatusCode => 7,
            Self::BadRequestUri => 8,
            Self::BadHeaderLine => 9,
            Self::MissingHeader(_) => 10,
            Self::DuplicateHeader(_) => 11,
            Self::BadVia => 12,
            Self::BadCSeq => 13,
            Self::CSeqMethodMismatch => 14,
            Self::BadCallId => 15,
            Self::BadNameAddr => 16,
            Self::BadMaxForwards => 17,
            Self::BadContentLength => 18,
            Self::TooManyHeaders => 19,
            Self::TooManyVias => 20,
        }
    }

    /// A short stable label for metrics (`snake_case`).
    pub fn label(self) -> &'static str {
        Self::LABELS[self.index()]
    }
}

/// A message that could not be scanned: what was wrong and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {offset}")]
pub struct ParseError {
    /// What was wrong.
    pub kind: ParseErrorKind,
    /// Byte offset into the input where the fault was detected.
    pub offset: usize,
}

impl ParseError {
    pub(crate) fn new(kind: ParseErrorKind, offset: usize) -> Self {
        ParseError { kind, offset }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ParseErrorKind; 21] = [
        ParseErrorKind::Empty,
        ParseErrorKind::TooLarge,
        ParseErrorKind::Truncated,
        ParseErrorKind::BodyTooShort,
        ParseErrorKind::MissingContentLength,
        ParseErrorKind::BadStartLine,
        ParseErrorKind::BadVersion,
        ParseErrorKind::BadStatusCode,
        ParseErrorKind::BadRequestUri,
        ParseErrorKind::BadHeaderLine,
        ParseErrorKind::MissingHeader(HeaderName::Via),
        ParseErrorKind::DuplicateHeader(HeaderName::CSeq),
        ParseErrorKind::BadVia,
        ParseErrorKind::BadCSeq,
        ParseErrorKind::CSeqMethodMismatch,
        ParseErrorKind::BadCallId,
        ParseErrorKind::BadNameAddr,
        ParseErrorKind::BadMaxForwards,
        ParseErrorKind::BadContentLength,
        ParseErrorKind::TooManyHeaders,
        ParseErrorKind::TooManyVias,
    ];

    #[test]
    fn every_kind_has_its_own_label_slot() {
        for (i, k) in ALL.iter().enumerate() {
            assert_eq!(k.index(), i, "{k:?}");
            assert_eq!(k.label(), ParseErrorKind::LABELS[i]);
        }
        assert_eq!(
            ParseErrorKind::MissingHeader(HeaderName::To).label(),
            "missing_header"
        );
    }

    #[test]
    fn status_and_reason_phrase_fit_the_fault() {
        for k in ALL {
            let want = match k {
                ParseErrorKind::TooLarge => 513,
                ParseErrorKind::BadVersion => 505,
                _ => 400,
            };
            assert_eq!(k.status(), want, "{k:?}");
            let reason = k.reason_phrase();
            assert!(
                !reason.is_empty() && !reason.contains(['\r', '\n']),
                "{k:?}"
            );
        }
        assert_eq!(
            ParseErrorKind::MissingHeader(HeaderName::CallId).reason_phrase(),
            "Bad Request - Missing Call-ID"
        );
        assert_eq!(
            ParseErrorKind::DuplicateHeader(HeaderName::ContentLength).reason_phrase(),
            "Bad Request - Duplicate Content-Length"
        );
        assert_eq!(
            ParseErrorKind::MissingHeader(HeaderName::Contact).reason_phrase(),
            "Bad Request - Missing Header"
        );
    }

    #[test]
    fn an_error_displays_kind_and_offset() {
        let e = ParseError::new(ParseErrorKind::BadVia, 42);
        assert_eq!(e.to_string(), "bad Via at byte 42");
    }
}
