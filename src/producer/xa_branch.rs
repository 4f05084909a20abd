//! An XA branch between `start` and `end`: the messages sent in it
//! (docs/protocol.md §2.7, 4.3).

use std::sync::Arc;

use bytes::BytesMut;

use super::pinned::{pinned_partition, NotPinnable};
use super::send::encode_put_into;
use super::tx_request::{put_answer, request, Command, RequestError};
use super::xa_code;
use super::xa_pin::XaPin;
use crate::error::{Error, Result};
use crate::net::NotQueued;
use crate::protocol::{TransactionKind, TransactionRequest, TxKey, XaTxId};
use crate::{Message, SendResult};

/// A started XA branch: [`send`](Self::send) messages, then
/// [`end`](Self::end) it and let the transaction manager prepare and commit
/// it through the [`XaResource`](crate::producer::XaResource). Made by
/// [`XaResource::start`](crate::producer::XaResource::start).
///
/// The branch's messages go to partitions of the resource's broker only,
/// chosen by the producer's selector. A failed send breaks the branch:
/// `end` then answers [`XA_RBROLLBACK`](xa_code::XA_RBROLLBACK) and the
/// branch must be rolled back. Dropping a branch sends nothing; the broker
/// keeps it until it is finished or its timeout passes.
///
/// ```no_run
/// # async fn demo(xa: metaq::producer::XaResource) -> metaq::Result<()> {
/// use metaq::Message;
/// let xid = xa.xid(7, b"transfer-9".to_vec(), b"1".to_vec());
/// let mut branch = xa.start(xid).await?;
/// let sent = branch.send(Message::new("ledger", "debit 10")).await?;
/// assert_eq!(sent.offset, -1); // held by the broker until commit
/// let xid = branch.end().await?;
/// xa.commit(&xid, true).await?; // one phase: the only resource
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct XaBranch {
    pin: XaPin,
    xid: XaTxId,
    key: TxKey,
    broken: Option<String>,
}

impl XaBranch {
    pub(crate) fn new(pin: XaPin, xid: XaTxId) -> Self {
        XaBranch {
            key: TxKey::Xa(xid.clone()),
            pin,
            xid,
            broken: None,
        }
    }

    /// The branch id.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(xa: metaq::producer::XaResource) -> metaq::Result<()> {
    /// let xid = xa.xid(1, b"g".to_vec(), b"b".to_vec());
    /// let branch = xa.start(xid.clone()).await?;
    /// assert_eq!(branch.xid(), &xid);
    /// # Ok(()) }
    /// ```
    pub fn xid(&self) -> &XaTxId {
        &self.xid
    }

    /// Sends a message in the branch, to a partition of the resource's
    /// broker. The broker holds it, invisible, until the branch commits; the
    /// result's offset is `-1`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessage`] / [`Error::MessageTooLarge`] before
    /// anything is sent (the branch stays usable); [`Error::Xa`] when the
    /// branch is broken, now or earlier: the broker's answer (`XAER_RMERR`,
    /// or its XA code), `XA_RBTIMEOUT` for no answer, `XAER_RMFAIL` for no
    /// connection or a broker that left the topic.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(mut branch: metaq::producer::XaBranch) -> metaq::Result<()> {
    /// use metaq::Message;
    /// let sent = branch.send(Message::new("orders", "created")).await?;
    /// println!("held as message {} on {}", sent.message_id, sent.broker);
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "xa_send", skip_all, fields(xid = %self.key, topic = %message.topic()))]
    pub async fn send(&mut self, message: Message) -> Result<SendResult> {
        let inner = Arc::clone(self.pin.inner());
        inner.check_open()?;
        message.validate(inner.config.max_message_size)?;
        if let Some(reason) = &self.broken {
            let reason = format!("the branch is broken ({reason}); roll it back");
            return Err(self.error("send", xa_code::XA_RBROLLBACK, reason));
        }
        let topic = inner
            .ensure_topic(message.topic(), inner.config.send_timeout)
            .await?;
        // A topic no broker lists uses the default topic's partitions.
        let state = match inner.default_topic_state() {
            Some(default) if topic.route.load().partitions.is_empty() => default,
            _ => topic,
        };
        let connection = self.pin.connection().clone();
        let broker_id = self.pin.broker_id();
        let partition = match pinned_partition(&inner, &state, &message, broker_id, &connection) {
            Ok(partition) => partition,
            Err(NotPinnable::NoPartition(reason)) => {
                return Err(self.error("send", xa_code::XAER_RMERR, reason))
            }
            Err(NotPinnable::PinnedGone(reason)) => {
                return Err(self.break_with("send", xa_code::XAER_RMFAIL, reason))
            }
        };
        let key = &self.key;
        let frame = |out: &mut BytesMut, opaque| {
            encode_put_into(out, opaque, &message, partition, Some(key))
        };
        // Until the answer is in, a dropped future leaves the put in doubt.
        self.broken = Some("a send was cancelled before its answer came".into());
        let answer = request(&connection, None, frame, inner.config.send_timeout).await;
        self.broken = None;
        match answer {
            Ok(response) if response.code.is_success() => {
                match put_answer(&response, partition, connection.uri()) {
                    Some(sent) => Ok(sent),
                    None => {
                        let body = String::from_utf8_lossy(&response.body);
                        let reason = format!("unreadable answer to a put: {body:?}");
                        Err(self.break_with("send", xa_code::XAER_RMERR, reason))
                    }
                }
            }
            Ok(response) => {
                let body = String::from_utf8_lossy(&response.body);
                let reason = format!("put answered {}: {body}", response.code.0);
                Err(self.break_with("send", xa_code::XAER_RMERR, reason))
            }
            Err(RequestError::Timeout(wait)) => {
                let reason = format!("no answer to a put within {wait:?}");
                Err(self.break_with("send", xa_code::XA_RBTIMEOUT, reason))
            }
            Err(cause) => {
                let reason = format!("put failed: {cause}");
                Err(self.break_with("send", xa_code::XAER_RMFAIL, reason))
            }
        }
    }

    /// Ends the branch (END, which the broker never answers) and returns its
    /// id for prepare and commit.
    ///
    /// # Errors
    ///
    /// [`Error::Xa`] with [`XA_RBROLLBACK`](xa_code::XA_RBROLLBACK) if a
    /// send broke the branch: roll it back; `XAER_RMFAIL` if END could not
    /// be written.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(xa: metaq::producer::XaResource, branch: metaq::producer::XaBranch) -> metaq::Result<()> {
    /// use metaq::producer::xa_code;
    /// match branch.end().await {
    ///     Ok(xid) => { xa.prepare(&xid).await?; }
    ///     Err(metaq::Error::Xa { code: xa_code::XA_RBROLLBACK, xid, .. }) => {
    ///         eprintln!("{xid} must be rolled back");
    ///     }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "xa_end", skip_all, fields(xid = %self.key))]
    pub async fn end(self) -> Result<XaTxId> {
        let command = TransactionRequest {
            key: self.key.clone(),
            session_id: self.pin.inner().session_id.clone(),
            kind: TransactionKind::End,
            timeout_secs: None,
            unique_qualifier: Some(self.pin.qualifier().to_owned()),
            opaque: 0,
        };
        let connection = self.pin.connection();
        let now = tokio::time::Instant::now();
        // END is never answered: queue it and let its wait go at once (the
        // bytes stay queued; the slot is given back).
        let queued = connection.try_request(None, now, now, Command(command).frame());
        if let Some(reason) = &self.broken {
            let reason = format!("the branch is broken ({reason}); roll it back");
            return Err(self.error("end", xa_code::XA_RBROLLBACK, reason));
        }
        let refused = match &queued {
            Ok(reply) => reply
                .refusal()
                .map(|e| format!("{} ({e})", connection.uri())),
            Err(NotQueued::Full) => Some(format!("{} has no room for a request", connection.uri())),
            Err(NotQueued::Invalid(e)) => Some(format!("it cannot be encoded: {e}")),
        };
        match refused {
            None => Ok(self.xid),
            Some(cause) => {
                let reason = format!("END not sent: {cause}");
                Err(self.error("end", xa_code::XAER_RMFAIL, reason))
            }
        }
    }

    fn error(&self, operation: &'static str, code: i32, reason: String) -> Error {
        self.pin.error(operation, &self.key, code, reason)
    }

    fn break_with(&mut self, operation: &'static str, code: i32, reason: String) -> Error {
        tracing::warn!(xid = %self.key, %reason, "XA branch broken");
        self.broken = Some(reason.clone());
        self.error(operation, code, reason)
    }
}
