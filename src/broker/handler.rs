//! Answers to requests that need no per-connection state: plain puts,
//! `version`, `stats`, and the refusals (reference 5.1, 3.6, 3.7, 3.10).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::future::{self, BoxFuture, FutureExt};
use tracing::warn;

use super::shared::{Shared, Stats, BROKER_VERSION};
use super::store::{check_topic, Record};
use crate::protocol::{checksum, PutRequest, Response, StatusCode};

/// What a request turns into: a future resolving to its answer.
pub(crate) type Reply = BoxFuture<'static, Response>;

pub(crate) fn ready(response: Response) -> Reply {
    future::ready(response).boxed()
}

pub(crate) fn error(code: StatusCode, opaque: i32, text: impl Into<String>) -> Reply {
    ready(Response::text(code, opaque, text))
}

/// A put target that passed validation.
pub(crate) struct Target {
    pub(crate) partition: u32,
}

impl Shared {
    /// The text every failed put answer starts with (reference 5.1).
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
            return error(code, opaque, "injected failure");
        }
        let target = match self.check_put(&put.topic, put.partition, put.body.len(), true) {
            Ok(target) => target,
            Err(detail) => return fail(self, &detail),
        };
        if let Some(expected) = put.checksum.filter(|c| *c != -1) {
            if expected != checksum(&put.body) {
                return fail(
                    self,
                    "Checksum failure,message may be corrupted when transfering on networking.",
                );
            }
        }
        let record = Record {
            id: self.ids.next_id(),
            flag: put.flag,
            body: put.body,
        };
        let id = record.id;
        let shared = Arc::clone(self);
        let partition = target.partition;
        // Queued now, so appends keep the order the client sent them in.
        let appended = self.store.append(&put.topic, partition, vec![record]);
        async move {
            match appended.await {
                Ok(offsets) => {
                    Stats::bump(&shared.stats.total_messages);
                    Response::text(
                        StatusCode::SUCCESS,
                        opaque,
                        format!("{id} {partition} {}", offsets[0]),
                    )
                }
                Err(e) => {
                    warn!(topic = %put.topic, partition, error = %e, "append failed");
                    Stats::bump(&shared.stats.put_failed);
                    // MetaQ answers an I/O failure with the bare prefix.
                    let text = shared.put_failure(&put.topic, partition as i32, "");
                    let text = text.trim_end_matches("Detail:").to_owned();
                    Response::text(StatusCode::INTERNAL_SERVER_ERROR, opaque, text)
                }
            }
        }
        .boxed()
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
        line("tx_xa_begin", &0);
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
