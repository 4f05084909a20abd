//! Fast paths for the numbers answers are made of. A broker answers every
//! put with `result <code> <len> <opaque>` and a body `<id> <partition>
//! <offset>`; parsing those through `str` splitting and `FromStr` was a
//! tenth of the producer's time. These accept only plain `-?[0-9]+` words,
//! and return `None` for anything else so that the general parser decides
//! (and explains) it.

/// The decimal integer `word` spells, if it is `-?[0-9]{1,19}` and fits
/// an `i64` (message ids take all 19 digits).
pub(crate) fn int(word: &[u8]) -> Option<i64> {
    let (negative, digits) = match word.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, word),
    };
    // 19 digits cannot overflow a u64; longer words take the slow path.
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut magnitude: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude * 10 + u64::from(b - b'0');
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
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
        assert_eq!(int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(int(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(int(b"2065237344906121217"), Some(2_065_237_344_906_121_217));
        for word in [
            &b""[..],
            b"-",
            b"+1",
            b"1x",
            b" 1",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"12345678901234567890",
        ] {
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
            proptest::prop_assert_eq!(int(n.to_string().as_bytes()), Some(n));
        }

        #[test]
        fn never_disagrees_with_from_str(word in "-?[0-9]{0,21}") {
            if let Some(parsed) = int(word.as_bytes()) {
                proptest::prop_assert_eq!(Some(parsed), word.parse::<i64>().ok());
            }
        }
    }
}
