//! `--transaction BATCH`: local transactions of up to BATCH records, one at
//! a time. A transaction begins with the record that arrives first and
//! takes each next one as it arrives, so with `--stdin` it stays open until
//! BATCH records came or input ended. A transaction whose send fails ends
//! there (its records count as failed) and the next record begins a new
//! one: no record is skipped. After an interrupt the open transaction is
//! finished (committed, or rolled back with `--rollback`) as at the end of
//! input.

use metaq::{Error, Partition, Producer};
use tokio_util::sync::CancellationToken;

use super::checks::Messages;
use super::input::{Input, Record};
use super::output::{Ended, Output, TransactionReport};

pub(super) struct Batch {
    /// Records per transaction at most.
    pub(super) size: usize,
    /// Roll each transaction back instead of committing it.
    pub(super) rollback: bool,
}

pub(super) async fn send(
    producer: &Producer,
    messages: &Messages,
    batch: Batch,
    input: &mut Input,
    stop: &CancellationToken,
    out: &mut Output,
) -> Ended {
    loop {
        let first = match input.next_or_stop(stop).await {
            Ok(record) => record,
            Err(ended) => return ended,
        };
        if let Some(ended) = transaction(producer, messages, &batch, first, input, stop, out).await
        {
            return ended;
        }
    }
}

/// Runs one transaction from `first`; `Some` when input ended meanwhile.
async fn transaction(
    producer: &Producer,
    messages: &Messages,
    batch: &Batch,
    first: Record,
    input: &mut Input,
    stop: &CancellationToken,
    out: &mut Output,
) -> Option<Ended> {
    let mut report = TransactionReport {
        key: "-",
        first_line: first.line,
        last_line: first.line,
        messages: 1,
    };
    let mut tx = match producer.begin_transaction() {
        Ok(tx) => tx,
        Err(error) => {
            out.transaction_failed(&report, &error);
            return None;
        }
    };
    let key = tx.key().to_owned();
    report.key = &key;
    let mut partitions: Vec<Partition> = Vec::with_capacity(batch.size);
    let mut record = first;
    let mut ended = None;
    loop {
        let message = messages.message(record.key, record.payload);
        match tx.send(message).await {
            Ok(sent) => partitions.push(sent.partition),
            Err(error) => {
                // Dropping `tx` rolls it back.
                out.transaction_failed(&report, &error);
                return None;
            }
        }
        if partitions.len() >= batch.size {
            break;
        }
        match input.next_or_stop(stop).await {
            Ok(next) => {
                record = next;
                report.last_line = record.line;
                report.messages += 1;
            }
            Err(end) => {
                ended = Some(end);
                break;
            }
        }
    }
    let (finished, state): (Result<(), Error>, _) = if batch.rollback {
        (tx.rollback().await, "rolled_back")
    } else {
        (tx.commit().await, "committed")
    };
    match finished {
        Ok(()) => out.transaction_done(&report, state, &partitions),
        Err(error) => out.transaction_failed(&report, &error),
    }
    ended
}
