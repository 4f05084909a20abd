//! The names of things in a MetaQ cluster that every layer uses: a broker's
//! address ([`BrokerUri`]) and a partition ([`Partition`]). At the bottom,
//! so that `net`, `discovery`, messages and errors can all use them; public
//! as `metaq::BrokerUri`, `metaq::Partition` (and under `metaq::discovery`).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// A partition, named `<brokerId>-<index>` as MetaQ does (`0-3`).
///
/// Ordered by broker id, then index, numerically. Index `u32::MAX` is
/// "the broker chooses" (a put's partition `-1`, see
/// [`BROKER_CHOOSES`](crate::producer::BROKER_CHOOSES)) and is named with
/// `-1` as Java names it: `0--1`.
///
/// ```
/// use metaq::discovery::Partition;
/// let p: Partition = "1-3".parse().unwrap();
/// assert_eq!(p, Partition::new(1, 3));
/// assert_eq!(p.to_string(), "1-3");
/// assert!(Partition::new(2, 0) > Partition::new(1, 10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    /// The broker holding it.
    pub broker_id: u32,
    /// Its index on that broker (the number sent in `put`).
    pub index: u32,
}

impl Partition {
    /// Partition `index` of broker `broker_id`.
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::Partition;
    /// let p = Partition::new(1, 3);
    /// assert_eq!((p.broker_id, p.index), (1, 3));
    /// assert_eq!(p.to_string(), "1-3");
    /// ```
    pub const fn new(broker_id: u32, index: u32) -> Self {
        Self { broker_id, index }
    }
}

/// The index that stands for "the broker chooses" (`-1` on the wire).
const ANY_INDEX: u32 = u32::MAX;

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            ANY_INDEX => write!(f, "{}--1", self.broker_id),
            index => write!(f, "{}-{index}", self.broker_id),
        }
    }
}

/// Why a partition name could not be parsed.
///
/// Holds the rejected text (at most 60 characters of it).
///
/// # Examples
///
/// ```
/// use metaq::discovery::{InvalidPartition, Partition};
/// let err = "1:3".parse::<Partition>().unwrap_err();
/// assert_eq!(err, InvalidPartition("1:3".into()));
/// assert!("1-x".parse::<Partition>().is_err());
/// assert!("+1-2".parse::<Partition>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid partition {0:?}: expected <brokerId>-<index>")]
pub struct InvalidPartition(pub String);

impl FromStr for Partition {
    type Err = InvalidPartition;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidPartition(text.chars().take(60).collect());
        let (broker, index) = text.split_once('-').ok_or_else(bad)?;
        let index = match index {
            "-1" => ANY_INDEX,
            index => digits(index).filter(|i| *i != ANY_INDEX).ok_or_else(bad)?,
        };
        Ok(Self {
            broker_id: digits(broker).ok_or_else(bad)?,
            index,
        })
    }
}

/// A number written as ASCII digits only: Rust's own parsing also takes a
/// leading `+`, which MetaQ never writes.
pub(crate) fn digits<T: FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A broker address, `meta://host:port`.
///
/// Parsing drops anything after the port (as the Java `Broker` class does).
///
/// ```
/// use metaq::discovery::BrokerUri;
/// let uri: BrokerUri = "meta://10.0.0.5:8123?slaveId=1".parse().unwrap();
/// assert_eq!(uri.to_string(), "meta://10.0.0.5:8123");
/// assert_eq!(uri.port, 8123);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BrokerUri {
    /// Host name or address (IPv6 without brackets). Shared, so that the
    /// copy in every [`SendResult`](crate::SendResult) costs no allocation.
    pub host: Arc<str>,
    /// TCP port.
    pub port: u16,
}

impl BrokerUri {
    /// `host:port` for connecting (`[v6]:port` for IPv6).
    ///
    /// # Examples
    ///
    /// ```
    /// use metaq::BrokerUri;
    /// let v4: BrokerUri = "meta://10.0.0.5:8123".parse().unwrap();
    /// assert_eq!(v4.socket_addr_text(), "10.0.0.5:8123");
    /// let v6: BrokerUri = "meta://[::1]:8123".parse().unwrap();
    /// assert_eq!(&*v6.host, "::1");
    /// assert_eq!(v6.socket_addr_text(), "[::1]:8123");
    /// ```
    pub fn socket_addr_text(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for BrokerUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "meta://{}", self.socket_addr_text())
    }
}

/// Why a broker address could not be parsed.
///
/// Holds the rejected text (at most 120 characters of it).
///
/// # Examples
///
/// ```
/// use metaq::discovery::{BrokerUri, InvalidBrokerUri};
/// let err = "http://10.0.0.5:8123".parse::<BrokerUri>().unwrap_err();
/// assert_eq!(err, InvalidBrokerUri("http://10.0.0.5:8123".into()));
/// assert!("meta://10.0.0.5:+8123".parse::<BrokerUri>().is_err());
/// assert!("meta://::1:8123".parse::<BrokerUri>().is_err()); // IPv6 needs brackets
/// assert!(err.to_string().contains("expected meta://host:port"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid broker address {0:?}: expected meta://host:port")]
pub struct InvalidBrokerUri(pub String);

impl FromStr for BrokerUri {
    type Err = InvalidBrokerUri;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidBrokerUri(text.chars().take(120).collect());
        let rest = text.trim().strip_prefix("meta://").ok_or_else(bad)?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            (host, after.strip_prefix(':').ok_or_else(bad)?)
        } else {
            let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
            // An IPv6 address is written in brackets (as java.net.URI
            // wants); unbracketed, `meta://1::2:8123` would be ambiguous,
            // and printed back it would not parse to the same address.
            if host.contains(':') {
                return Err(bad());
            }
            (host, port)
        };
        if host.is_empty() || host.contains(char::is_whitespace) || host.contains(['[', ']']) {
            return Err(bad());
        }
        Ok(Self {
            host: host.into(),
            port: digits(port).ok_or_else(bad)?,
        })
    }
}

#[cfg(test)]
mod partition_names {
    use super::Partition;

    #[test]
    fn names_read_back_as_the_same_partition() {
        for p in [
            Partition::new(0, 0),
            Partition::new(7, 12),
            Partition::new(u32::MAX, 3),
            Partition::new(0, u32::MAX),
        ] {
            assert_eq!(p.to_string().parse::<Partition>(), Ok(p), "{p}");
        }
        assert_eq!(Partition::new(3, u32::MAX).to_string(), "3--1");
        // One name per partition: "the broker chooses" is only ever `-1`.
        assert!("0-4294967295".parse::<Partition>().is_err());
        assert!("0--2".parse::<Partition>().is_err());
        assert!("-1-0".parse::<Partition>().is_err());
    }
}
