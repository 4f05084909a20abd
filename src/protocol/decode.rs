//! Parsing header lines into frames (docs/protocol.md §3.1 – 3.8).
//!
//! The line has already been cut at CRLF and is known to be within the length
//! cap. Tokens are split on single spaces with Java `String.split` semantics:
//! empty tokens inside the line are kept, trailing empty tokens are dropped.
//! Dispatch is on the first character of the first token, as the Java
//! decoder does.

use std::str::FromStr;

use super::error::excerpt;
use super::{
    ProtocolError, Request, StatusCode, TransactionKind, TransactionRequest, TxKey,
    UnsupportedRequest, DEFAULT_OPAQUE,
};

/// No command has more than eight tokens, so a fixed array avoids a heap
/// allocation per frame.
const MAX_TOKENS: usize = 8;

pub(crate) struct Tokens<'a> {
    items: [&'a str; MAX_TOKENS],
    len: usize,
}

impl<'a> Tokens<'a> {
    fn split(line: &'a str) -> Option<Self> {
        let mut items = [""; MAX_TOKENS];
        let mut len = 0;
        for token in line.split(' ') {
            if len == MAX_TOKENS {
                // Only trailing empty tokens may follow the eighth one.
                if !token.is_empty() {
                    return None;
                }
                continue;
            }
            items[len] = token;
            len += 1;
        }
        while len > 0 && items[len - 1].is_empty() {
            len -= 1;
        }
        // Trailing empties past the cap were dropped above; a non-empty token
        // after an empty one past the cap was rejected.
        Some(Self { items, len })
    }

    fn as_slice(&self) -> &[&'a str] {
        &self.items[..self.len]
    }
}

/// What a header line announces.
#[derive(Debug)]
pub(crate) enum Head {
    /// A complete request without a body.
    Request(Request),
    /// A request whose body of `len` bytes follows.
    WithBody(BodyHead, usize),
    /// A `result` header whose body of `len` bytes follows.
    Result {
        code: StatusCode,
        opaque: i32,
        len: usize,
    },
}

/// The part of a body-carrying request known from its header.
#[derive(Debug)]
pub(crate) enum BodyHead {
    Put {
        topic: String,
        partition: i32,
        flag: i32,
        checksum: Option<i32>,
        tx_key: Option<TxKey>,
        opaque: i32,
    },
    /// `sync` (replication): decoded only to be skipped and answered 503.
    Sync { opaque: i32 },
}

struct Ctx<'a> {
    command: &'static str,
    line: &'a str,
}

impl Ctx<'_> {
    fn err(&self, reason: &'static str) -> ProtocolError {
        ProtocolError::Malformed {
            command: self.command,
            line: excerpt(self.line),
            reason,
        }
    }

    fn int<T: FromStr>(&self, token: &str, what: &'static str) -> Result<T, ProtocolError> {
        token.parse().map_err(|_| self.err(what))
    }

    fn len(&self, token: &str) -> Result<usize, ProtocolError> {
        let len: i64 = self.int(token, "body length is not a number")?;
        usize::try_from(len).map_err(|_| self.err("negative body length"))
    }
}

/// Parses one header line (without its CRLF).
pub(crate) fn parse_line(raw: &[u8]) -> Result<Head, ProtocolError> {
    // Any word starting with `q` is `quit`, whatever follows: the Java
    // decoder dispatches on the first character and never looks at the tokens.
    if raw.first() == Some(&b'q') {
        return Ok(Head::Request(Request::Quit));
    }
    if let Some(head) = plain_result(raw).or_else(|| plain_put(raw)) {
        return Ok(head);
    }
    parse_general(raw)
}

/// Parses any header line through its tokens.
fn parse_general(raw: &[u8]) -> Result<Head, ProtocolError> {
    let line = std::str::from_utf8(raw).map_err(|_| ProtocolError::Malformed {
        command: "header",
        line: excerpt(&String::from_utf8_lossy(raw)),
        reason: "not UTF-8",
    })?;
    let malformed = |reason| ProtocolError::Malformed {
        command: "header",
        line: excerpt(line),
        reason,
    };
    let tokens = Tokens::split(line).ok_or_else(|| malformed("too many tokens"))?;
    let t = tokens.as_slice();
    let first = *t.first().ok_or_else(|| malformed("blank line"))?;
    let unexpected = || ProtocolError::UnexpectedCommand {
        line: excerpt(line),
    };
    match first.as_bytes().first() {
        Some(b'p') if first == "put" => parse_put(
            t,
            &Ctx {
                command: "put",
                line,
            },
        ),
        Some(b't') if first == "transaction" => parse_transaction(
            t,
            &Ctx {
                command: "transaction",
                line,
            },
        ),
        Some(b'r') if first == "result" => parse_result(
            t,
            &Ctx {
                command: "result",
                line,
            },
        ),
        // The Java decoder reads any other word starting with `v` as `version`.
        Some(b'v') if first != "value" => parse_version(
            t,
            &Ctx {
                command: "version",
                line,
            },
        ),
        Some(b's') if first == "stats" => parse_stats(
            t,
            &Ctx {
                command: "stats",
                line,
            },
        ),
        Some(b's') if first == "sync" => parse_sync(
            t,
            &Ctx {
                command: "sync",
                line,
            },
        ),
        Some(b'g') if first == "get" => parse_unsupported(
            t,
            7,
            &Ctx {
                command: "get",
                line,
            },
        ),
        Some(b'o') if first == "offset" => parse_unsupported(
            t,
            6,
            &Ctx {
                command: "offset",
                line,
            },
        ),
        _ => Err(unexpected()),
    }
}

fn parse_put(t: &[&str], cx: &Ctx<'_>) -> Result<Head, ProtocolError> {
    let (checksum, tx_key, opaque) = match t.len() {
        6 => (None, None, t[5]),
        7 => {
            // Token 6 is a checksum if it starts like a number, else a key.
            let starts_numeric = t[5]
                .as_bytes()
                .first()
                .is_some_and(|b| b.is_ascii_digit() || *b == b'-');
            if starts_numeric {
                (Some(t[5]), None, t[6])
            } else {
                (None, Some(t[5]), t[6])
            }
        }
        8 => (Some(t[5]), Some(t[6]), t[7]),
        _ => return Err(cx.err("expected 6, 7 or 8 tokens")),
    };
    let len = cx.len(t[3])?;
    let head = BodyHead::Put {
        topic: t[1].to_owned(),
        partition: cx.int(t[2], "partition is not a number")?,
        flag: cx.int(t[4], "flag is not a number")?,
        checksum: checksum
            .map(|c| cx.int(c, "checksum is not a number"))
            .transpose()?,
        tx_key: tx_key.map(TxKey::from_str).transpose()?,
        opaque: cx.int(opaque, "opaque is not a number")?,
    };
    Ok(Head::WithBody(head, len))
}

fn parse_transaction(t: &[&str], cx: &Ctx<'_>) -> Result<Head, ProtocolError> {
    if !(5..=7).contains(&t.len()) {
        return Err(cx.err("expected 5, 6 or 7 tokens"));
    }
    let key: TxKey = t[1].parse()?;
    let kind =
        TransactionKind::from_word(t[3]).ok_or_else(|| cx.err("unknown transaction type"))?;
    let opaque = cx.int(t[t.len() - 1], "opaque is not a number")?;
    let timeout = |tok: &str| cx.int::<i32>(tok, "timeout is not a number");
    let (timeout_secs, unique_qualifier) = match t.len() {
        5 => (None, None),
        // One optional token: all digits means a timeout, else a qualifier.
        6 if !t[4].is_empty() && t[4].bytes().all(|b| b.is_ascii_digit()) => {
            (Some(timeout(t[4])?), None)
        }
        6 => (None, Some(t[4].to_owned())),
        _ => (Some(timeout(t[4])?), Some(t[5].to_owned())),
    };
    Ok(Head::Request(Request::Transaction(TransactionRequest {
        key,
        session_id: t[2].to_owned(),
        kind,
        timeout_secs,
        unique_qualifier,
        opaque,
    })))
}

fn parse_result(t: &[&str], cx: &Ctx<'_>) -> Result<Head, ProtocolError> {
    if t.len() != 4 {
        return Err(cx.err("expected 4 tokens"));
    }
    Ok(Head::Result {
        code: StatusCode(cx.int(t[1], "status code is not a number")?),
        len: cx.len(t[2])?,
        opaque: cx.int(t[3], "opaque is not a number")?,
    })
}

/// `result <code> <len> <opaque>` of plain numbers in range, as nearly every
/// answer is; anything else is left to the general parser.
fn plain_result(raw: &[u8]) -> Option<Head> {
    let [code, len, opaque] = super::ascii::ints::<3>(raw.strip_prefix(b"result ")?)?;
    Some(Head::Result {
        code: StatusCode(u16::try_from(code).ok()?),
        len: usize::try_from(len).ok()?,
        opaque: i32::try_from(opaque).ok()?,
    })
}

/// `put <topic> <partition> <len> <flag> [<checksum>] <opaque>` of plain
/// numbers in range, outside a transaction, as a producer sends nearly
/// every put; anything else is left to the general parser.
fn plain_put(raw: &[u8]) -> Option<Head> {
    let rest = raw.strip_prefix(b"put ")?;
    let space = rest.iter().position(|b| *b == b' ')?;
    let topic = std::str::from_utf8(&rest[..space]).ok()?;
    let numbers = &rest[space + 1..];
    let (partition, len, flag, checksum, opaque) =
        match numbers.iter().filter(|b| **b == b' ').count() {
            4 => {
                let [p, l, f, c, o] = super::ascii::ints::<5>(numbers)?;
                (p, l, f, Some(c), o)
            }
            3 => {
                let [p, l, f, o] = super::ascii::ints::<4>(numbers)?;
                (p, l, f, None, o)
            }
            _ => return None,
        };
    let head = BodyHead::Put {
        topic: topic.to_owned(),
        partition: i32::try_from(partition).ok()?,
        flag: i32::try_from(flag).ok()?,
        checksum: match checksum {
            Some(c) => Some(i32::try_from(c).ok()?),
            None => None,
        },
        tx_key: None,
        opaque: i32::try_from(opaque).ok()?,
    };
    Some(Head::WithBody(head, usize::try_from(len).ok()?))
}

fn parse_version(t: &[&str], cx: &Ctx<'_>) -> Result<Head, ProtocolError> {
    let opaque = match t {
        [_] => DEFAULT_OPAQUE,
        [_, opaque] => cx.int(opaque, "opaque is not a number")?,
        _ => return Err(cx.err("expected 1 or 2 tokens")),
    };
    Ok(Head::Request(Request::Version { opaque }))
}

fn parse_stats(t: &[&str], cx: &Ctx<'_>) -> Result<Head, ProtocolError> {
    let (item, opaque) = match t {
        [_] => ("", DEFAULT_OPAQUE),
        [_, item] => (*item, DEFAULT_OPAQUE),
        [_, item, opaque] => (*item, cx.int(opaque, "opaque is not a number")?),
        _ => return Err(cx.err("expected 1 to 3 tokens")),
    };
    Ok(Head::Request(Request::Stats {
        item: item.to_owned(),
        opaque,
    }))
}

fn parse_sync(t: &[&str], cx: &Ctx<'_>) -> Result<Head, ProtocolError> {
    if t.len() != 7 && t.len() != 8 {
        return Err(cx.err("expected 7 or 8 tokens"));
    }
    let len = cx.len(t[3])?;
    let opaque = cx.int(t[t.len() - 1], "opaque is not a number")?;
    Ok(Head::WithBody(BodyHead::Sync { opaque }, len))
}

fn parse_unsupported(t: &[&str], tokens: usize, cx: &Ctx<'_>) -> Result<Head, ProtocolError> {
    if t.len() != tokens {
        return Err(cx.err("wrong number of tokens"));
    }
    let opaque = cx.int(t[tokens - 1], "opaque is not a number")?;
    Ok(Head::Request(Request::Unsupported(UnsupportedRequest {
        command: cx.command,
        opaque,
    })))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn same(fast: Option<Head>, raw: &[u8]) -> Result<(), TestCaseError> {
        if let Some(fast) = fast {
            let general = parse_general(raw);
            prop_assert_eq!(
                format!("{:?}", Ok::<_, ProtocolError>(fast)),
                format!("{general:?}"),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        Ok(())
    }

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<i32>().prop_map(|n| n.to_string()),
            "[-+0-9a-z ]{0,6}",
        ]
    }

    proptest! {
        /// Whatever the fast paths accept, they read as the general parser does.
        #[test]
        fn fast_paths_agree_with_the_general_parser(
            topic in "[a-z.\\-]{0,5}",
            words in proptest::collection::vec(word(), 0..7),
        ) {
            let put = format!("put {topic} {}", words.join(" "));
            same(plain_put(put.as_bytes()), put.as_bytes())?;
            let result = format!("result {}", words.join(" "));
            same(plain_result(result.as_bytes()), result.as_bytes())?;
        }
    }

    #[test]
    fn fast_paths_take_the_common_lines() {
        assert!(plain_put(b"put t 0 5 0 907060870 1").is_some());
        assert!(plain_put(b"put t 0 5 0 -1").is_some());
        assert!(plain_put(b"put t 0 5 0 TX:s-1-1:4 1").is_none());
        assert!(plain_result(b"result 200 20 -2147483648").is_some());
        assert!(plain_result(b"result 200 20").is_none());
    }
}
