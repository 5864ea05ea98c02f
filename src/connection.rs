//! The per-connection task: reads frames into the session, writes what
//! the socket could not take at once ([`Wire`]), pings, and closes with
//! the right code.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::admission::Slot;
use crate::hub::Hub;
use crate::outbound::Outbound;
use crate::protocol::CloseCode;
use crate::session::{Flow, Session};
use crate::wire::{Wire, WireIo};

/// The upgraded socket as tungstenite reads it; raw access to it lets a
/// 1009 close drain the rest of the oversized frame.
pub type Socket = WebSocketStream<WireIo>;
/// How long a close handshake may take before the socket is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// After a 1009 the client may still be sending its frame: closing with
/// unread bytes would reset the connection and lose the close frame, so
/// that much is read and discarded first, for that long at most.
const DRAIN_MAX_BYTES: usize = 32 * 1024 * 1024;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the loop ended.
enum End {
    /// Close with this code.
    Close(CloseCode),
    /// Evicted before `hello` to make room for a newer connection: close
    /// (1013) without waiting for the peer.
    Evicted,
    /// The peer closed or the socket failed: nothing more to say.
    Gone,
}

pub async fn serve(
    hub: Arc<Hub>,
    handlers: Arc<crate::session::Handlers>,
    ws: Socket,
    wire: Arc<Wire>,
    shutdown: CancellationToken,
    peer: std::net::SocketAddr,
    slot: Slot,
) {
    // The span is entered only where lines are logged (the request
    // handlers and the close), not on every poll of the task (measured:
    // 2.5% of the server's user-space instructions at 18,000/s).
    let span = tracing::info_span!("conn", conn = wire.conn(), %peer, user = tracing::field::Empty);
    hub.metrics.connections_accepted.increment(1);
    run(hub, handlers, ws, wire.clone(), shutdown, slot, span).await;
    wire.end();
}

async fn run(
    hub: Arc<Hub>,
    handlers: Arc<crate::session::Handlers>,
    mut ws: Socket,
    wire: Arc<Wire>,
    shutdown: CancellationToken,
    slot: Slot,
    span: tracing::Span,
) {
    let config = hub.config.clone();
    let slow = wire.slow();
    let evicted = slot.evicted().cancelled_owned();
    tokio::pin!(evicted);
    let mut session = Session::new(hub.clone(), handlers, Outbound::wire(wire.clone()), slot);
    let mut ping =
        tokio::time::interval_at(Instant::now() + config.ping_interval, config.ping_interval);
    let mut last_seen = Instant::now();
    // One timer for the session's deadline: `auth_timeout` until `hello`
    // succeeds, then the token's expiry. Created once, not per loop turn.
    let deadline = tokio::time::sleep(config.auth_timeout);
    tokio::pin!(deadline);
    let mut authenticated = false;
    // The two cancellation futures are made once: each one made anew per
    // loop turn registered with its token's mutex every time (measured:
    // 2.7% of the server's samples at 36,000 deliveries/s).
    let going_away = shutdown.cancelled();
    tokio::pin!(going_away);
    let too_slow = slow.cancelled();
    tokio::pin!(too_slow);
    tracing::debug!(parent: &span, "connected");

    let end = loop {
        tokio::select! {
            () = &mut going_away => break End::Close(CloseCode::GoingAway),
            () = &mut too_slow => break End::Close(stop_code(&wire)),
            () = &mut evicted, if !authenticated => break End::Evicted,
            () = wire.queued() => {
                // The socket was full: write the rest once it drains.
                let written = tokio::select! {
                    // A peer gone without a FIN leaves writes pending
                    // forever: give up after `idle_timeout`.
                    result = tokio::time::timeout(config.idle_timeout, ws.get_ref().drain()) => {
                        match result {
                            Ok(result) => result,
                            Err(_) => break End::Close(CloseCode::IdleTimeout),
                        }
                    }
                    () = &mut too_slow => break End::Close(stop_code(&wire)),
                    () = &mut going_away => break End::Close(CloseCode::GoingAway),
                };
                if written.is_err() {
                    break End::Gone;
                }
            }
            message = ws.next() => {
                last_seen = Instant::now();
                match message {
                    Some(Ok(Message::Binary(frame))) => {
                        // Boxed: the request handlers' futures are large,
                        // and every idle connection's task would otherwise
                        // carry room for the largest (measured: 4.9 KB).
                        let handled = Box::pin(session.handle(&frame).instrument(span.clone())).await;
                        if let Flow::Close(code) = handled {
                            break End::Close(code);
                        }
                        if !authenticated {
                            if let Some(exp) = session.expires_at() {
                                authenticated = true;
                                deadline.as_mut().reset(deadline_of(exp));
                            }
                        }
                    }
                    Some(Ok(Message::Text(_))) => break End::Close(CloseCode::UnsupportedData),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break End::Gone,
                    Some(Err(err)) => {
                        if matches!(err, tungstenite::Error::Capacity(_)) {
                            break End::Close(CloseCode::MessageTooBig);
                        }
                        tracing::debug!(parent: &span, error = %err, "read failed");
                        break End::Gone;
                    }
                }
            }
            _ = ping.tick() => {
                if last_seen.elapsed() >= config.idle_timeout {
                    break End::Close(CloseCode::IdleTimeout);
                }
                let ping = tokio::time::timeout(config.idle_timeout, ws.send(Message::Ping(Bytes::new())));
                if !matches!(ping.await, Ok(Ok(()))) {
                    break End::Gone;
                }
            }
            () = &mut deadline => {
                break End::Close(if authenticated { CloseCode::TokenExpired } else { CloseCode::AuthTimeout });
            }
        }
    };

    span.in_scope(|| session.close());
    match end {
        End::Close(CloseCode::MessageTooBig) => {
            let code = CloseCode::MessageTooBig;
            tracing::info!(parent: &span, code = code.code(), reason = code.reason(), "closing");
            // Boxed: rarely used, and kept out of every connection's task.
            Box::pin(close_and_drain(&mut ws, code)).await;
        }
        End::Close(code) => {
            if code == CloseCode::SlowConsumer {
                hub.metrics.slow_consumers.increment(1);
                // What waits for a slow reader is dropped, so the close
                // frame goes out next.
                wire.drop_queued();
            }
            tracing::info!(parent: &span, code = code.code(), reason = code.reason(), "closing");
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, close(&mut ws, code)).await;
        }
        End::Evicted => {
            let code = CloseCode::TryAgainLater;
            tracing::debug!(parent: &span, code = code.code(), "evicted before hello");
            // Its slot is already counted as closing: no close handshake.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.send(close_message(code))).await;
        }
        End::Gone => tracing::debug!(parent: &span, "disconnected"),
    }
}

/// Why the wire's token was cancelled: a close asked for (the directory
/// changed the user's access), or a slow reader.
fn stop_code(wire: &Wire) -> CloseCode {
    wire.close_requested()
        .and_then(|code| CloseCode::ALL.into_iter().find(|c| c.code() == code))
        .unwrap_or(CloseCode::SlowConsumer)
}

/// Sends the close frame after what was sent before (replies such as the
/// error that explains the close), then waits for the peer's.
async fn close(ws: &mut Socket, code: CloseCode) {
    let _ = ws.send(close_message(code)).await;
    // Wait briefly for the peer's close so the socket ends cleanly.
    while let Some(Ok(message)) = ws.next().await {
        if matches!(message, Message::Close(_)) {
            break;
        }
    }
}

/// After an oversized frame: what was sent and the close frame, then our
/// half of the TCP connection shut, then the peer's remaining bytes read
/// and dropped (bounded) until it closes, so it receives the close frame
/// instead of a reset. The frame parser is lost in the middle of the big
/// frame, hence raw reads.
async fn close_and_drain(ws: &mut Socket, code: CloseCode) {
    let sent = tokio::time::timeout(CLOSE_TIMEOUT, ws.send(close_message(code))).await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    let io = ws.get_mut();
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let _ = io.shutdown().await;
        let mut buffer = vec![0u8; 16 * 1024];
        let mut left = DRAIN_MAX_BYTES;
        while left > 0 {
            match io.read_raw(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

fn close_message(code: CloseCode) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.code().into(),
        reason: code.reason().into(),
    }))
}

/// When a token expiring at `exp_secs` runs out, at most a year away (a
/// signed token with an absurd `exp` must not overflow the clock).
fn deadline_of(exp_secs: u64) -> Instant {
    const MAX: Duration = Duration::from_secs(365 * 24 * 3600);
    let left = Duration::from_secs(exp_secs.saturating_sub(crate::auth::now_secs())).min(MAX);
    Instant::now() + left
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    /// The structures every connection holds for its whole life stay
    /// within the per-connection budget of ARCHITECTURE.md ("Memory per
    /// connection"); the sizes are printed for that table
    /// (`cargo test --lib per_connection -- --nocapture`).
    #[test]
    fn per_connection_structures_stay_within_their_budget() {
        let sizes = [
            // tungstenite's state and `WireIo`, inline in the task.
            ("Socket", size_of::<super::Socket>(), 360),
            // Its heap part: the Arc's counts and the `Wire`.
            ("Wire", size_of::<crate::wire::Wire>() + 16, 192),
            // Inline in the task.
            ("Session", size_of::<super::Session>(), 352),
            // Per room joined, in the room's member map.
            ("Outbound", size_of::<super::Outbound>(), 16),
        ];
        for (name, size, budget) in sizes {
            println!("{name}: {size} bytes (budget {budget})");
            assert!(size <= budget, "{name}: {size} bytes, budget {budget}");
        }
    }
}
