//! The child side of [`child`](super::child): `metaq bench --serve null|broker`
//! runs one server, prints `ready id=<id> addr=<ip:port> uri=<uri>`, and
//! stops gracefully when its stdin closes (or on SIGTERM / Ctrl-C).

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use clap::ValueEnum;
use metaq_broker::null::NullServer;
use metaq_broker::{Broker, BrokerConfig, FlushPolicy, TopicConfig};

/// Session timeout of the servers the bench starts: if one is killed, its
/// nodes go soon.
const SESSION_TIMEOUT: Duration = Duration::from_secs(4);

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ServeRole {
    /// The null server, on one thread.
    Null,
    /// A development broker, on a multi-thread runtime as `metaq-broker` runs it.
    Broker,
}

/// Everything a child needs, from the hidden `--serve*` arguments.
pub(crate) struct ServeSpec {
    pub(crate) role: ServeRole,
    pub(crate) id: u32,
    pub(crate) zk: String,
    pub(crate) root: String,
    pub(crate) topic: TopicConfig,
    pub(crate) data_dir: Option<std::path::PathBuf>,
    pub(crate) flush: FlushPolicy,
}

pub(crate) fn run(spec: ServeSpec) -> Result<(), String> {
    let runtime = match spec.role {
        // One thread is all a null server needs, and keeps its CPU small.
        ServeRole::Null => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        ServeRole::Broker => tokio::runtime::Runtime::new(),
    }
    .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        match spec.role {
            ServeRole::Null => {
                let server = NullServer::builder(&spec.zk)
                    .id(spec.id)
                    .listen(listen)
                    .root(&spec.root)
                    .topic(spec.topic.clone())
                    .zk_session_timeout(SESSION_TIMEOUT)
                    .start()
                    .await
                    .map_err(|e| format!("null server: {e}"))?;
                ready(spec.id, server.local_addr(), &server.uri().to_string());
                stopped().await;
                server.stop().await;
            }
            ServeRole::Broker => {
                let data_dir = spec
                    .data_dir
                    .clone()
                    .ok_or("a broker needs --serve-data-dir")?;
                let config = BrokerConfig::new(spec.id, &spec.zk, data_dir)
                    .with_listen(listen)
                    .with_root(&spec.root)
                    .with_topic(spec.topic.clone())
                    .with_flush(spec.flush)
                    .with_zk_session_timeout(SESSION_TIMEOUT);
                let broker = Broker::start(config)
                    .await
                    .map_err(|e| format!("broker {}: {e}", spec.id))?;
                ready(spec.id, broker.local_addr(), &broker.uri().to_string());
                stopped().await;
                broker.shutdown().await;
            }
        }
        Ok(())
    })
}

fn ready(id: u32, addr: SocketAddr, uri: &str) {
    say!("ready id={id} addr={addr} uri={uri}");
}

/// Resolves when stdin reaches end-of-file (the parent closed it or died),
/// or on SIGTERM or Ctrl-C.
async fn stopped() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = rx => {}
        _ = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
