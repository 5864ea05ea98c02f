//! The hub: loaded rooms, connected users, and the post pipeline
//! (sequence → store → ack and fan-out).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::auth::Keyring;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::outbound::{ConnId, Outbound};
use crate::protocol::{self, Body, ErrorCode, Event, PostOk, UserInfo};
use crate::ratelimit::TokenBucket;
use crate::room::{Room, RoomName};
use crate::store::{Job, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl HubError {
    pub fn code(&self) -> ErrorCode {
        match self {
            HubError::Store(StoreError::Full) => ErrorCode::Overloaded,
            HubError::Store(_) => ErrorCode::StorageError,
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
}

pub struct Hub {
    pub config: Arc<Config>,
    pub keyring: Keyring,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    rooms: DashMap<String, RoomCell>,
    users: DashMap<String, UserEntry>,
    next_conn: AtomicU64,
}

impl Hub {
    pub fn new(
        config: Arc<Config>,
        keyring: Keyring,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Hub {
        Hub {
            config,
            keyring,
            store,
            metrics,
            clock,
            rooms: DashMap::new(),
            users: DashMap::new(),
            next_conn: AtomicU64::new(1),
        }
    }

    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// The loaded room, loading it from the store on first use.
    pub async fn room(&self, name: &RoomName) -> Result<Arc<Room>, HubError> {
        let cell = self
            .rooms
            .entry(name.as_str().to_owned())
            .or_default()
            .value()
            .clone();
        let room = cell
            .get_or_try_init(|| async {
                let store = self.store.clone();
                let now = (self.clock)();
                let key = name.as_str().to_owned();
                let (meta, bounds) = tokio::task::spawn_blocking(move || {
                    let meta = store.load_or_create_room(&key, now)?;
                    let bounds = store.bounds(&key)?;
                    Ok::<_, StoreError>((meta, bounds))
                })
                .await??;
                let last = bounds.map_or(0, |(_, last)| last).max(meta.trimmed_through);
                let floor = match bounds {
                    Some((first, _)) => first - 1,
                    None => last,
                };
                self.metrics.rooms_loaded.increment(1.0);
                Ok::<_, HubError>(Arc::new(Room::new(name.clone(), meta.epoch, floor, last)))
            })
            .await?;
        Ok(room.clone())
    }

    /// Forgets a room that has no member and no write in flight.
    pub fn release(&self, room: &Arc<Room>) {
        if !room.close_if_idle() {
            return;
        }
        let removed = self.rooms.remove_if(room.name().as_str(), |_, cell| {
            cell.get().is_some_and(|r| Arc::ptr_eq(r, room))
        });
        if removed.is_some() {
            self.metrics.rooms_loaded.decrement(1.0);
        }
    }

    /// The loaded room by name, if loaded (for the retention task).
    pub fn loaded_room(&self, name: &str) -> Option<Arc<Room>> {
        self.rooms.get(name).and_then(|cell| cell.get().cloned())
    }

    pub fn user_connected(&self, user: &str) {
        let now = Instant::now();
        self.users
            .entry(user.to_owned())
            .or_insert_with(|| UserEntry {
                connections: 0,
                bucket: TokenBucket::new(self.config.rate_per_sec, self.config.rate_burst, now),
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
    /// left with no member (e.g. the last one left while its own post was
    /// being written, so `release` could not unload it then).
    pub fn sweep(&self) {
        let now = Instant::now();
        self.users
            .retain(|_, entry| entry.connections > 0 || !entry.bucket.is_full(now));
        // Collect first: `release` takes the map's write lock.
        let idle: Vec<Arc<Room>> = self
            .rooms
            .iter()
            .filter_map(|cell| cell.get().cloned())
            .filter(|room| room.member_count() == 0)
            .collect();
        for room in idle {
            self.release(&room);
        }
    }

    /// Takes a token from the user's bucket (shared by all their connections).
    pub fn rate_limit(&self, user: &str) -> Result<(), std::time::Duration> {
        match self.users.get_mut(user) {
            Some(mut entry) => entry.bucket.take(Instant::now()),
            None => Ok(()),
        }
    }

    /// Sequences a message, queues it for storage and, once durable, acks it
    /// to `out` (with request `id`) and fans it out. Returns an error only if
    /// it could not be queued; storage errors reach `out` as an error reply.
    pub fn post(
        &self,
        room: &Arc<Room>,
        from: &UserInfo,
        out: &Outbound,
        id: Option<u32>,
        body: Body,
    ) -> Result<u64, HubError> {
        room.sequence((self.clock)(), |offset, ts| {
            let event = Event {
                room: room.name().to_string(),
                epoch: room.epoch().to_owned(),
                offset,
                ts,
                from: from.clone(),
                body,
            };
            let frame = protocol::event(&event);
            let done_room = room.clone();
            let done_out = out.clone();
            let metrics = self.metrics.clone();
            let done_frame = frame.clone();
            self.store
                .submit(Job {
                    room: event.room,
                    offset,
                    frame,
                    done: Box::new(move |result| {
                        deliver(
                            &done_room,
                            &done_out,
                            &metrics,
                            id,
                            offset,
                            ts,
                            &done_frame,
                            result,
                        )
                    }),
                })
                .map_err(HubError::from)
        })
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

/// Runs on the store's writer thread once the event is durable (or not).
#[allow(clippy::too_many_arguments)]
fn deliver(
    room: &Room,
    poster: &Outbound,
    metrics: &Metrics,
    id: Option<u32>,
    offset: u64,
    ts: u64,
    frame: &Bytes,
    result: Result<(), StoreError>,
) {
    match result {
        Ok(()) => {
            let ack = protocol::ok(
                id,
                &PostOk {
                    room: room.name().to_string(),
                    epoch: room.epoch().to_owned(),
                    offset,
                    ts,
                },
            );
            let delivery = room.commit(offset, frame, Some((poster, ack)));
            metrics.messages_stored.increment(1);
            metrics.queue_drops.increment(delivery.refused);
        }
        Err(err) => {
            metrics.error(ErrorCode::StorageError);
            room.skip(
                poster,
                protocol::error(id, ErrorCode::StorageError, format!("not stored: {err}")),
            );
        }
    }
}
