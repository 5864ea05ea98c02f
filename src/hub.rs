//! The hub: loaded rooms, connected users, the post pipeline (order →
//! store → ack and fan-out), and, in cluster mode, what arrives from the bus.

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
use crate::room::{Accepted, Keyed, Queued, Room, RoomName};
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

    async fn load_room(&self, name: &RoomName) -> Result<Arc<Room>, HubError> {
        let key = name.as_str().to_owned();
        let store = self.store.clone();
        let existing = {
            let key = key.clone();
            tokio::task::spawn_blocking(move || store.room_meta(&key)).await??
        };
        let epoch = match (existing, self.bus()) {
            (Some(meta), _) => Some(meta.epoch),
            (None, Some(bus)) => Some(bus.ensure_room(&key, &crate::ids::new_epoch()).await?.0),
            (None, None) => None,
        };
        let store = self.store.clone();
        let now = (self.clock)();
        let kind = name.kind();
        let (meta, bounds, moderation, forum, note) = tokio::task::spawn_blocking(move || {
            let meta = store.load_or_create_room(&key, now, epoch.as_deref())?;
            let bounds = store.bounds(&key)?;
            let last = bounds.map_or(0, |(_, last)| last);
            let forum = if kind == Kind::Forum {
                rebuild_forum(&store, &key, last)?
            } else {
                Forum::default()
            };
            let moderation = load_moderation(&store, &key, last, &forum)?;
            let note = if kind == Kind::Notes {
                Some(load_note(&store, &key, last)?)
            } else {
                None
            };
            Ok::<_, StoreError>((meta, bounds, moderation, forum, note))
        })
        .await??;
        let last = bounds.map_or(0, |(_, last)| last).max(meta.trimmed_through);
        let floor = match bounds {
            Some((first, _)) => first - 1,
            None => last,
        };
        self.metrics.rooms_loaded.increment(1.0);
        let mut room = Room::new(name.clone(), meta.epoch, floor, last, moderation)
            .with_forum(forum)
            .with_presence_limit(self.config.presence_limit);
        if let Some(note) = note {
            self.metrics.notes_loaded.increment(1.0);
            self.metrics
                .note_bytes
                .increment(note.doc.size_estimate() as f64);
            room = room.with_note_state(note, self.config.note_compact_every);
        }
        Ok(Arc::new(room))
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

    /// Orders a message (here, or through the bus in cluster mode), stores
    /// it and, once durable, acks it to `out` (request `id`) and fans it out.
    /// An error means nothing was ordered, except `Bus` errors, which may
    /// come after Redis ordered it (a reply that timed out); storage errors
    /// after ordering reach `out` as an error reply.
    pub async fn post(
        self: &Arc<Self>,
        room: &Arc<Room>,
        from: &UserInfo,
        ack_to: Option<(&Outbound, Option<u32>)>,
        body: Body,
    ) -> Result<(), HubError> {
        self.post_keyed(room, from, ack_to, body, None).await
    }

    /// [`Hub::post`] with the client's idempotency key: a post already
    /// ordered with the same key by the same user in the room within
    /// `idempotency_window` is not ordered again; `out` gets its ack
    /// (once it is durable here).
    pub async fn post_keyed(
        self: &Arc<Self>,
        room: &Arc<Room>,
        from: &UserInfo,
        ack_to: Option<(&Outbound, Option<u32>)>,
        body: Body,
        key: Option<&str>,
    ) -> Result<(), HubError> {
        let waiter = ack_to.map(|(out, id)| Waiter {
            out: out.clone(),
            id,
            since: Instant::now(),
        });
        let window_ms =
            u64::try_from(self.config.idempotency_window.as_millis()).unwrap_or(u64::MAX);
        let Some(bus) = self.bus().cloned() else {
            if let Some(key) = key {
                // Stored before this room was loaded (or before a restart).
                let store = self.store.clone();
                let (name, user, post_key) =
                    (room.name().to_string(), from.id.clone(), key.to_owned());
                let since = (self.clock)().saturating_sub(window_ms);
                let known = tokio::task::spawn_blocking(move || {
                    store.find_post(&name, &user, &post_key, since)
                })
                .await??;
                if let Some(known) = known {
                    if let Some(waiter) = waiter {
                        waiter.ack(room, known.offset, known.ts);
                    }
                    return Ok(());
                }
            }
            // A room unloaded between our lookup and now is loaded again.
            let mut room = room.clone();
            loop {
                let queue = |offset, ts| {
                    let event = Event {
                        room: room.name().to_string(),
                        epoch: room.epoch().to_owned(),
                        offset,
                        ts,
                        from: from.clone(),
                        body: body.clone(),
                    };
                    let queued = Queued {
                        frame: protocol::event(&event),
                        pid: None,
                        effect: Effect::of(&event),
                    };
                    let idempotency = key.map(|k| PostKey {
                        user: from.id.clone(),
                        key: k.to_owned(),
                        ts,
                    });
                    self.submit(&room, offset, queued, waiter.clone(), idempotency)
                };
                let now = (self.clock)();
                let sequenced = match key {
                    None => room.sequence(now, queue)?.map(Keyed::New),
                    Some(key) => room.sequence_keyed(now, window_ms, (&from.id, key), queue)?,
                };
                match sequenced {
                    Some(Keyed::New(_)) => return Ok(()),
                    Some(Keyed::Known { offset, ts }) => {
                        if let Some(waiter) = waiter {
                            if !room.wait_ack(offset, &waiter.out, waiter.id) {
                                waiter.ack(&room, offset, ts);
                            }
                        }
                        return Ok(());
                    }
                    None => room = self.room(room.name()).await?,
                }
            }
        };
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed);
        if let Some(waiter) = waiter.clone() {
            self.waiters.insert(pid, waiter);
        }
        let head = room.next_offset().saturating_sub(1);
        let redacted = match &body {
            Body::Moderation {
                action: ModAction::Redact { offset, .. },
                ..
            } => Some(*offset),
            _ => None,
        };
        let idempotency = key.map(|k| (from.id.as_str(), k));
        match bus
            .publish(
                room.name(),
                room.epoch(),
                head,
                from,
                body,
                pid,
                idempotency,
            )
            .await
        {
            Ok(Published::New(event)) => {
                self.accept_reloading(room, *event, Some(pid)).await;
                if let Some(target) = redacted {
                    // The stream still holds the message as posted.
                    let mut offsets = vec![target];
                    offsets.extend(room.post_edits(target));
                    let (bus, name) = (bus.clone(), room.name().to_string());
                    tokio::spawn(async move {
                        if let Err(err) = bus.forget(&name, &offsets).await {
                            tracing::warn!(room = %name, error = %err, "cannot delete a redacted message from the stream");
                        }
                    });
                }
                Ok(())
            }
            Ok(Published::Known(offset)) => {
                self.waiters.remove(&pid);
                if let Some(waiter) = waiter {
                    self.ack_when_stored(room, offset, waiter).await;
                }
                // It may not have reached this node yet.
                self.catch_up_room(room.clone()).await;
                Ok(())
            }
            Err(err) => {
                self.waiters.remove(&pid);
                Err(err.into())
            }
        }
    }

    /// If `from` already posted to `room` with idempotency key `key` (within
    /// the window), has `out` get that post's ack (request `id`) and
    /// returns true.
    pub async fn ack_known(
        &self,
        room: &Arc<Room>,
        from: &UserInfo,
        key: &str,
        out: &Outbound,
        id: Option<u32>,
    ) -> Result<bool, HubError> {
        let waiter = Waiter {
            out: out.clone(),
            id,
            since: Instant::now(),
        };
        let offset = match self.bus() {
            Some(bus) => bus.known_post(room.name().as_str(), &from.id, key).await?,
            None => match room.known_key(&from.id, key) {
                Some((offset, _)) => Some(offset),
                None => {
                    let store = self.store.clone();
                    let (name, user, post_key) =
                        (room.name().to_string(), from.id.clone(), key.to_owned());
                    let window = u64::try_from(self.config.idempotency_window.as_millis())
                        .unwrap_or(u64::MAX);
                    let since = (self.clock)().saturating_sub(window);
                    tokio::task::spawn_blocking(move || {
                        store.find_post(&name, &user, &post_key, since)
                    })
                    .await??
                    .map(|known| known.offset)
                }
            },
        };
        let Some(offset) = offset else {
            return Ok(false);
        };
        self.ack_when_stored(room, offset, waiter).await;
        Ok(true)
    }

    /// Acks `offset` of `room` to `waiter` once stored here (now, if it
    /// already is).
    async fn ack_when_stored(&self, room: &Arc<Room>, offset: u64, waiter: Waiter) {
        if room.wait_ack(offset, &waiter.out, waiter.id) {
            return;
        }
        let store = self.store.clone();
        let name = room.name().to_string();
        let stored = tokio::task::spawn_blocking(move || store.raw_event(&name, offset)).await;
        match stored {
            Ok(Ok(Some(frame))) => {
                waiter.ack(room, offset, protocol::event_ts(&frame).unwrap_or(0));
            }
            _ => {
                waiter.out.send(protocol::error(
                    waiter.id,
                    ErrorCode::StorageError,
                    format!("offset {offset} is not stored on this node"),
                ));
            }
        }
    }

    /// Queues one event for storage; the callback acks and fans it out.
    fn submit(
        &self,
        room: &Arc<Room>,
        offset: u64,
        queued: Queued,
        waiter: Option<Waiter>,
        idempotency: Option<PostKey>,
    ) -> Result<(), StoreError> {
        let done_room = room.clone();
        let metrics = self.metrics.clone();
        let store = self.store.clone();
        let runtime = self.runtime.clone();
        let Queued { frame, effect, .. } = queued;
        let done_frame = frame.clone();
        self.store.submit(Job {
            room: room.name().to_string(),
            offset,
            frame,
            idempotency,
            done: Box::new(move |result| {
                let done = Done {
                    room: &done_room,
                    store: &store,
                    metrics: &metrics,
                    runtime: runtime.as_ref(),
                };
                done.deliver(waiter, offset, &done_frame, effect, result)
            }),
        })
    }

    /// Takes an event ordered by the bus: stores and delivers it in offset
    /// order, repairing any gap before it.
    fn accept(&self, room: &Arc<Room>, event: Event, pid: Option<u64>) -> Accepted {
        let queued = Queued {
            frame: protocol::event(&event),
            pid,
            effect: Effect::of(&event),
        };
        let waiters = self.waiters.clone();
        let accepted = room.accept(event.offset, queued, |offset, queued| {
            let pid = queued.pid;
            let waiter = pid.and_then(|pid| waiters.remove(&pid)).map(|(_, w)| w);
            self.submit(room, offset, queued, waiter.clone(), None)
                .inspect_err(|_| {
                    // Not queued: put the waiter back for the retry.
                    if let (Some(pid), Some(waiter)) = (pid, waiter) {
                        waiters.insert(pid, waiter);
                    }
                })
        });
        match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(room = %room.name(), error = %err, "cannot queue an event from the bus");
                Accepted::Gap {
                    from: room.next_offset(),
                    to: event.offset,
                }
            }
        }
    }

    /// An event from the bus (channel or stream).
    pub async fn ingest_ordered(self: &Arc<Self>, ordered: Ordered) {
        let Ok(name) = RoomName::parse(&ordered.event.room) else {
            return;
        };
        let room = match self.room(&name).await {
            Ok(room) => room,
            Err(err) => {
                tracing::warn!(room = %name, error = %err, "cannot load room for a bus event");
                return;
            }
        };
        if ordered.event.epoch != room.epoch() {
            tracing::error!(room = %name, ours = room.epoch(), theirs = %ordered.event.epoch, "epoch mismatch; event ignored");
            return;
        }
        let mine = self.bus().is_some_and(|bus| bus.is_mine(&ordered));
        let pid = mine.then_some(ordered.pid);
        self.accept_reloading(&room, ordered.event, pid).await;
    }

    /// [`Hub::accept`], loading the room again if it was unloaded meanwhile,
    /// and repairing any gap the event reveals.
    async fn accept_reloading(self: &Arc<Self>, room: &Arc<Room>, event: Event, pid: Option<u64>) {
        let mut room = room.clone();
        loop {
            match self.accept(&room, event.clone(), pid) {
                Accepted::Closed => match self.room(room.name()).await {
                    Ok(fresh) => room = fresh,
                    Err(err) => {
                        tracing::warn!(room = %room.name(), error = %err, "cannot reload room for an event");
                        return;
                    }
                },
                Accepted::Gap { from, to } => return self.spawn_repair(room, from, to),
                Accepted::Duplicate => {
                    // Stored through another path first (a peer's history
                    // carries no post id): the poster still gets its ack.
                    let waiter = pid.and_then(|pid| self.waiters.remove(&pid));
                    if let Some((_, waiter)) = waiter {
                        self.ack_when_stored(&room, event.offset, waiter).await;
                    }
                    return;
                }
                Accepted::Queued => return,
            }
        }
    }

    fn spawn_repair(self: &Arc<Self>, room: Arc<Room>, from: u64, to: u64) {
        if !room.start_repair() {
            return;
        }
        let hub = self.clone();
        tokio::spawn(async move {
            // Peers may not be known yet (a node that just started hears
            // their heartbeats within `heartbeat`): retry with backoff.
            let mut backoff = REPAIR_BACKOFF_MIN;
            let deadline = Instant::now() + REPAIR_GIVE_UP;
            loop {
                let from = from.max(room.next_offset());
                hub.repair(&room, from, to).await;
                if room.next_offset() > to || Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(REPAIR_BACKOFF_MAX);
            }
            room.end_repair();
            if room.next_offset() <= to {
                tracing::error!(room = %room.name(), missing_from = room.next_offset(), to, "gap not repaired; the next event or reconnect retries");
                // Posters waiting for those offsets are told rather than
                // kept waiting: their posts were ordered by the cluster.
                room.drop_waiters_through(to, |id| {
                    protocol::error(
                        id,
                        ErrorCode::Unavailable,
                        "ordered by the cluster but not stored on this node yet: it will appear in the room's history",
                    )
                });
            }
        });
    }

    /// Fills `from..=to` from the Redis stream, then from peers.
    async fn repair(self: &Arc<Self>, room: &Arc<Room>, from: u64, to: u64) {
        let Some(bus) = self.bus().cloned() else {
            return;
        };
        let name = room.name().to_string();
        tracing::info!(room = %name, from, to, "repairing a gap");
        match bus.stream_range(&name, from, to).await {
            Ok(events) => {
                for ordered in events {
                    if ordered.event.epoch == room.epoch() {
                        // The stream copy acks this node's own posts too.
                        let pid = bus.is_mine(&ordered).then_some(ordered.pid);
                        self.accept(room, ordered.event, pid);
                    }
                }
            }
            Err(err) => tracing::warn!(room = %name, error = %err, "stream read failed"),
        }
        if room.next_offset() > to {
            return;
        }
        for (node, url) in bus.peers() {
            if let Err(err) = self.fetch_from_peer(room, &url, to).await {
                tracing::warn!(room = %name, peer = %node, error = %err, "peer catch-up failed");
            }
            if room.next_offset() > to {
                return;
            }
        }
        tracing::debug!(room = %name, missing_from = room.next_offset(), to, "gap not repaired yet");
    }

    /// Pages the room's history from a peer node until `to` is stored here.
    async fn fetch_from_peer(
        &self,
        room: &Arc<Room>,
        url: &str,
        to: u64,
    ) -> Result<(), crate::client::ClientError> {
        let now = crate::auth::now_secs();
        let token = self
            .keyring
            .mint(&Claims {
                sub: format!("{}{}", crate::auth::NODE_USER_PREFIX, self.config.node_id),
                name: self.config.node_id.clone(),
                role: Role::Staff,
                classes: Vec::new(),
                children: Vec::new(),
                exp: now + 300,
                iat: now,
            })
            .map_err(|e| crate::client::ClientError::Decode(e.to_string()))?;
        let timed_out = || crate::client::ClientError::Decode("peer timed out".to_owned());
        let (mut client, _) =
            tokio::time::timeout(PEER_TIMEOUT, crate::client::Client::connect(url, &token))
                .await
                .map_err(|_| timed_out())??;
        let limit = u32::try_from(self.config.history_page_max).unwrap_or(200);
        while room.next_offset() <= to {
            let after = room.next_offset() - 1;
            // A half-open peer would otherwise hold the repair (and the
            // room, which cannot unload while repairing) forever.
            let page = tokio::time::timeout(
                PEER_TIMEOUT,
                client.history(room.name().as_str(), None, Some(after), Some(limit)),
            )
            .await
            .map_err(|_| timed_out())??;
            if page.epoch != room.epoch() || page.events.is_empty() {
                break;
            }
            for event in page.events {
                self.accept(room, event, None);
            }
            if room.next_offset() - 1 == after {
                break;
            }
        }
        client.close();
        Ok(())
    }

    /// Compares the room's offset in Redis with what is stored here and
    /// repairs the difference.
    pub async fn catch_up(self: &Arc<Self>, name: &str) {
        let Ok(room_name) = RoomName::parse(name) else {
            return;
        };
        if let Ok(room) = self.room(&room_name).await {
            self.catch_up_room(room).await;
        }
    }

    async fn catch_up_room(self: &Arc<Self>, room: Arc<Room>) {
        let Some(bus) = self.bus().cloned() else {
            return;
        };
        match bus.room_offset(room.name().as_str()).await {
            Ok(Some(offset)) if offset >= room.next_offset() => {
                let from = room.next_offset();
                self.spawn_repair(room, from, offset);
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(room = %room.name(), error = %err, "cannot read the room's offset")
            }
        }
    }

    /// `(room, epoch, head)` of every stored room, for re-seeding Redis.
    pub async fn stored_heads(&self) -> Vec<(String, String, u64)> {
        let store = self.store.clone();
        let heads = tokio::task::spawn_blocking(move || {
            let mut heads = Vec::new();
            for room in store.rooms()? {
                let Some(meta) = store.room_meta(&room)? else {
                    continue;
                };
                let last = store.bounds(&room)?.map_or(0, |(_, last)| last);
                heads.push((room, meta.epoch, last.max(meta.trimmed_through)));
            }
            Ok::<_, StoreError>(heads)
        })
        .await;
        match heads {
            Ok(Ok(heads)) => heads,
            Ok(Err(err)) => {
                tracing::error!(error = %err, "cannot list stored rooms");
                Vec::new()
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot list stored rooms");
                Vec::new()
            }
        }
    }

    /// Users connected to each loaded room on this node.
    pub fn local_presence(&self) -> Vec<(String, Vec<UserInfo>)> {
        self.loaded_rooms()
            .into_iter()
            .map(|room| (room.name().to_string(), room.local_users()))
            .filter(|(_, users)| !users.is_empty())
            .collect()
    }

    pub async fn remote_presence(
        self: &Arc<Self>,
        node: &str,
        room: &str,
        user: UserInfo,
        present: bool,
    ) {
        let Ok(name) = RoomName::parse(room) else {
            return;
        };
        if let Ok(room) = self.room(&name).await {
            let id = user.id.clone();
            room.remote_presence(node, &id, present.then_some(user));
        }
    }

    pub async fn remote_snapshot(
        self: &Arc<Self>,
        node: &str,
        rooms: Vec<(String, Vec<UserInfo>)>,
    ) {
        let named: std::collections::HashSet<String> =
            rooms.iter().map(|(r, _)| r.clone()).collect();
        for room in self.loaded_rooms() {
            if !named.contains(room.name().as_str()) {
                room.remote_snapshot(node, Vec::new());
            }
        }
        for (room, users) in rooms {
            let Ok(name) = RoomName::parse(&room) else {
                continue;
            };
            if let Ok(room) = self.room(&name).await {
                room.remote_snapshot(node, users);
            }
        }
    }

    /// Forgets everyone present through `node`.
    pub fn drop_node(&self, node: &str) {
        for room in self.loaded_rooms() {
            room.drop_node(node);
        }
    }

    /// Tells other nodes about a local presence change (cluster mode).
    pub fn announce_presence(&self, room: &RoomName, user: &UserInfo, present: bool) {
        if let Some(bus) = self.bus() {
            bus.announce_presence(room.as_str(), user, present);
        }
    }
}

/// The hub as the bus sees it (`bus::Node`): the bus depends on that
/// trait, not on the hub.
impl crate::bus::Node for Arc<Hub> {
    async fn ingest(&self, ordered: Ordered) {
        self.ingest_ordered(ordered).await;
    }

    async fn catch_up(&self, room: String) {
        Hub::catch_up(self, &room).await;
    }

    async fn stored_heads(&self) -> Vec<(String, String, u64)> {
        Hub::stored_heads(self).await
    }

    fn local_presence(&self) -> Vec<(String, Vec<UserInfo>)> {
        Hub::local_presence(self)
    }

    async fn remote_presence(&self, from: String, room: String, user: UserInfo, present: bool) {
        Hub::remote_presence(self, &from, &room, user, present).await;
    }

    async fn remote_snapshot(&self, from: String, rooms: Vec<(String, Vec<UserInfo>)>) {
        Hub::remote_snapshot(self, &from, rooms).await;
    }

    fn drop_node(&self, from: &str) {
        Hub::drop_node(self, from);
    }
}

/// Gap repair retries from this delay, doubling up to the max, and gives
/// up after [`REPAIR_GIVE_UP`] (the next event or reconnect tries again).
const REPAIR_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(100);
const REPAIR_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(2);
const REPAIR_GIVE_UP: std::time::Duration = std::time::Duration::from_secs(60);

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

/// What the store's writer thread needs once an event is durable (or not).
struct Done<'a> {
    room: &'a Arc<Room>,
    store: &'a Arc<Store>,
    metrics: &'a Arc<Metrics>,
    runtime: Option<&'a tokio::runtime::Handle>,
}

impl Done<'_> {
    /// Acks, fans out, and applies the event's effect (checkpointing the
    /// room's moderation state and writing a redaction's tombstone).
    fn deliver(
        &self,
        waiter: Option<Waiter>,
        offset: u64,
        frame: &Bytes,
        effect: Option<Effect>,
        result: Result<(), StoreError>,
    ) {
        let room = self.room;
        if let Err(err) = result {
            self.metrics.error(ErrorCode::StorageError);
            let message = format!("not stored: {err}");
            room.skip(offset, waiter.as_ref().map(|w| (&w.out, w.id)), |id| {
                protocol::error(id, ErrorCode::StorageError, message.clone())
            });
            return;
        }
        let ack = waiter.map(|w| {
            let ts = protocol::event_ts(frame).unwrap_or(0);
            let reply = protocol::ok(
                w.id,
                &PostOk {
                    room: room.name().to_string(),
                    epoch: room.epoch().to_owned(),
                    offset,
                    ts,
                },
            );
            (w.out, reply)
        });
        // The tombstone is in place before anyone hears of the redaction,
        // so a history read that follows the event never sees the text.
        if let Some(Effect::Redact {
            target,
            tombstone,
            by,
            reason,
            ..
        }) = &effect
        {
            let edits = room.post_edits(*target);
            if let Err(err) = redact_stored(
                self.store,
                room.name().as_str(),
                (*target, tombstone),
                &edits,
                by,
                reason.as_deref(),
            ) {
                tracing::error!(room = %room.name(), error = %err, "cannot write a tombstone");
            }
        }
        let committed = room.commit(
            offset,
            frame,
            ack.as_ref().map(|(out, reply)| (out, reply.clone())),
            effect.as_ref(),
        );
        self.metrics.messages_stored.increment(1);
        self.metrics
            .queue_drops
            .increment(committed.delivery.refused);
        if let Some(version) = committed.version {
            self.store_version(version);
        }
        if committed.compact {
            let (store, metrics, room) = (self.store.clone(), self.metrics.clone(), room.clone());
            let compact = move || compact_note(&store, &metrics, &room);
            // Encoding a large document is kept off the writer thread.
            match self.runtime {
                Some(runtime) => drop(runtime.spawn_blocking(compact)),
                None => compact(),
            }
        }
        if let Some(state) = committed.moderation {
            if let Err(err) = self
                .store
                .save_moderation(room.name().as_str(), &state.encode())
            {
                // The event is durable; loading the room replays it.
                tracing::error!(room = %room.name(), error = %err, "cannot checkpoint moderation");
            }
        }
    }
}

impl Done<'_> {
    fn store_version(&self, version: NewVersion) {
        let stored = StoredVersion {
            info: NoteVersionInfo {
                version: version.version,
                label: version.label,
                by: version.by,
                ts: version.ts,
                offset: version.offset,
            },
            state: version.state,
        };
        let number = stored.info.version;
        if let Err(err) = self
            .store
            .save_version(self.room.name().as_str(), number, &stored)
        {
            // Loading the note writes it again from the stored events.
            tracing::error!(room = %self.room.name(), error = %err, "cannot store a note version");
        }
    }
}

/// Folds a note's updates into a snapshot and deletes the events it
/// covers. Blocking: encodes the document (under the room's lock) and
/// writes to sled.
fn compact_note(store: &Store, metrics: &Metrics, room: &Arc<Room>) {
    let Some((through, state, folded)) = room.start_compaction() else {
        return;
    };
    let name = room.name().as_str();
    let size = state.len();
    let snapshot = NoteSnapshot { through, state };
    let result = store.compact_note(name, &snapshot, |last| room.set_floor(last));
    room.end_compaction(through, folded, result.is_ok());
    match result {
        Ok(()) => {
            metrics.note_compactions.increment(1);
            tracing::debug!(room = %name, through, folded, bytes = size, "note compacted");
        }
        Err(err) => tracing::error!(room = %name, error = %err, "note compaction failed"),
    }
}

/// A note as stored: its snapshot, then the updates stored after it (and
/// versions whose record a crash lost, written again). Blocking.
fn load_note(store: &Store, room: &str, last: u64) -> Result<NoteState, StoreError> {
    let snapshot = store.note_snapshot(room)?;
    let through = snapshot.as_ref().map_or(0, |s| s.through);
    let mut doc = match &snapshot {
        Some(s) => NoteDoc::load(Some(&s.state), std::iter::empty::<&[u8]>()),
        None => Ok(NoteDoc::new()),
    }
    .map_err(|e| StoreError::Corrupt {
        room: room.to_owned(),
        message: format!("note snapshot: {e}"),
    })?;
    let mut known: Vec<NoteVersionInfo> = store.versions(room)?;
    let (frames, _) = store.read_after(room, through, last, usize::MAX)?;
    let mut updates = 0;
    for frame in frames {
        let Ok(crate::protocol::ServerFrame::Event(event)) = protocol::decode_server_frame(&frame)
        else {
            continue;
        };
        match &event.body {
            Body::YjsUpdate { data } => {
                if let Err(err) = doc.apply(data) {
                    tracing::error!(room, offset = event.offset, error = %err, "stored note update skipped");
                }
                updates += 1;
            }
            Body::Moderation {
                action: ModAction::Validate { label, .. },
                ..
            } if !known.iter().any(|v| v.offset == event.offset) => {
                let version = known.iter().filter(|v| v.offset < event.offset).count() as u32 + 1;
                let state = doc.snapshot().map_err(|e| StoreError::Corrupt {
                    room: room.to_owned(),
                    message: format!("note version: {e}"),
                })?;
                let info = NoteVersionInfo {
                    version,
                    label: label.clone(),
                    by: event.from.clone(),
                    ts: event.ts,
                    offset: event.offset,
                };
                store.save_version(
                    room,
                    version,
                    &StoredVersion {
                        info: info.clone(),
                        state,
                    },
                )?;
                known.push(info);
            }
            _ => {}
        }
    }
    Ok(NoteState::new(doc, through, updates, known.len() as u32))
}

/// The room's moderation state: the checkpoint plus the effects of the
/// events stored after it (a crash may have lost the last checkpoint).
/// Blocking.
fn load_moderation(
    store: &Store,
    room: &str,
    last: u64,
    forum: &Forum,
) -> Result<Moderation, StoreError> {
    let mut state = store
        .moderation(room)?
        .and_then(|bytes| Moderation::decode(&bytes))
        .unwrap_or_default();
    if state.through >= last {
        return Ok(state);
    }
    let (frames, _) = store.read_after(room, state.through, last, usize::MAX)?;
    for frame in frames {
        let Ok(crate::protocol::ServerFrame::Event(event)) = protocol::decode_server_frame(&frame)
        else {
            continue;
        };
        let Some(effect) = Effect::of(&event).filter(Effect::is_moderation) else {
            continue;
        };
        if let Effect::Redact {
            target,
            tombstone,
            by,
            reason,
            ..
        } = &effect
        {
            let edits = forum
                .post(*target)
                .map(|p| p.edits.clone())
                .unwrap_or_default();
            redact_stored(
                store,
                room,
                (*target, tombstone),
                &edits,
                by,
                reason.as_deref(),
            )?;
        }
        state.apply(event.offset, &effect);
    }
    state.through = last;
    store.save_moderation(room, &state.encode())?;
    Ok(state)
}

/// Writes a redaction's tombstones: the message's, and one for each of its
/// edits (their text goes too). Blocking.
fn redact_stored(
    store: &Store,
    room: &str,
    (target, tombstone): (u64, &Bytes),
    edits: &[u64],
    by: &UserInfo,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    store.rewrite_event(room, target, tombstone)?;
    for edit in edits {
        let Some(frame) = store.raw_event(room, *edit)? else {
            continue;
        };
        if let Some(tombstone) = edit_tombstone(&frame, by, reason) {
            store.rewrite_event(room, *edit, &tombstone)?;
        }
    }
    Ok(())
}

/// A forum's thread index, from every stored event. Blocking.
fn rebuild_forum(store: &Store, room: &str, last: u64) -> Result<Forum, StoreError> {
    let (frames, _) = store.read_after(room, 0, last, usize::MAX)?;
    let events: Vec<Event> = frames
        .iter()
        .filter_map(|frame| match protocol::decode_server_frame(frame) {
            Ok(crate::protocol::ServerFrame::Event(event)) => Some(event),
            _ => None,
        })
        .collect();
    Ok(Forum::rebuild(&events))
}
