//! [`ZkSettings`]: how discovery reaches ZooKeeper.

use std::fmt;
use std::time::Duration;

use super::layout::{normalize_root, DEFAULT_ROOT};
use crate::Error;

/// The default ensemble, `localhost:2181`.
///
/// # Examples
///
/// ```
/// use metaq::discovery::{ZkSettings, DEFAULT_CONNECT};
/// assert_eq!(ZkSettings::default().connect, DEFAULT_CONNECT);
/// ```
pub const DEFAULT_CONNECT: &str = "localhost:2181";

/// Settings of the ZooKeeper side of a producer.
///
/// Every field is public; [`ZkSettings::new`] fills in the defaults and the
/// `with_*` methods change one field each.
///
/// ```
/// use std::time::Duration;
/// use metaq::discovery::ZkSettings;
///
/// let settings = ZkSettings::new("zk1:2181,zk2:2181/prod")
///     .with_root("meta/")
///     .with_session_timeout(Duration::from_secs(10))
///     .with_digest_auth("producer:secret");
/// assert_eq!(settings.root, "/meta");
/// assert_eq!(settings.relist_interval, Duration::from_secs(30));
/// assert!(settings.validate().is_ok());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ZkSettings {
    /// The ensemble, `host:port[,host:port...][/chroot]`.
    /// Default `localhost:2181` ([`DEFAULT_CONNECT`]).
    pub connect: String,
    /// The MetaQ root (`zk.zkRoot`). Default `/meta`. [`with_root`](Self::with_root)
    /// normalises it as MetaQ does; a root set directly is normalised when used.
    pub root: String,
    /// The session timeout asked of ZooKeeper (the server may clamp it).
    /// Default 30 s, as MetaQ.
    pub session_timeout: Duration,
    /// Upper bound on establishing the first session in
    /// [`Discovery::connect`](super::Discovery::connect), and on each attempt
    /// to open a new session after an expiry. Default 10 s.
    pub connect_timeout: Duration,
    /// Every watched topic is listed again at this interval even without a
    /// ZooKeeper event (a safety net; events normally drive updates).
    /// Default 30 s.
    pub relist_interval: Duration,
    /// `user:password` for ZooKeeper `digest` authentication, added to every
    /// session. Default `None` (MetaQ's nodes have open ACLs).
    pub digest_auth: Option<String>,
    /// A `numParts` above this is treated as malformed data (a typo such as
    /// `100000` must not make a producer spread messages over phantom
    /// partitions). Default 1024.
    pub max_partitions_per_broker: u32,
}

/// Prints the digest user but never the password, so that logging a
/// producer's builder or settings does not leak it.
///
/// ```
/// use metaq::discovery::ZkSettings;
/// let settings = ZkSettings::new("zk:2181").with_digest_auth("producer:s3cret");
/// let printed = format!("{settings:?}");
/// assert!(printed.contains("producer:<redacted>"));
/// assert!(!printed.contains("s3cret"));
/// ```
impl fmt::Debug for ZkSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = self
            .digest_auth
            .as_deref()
            .map(|auth| match auth.split_once(':') {
                Some((user, _)) => format!("{user}:<redacted>"),
                None => "<redacted>".to_owned(),
            });
        f.debug_struct("ZkSettings")
            .field("connect", &self.connect)
            .field("root", &self.root)
            .field("session_timeout", &self.session_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("relist_interval", &self.relist_interval)
            .field("digest_auth", &auth)
            .field("max_partitions_per_broker", &self.max_partitions_per_broker)
            .finish()
    }
}

impl Default for ZkSettings {
    fn default() -> Self {
        Self::new(DEFAULT_CONNECT)
    }
}

impl ZkSettings {
    /// Default settings for the ensemble `connect`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use metaq::discovery::ZkSettings;
    /// let settings = ZkSettings::new("zk1:2181,zk2:2181/prod");
    /// assert_eq!(settings.connect, "zk1:2181,zk2:2181/prod");
    /// assert_eq!(settings.root, "/meta");
    /// assert_eq!(settings.session_timeout, Duration::from_secs(30));
    /// ```
    pub fn new(connect: impl Into<String>) -> Self {
        Self {
            connect: connect.into(),
            root: DEFAULT_ROOT.to_owned(),
            session_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            relist_interval: Duration::from_secs(30),
            digest_auth: None,
            max_partitions_per_broker: 1024,
        }
    }

    /// Sets the MetaQ root, normalised (`meta`, `/meta/` → `/meta`).
    ///
    /// # Examples
    ///
    /// ```
    /// let settings = metaq::discovery::ZkSettings::new("zk:2181").with_root("prod/meta/");
    /// assert_eq!(settings.root, "/prod/meta");
    /// ```
    pub fn with_root(mut self, root: &str) -> Self {
        self.root = normalize_root(root);
        self
    }

    /// Sets [`session_timeout`](Self::session_timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let settings = metaq::discovery::ZkSettings::new("zk:2181")
    ///     .with_session_timeout(Duration::from_secs(10));
    /// assert_eq!(settings.session_timeout, Duration::from_secs(10));
    /// ```
    pub fn with_session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let settings = metaq::discovery::ZkSettings::new("zk:2181")
    ///     .with_connect_timeout(Duration::from_secs(2));
    /// assert_eq!(settings.connect_timeout, Duration::from_secs(2));
    /// ```
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`relist_interval`](Self::relist_interval).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let settings = metaq::discovery::ZkSettings::new("zk:2181")
    ///     .with_relist_interval(Duration::from_secs(5));
    /// assert_eq!(settings.relist_interval, Duration::from_secs(5));
    /// ```
    pub fn with_relist_interval(mut self, interval: Duration) -> Self {
        self.relist_interval = interval;
        self
    }

    /// Sets [`digest_auth`](Self::digest_auth) (`user:password`).
    ///
    /// # Examples
    ///
    /// ```
    /// let settings = metaq::discovery::ZkSettings::new("zk:2181")
    ///     .with_digest_auth(String::from("producer:secret"));
    /// assert_eq!(settings.digest_auth.as_deref(), Some("producer:secret"));
    /// ```
    pub fn with_digest_auth(mut self, user_password: impl Into<String>) -> Self {
        self.digest_auth = Some(user_password.into());
        self
    }

    /// Sets [`max_partitions_per_broker`](Self::max_partitions_per_broker).
    ///
    /// # Examples
    ///
    /// ```
    /// let settings = metaq::discovery::ZkSettings::new("zk:2181")
    ///     .with_max_partitions_per_broker(64);
    /// assert_eq!(settings.max_partitions_per_broker, 64);
    /// ```
    pub fn with_max_partitions_per_broker(mut self, max: u32) -> Self {
        self.max_partitions_per_broker = max;
        self
    }

    /// Checks the settings: a non-blank ensemble, a root without empty
    /// segments, non-zero durations, a `user:password` digest and a
    /// partition limit of at least 1.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] saying which field is wrong.
    ///
    /// ```
    /// use std::time::Duration;
    /// use metaq::discovery::ZkSettings;
    ///
    /// assert!(ZkSettings::new("").validate().is_err());
    /// assert!(ZkSettings::new("zk:2181").with_digest_auth("no-colon").validate().is_err());
    /// assert!(ZkSettings::new("zk:2181").with_relist_interval(Duration::ZERO).validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), Error> {
        let fail = |reason: String| Err(Error::Config { reason });
        if self.connect.trim().is_empty() {
            return fail("zookeeper connect string is empty".into());
        }
        let root = normalize_root(&self.root);
        if root.is_empty() || root[1..].split('/').any(str::is_empty) {
            return fail(format!(
                "zookeeper root {:?} is not a path like /meta",
                self.root
            ));
        }
        for (name, value) in [
            ("session_timeout", self.session_timeout),
            ("connect_timeout", self.connect_timeout),
            ("relist_interval", self.relist_interval),
        ] {
            if value.is_zero() {
                return fail(format!("zookeeper {name} must be above zero"));
            }
        }
        if let Some(auth) = &self.digest_auth {
            if !auth.contains(':') {
                return fail("zookeeper digest_auth must be \"user:password\"".into());
            }
        }
        if self.max_partitions_per_broker == 0 {
            return fail("max_partitions_per_broker must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let s = ZkSettings::default();
        assert_eq!(s.connect, "localhost:2181");
        assert_eq!(s.root, "/meta");
        assert_eq!(s.session_timeout, Duration::from_secs(30));
        assert_eq!(s.connect_timeout, Duration::from_secs(10));
        assert_eq!(s.relist_interval, Duration::from_secs(30));
        assert_eq!(s.digest_auth, None);
        assert_eq!(s.max_partitions_per_broker, 1024);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn debug_never_prints_the_password() {
        for auth in ["producer:s3cret", "s3cret", "producer:a:s3cret"] {
            let settings = ZkSettings::new("zk:2181").with_digest_auth(auth);
            let printed = format!("{settings:?} {settings:#?}");
            assert!(!printed.contains("s3cret"), "{printed}");
            assert!(printed.contains("<redacted>"), "{printed}");
            assert!(printed.contains("zk:2181"), "{printed}");
        }
        // Nor through the producer's builder, which holds the settings.
        let builder = crate::ProducerBuilder::new("zk:2181").zk_digest_auth("producer:s3cret");
        let printed = format!("{builder:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("producer:<redacted>"), "{printed}");
    }

    #[test]
    fn invalid_settings() {
        let ok = ZkSettings::new("zk:2181");
        assert!(ok.clone().with_root("meta/").validate().is_ok());
        assert!(ok.clone().with_root("/a/b").validate().is_ok());
        for bad in [
            ZkSettings::new("  "),
            ok.clone().with_root("/"),
            ok.clone().with_root("/a//b"),
            ok.clone().with_session_timeout(Duration::ZERO),
            ok.clone().with_connect_timeout(Duration::ZERO),
            ok.clone().with_relist_interval(Duration::ZERO),
            ok.clone().with_digest_auth("user"),
            ok.clone().with_max_partitions_per_broker(0),
        ] {
            assert!(
                matches!(bad.validate(), Err(Error::Config { .. })),
                "{bad:?}"
            );
        }
    }
}
