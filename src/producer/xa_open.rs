//! Where XA resources come from: the brokers every published topic has
//! (Java's choice, docs/protocol.md §2.7), one of them by id, or any broker
//! by address.

use super::xa::XaResource;
use super::xa_code;
use super::xa_pin::{self, XaPin};
use super::Producer;
use crate::cluster::BrokerUri;
use crate::error::{Error, Result};

impl Producer {
    /// The brokers an XA branch may be pinned to: those that serve every
    /// topic this producer published (Java's intersection of the topics'
    /// brokers), by broker id. Empty before any topic is published.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(producer: metaq::Producer) -> metaq::Result<()> {
    /// producer.publish("orders").await?;
    /// for (id, uri) in producer.xa_brokers() {
    ///     println!("broker {id} at {uri} can take XA branches");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn xa_brokers(&self) -> Vec<(u32, BrokerUri)> {
        let topics = self.inner.topics.load();
        let mut common: Option<Vec<(u32, BrokerUri)>> = None;
        for state in topics.values() {
            let route = state.route.load();
            let here: Vec<(u32, BrokerUri)> = route
                .connections
                .iter()
                .map(|(id, c)| (*id, c.uri().clone()))
                .collect();
            common = Some(match common {
                None => here,
                Some(so_far) => so_far.into_iter().filter(|b| here.contains(b)).collect(),
            });
        }
        common.unwrap_or_default()
    }

    /// An XA resource on a broker chosen at random from
    /// [`xa_brokers`](Self::xa_brokers), with the default unique qualifier
    /// `XAMessageProducer-<host name>`.
    ///
    /// # Errors
    ///
    /// [`Error::Xa`] with [`XAER_RMFAIL`](xa_code::XAER_RMFAIL) if no broker
    /// serves every published topic (or none was published);
    /// [`Error::Closed`] after `close`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(producer: metaq::Producer) -> metaq::Result<()> {
    /// producer.publish("orders").await?;
    /// let xa = producer.xa_resource()?;
    /// println!("branches go to {}", xa.broker());
    /// # Ok(()) }
    /// ```
    pub fn xa_resource(&self) -> Result<XaResource> {
        let brokers = self.xa_brokers();
        if brokers.is_empty() {
            return Err(no_broker(
                "no broker serves every published topic (publish a topic first)",
            ));
        }
        self.xa_resource_on(brokers[fastrand::usize(..brokers.len())].0)
    }

    /// An XA resource on broker `broker_id`, which must serve a published
    /// topic; for a transaction manager that spreads branches over brokers
    /// itself, and for recovery after a crash.
    ///
    /// # Errors
    ///
    /// [`Error::Xa`] with [`XAER_RMFAIL`](xa_code::XAER_RMFAIL) if no
    /// published topic lists that broker; [`Error::Closed`] after `close`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(producer: metaq::Producer) -> metaq::Result<()> {
    /// producer.publish("orders").await?;
    /// // One resource per broker, as a coordinator enlisting every broker would.
    /// for (id, _) in producer.xa_brokers() {
    ///     let xa = producer.xa_resource_on(id)?;
    ///     println!("{id}: {} prepared branch(es)", xa.recover().await?.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn xa_resource_on(&self, broker_id: u32) -> Result<XaResource> {
        let inner = &self.inner;
        inner.check_open()?;
        let uri = inner
            .topics
            .load()
            .values()
            .find_map(|state| {
                state
                    .route
                    .load()
                    .connections
                    .get(&broker_id)
                    .map(|c| c.uri().clone())
            })
            .ok_or_else(|| no_broker(&format!("no published topic lists broker {broker_id}")))?;
        Ok(self.lease(broker_id, &uri))
    }

    /// An XA resource on the broker at `uri`, whether or not a published
    /// topic lists it: for operators and recovery, to list and finish the
    /// branches a broker holds (`recover`, `commit`, `rollback`,
    /// `forget`). A branch started on it can send only to a broker a
    /// published topic lists at that address.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after `close`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> metaq::Result<()> {
    /// let producer = metaq::Producer::builder("127.0.0.1:2181").build().await?;
    /// let xa = producer.xa_resource_at(&"meta://10.0.0.5:8123".parse().unwrap())?;
    /// for xid in xa.recover_all().await? {
    ///     println!("prepared on {}: {xid}", xa.broker());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn xa_resource_at(&self, uri: &BrokerUri) -> Result<XaResource> {
        self.inner.check_open()?;
        let listed = self.xa_brokers().into_iter().find(|(_, u)| u == uri);
        let broker_id = listed.map_or(xa_pin::UNLISTED, |(id, _)| id);
        Ok(self.lease(broker_id, uri))
    }

    fn lease(&self, broker_id: u32, uri: &BrokerUri) -> XaResource {
        XaResource::new(XaPin::open(&self.inner, broker_id, uri))
    }
}

fn no_broker(reason: &str) -> Error {
    Error::Xa {
        operation: "open",
        xid: "-".into(),
        broker: "-".into(),
        code: xa_code::XAER_RMFAIL,
        reason: reason.into(),
    }
}
