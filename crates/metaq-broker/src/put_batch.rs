//! Plain puts that arrive together are appended together: one hand-off to
//! the store and one answer future per partition for all the puts one read
//! brought in, instead of one of each per message. Puts of one partition
//! keep the order the client sent them in.

use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt};

use super::handler::PutAnswer;
use super::ids::IdGenerator;
use super::reply::Reply;
use super::shared::Shared;
use super::store::Record;
use metaq::protocol::{PutRequest, Response};

/// What the connection waits for: the answers to one or more requests.
pub(crate) type Answers = BoxFuture<'static, Vec<Response>>;

/// One request's answer as [`Answers`].
pub(crate) fn one(reply: Reply) -> Answers {
    reply.map(|response| vec![response]).boxed()
}

/// Plain puts accepted since the batch was last submitted.
#[derive(Default)]
pub(crate) struct PutBatch {
    groups: Vec<Group>,
    refused: Vec<Reply>,
    puts: usize,
    /// The id clock, read once per batch.
    tick: Option<i64>,
}

/// The accepted puts of one partition, in arrival order.
struct Group {
    topic: String,
    partition: u32,
    records: Vec<Record>,
    answers: Vec<PutAnswer>,
}

impl PutBatch {
    /// Puts held, accepted or refused.
    pub(crate) fn len(&self) -> usize {
        self.puts
    }

    /// Checks `put` now (its refusal, if any, is answered with the batch)
    /// and holds its record for the partition's append.
    pub(crate) fn add(&mut self, shared: &Shared, put: PutRequest) {
        self.puts += 1;
        let partition = match shared.accept_put(&put) {
            Ok(partition) => partition,
            Err(refusal) => return self.refused.push(refusal),
        };
        let tick = *self.tick.get_or_insert_with(IdGenerator::tick);
        let record = Record {
            id: shared.ids.next_id_at(tick),
            flag: put.flag,
            body: put.body,
        };
        let answer = PutAnswer {
            opaque: put.opaque,
            id: record.id,
        };
        let group = match self
            .groups
            .iter_mut()
            .find(|g| g.partition == partition && g.topic == put.topic)
        {
            Some(group) => group,
            None => {
                self.groups.push(Group {
                    topic: put.topic,
                    partition,
                    records: Vec::new(),
                    answers: Vec::new(),
                });
                self.groups.last_mut().expect("just pushed")
            }
        };
        group.records.push(record);
        group.answers.push(answer);
    }

    /// Queues each partition's append and returns the futures of all the
    /// answers; the batch is empty afterwards.
    pub(crate) fn submit(&mut self, shared: &Arc<Shared>) -> Vec<Answers> {
        self.puts = 0;
        self.tick = None;
        let mut answers: Vec<Answers> = self.refused.drain(..).map(one).collect();
        for group in self.groups.drain(..) {
            let Group {
                topic,
                partition,
                records,
                answers: puts,
            } = group;
            // Queued now, in the order the partitions first appeared.
            let appended = shared.store.append(&topic, partition, records);
            let shared = Arc::clone(shared);
            answers.push(
                async move {
                    let offsets = appended.await;
                    shared.put_answers(&topic, partition, &puts, offsets)
                }
                .boxed(),
            );
        }
        answers
    }
}
