//! Opening a ZooKeeper session, and saying why it could not be opened.
//!
//! The ZooKeeper client retries the ensemble's hosts on its own until its
//! timeout and then only reports "timeout", whether the address refused,
//! did not resolve, or is not ZooKeeper at all. Shortly before the bound
//! runs out we probe each host ourselves, so the failure can name the cause.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout_at, Instant};
use zookeeper_client::{Client, Connector, Error as ZkError};

/// The most a probe of the hosts takes (less for a short connect bound).
const PROBE_BUDGET: Duration = Duration::from_secs(2);

/// The most of a host's answer to `srvr` that is read.
const ANSWER_CAP: usize = 512;

/// Why no session was opened.
#[derive(Debug)]
pub(crate) enum ConnectFailure {
    /// The client gave a definite answer (bad connect string, auth failed, …).
    Client(ZkError),
    /// No session within the bound; `cause` says what the hosts did.
    Unreachable { waited: Duration, cause: String },
}

/// Connects with `connector` to `connect`, at most `limit`. When that fails
/// for want of an answer, the error carries what a probe of each host found.
pub(crate) async fn connect_explained(
    connector: Connector,
    connect: &str,
    limit: Duration,
) -> Result<Client, ConnectFailure> {
    let started = Instant::now();
    let deadline = started + limit;
    let budget = PROBE_BUDGET.min(limit / 2);
    let session = connector.connect(connect);
    tokio::pin!(session);
    tokio::select! {
        result = &mut session => return result.map_err(ConnectFailure::Client),
        _ = sleep_until(deadline - budget) => {}
    }
    // Still nothing: probe the hosts while the client goes on trying.
    let probe = probe_hosts(connect, budget);
    tokio::pin!(probe);
    let cause = tokio::select! {
        result = &mut session => return result.map_err(ConnectFailure::Client),
        cause = &mut probe => cause,
    };
    match timeout_at(deadline, session).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(ZkError::Timeout)) | Err(_) => Err(ConnectFailure::Unreachable {
            waited: started.elapsed(),
            cause,
        }),
        Ok(Err(error)) => Err(ConnectFailure::Client(error)),
    }
}

/// What each host of the connect string does, joined with `; `.
pub(crate) async fn probe_hosts(connect: &str, budget: Duration) -> String {
    let hosts = hosts_of(connect);
    if hosts.is_empty() {
        return format!("no host in the connect string {connect:?}");
    }
    let probes = hosts.iter().map(|host| probe_host(host, budget));
    futures::future::join_all(probes).await.join("; ")
}

/// The `host:port` parts of a connect string: the chroot and any
/// `tcp://` scheme removed, ZooKeeper's port 2181 added where none is given.
pub(crate) fn hosts_of(connect: &str) -> Vec<String> {
    let plain = connect.replace("tcp+tls://", "").replace("tcp://", "");
    let servers = plain.split('/').next().unwrap_or_default();
    servers
        .split(',')
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .map(|host| {
            let has_port = match host.rfind(']') {
                Some(end) => host[end..].contains(':'),
                None => host.contains(':'),
            };
            if has_port {
                host.to_owned()
            } else {
                format!("{host}:2181")
            }
        })
        .collect()
}

/// One host: does its name resolve, does it take a TCP connection, and
/// does it answer like ZooKeeper.
async fn probe_host(host: &str, budget: Duration) -> String {
    let deadline = Instant::now() + budget;
    let addrs = match timeout_at(deadline, tokio::net::lookup_host(host)).await {
        Err(_) => return format!("{host}: name not resolved within {budget:?}"),
        Ok(Err(e)) => return format!("{host}: name not resolved ({e})"),
        Ok(Ok(addrs)) => addrs.collect::<Vec<_>>(),
    };
    let Some(addr) = addrs.first() else {
        return format!("{host}: name resolved to no address");
    };
    let mut stream = match timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => return format!("{host} ({addr}): no answer to a TCP connect"),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return format!("{host} ({addr}): connection refused");
        }
        Ok(Err(e)) => return format!("{host} ({addr}): {e}"),
        Ok(Ok(stream)) => stream,
    };
    // ZooKeeper answers the four-letter word `srvr`, even when it is not
    // whitelisted (with a refusal that names the whitelist).
    let mut answer = Vec::new();
    let exchange = async {
        stream.write_all(b"srvr").await?;
        let mut buf = [0u8; ANSWER_CAP];
        while answer.len() < ANSWER_CAP {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = timeout_at(deadline, exchange).await;
    let text = String::from_utf8_lossy(&answer);
    if text.contains("not currently serving requests") {
        format!("{host} ({addr}): ZooKeeper is not serving requests (no quorum?)")
    } else if text.contains("Zookeeper version") || text.contains("whitelist") {
        format!("{host} ({addr}): ZooKeeper answers, but no session was opened")
    } else if answer.is_empty() {
        format!("{host} ({addr}): accepts TCP connections but does not answer like ZooKeeper")
    } else {
        let start: String = text.chars().take(40).collect();
        format!("{host} ({addr}): not ZooKeeper (it answered {start:?})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_connect_strings() {
        assert_eq!(hosts_of("a:1,b:2/chroot/x"), ["a:1", "b:2"]);
        assert_eq!(hosts_of("zk1"), ["zk1:2181"]);
        assert_eq!(
            hosts_of("tcp://zk1:2182,tcp://zk2/c"),
            ["zk1:2182", "zk2:2181"]
        );
        assert_eq!(hosts_of("[::1]:2181,[::1]"), ["[::1]:2181", "[::1]:2181"]);
        assert!(hosts_of("/only-chroot").is_empty());
    }

    #[tokio::test]
    async fn probes_say_refused_unresolved_and_not_zookeeper() {
        // A port with no listener: bind one, note it, close it.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let refused = probe_hosts(&format!("127.0.0.1:{port}"), PROBE_BUDGET).await;
        assert!(refused.contains("connection refused"), "{refused}");

        let unresolved = probe_hosts("no-such-host.invalid:2181", PROBE_BUDGET).await;
        assert!(unresolved.contains("name not resolved"), "{unresolved}");

        // A server that answers something else.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            }
        });
        let other = probe_hosts(&addr.to_string(), PROBE_BUDGET).await;
        assert!(other.contains("not ZooKeeper"), "{other}");
        assert!(other.contains("HTTP/1.1 400"), "{other}");
    }
}
