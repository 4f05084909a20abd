//! State every connection of one broker shares.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use super::counters::Stats;
use super::faults::Faults;
use super::ids::IdGenerator;
use super::registry::Registry;
use super::store::MessageStore;
use super::xa::table::XaTable;
use super::BrokerConfig;
use metaq::BrokerUri;

/// The version string answered to `version` (any 200 satisfies a heartbeat).
pub(crate) const BROKER_VERSION: &str = concat!("metaq-dev-broker-", env!("CARGO_PKG_VERSION"));

pub(crate) struct Shared {
    pub(crate) config: Arc<BrokerConfig>,
    uri: RwLock<BrokerUri>,
    pub(crate) store: MessageStore,
    pub(crate) ids: IdGenerator,
    pub(crate) faults: Faults,
    pub(crate) stats: Stats,
    pub(crate) registry: Registry,
    /// Every XA branch; global, unlike local transactions (docs/protocol.md §4.3).
    pub(crate) xa: XaTable,
    /// Topics accepted through a wildcard and already registered.
    dynamic_topics: Mutex<HashSet<String>>,
    pub(crate) started: Instant,
}

impl Shared {
    pub(crate) fn new(
        config: Arc<BrokerConfig>,
        uri: BrokerUri,
        store: MessageStore,
        registry: Registry,
        xa: XaTable,
    ) -> Self {
        Self {
            ids: IdGenerator::new(config.id),
            config,
            uri: RwLock::new(uri),
            store,
            faults: Faults::default(),
            stats: Stats::default(),
            registry,
            xa,
            dynamic_topics: Mutex::default(),
            started: Instant::now(),
        }
    }

    pub(crate) fn uri(&self) -> BrokerUri {
        self.uri.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_uri(&self, uri: BrokerUri) {
        *self.uri.write().unwrap_or_else(|e| e.into_inner()) = uri;
    }

    /// Registers a topic accepted through a wildcard, once (docs/protocol.md §1.3, "Runtime").
    pub(crate) fn ensure_registered(&self, topic: &str, partitions: u32, is_pattern: bool) {
        if !is_pattern {
            return;
        }
        let mut seen = self
            .dynamic_topics
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !seen.contains(topic) {
            seen.insert(topic.to_owned());
            self.registry.add_topic(topic, partitions);
        }
    }
}
