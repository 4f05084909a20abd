//! How the store is configured: where it writes, when it forces data to disk,
//! and how large a segment file may grow (docs/protocol.md §5.5).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// MetaQ's `maxSegmentSize` default: 1 GiB.
///
/// # Examples
///
/// ```
/// use metaq_broker::store::{StoreConfig, DEFAULT_MAX_SEGMENT_SIZE};
/// use metaq_broker::BrokerConfig;
/// assert_eq!(StoreConfig::new("/tmp/data").max_segment_size, DEFAULT_MAX_SEGMENT_SIZE);
/// // The broker uses the same default.
/// let broker = BrokerConfig::new(0, "127.0.0.1:2181", "/tmp/data");
/// assert_eq!(broker.max_segment_size, DEFAULT_MAX_SEGMENT_SIZE);
/// ```
pub const DEFAULT_MAX_SEGMENT_SIZE: u64 = 1024 * 1024 * 1024;

/// MetaQ's `unflushThreshold` default, used by `"<millis>"` in [`FlushPolicy::from_str`].
///
/// # Examples
///
/// ```
/// use metaq_broker::store::{FlushPolicy, DEFAULT_UNFLUSHED_MESSAGES};
/// let Ok(FlushPolicy::Periodic { max_messages, .. }) = "500".parse() else { panic!() };
/// assert_eq!(max_messages, DEFAULT_UNFLUSHED_MESSAGES);
/// ```
pub const DEFAULT_UNFLUSHED_MESSAGES: u32 = 1000;

/// When appended records are forced to disk.
///
/// Whatever the policy, a segment is forced to disk when a new one is started
/// after it (so only the last segment can ever have a torn tail, which is the
/// only one recovery scans), the directory is synced when a segment or
/// partition directory is created (so its name survives a crash), and
/// everything unflushed is forced on close or when the last handle drops.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use metaq_broker::store::{FlushPolicy, StoreConfig};
/// // Trade durability for speed: fsync every 100 records or every 50 ms.
/// let periodic = FlushPolicy::Periodic { max_messages: 100, interval: Duration::from_millis(50) };
/// let config = StoreConfig { flush: periodic, ..StoreConfig::new("/tmp/data") };
/// assert_ne!(config.flush, FlushPolicy::default());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// fsync before answering; appends queued while one fsync runs share the next one (group commit).
    Group,
    /// Like MetaQ's unflushThreshold/unflushInterval: fsync when more than `max_messages`
    /// are unflushed or `interval` passed since the last fsync (also checked by a timer),
    /// answer without waiting.
    Periodic {
        /// fsync as soon as more than this many records are unflushed.
        max_messages: u32,
        /// fsync when this long has passed since the last one and something is unflushed.
        interval: Duration,
    },
    /// Never fsync explicitly (only on close).
    Os,
}

impl Default for FlushPolicy {
    /// [`FlushPolicy::Group`], the mode of MetaQ's shipped sample configuration
    /// (`unflushThreshold=0`): a successful append means the record is on disk.
    fn default() -> Self {
        FlushPolicy::Group
    }
}

/// A string that names no [`FlushPolicy`].
///
/// # Examples
///
/// ```
/// use metaq_broker::store::FlushPolicy;
/// let err = "sometimes".parse::<FlushPolicy>().unwrap_err();
/// assert_eq!(err.input, "sometimes");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid flush policy {input:?}: expected \"group\", \"os\" or a positive number of milliseconds")]
pub struct ParseFlushPolicyError {
    /// The rejected input, as given.
    pub input: String,
}

impl FromStr for FlushPolicy {
    type Err = ParseFlushPolicyError;

    /// `"group"`, `"os"` (ASCII case ignored), or a positive number of
    /// milliseconds meaning [`FlushPolicy::Periodic`] with MetaQ's default
    /// threshold of 1000 messages.
    ///
    /// `"0"` is refused rather than read as group commit (which is what
    /// `unflushThreshold=0` means in MetaQ): a zero *interval* would be a
    /// different thing, so the caller has to say `"group"`.
    ///
    /// ```
    /// use metaq_broker::store::FlushPolicy;
    /// use std::time::Duration;
    /// assert_eq!("group".parse(), Ok(FlushPolicy::Group));
    /// assert_eq!("os".parse(), Ok(FlushPolicy::Os));
    /// assert_eq!(
    ///     "250".parse(),
    ///     Ok(FlushPolicy::Periodic { max_messages: 1000, interval: Duration::from_millis(250) })
    /// );
    /// assert!("0".parse::<FlushPolicy>().is_err());
    /// assert!("sometimes".parse::<FlushPolicy>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseFlushPolicyError {
            input: s.to_owned(),
        };
        if s.eq_ignore_ascii_case("group") {
            return Ok(FlushPolicy::Group);
        }
        if s.eq_ignore_ascii_case("os") {
            return Ok(FlushPolicy::Os);
        }
        // `u64::from_str` would also take a leading '+'; only plain digits are meant.
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        match s.parse::<u64>() {
            Ok(millis) if millis > 0 => Ok(FlushPolicy::Periodic {
                max_messages: DEFAULT_UNFLUSHED_MESSAGES,
                interval: Duration::from_millis(millis),
            }),
            _ => Err(err()),
        }
    }
}

/// Configuration of a [`MessageStore`](super::MessageStore).
///
/// ```
/// use metaq_broker::store::{FlushPolicy, StoreConfig};
/// let mut config = StoreConfig::new("/var/lib/metaq");
/// assert_eq!(config.flush, FlushPolicy::Group);
/// assert_eq!(config.max_segment_size, 1 << 30);
/// config.flush = FlushPolicy::Os;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Root directory; each partition lives in `<data_dir>/<topic>-<partition>/`.
    pub data_dir: PathBuf,
    /// When appends are forced to disk. Default [`FlushPolicy::Group`].
    pub flush: FlushPolicy,
    /// A new segment file starts when the current one would grow past this many
    /// bytes (a record never spans two segments, so one larger record gets a
    /// segment of its own). Default 1 GiB, as MetaQ's `maxSegmentSize`.
    pub max_segment_size: u64,
}

impl StoreConfig {
    /// A configuration with group commit and 1 GiB segments.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::path::Path;
    /// use metaq_broker::store::{FlushPolicy, StoreConfig};
    /// let config = StoreConfig::new("/var/lib/metaq");
    /// assert_eq!(config.data_dir, Path::new("/var/lib/metaq"));
    /// assert_eq!(config.flush, FlushPolicy::Group);
    /// ```
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            data_dir: data_dir.into(),
            flush: FlushPolicy::default(),
            max_segment_size: DEFAULT_MAX_SEGMENT_SIZE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_policies() {
        assert_eq!("GROUP".parse(), Ok(FlushPolicy::Group));
        assert_eq!("Os".parse(), Ok(FlushPolicy::Os));
        assert_eq!(
            "10000".parse(),
            Ok(FlushPolicy::Periodic {
                max_messages: 1000,
                interval: Duration::from_secs(10)
            })
        );
        for bad in [
            "",
            "0",
            "+5",
            "-5",
            " 5",
            "5ms",
            "group ",
            "99999999999999999999999",
        ] {
            let err = bad.parse::<FlushPolicy>().unwrap_err();
            assert_eq!(err.input, bad);
            assert!(err.to_string().contains("invalid flush policy"), "{err}");
        }
    }
}
