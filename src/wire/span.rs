//! Byte ranges into the message buffer, 8 bytes each.

use std::ops::Range;

/// A half-open byte range `start..end` into the buffer a message was scanned from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    /// Offsets must fit `u32`; the scanner rejects larger inputs before it makes spans.
    #[inline]
    pub(crate) fn new(start: usize, end: usize) -> Span {
        debug_assert!(start <= end && end <= u32::MAX as usize);
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    #[inline]
    pub(crate) fn of(self, buf: &[u8]) -> &[u8] {
        &buf[self.range()]
    }

    #[inline]
    pub(crate) fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }

    #[inline]
    pub(crate) fn start(self) -> usize {
        self.start as usize
    }

    #[inline]
    pub(crate) fn end(self) -> usize {
        self.end as usize
    }

    #[inline]
    pub(crate) fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    #[inline]
    pub(crate) fn is_empty(self) -> bool {
        self.start == self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_is_a_half_open_range() {
        let s = Span::new(2, 5);
        assert_eq!(s.of(b"abcdefg"), b"cde");
        assert_eq!((s.start(), s.end(), s.len()), (2, 5, 3));
        assert_eq!(s.range(), 2..5);
        assert!(!s.is_empty());
        assert!(Span::new(4, 4).is_empty());
    }
}
