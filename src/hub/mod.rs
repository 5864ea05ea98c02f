//! The hub: loaded rooms, connected users, the post pipeline (order →
//! store → ack and fan-out), and, in cluster mode, what arrives from the bus.

mod cluster;
mod load;
mod post;
mod sequencer;

pub use cluster::{Cluster, ClusterNode, ClusterSequencer};
pub use sequencer::{Local, Post, Sequencer};

use load::redact_stored;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::auth::{Claims, Keyring};
use crate::bus::{BusError, Ordered, Published, RedisBus};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::moderation::Moderation;
use crate::outbound::{ConnId, Outbound};
use crate::protocol::{self, Body, ErrorCode, Event, PostOk, Role, UserInfo};
use crate::ratelimit::TokenBucket;
use crate::room::{edit_tombstone, Chore, ChoreContext, Effect, Kinds};
use crate::room::{Accepted, Keyed, PendingTombstone, Queued, Room, RoomName};
use crate::store::{Job, PostKey, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl HubError {
    pub fn code(&self) -> ErrorCode {
        match self {
            HubError::Store(StoreError::Full) => ErrorCode::Overloaded,
            HubError::Store(_) => ErrorCode::StorageError,
            HubError::Bus(_) => ErrorCode::Unavailable,
            HubError::Join(_) => ErrorCode::Internal,
        }
    }
}

/// Wall-clock milliseconds; a function so tests can inject a clock.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    })
}

type RoomCell = Arc<OnceCell<Arc<Room>>>;

struct UserEntry {
    /// The user's open sessions on this node (to close them when the
    /// directory changes their access).
    connections: Vec<Outbound>,
    bucket: TokenBucket,
    /// For requests other than posts (joins, history, reports, ...).
    requests: TokenBucket,
}

/// Who gets the ack of a post once it is durable.
#[derive(Clone)]
pub struct Waiter {
    out: Outbound,
    id: Option<u32>,
    /// When the post was sent (stale waiters are answered by the sweep).
    since: Instant,
}

impl Waiter {
    /// The post's ack, for an event already stored.
    fn ack(&self, room: &Room, offset: u64, ts: u64) {
        self.out.send(protocol::ok(
            self.id,
            &PostOk {
                room: room.name().to_string(),
                epoch: room.epoch().to_owned(),
                offset,
                ts,
            },
        ));
    }
}

pub struct Hub {
    pub config: Arc<Config>,
    pub keyring: Keyring,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    /// The room kinds this server runs (`src/kinds/mod.rs`).
    pub kinds: Kinds,
    /// The school directory (who exists, who may be written to).
    pub directory: Arc<crate::directory::Directory>,
    /// Where files' bytes are (local folder or S3).
    pub files: crate::files::Files,
    /// Who orders posts: this node ([`Local`]) or the cluster.
    sequencer: Arc<dyn Sequencer>,
    rooms: DashMap<String, RoomCell>,
    users: DashMap<String, UserEntry>,
    next_conn: AtomicU64,
    /// Where note compactions run (blocking pool); `None` outside a
    /// runtime, where they run inline.
    runtime: Option<tokio::runtime::Handle>,
    /// What kinds share node-wide (a budget, a cache), one value per
    /// type: see [`Hub::shared`].
    shared: DashMap<std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>>,
}

impl Hub {
    /// Called once, by `lib::run`: every part is one the hub shares.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<Config>,
        keyring: Keyring,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        clock: Clock,
        kinds: Kinds,
        directory: Arc<crate::directory::Directory>,
        files: crate::files::Files,
        sequencer: Arc<dyn Sequencer>,
    ) -> Hub {
        Hub {
            config,
            keyring,
            store,
            metrics,
            clock,
            kinds,
            directory,
            files,
            sequencer,
            rooms: DashMap::new(),
            users: DashMap::new(),
            next_conn: AtomicU64::new(1),
            runtime: tokio::runtime::Handle::try_current().ok(),
            shared: DashMap::new(),
        }
    }

    /// Who orders this hub's posts (single node or cluster).
    pub fn sequencer(&self) -> &dyn Sequencer {
        self.sequencer.as_ref()
    }

    /// Tells other nodes about a local presence change (cluster mode).
    pub fn announce_presence(&self, room: &RoomName, user: &UserInfo, present: bool) {
        self.sequencer
            .announce_presence(room.as_str(), user, present);
    }

    /// The node-wide value of type `T` a kind keeps (made with `init` on
    /// first use): kinds own their shared state without the hub naming it.
    pub fn shared<T: std::any::Any + Send + Sync>(
        &self,
        init: impl FnOnce(&Config) -> T,
    ) -> Arc<T> {
        let id = std::any::TypeId::of::<T>();
        let known = self.shared.get(&id).map(|v| v.value().clone());
        if let Some(value) = known.and_then(|v| v.downcast::<T>().ok()) {
            return value;
        }
        let fresh = Arc::new(init(&self.config));
        let stored = self
            .shared
            .entry(id)
            .or_insert_with(|| fresh.clone())
            .value()
            .clone();
        // Keyed by its own type: the stored value is a `T`.
        stored.downcast::<T>().unwrap_or(fresh)
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// The loaded room, loading it from the store on first use. In cluster
    /// mode a room this node has never stored takes its epoch from Redis,
    /// and catches up with what other nodes stored.
    pub async fn room(self: &Arc<Self>, name: &RoomName) -> Result<Arc<Room>, HubError> {
        let cell = self
            .rooms
            .entry(name.as_str().to_owned())
            .or_default()
            .value()
            .clone();
        let mut fresh = false;
        let loaded = cell
            .get_or_try_init(|| async {
                fresh = true;
                self.load_room(name).await
            })
            .await;
        let room = match loaded {
            Ok(room) => room.clone(),
            Err(err) => {
                // No empty cell is left behind: the next caller tries again.
                self.rooms.remove_if(name.as_str(), |_, c| {
                    Arc::ptr_eq(c, &cell) && c.get().is_none()
                });
                return Err(err);
            }
        };
        if fresh {
            self.sequencer.loaded(self, &room);
        }
        Ok(room)
    }

    /// Whether the room is loaded or stored here, or (cluster mode) known
    /// to Redis, i.e. created on another node. Never creates it.
    pub async fn room_exists(&self, name: &RoomName) -> Result<bool, HubError> {
        if self.loaded_room(name.as_str()).is_some() {
            return Ok(true);
        }
        let store = self.store.clone();
        let key = name.as_str().to_owned();
        if tokio::task::spawn_blocking(move || store.room_meta(&key))
            .await??
            .is_some()
        {
            return Ok(true);
        }
        self.sequencer.known_elsewhere(name.as_str()).await
    }

    /// Forgets a room that has no member and no write in flight. Work its
    /// kind wants done first (a note with updates since its snapshot is
    /// compacted: its last editor left) runs before, then the room is
    /// released again.
    pub fn release(self: &Arc<Self>, room: &Arc<Room>) {
        if room.member_count() == 0 {
            if let Some(chore) = room.before_unload() {
                let Some(runtime) = self.runtime.clone() else {
                    post::run_chore(&self.store, &self.metrics, room, chore);
                    return;
                };
                let hub = self.clone();
                let room = room.clone();
                // A handle, not `tokio::spawn`: this also runs from a
                // session's `Drop`, possibly while the runtime shuts down.
                runtime.spawn(async move {
                    let (store, metrics, done) =
                        (hub.store.clone(), hub.metrics.clone(), room.clone());
                    let ran = tokio::task::spawn_blocking(move || {
                        post::run_chore(&store, &metrics, &done, chore)
                    })
                    .await;
                    if let Err(err) = ran {
                        tracing::error!(room = %room.name(), error = %err, "unload chore failed");
                    }
                    // Released only once the work is done: a failing
                    // chore is retried by the next sweep, not in a loop.
                    if room.before_unload().is_none() && room.member_count() == 0 {
                        hub.release(&room);
                    }
                });
                return;
            }
        }
        if !room.close_if_idle() {
            return;
        }
        let removed = self.rooms.remove_if(room.name().as_str(), |_, cell| {
            cell.get().is_some_and(|r| Arc::ptr_eq(r, room))
        });
        if removed.is_some() {
            self.metrics.rooms_loaded.decrement(1.0);
            room.unloaded(&self.metrics);
        }
    }

    /// The loaded room by name, if loaded (for the retention task).
    pub fn loaded_room(&self, name: &str) -> Option<Arc<Room>> {
        self.rooms.get(name).and_then(|cell| cell.get().cloned())
    }

    fn loaded_rooms(&self) -> Vec<Arc<Room>> {
        self.rooms
            .iter()
            .filter_map(|cell| cell.get().cloned())
            .collect()
    }

    pub fn user_connected(&self, user: &str, out: &Outbound) {
        let now = Instant::now();
        self.users
            .entry(user.to_owned())
            .or_insert_with(|| UserEntry {
                connections: Vec::new(),
                bucket: TokenBucket::new(self.config.rate_per_sec, self.config.rate_burst, now),
                requests: TokenBucket::new(
                    self.config.request_rate_per_sec,
                    self.config.request_burst,
                    now,
                ),
            })
            .connections
            .push(out.clone());
    }

    /// The user's entry (and its rate-limit bucket) outlives their last
    /// connection until [`Hub::sweep`]: reconnecting must not refill it.
    pub fn user_disconnected(&self, user: &str, conn: ConnId) {
        if let Some(mut entry) = self.users.get_mut(user) {
            entry.connections.retain(|out| out.conn() != conn);
        }
    }

    /// Closes the sessions of `users` on this node with `code` (all
    /// sessions when `users` is `None`, node tokens' aside); returns how
    /// many.
    pub fn close_sessions(&self, users: Option<&[String]>, code: protocol::CloseCode) -> usize {
        let mut closed = 0;
        let mut close = |entry: &UserEntry| {
            for out in &entry.connections {
                out.close(code.code());
                closed += 1;
            }
        };
        match users {
            Some(users) => {
                for user in users {
                    if let Some(entry) = self.users.get(user) {
                        close(&entry);
                    }
                }
            }
            None => {
                for entry in self.users.iter() {
                    if !entry.key().starts_with(crate::auth::NODE_USER_PREFIX) {
                        close(entry.value());
                    }
                }
            }
        }
        closed
    }

    /// Installs a directory version another node applied (cluster mode),
    /// then closes the sessions whose access it changed.
    pub async fn install_directory(self: &Arc<Self>, bytes: Vec<u8>) {
        let hub = self.clone();
        let installed =
            tokio::task::spawn_blocking(move || hub.directory.install(&hub.store, &bytes)).await;
        match installed {
            Ok(Ok(Some((was_active, changed)))) => {
                let users = was_active.then_some(changed.as_slice());
                let closed = self.close_sessions(users, protocol::CloseCode::DirectoryChanged);
                tracing::info!(
                    version = self.directory.current().version(),
                    access_changed = changed.len(),
                    sessions_closed = closed,
                    "directory taken from another node"
                );
            }
            Ok(Ok(None)) => {}
            Ok(Err(err)) => tracing::error!(error = %err, "cannot install the directory"),
            Err(err) => tracing::error!(error = %err, "cannot install the directory"),
        }
    }

    /// Applies a directory sync (`directory::Directory::apply`), then closes
    /// the sessions whose access it changed: every session at the first
    /// sync (tokens alone decided until then).
    pub async fn sync_directory(
        self: &Arc<Self>,
        sync: crate::directory::Sync,
    ) -> Result<crate::directory::Applied, crate::directory::DirectoryError> {
        let hub = self.clone();
        let (was_active, applied) = tokio::task::spawn_blocking(move || {
            let was_active = hub.directory.current().active();
            hub.directory
                .apply(&hub.store, sync)
                .map(|applied| (was_active, applied))
        })
        .await
        .map_err(|e| {
            crate::directory::DirectoryError::Store(crate::store::StoreError::Sled(e.to_string()))
        })??;
        if applied.applied {
            // The other nodes take it from Redis (cluster mode). It is
            // applied here already: a failure to share is retried at the
            // next (re)subscription, which compares versions.
            if let Some(bytes) = self.directory.encoded() {
                if let Err(err) = self.sequencer.share_directory(applied.version, bytes).await {
                    tracing::warn!(error = %err, "directory not shared with the other nodes yet");
                }
            }
            let users = was_active.then_some(applied.changed.as_slice());
            let closed = self.close_sessions(users, protocol::CloseCode::DirectoryChanged);
            tracing::info!(
                version = applied.version,
                people = applied.people,
                classes = applied.classes,
                access_changed = applied.access_changed,
                sessions_closed = closed,
                "directory synced"
            );
        }
        Ok(applied)
    }

    /// Forgets users with no connection and a full bucket, and unloads rooms
    /// left idle (e.g. the last member left while its own post was being
    /// written, so `release` could not unload it then).
    pub fn sweep(self: &Arc<Self>) {
        let now = Instant::now();
        self.sequencer.expire_waiters(now, WAITER_TIMEOUT);
        self.users.retain(|_, entry| {
            !entry.connections.is_empty()
                || !entry.bucket.is_full(now)
                || !entry.requests.is_full(now)
        });
        // Collect first: `release` takes the map's write lock.
        for room in self.loaded_rooms() {
            room.expire_waiters(WAITER_TIMEOUT, |id| {
                protocol::error(id, ErrorCode::Unavailable, NOT_STORED_IN_TIME)
            });
            if room.has_pending_tombstones() {
                let (store, pending) = (self.store.clone(), room.clone());
                if let Some(runtime) = &self.runtime {
                    drop(
                        runtime.spawn_blocking(move || {
                            post::write_pending_tombstones(&store, &pending)
                        }),
                    );
                }
            }
            if room.member_count() == 0 {
                self.release(&room);
            }
        }
    }

    /// Takes a token from the user's request bucket (joins, history, ...).
    pub fn request_limit(&self, user: &str) -> Result<(), std::time::Duration> {
        match self.users.get_mut(user) {
            Some(mut entry) => entry.requests.take(Instant::now()),
            None => Ok(()),
        }
    }

    /// Takes a token from the user's bucket (shared by all their connections).
    pub fn rate_limit(&self, user: &str) -> Result<(), std::time::Duration> {
        match self.users.get_mut(user) {
            Some(mut entry) => entry.bucket.take(Instant::now()),
            None => Ok(()),
        }
    }
}

/// How long a peer may take to connect or answer one history page.
const PEER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// A post waiting for its ack longer than this (in cluster mode: ordered,
/// but not stored here) is answered `unavailable` by the sweep.
const WAITER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// What a poster whose ack timed out is told.
const NOT_STORED_IN_TIME: &str = "not stored on this node in time: check the room's history before posting again (or retry with the same key)";

/// How often rooms of kinds that schedule events are asked for those due
/// (a scheduled publication reaches readers within this of its time).
const DUE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl Hub {
    /// Posts what the loaded rooms' kinds have due now (a diary entry
    /// scheduled for the start of a lesson), each as its author's, with
    /// its idempotency key: every node holding the room does the same, and
    /// the room stores it once.
    pub fn post_due(self: &Arc<Self>) {
        let now = (self.clock)();
        for room in self.loaded_rooms() {
            if !room.name().kind().schedules() {
                continue;
            }
            for due in room.take_due(now) {
                let (hub, room) = (self.clone(), room.clone());
                tokio::spawn(async move {
                    let posted = hub
                        .post_keyed(&room, &due.from, None, due.body, Some(&due.key))
                        .await;
                    if let Err(err) = posted {
                        // The state asks again later (see the kind's `take_due`).
                        tracing::warn!(room = %room.name(), key = %due.key, error = %err, "scheduled event not posted");
                    }
                });
            }
        }
    }
}

/// Posts due events every [`DUE_INTERVAL`] until shutdown.
pub async fn due_loop(hub: Arc<Hub>, shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(DUE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => hub.post_due(),
        }
    }
}

/// How often [`Hub::sweep`] runs.
const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Sweeps the hub every [`SWEEP_INTERVAL`] until shutdown.
pub async fn sweep_loop(hub: Arc<Hub>, shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => hub.sweep(),
        }
    }
}
