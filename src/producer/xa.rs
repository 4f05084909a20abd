//! XA transactions: [`XaResource`], one broker's resource manager, for a
//! transaction manager doing two-phase commit (docs/protocol.md §2.7, 4.3).
//!
//! A resource is pinned to one broker and holds its connection open (the
//! same socket the producer's sends to that broker use). XA branches are
//! broker-global, unlike local transactions: a reconnect does not lose
//! them, a prepared branch survives a broker restart, and any connection
//! may finish a branch — so a resource made after a crash can `recover`
//! and complete what an earlier one prepared.
//!
//! Differences from the Java client, and why:
//! * A prepare, commit, rollback or forget whose answer never comes is
//!   [`XAER_RMFAIL`](xa_code::XAER_RMFAIL) ("resource manager unavailable,
//!   the outcome is not known: recover and finish it"), not Java's
//!   `XA_RBTIMEOUT`, which tells a transaction manager the branch was
//!   rolled back when it may well have been committed.
//! * `start` hands back an [`XaBranch`] that carries the branch's sends,
//!   instead of Java's thread-bound context.
//! * The resource's broker is chosen at random among the brokers every
//!   published topic has, as Java does, or named with
//!   [`Producer::xa_resource_on`](crate::Producer::xa_resource_on).

use std::sync::Arc;

use tracing::info;

use super::tx_request::{request, Command, RequestError};
use super::xa_branch::XaBranch;
use super::xa_pin::XaPin;
use super::{xa_code, ProducerInner};
use crate::cluster::BrokerUri;
use crate::error::{Error, Result};
use crate::net::Connection;
use crate::protocol::{
    validate_unique_qualifier, Response, TransactionKind, TransactionRequest, TxKey, XaTxId,
};

/// A prepared branch's vote, the answer to [`XaResource::prepare`]. XA
/// has exactly these two (any other answer is an error), so the enum is
/// exhaustive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrepareVote {
    /// `XA_OK`: prepared and durable on the broker; commit or roll it back.
    Ok,
    /// `XA_RDONLY`: the branch sent nothing and is already finished; do not
    /// commit it.
    ReadOnly,
}

/// One broker as an XA resource manager: starts branches pinned to it and
/// prepares, commits, rolls back, recovers and forgets them. Cheap to
/// clone; clones share the connection.
///
/// ```no_run
/// # async fn demo(producer: metaq::Producer) -> metaq::Result<()> {
/// use metaq::Message;
/// use metaq::producer::PrepareVote;
/// producer.publish("orders").await?;
/// let xa = producer.xa_resource()?;
/// let xid = xa.xid(1, b"global-1".to_vec(), b"branch-1".to_vec());
/// let mut branch = xa.start(xid.clone()).await?;
/// branch.send(Message::new("orders", "debit")).await?;
/// branch.end().await?;
/// if xa.prepare(&xid).await? == PrepareVote::Ok {
///     xa.commit(&xid, false).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct XaResource {
    pin: XaPin,
}

impl std::fmt::Debug for XaResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XaResource")
            .field("broker", self.broker())
            .field("broker_id", &self.pin.broker_id())
            .field("unique_qualifier", &self.pin.qualifier())
            .finish()
    }
}

impl XaResource {
    /// This resource with another unique qualifier (the resource manager's
    /// name in every branch key and the filter of [`recover`](Self::recover);
    /// Java's `metaq.client.xaproducer.hostname` setting). Use the same one
    /// after a restart to recover what the previous process prepared.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if it has a space, tab, CR, LF or `:`, or is all
    /// digits (the broker would read it as a timeout).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(producer: metaq::Producer) -> metaq::Result<()> {
    /// let xa = producer.xa_resource()?.with_unique_qualifier("billing-1")?;
    /// assert_eq!(xa.unique_qualifier(), "billing-1");
    /// # Ok(()) }
    /// ```
    pub fn with_unique_qualifier(mut self, qualifier: impl Into<String>) -> Result<Self> {
        let qualifier = qualifier.into();
        validate_unique_qualifier(&qualifier).map_err(|e| Error::Config {
            reason: format!("XA unique qualifier: {e}"),
        })?;
        self.pin = self.pin.with_qualifier(qualifier);
        Ok(self)
    }

    /// The broker branches of this resource go to.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(xa: metaq::producer::XaResource) {
    /// println!("XA on {} (id {})", xa.broker(), xa.broker_id());
    /// # }
    /// ```
    pub fn broker(&self) -> &BrokerUri {
        self.pin.broker()
    }

    /// The broker's id (`u32::MAX` for a resource made by
    /// [`xa_resource_at`](crate::Producer::xa_resource_at) for a broker no
    /// published topic lists).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(producer: metaq::Producer) -> metaq::Result<()> {
    /// let xa = producer.xa_resource_on(3)?;
    /// assert_eq!(xa.broker_id(), 3);
    /// # Ok(()) }
    /// ```
    pub fn broker_id(&self) -> u32 {
        self.pin.broker_id()
    }

    /// The unique qualifier, default `XAMessageProducer-<host name>`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(xa: metaq::producer::XaResource) {
    /// assert!(xa.unique_qualifier().starts_with("XAMessageProducer-"));
    /// # }
    /// ```
    pub fn unique_qualifier(&self) -> &str {
        self.pin.qualifier()
    }

    /// A branch id of this resource: the transaction manager's format id,
    /// global transaction id and branch qualifier, with this resource's
    /// unique qualifier.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn example(xa: metaq::producer::XaResource) {
    /// let xid = xa.xid(1, vec![1, 2, 3], vec![0x0a]);
    /// assert!(xid.to_string().starts_with("XID:1:010203:0a:"));
    /// # }
    /// ```
    pub fn xid(
        &self,
        format_id: i32,
        global_id: impl Into<Vec<u8>>,
        branch_qualifier: impl Into<Vec<u8>>,
    ) -> XaTxId {
        XaTxId {
            format_id,
            global_id: global_id.into(),
            branch_qualifier: branch_qualifier.into(),
            unique_qualifier: self.pin.qualifier().to_owned(),
        }
    }

    /// A resource over `pin`.
    pub(crate) fn new(pin: XaPin) -> Self {
        XaResource { pin }
    }

    fn inner(&self) -> &Arc<ProducerInner> {
        self.pin.inner()
    }

    fn connection(&self) -> &Connection {
        self.pin.connection()
    }

    /// Starts branch `xid` on the broker (BEGIN, with the producer's
    /// transaction timeout if one is set) and returns it for its sends.
    ///
    /// # Errors
    ///
    /// [`Error::Xa`]: the broker's XA code, or
    /// [`XAER_RMFAIL`](xa_code::XAER_RMFAIL) when not connected,
    /// [`XA_RBTIMEOUT`](xa_code::XA_RBTIMEOUT) when the answer did not come
    /// within the transaction request timeout; [`Error::Config`] for an
    /// `xid` whose qualifier cannot be written.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(xa: metaq::producer::XaResource) -> metaq::Result<()> {
    /// let xid = xa.xid(1, b"order-42".to_vec(), b"queue".to_vec());
    /// let branch = xa.start(xid).await?;
    /// branch.end().await?; // nothing sent: prepare will answer ReadOnly
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "xa_start", skip_all, fields(xid = %xid, broker = %self.broker()))]
    pub async fn start(&self, xid: XaTxId) -> Result<XaBranch> {
        self.inner().check_open()?;
        let key = TxKey::Xa(xid.clone());
        key.validate().map_err(|e| Error::Config {
            reason: format!("XA branch id: {e}"),
        })?;
        let timeout_secs = self
            .inner()
            .config
            .transaction_timeout
            .and_then(super::transaction::whole_seconds);
        self.call("start", TransactionKind::Begin, &key, timeout_secs)
            .await?;
        info!(xid = %key, broker = %self.broker(), "XA branch started");
        Ok(XaBranch::new(self.pin.clone(), xid))
    }

    /// Asks the broker to prepare branch `xid` (forced to its disk):
    /// [`PrepareVote::Ok`], or [`PrepareVote::ReadOnly`] when the branch sent
    /// nothing (it is then finished).
    ///
    /// # Errors
    ///
    /// [`Error::Xa`] with the broker's code (`XAER_NOTA` unknown branch,
    /// `XAER_PROTO` prepared already), `XAER_RMERR` for an answer that is not
    /// a vote, `XAER_RMFAIL` for no answer (the broker may have prepared
    /// it: recover, or roll it back).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(xa: metaq::producer::XaResource, xid: metaq::protocol::XaTxId) -> metaq::Result<()> {
    /// use metaq::producer::PrepareVote;
    /// match xa.prepare(&xid).await? {
    ///     PrepareVote::Ok => xa.commit(&xid, false).await?,
    ///     PrepareVote::ReadOnly => {} // nothing to commit
    /// }
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "xa_prepare", skip_all, fields(xid = %xid, broker = %self.broker()))]
    pub async fn prepare(&self, xid: &XaTxId) -> Result<PrepareVote> {
        let key = TxKey::Xa(xid.clone());
        let response = self
            .call("prepare", TransactionKind::Prepare, &key, None)
            .await?;
        match std::str::from_utf8(&response.body).map(str::trim) {
            Ok("0") => Ok(PrepareVote::Ok),
            Ok("3") => Ok(PrepareVote::ReadOnly),
            _ => Err(self.error(
                "prepare",
                &key,
                xa_code::XAER_RMERR,
                format!(
                    "the answer is not a vote: {:?}",
                    String::from_utf8_lossy(&response.body)
                ),
            )),
        }
    }

    /// Commits branch `xid`: its messages become visible. `one_phase` for a
    /// branch that was not prepared (the transaction manager's one-phase
    /// optimisation); two-phase needs a prepared branch.
    ///
    /// # Errors
    ///
    /// [`Error::Xa`] with the broker's code (`XAER_NOTA` unknown or finished,
    /// `XAER_PROTO` two-phase without prepare, `XA_RBOTHER` the broker could
    /// not store it and rolled it back), or `XAER_RMFAIL` when the answer
    /// never came: the outcome is unknown — call [`recover`](Self::recover)
    /// and commit again if it is still listed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(xa: metaq::producer::XaResource, xid: metaq::protocol::XaTxId) -> metaq::Result<()> {
    /// xa.commit(&xid, false).await?; // after prepare answered Ok
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "xa_commit", skip_all, fields(xid = %xid, broker = %self.broker(), one_phase))]
    pub async fn commit(&self, xid: &XaTxId, one_phase: bool) -> Result<()> {
        let kind = if one_phase {
            TransactionKind::CommitOnePhase
        } else {
            TransactionKind::CommitTwoPhase
        };
        let key = TxKey::Xa(xid.clone());
        self.call("commit", kind, &key, None).await?;
        info!(xid = %key, broker = %self.broker(), one_phase, "XA branch committed");
        Ok(())
    }

    /// Rolls back branch `xid`, prepared or not: none of its messages become
    /// visible.
    ///
    /// # Errors
    ///
    /// [`Error::Xa`] with the broker's code (`XAER_NOTA` unknown or
    /// finished), or `XAER_RMFAIL` when the answer never came (recover to
    /// see whether it is still prepared).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(xa: metaq::producer::XaResource, xid: metaq::protocol::XaTxId) -> metaq::Result<()> {
    /// xa.rollback(&xid).await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "xa_rollback", skip_all, fields(xid = %xid, broker = %self.broker()))]
    pub async fn rollback(&self, xid: &XaTxId) -> Result<()> {
        let key = TxKey::Xa(xid.clone());
        self.call("rollback", TransactionKind::Rollback, &key, None)
            .await?;
        info!(xid = %key, broker = %self.broker(), "XA branch rolled back");
        Ok(())
    }

    /// Tells the broker to forget a heuristically completed branch. The
    /// development broker never completes branches on its own, so there it
    /// only answers OK.
    ///
    /// # Errors
    ///
    /// [`Error::Xa`] with the broker's code, or `XAER_RMFAIL` for no answer.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(xa: metaq::producer::XaResource, xid: metaq::protocol::XaTxId) -> metaq::Result<()> {
    /// xa.forget(&xid).await?;
    /// # Ok(()) }
    /// ```
    #[tracing::instrument(name = "xa_forget", skip_all, fields(xid = %xid, broker = %self.broker()))]
    pub async fn forget(&self, xid: &XaTxId) -> Result<()> {
        let key = TxKey::Xa(xid.clone());
        self.call("forget", TransactionKind::Forget, &key, None)
            .await
            .map(drop)
    }

    /// The branches prepared on this broker under this resource's unique
    /// qualifier, for a transaction manager's recovery.
    ///
    /// # Errors
    ///
    /// [`Error::Xa`]: `XAER_RMFAIL` when not connected or no answer came,
    /// `XAER_RMERR` when the broker answered a key that cannot be parsed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(xa: metaq::producer::XaResource) -> metaq::Result<()> {
    /// // After a crash: finish what the previous process prepared.
    /// for xid in xa.recover().await? {
    ///     xa.rollback(&xid).await?; // or commit, as the coordinator's log says
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn recover(&self) -> Result<Vec<XaTxId>> {
        self.recover_with(Some(self.pin.qualifier())).await
    }

    /// The branches prepared on this broker under any unique qualifier (for
    /// operators resolving branches of a resource manager that is gone).
    ///
    /// # Errors
    ///
    /// As [`recover`](Self::recover).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(xa: metaq::producer::XaResource) -> metaq::Result<()> {
    /// for xid in xa.recover_all().await? {
    ///     println!("prepared: {xid}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn recover_all(&self) -> Result<Vec<XaTxId>> {
        self.recover_with(None).await
    }

    #[tracing::instrument(name = "xa_recover", skip_all, fields(broker = %self.broker(), qualifier))]
    async fn recover_with(&self, qualifier: Option<&str>) -> Result<Vec<XaTxId>> {
        let command = Command(TransactionRequest {
            key: TxKey::Null,
            session_id: self.inner().session_id.clone(),
            kind: TransactionKind::Recover,
            timeout_secs: None,
            unique_qualifier: qualifier.map(str::to_owned),
            opaque: 0,
        });
        let response = self.exchange("recover", &TxKey::Null, command).await?;
        let body = String::from_utf8_lossy(&response.body);
        body.split("\r\n")
            .filter(|line| !line.trim().is_empty())
            .map(|line| match line.trim().parse::<TxKey>() {
                Ok(TxKey::Xa(xid)) => Ok(xid),
                _ => Err(self.error(
                    "recover",
                    &TxKey::Null,
                    xa_code::XAER_RMERR,
                    format!("the broker listed {line:?}, which is not an XA key"),
                )),
            })
            .collect()
    }

    /// Sends one XA command for `key` and returns the broker's 200 answer.
    async fn call(
        &self,
        operation: &'static str,
        kind: TransactionKind,
        key: &TxKey,
        timeout_secs: Option<i32>,
    ) -> Result<Response> {
        let command = Command(TransactionRequest {
            key: key.clone(),
            session_id: self.inner().session_id.clone(),
            kind,
            timeout_secs,
            unique_qualifier: Some(self.pin.qualifier().to_owned()),
            opaque: 0,
        });
        self.exchange(operation, key, command).await
    }

    async fn exchange(
        &self,
        operation: &'static str,
        key: &TxKey,
        command: Command,
    ) -> Result<Response> {
        let wait = self.inner().config.transaction_request_timeout;
        let connection = self.connection();
        if !connection.is_ready() && !connection.wait_ready(wait).await {
            let reason = format!("{} is not connected", connection.uri());
            return Err(self.error(operation, key, xa_code::XAER_RMFAIL, reason));
        }
        match request(connection, None, command.frame(), wait).await {
            Ok(response) if response.code.is_success() => Ok(response),
            Ok(response) => {
                let body = String::from_utf8_lossy(&response.body);
                let (code, reason) = parse_xa_error(&body)
                    .unwrap_or((xa_code::XAER_RMERR, format!("{}: {body}", response.code.0)));
                Err(self.error(operation, key, code, reason))
            }
            // A BEGIN without an answer left nothing prepared: the branch
            // is as good as rolled back. Any later command may have been
            // done (a PREPARE journaled, a COMMIT appended): unknown.
            Err(RequestError::Timeout(wait)) if operation == "start" => {
                let reason = format!("no answer within {wait:?}");
                Err(self.error(operation, key, xa_code::XA_RBTIMEOUT, reason))
            }
            Err(cause) => {
                let reason = format!("{cause}; the outcome is unknown: recover to see it");
                Err(self.error(operation, key, xa_code::XAER_RMFAIL, reason))
            }
        }
    }

    fn error(&self, operation: &'static str, key: &TxKey, code: i32, reason: String) -> Error {
        self.pin.error(operation, key, code, reason)
    }
}

/// `XAException:code=<int>,msg=<text>` (docs/protocol.md §4.4).
fn parse_xa_error(body: &str) -> Option<(i32, String)> {
    let rest = body.strip_prefix("XAException:code=")?;
    let (code, message) = rest.split_once(",msg=")?;
    Some((code.trim().parse().ok()?, message.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::parse_xa_error;

    #[test]
    fn reads_the_brokers_xa_errors() {
        assert_eq!(
            parse_xa_error(
                "XAException:code=-4,msg=XA transaction 'XID:1::' has not been started."
            ),
            Some((-4, "XA transaction 'XID:1::' has not been started.".into()))
        );
        assert_eq!(parse_xa_error("XAException:code=x,msg=y"), None);
        assert_eq!(
            parse_xa_error("Local transaction 'TX:a:1' has not been started."),
            None
        );
    }
}
