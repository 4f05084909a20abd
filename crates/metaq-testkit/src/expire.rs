//! Forcing the expiry of a ZooKeeper session, race-free.
//!
//! The classic way (take the session over with a second client and close
//! it) races with the session's own client: the takeover cuts that client's
//! connection, it reconnects at once and takes the session back before the
//! second client, which waits for a ping round trip inside `connect`, gets to
//! send `closeSession`. So the takeover here is done on the wire: the
//! `ConnectRequest` that `zookeeper-client` would send for the session
//! (which carries the session password, not otherwise exposed) is captured
//! on a throwaway local listener, then sent to the server immediately
//! followed by `closeSession` in the same write. The server handles both
//! before the original client can come back.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zookeeper_client::{Client, SessionInfo};

/// Jute op code of `closeSession`.
const OP_CLOSE_SESSION: i32 = -11;
/// The xid of our `closeSession` request.
const CLOSE_XID: i32 = 1;
/// Largest frame we accept from the server or the client library.
const MAX_FRAME: usize = 1 << 20;
/// How many takeovers to try before giving up.
const ATTEMPTS: usize = 20;
/// Pause after an inconclusive round.
const RETRY_DELAY: Duration = Duration::from_millis(50);

/// Expires `session` on the server at `server` (`host:port`): when this
/// returns `Ok`, the server has answered a connection attempt for the session
/// with "expired".
pub(crate) async fn expire(server: &str, session: &SessionInfo) -> Result<(), String> {
    let connect = capture_connect_request(session).await?;
    let mut last = String::from("the session was still alive");
    for _ in 0..ATTEMPTS {
        // Take over and close in one write. The outcome is not needed: if
        // the session was expired already, the server hangs up with the
        // close unread, which resets the connection and can swallow its
        // answer; the confirmation below tells.
        let _ = take_over(server, &connect, Close::Pipelined).await;
        // Confirm without pipelining. If the session is alive after all (its
        // client won a race), this closes it and the next round confirms.
        // A connection dropped before the answer is inconclusive too: a
        // close still in the server's pipeline drops every connection of the
        // session when it completes.
        match take_over(server, &connect, Close::AfterConnect).await {
            Ok(Outcome::Expired) => return Ok(()),
            Ok(Outcome::Closed) => last = String::from("the session was still alive"),
            Err(e) => last = e,
        }
        tokio::time::sleep(RETRY_DELAY).await;
    }
    Err(format!(
        "no confirmation after {ATTEMPTS} takeovers with closeSession; last: {last}"
    ))
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The server refused the session as expired.
    Expired,
    /// The server accepted the session and then our `closeSession`.
    Closed,
}

/// When `closeSession` is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// In the same write as the `ConnectRequest`.
    Pipelined,
    /// Once the server has accepted the session.
    AfterConnect,
}

/// The `ConnectRequest` body (without length prefix) `zookeeper-client`
/// sends to resume `session`.
async fn capture_connect_request(session: &SessionInfo) -> Result<Vec<u8>, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("binding a local listener: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("reading the listener's address: {e}"))?;
    let addr = addr.to_string();
    let connector = Client::connector()
        .with_session(session.clone())
        .with_session_timeout(Duration::from_secs(10))
        .with_fail_eagerly()
        .connect(&addr);
    let capture = async {
        let (mut stream, _) = listener
            .accept()
            .await
            .map_err(|e| format!("accepting the client library's connection: {e}"))?;
        read_frame(&mut stream)
            .await
            .map_err(|e| format!("reading the client library's ConnectRequest: {e}"))
    };
    let frame = tokio::select! {
        frame = capture => frame?,
        result = connector => {
            return Err(format!(
                "the client library stopped before sending a ConnectRequest: {:?}",
                result.map(|_| ())
            ))
        }
    };
    // protocolVersion (4), lastZxidSeen (8), timeOut (4), sessionId (8), ...
    let id = frame
        .get(16..24)
        .map(|b| i64::from_be_bytes(b.try_into().expect("8 bytes")));
    if id != Some(session.id().0) {
        return Err(format!(
            "captured ConnectRequest is for session {id:?}, not {}",
            session.id()
        ));
    }
    Ok(frame)
}

/// Sends `connect` and `closeSession` (see [`Close`]) and reads the answers.
async fn take_over(server: &str, connect: &[u8], close: Close) -> Result<Outcome, String> {
    let io = |what: &str, e: std::io::Error| format!("{what} {server}: {e}");
    let mut stream = TcpStream::connect(server)
        .await
        .map_err(|e| io("connecting to", e))?;
    stream.set_nodelay(true).map_err(|e| io("configuring", e))?;

    let mut close_request = Vec::with_capacity(12);
    let mut body = Vec::with_capacity(8);
    body.extend_from_slice(&CLOSE_XID.to_be_bytes());
    body.extend_from_slice(&OP_CLOSE_SESSION.to_be_bytes());
    push_frame(&mut close_request, &body);

    let mut request = Vec::with_capacity(connect.len() + 16);
    push_frame(&mut request, connect);
    if close == Close::Pipelined {
        request.extend_from_slice(&close_request);
    }
    stream
        .write_all(&request)
        .await
        .map_err(|e| io("writing to", e))?;

    // ConnectResponse: protocolVersion (4), timeOut (4), sessionId (8), ...
    // A timeout of 0 means the session is expired (the server then hangs up).
    let response = read_frame(&mut stream)
        .await
        .map_err(|e| io("reading the ConnectResponse from", e))?;
    let timeout = response
        .get(4..8)
        .map(|b| i32::from_be_bytes(b.try_into().expect("4 bytes")))
        .ok_or_else(|| format!("short ConnectResponse from {server}"))?;
    if timeout <= 0 {
        return Ok(Outcome::Expired);
    }
    if close == Close::AfterConnect {
        stream
            .write_all(&close_request)
            .await
            .map_err(|e| io("writing closeSession to", e))?;
    }
    // ReplyHeader: xid (4), zxid (8), err (4). Skip anything else.
    loop {
        let reply = read_frame(&mut stream)
            .await
            .map_err(|e| io("reading the closeSession reply from", e))?;
        let xid = reply
            .get(0..4)
            .map(|b| i32::from_be_bytes(b.try_into().expect("4 bytes")));
        if xid != Some(CLOSE_XID) {
            continue;
        }
        let err = reply
            .get(12..16)
            .map(|b| i32::from_be_bytes(b.try_into().expect("4 bytes")));
        return match err {
            Some(0) => Ok(Outcome::Closed),
            other => Err(format!("closeSession failed on {server}: error {other:?}")),
        };
    }
}

fn push_frame(buf: &mut Vec<u8>, body: &[u8]) {
    let len = i32::try_from(body.len()).expect("small frame");
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(body);
}

/// Reads one length-prefixed frame.
async fn read_frame(stream: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let len = stream.read_i32().await?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= MAX_FRAME)
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("frame length {len}"),
            )
        })?;
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await?;
    Ok(body)
}
