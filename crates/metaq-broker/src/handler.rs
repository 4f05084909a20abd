//! Answers to requests that need no per-connection state: plain puts,
//! `version`, `stats`, and the refusals (docs/protocol.md §5.1, 3.6, 3.7, 3.10).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::future::FutureExt;
use tracing::warn;

use super::counters::Stats;
use super::reply::{error, ready, Reply};
use super::shared::{Shared, BROKER_VERSION};
use super::store::{check_topic, Record};
use metaq::protocol::{checksum, PutRequest, Response, StatusCode};

/// What a put's answer needs once its record is appended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PutAnswer {
    pub(crate) opaque: i32,
    pub(crate) id: i64,
}

/// A put target that passed validation.
pub(crate) struct Target {
    pub(crate) partition: u32,
}

impl Shared {
    /// The text every failed put answer starts with (docs/protocol.md §5.1).
    pub(crate) fn put_failure(&self, topic: &str, partition: i32, detail: &str) -> String {
        format!(
            "Put message to [broker '{}'] [partition '{topic}-{partition}'] failed.Detail:{detail}",
            self.uri()
        )
    }

    /// Topic accepted, partition in range (`-1` resolved when allowed), body
    /// within the size limit. Registers a wildcard topic on first use.
    pub(crate) fn check_put(
        &self,
        topic: &str,
        partition: i32,
        body_len: usize,
        allow_random: bool,
    ) -> Result<Target, String> {
        // A wildcard matches names the store cannot hold and ZooKeeper would
        // split into paths (`log-a/b`): refuse them before registering anything.
        let accepted = self
            .config
            .topic(topic)
            .filter(|_| check_topic(topic).is_ok());
        let Some(config) = accepted else {
            return Err(format!("The server do not accept topic {topic}"));
        };
        let partitions = config.partitions;
        let partition = match partition {
            -1 if allow_random => fastrand::u32(..partitions),
            p if p >= 0 && (p as u32) < partitions => p as u32,
            p => return Err(format!("wrong partition {p}")),
        };
        if body_len > self.config.max_message_size {
            return Err(too_large(body_len as u64, self.config.max_message_size));
        }
        self.ensure_registered(topic, partitions, config.is_pattern());
        Ok(Target { partition })
    }

    /// A plain (non-transactional) put.
    pub(crate) fn put(self: &Arc<Self>, put: PutRequest) -> Reply {
        let partition = match self.accept_put(&put) {
            Ok(partition) => partition,
            Err(refusal) => return refusal,
        };
        let record = Record {
            id: self.ids.next_id(),
            flag: put.flag,
            body: put.body,
        };
        let answer = PutAnswer {
            opaque: put.opaque,
            id: record.id,
        };
        // Queued now, so appends keep the order the client sent them in.
        let appended = self.store.append(&put.topic, partition, vec![record]);
        let shared = Arc::clone(self);
        async move {
            let offsets = appended.await;
            let mut answers = shared.put_answers(&put.topic, partition, &[answer], offsets);
            answers.pop().expect("one answer per put")
        }
        .boxed()
    }

    /// Counts a put and checks it (injected failure, topic, partition,
    /// size, checksum): the partition it goes to, or the refusal.
    pub(crate) fn accept_put(&self, put: &PutRequest) -> Result<u32, Reply> {
        Stats::bump(&self.stats.cmd_put);
        let opaque = put.opaque;
        let fail = |this: &Self, detail: &str| {
            Stats::bump(&this.stats.put_failed);
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                opaque,
                this.put_failure(&put.topic, put.partition, detail),
            )
        };
        if let Some(code) = self.faults.take_put_failure() {
            Stats::bump(&self.stats.put_failed);
            return Err(error(code, opaque, "injected failure"));
        }
        let target = self
            .check_put(&put.topic, put.partition, put.body.len(), true)
            .map_err(|detail| fail(self, &detail))?;
        if let Some(expected) = put.checksum.filter(|c| *c != -1) {
            if expected != checksum(&put.body) {
                return Err(fail(
                    self,
                    "Checksum failure,message may be corrupted when transfering on networking.",
                ));
            }
        }
        Ok(target.partition)
    }

    /// The answers to puts appended together to one partition: each its
    /// offset, or all the same failure.
    pub(crate) fn put_answers(
        &self,
        topic: &str,
        partition: u32,
        puts: &[PutAnswer],
        offsets: std::io::Result<Vec<i64>>,
    ) -> Vec<Response> {
        let offsets = offsets.and_then(|offsets| {
            if offsets.len() == puts.len() {
                Ok(offsets)
            } else {
                Err(std::io::Error::other(format!(
                    "{} offsets for {} records",
                    offsets.len(),
                    puts.len()
                )))
            }
        });
        match offsets {
            Ok(offsets) => puts
                .iter()
                .zip(offsets)
                .map(|(put, offset)| {
                    Stats::bump(&self.stats.total_messages);
                    // `<id> <partition> <offset>` without the fmt machinery.
                    let mut numbers = itoa::Buffer::new();
                    let mut body = bytes::BytesMut::with_capacity(44);
                    body.extend_from_slice(numbers.format(put.id).as_bytes());
                    body.extend_from_slice(b" ");
                    body.extend_from_slice(numbers.format(partition).as_bytes());
                    body.extend_from_slice(b" ");
                    body.extend_from_slice(numbers.format(offset).as_bytes());
                    Response {
                        code: StatusCode::SUCCESS,
                        opaque: put.opaque,
                        body: body.freeze(),
                    }
                })
                .collect(),
            Err(e) => {
                warn!(topic, partition, error = %e, "append failed");
                // MetaQ answers an I/O failure with the bare prefix.
                let text = self.put_failure(topic, partition as i32, "");
                let text = text.trim_end_matches("Detail:").to_owned();
                puts.iter()
                    .map(|put| {
                        Stats::bump(&self.stats.put_failed);
                        Response::text(StatusCode::INTERNAL_SERVER_ERROR, put.opaque, text.clone())
                    })
                    .collect()
            }
        }
    }

    /// A put whose body was skipped by the decoder for being over the limit.
    pub(crate) fn put_too_large(
        &self,
        topic: &str,
        partition: i32,
        len: u64,
        opaque: i32,
    ) -> Reply {
        Stats::bump(&self.stats.cmd_put);
        Stats::bump(&self.stats.put_failed);
        let detail = too_large(len, self.config.max_message_size);
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            opaque,
            self.put_failure(topic, partition, &detail),
        )
    }

    pub(crate) fn version(&self, opaque: i32) -> Reply {
        ready(Response::text(StatusCode::SUCCESS, opaque, BROKER_VERSION))
    }

    /// The broker summary; every item gets it (a development broker may do so).
    pub(crate) fn stats(&self, opaque: i32) -> Reply {
        let s = &self.stats;
        let mut body = String::from("STATS\r\n");
        let mut line = |key: &str, value: &dyn std::fmt::Display| {
            let _ = write!(body, "{key} {value}\r\n");
        };
        line("pid", &std::process::id());
        line("broker_id", &self.config.id);
        line("port", &self.uri().port);
        line("uptime", &self.started.elapsed().as_secs());
        line("version", &BROKER_VERSION);
        line("slave", &false);
        line("curr_connections", &Stats::get(&s.connections));
        // MetaQ reports its JVM's thread count; the runtime's workers are ours.
        let threads =
            tokio::runtime::Handle::try_current().map_or(0, |h| h.metrics().num_workers());
        line("threads", &threads);
        line("cmd_put", &Stats::get(&s.cmd_put));
        line("cmd_get", &0);
        line("cmd_offset", &0);
        line("tx_begin", &Stats::get(&s.tx_begin));
        line("tx_xa_begin", &Stats::get(&s.tx_xa_begin));
        line("tx_commit", &Stats::get(&s.tx_commit));
        line("tx_rollback", &Stats::get(&s.tx_rollback));
        line("get_miss", &0);
        line("put_failed", &Stats::get(&s.put_failed));
        line("total_messages", &s.total_messages.load(Ordering::Relaxed));
        line("topics", &self.config.topics.len());
        line("config_checksum", &0);
        body.push_str("END\r\n");
        ready(Response::text(StatusCode::SUCCESS, opaque, body))
    }

    /// `get`, `offset`, `sync`: decoded, but this broker has no handler.
    pub(crate) fn unsupported(&self, command: &str, opaque: i32) -> Reply {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            opaque,
            format!("no processor registered for {command} on the metaq development broker"),
        )
    }
}

fn too_large(len: u64, max: usize) -> String {
    format!("message body of {len} bytes is over the {max}-byte limit")
}
