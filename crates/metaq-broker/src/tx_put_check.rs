//! What every transactional put is checked against before the broker holds
//! it, local or XA (docs/protocol.md §4.2, 4.3), and the bounds on what open
//! transactions may hold.

use super::counters::Stats;
use super::reply::{error, Reply};
use super::shared::Shared;
use metaq::protocol::{checksum, PutRequest, StatusCode};

/// Open transactions a connection (or the XA table) may hold: transactional puts are
/// answered at once, so without these bounds a client could make the broker
/// hold any amount of memory.
pub(crate) const MAX_OPEN_TRANSACTIONS: usize = 10_000;
/// Body bytes one connection's open transactions may hold, in messages of
/// the maximum size.
pub(crate) const MAX_HELD_MESSAGES: usize = 64;

/// Checks a put of an open transaction before it is held: its partition,
/// topic, size and checksum, and what the connection already holds
/// (`held` bytes). The partition it goes to, or the error to answer.
pub(crate) fn check_tx_put(shared: &Shared, held: usize, put: &PutRequest) -> Result<u32, Reply> {
    let opaque = put.opaque;
    if put.partition == -1 {
        return Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            opaque,
            "Invalid partition for transaction command:-1",
        ));
    }
    let target = match shared.check_put(&put.topic, put.partition, put.body.len(), false) {
        Ok(target) => target,
        Err(detail) => {
            Stats::bump(&shared.stats.put_failed);
            let text = shared.put_failure(&put.topic, put.partition, &detail);
            return Err(error(StatusCode::INTERNAL_SERVER_ERROR, opaque, text));
        }
    };
    // The Java broker skips this check for transactional puts; a
    // development broker should catch a client that sends a bad CRC.
    if let Some(expected) = put.checksum.filter(|c| *c != -1) {
        if expected != checksum(&put.body) {
            Stats::bump(&shared.stats.put_failed);
            let text = shared.put_failure(
                &put.topic,
                put.partition,
                "Checksum failure,message may be corrupted when transfering on networking.",
            );
            return Err(error(StatusCode::INTERNAL_SERVER_ERROR, opaque, text));
        }
    }
    let limit = MAX_HELD_MESSAGES * shared.config.max_message_size;
    if held + put.body.len() > limit {
        Stats::bump(&shared.stats.put_failed);
        let detail = format!(
            "the open transactions of this connection would hold over {limit} bytes; commit or roll back first"
        );
        let text = shared.put_failure(&put.topic, put.partition, &detail);
        return Err(error(StatusCode::INTERNAL_SERVER_ERROR, opaque, text));
    }
    Ok(target.partition)
}
