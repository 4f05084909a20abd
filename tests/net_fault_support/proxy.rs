//! A TCP proxy in front of one broker that can blackhole its link: stop
//! forwarding bytes in both directions while every socket stays open (no
//! FIN, no RST), as a network partition or a dead switch does, and heal.
//!
//! While blackholed, the proxy stops reading, so what the peers write stays
//! in kernel buffers (or in the one chunk a pump had read) and is delivered
//! after healing, as TCP retransmission would deliver it once a partition
//! ends. A close or a reset during the blackhole is only noticed, and
//! passed on, after healing. New connections are still accepted (the
//! kernel completes the handshake anyway) but forward nothing either.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use metaq::BrokerUri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The proxy; dropping it closes every connection it holds.
pub struct BlackholeProxy {
    addr: SocketAddr,
    blackholed: watch::Sender<bool>,
    accepted: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl BlackholeProxy {
    /// A listener on 127.0.0.1, port 0. The broker behind the proxy is
    /// started after it, since it must advertise the proxy's port.
    pub async fn listen() -> TcpListener {
        TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy")
    }

    /// Forwards every connection made to `listener` to `upstream`.
    pub fn start(listener: TcpListener, upstream: SocketAddr) -> BlackholeProxy {
        let addr = listener.local_addr().expect("the proxy's address");
        let (blackholed, _) = watch::channel(false);
        let proxy = BlackholeProxy {
            addr,
            blackholed,
            accepted: Arc::default(),
            stop: CancellationToken::new(),
        };
        tokio::spawn(accept_loop(
            listener,
            upstream,
            proxy.blackholed.clone(),
            proxy.accepted.clone(),
            proxy.stop.clone(),
        ));
        proxy
    }

    /// The URI producers reach the broker by.
    pub fn uri(&self) -> BrokerUri {
        format!("meta://{}", self.addr).parse().unwrap()
    }

    /// Stops forwarding; every connection stays open.
    pub fn blackhole(&self) {
        self.blackholed.send_replace(true);
    }

    /// Forwards again, what was held back first.
    pub fn heal(&self) {
        self.blackholed.send_replace(false);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for BlackholeProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    blackholed: watch::Sender<bool>,
    accepted: Arc<AtomicUsize>,
    stop: CancellationToken,
) {
    loop {
        let client = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => client,
                Err(_) => continue,
            },
        };
        accepted.fetch_add(1, Ordering::SeqCst);
        // Refused upstream: dropping the client closes it, as a broker
        // that is down would.
        let Ok(server) = TcpStream::connect(upstream).await else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        for (from, to) in [(client_read, server_write), (server_read, client_write)] {
            let (gate, stop) = (blackholed.subscribe(), stop.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = pump(from, to, gate) => {}
                }
            });
        }
    }
}

/// Copies `from` to `to` while the gate is open. A chunk read, an end of
/// stream or an error is acted on only once the gate is open again.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut gate: watch::Receiver<bool>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let _ = gate.wait_for(|blackholed| !blackholed).await;
        let read = from.read(&mut buffer).await;
        let _ = gate.wait_for(|blackholed| !blackholed).await;
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    // Dropping `to` passes the end of stream on.
}
