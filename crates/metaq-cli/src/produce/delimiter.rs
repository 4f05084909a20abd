//! `--delimiter` and `--key-delimiter` as kcat writes them: text with the
//! escapes `\n`, `\t`, `\r`, `\0`, `\\` and `\xNN`, so that a shell user can
//! name a control byte without quoting tricks.

/// The record delimiter: exactly one byte once escapes are read.
pub(super) fn record_delimiter(text: &str) -> Result<u8, String> {
    match unescape(text).map_err(|e| format!("--delimiter: {e}"))?[..] {
        [byte] => Ok(byte),
        ref bytes => Err(format!(
            "--delimiter must be one byte, {text:?} is {}",
            bytes.len()
        )),
    }
}

/// The key delimiter: one or more bytes.
pub(super) fn key_delimiter(text: &str) -> Result<Vec<u8>, String> {
    let bytes = unescape(text).map_err(|e| format!("--key-delimiter: {e}"))?;
    if bytes.is_empty() {
        return Err("--key-delimiter cannot be empty".into());
    }
    Ok(bytes)
}

/// The bytes `text` stands for.
fn unescape(text: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        rest = tail;
        if first != b'\\' {
            bytes.push(first);
            continue;
        }
        let (&escape, tail) = rest
            .split_first()
            .ok_or("a trailing \\ escapes nothing (write \\\\ for a backslash)")?;
        rest = tail;
        bytes.push(match escape {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'0' => 0,
            b'\\' => b'\\',
            b'x' => {
                let hex = rest
                    .get(..2)
                    // from_str_radix alone would take a sign: `\x+1`.
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("\\x needs two hex digits")?;
                rest = &rest[2..];
                hex
            }
            other => {
                return Err(format!(
                    "unknown escape \\{} (known: \\n \\t \\r \\0 \\\\ \\xNN)",
                    char::from(other).escape_default()
                ));
            }
        });
    }
    Ok(bytes)
}

/// How stdin is cut into records: the record delimiter, and the key
/// delimiter if records carry keys. (input.rs, which reads the records,
/// does the cutting.)
#[derive(Clone)]
pub(crate) struct Split {
    pub(crate) delimiter: u8,
    pub(crate) key_delimiter: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_name_control_bytes() {
        assert_eq!(record_delimiter("\\n"), Ok(b'\n'));
        assert_eq!(record_delimiter("\\t"), Ok(b'\t'));
        assert_eq!(record_delimiter("\\0"), Ok(0));
        assert_eq!(record_delimiter("\\x1e"), Ok(0x1e));
        assert_eq!(record_delimiter("\\\\"), Ok(b'\\'));
        assert_eq!(record_delimiter(";"), Ok(b';'));
        assert_eq!(record_delimiter("\n"), Ok(b'\n'));
        assert_eq!(key_delimiter("::\\t"), Ok(b"::\t".to_vec()));
    }

    #[test]
    fn bad_delimiters_are_refused_with_a_reason() {
        assert!(record_delimiter("").unwrap_err().contains("one byte"));
        assert!(record_delimiter("ab").unwrap_err().contains("one byte"));
        assert!(record_delimiter("é").unwrap_err().contains("one byte"));
        assert!(record_delimiter("\\q")
            .unwrap_err()
            .contains("unknown escape"));
        assert!(record_delimiter("\\").unwrap_err().contains("trailing"));
        assert!(record_delimiter("\\x4").unwrap_err().contains("hex"));
        assert!(record_delimiter("\\xzz").unwrap_err().contains("hex"));
        assert!(record_delimiter("\\x+1").unwrap_err().contains("hex"));
        assert!(key_delimiter("").unwrap_err().contains("empty"));
    }
}
