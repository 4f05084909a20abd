//! XA transactions (docs/protocol.md §4.3 – 4.6).
//!
//! Unlike local transactions, XA branches belong to the whole broker: a
//! transaction manager may begin a branch on one connection and finish it on
//! another, or after the broker restarted. So the table lives in [`Shared`]
//! behind a mutex, connection close leaves it alone, and PREPARE writes the
//! branch to the [`journal`] before answering.
//!
//! States: a branch without puts is START, with puts IN_USE (a refused put
//! changes nothing, so "has puts" is exactly IN_USE); PREPARING while its
//! journal file is written; PREPARED once it is on disk. "Finished" means
//! removed from the table.

mod finish;
mod journal;
pub(crate) mod table;

use table::{Branch, Phase};

use std::fmt::Display;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::counters::Stats;
use super::reply::{error, ready, Reply};
use super::shared::Shared;
use super::store::Record;
use super::tx_put_check::{check_tx_put, MAX_HELD_MESSAGES, MAX_OPEN_TRANSACTIONS};
use journal::HeldPut;
use metaq::protocol::{
    PutRequest, Response, StatusCode, TransactionKind, TransactionRequest, TxKey, XaTxId,
};

/// XA error codes the broker answers with (docs/protocol.md §4.4).
const XAER_RMERR: i32 = -3;
const XAER_NOTA: i32 = -4;
const XAER_PROTO: i32 = -6;
const XAER_RMFAIL: i32 = -7;
const XA_RBOTHER: i32 = 104;

fn xa_error(opaque: i32, code: i32, msg: impl Display) -> Reply {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        opaque,
        format!("XAException:code={code},msg={msg}"),
    )
}

fn not_started(opaque: i32, key: &TxKey) -> Reply {
    xa_error(
        opaque,
        XAER_NOTA,
        format!("XA transaction '{key}' has not been started."),
    )
}

fn ok(opaque: i32, body: &'static str) -> Reply {
    ready(Response::text(StatusCode::SUCCESS, opaque, body))
}

/// Answers a `transaction` command with an XA key, or RECOVER/FORGET
/// without a local key. END never comes here.
pub(crate) fn command(shared: &Arc<Shared>, request: TransactionRequest) -> Reply {
    let opaque = request.opaque;
    let xid = match &request.key {
        TxKey::Xa(xid) => xid.clone(),
        _ if request.kind == TransactionKind::Recover => {
            return recover(shared, request.unique_qualifier.as_deref(), opaque)
        }
        key => {
            let text = format!("Transaction '{key}' is not an XA transaction.");
            return xa_error(opaque, XAER_NOTA, text);
        }
    };
    let key = &request.key;
    match request.kind {
        TransactionKind::Begin => begin(shared, xid, request.timeout_secs, opaque),
        TransactionKind::Prepare => finish::prepare(shared, key, xid, opaque),
        TransactionKind::CommitOnePhase => finish::commit(shared, key, &xid, false, opaque),
        TransactionKind::CommitTwoPhase => finish::commit(shared, key, &xid, true, opaque),
        TransactionKind::Rollback => finish::rollback(shared, key, &xid, opaque),
        TransactionKind::Recover => recover(shared, request.unique_qualifier.as_deref(), opaque),
        // No branch is ever finished by hand here, so there is nothing to forget.
        TransactionKind::Forget => ok(opaque, ""),
        _ => xa_error(
            opaque,
            XAER_PROTO,
            format!("Unexpected command for '{key}'."),
        ),
    }
}

fn begin(shared: &Arc<Shared>, xid: XaTxId, timeout_secs: Option<i32>, opaque: i32) -> Reply {
    let mut state = shared.xa.lock();
    if state.branches.contains_key(&xid) {
        return ok(opaque, "");
    }
    if state.branches.len() >= MAX_OPEN_TRANSACTIONS {
        let text = format!("Too many XA transactions on this broker (limit {MAX_OPEN_TRANSACTIONS}); commit or roll back first.");
        return xa_error(opaque, XAER_RMERR, text);
    }
    Stats::bump(&shared.stats.tx_xa_begin);
    state.generations += 1;
    let generation = state.generations;
    // Only the first BEGIN arms the timer; the broker caps it.
    let timer = timeout_secs.filter(|t| *t > 0).map(|t| {
        let timeout = Duration::from_secs(t as u64).min(shared.config.max_tx_timeout);
        let weak: Weak<Shared> = Arc::downgrade(shared);
        let key = xid.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(shared) = weak.upgrade() {
                shared.xa.expire(&key, generation, &shared.stats);
            }
        })
        .abort_handle()
    });
    let branch = Branch {
        puts: Vec::new(),
        bytes: 0,
        phase: Phase::Active,
        timer,
        generation,
        replayed: false,
    };
    state.branches.insert(xid, branch);
    ok(opaque, "")
}

/// A put carrying an XA key: held by its branch, answered `<id> <partition> -1`.
pub(crate) fn put(shared: &Arc<Shared>, xid: &XaTxId, put: PutRequest) -> Reply {
    let opaque = put.opaque;
    let key = TxKey::Xa(xid.clone());
    let mut state = shared.xa.lock();
    let held = state.held;
    let Some(branch) = state.branches.get_mut(xid) else {
        Stats::bump(&shared.stats.put_failed);
        let text = format!("XA transaction '{key}' has not been started.");
        return error(StatusCode::INTERNAL_SERVER_ERROR, opaque, text);
    };
    if !matches!(branch.phase, Phase::Active) {
        Stats::bump(&shared.stats.put_failed);
        let text = format!("XA transaction '{key}' is prepared; it takes no more messages.");
        return xa_error(opaque, XAER_PROTO, text);
    }
    // The per-connection bound does not apply (nothing is held per
    // connection); the broker-wide one below does.
    let partition = match check_tx_put(shared, 0, &put) {
        Ok(partition) => partition,
        Err(reply) => return reply,
    };
    let limit = MAX_HELD_MESSAGES * shared.config.max_message_size;
    if held + put.body.len() > limit {
        Stats::bump(&shared.stats.put_failed);
        let text = format!("the XA transactions of this broker would hold over {limit} bytes; commit or roll back first");
        return xa_error(opaque, XAER_RMERR, text);
    }
    let id = shared.ids.next_id();
    let len = put.body.len();
    branch.bytes += len;
    branch.puts.push(HeldPut {
        topic: put.topic,
        partition,
        record: Record {
            id,
            flag: put.flag,
            body: put.body,
        },
    });
    state.held += len;
    ready(Response::text(
        StatusCode::SUCCESS,
        opaque,
        format!("{id} {partition} -1"),
    ))
}

/// The keys of the prepared branches of `qualifier` (all without one),
/// joined by CRLF.
fn recover(shared: &Shared, qualifier: Option<&str>, opaque: i32) -> Reply {
    let qualifier = qualifier.filter(|q| !q.is_empty());
    let state = shared.xa.lock();
    let mut keys: Vec<String> = state
        .branches
        .iter()
        .filter(|(_, b)| matches!(b.phase, Phase::Prepared(_)))
        .filter(|(k, _)| qualifier.is_none_or(|q| k.unique_qualifier == q))
        .map(|(k, _)| TxKey::Xa(k.clone()).to_string())
        .collect();
    keys.sort();
    ready(Response::text(
        StatusCode::SUCCESS,
        opaque,
        keys.join("\r\n"),
    ))
}
