//! Local transactions of one connection (docs/protocol.md §4.2, 4.5, 4.6).
//!
//! MetaQ keeps local transactions in a per-connection session, so they live
//! here, in the connection task, with no locks. Puts inside a transaction get
//! their message id at once and are held in memory; COMMIT appends each
//! partition's messages as one contiguous block; ROLLBACK, a timeout, or the
//! connection closing discards them (the Java broker forgets the last
//! case and keeps them until they time out).

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use futures::future::FutureExt;
use tokio_util::time::{delay_queue, DelayQueue};
use tracing::{info, warn};

use super::commit_blocks::{blocks, queue, stored};
use super::counters::Stats;
use super::reply::{error, ready, Reply};
use super::shared::Shared;
use super::store::Record;
use super::tx_put_check::{check_tx_put, MAX_OPEN_TRANSACTIONS};
use super::xa;
use metaq::protocol::{
    LocalTxId, PutRequest, Response, StatusCode, TransactionKind, TransactionRequest, TxKey,
};

struct OpenTx {
    /// (topic, partition, record) in put order.
    puts: Vec<(String, u32, Record)>,
    /// Body bytes held in `puts`.
    bytes: usize,
    timer: Option<delay_queue::Key>,
}

/// Open local transactions of one connection.
pub(crate) struct TxSession {
    shared: Arc<Shared>,
    open: HashMap<LocalTxId, OpenTx>,
    /// Body bytes held by every open transaction.
    held: usize,
    timers: DelayQueue<LocalTxId>,
}

fn not_started(key: &TxKey) -> String {
    format!("Local transaction '{key}' has not been started.")
}

impl TxSession {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            open: HashMap::new(),
            held: 0,
            timers: DelayQueue::new(),
        }
    }

    /// Answers a `transaction` command; `None` for END, which is never answered.
    pub(crate) fn command(&mut self, request: TransactionRequest) -> Option<Reply> {
        let opaque = request.opaque;
        if request.kind == TransactionKind::End {
            return None;
        }
        // XA branches are the broker's, not the connection's.
        let TxKey::Local(local) = &request.key else {
            return Some(xa::command(&self.shared, request));
        };
        let local = local.clone();
        Some(match request.kind {
            TransactionKind::Begin => self.begin(local, request.timeout_secs, opaque),
            TransactionKind::CommitOnePhase | TransactionKind::CommitTwoPhase => {
                self.commit(&request.key, local, opaque)
            }
            TransactionKind::Rollback => match self.discard(&local) {
                true => {
                    Stats::bump(&self.shared.stats.tx_rollback);
                    ready(Response::text(StatusCode::SUCCESS, opaque, ""))
                }
                false => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    opaque,
                    not_started(&request.key),
                ),
            },
            TransactionKind::Prepare => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                opaque,
                "XAException:code=-3,msg=Prepare not implemented on Local Transactions.",
            ),
            _ => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                opaque,
                format!(
                    "XAException:code=-4,msg=Transaction '{}' is not an XA transaction.",
                    request.key
                ),
            ),
        })
    }

    fn begin(&mut self, local: LocalTxId, timeout_secs: Option<i32>, opaque: i32) -> Reply {
        if !self.open.contains_key(&local) {
            if self.open.len() >= MAX_OPEN_TRANSACTIONS {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    opaque,
                    format!(
                        "Too many open transactions on this connection (limit {MAX_OPEN_TRANSACTIONS})."
                    ),
                );
            }
            Stats::bump(&self.shared.stats.tx_begin);
            // Only the first BEGIN arms the timer; the broker caps it.
            let timer = timeout_secs.filter(|t| *t > 0).map(|t| {
                let timeout = Duration::from_secs(t as u64).min(self.shared.config.max_tx_timeout);
                self.timers.insert(local.clone(), timeout)
            });
            self.open.insert(
                local,
                OpenTx {
                    puts: Vec::new(),
                    bytes: 0,
                    timer,
                },
            );
        }
        ready(Response::text(StatusCode::SUCCESS, opaque, ""))
    }

    /// A put carrying a transaction key.
    pub(crate) fn put(&mut self, put: PutRequest) -> Reply {
        let shared = &self.shared;
        Stats::bump(&shared.stats.cmd_put);
        let opaque = put.opaque;
        let key = put
            .tx_key
            .clone()
            .expect("only transactional puts come here");
        let local = match &key {
            TxKey::Local(local) => local,
            TxKey::Xa(xid) => return xa::put(shared, xid, put),
            // `null` names no transaction; answered as before XA existed here.
            TxKey::Null => {
                Stats::bump(&shared.stats.put_failed);
                let text = format!("XA transaction '{key}' has not been started.");
                return error(StatusCode::INTERNAL_SERVER_ERROR, opaque, text);
            }
        };
        let Some(tx) = self.open.get_mut(local) else {
            Stats::bump(&shared.stats.put_failed);
            return error(StatusCode::INTERNAL_SERVER_ERROR, opaque, not_started(&key));
        };
        let partition = match check_tx_put(shared, self.held, &put) {
            Ok(partition) => partition,
            Err(reply) => return reply,
        };
        self.held += put.body.len();
        tx.bytes += put.body.len();
        let id = shared.ids.next_id();
        tx.puts.push((
            put.topic,
            partition,
            Record {
                id,
                flag: put.flag,
                body: put.body,
            },
        ));
        ready(Response::text(
            StatusCode::SUCCESS,
            opaque,
            format!("{id} {partition} -1"),
        ))
    }

    fn commit(&mut self, key: &TxKey, local: LocalTxId, opaque: i32) -> Reply {
        let Some(tx) = self.remove(&local) else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, opaque, not_started(key));
        };
        if let Some(timer) = tx.timer {
            self.timers.remove(&timer);
        }
        // One contiguous block per partition, in put order, queued now;
        // answered once all are stored.
        let queued = queue(&self.shared, &blocks(tx.puts));
        let shared = Arc::clone(&self.shared);
        let key = key.to_string();
        async move {
            let failures = stored(&shared, queued).await;
            if failures.is_empty() {
                Stats::bump(&shared.stats.tx_commit);
                Response::text(StatusCode::SUCCESS, opaque, "")
            } else {
                warn!(%key, ?failures, "commit could not append every partition");
                Response::text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    opaque,
                    format!(
                        "Commit of transaction '{key}' failed: {}",
                        failures.join("; ")
                    ),
                )
            }
        }
        .boxed()
    }

    /// Takes an open transaction out, releasing what it held.
    fn remove(&mut self, local: &LocalTxId) -> Option<OpenTx> {
        let tx = self.open.remove(local)?;
        self.held -= tx.bytes;
        Some(tx)
    }

    /// Forgets a transaction; false if it was not open.
    fn discard(&mut self, local: &LocalTxId) -> bool {
        match self.remove(local) {
            Some(tx) => {
                if let Some(timer) = tx.timer {
                    self.timers.remove(&timer);
                }
                true
            }
            None => false,
        }
    }

    /// The next transaction whose timeout passed; pending forever if none is armed.
    pub(crate) async fn next_expired(&mut self) -> LocalTxId {
        loop {
            if let Some(expired) = poll_fn(|cx| self.timers.poll_expired(cx)).await {
                return expired.into_inner();
            }
            // Empty queue: nothing can expire until the next BEGIN, which
            // comes through the connection loop, cancelling this wait.
            futures::future::pending::<()>().await;
        }
    }

    pub(crate) fn expire(&mut self, local: LocalTxId) {
        if let Some(tx) = self.remove(&local) {
            Stats::bump(&self.shared.stats.tx_rollback);
            info!(session = %local.session_id, counter = local.counter, messages = tx.puts.len(), "transaction timed out; rolled back");
        }
    }

    /// Rolls back everything still open (the connection is closing).
    pub(crate) fn rollback_all(&mut self) {
        let open = self.open.len();
        if open > 0 {
            Stats::add(&self.shared.stats.tx_rollback, open as u64);
            info!(open, "connection closed; open transactions rolled back");
        }
        self.open.clear();
        self.held = 0;
        self.timers.clear();
    }
}
