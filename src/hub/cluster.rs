//! Cluster mode: Redis orders every room's posts ([`Cluster`], the hub's
//! [`Sequencer`]), and what arrives from the bus is stored here in offset
//! order (gaps repaired from the stream, then from peers), with catch-up
//! and presence through other nodes ([`ClusterNode`], the bus's `Node`).

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::sequencer::{Post, Sequencer};
use super::*;

/// Events waiting for their room to load, at most this many per room;
/// past it they are dropped, and the next event's gap repairs them from
/// the stream.
const PENDING_PER_ROOM: usize = 10_000;

/// The cluster's sequencer: posts go through Redis.
pub struct Cluster {
    bus: Arc<RedisBus>,
    /// Posts sent to the bus and not yet stored here, by post id.
    waiters: DashMap<u64, Waiter>,
    next_pid: AtomicU64,
    /// Events from the bus for rooms being loaded, in arrival order: one
    /// slow load must not hold the subscriber (and every other room's
    /// events) behind it.
    pending: DashMap<String, Vec<Ordered>>,
}

impl Cluster {
    pub fn new(bus: Arc<RedisBus>) -> Arc<Cluster> {
        Arc::new(Cluster {
            bus,
            waiters: DashMap::new(),
            next_pid: AtomicU64::new(1),
            pending: DashMap::new(),
        })
    }

    /// The bus this sequencer publishes through.
    pub fn bus(&self) -> &Arc<RedisBus> {
        &self.bus
    }

    /// Takes an event ordered by the bus: stores and delivers it in offset
    /// order, repairing any gap before it.
    fn accept(&self, hub: &Hub, room: &Arc<Room>, event: Event, pid: Option<u64>) -> Accepted {
        let queued = Queued {
            frame: protocol::event(&event),
            pid,
            effect: Effect::of(&event),
        };
        let accepted = room.accept(event.offset, queued, |offset, queued| {
            let pid = queued.pid;
            let waiter = pid
                .and_then(|pid| self.waiters.remove(&pid))
                .map(|(_, w)| w);
            hub.submit(room, offset, queued, waiter.clone(), None)
                .inspect_err(|_| {
                    // Not queued: put the waiter back for the retry.
                    if let (Some(pid), Some(waiter)) = (pid, waiter) {
                        self.waiters.insert(pid, waiter);
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

    /// An event from the bus (channel or stream copy). A loaded room takes
    /// it at once; otherwise it waits in the room's pending list while a
    /// task loads the room, so the subscriber goes on with other rooms.
    fn ingest(self: &Arc<Self>, hub: &Arc<Hub>, ordered: Ordered) {
        let Ok(name) = hub.kinds.parse(&ordered.event.room) else {
            return;
        };
        // Holding the list's shard lock: the loading task cannot finish
        // between this check and the push.
        if let Some(mut waiting) = self.pending.get_mut(name.as_str()) {
            if waiting.len() < PENDING_PER_ROOM {
                waiting.push(ordered);
            } else {
                tracing::warn!(room = %name, "too many events waiting for the room to load; the gap will be repaired");
            }
            return;
        }
        if let Some(room) = hub.loaded_room(name.as_str()) {
            let (cluster, hub) = (self.clone(), hub.clone());
            return cluster.take(&hub, room, ordered);
        }
        self.pending.insert(name.as_str().to_owned(), vec![ordered]);
        let (cluster, hub) = (self.clone(), hub.clone());
        tokio::spawn(async move { cluster.load_and_drain(&hub, &name).await });
    }

    /// Loads the room, then hands it every event that waited for it, in
    /// order, until none is left.
    async fn load_and_drain(self: &Arc<Self>, hub: &Arc<Hub>, name: &RoomName) {
        let room = match hub.room(name).await {
            Ok(room) => room,
            Err(err) => {
                self.pending.remove(name.as_str());
                tracing::warn!(room = %name, error = %err, "cannot load room for bus events; the next event or reconnect catches up");
                return;
            }
        };
        loop {
            let batch = self
                .pending
                .get_mut(name.as_str())
                .map(|mut waiting| std::mem::take(&mut *waiting))
                .unwrap_or_default();
            if batch.is_empty() {
                if self
                    .pending
                    .remove_if(name.as_str(), |_, waiting| waiting.is_empty())
                    .is_some()
                    || !self.pending.contains_key(name.as_str())
                {
                    return;
                }
                continue;
            }
            for ordered in batch {
                self.clone().take(hub, room.clone(), ordered);
            }
        }
    }

    /// Checks the epoch and accepts the event into the loaded room.
    fn take(self: Arc<Self>, hub: &Arc<Hub>, room: Arc<Room>, ordered: Ordered) {
        if ordered.event.epoch != room.epoch() {
            tracing::error!(room = %room.name(), ours = room.epoch(), theirs = %ordered.event.epoch, "epoch mismatch; event ignored");
            return;
        }
        let pid = self.bus.is_mine(&ordered).then_some(ordered.pid);
        // Synchronous unless the room closed meanwhile or the event
        // duplicates a stored one (rare): only then a task.
        match self.accept(hub, &room, ordered.event.clone(), pid) {
            Accepted::Queued => {}
            Accepted::Gap { from, to } => self.spawn_repair(hub, room, from, to),
            Accepted::Closed | Accepted::Duplicate => {
                let hub = hub.clone();
                tokio::spawn(async move {
                    self.accept_reloading(&hub, &room, ordered.event, pid).await
                });
            }
        }
    }

    /// [`Cluster::accept`], loading the room again if it was unloaded
    /// meanwhile, and repairing any gap the event reveals.
    async fn accept_reloading(
        self: &Arc<Self>,
        hub: &Arc<Hub>,
        room: &Arc<Room>,
        event: Event,
        pid: Option<u64>,
    ) {
        let mut room = room.clone();
        loop {
            match self.accept(hub, &room, event.clone(), pid) {
                Accepted::Closed => match hub.room(room.name()).await {
                    Ok(fresh) => room = fresh,
                    Err(err) => {
                        tracing::warn!(room = %room.name(), error = %err, "cannot reload room for an event");
                        return;
                    }
                },
                Accepted::Gap { from, to } => return self.spawn_repair(hub, room, from, to),
                Accepted::Duplicate => {
                    // Stored through another path first (a peer's history
                    // carries no post id): the poster still gets its ack.
                    let waiter = pid.and_then(|pid| self.waiters.remove(&pid));
                    if let Some((_, waiter)) = waiter {
                        hub.ack_when_stored(&room, event.offset, waiter).await;
                    }
                    return;
                }
                Accepted::Queued => return,
            }
        }
    }

    fn spawn_repair(self: &Arc<Self>, hub: &Arc<Hub>, room: Arc<Room>, from: u64, to: u64) {
        if !room.start_repair() {
            return;
        }
        let (cluster, hub) = (self.clone(), hub.clone());
        tokio::spawn(async move {
            // Peers may not be known yet (a node that just started hears
            // their heartbeats within `heartbeat`): retry with backoff.
            let mut backoff = REPAIR_BACKOFF_MIN;
            let deadline = Instant::now() + REPAIR_GIVE_UP;
            loop {
                let from = from.max(room.next_offset());
                cluster.repair(&hub, &room, from, to).await;
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
    async fn repair(&self, hub: &Arc<Hub>, room: &Arc<Room>, from: u64, to: u64) {
        let name = room.name().to_string();
        tracing::info!(room = %name, from, to, "repairing a gap");
        match self.bus.stream_range(&name, from, to).await {
            Ok(events) => {
                for ordered in events {
                    if ordered.event.epoch == room.epoch() {
                        // The stream copy acks this node's own posts too.
                        let pid = self.bus.is_mine(&ordered).then_some(ordered.pid);
                        self.accept(hub, room, ordered.event, pid);
                    }
                }
            }
            Err(err) => tracing::warn!(room = %name, error = %err, "stream read failed"),
        }
        if room.next_offset() > to {
            return;
        }
        for (node, url) in self.bus.peers() {
            if let Err(err) = self.fetch_from_peer(hub, room, &url, to).await {
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
        hub: &Arc<Hub>,
        room: &Arc<Room>,
        url: &str,
        to: u64,
    ) -> Result<(), crate::client::ClientError> {
        let now = crate::auth::now_secs();
        let token = hub
            .keyring
            .mint(&Claims {
                sub: format!("{}{}", crate::auth::NODE_USER_PREFIX, hub.config.node_id),
                name: hub.config.node_id.clone(),
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
        let limit = u32::try_from(hub.config.history_page_max).unwrap_or(200);
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
                self.accept(hub, room, event, None);
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
    async fn catch_up(self: &Arc<Self>, hub: &Arc<Hub>, name: &str) {
        let Ok(room_name) = hub.kinds.parse(name) else {
            return;
        };
        if let Ok(room) = hub.room(&room_name).await {
            self.catch_up_room(hub, room).await;
        }
    }

    async fn catch_up_room(self: &Arc<Self>, hub: &Arc<Hub>, room: Arc<Room>) {
        match self.bus.room_offset(room.name().as_str()).await {
            Ok(Some(offset)) if offset >= room.next_offset() => {
                let from = room.next_offset();
                self.spawn_repair(hub, room, from, offset);
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(room = %room.name(), error = %err, "cannot read the room's offset")
            }
        }
    }

    /// Orders the post through Redis, then stores and acks it like any
    /// event from the bus.
    async fn publish(
        self: &Arc<Self>,
        hub: &Arc<Hub>,
        room: &Arc<Room>,
        post: Post<'_>,
    ) -> Result<(), HubError> {
        let Post {
            from,
            body,
            key,
            waiter,
        } = post;
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed);
        if let Some(waiter) = waiter.clone() {
            self.waiters.insert(pid, waiter);
        }
        let head = room.next_offset().saturating_sub(1);
        let redacted = match &body {
            Body::Moderation {
                action: protocol::ModAction::Redact { offset, .. },
                ..
            } => Some(*offset),
            _ => None,
        };
        let idempotency = key.map(|k| (from.id.as_str(), k));
        let published = self
            .bus
            .publish(
                room.name(),
                room.epoch(),
                head,
                from,
                body,
                pid,
                idempotency,
            )
            .await;
        match published {
            Ok(Published::New(event)) => {
                self.accept_reloading(hub, room, *event, Some(pid)).await;
                if let Some(target) = redacted {
                    // The stream still holds the message as posted.
                    let mut offsets = vec![target];
                    offsets.extend(room.linked(target));
                    let (bus, name) = (self.bus.clone(), room.name().to_string());
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
                    hub.ack_when_stored(room, offset, waiter).await;
                }
                // It may not have reached this node yet.
                self.catch_up_room(hub, room.clone()).await;
                Ok(())
            }
            Err(err) => {
                // A copy of the event (channel or stream) may have arrived
                // and taken the waiter before this error: Redis did order
                // it, and that copy's commit acks it. One reply only.
                if self.waiters.remove(&pid).is_none() && waiter.is_some() {
                    tracing::info!(error = %err, "publish reply lost, but the post was ordered and is acked");
                    return Ok(());
                }
                Err(err.into())
            }
        }
    }
}

/// The sequencer handle the hub holds: `Arc<Cluster>`, so spawned work
/// (repairs, loads) can keep it.
pub struct ClusterSequencer(pub Arc<Cluster>);

impl Sequencer for ClusterSequencer {
    fn post<'a>(
        &'a self,
        hub: &'a Arc<Hub>,
        room: &'a Arc<Room>,
        post: Post<'a>,
    ) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(self.0.publish(hub, room, post))
    }

    fn ack_known<'a>(
        &'a self,
        hub: &'a Arc<Hub>,
        room: &'a Arc<Room>,
        user: &'a str,
        key: &'a str,
        waiter: Waiter,
    ) -> BoxFuture<'a, Result<bool, HubError>> {
        Box::pin(async move {
            let known = self
                .0
                .bus
                .known_post(room.name().as_str(), user, key)
                .await?;
            let Some(offset) = known else {
                return Ok(false);
            };
            hub.ack_when_stored(room, offset, waiter).await;
            Ok(true)
        })
    }

    fn epoch_of_new_room<'a>(
        &'a self,
        room: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, HubError>> {
        Box::pin(async move {
            let (epoch, _) = self
                .0
                .bus
                .ensure_room(room, &crate::ids::new_epoch())
                .await?;
            Ok(Some(epoch))
        })
    }

    fn known_elsewhere<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<bool, HubError>> {
        Box::pin(async move { Ok(self.0.bus.room_offset(room).await?.is_some()) })
    }

    fn rooms_elsewhere<'a>(
        &'a self,
        class: &'a str,
        kind: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, HubError>> {
        Box::pin(async move { Ok(self.0.bus.rooms_of(class, kind).await?) })
    }

    fn loaded(&self, hub: &Arc<Hub>, room: &Arc<Room>) {
        let (cluster, hub, room) = (self.0.clone(), hub.clone(), room.clone());
        tokio::spawn(async move { cluster.catch_up_room(&hub, room).await });
    }

    fn replicated(&self) -> bool {
        true
    }

    fn announce_presence(&self, room: &str, user: &UserInfo, present: bool) {
        self.0.bus.announce_presence(room, user, present);
    }

    fn forget<'a>(
        &'a self,
        room: &'a str,
        offsets: &'a [u64],
    ) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(async move { Ok(self.0.bus.forget(room, offsets).await?) })
    }

    fn share_directory<'a>(
        &'a self,
        version: u64,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(async move {
            self.0.bus.put_directory(version, &bytes).await?;
            Ok(())
        })
    }

    fn retry_after(&self, err: &HubError) -> Option<Duration> {
        match err {
            HubError::Bus(_) => Some(self.0.bus.retry_after().unwrap_or(Duration::from_secs(1))),
            _ => None,
        }
    }

    fn expire_waiters(&self, now: Instant, timeout: Duration) {
        self.0.waiters.retain(|_, waiter| {
            if now.duration_since(waiter.since) < timeout {
                return true;
            }
            waiter.out.send(protocol::error(
                waiter.id,
                ErrorCode::Unavailable,
                NOT_STORED_IN_TIME,
            ));
            false
        });
    }
}

impl Hub {
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

    /// `user` became present (or absent) in `room` through `node`.
    pub async fn remote_presence(
        self: &Arc<Self>,
        node: &str,
        room: &str,
        user: UserInfo,
        present: bool,
    ) {
        let Ok(name) = self.kinds.parse(room) else {
            return;
        };
        if let Ok(room) = self.room(&name).await {
            let id = user.id.clone();
            room.remote_presence(node, &id, present.then_some(user));
        }
    }

    /// Everyone present in each room through `node`.
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
            let Ok(name) = self.kinds.parse(&room) else {
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
}

/// The hub as the bus sees it (`bus::Node`): the bus depends on that
/// trait, not on the hub.
#[derive(Clone)]
pub struct ClusterNode {
    pub hub: Arc<Hub>,
    pub cluster: Arc<Cluster>,
}

impl crate::bus::Node for ClusterNode {
    async fn ingest(&self, ordered: Ordered) {
        self.cluster.ingest(&self.hub, ordered);
    }

    async fn catch_up(&self, room: String) {
        self.cluster.catch_up(&self.hub, &room).await;
    }

    async fn stored_heads(&self) -> Vec<(String, String, u64)> {
        self.hub.stored_heads().await
    }

    fn local_presence(&self) -> Vec<(String, Vec<UserInfo>)> {
        self.hub.local_presence()
    }

    async fn remote_presence(&self, from: String, room: String, user: UserInfo, present: bool) {
        self.hub.remote_presence(&from, &room, user, present).await;
    }

    async fn remote_snapshot(&self, from: String, rooms: Vec<(String, Vec<UserInfo>)>) {
        self.hub.remote_snapshot(&from, rooms).await;
    }

    fn drop_node(&self, from: &str) {
        self.hub.drop_node(from);
    }

    fn directory_version(&self) -> u64 {
        self.hub.directory.current().version()
    }

    fn directory_bytes(&self) -> Option<Vec<u8>> {
        self.hub.directory.encoded()
    }

    async fn install_directory(&self, bytes: Vec<u8>) {
        self.hub.install_directory(bytes).await;
    }
}

/// Gap repair retries from this delay, doubling up to the max, and gives
/// up after [`REPAIR_GIVE_UP`] (the next event or reconnect tries again).
const REPAIR_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(100);
const REPAIR_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(2);
const REPAIR_GIVE_UP: std::time::Duration = std::time::Duration::from_secs(60);
