//! Eight bytes at a time in plain safe integer arithmetic ("SIMD within a register"):
//! finding a byte in a short header line without the call and dispatch cost of a vector
//! search, and packing a header name into one word to classify it with one compare.

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The index of the first `needle` in `s` at or after `from`, or `None`.
#[inline]
pub(crate) fn find_byte(s: &[u8], from: usize, needle: u8) -> Option<usize> {
    let pattern = ONES * needle as u64;
    let mut i = from;
    while i + 8 <= s.len() {
        let word = u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
        let x = word ^ pattern;
        // The lowest set high bit marks the first zero byte of `x`; bits above it may be
        // false positives from the borrow, so only the lowest is used.
        let found = x.wrapping_sub(ONES) & !x & HIGHS;
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i.min(s.len())..]
        .iter()
        .position(|&c| c == needle)
        .map(|p| i + p)
}

/// Packs up to the first eight bytes of `name`, ASCII letters folded to lower case, into
/// one word. Of the other token characters only `_` changes under `| 0x20` (to DEL, which
/// no header name holds), so two tokens pack alike only if they are equal ignoring case.
#[inline]
pub(crate) fn pack_lower(name: &[u8]) -> u64 {
    let n = name.len().min(8);
    let mut bytes = [0u8; 8];
    bytes[..n].copy_from_slice(&name[..n]);
    let mask = if n == 8 { !0 } else { (1u64 << (8 * n)) - 1 };
    (u64::from_le_bytes(bytes) | (0x2020_2020_2020_2020 & mask)) & mask
}

/// [`pack_lower`] for a constant.
pub(crate) const fn pack_const(name: &[u8]) -> u64 {
    let mut w = 0u64;
    let mut i = 0;
    while i < name.len() && i < 8 {
        w |= ((name[i] | 0x20) as u64) << (8 * i);
        i += 1;
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_byte_matches_a_plain_search_at_every_offset_and_length() {
        let hay = b"Via: SIP/2.0/UDP h\n;x=\n\n0123456789abcdef\nend";
        for len in 0..=hay.len() {
            for from in 0..=len {
                let s = &hay[..len];
                let expect = s[from..].iter().position(|&c| c == b'\n').map(|p| p + from);
                assert_eq!(find_byte(s, from, b'\n'), expect, "len {len} from {from}");
            }
        }
    }

    #[test]
    fn find_byte_is_not_fooled_by_borrow_propagation() {
        // 0x0b after the needle would be a false positive for a naive "any high bit".
        let s = [b'\n', 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b];
        assert_eq!(find_byte(&s, 0, b'\n'), Some(0));
        let s = [0x0b, 0x0b, b'\n', 0x0a, 0, 0, 0, 0];
        assert_eq!(find_byte(&s, 0, b'\n'), Some(2));
        assert_eq!(find_byte(&[0x0b; 16], 0, b'\n'), None);
    }

    #[test]
    fn pack_lower_folds_case_and_matches_the_constant() {
        assert_eq!(pack_lower(b"VIA"), pack_const(b"via"));
        assert_eq!(pack_lower(b"Call-ID"), pack_const(b"call-id"));
        assert_eq!(pack_lower(b"Max-Forwards"), pack_const(b"max-forw"));
        assert_ne!(pack_lower(b"Via"), pack_const(b"vias"));
        assert_ne!(pack_lower(b"To"), pack_const(b"t"));
    }
}
