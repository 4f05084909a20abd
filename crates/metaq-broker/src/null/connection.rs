//! One client connection of the null server: read, decode every complete
//! request, answer them all with one write, read again.
//!
//! Reading and writing take turns on purpose: a client that stops reading
//! its answers makes the server stop reading its requests (backpressure),
//! and a whole read's worth of answers goes out in one `write_all`. The
//! producer reads and writes its socket independently, so the turns never
//! block it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::answer::{After, Answerer};
use super::Counters;
use metaq::protocol::{DecodeLimits, ServerCodec};

/// Room read at a time: enough for hundreds of small puts per wake-up.
const READ_CHUNK: usize = 64 * 1024;

pub(super) async fn serve(stream: TcpStream, counters: Arc<Counters>, stop: CancellationToken) {
    counters.connections.fetch_add(1, Ordering::Relaxed);
    tokio::select! {
        _ = stop.cancelled() => {}
        outcome = run(stream, &counters) => if let Err(e) = outcome {
            debug!(error = %e, "null server connection ended");
        },
    }
    counters.connections.fetch_sub(1, Ordering::Relaxed);
}

async fn run(mut stream: TcpStream, counters: &Counters) -> std::io::Result<()> {
    // Answers go out as soon as they are written; batching happens above,
    // one write per read.
    stream.set_nodelay(true)?;
    let mut codec = ServerCodec::new(DecodeLimits::default());
    let mut answerer = Answerer::default();
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    loop {
        input.reserve(READ_CHUNK);
        if stream.read_buf(&mut input).await? == 0 {
            return Ok(());
        }
        let mut after = After::Continue;
        while after == After::Continue {
            match codec.decode(&mut input) {
                Ok(Some(request)) => after = answerer.answer(request, &mut out),
                Ok(None) => break,
                Err(e) => {
                    // Out of step with the client: answer what was read
                    // before the bad frame, then hang up, as a broker does.
                    debug!(error = %e, "bad frame; closing");
                    after = After::Close;
                }
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        counters
            .puts
            .fetch_add(answerer.take_puts(), Ordering::Relaxed);
        if after == After::Close {
            return Ok(());
        }
    }
}
