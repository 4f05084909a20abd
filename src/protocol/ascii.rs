//! Fast paths for the numbers answers are made of. A broker answers every
//! put with `result <code> <len> <opaque>` and a body `<id> <partition>
//! <offset>`; parsing those through `str` splitting and `FromStr` was a
//! tenth of the producer's time. These accept only plain `-?[0-9]+` words,
//! and return `None` for anything else so that the general parser decides
//! (and explains) it.

/// The decimal integer `word` spells, if it is `-?[0-9]{1,18}`.
pub(crate) fn int(word: &[u8]) -> Option<i64> {
    let (negative, digits) = match word.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, word),
    };
    // 18 digits cannot overflow an i64; longer words take the slow path.
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut value: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(b - b'0');
    }
    Some(if negative { -value } else { value })
}

/// Exactly `N` words separated by single spaces, each a plain integer.
pub(crate) fn ints<const N: usize>(text: &[u8]) -> Option<[i64; N]> {
    let mut out = [0; N];
    let mut rest = text;
    for (i, slot) in out.iter_mut().enumerate() {
        let end = if i + 1 == N {
            rest.len()
        } else {
            rest.iter().position(|b| *b == b' ')?
        };
        *slot = int(&rest[..end])?;
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_integers_only() {
        assert_eq!(int(b"0"), Some(0));
        assert_eq!(int(b"-2147483648"), Some(-2_147_483_648));
        assert_eq!(int(b"999999999999999999"), Some(999_999_999_999_999_999));
        for word in [&b""[..], b"-", b"+1", b"1x", b" 1", b"1234567890123456789"] {
            assert_eq!(int(word), None, "{:?}", String::from_utf8_lossy(word));
        }
    }

    #[test]
    fn exactly_n_words() {
        assert_eq!(ints::<3>(b"1 -2 3"), Some([1, -2, 3]));
        assert_eq!(ints::<3>(b"1 2"), None);
        assert_eq!(ints::<3>(b"1 2 3 "), None);
        assert_eq!(ints::<3>(b"1  2 3"), None);
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_from_str(n: i64) {
            let text = n.to_string();
            if let Some(parsed) = int(text.as_bytes()) {
                proptest::prop_assert_eq!(parsed, n);
            }
        }
    }
}
