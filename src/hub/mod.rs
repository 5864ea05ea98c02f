//! The hub: loaded rooms, connected users, the post pipeline (order →
//! store → ack and fan-out), and, in cluster mode, what arrives from the bus.

mod cluster;
mod load;
mod post;

use load::{compact_note, redact_stored};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::auth::{Claims, Keyring};
use crate::bus::{BusError, Ordered, Published, RedisBus};
use crate::config::Config;
use crate::forum::Forum;
use crate::metrics::Metrics;
use crate::moderation::Moderation;
use crate::notes::NoteDoc;
use crate::outbound::{ConnId, Outbound};
use crate::protocol::{self, Body, ErrorCode, Event, PostOk, Role, UserInfo};
use crate::protocol::{ModAction, NoteVersionInfo};
use crate::ratelimit::TokenBucket;
use crate::room::{edit_tombstone, Effect, Kind, NewVersion, NoteState};
use crate::room::{Accepted, Keyed, PendingTombstone, Queued, Room, RoomName};
use crate::store::{Job, Store, StoreError};
use crate::store::{NoteSnapshot, PostKey, StoredVersion};

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
    connections: usize,
    bucket: TokenBucket,
    /// For requests other than posts (joins, history, reports, ...).
    requests: TokenBucket,
}

/// Who gets the ack of a post once it is durable.
#[derive(Clone)]
struct Waiter {
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

type Waiters = Arc<DashMap<u64, Waiter>>;

pub struct Hub {
    pub config: Arc<Config>,
    pub keyring: Keyring,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    bus: OnceLock<Arc<RedisBus>>,
    rooms: DashMap<String, RoomCell>,
    users: DashMap<String, UserEntry>,
    /// Posts sent to the bus and not yet stored here, by post id.
    waiters: Waiters,
    next_pid: AtomicU64,
    next_conn: AtomicU64,
    /// Where note compactions run (blocking pool); `None` outside a
    /// runtime, where they run inline.
    runtime: Option<tokio::runtime::Handle>,
    /// Bytes held in note messages sent in parts, node-wide.
    pub note_parts: Arc<crate::notes::PartsBudget>,
}

impl Hub {
    pub fn new(
        config: Arc<Config>,
        keyring: Keyring,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Hub {
        let note_parts = crate::notes::PartsBudget::new(
            config
                .note_max_bytes
                .saturating_mul(crate::notes::PARTS_BUDGET_NOTES),
        );
        Hub {
            config,
            keyring,
            store,
            metrics,
            clock,
            bus: OnceLock::new(),
            rooms: DashMap::new(),
            users: DashMap::new(),
            waiters: Arc::default(),
            next_pid: AtomicU64::new(1),
            next_conn: AtomicU64::new(1),
            runtime: tokio::runtime::Handle::try_current().ok(),
            note_parts,
        }
    }

    /// Switches the hub to cluster mode (once, at start).
    pub fn set_bus(&self, bus: Arc<RedisBus>) {
        let _ = self.bus.set(bus);
    }

    pub fn bus(&self) -> Option<&Arc<RedisBus>> {
        self.bus.get()
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
        if fresh && self.bus().is_some() {
            let hub = self.clone();
            let room = room.clone();
            tokio::spawn(async move { hub.catch_up_room(room).await });
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
        match self.bus() {
            Some(bus) => Ok(bus.room_offset(name.as_str()).await?.is_some()),
            None => Ok(false),
        }
    }

    /// Forgets a room that has no member and no write in flight. A note
    /// with updates since its snapshot is compacted first (its last editor
    /// left), then released again.
    pub fn release(self: &Arc<Self>, room: &Arc<Room>) {
        if room.member_count() == 0
            && room.with_note(|n| n.since_snapshot > 0 && !n.compacting) == Some(true)
        {
            let Some(runtime) = self.runtime.clone() else {
                compact_note(&self.store, &self.metrics, room);
                return;
            };
            let hub = self.clone();
            let room = room.clone();
            // A handle, not `tokio::spawn`: this also runs from a session's
            // `Drop`, possibly while the runtime shuts down.
            runtime.spawn(async move {
                let (store, metrics, compacted) =
                    (hub.store.clone(), hub.metrics.clone(), room.clone());
                if let Err(err) =
                    tokio::task::spawn_blocking(move || compact_note(&store, &metrics, &compacted))
                        .await
                {
                    tracing::error!(room = %room.name(), error = %err, "note compaction task failed");
                }
                // Released only once compacted: a failing compaction is
                // retried by the next sweep, not in a loop here.
                let folded = room.with_note(|n| n.since_snapshot == 0) == Some(true);
                if folded && room.member_count() == 0 {
                    hub.release(&room);
                }
            });
            return;
        }
        if !room.close_if_idle() {
            return;
        }
        let removed = self.rooms.remove_if(room.name().as_str(), |_, cell| {
            cell.get().is_some_and(|r| Arc::ptr_eq(r, room))
        });
        if removed.is_some() {
            self.metrics.rooms_loaded.decrement(1.0);
            if let Some(bytes) = room.with_note(|n| n.doc.size_estimate()) {
                self.metrics.notes_loaded.decrement(1.0);
                self.metrics.note_bytes.decrement(bytes as f64);
            }
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

    pub fn user_connected(&self, user: &str) {
        let now = Instant::now();
        self.users
            .entry(user.to_owned())
            .or_insert_with(|| UserEntry {
                connections: 0,
                bucket: TokenBucket::new(self.config.rate_per_sec, self.config.rate_burst, now),
                requests: TokenBucket::new(
                    self.config.request_rate_per_sec,
                    self.config.request_burst,
                    now,
                ),
            })
            .connections += 1;
    }

    /// The user's entry (and its rate-limit bucket) outlives their last
    /// connection until [`Hub::sweep`]: reconnecting must not refill it.
    pub fn user_disconnected(&self, user: &str) {
        if let Some(mut entry) = self.users.get_mut(user) {
            entry.connections = entry.connections.saturating_sub(1);
        }
    }

    /// Forgets users with no connection and a full bucket, and unloads rooms
    /// left idle (e.g. the last member left while its own post was being
    /// written, so `release` could not unload it then).
    pub fn sweep(self: &Arc<Self>) {
        let now = Instant::now();
        self.waiters.retain(|_, waiter| {
            if now.duration_since(waiter.since) < WAITER_TIMEOUT {
                return true;
            }
            waiter.out.send(protocol::error(
                waiter.id,
                ErrorCode::Unavailable,
                "not stored on this node in time: check the room's history before posting again (or retry with the same key)",
            ));
            false
        });
        self.users.retain(|_, entry| {
            entry.connections > 0 || !entry.bucket.is_full(now) || !entry.requests.is_full(now)
        });
        // Collect first: `release` takes the map's write lock.
        for room in self.loaded_rooms() {
            room.expire_waiters(WAITER_TIMEOUT, |id| {
                protocol::error(
                    id,
                    ErrorCode::Unavailable,
                    "not stored on this node in time: check the room's history before posting again (or retry with the same key)",
                )
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
