//! Producer session ids, `<host>-<millis>-<seq>` (docs/protocol.md §2.1), made safe
//! for transaction keys: MetaQ uses the first non-loopback IP, and an IPv6
//! address puts `:` into `TX:<sessionId>:<n>`, which the broker then cannot
//! parse. Here the host part is the machine's host name with every character
//! outside `[A-Za-z0-9._-]` replaced by `_`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Every producer in the process takes the next number, from 1.
static SEQUENCE: AtomicU64 = AtomicU64::new(1);

/// A new session id, unique per producer instance.
pub(crate) fn new_session_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!("{}-{millis}-{seq}", host())
}

pub(crate) fn host() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default();
    let cleaned: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "localhost".into()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::validate_session_id;

    #[test]
    fn ids_are_valid_and_distinct() {
        let a = new_session_id();
        let b = new_session_id();
        assert_ne!(a, b);
        validate_session_id(&a).unwrap();
        assert!(a.split('-').count() >= 3);
    }
}
