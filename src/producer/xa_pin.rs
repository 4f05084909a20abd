//! What an XA resource and its branches stand on: one broker's connection,
//! held open while any of them lives, and the resource manager's unique
//! qualifier.

use std::sync::Arc;

use tracing::info;

use super::ProducerInner;
use crate::cluster::BrokerUri;
use crate::error::Error;
use crate::net::Connection;
use crate::protocol::TxKey;

/// The broker id of a resource made by address for a broker no published
/// topic lists (no route has this id, so its branches cannot send).
pub(crate) const UNLISTED: u32 = u32::MAX;

/// Holds a broker's connection open for as long as a resource lives.
struct Lease {
    inner: Arc<ProducerInner>,
    broker_id: u32,
    connection: Connection,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.inner.pool.release(self.connection.uri());
    }
}

/// A broker's connection and the unique qualifier, shared by a resource,
/// its clones and its branches.
#[derive(Clone)]
pub(crate) struct XaPin {
    lease: Arc<Lease>,
    qualifier: String,
}

impl std::fmt::Debug for XaPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XaPin")
            .field("broker", self.broker())
            .field("broker_id", &self.broker_id())
            .field("unique_qualifier", &self.qualifier)
            .finish()
    }
}

/// The default unique qualifier, Java's `XAMessageProducer-<host name>`.
fn default_qualifier() -> String {
    format!("XAMessageProducer-{}", super::session_id::host())
}

impl XaPin {
    /// Takes a use of the connection to `uri` (broker `broker_id`) from the
    /// producer's pool, with the default unique qualifier.
    pub(crate) fn open(inner: &Arc<ProducerInner>, broker_id: u32, uri: &BrokerUri) -> Self {
        let connection = inner.pool.acquire(uri);
        info!(broker = %uri, broker_id, "XA resource opened");
        XaPin {
            lease: Arc::new(Lease {
                inner: Arc::clone(inner),
                broker_id,
                connection,
            }),
            qualifier: default_qualifier(),
        }
    }

    /// The same connection under another (already checked) qualifier.
    pub(crate) fn with_qualifier(self, qualifier: String) -> Self {
        XaPin { qualifier, ..self }
    }

    pub(crate) fn inner(&self) -> &Arc<ProducerInner> {
        &self.lease.inner
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.lease.connection
    }

    pub(crate) fn broker(&self) -> &BrokerUri {
        self.lease.connection.uri()
    }

    pub(crate) fn broker_id(&self) -> u32 {
        self.lease.broker_id
    }

    pub(crate) fn qualifier(&self) -> &str {
        &self.qualifier
    }

    /// An XA failure of `operation` on `key` at this broker.
    pub(crate) fn error(
        &self,
        operation: &'static str,
        key: &TxKey,
        code: i32,
        reason: String,
    ) -> Error {
        Error::Xa {
            operation,
            xid: key.to_string(),
            broker: self.broker().to_string(),
            code,
            reason,
        }
    }
}
