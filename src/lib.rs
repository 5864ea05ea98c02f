//! préau: a real-time hub for schools. See ARCHITECTURE.md for the map.

// Server paths never unwrap: a panic on client input is a bug.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod admin;
pub mod auth;
pub mod bus;
pub mod client;
pub mod config;
mod connection;
pub mod forum;
mod gateway;
pub mod hub;
pub mod metrics;
pub mod moderation;
pub mod notes;
pub mod outbound;
pub mod privacy;
pub mod protocol;
pub mod ratelimit;
mod retention;
pub mod room;
mod session;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{AuthError, Keyring};
use crate::config::{Config, ConfigError};
use crate::hub::{Clock, Hub};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Bus(#[from] bus::BusError),
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    hub: Arc<Hub>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl Server {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The hub, for tests that inspect state (e.g. stored bytes).
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Starts a graceful shutdown: stop accepting, close connections with
    /// `1001`, flush storage.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until the server stopped (after [`Server::shutdown`] or a failure).
    pub async fn wait(self) -> Result<(), ServerError> {
        self.task.await?
    }
}

/// Starts a server with the system clock.
pub async fn start(config: Config) -> Result<Server, ServerError> {
    start_with_clock(config, hub::system_clock()).await
}

/// Starts a server: checks the configuration, loads the secret, opens the
/// store, binds, and serves in the background.
pub async fn start_with_clock(config: Config, clock: Clock) -> Result<Server, ServerError> {
    config.validate()?;
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let (keyring, store) = {
        let config = config.clone();
        let metrics = metrics.clone();
        tokio::task::spawn_blocking(move || {
            let keyring = Keyring::load(&config.data, config.secret.as_deref())?;
            let store = Store::open(&config.data, config.write_queue, move |stats| {
                metrics.commit_seconds.record(stats.seconds);
                metrics.commit_batch.record(stats.jobs as f64);
            })?;
            Ok::<_, ServerError>((keyring, store))
        })
        .await??
    };
    let store = Arc::new(store);
    let hub = Arc::new(Hub::new(
        config.clone(),
        keyring,
        store.clone(),
        metrics,
        clock,
    ));
    let listener = bind(config.listen).map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(ServerError::Serve)?;
    // Small frames must leave at once: Nagle's algorithm plus delayed ACKs
    // would add ~40 ms to every reply and event.
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::warn!(error = %err, "cannot set TCP_NODELAY");
        }
    });
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let gateway = gateway::Gateway {
        hub: hub.clone(),
        slots: Arc::new(Semaphore::new(config.max_connections)),
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
    };
    let app = gateway::router(gateway).into_make_service_with_connect_info::<SocketAddr>();
    let bus_task = match &config.redis {
        Some(url) => {
            let bus = bus::RedisBus::new(bus::BusConfig {
                url: url.clone(),
                node: config.node_id.clone(),
                advertise: config
                    .advertise
                    .clone()
                    .unwrap_or_else(|| format!("ws://{addr}/ws")),
                stream_max: config.stream_max,
                heartbeat: config.heartbeat,
                node_timeout: config.node_timeout,
                resync_window: config.resync_window,
            })?;
            hub.set_bus(bus.clone());
            Some(tokio::spawn(bus.run(hub.clone(), shutdown.clone())))
        }
        None => None,
    };
    tokio::spawn(retention::run(hub.clone(), shutdown.clone()));
    tokio::spawn(hub::sweep_loop(hub.clone(), shutdown.clone()));
    tracing::info!(%addr, node = %config.node_id, data = %config.data.display(), "listening");
    let task = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .await;
            // Also reached if serving failed: make every connection close.
            shutdown.cancel();
            tracker.close();
            if tokio::time::timeout(config.shutdown_grace, tracker.wait())
                .await
                .is_err()
            {
                tracing::warn!("connections still open after the shutdown grace period");
            }
            if let Some(bus_task) = bus_task {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), bus_task).await;
            }
            tokio::task::spawn_blocking(move || store.shutdown()).await??;
            tracing::info!("stopped; storage flushed");
            served.map_err(ServerError::Serve)
        })
    };
    Ok(Server {
        addr,
        shutdown,
        hub,
        task,
    })
}

/// Pending connections the kernel queues for us. tokio's `bind` uses 128,
/// which overflows in a reconnect storm (clients then wait for the 1 s SYN
/// retry); the kernel caps this at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Runs until `signal` completes, then shuts down gracefully.
pub async fn run(config: Config, signal: impl Future<Output = ()>) -> Result<(), ServerError> {
    let server = start(config).await?;
    tokio::select! {
        () = signal => server.shutdown(),
        () = server.shutdown.clone().cancelled_owned() => {}
    }
    server.wait().await
}
