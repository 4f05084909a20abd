//! Many sends awaited as one: [`SendAll`].
//!
//! Awaiting thousands of `send` futures through a `FuturesUnordered` costs a
//! task, a wake-up and a poll per message. A batch's answers arrive nearly
//! in order, so `SendAll` reads them in order instead: it waits on the
//! first send without an outcome, and only that one holds its waker. Sends
//! that have work of their own (waiting for a topic or for room, retrying)
//! are polled on every wake-up so they never wait behind the others.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::send::SendFuture;
use crate::error::Result;
use crate::SendResult;

/// The future [`Producer::send_all`](super::Producer::send_all) returns:
/// one result per message, in the order given.
///
/// # Examples
///
/// ```no_run
/// # async fn example(producer: metaq::Producer) {
/// use metaq::Message;
/// let batch: metaq::producer::SendAll =
///     producer.send_all([Message::new("orders", "a"), Message::new("orders", "b")]);
/// for result in batch.await {
///     match result {
///         Ok(sent) => println!("stored in {} at {}", sent.partition, sent.offset),
///         Err(e) => eprintln!("failed: {e}"),
///     }
/// }
/// # }
/// ```
#[must_use = "dropping a SendAll gives up on every answer not yet read"]
pub struct SendAll {
    sends: Vec<Entry>,
    /// Every send before this one has its outcome.
    next: usize,
    /// Sends after `next` that must be polled to make progress.
    driven: Vec<usize>,
}

enum Entry {
    Sending(SendFuture),
    Done(Result<SendResult>),
    Taken,
}

impl SendAll {
    pub(super) fn new(sends: impl Iterator<Item = SendFuture>) -> Self {
        let sends: Vec<Entry> = sends.map(Entry::Sending).collect();
        let driven = sends
            .iter()
            .enumerate()
            .filter(
                |(_, entry)| matches!(entry, Entry::Sending(send) if !send.awaits_first_answer()),
            )
            .map(|(i, _)| i)
            .collect();
        SendAll {
            sends,
            next: 0,
            driven,
        }
    }

    fn awaits_first_answer(&self, i: usize) -> bool {
        matches!(&self.sends[i], Entry::Sending(send) if send.awaits_first_answer())
    }

    /// Polls send `i`; true once it has its outcome.
    fn poll_one(&mut self, i: usize, cx: &mut Context<'_>) -> bool {
        let Entry::Sending(send) = &mut self.sends[i] else {
            return true;
        };
        match Pin::new(send).poll(cx) {
            Poll::Ready(result) => {
                self.sends[i] = Entry::Done(result);
                true
            }
            Poll::Pending => false,
        }
    }

    /// A send started retrying, typically because its connection died:
    /// the sends after it on that connection have failed too, so start
    /// their retries now rather than one at a time as they come up.
    fn collect_retries(&mut self, cx: &mut Context<'_>) {
        // After `next`, a send is driven exactly when it is in `driven`:
        // only sends awaiting their first answer are new to this sweep.
        for i in self.next + 1..self.sends.len() {
            if !self.awaits_first_answer(i) {
                continue;
            }
            if !self.poll_one(i, cx) && !self.awaits_first_answer(i) {
                self.driven.push(i);
            }
        }
        self.driven.sort_unstable();
    }
}

impl Future for SendAll {
    type Output = Vec<Result<SendResult>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        // In the order given: those that waited for room take it in turn.
        let mut driven = std::mem::take(&mut this.driven);
        driven.retain(|&i| !this.poll_one(i, cx));
        this.driven = driven;
        while this.next < this.sends.len() {
            let i = this.next;
            let was_first = this.awaits_first_answer(i);
            if !this.poll_one(i, cx) {
                if was_first && !this.awaits_first_answer(i) {
                    // Its first attempt failed and it is retrying.
                    this.collect_retries(cx);
                }
                return Poll::Pending;
            }
            this.next += 1;
        }
        let results = this
            .sends
            .iter_mut()
            .map(|entry| match std::mem::replace(entry, Entry::Taken) {
                Entry::Done(result) => result,
                _ => unreachable!("every send before `next` has its outcome"),
            })
            .collect();
        Poll::Ready(results)
    }
}
