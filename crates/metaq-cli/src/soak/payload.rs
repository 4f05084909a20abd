//! The soak's payloads name their message, so each stored record can be
//! matched to the ledger: `soak plain <n>` for a plain send, and
//! `soak tx <t> <commit|rollback> <i>/<k>` for message `i` of the `k` in
//! transaction `t` and what the transaction was meant to do.

use super::ledger::Fate;

pub(crate) fn plain(number: u64) -> String {
    format!("soak plain {number}")
}

pub(crate) fn tx(number: u64, fate: Fate, index: u32, messages: u32) -> String {
    format!("soak tx {number} {} {index}/{messages}", fate.word())
}

/// A stored payload, read back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    Plain(u64),
    Tx {
        number: u64,
        fate: Fate,
        /// 1-based.
        index: u32,
        messages: u32,
    },
}

/// `None` for anything the soak did not write.
pub(crate) fn parse(payload: &[u8]) -> Option<Parsed> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut words = text.split(' ');
    if words.next()? != "soak" {
        return None;
    }
    let parsed = match words.next()? {
        "plain" => Parsed::Plain(words.next()?.parse().ok()?),
        "tx" => {
            let number = words.next()?.parse().ok()?;
            let fate = match words.next()? {
                "commit" => Fate::Commit,
                "rollback" => Fate::Rollback,
                _ => return None,
            };
            let (index, messages) = words.next()?.split_once('/')?;
            let (index, messages) = (index.parse().ok()?, messages.parse().ok()?);
            if index == 0 || index > messages {
                return None;
            }
            Parsed::Tx {
                number,
                fate,
                index,
                messages,
            }
        }
        _ => return None,
    };
    words.next().is_none().then_some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_read_back_as_written() {
        assert_eq!(parse(plain(42).as_bytes()), Some(Parsed::Plain(42)));
        let written = tx(7, Fate::Rollback, 2, 3);
        assert_eq!(written, "soak tx 7 rollback 2/3");
        let expected = Parsed::Tx {
            number: 7,
            fate: Fate::Rollback,
            index: 2,
            messages: 3,
        };
        assert_eq!(parse(written.as_bytes()), Some(expected));
    }

    #[test]
    fn foreign_or_damaged_payloads_are_not_taken_for_the_soak_s() {
        for payload in [
            &b"hello"[..],
            b"soak plain",
            b"soak plain 1 2",
            b"soak plain x",
            b"soak tx 1 maybe 1/2",
            b"soak tx 1 commit 0/2",
            b"soak tx 1 commit 3/2",
            b"soak tx 1 commit 1-2",
            b"\xff\xfe",
        ] {
            assert_eq!(parse(payload), None, "{payload:?}");
        }
    }
}
