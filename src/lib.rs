//! préau: a real-time hub for schools. See ARCHITECTURE.md for the map.

// Server paths never unwrap: a panic on client input is a bug.
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

mod admin;
mod admission;
pub mod auth;
pub mod bus;
pub mod calendar;
pub mod client;
pub mod config;
mod connection;
pub mod directory;
pub mod effect;
pub mod files;
mod gateway;
pub mod hub;
pub mod ids;
pub mod kinds;
mod listener;
pub mod metrics;
pub mod moderation;
pub mod notes;
pub mod oidc;
mod origin;
pub mod outbound;
pub mod privacy;
pub mod protocol;
pub mod quiet;
pub mod ratelimit;
mod retention;
pub mod room;
pub mod session;
pub mod store;
mod transfer;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{Admission, Limits};
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
    Oidc(#[from] oidc::OidcError),
    #[error(transparent)]
    Files(#[from] files::FilesError),
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
    #[error("room kinds: {0}")]
    Kinds(#[from] session::kind::RegistryError),
    #[error(transparent)]
    Directory(#[from] directory::DirectoryError),
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    hub: Arc<Hub>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl Server {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics` is served (`metrics_listen`), if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
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
    raise_file_limit(&config);
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let (keyring, store, directory) = {
        let config = config.clone();
        let metrics = metrics.clone();
        tokio::task::spawn_blocking(move || {
            // A mistyped folder would otherwise serve 404s in silence.
            if let Some(dir) = &config.web_dir {
                if !dir.join("index.html").is_file() {
                    return Err(ConfigError::Invalid {
                        setting: "web_dir",
                        message: format!(
                            "{} holds no index.html (build the web app with `npm run build` in clients/, or leave web_dir unset)",
                            dir.display()
                        ),
                    }
                    .into());
                }
            }
            let keyring = Keyring::load(&config.data, config.secret.as_deref())?;
            let options = crate::store::StoreOptions {
                queue: config.write_queue,
                cache_capacity: config.cache_capacity,
                retry_writes: config.redis.is_some(),
            };
            let store = Store::open(&config.data, options, move |stats| {
                metrics.commit_seconds.record(stats.seconds);
                metrics.commit_batch.record(stats.jobs as f64);
            })?;
            let directory = crate::directory::Directory::open(&store)?;
            Ok::<_, ServerError>((keyring, store, directory))
        })
        .await??
    };
    let store = Arc::new(store);
    let files = files::Files::open(&config.files, &config.data)?;
    if config.redis.is_some() && config.files.s3.is_none() {
        // Each node would keep its own files: a hand-in sent through one
        // node would be 404 on the others.
        tracing::warn!(
            "several nodes (redis) with the local file store: files are seen only by the node that took them; set [files.s3] (README, \"Files\")"
        );
    }
    // The one registration list of room kinds (`src/kinds/mod.rs`).
    let handlers = Arc::new(session::Handlers::new(kinds::ALL)?);
    let listener = bind(config.listen).map_err(|source| ServerError::Bind {
        addr: config.listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(ServerError::Serve)?;
    // Cluster mode: Redis orders the posts; otherwise this node does.
    let cluster = match &config.redis {
        Some(url) => Some(hub::Cluster::new(bus::RedisBus::new(bus::BusConfig {
            url: url.clone(),
            node: config.node_id.clone(),
            idempotency_window: config.idempotency_window,
            advertise: config
                .advertise
                .clone()
                .unwrap_or_else(|| format!("ws://{addr}/ws")),
            stream_max: config.stream_max,
            heartbeat: config.heartbeat,
            node_timeout: config.node_timeout,
            resync_window: config.resync_window,
        })?)),
        None => None,
    };
    let sequencer: Arc<dyn hub::Sequencer> = match &cluster {
        Some(cluster) => Arc::new(hub::ClusterSequencer(cluster.clone())),
        None => Arc::new(hub::Local),
    };
    let hub = Arc::new(Hub::new(
        config.clone(),
        keyring,
        store.clone(),
        metrics,
        clock,
        handlers.kinds().clone(),
        Arc::new(directory),
        files,
        sequencer,
    ));
    let metrics_listener = match config.metrics_listen {
        Some(metrics_addr) => Some(bind(metrics_addr).map_err(|source| ServerError::Bind {
            addr: metrics_addr,
            source,
        })?),
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(listener) => Some(listener.local_addr().map_err(ServerError::Serve)?),
        None => None,
    };
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let admission = Arc::new(Admission::new(
        Limits {
            sessions: config.max_connections,
            unauthenticated: config.max_unauthenticated,
            per_address: config.max_unauthenticated_per_address,
        },
        Some(hub.metrics.clone()),
    ));
    let sso = match &config.oidc {
        Some(oidc) => Some(oidc::Sso::new(oidc.clone(), hub.keyring.clone())?),
        None => None,
    };
    let gateway = gateway::Gateway {
        hub: hub.clone(),
        handlers,
        admission: admission.clone(),
        origins: Arc::new(origin::OriginPolicy::new(&config.allowed_origins)),
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
        sso,
    };
    let app = gateway::router(gateway);
    if let Some(listener) = metrics_listener {
        // A scraper or two: a small budget of its own, no sessions.
        let admission = Arc::new(Admission::new(
            Limits {
                sessions: 0,
                unauthenticated: METRICS_CONNECTIONS,
                per_address: METRICS_CONNECTIONS,
            },
            None,
        ));
        tokio::spawn(listener::run(listener::Serve {
            listener,
            app: gateway::metrics_router(hub.clone()),
            admission,
            header_timeout: config.header_timeout,
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
            metrics: None,
        }));
    }
    let bus_task = cluster.map(|cluster| {
        let bus = cluster.bus().clone();
        let node = hub::ClusterNode {
            hub: hub.clone(),
            cluster,
        };
        tokio::spawn(bus.run(node, shutdown.clone()))
    });
    tokio::spawn(retention::run(hub.clone(), shutdown.clone()));
    tokio::spawn(hub::sweep_loop(hub.clone(), shutdown.clone()));
    tokio::spawn(transfer::sweep_loop(hub.clone(), shutdown.clone()));
    tokio::spawn(hub::due_loop(hub.clone(), shutdown.clone()));
    tracing::info!(%addr, metrics = ?metrics_addr, node = %config.node_id, data = %config.data.display(), web = ?config.web_dir, "listening");
    let task = {
        let shutdown = shutdown.clone();
        let hub_metrics = hub.metrics.clone();
        tokio::spawn(async move {
            listener::run(listener::Serve {
                listener,
                app,
                admission,
                header_timeout: config.header_timeout,
                shutdown: shutdown.clone(),
                tracker: tracker.clone(),
                metrics: Some(hub_metrics),
            })
            .await;
            // Stopped accepting; every connection task now closes.
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
            Ok(())
        })
    };
    Ok(Server {
        addr,
        metrics_addr,
        shutdown,
        hub,
        task,
    })
}

/// Connections the metrics listener holds at once.
const METRICS_CONNECTIONS: usize = 16;
/// File descriptors besides connections: the store's files, listeners,
/// Redis, logs.
const OTHER_FILES: u64 = 256;

/// Raises the soft limit on open files to what the budgets can use (the
/// usual soft limit, 1024, is far below `max_connections`), or says that
/// the hard limit is too low: past it, `accept` fails for everyone.
fn raise_file_limit(config: &Config) {
    let need = (config.max_connections as u64)
        .saturating_add(2 * config.max_unauthenticated as u64)
        .saturating_add(2 * METRICS_CONNECTIONS as u64)
        .saturating_add(OTHER_FILES);
    match rlimit::increase_nofile_limit(need) {
        Ok(limit) if limit < need => tracing::warn!(
            limit,
            need,
            "the open file limit is below max_connections + 2 x max_unauthenticated: \
             raise it (LimitNOFILE=) or lower those settings"
        ),
        Ok(_) => {}
        Err(err) => tracing::warn!(error = %err, "cannot read or raise the open file limit"),
    }
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
