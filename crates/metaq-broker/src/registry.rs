//! Registration in ZooKeeper exactly as a Java MetaQ 1.4 master does it
//! (docs/protocol.md §1.3), kept alive across session expiry.
//!
//! The session is a [`ZkSession`], the same keeper discovery uses: it
//! opens a new session when one expires. One task owns the registration:
//! the broker talks to it through a channel, and it registers everything
//! again on each new session (ephemeral nodes died with the old one).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tracing::{info, warn};
use zookeeper_client::{Acls, Client, CreateMode, Error as ZkError, SessionInfo};

use super::{BrokerConfig, BrokerError};
use metaq::discovery::{TopicBroker, ZkPaths, ZkSession, ZkSettings};
use metaq::BrokerUri;

/// How long after a failed registration (in a live session) it is tried again.
const RETRY_REGISTRATION: Duration = Duration::from_millis(500);

/// Handle to the registration task.
#[derive(Debug, Clone)]
pub(crate) struct Registry {
    commands: mpsc::UnboundedSender<Command>,
    session: ZkSession,
}

type Done = oneshot::Sender<Result<(), BrokerError>>;

enum Command {
    /// Register a topic first accepted through a wildcard.
    AddTopic { topic: String, partitions: u32 },
    /// Remove every node (fault injection).
    Unregister(Done),
    /// Register again, under a new address if given.
    Register(Option<BrokerUri>, Done),
    /// Remove every node and close the session.
    Shutdown(oneshot::Sender<()>),
}

impl Registry {
    /// Connects, registers the configured topics and those of `on_disk`
    /// (topics found in the data directory) that the configuration accepts,
    /// and spawns the task that keeps it so.
    pub(crate) async fn start(
        config: Arc<BrokerConfig>,
        uri: BrokerUri,
        on_disk: impl IntoIterator<Item = String>,
    ) -> Result<Registry, BrokerError> {
        let mut topics: BTreeMap<String, u32> = config
            .topics
            .iter()
            .filter(|t| !t.is_pattern())
            .map(|t| (t.name.clone(), t.partitions))
            .collect();
        // docs/protocol.md §1.3 step 4: then every topic found in the data directory,
        // so a topic accepted through a wildcard is found by producers after
        // a restart (they could not send the put that would register it).
        for topic in on_disk {
            if let Some(accepted) = config.topic(&topic) {
                topics.entry(topic).or_insert(accepted.partitions);
            }
        }
        let session = ZkSession::open(zk_settings(&config))
            .await
            .map_err(session_error)?;
        let mut follow = session.follow();
        let current = follow.borrow_and_update().clone();
        let client = current.client.ok_or(BrokerError::Stopped)?;
        let mut registrar = Registrar {
            paths: ZkPaths::new(&config.root),
            config,
            uri,
            topics,
            client,
            generation: current.generation,
            registered: false,
            wanted: true,
        };
        registrar.register_all().await?;
        let (commands, rx) = mpsc::unbounded_channel();
        tokio::spawn(registrar.run(rx, follow));
        Ok(Registry { commands, session })
    }

    pub(crate) fn add_topic(&self, topic: &str, partitions: u32) {
        let _ = self.commands.send(Command::AddTopic {
            topic: topic.to_owned(),
            partitions,
        });
    }

    async fn call(&self, make: impl FnOnce(Done) -> Command) -> Result<(), BrokerError> {
        let (done, rx) = oneshot::channel();
        self.commands
            .send(make(done))
            .map_err(|_| BrokerError::Stopped)?;
        rx.await.map_err(|_| BrokerError::Stopped)?
    }

    pub(crate) async fn unregister(&self) -> Result<(), BrokerError> {
        self.call(Command::Unregister).await
    }

    pub(crate) async fn register(&self, uri: Option<BrokerUri>) -> Result<(), BrokerError> {
        self.call(|done| Command::Register(uri, done)).await
    }

    /// The current session (tests force its expiry).
    pub(crate) async fn session(&self) -> Result<SessionInfo, BrokerError> {
        let wait = self.session.settings().connect_timeout;
        let client = self
            .session
            .client_within(wait)
            .await
            .map_err(session_error)?;
        Ok(client.session().clone())
    }

    /// Unregisters and closes the session; returns when done (or the task is gone).
    pub(crate) async fn shutdown(&self) {
        // Bounded: with ZooKeeper away the session may be being renewed and
        // the deletes may never be answered. The ephemeral nodes then go
        // with the session.
        const UNREGISTER_WAIT: Duration = Duration::from_secs(10);
        let (done, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(done)).is_ok()
            && timeout(UNREGISTER_WAIT, rx).await.is_err()
        {
            warn!("leaving ZooKeeper took over {UNREGISTER_WAIT:?}; going on with the shutdown");
        }
        self.session.close().await;
    }
}

/// The session settings the broker's configuration asks for.
fn zk_settings(config: &BrokerConfig) -> ZkSettings {
    ZkSettings::new(config.zk_connect.clone())
        .with_root(&config.root)
        .with_session_timeout(config.zk_session_timeout)
        .with_connect_timeout(config.zk_connect_timeout)
}

/// The broker's error for a session that could not be opened.
fn session_error(error: metaq::Error) -> BrokerError {
    match error {
        metaq::Error::ZooKeeperUnreachable {
            connect,
            waited,
            cause,
        } => BrokerError::ZooKeeperUnreachable {
            connect,
            waited,
            cause,
        },
        metaq::Error::ZooKeeper {
            operation,
            path,
            source,
        } => BrokerError::ZooKeeper {
            operation,
            path,
            source,
        },
        metaq::Error::Closed => BrokerError::Stopped,
        other => BrokerError::Config {
            reason: other.to_string(),
        },
    }
}

struct Registrar {
    config: Arc<BrokerConfig>,
    paths: ZkPaths,
    uri: BrokerUri,
    /// Concrete topics to register, with their partition counts.
    topics: BTreeMap<String, u32>,
    /// The client of the session `generation`.
    client: Client,
    generation: u64,
    /// Whether this broker's nodes are in ZooKeeper now (as far as we know).
    registered: bool,
    /// Whether they should be: false only after a fault-injected unregister,
    /// so that a session renewal does not register again. Kept apart from
    /// `registered` so that a move whose registration failed (the session
    /// had just expired) is registered by the renewal.
    wanted: bool,
}

impl Registrar {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut follow: tokio::sync::watch::Receiver<metaq::discovery::CurrentSession>,
    ) {
        let mut retry_at: Option<Instant> = None;
        loop {
            tokio::select! {
                // Commands first: a dropped broker closes both the channel
                // and the session, and must unregister before either ends.
                biased;
                command = commands.recv() => match command {
                    None => {
                        self.unregister_all().await;
                        return;
                    }
                    Some(Command::Shutdown(done)) => {
                        self.unregister_all().await;
                        let _ = done.send(());
                        return;
                    }
                    Some(command) => self.handle(command).await,
                },
                changed = follow.changed() => {
                    if changed.is_err() {
                        // The handle is gone (a broker dropped without a
                        // shutdown): leave as the shutdown would. The
                        // client is ours until then.
                        self.unregister_all().await;
                        return;
                    }
                    let current = follow.borrow_and_update().clone();
                    match current.client {
                        Some(client) if current.generation != self.generation => {
                            // The old session's ephemeral nodes are gone.
                            self.client = client;
                            self.generation = current.generation;
                            self.registered = false;
                            retry_at = self.register_again("a new zookeeper session").await;
                        }
                        Some(_) => {}
                        // Ended, or closed by a dropped handle: nodes are
                        // known gone only once a new session is there.
                        None => info!(broker = self.config.id, "zookeeper session ended"),
                    }
                }
                _ = sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                    retry_at = None;
                    if !self.registered {
                        retry_at = self.register_again("a failed registration").await;
                    }
                }
            }
        }
    }

    /// Registers everything if wanted; on failure, says when to try again.
    async fn register_again(&mut self, after: &str) -> Option<Instant> {
        if !self.wanted {
            return None;
        }
        match self.register_all().await {
            Ok(()) => {
                info!(broker = self.config.id, "registered again after {after}");
                None
            }
            Err(e) => {
                warn!(broker = self.config.id, error = %e, retry_in = ?RETRY_REGISTRATION, "registration failed");
                Some(Instant::now() + RETRY_REGISTRATION)
            }
        }
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::AddTopic { topic, partitions } => {
                if self.topics.insert(topic.clone(), partitions).is_none() && self.registered {
                    if let Err(e) = self.register_topic(&topic, partitions).await {
                        warn!(broker = self.config.id, %topic, error = %e, "topic registration failed");
                    }
                }
            }
            Command::Unregister(done) => {
                self.wanted = false;
                self.unregister_all().await;
                let _ = done.send(Ok(()));
            }
            Command::Register(uri, done) => {
                self.wanted = true;
                if let Some(uri) = uri {
                    if self.registered {
                        self.unregister_all().await;
                    }
                    self.uri = uri;
                }
                // During a renewal this fails (the old client's session is
                // over); the new session registers the new address.
                let _ = done.send(self.register_all().await);
            }
            Command::Shutdown(_) => unreachable!("handled by run"),
        }
    }

    async fn register_all(&mut self) -> Result<(), BrokerError> {
        let id = self.config.id;
        let uri = self.uri.to_string();
        self.create_master(&uri).await?;
        let broker_path = self.paths.broker(id);
        self.client
            .set_data(&broker_path, uri.as_bytes(), None)
            .await
            .map_err(|e| BrokerError::zk("set", &broker_path, e))?;
        // The broker has no ini file; MetaQ writes 0 in that case.
        self.replace_ephemeral(&self.paths.broker_config_checksum(id), b"0")
            .await?;
        for (topic, partitions) in &self.topics {
            self.register_topic(topic, *partitions).await?;
        }
        self.registered = true;
        info!(broker = id, %uri, topics = self.topics.len(), root = self.paths.root(), "registered in zookeeper");
        Ok(())
    }

    /// Creates the master node, waiting out a previous session of this broker
    /// id whose node has not expired yet (the Java broker just fails).
    async fn create_master(&self, uri: &str) -> Result<(), BrokerError> {
        let path = self.paths.broker_master(self.config.id);
        let wait = self.config.zk_session_timeout + Duration::from_secs(5);
        let deadline = Instant::now() + wait;
        let mut said = false;
        loop {
            match create_ephemeral(&self.client, &path, uri.as_bytes()).await {
                Ok(()) => return Ok(()),
                Err(ZkError::NodeExists) => {}
                Err(e) => return Err(BrokerError::zk("create", &path, e)),
            }
            match self.client.get_data(&path).await {
                Ok((_, stat)) if stat.ephemeral_owner == self.client.session_id().0 => {
                    return self
                        .client
                        .set_data(&path, uri.as_bytes(), None)
                        .await
                        .map(drop)
                        .map_err(|e| BrokerError::zk("set", &path, e));
                }
                Ok((data, stat)) => {
                    if !said {
                        said = true;
                        warn!(
                            broker = self.config.id,
                            %path,
                            holder = %format_args!("{:#x}", stat.ephemeral_owner),
                            address = %String::from_utf8_lossy(&data),
                            "broker id {} is still registered by another ZooKeeper session \
                             (a previous run of this broker whose session has not expired, \
                             or another broker with this id); waiting up to {wait:?} for it to go",
                            self.config.id
                        );
                    }
                }
                Err(ZkError::NoNode) => {}
                Err(e) => return Err(BrokerError::zk("get", &path, e)),
            }
            if Instant::now() >= deadline {
                return Err(BrokerError::IdTaken {
                    id: self.config.id,
                    path,
                });
            }
            sleep(Duration::from_millis(250)).await;
        }
    }

    async fn register_topic(&self, topic: &str, partitions: u32) -> Result<(), BrokerError> {
        let id = self.config.id;
        let json = TopicBroker::master(id, partitions).to_json();
        self.replace_ephemeral(
            &self.paths.topic_legacy_broker(topic, id),
            partitions.to_string().as_bytes(),
        )
        .await?;
        self.replace_ephemeral(&self.paths.topic_pub_broker(topic, id), json.as_bytes())
            .await?;
        self.replace_ephemeral(&self.paths.topic_sub_broker(topic, id), json.as_bytes())
            .await?;
        info!(broker = id, topic, partitions, "topic registered");
        Ok(())
    }

    /// Creates an ephemeral node, replacing one left by an earlier session.
    async fn replace_ephemeral(&self, path: &str, data: &[u8]) -> Result<(), BrokerError> {
        for _ in 0..5 {
            match create_ephemeral(&self.client, path, data).await {
                Ok(()) => return Ok(()),
                Err(ZkError::NodeExists) => match self.client.delete(path, None).await {
                    Ok(()) | Err(ZkError::NoNode) => {}
                    Err(e) => return Err(BrokerError::zk("delete", path, e)),
                },
                Err(e) => return Err(BrokerError::zk("create", path, e)),
            }
        }
        Err(BrokerError::zk("create", path, ZkError::NodeExists))
    }

    /// Deletes every node in MetaQ's shutdown order; failures are logged.
    async fn unregister_all(&mut self) {
        if !self.registered {
            return;
        }
        self.registered = false;
        let id = self.config.id;
        self.delete(&self.paths.broker_master(id)).await;
        self.delete(&self.paths.broker_config_checksum(id)).await;
        let broker_path = self.paths.broker(id);
        match self.client.delete(&broker_path, None).await {
            Ok(()) | Err(ZkError::NoNode) => {}
            // Children (slaves) remain: MetaQ empties the data instead.
            Err(ZkError::NotEmpty) => {
                let _ = self.client.set_data(&broker_path, b"", None).await;
            }
            Err(e) => warn!(broker = id, path = %broker_path, error = %e, "delete failed"),
        }
        for topic in self.topics.keys() {
            self.delete(&self.paths.topic_legacy_broker(topic, id))
                .await;
            self.delete(&self.paths.topic_pub_broker(topic, id)).await;
            self.delete(&self.paths.topic_sub_broker(topic, id)).await;
        }
        info!(broker = id, "unregistered from zookeeper");
    }

    async fn delete(&self, path: &str) {
        match self.client.delete(path, None).await {
            Ok(()) | Err(ZkError::NoNode) => {}
            Err(e) => warn!(broker = self.config.id, path, error = %e, "delete failed"),
        }
    }
}

/// Creates `path` as an ephemeral node, its missing ancestors as persistent
/// nodes with no data (ZkClient's "create parents").
async fn create_ephemeral(client: &Client, path: &str, data: &[u8]) -> Result<(), ZkError> {
    if let Some((parent, _)) = path.rsplit_once('/') {
        if !parent.is_empty() {
            client
                .mkdir(
                    parent,
                    &CreateMode::Persistent.with_acls(Acls::anyone_all()),
                )
                .await?;
        }
    }
    client
        .create(
            path,
            data,
            &CreateMode::Ephemeral.with_acls(Acls::anyone_all()),
        )
        .await
        .map(drop)
}
