//! Everything about `metaq produce`'s arguments that can be refused before
//! ZooKeeper is contacted, each with a one-line reason naming the flag.

use std::time::Duration;

use bytes::Bytes;
use metaq::protocol::DEFAULT_MAX_BODY;

use super::delimiter::{key_delimiter, record_delimiter, Split};
use super::ordered_settings::{self, Settings};
use super::{ProduceArgs, SelectorName};

/// The checked arguments, in the forms the sending code uses.
pub(super) struct Plan {
    pub(super) messages: Messages,
    pub(super) send_timeout: Duration,
    /// The producer is built with this, so it can be checked here first.
    pub(super) max_message_size: usize,
    /// Time between two messages with `--rate`.
    pub(super) interval: Option<Duration>,
    /// How standard input is cut into records.
    pub(super) split: Split,
    /// The payload of every message without `--stdin`.
    pub(super) payload: Bytes,
    /// With `--ordered`: its store, layout and flush wait.
    pub(super) ordered: Option<Settings>,
}

/// What every message shares: its topic and attribute, and the key given
/// with `--key`.
pub(super) struct Messages {
    pub(super) topic: String,
    pub(super) attribute: Option<String>,
    pub(super) key: Option<Bytes>,
}

impl Messages {
    /// A message of this topic and attribute; its own key (from
    /// `--key-delimiter`) or else `--key`.
    pub(super) fn message(&self, key: Option<Bytes>, payload: Bytes) -> metaq::Message {
        let mut message = metaq::Message::new(self.topic.clone(), payload);
        if let Some(attribute) = &self.attribute {
            message = message.with_attribute(attribute.clone());
        }
        if let Some(key) = key.or_else(|| self.key.clone()) {
            message = message.with_key(key);
        }
        message
    }
}

pub(super) fn check(args: &ProduceArgs) -> Result<Plan, String> {
    if args.cluster.server.is_none() && args.cluster.zk_connect().is_none() {
        return Err(super::NO_TARGET.into());
    }
    if args.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    if args.transaction == Some(0) {
        return Err("--transaction must be at least 1 message per transaction".into());
    }
    if args.wait_ms == 0 {
        return Err("--wait-ms must be at least 1".into());
    }
    check_keys(args)?;
    let interval = args.rate.map(interval).transpose()?;
    let split = Split {
        delimiter: record_delimiter(&args.delimiter)?,
        key_delimiter: args
            .key_delimiter
            .as_deref()
            .map(key_delimiter)
            .transpose()?,
    };
    if let Some(key_delimiter) = &split.key_delimiter {
        if key_delimiter.contains(&split.delimiter) {
            return Err(
                "--key-delimiter cannot contain the --delimiter byte: no record would hold it"
                    .into(),
            );
        }
    }
    let messages = Messages {
        topic: args.topic.clone(),
        attribute: args.attribute.clone(),
        key: args.key.clone().map(Bytes::from),
    };
    let payload = match (&args.payload, args.size) {
        (Some(text), _) => Bytes::from(text.clone()),
        (None, Some(size)) => Bytes::from(vec![b'x'; size]),
        (None, None) => Bytes::from_static(b"hello from metaq"),
    };
    let max_message_size = DEFAULT_MAX_BODY;
    if !args.stdin {
        // Every message is the same: one refusal instead of one per message.
        let size = messages.message(None, payload.clone()).body_len();
        if size > max_message_size {
            return Err(format!(
                "a message would be {size} bytes (payload and attribute), over the {max_message_size}-byte maximum message size; nothing was sent"
            ));
        }
    }
    Ok(Plan {
        messages,
        send_timeout: Duration::from_millis(args.timeout_ms),
        max_message_size,
        interval,
        split,
        payload,
        ordered: ordered_settings(args)?,
    })
}

/// `--ordered`'s settings, its layout checked.
fn ordered_settings(args: &ProduceArgs) -> Result<Option<Settings>, String> {
    if !args.ordered {
        return Ok(None);
    }
    let Some(store_dir) = args.store_dir.clone() else {
        return Err("--ordered needs --store-dir DIR".into());
    };
    let settings = Settings {
        store_dir,
        layout: args.layout.clone(),
        flush: Duration::from_millis(args.flush_ms),
        key_delimiter: args.key_delimiter.clone(),
    };
    ordered_settings::config(&settings, &args.topic)?;
    Ok(Some(settings))
}

/// Keys only matter to the key-hash selector, which needs one, and to
/// `--ordered`, which needs one whatever the selector.
fn check_keys(args: &ProduceArgs) -> Result<(), String> {
    let keyed = args.key.is_some() || args.key_delimiter.is_some();
    if args.ordered {
        if !keyed {
            return Err("--ordered needs a key for every message: --key K, or --stdin with --key-delimiter D".into());
        }
        return Ok(());
    }
    let key_hash = args.selector == SelectorName::KeyHash;
    if key_hash && !keyed {
        return Err("--selector key-hash needs --key or --key-delimiter (without a key every message goes round-robin)".into());
    }
    if !key_hash && args.key.is_some() {
        return Err("--key needs --selector key-hash (other selectors ignore keys)".into());
    }
    if !key_hash && args.key_delimiter.is_some() {
        return Err(
            "--key-delimiter needs --selector key-hash (other selectors ignore keys)".into(),
        );
    }
    Ok(())
}

/// The time between two messages at `rate` per second.
fn interval(rate: f64) -> Result<Duration, String> {
    if !(rate.is_finite() && rate > 0.0) {
        return Err(format!(
            "--rate must be a positive number of messages per second, not {rate}"
        ));
    }
    // Bounded so that the schedule (an `Instant`) cannot overflow.
    match Duration::try_from_secs_f64(1.0 / rate) {
        Ok(interval) if interval <= LONGEST_INTERVAL => Ok(interval),
        _ => Err(format!(
            "--rate {rate} is too low: less than one message a year"
        )),
    }
}

/// The longest time between two messages `--rate` accepts: a year.
const LONGEST_INTERVAL: Duration = Duration::from_secs(365 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_that_are_not_positive_finite_numbers_are_refused() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(interval(rate).is_err(), "{rate}");
        }
        assert!(interval(1e-300).unwrap_err().contains("too low"));
        assert_eq!(interval(4.0), Ok(Duration::from_millis(250)));
    }
}
