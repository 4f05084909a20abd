//! Queue directory names: `<topic>@<partition>`, as Java's store names them,
//! with every byte outside `[A-Za-z0-9_.-]` written `%XX`.
//!
//! Topics may hold any printable ASCII but space and `/`
//! ([`validate_topic`](crate::protocol::validate_topic)); `:`, `\`, `*`, `%`
//! or `@` would be unsafe or ambiguous in a file name, so they are escaped.
//! The encoding is reversible, so the queue's identity is its directory name.

use crate::error::Error;
use crate::protocol::validate_topic;

/// Longest directory name produced: a file name's limit is 255 bytes on the
/// usual file systems.
const MAX_DIR_NAME: usize = 255;
/// Longest partition text accepted.
const MAX_PARTITION: usize = 64;

fn safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

fn escape(text: &str, out: &mut String) {
    for b in text.bytes() {
        if safe(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                let b = u8::from_str_radix(hex, 16).ok()?;
                if safe(b) {
                    return None; // never written escaped: not one of ours
                }
                out.push(b);
                i += 3;
            }
            b if safe(b) => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Checks a queue's names and gives its directory name.
pub(crate) fn dir_name(topic: &str, partition: &str) -> Result<String, Error> {
    validate_topic(topic).map_err(|e| Error::invalid(topic, e))?;
    let bad_partition = partition.is_empty()
        || partition.len() > MAX_PARTITION
        || !partition.bytes().all(|b| b.is_ascii_graphic());
    if bad_partition {
        return Err(Error::InvalidMessage {
            topic: topic.to_owned(),
            reason: format!(
                "local store partition {partition:?} is not 1 to {MAX_PARTITION} bytes of printable ASCII"
            ),
        });
    }
    let mut name = String::new();
    escape(topic, &mut name);
    name.push('@');
    escape(partition, &mut name);
    if name.len() > MAX_DIR_NAME {
        return Err(Error::InvalidMessage {
            topic: topic.to_owned(),
            reason: format!(
                "local store directory name would be {} bytes, over {MAX_DIR_NAME}",
                name.len()
            ),
        });
    }
    Ok(name)
}

/// The (topic, partition) a directory name stands for, if it is one of ours.
pub(crate) fn parse_dir_name(name: &str) -> Option<(String, String)> {
    let (topic, partition) = name.split_once('@')?;
    let topic = unescape(topic)?;
    let partition = unescape(partition)?;
    // Only names this module would write: the round trip must be exact.
    (dir_name(&topic, &partition).ok()? == name).then_some((topic, partition))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_read_like_java() {
        assert_eq!(dir_name("test", "0-1").unwrap(), "test@0-1");
        assert_eq!(dir_name("test", "-1--1").unwrap(), "test@-1--1");
        assert_eq!(
            parse_dir_name("test@-1--1"),
            Some(("test".into(), "-1--1".into()))
        );
    }

    #[test]
    fn unsafe_bytes_are_escaped_and_read_back() {
        let name = dir_name("a:b\\c@d%e*", "0-1").unwrap();
        assert_eq!(name, "a%3Ab%5Cc%40d%25e%2A@0-1");
        assert_eq!(
            parse_dir_name(&name),
            Some(("a:b\\c@d%e*".into(), "0-1".into()))
        );
    }

    #[test]
    fn foreign_names_are_not_queues() {
        for name in [
            "", "x", "@0-1", "t@", "t@0@1", "%41@0", "t@%zz", "t@%4", "a b@0", ".@0",
        ] {
            assert_eq!(parse_dir_name(name), None, "{name:?}");
        }
    }

    #[test]
    fn invalid_names_are_refused() {
        assert!(dir_name("a/b", "0-1").is_err());
        assert!(dir_name("t", "").is_err());
        assert!(dir_name("t", "0 1").is_err());
        assert!(dir_name("t", &"9".repeat(65)).is_err());
        assert!(dir_name(&"%".repeat(200), "0-1").is_err()); // 600 bytes escaped
    }
}
