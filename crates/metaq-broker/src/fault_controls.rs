//! The development broker's fault controls, for tests (in the spirit of
//! librdkafka's mock cluster): one handle, [`Broker::faults`], so the
//! broker's own API stays what a broker does.

use std::net::SocketAddr;
use std::time::Duration;

use metaq::protocol::StatusCode;

use super::server::{bind, lock, uri_for};
use super::{Broker, BrokerError};

/// Fault controls of one [`Broker`], from [`Broker::faults`].
///
/// # Examples
///
/// ```no_run
/// # async fn example(broker: metaq_broker::Broker) -> Result<(), metaq_broker::BrokerError> {
/// let faults = broker.faults();
/// faults.stall(true);
/// // ... a producer's sends to this broker now time out ...
/// faults.stall(false);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FaultControls<'a> {
    broker: &'a Broker,
}

// Here rather than in server.rs, so that the server does not import its
// fault controls: they sit on top of it.
impl Broker {
    /// Fault controls for tests: delay or fail answers, stall, refuse or
    /// cut connections, leave and rejoin ZooKeeper, move to a new address.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq_broker::Broker) {
    /// use std::time::Duration;
    /// broker.faults().delay_responses(Duration::from_millis(200));
    /// # }
    /// ```
    pub fn faults(&self) -> FaultControls<'_> {
        FaultControls::new(self)
    }
}

impl<'a> FaultControls<'a> {
    fn new(broker: &'a Broker) -> Self {
        FaultControls { broker }
    }

    /// Delays every answer by `delay` (zero turns it off). Puts are still
    /// stored at once.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq_broker::Broker) -> Result<(), metaq_broker::BrokerError> {
    /// use std::time::Duration;
    /// use metaq_testkit::RawClient;
    /// broker.faults().delay_responses(Duration::from_millis(500));
    /// let mut client = RawClient::connect(broker.local_addr()).await;
    /// client.send(b"version 1\r\n").await;
    /// assert!(client.response_within(Duration::from_millis(100)).await.is_none());
    /// broker.faults().delay_responses(Duration::ZERO);
    /// # Ok(()) }
    /// ```
    pub fn delay_responses(&self, delay: Duration) {
        self.broker.inner.shared.faults.set_response_delay(delay);
    }

    /// Answers the next `count` plain puts with `code` (body `injected failure`)
    /// without storing them.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq_broker::Broker) -> Result<(), metaq_broker::BrokerError> {
    /// use metaq::protocol::StatusCode;
    /// use metaq_testkit::RawClient;
    /// broker.faults().fail_next_puts(1, StatusCode::INTERNAL_SERVER_ERROR);
    /// let mut client = RawClient::connect(broker.local_addr()).await;
    /// let answer = client.call(b"put test 0 5 0 907060870 1\r\nhello").await.unwrap();
    /// assert_eq!(answer.code, StatusCode::INTERNAL_SERVER_ERROR);
    /// # Ok(()) }
    /// ```
    pub fn fail_next_puts(&self, count: u32, code: StatusCode) {
        self.broker.inner.shared.faults.fail_next_puts(count, code);
    }

    /// While stalled, requests are read and dropped: never stored, never answered.
    /// Use it to test a client's timeouts against a broker that hangs.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq_broker::Broker) -> Result<(), metaq_broker::BrokerError> {
    /// use std::time::Duration;
    /// use metaq_testkit::RawClient;
    /// broker.faults().stall(true);
    /// let mut client = RawClient::connect(broker.local_addr()).await;
    /// client.send(b"version 1\r\n").await;
    /// assert!(client.response_within(Duration::from_secs(1)).await.is_none());
    /// broker.faults().stall(false);
    /// # Ok(()) }
    /// ```
    pub fn stall(&self, stalled: bool) {
        self.broker.inner.shared.faults.set_stalled(stalled);
    }

    /// While refusing, new connections are accepted and closed at once.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq_broker::Broker) -> Result<(), metaq_broker::BrokerError> {
    /// use metaq_testkit::RawClient;
    /// broker.faults().refuse_connections(true);
    /// let mut client = RawClient::connect(broker.local_addr()).await;
    /// assert!(client.is_closed().await);
    /// broker.faults().refuse_connections(false);
    /// # Ok(()) }
    /// ```
    pub fn refuse_connections(&self, refuse: bool) {
        self.broker
            .inner
            .shared
            .faults
            .set_refuse_connections(refuse);
    }

    /// Cuts every open connection now (their open transactions roll back).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq_broker::Broker) -> Result<(), metaq_broker::BrokerError> {
    /// use metaq_testkit::RawClient;
    /// let mut client = RawClient::connect(broker.local_addr()).await;
    /// broker.faults().drop_connections();
    /// assert!(client.is_closed().await);
    /// # Ok(()) }
    /// ```
    pub fn drop_connections(&self) {
        self.broker.inner.cut_connections();
    }

    /// Stops listening and cuts every connection while staying registered:
    /// to clients it looks like a dead process whose ZooKeeper nodes have not
    /// expired yet (connects are refused, not accepted and closed as with
    /// [`refuse_connections`](Self::refuse_connections)). Undone by
    /// [`listen_again`](Self::listen_again).
    pub fn stop_listening(&self) {
        lock(&self.broker.inner.listener).cancel();
        self.broker.inner.cut_connections();
    }

    /// Listens again on the same address after
    /// [`stop_listening`](Self::stop_listening).
    pub async fn listen_again(&self) -> Result<(), BrokerError> {
        let (listener, _) = bind(self.broker.local_addr()).await?;
        self.broker.inner.spawn_accept_loop(listener);
        Ok(())
    }

    /// Removes this broker's nodes from ZooKeeper; it keeps serving.
    /// Producers then stop sending to it, as if it had gone away.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq_broker::Broker) -> Result<(), metaq_broker::BrokerError> {
    /// use metaq::discovery::ZkPaths;
    /// use metaq_testkit::ZkServer;
    /// let config = broker.config();
    /// let master = ZkPaths::new(&config.root).broker_master(config.id);
    /// broker.faults().unregister().await?;
    /// let zk = ZkServer::shared().client().await;
    /// assert_eq!(zk.check_stat(&master).await.unwrap(), None);
    /// # Ok(()) }
    /// ```
    pub async fn unregister(&self) -> Result<(), BrokerError> {
        self.broker.inner.shared.registry.unregister().await
    }

    /// Registers again (after [`unregister`](Self::unregister)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq_broker::Broker) -> Result<(), metaq_broker::BrokerError> {
    /// use metaq::discovery::ZkPaths;
    /// use metaq_testkit::ZkServer;
    /// let config = broker.config();
    /// let master = ZkPaths::new(&config.root).broker_master(config.id);
    /// broker.faults().unregister().await?;
    /// broker.faults().register().await?;
    /// let zk = ZkServer::shared().client().await;
    /// assert!(zk.check_stat(&master).await.unwrap().is_some());
    /// # Ok(()) }
    /// ```
    pub async fn register(&self) -> Result<(), BrokerError> {
        self.broker.inner.shared.registry.register(None).await
    }

    /// The broker's current ZooKeeper session, so a fault test can force its
    /// expiry; the broker then opens a new session and registers again.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq_broker::Broker) -> Result<(), metaq_broker::BrokerError> {
    /// use metaq_testkit::ZkServer;
    /// let session = broker.faults().zk_session().await?;
    /// ZkServer::shared().expire_session(&session).await;
    /// # Ok(()) }
    /// ```
    pub async fn zk_session(&self) -> Result<zookeeper_client::SessionInfo, BrokerError> {
        self.broker.inner.shared.registry.session().await
    }

    /// Moves to a new listen address: binds it, cuts the connections of the
    /// old one, stops listening there, and registers the new URI. Returns the
    /// new local address.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(broker: metaq_broker::Broker) -> Result<(), metaq_broker::BrokerError> {
    /// let old = broker.local_addr();
    /// let new = broker.faults().move_to("127.0.0.1:0".parse().unwrap()).await?;
    /// assert_ne!(new, old);
    /// assert_eq!(broker.local_addr(), new);
    /// # Ok(()) }
    /// ```
    pub async fn move_to(&self, listen: SocketAddr) -> Result<SocketAddr, BrokerError> {
        let inner = &self.broker.inner;
        let (listener, local_addr) = bind(listen).await?;
        lock(&inner.listener).cancel();
        inner.cut_connections();
        inner.spawn_accept_loop(listener);
        *lock(&inner.local_addr) = local_addr;
        let uri = uri_for(&inner.shared.config, local_addr);
        inner.shared.set_uri(uri.clone());
        inner.shared.registry.register(Some(uri)).await?;
        Ok(local_addr)
    }
}
