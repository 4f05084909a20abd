//! One connection per broker address, shared by every topic that uses it
//! and closed when the last one lets go (docs/protocol.md §2.1).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tracing::info;

use super::{Connection, ConnectionSettings, Tally};
use crate::cluster::BrokerUri;

/// Reference-counted connections by broker address. Touched only when a
/// topic's route changes (and by `Producer::stats`), never on the send
/// path.
#[derive(Debug)]
pub(crate) struct ConnectionPool {
    settings: ConnectionSettings,
    entries: Mutex<HashMap<BrokerUri, (Connection, usize)>>,
    /// Every address ever connected to, with its counts: kept after its
    /// connection closes (a few dozen bytes per address).
    tallies: Mutex<BTreeMap<BrokerUri, Arc<Tally>>>,
}

impl ConnectionPool {
    pub(crate) fn new(settings: ConnectionSettings) -> Self {
        Self {
            settings,
            entries: Mutex::default(),
            tallies: Mutex::default(),
        }
    }

    fn tallies(&self) -> std::sync::MutexGuard<'_, BTreeMap<BrokerUri, Arc<Tally>>> {
        self.tallies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counts of every address ever connected to, by address.
    pub(crate) fn all_tallies(&self) -> Vec<(BrokerUri, Arc<Tally>)> {
        self.tallies()
            .iter()
            .map(|(uri, tally)| (uri.clone(), Arc::clone(tally)))
            .collect()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<BrokerUri, (Connection, usize)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection to `uri`, opened if this is its first user.
    pub(crate) fn acquire(&self, uri: &BrokerUri) -> Connection {
        let mut entries = self.entries();
        let (connection, users) = entries.entry(uri.clone()).or_insert_with(|| {
            info!(broker = %uri, "opening connection");
            let tally = Arc::clone(self.tallies().entry(uri.clone()).or_default());
            (
                Connection::open(uri.clone(), self.settings.clone(), tally),
                0,
            )
        });
        *users += 1;
        connection.clone()
    }

    /// Gives one use of `uri` back; the last one closes the connection.
    pub(crate) fn release(&self, uri: &BrokerUri) {
        let mut entries = self.entries();
        if let Some((connection, users)) = entries.get_mut(uri) {
            *users -= 1;
            if *users == 0 {
                info!(broker = %uri, "closing connection: no topic uses it");
                connection.close();
                entries.remove(uri);
            }
        }
    }

    /// Closes every connection.
    pub(crate) fn close_all(&self) {
        for (_, (connection, _)) in self.entries().drain() {
            connection.close();
        }
    }
}
