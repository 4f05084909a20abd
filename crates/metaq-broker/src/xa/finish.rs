//! PREPARE, COMMIT and ROLLBACK of XA branches: the commands that touch the
//! journal or the store, so their answers wait for disk.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::FutureExt;
use tracing::{info, warn};

use super::journal::HeldPut;
use super::{not_started, ok, xa_error, Phase, XAER_PROTO, XAER_RMERR, XAER_RMFAIL, XA_RBOTHER};
use crate::commit_blocks::{blocks, queue, stored, Block};
use crate::counters::Stats;
use crate::reply::Reply;
use crate::shared::Shared;
use crate::store::find_ids;
use metaq::protocol::{Response, StatusCode, TxKey, XaTxId};

fn preparing(opaque: i32, key: &TxKey) -> Reply {
    let text = format!("XA transaction '{key}' is being prepared.");
    xa_error(opaque, XAER_PROTO, text)
}

/// START: finished read-only (`3`). IN_USE: written to the journal, then
/// PREPARED (`0`). The answer waits for the file and directory fsyncs.
pub(super) fn prepare(shared: &Arc<Shared>, key: &TxKey, xid: XaTxId, opaque: i32) -> Reply {
    let mut state = shared.xa.lock();
    let Some(branch) = state.branches.get_mut(&xid) else {
        return not_started(opaque, key);
    };
    match branch.phase {
        Phase::Preparing => return preparing(opaque, key),
        Phase::Prepared(_) => {
            let text = format!("XA transaction '{key}' is already prepared.");
            return xa_error(opaque, XAER_PROTO, text);
        }
        Phase::Active => {}
    }
    if branch.puts.is_empty() {
        // Nothing to commit: XA_RDONLY ends the branch at once.
        state.remove(&xid);
        Stats::bump(&shared.stats.tx_commit);
        return ok(opaque, "3");
    }
    branch.phase = Phase::Preparing;
    // `Bytes` bodies: cloning the puts copies no message.
    let puts = branch.puts.clone();
    drop(state);
    let shared = Arc::clone(shared);
    let key = key.clone();
    // A task of its own: the branch must leave PREPARING even if the
    // connection that asked is gone before the journal is written.
    detached(opaque, async move {
        let writer = Arc::clone(&shared);
        let wxid = xid.clone();
        let written = tokio::task::spawn_blocking(move || writer.xa.journal.write(&wxid, &puts))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        let mut state = shared.xa.lock();
        // Nothing but this future leaves PREPARING, so the branch is still here.
        let Some(branch) = state.branches.get_mut(&xid) else {
            let text = format!("XAException:code={XAER_RMERR},msg=XA transaction '{key}' was lost while being prepared.");
            return Response::text(StatusCode::INTERNAL_SERVER_ERROR, opaque, text);
        };
        match written {
            Ok(file) => {
                branch.phase = Phase::Prepared(file);
                // Prepared branches never expire.
                if let Some(timer) = branch.timer.take() {
                    timer.abort();
                }
                Response::text(StatusCode::SUCCESS, opaque, "0")
            }
            Err(e) => {
                // Still IN_USE: the client may roll back, or try again.
                branch.phase = Phase::Active;
                warn!(%key, error = %e, "cannot write the XA journal");
                let text = format!(
                    "XAException:code={XAER_RMERR},msg=Cannot write the journal of XA transaction '{key}': {e}"
                );
                Response::text(StatusCode::INTERNAL_SERVER_ERROR, opaque, text)
            }
        }
    })
}

/// Runs `answer` as a task of its own, so that it ends even if the reply
/// is dropped (its connection closed), and replies with its response.
fn detached(
    opaque: i32,
    answer: impl std::future::Future<Output = Response> + Send + 'static,
) -> Reply {
    let task = tokio::spawn(answer);
    async move {
        task.await.unwrap_or_else(|e| {
            let text =
                format!("XAException:code={XAER_RMERR},msg=the broker's XA task failed: {e}");
            Response::text(StatusCode::INTERNAL_SERVER_ERROR, opaque, text)
        })
    }
    .boxed()
}

/// COMMIT_ONE_PHASE of START, IN_USE or PREPARED, COMMIT_TWO_PHASE of
/// PREPARED: appends each partition's puts as one contiguous block with the
/// ids given at put time, then removes the journal file, then answers.
pub(super) fn commit(
    shared: &Arc<Shared>,
    key: &TxKey,
    xid: &XaTxId,
    two_phase: bool,
    opaque: i32,
) -> Reply {
    let mut state = shared.xa.lock();
    let Some(branch) = state.branches.get(xid) else {
        return not_started(opaque, key);
    };
    match branch.phase {
        Phase::Preparing => return preparing(opaque, key),
        Phase::Active if two_phase => {
            let text = format!(
                "Cannot do 2 phase commit if the transaction '{key}' has not been prepared."
            );
            return xa_error(opaque, XAER_PROTO, text);
        }
        _ => {}
    }
    let Some(branch) = state.remove(xid) else {
        return not_started(opaque, key);
    };
    drop(state);
    let file = match branch.phase {
        Phase::Prepared(file) => Some(file),
        _ => None,
    };
    let batches = blocks(
        branch
            .puts
            .into_iter()
            .map(|p| (p.topic, p.partition, p.record)),
    );
    // Queued now, so later requests of this connection are stored after
    // them; a replayed branch first looks for what is already stored.
    let queued = (!branch.replayed).then(|| queue(shared, &batches));
    let shared = Arc::clone(shared);
    let key = key.clone();
    let xid = xid.clone();
    // A task of its own: a commit under way finishes (or is put back) even
    // if the connection that asked is gone.
    detached(opaque, async move {
        let appends = match queued {
            Some(appends) => appends,
            None => {
                let batches = not_yet_stored(&shared, &key, batches.clone()).await;
                queue(&shared, &batches)
            }
        };
        let failures = stored(&shared, appends).await;
        if failures.is_empty() {
            // Appended: a restart must not bring it back.
            remove_file(&shared, &key, file).await;
            Stats::bump(&shared.stats.tx_commit);
            return Response::text(StatusCode::SUCCESS, opaque, "");
        }
        warn!(%key, ?failures, "XA commit could not append every partition");
        let failures = failures.join("; ");
        if let Some(file) = file {
            // Prepared: keep it so, with its journal file, for a commit
            // again; what was appended is recognised by id then.
            let puts = batches.into_iter().flat_map(|(topic, partition, records)| {
                records.into_iter().map(move |record| HeldPut {
                    topic: topic.clone(),
                    partition,
                    record,
                })
            });
            shared.xa.lock().put_back(xid, file, puts.collect());
            let text = format!(
                "XAException:code={XAER_RMFAIL},msg=Commit of XA transaction '{key}' is incomplete ({failures}); it stays prepared: commit it again"
            );
            return Response::text(StatusCode::INTERNAL_SERVER_ERROR, opaque, text);
        }
        Stats::bump(&shared.stats.tx_rollback);
        let text = format!(
            "XAException:code={XA_RBOTHER},msg=Commit of XA transaction '{key}' failed: {failures}"
        );
        Response::text(StatusCode::INTERNAL_SERVER_ERROR, opaque, text)
    })
}

/// `batches` without the messages the logs already hold (by message id,
/// unique per broker across restarts).
async fn not_yet_stored(shared: &Arc<Shared>, key: &TxKey, batches: Vec<Block>) -> Vec<Block> {
    let data_dir = shared.config.data_dir.clone();
    let key = key.clone();
    let everything = batches.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(batches.len());
        for (topic, partition, records) in batches {
            let ids: HashSet<i64> = records.iter().map(|r| r.id).collect();
            let stored = match find_ids(&data_dir, &topic, partition, &ids) {
                Ok(stored) => stored,
                Err(e) => {
                    // Better a possible duplicate than a lost commit.
                    warn!(%key, topic, partition, error = %e, "cannot read the log; appending the whole block");
                    HashSet::new()
                }
            };
            if !stored.is_empty() {
                info!(%key, topic, partition, stored = stored.len(), "XA messages already stored before the restart; not appended again");
            }
            let left = records
                .into_iter()
                .filter(|r| !stored.contains(&r.id))
                .collect();
            out.push((topic, partition, left));
        }
        out
    });
    checked.await.unwrap_or(everything)
}

/// Discards a branch in any state but PREPARING; a prepared one is
/// answered once its journal file is gone.
pub(super) fn rollback(shared: &Arc<Shared>, key: &TxKey, xid: &XaTxId, opaque: i32) -> Reply {
    let mut state = shared.xa.lock();
    match state.branches.get(xid).map(|b| &b.phase) {
        None => return not_started(opaque, key),
        Some(Phase::Preparing) => return preparing(opaque, key),
        Some(_) => {}
    }
    let Some(branch) = state.remove(xid) else {
        return not_started(opaque, key);
    };
    drop(state);
    Stats::bump(&shared.stats.tx_rollback);
    let Phase::Prepared(file) = branch.phase else {
        return ok(opaque, "");
    };
    let shared = Arc::clone(shared);
    let key = key.clone();
    async move {
        remove_file(&shared, &key, Some(file)).await;
        Response::text(StatusCode::SUCCESS, opaque, "")
    }
    .boxed()
}

/// Removes a finished branch's journal file, if it had one. A failure is
/// only logged: the outcome is decided, and the file would at worst bring
/// the branch back as prepared after a restart, where RECOVER shows it.
async fn remove_file(shared: &Arc<Shared>, key: &TxKey, file: Option<PathBuf>) {
    let Some(file) = file else { return };
    let remover = Arc::clone(shared);
    let shown = file.display().to_string();
    let removed = tokio::task::spawn_blocking(move || remover.xa.journal.remove(&file))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    if let Err(e) = removed {
        warn!(%key, file = %shown, error = %e, "cannot remove an XA journal file");
    }
}
