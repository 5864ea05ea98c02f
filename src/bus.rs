//! The cluster bus over Redis: the only module that touches Redis.
//!
//! Without `--redis` there is no bus: a node orders its rooms itself (see
//! `Room::sequence`). With it, every node of the cluster:
//! - orders a post with one Lua script (`PUBLISH_LUA`) that increments the
//!   room's offset, appends the event to the room's capped stream (id =
//!   offset) and publishes it on `preau:events`, atomically, so offset order
//!   is delivery order everywhere;
//! - receives every event of every room on `preau:events` and stores it in
//!   its own sled (full replication: any node answers any history), in
//!   offset order, repairing gaps from the stream and, when the stream no
//!   longer has them, from a peer node over the WebSocket protocol;
//! - heartbeats on `preau:nodes` with its local presence changes, so others
//!   drop a dead node's members within `node_timeout`;
//! - detects that Redis lost its memory (the `preau:instance` key changed)
//!   and re-seeds every room's counter from sled before publishing again.
//!
//! Keys carry the room's class as hash tag (`preau:{3B}/chat/x:m`), so a
//! room's keys stay on one Redis Cluster slot. Events and control messages
//! cross Redis as MessagePack.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::protocol::{Body, Event, UserInfo};
use crate::room::RoomName;

/// Every event of every room.
pub const EVENTS_CHANNEL: &str = "preau:events";
/// Heartbeats and presence.
pub const NODES_CHANNEL: &str = "preau:nodes";
/// Presence changes queued for Redis at most (one join or leave each).
const PRESENCE_QUEUE: usize = 10_000;
/// Changes whenever Redis starts empty.
const INSTANCE_KEY: &str = "preau:instance";
/// The school directory as the last sync left it (one value, so a node
/// takes a version whole), and its version.
const DIRECTORY_KEY: &str = "preau:directory";
const DIRECTORY_VERSION_KEY: &str = "preau:directory:version";

/// Stores a directory version unless Redis holds a later one, and tells
/// the nodes. KEYS: data, version, control channel; ARGV: version, data,
/// control message.
const DIRECTORY_LUA: &str = r#"
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) <= current then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('PUBLISH', KEYS[3], ARGV[3])
return 1
"#;

const PUBLISH_LUA: &str = r#"
-- KEYS[1] room meta hash, KEYS[2] room stream, KEYS[3] (optional) the
-- post's idempotency key
-- ARGV: room, draft, node, pid, stream cap, node's epoch, node's head,
-- channel, node's run, idempotency window (seconds)
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  redis.call('HSET', KEYS[1], 'e', ARGV[6], 'o', ARGV[7])
  epoch = ARGV[6]
elseif epoch ~= ARGV[6] then
  return redis.error_reply('PREAU_EPOCH room epoch is ' .. epoch)
end
if KEYS[3] then
  local seen = redis.call('GET', KEYS[3])
  if seen then
    return 'PREAU_KNOWN:' .. seen
  end
end
local offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
local known = tonumber(ARGV[7])
if offset <= known then
  -- Redis lost offsets a node has stored: never hand them out again.
  offset = known + 1
  redis.call('HSET', KEYS[1], 'o', offset)
end
local now = redis.call('TIME')
local ts = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local last = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
if ts < last then ts = last end
redis.call('HSET', KEYS[1], 't', ts)
if KEYS[3] then
  redis.call('SET', KEYS[3], offset, 'EX', ARGV[10])
end
local env = cmsgpack.pack({room = ARGV[1], epoch = epoch, offset = offset, ts = ts,
  node = ARGV[3], run = ARGV[9], pid = tonumber(ARGV[4]), p = ARGV[2]})
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], offset .. '-1', 'e', env)
redis.call('PUBLISH', ARGV[8], env)
return env
"#;

/// Raises the room's counter to at least the node's head (max semantics),
/// creating the room with the node's epoch if Redis does not know it.
const SEED_LUA: &str = r#"
-- KEYS[1] room meta hash; ARGV: epoch, head
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  redis.call('HSET', KEYS[1], 'e', ARGV[1], 'o', ARGV[2])
  return ARGV[1]
end
if epoch ~= ARGV[1] then
  return redis.error_reply('PREAU_EPOCH room epoch is ' .. epoch)
end
local offset = tonumber(redis.call('HGET', KEYS[1], 'o') or '0')
if offset < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'o', ARGV[2])
end
return epoch
"#;

/// The room's epoch, created with the proposed one if the room is new.
const ENSURE_LUA: &str = r#"
-- KEYS[1] room meta hash; ARGV: proposed epoch
redis.call('HSETNX', KEYS[1], 'e', ARGV[1])
redis.call('HSETNX', KEYS[1], 'o', 0)
return {redis.call('HGET', KEYS[1], 'e'), tonumber(redis.call('HGET', KEYS[1], 'o'))}
"#;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("the cluster is resynchronising after a redis restart")]
    Resyncing,
    #[error("room epoch differs between this node and redis: {0}")]
    Epoch(String),
    #[error("bad message from redis: {0}")]
    Decode(String),
    #[error("cannot encode: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

/// What the poster sends through Redis; the script adds the rest.
#[derive(Serialize, Deserialize)]
struct Draft {
    from: UserInfo,
    body: Body,
}

/// An ordered event as it crosses Redis (built by `PUBLISH_LUA`).
#[derive(Deserialize)]
struct Envelope {
    room: String,
    epoch: String,
    offset: u64,
    ts: u64,
    node: String,
    /// The posting node's run (random per process start): post ids restart
    /// at 1 in every run, so `(node, run, pid)` names a post, not
    /// `(node, pid)`. Absent from envelopes of older versions.
    #[serde(default)]
    run: String,
    pid: u64,
    #[serde(with = "serde_bytes")]
    p: Vec<u8>,
}

/// Messages on [`NODES_CHANNEL`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Control {
    /// "I am alive; peers can reach me at `url`."
    Heartbeat { node: String, url: String },
    /// A user became present in, or absent from, a room through `node`.
    Presence {
        node: String,
        room: String,
        user: UserInfo,
        present: bool,
    },
    /// Everything present through `node` (answer to `SnapshotRequest`).
    Snapshot {
        node: String,
        rooms: Vec<(String, Vec<UserInfo>)>,
    },
    /// "Send me your snapshots" (a node that just (re)connected).
    SnapshotRequest { node: String },
    /// A node stops cleanly.
    Bye { node: String },
    /// The school directory's `version` is in Redis (`DIRECTORY_KEY`):
    /// nodes behind it take it.
    Directory { node: String, version: u64 },
}

/// An ordered event, with the node that posted it and that node's post id
/// (so the posting node can ack it once stored).
pub struct Ordered {
    pub event: Event,
    pub node: String,
    pub run: String,
    pub pid: u64,
}

/// What ordering a post did.
pub enum Published {
    /// Ordered now: the event.
    New(Box<Event>),
    /// A post with the same idempotency key was ordered before, at this
    /// offset: nothing new was ordered.
    Known(u64),
}

/// What the bus needs from the node it serves; the hub implements it. The
/// bus hands over what arrives from Redis (events, presence) and asks for
/// what it must announce or re-seed, without depending on the hub.
pub trait Node: Clone + Send + Sync + 'static {
    /// An event ordered by Redis (channel or stream copy).
    fn ingest(&self, ordered: Ordered) -> impl Future<Output = ()> + Send;
    /// Compare the room's offset in Redis with what is stored, and repair.
    fn catch_up(&self, room: String) -> impl Future<Output = ()> + Send;
    /// `(room, epoch, head)` of every stored room, to re-seed Redis.
    fn stored_heads(&self) -> impl Future<Output = Vec<(String, String, u64)>> + Send;
    /// Users connected to each loaded room on this node.
    fn local_presence(&self) -> Vec<(String, Vec<UserInfo>)>;
    /// `user` became present (or absent) in `room` through node `from`.
    fn remote_presence(
        &self,
        from: String,
        room: String,
        user: UserInfo,
        present: bool,
    ) -> impl Future<Output = ()> + Send;
    /// Everyone present through node `from` (a snapshot).
    fn remote_snapshot(
        &self,
        from: String,
        rooms: Vec<(String, Vec<UserInfo>)>,
    ) -> impl Future<Output = ()> + Send;
    /// Node `from` is gone: forget everyone present through it.
    fn drop_node(&self, from: &str);
    /// The version of this node's school directory.
    fn directory_version(&self) -> u64;
    /// This node's directory, encoded (to put in Redis when Redis is
    /// behind it).
    fn directory_bytes(&self) -> Option<Vec<u8>>;
    /// A later directory from Redis: install it.
    fn install_directory(&self, bytes: Vec<u8>) -> impl Future<Output = ()> + Send;
}

struct Peer {
    url: String,
    last_seen: Instant,
}

pub struct BusConfig {
    pub url: String,
    pub node: String,
    /// How long Redis remembers a post's idempotency key.
    pub idempotency_window: Duration,
    pub advertise: String,
    pub stream_max: usize,
    pub heartbeat: Duration,
    pub node_timeout: Duration,
    pub resync_window: Duration,
}

pub struct RedisBus {
    config: BusConfig,
    /// This process's run: random, so acks never match a post of an
    /// earlier run of the same node id (see `Envelope::run`).
    run: String,
    client: redis::Client,
    conn: ConnectionManager,
    publish: redis::Script,
    seed: redis::Script,
    ensure: redis::Script,
    /// Publishes are refused until this instant (connected and resynced).
    ready_at: Mutex<Option<Instant>>,
    connected: AtomicBool,
    instance: Mutex<Option<String>>,
    peers: DashMap<String, Peer>,
    /// Presence changes go out through one task, in the order they happened
    /// (one spawned task each could publish a leave before its join).
    presence_tx: tokio::sync::mpsc::Sender<Control>,
    presence_rx: Mutex<Option<tokio::sync::mpsc::Receiver<Control>>>,
    /// Presence changes dropped because the queue was full (Redis slow or
    /// away); the next snapshot repairs what they would have said.
    presence_dropped: std::sync::atomic::AtomicU64,
}

/// `preau:{class}/kind/name:SUFFIX`.
fn key(room: &str, suffix: &str) -> String {
    let (class, rest) = room.split_once('/').unwrap_or((room, ""));
    format!("preau:{{{class}}}/{rest}:{suffix}")
}

impl RedisBus {
    /// Prepares the bus; connects lazily, so a node starts even while Redis
    /// is down (publishes fail fast until it is back).
    pub fn new(config: BusConfig) -> Result<Arc<RedisBus>, BusError> {
        let client = redis::Client::open(config.url.as_str())?;
        let manager_config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)?;
        let (presence_tx, presence_rx) = tokio::sync::mpsc::channel(PRESENCE_QUEUE);
        Ok(Arc::new(RedisBus {
            run: crate::ids::new_epoch(),
            presence_tx,
            presence_rx: Mutex::new(Some(presence_rx)),
            presence_dropped: std::sync::atomic::AtomicU64::new(0),
            config,
            client,
            conn,
            publish: redis::Script::new(PUBLISH_LUA),
            seed: redis::Script::new(SEED_LUA),
            ensure: redis::Script::new(ENSURE_LUA),
            ready_at: Mutex::new(None),
            connected: AtomicBool::new(false),
            instance: Mutex::new(None),
            peers: DashMap::new(),
        }))
    }

    pub fn node(&self) -> &str {
        &self.config.node
    }

    /// Whether an ordered event was posted by this very process (so its
    /// post id is one of ours).
    pub fn is_mine(&self, ordered: &Ordered) -> bool {
        ordered.node == self.config.node && ordered.run == self.run
    }

    /// Orders a post. Returns the ordered event; the caller stores it and
    /// acks (the same event also arrives on the channel: it is
    /// deduplicated). With an idempotency key (`user`, `key`) already used
    /// in the room within `idempotency_window`, nothing is ordered and the
    /// first post's offset is returned.
    ///
    /// An error does not always mean nothing was ordered: a reply that
    /// timed out may come from a script Redis ran. Hence the key.
    #[allow(clippy::too_many_arguments)]
    pub async fn publish(
        &self,
        room: &RoomName,
        epoch: &str,
        head: u64,
        from: &UserInfo,
        body: Body,
        pid: u64,
        idempotency: Option<(&str, &str)>,
    ) -> Result<Published, BusError> {
        self.check_ready()?;
        let draft = rmp_serde::to_vec_named(&Draft {
            from: from.clone(),
            body,
        })?;
        let mut conn = self.conn.clone();
        let mut invocation = self.publish.prepare_invoke();
        invocation
            .key(key(room.as_str(), "m"))
            .key(key(room.as_str(), "s"));
        if let Some((user, post_key)) = idempotency {
            invocation.key(idempotency_key(room.as_str(), user, post_key));
        }
        invocation
            .arg(room.as_str())
            .arg(draft)
            .arg(&self.config.node)
            .arg(pid)
            .arg(self.config.stream_max)
            .arg(epoch)
            .arg(head)
            .arg(EVENTS_CHANNEL)
            .arg(&self.run)
            .arg(self.config.idempotency_window.as_secs().max(1));
        let reply: Result<Vec<u8>, redis::RedisError> = invocation.invoke_async(&mut conn).await;
        let bytes = reply.map_err(classify)?;
        if let Some(known) = bytes.strip_prefix(b"PREAU_KNOWN:") {
            let offset = std::str::from_utf8(known)
                .ok()
                .and_then(|o| o.parse().ok())
                .ok_or_else(|| BusError::Decode("bad idempotency record".to_owned()))?;
            return Ok(Published::Known(offset));
        }
        Ok(Published::New(Box::new(decode_envelope(&bytes)?.event)))
    }

    /// The offset of the post `user` ordered in `room` with idempotency
    /// key `key` within the window, if any.
    pub async fn known_post(
        &self,
        room: &str,
        user: &str,
        post_key: &str,
    ) -> Result<Option<u64>, BusError> {
        let mut conn = self.conn.clone();
        let offset: Option<u64> = redis::cmd("GET")
            .arg(idempotency_key(room, user, post_key))
            .query_async(&mut conn)
            .await?;
        Ok(offset)
    }

    /// The room's epoch and offset in Redis, creating the room with
    /// `proposed` as epoch if Redis does not know it.
    pub async fn ensure_room(&self, room: &str, proposed: &str) -> Result<(String, u64), BusError> {
        let mut conn = self.conn.clone();
        let (epoch, offset): (String, u64) = self
            .ensure
            .key(key(room, "m"))
            .arg(proposed)
            .invoke_async(&mut conn)
            .await?;
        Ok((epoch, offset))
    }

    /// Events `from..=to` still in the room's stream, in order.
    pub async fn stream_range(
        &self,
        room: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Ordered>, BusError> {
        let mut conn = self.conn.clone();
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(key(room, "s"))
            .arg(format!("{from}-0"))
            .arg(format!("{to}-9"))
            .query_async(&mut conn)
            .await?;
        let mut events = Vec::new();
        for entry in reply.ids {
            let Some(redis::Value::BulkString(bytes)) = entry.map.get("e") else {
                continue;
            };
            match decode_envelope(bytes) {
                Ok(ordered) => events.push(ordered),
                Err(err) => tracing::warn!(room, error = %err, "skipping a bad stream entry"),
            }
        }
        Ok(events)
    }

    /// Deletes events from the room's stream (a redacted message, an
    /// erased user's rewritten events): the stream holds the original
    /// envelopes, and a node that still misses them repairs from a peer,
    /// which holds the tombstones. `XDEL` leaves Redis's memory to reclaim
    /// the entries' bytes; nothing can read them back.
    pub async fn forget(&self, room: &str, offsets: &[u64]) -> Result<(), BusError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("XDEL");
        cmd.arg(key(room, "s"));
        for offset in offsets {
            cmd.arg(format!("{offset}-1"));
        }
        let _: i64 = cmd.query_async(&mut conn).await?;
        Ok(())
    }

    /// The room's offset in Redis, if Redis knows the room.
    pub async fn room_offset(&self, room: &str) -> Result<Option<u64>, BusError> {
        let mut conn = self.conn.clone();
        let offset: Option<u64> = redis::cmd("HGET")
            .arg(key(room, "m"))
            .arg("o")
            .query_async(&mut conn)
            .await?;
        Ok(offset)
    }

    /// Every room Redis knows, by scanning the meta keys.
    async fn known_rooms(&self) -> Result<Vec<String>, BusError> {
        self.scan_rooms("preau:{*:m").await
    }

    /// The rooms of one kind of a class that Redis knows (created on any
    /// node).
    pub async fn rooms_of(&self, class: &str, kind: &str) -> Result<Vec<String>, BusError> {
        // Class and kind names hold no glob character.
        self.scan_rooms(&format!("preau:{{{class}}}/{kind}/*:m"))
            .await
    }

    async fn scan_rooms(&self, pattern: &str) -> Result<Vec<String>, BusError> {
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut rooms = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            rooms.extend(keys.iter().filter_map(|k| room_of_key(k)));
            if next == 0 {
                return Ok(rooms);
            }
            cursor = next;
        }
    }

    /// Tells the cluster that `user` became present in or absent from
    /// `room` on this node. Best effort: snapshots repair what is lost.
    pub fn announce_presence(&self, room: &str, user: &UserInfo, present: bool) {
        let message = Control::Presence {
            node: self.config.node.clone(),
            room: room.to_owned(),
            user: user.clone(),
            present,
        };
        if self.presence_tx.try_send(message).is_err() {
            // Bounded: a Redis that stalls must not grow this node's memory
            // with every join and leave. Peers ask for snapshots when they
            // reconnect, and every node's snapshot answers them.
            let dropped = self.presence_dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped,
                    "presence queue full; changes dropped until redis keeps up"
                );
            }
        }
    }

    /// Live peers (heard from within `node_timeout`), with their URLs.
    pub fn peers(&self) -> Vec<(String, String)> {
        let now = Instant::now();
        self.peers
            .iter()
            .filter(|p| {
                !p.url.is_empty() && now.duration_since(p.last_seen) < self.config.node_timeout
            })
            .map(|p| (p.key().clone(), p.url.clone()))
            .collect()
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    fn check_ready(&self) -> Result<(), BusError> {
        match *self.ready_at.lock() {
            Some(at) if Instant::now() >= at => Ok(()),
            Some(_) => Err(BusError::Resyncing),
            None => Err(BusError::Redis(redis::RedisError::from((
                redis::ErrorKind::Io,
                "not connected to redis",
            )))),
        }
    }

    /// How long until publishes are accepted again, if they are not.
    pub fn retry_after(&self) -> Option<Duration> {
        let ready_at = (*self.ready_at.lock())?;
        ready_at.checked_duration_since(Instant::now())
    }

    async fn send_control(&self, message: &Control) {
        let Ok(bytes) = rmp_serde::to_vec_named(message) else {
            return;
        };
        let mut conn = self.conn.clone();
        let sent: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(NODES_CHANNEL)
            .arg(bytes)
            .query_async(&mut conn)
            .await;
        if let Err(err) = sent {
            tracing::debug!(error = %err, "control message not sent");
        }
    }

    /// Shares a directory version this node applied: stored in Redis
    /// unless Redis holds a later one, and announced to the nodes.
    pub async fn put_directory(&self, version: u64, bytes: &[u8]) -> Result<bool, BusError> {
        let control = rmp_serde::to_vec_named(&Control::Directory {
            node: self.config.node.clone(),
            version,
        })?;
        let mut conn = self.conn.clone();
        let stored: i64 = redis::Script::new(DIRECTORY_LUA)
            .key(DIRECTORY_KEY)
            .key(DIRECTORY_VERSION_KEY)
            .key(NODES_CHANNEL)
            .arg(version)
            .arg(bytes)
            .arg(control)
            .invoke_async(&mut conn)
            .await?;
        Ok(stored == 1)
    }

    /// The directory in Redis, if any.
    async fn directory(&self) -> Result<Option<Vec<u8>>, BusError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("GET")
            .arg(DIRECTORY_KEY)
            .query_async(&mut conn)
            .await?)
    }

    async fn take_directory<N: Node>(&self, hub: &N) {
        match self.directory().await {
            Ok(Some(bytes)) => hub.install_directory(bytes).await,
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, "cannot read the directory from redis"),
        }
    }

    /// After (re)subscribing: take the directory if Redis has a later one,
    /// or put this node's there if Redis is behind (it restarted empty).
    async fn reconcile_directory<N: Node>(&self, hub: &N) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        let theirs: Option<u64> = redis::cmd("GET")
            .arg(DIRECTORY_VERSION_KEY)
            .query_async(&mut conn)
            .await?;
        let (theirs, mine) = (theirs.unwrap_or(0), hub.directory_version());
        if theirs > mine {
            self.take_directory(hub).await;
        } else if mine > theirs {
            if let Some(bytes) = hub.directory_bytes() {
                self.put_directory(mine, &bytes).await?;
            }
        }
        Ok(())
    }

    /// Runs the subscriber (with reconnects) and the heartbeat until shutdown.
    pub async fn run<N: Node>(self: Arc<Self>, hub: N, shutdown: CancellationToken) {
        let heartbeat = tokio::spawn(self.clone().heartbeat(hub.clone(), shutdown.clone()));
        let presence = self.presence_rx.lock().take().map(|mut rx| {
            let bus = self.clone();
            let hub = hub.clone();
            tokio::spawn(async move {
                let mut repaired = 0;
                while let Some(message) = rx.recv().await {
                    bus.send_control(&message).await;
                    // Changes were dropped while the queue was full: once
                    // it drained, a snapshot says what they would have.
                    let dropped = bus.presence_dropped.load(Ordering::Relaxed);
                    if dropped != repaired && rx.is_empty() {
                        bus.send_control(&bus.snapshot(&hub)).await;
                        repaired = dropped;
                    }
                }
            })
        });
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            match self.subscribe_once(&hub, &shutdown).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(err) => {
                    tracing::warn!(error = %err, "redis subscription lost; retrying");
                }
            }
            self.connected.store(false, Ordering::Relaxed);
            *self.ready_at.lock() = None;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
        self.send_control(&Control::Bye {
            node: self.config.node.clone(),
        })
        .await;
        heartbeat.abort();
        if let Some(presence) = presence {
            presence.abort();
        }
    }

    async fn subscribe_once<N: Node>(
        &self,
        hub: &N,
        shutdown: &CancellationToken,
    ) -> Result<(), BusError> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(EVENTS_CHANNEL).await?;
        pubsub.subscribe(NODES_CHANNEL).await?;
        let mut messages = pubsub.into_on_message();
        self.connected.store(true, Ordering::Relaxed);
        tracing::info!(url = %self.config.url, "subscribed to redis");
        // Subscribed first, then resync: nothing published from now on is missed.
        self.resync(hub).await?;
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                message = messages.next() => message,
            };
            let Some(message) = message else {
                return Err(BusError::Redis(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "subscription closed",
                ))));
            };
            let payload: &[u8] = message.get_payload_bytes();
            match message.get_channel_name() {
                EVENTS_CHANNEL => match decode_envelope(payload) {
                    Ok(ordered) => hub.ingest(ordered).await,
                    Err(err) => {
                        tracing::warn!(error = %err, "skipping a foreign or malformed event")
                    }
                },
                NODES_CHANNEL => match rmp_serde::from_slice::<Control>(payload) {
                    Ok(control) => self.on_control(hub, control).await,
                    Err(err) => {
                        tracing::warn!(error = %err, "skipping a foreign or malformed control message")
                    }
                },
                other => tracing::warn!(channel = other, "message on an unexpected channel"),
            }
        }
    }

    /// After (re)subscribing: detect a Redis that lost its memory, re-seed
    /// counters if so, catch up every room, and ask peers for presence.
    async fn resync<N: Node>(&self, hub: &N) -> Result<(), BusError> {
        let mut conn = self.conn.clone();
        let proposed = crate::ids::new_epoch();
        let created: Option<String> = redis::cmd("SET")
            .arg(INSTANCE_KEY)
            .arg(&proposed)
            .arg("NX")
            .query_async(&mut conn)
            .await?;
        let current: Option<String> = redis::cmd("GET")
            .arg(INSTANCE_KEY)
            .query_async(&mut conn)
            .await?;
        let (changed, first) = {
            let mut known = self.instance.lock();
            let changed = known.as_ref() != current.as_ref();
            let first = known.is_none();
            known.clone_from(&current);
            (changed, first)
        };
        if changed {
            // A Redis that lost its data: every node re-seeds within the
            // window, and until it ends nobody publishes, so no offset below
            // any node's head is handed out. A node that starts and finds
            // the cluster's instance already there joins a running cluster
            // (whose nodes hold the same rooms): it seeds without a window.
            let fresh = created.is_some() || !first;
            let until = Instant::now()
                + if fresh {
                    self.config.resync_window
                } else {
                    Duration::ZERO
                };
            *self.ready_at.lock() = Some(until);
            let seeded = self.seed_all(hub).await?;
            tracing::info!(
                rooms = seeded,
                "redis instance is new: counters re-seeded from sled"
            );
        } else {
            *self.ready_at.lock() = Some(Instant::now());
        }
        self.send_control(&Control::SnapshotRequest {
            node: self.config.node.clone(),
        })
        .await;
        self.send_control(&self.snapshot(hub)).await;
        self.reconcile_directory(hub).await?;
        let rooms = self.known_rooms().await?;
        let count = rooms.len();
        for room in rooms {
            hub.catch_up(room).await;
        }
        tracing::info!(rooms = count, "caught up with redis");
        Ok(())
    }

    async fn seed_all<N: Node>(&self, hub: &N) -> Result<usize, BusError> {
        let heads = hub.stored_heads().await;
        let mut conn = self.conn.clone();
        let count = heads.len();
        for (room, epoch, head) in heads {
            let seeded: Result<String, redis::RedisError> = self
                .seed
                .key(key(&room, "m"))
                .arg(&epoch)
                .arg(head)
                .invoke_async(&mut conn)
                .await;
            if let Err(err) = seeded {
                match classify(err) {
                    err @ BusError::Epoch(_) => {
                        tracing::error!(room = %room, error = %err, "cannot seed room")
                    }
                    err => return Err(err),
                }
            }
        }
        Ok(count)
    }

    fn snapshot<N: Node>(&self, hub: &N) -> Control {
        Control::Snapshot {
            node: self.config.node.clone(),
            rooms: hub.local_presence(),
        }
    }

    async fn on_control<N: Node>(&self, hub: &N, control: Control) {
        let me = self.config.node.as_str();
        match control {
            Control::Heartbeat { node, url } if node != me => {
                let known = self.peers.contains_key(&node);
                self.peers.insert(
                    node,
                    Peer {
                        url,
                        last_seen: Instant::now(),
                    },
                );
                if !known {
                    // A node we had given up on (or never heard of) is back:
                    // its presence deltas may have been lost meanwhile.
                    self.send_control(&Control::SnapshotRequest {
                        node: me.to_owned(),
                    })
                    .await;
                }
            }
            Control::Presence {
                node,
                room,
                user,
                present,
            } if node != me => {
                self.touch(&node);
                hub.remote_presence(node, room, user, present).await;
            }
            Control::Snapshot { node, rooms } if node != me => {
                self.touch(&node);
                hub.remote_snapshot(node, rooms).await;
            }
            Control::SnapshotRequest { node } if node != me => {
                self.send_control(&self.snapshot(hub)).await;
            }
            Control::Bye { node } if node != me => {
                self.peers.remove(&node);
                hub.drop_node(&node);
            }
            Control::Directory { node, version }
                if node != me && version > hub.directory_version() =>
            {
                self.take_directory(hub).await;
            }
            _ => {}
        }
    }

    /// Notes that `node` is alive. A node heard of through presence before
    /// its first heartbeat is tracked too, so its members expire with it.
    fn touch(&self, node: &str) {
        self.peers
            .entry(node.to_owned())
            .and_modify(|peer| peer.last_seen = Instant::now())
            .or_insert_with(|| Peer {
                url: String::new(),
                last_seen: Instant::now(),
            });
    }

    /// Heartbeats, and drops peers not heard from within `node_timeout`.
    async fn heartbeat<N: Node>(self: Arc<Self>, hub: N, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.heartbeat);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if self.is_connected() {
                self.send_control(&Control::Heartbeat {
                    node: self.config.node.clone(),
                    url: self.config.advertise.clone(),
                })
                .await;
            }
            let now = Instant::now();
            let dead: Vec<String> = self
                .peers
                .iter()
                .filter(|p| now.duration_since(p.last_seen) >= self.config.node_timeout)
                .map(|p| p.key().clone())
                .collect();
            for node in dead {
                tracing::info!(node = %node, "peer node timed out; dropping its presence");
                self.peers.remove(&node);
                hub.drop_node(&node);
            }
        }
    }
}

/// Tells a script's epoch refusal from a Redis failure.
fn classify(err: redis::RedisError) -> BusError {
    let text = err.to_string();
    if text.contains("PREAU_EPOCH") {
        BusError::Epoch(text)
    } else {
        BusError::Redis(err)
    }
}

/// `preau:{C}/kind/name:k:LEN:USERKEY`: the user's length first, so no
/// two (user, key) pairs share a name.
fn idempotency_key(room: &str, user: &str, post_key: &str) -> String {
    key(room, &format!("k:{}:{user}{post_key}", user.len()))
}

fn room_of_key(key: &str) -> Option<String> {
    let inner = key.strip_prefix("preau:{")?.strip_suffix(":m")?;
    let (class, rest) = inner.split_once('}')?;
    Some(format!("{class}{rest}"))
}

/// Decodes an envelope from the channel or a stream entry.
fn decode_envelope(bytes: &[u8]) -> Result<Ordered, BusError> {
    let envelope: Envelope =
        rmp_serde::from_slice(bytes).map_err(|e| BusError::Decode(e.to_string()))?;
    let draft: Draft =
        rmp_serde::from_slice(&envelope.p).map_err(|e| BusError::Decode(e.to_string()))?;
    RoomName::check_shape(&envelope.room).map_err(|e| BusError::Decode(e.to_string()))?;
    if envelope.offset == 0 {
        return Err(BusError::Decode("offset 0".to_owned()));
    }
    Ok(Ordered {
        event: Event {
            room: envelope.room,
            epoch: envelope.epoch,
            offset: envelope.offset,
            ts: envelope.ts,
            from: draft.from,
            body: draft.body,
        },
        node: envelope.node,
        run: envelope.run,
        pid: envelope.pid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_class_hash_tag() {
        assert_eq!(key("3B/chat/x", "m"), "preau:{3B}/chat/x:m");
        assert_eq!(
            room_of_key("preau:{3B}/chat/x:m").as_deref(),
            Some("3B/chat/x")
        );
        assert_eq!(room_of_key("other:key"), None);
    }

    #[test]
    fn malformed_envelopes_are_errors() {
        assert!(decode_envelope(b"garbage").is_err());
        let partial =
            rmp_serde::to_vec_named(&std::collections::HashMap::from([("room", "x")])).unwrap();
        assert!(decode_envelope(&partial).is_err());
    }
}
