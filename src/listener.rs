//! The accept loop. Every TCP connection takes an admission slot before
//! hyper reads a byte of it (`admission.rs`), so connections that never
//! authenticate are bounded in number; hyper closes those that send no
//! complete request head within `header_timeout`, at the start and between
//! keep-alive requests. The slot rides along in the request's extensions
//! ([`ConnSlot`]) so a WebSocket upgrade can take it with the socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::admission::{Admission, Slot};
use crate::metrics::Metrics;

/// Pause after an accept error that is not about one connection (e.g. out
/// of file descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// A connection's admission slot, until a WebSocket upgrade takes it.
#[derive(Clone)]
pub struct ConnSlot(Arc<Mutex<Option<Slot>>>);

impl ConnSlot {
    pub fn take(&self) -> Option<Slot> {
        self.0.lock().take()
    }
}

pub struct Serve {
    pub listener: TcpListener,
    pub app: Router,
    pub admission: Arc<Admission>,
    pub header_timeout: Duration,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    /// The app's metrics (`None` on the metrics listener itself).
    pub metrics: Option<Arc<Metrics>>,
}

/// Accepts until `shutdown`; each connection is served on its own task,
/// tracked by `tracker`.
pub async fn run(serve: Serve) {
    let Serve {
        listener,
        app,
        admission,
        header_timeout,
        shutdown,
        tracker,
        metrics,
    } = serve;
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) if is_connection_error(&err) => continue,
            Err(err) => {
                tracing::warn!(error = %err, "accept error");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        // Refused: dropping the stream closes it at once.
        let Ok(slot) = admission.admit(peer.ip()) else {
            tracing::debug!(%peer, "connection dropped: unauthenticated budget saturated");
            continue;
        };
        // Small frames must leave at once: Nagle's algorithm plus delayed
        // ACKs would add ~40 ms to every reply and event.
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::warn!(error = %err, "cannot set TCP_NODELAY");
        }
        tracker.spawn(connection(
            http.clone(),
            tcp,
            peer,
            slot,
            app.clone(),
            shutdown.clone(),
            metrics.clone(),
        ));
        // Let evicted connections close before accepting more: in a flood
        // the loop would otherwise outrun them into the closing cap.
        tokio::task::yield_now().await;
    }
}

async fn connection(
    http: http1::Builder,
    tcp: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    app: Router,
    shutdown: CancellationToken,
    metrics: Option<Arc<Metrics>>,
) {
    let evicted = slot.evicted();
    let cell = ConnSlot(Arc::new(Mutex::new(Some(slot))));
    let service = {
        let cell = cell.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(cell.clone());
            app.clone().oneshot(request)
        })
    };
    let conn = http
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        served = conn.as_mut() => {
            if let Err(err) = served {
                if err.is_timeout() {
                    if let Some(metrics) = &metrics {
                        metrics.header_timeouts.increment(1);
                    }
                }
                tracing::debug!(%peer, error = %err, "http connection ended");
            }
        }
        // Dropping the connection closes the socket now.
        () = evicted.cancelled() => tracing::debug!(%peer, "http connection evicted"),
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Errors that concern one connection only (it was reset before we
/// accepted it): go on accepting at once.
fn is_connection_error(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
