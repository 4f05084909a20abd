//! How a commit stores what a transaction held, local or XA
//! (docs/protocol.md §4.2, 4.3): per partition one contiguous block in put
//! order, each appended with the ids given at put time; the answer waits
//! until every block is stored.

use std::collections::BTreeMap;

use futures::future::{BoxFuture, FutureExt};

use super::counters::Stats;
use super::shared::Shared;
use super::store::Record;

/// One partition's messages of a commit, in put order: (topic, partition,
/// records).
pub(crate) type Block = (String, u32, Vec<Record>);

/// A queued append of one block: (partition name, messages, append).
pub(crate) type QueuedBlock = (String, u64, BoxFuture<'static, std::io::Result<Vec<i64>>>);

/// Groups held puts into one block per partition, each in put order.
pub(crate) fn blocks(puts: impl IntoIterator<Item = (String, u32, Record)>) -> Vec<Block> {
    let mut grouped: BTreeMap<(String, u32), Vec<Record>> = BTreeMap::new();
    for (topic, partition, record) in puts {
        grouped.entry((topic, partition)).or_default().push(record);
    }
    grouped.into_iter().map(|((t, p), r)| (t, p, r)).collect()
}

/// Queues every non-empty block's append now, so that later requests of
/// the same connection are stored after them.
pub(crate) fn queue(shared: &Shared, blocks: &[Block]) -> Vec<QueuedBlock> {
    blocks
        .iter()
        .filter(|(_, _, records)| !records.is_empty())
        .map(|(topic, partition, records)| {
            let appended = shared.store.append(topic, *partition, records.clone());
            let name = format!("{topic}-{partition}");
            (name, records.len() as u64, appended.boxed())
        })
        .collect()
}

/// Waits for every queued append; counts the messages stored and returns
/// what failed, one `<partition>: <error>` each.
pub(crate) async fn stored(shared: &Shared, queued: Vec<QueuedBlock>) -> Vec<String> {
    let mut failures = Vec::new();
    let mut appended = 0;
    for (name, n, append) in queued {
        match append.await {
            Ok(_) => appended += n,
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    Stats::add(&shared.stats.total_messages, appended);
    failures
}
