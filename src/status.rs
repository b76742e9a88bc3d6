//! Reason phrases for the status codes the engine generates (RFC 3261 §21 and the
//! extensions it answers with).

/// The standard reason phrase for `code`, or a generic one for its class.
pub(crate) fn reason(code: u16) -> &'static [u8] {
    match code {
        100 => b"Trying",
        180 => b"Ringing",
        183 => b"Session Progress",
        200 => b"OK",
        400 => b"Bad Request",
        403 => b"Forbidden",
        404 => b"Not Found",
        405 => b"Method Not Allowed",
        408 => b"Request Timeout",
        410 => b"Gone",
        413 => b"Request Entity Too Large",
        420 => b"Bad Extension",
        480 => b"Temporarily Unavailable",
        481 => b"Call/Transaction Does Not Exist",
        482 => b"Loop Detected",
        483 => b"Too Many Hops",
        484 => b"Address Incomplete",
        486 => b"Busy Here",
        487 => b"Request Terminated",
        488 => b"Not Acceptable Here",
        491 => b"Request Pending",
        500 => b"Server Internal Error",
        501 => b"Not Implemented",
        502 => b"Bad Gateway",
        503 => b"Service Unavailable",
        504 => b"Server Time-out",
        505 => b"Version Not Supported",
        513 => b"Message Too Large",
        600 => b"Busy Everywhere",
        603 => b"Decline",
        604 => b"Does Not Exist Anywhere",
        606 => b"Not Acceptable",
        _ => match code / 100 {
            1 => b"Provisional",
            2 => b"Success",
            3 => b"Redirection",
            4 => b"Client Error",
            5 => b"Server Error",
            _ => b"Global Failure",
        },
    }
}
