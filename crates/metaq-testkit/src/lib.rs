//! Test harness for `metaq`: a real ZooKeeper server for tests, development
//! brokers in process ([`TestBroker`]) or as processes ([`BrokerProcess`]).
//!
//! Tests talk to a real ZooKeeper 3.8, never a mock. [`ZkServer::shared`]
//! starts one server per test binary on a free `127.0.0.1` port (or uses the
//! ensemble named by `METAQ_TEST_ZK`); each test works under its own
//! [`unique_root`], so tests run in parallel. Fault tests start a private
//! server with [`ZkServer::start`] and [`stop`](ZkServer::stop) /
//! [`restart`](ZkServer::restart) it, or expire a client's session with
//! [`ZkServer::expire_session`].
//!
//! ZooKeeper comes from the Debian package (`apt-get install -y zookeeper`);
//! without it, tests that need it fail with a message saying so
//! ([`TestkitError::NotInstalled`]). They never skip.
//!
//! Every JVM the harness starts is stopped by its own pid: by
//! [`ZkServer::stop`], by dropping the [`ZkServer`], or, if the test process
//! ends first (the shared server is never dropped), by a watchdog process
//! that notices the test process is gone.
//!
//! # Examples
//!
//! ```no_run
//! use metaq_testkit::{unique_root, ZkServer};
//! use zookeeper_client::{Acls, CreateMode};
//!
//! #[tokio::test]
//! async fn writes_under_its_own_root() {
//!     let client = ZkServer::shared().client().await;
//!     let root = unique_root();
//!     let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
//!     client.create(&root, b"data", &persistent).await.unwrap();
//!     assert_eq!(client.get_data(&root).await.unwrap().0, b"data");
//! }
//! ```

mod binaries;
mod broker;
mod ensemble;
mod error;
mod expire;
mod install;
mod process;
mod root;
mod zookeeper;

pub use binaries::{broker_binary, workspace_binary};
pub use broker::{
    test_broker_config, BrokerProcess, RawClient, TestBroker, TEST_BROKER_SESSION_TIMEOUT,
};
pub use ensemble::ZkEnsemble;
pub use error::TestkitError;
pub use root::unique_root;
pub use zookeeper::{ZkServer, CLIENT_SESSION_TIMEOUT, TEST_ZK_ENV};
