//! Message ids in MetaQ's snowflake layout (docs/protocol.md §5.3):
//! `((millis - EPOCH) << 22) | (brokerId << 12) | sequence`.
//!
//! The Java broker reads a monotonic clock; this one uses wall-clock
//! milliseconds (positive ids) and never goes backwards: if the clock does,
//! or 4096 ids are taken within one millisecond, it borrows the next one.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const EPOCH_MILLIS: i64 = 1_303_895_660_503;
const SEQUENCE_BITS: u32 = 12;
const WORKER_BITS: u32 = 10;
const SEQUENCE_MASK: i64 = (1 << SEQUENCE_BITS) - 1;

/// Hands out unique, increasing message ids for one broker.
#[derive(Debug)]
pub(crate) struct IdGenerator {
    worker: i64,
    last: AtomicI64,
}

impl IdGenerator {
    /// `broker_id` must be below 1024; the config check guarantees it.
    pub(crate) fn new(broker_id: u32) -> Self {
        debug_assert!(broker_id < (1 << WORKER_BITS));
        Self {
            worker: i64::from(broker_id) << SEQUENCE_BITS,
            last: AtomicI64::new(0),
        }
    }

    pub(crate) fn next_id(&self) -> i64 {
        self.next_id_at(Self::tick())
    }

    /// The clock's current tick, for [`next_id_at`](Self::next_id_at):
    /// ids taken together (a batch of puts) read the clock once.
    pub(crate) fn tick() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
            - EPOCH_MILLIS
    }

    /// The next id, the clock reading `now` (from [`tick`](Self::tick)).
    /// Ids stay unique and increasing whatever `now` says.
    pub(crate) fn next_id_at(&self, now: i64) -> i64 {
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = self.after(last, now);
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }

    fn after(&self, last: i64, now: i64) -> i64 {
        let last_tick = last >> (SEQUENCE_BITS + WORKER_BITS);
        let (tick, sequence) = match now.cmp(&last_tick) {
            std::cmp::Ordering::Greater => (now, 0),
            _ if last & SEQUENCE_MASK == SEQUENCE_MASK => (last_tick + 1, 0),
            _ => (last_tick, (last & SEQUENCE_MASK) + 1),
        };
        (tick << (SEQUENCE_BITS + WORKER_BITS)) | self.worker | sequence
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_carry_the_broker_id() {
        let ids = IdGenerator::new(7);
        let mut prev = 0;
        for _ in 0..10_000 {
            let id = ids.next_id();
            assert!(id > prev);
            assert_eq!((id >> 12) & 0x3FF, 7);
            prev = id;
        }
    }

    #[test]
    fn sequence_overflow_borrows_the_next_millisecond() {
        let ids = IdGenerator::new(1);
        let full = (5 << 22) | (1 << 12) | SEQUENCE_MASK;
        assert_eq!(ids.after(full, 5), (6 << 22) | (1 << 12));
        // A clock that went back does not produce an older id.
        assert_eq!(
            ids.after((9 << 22) | (1 << 12), 3),
            (9 << 22) | (1 << 12) | 1
        );
    }
}
