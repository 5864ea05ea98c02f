//! What arrives from the bus in cluster mode: ordered events (`accept`,
//! in offset order, gaps repaired from the stream then from peers),
//! catch-up, and presence through other nodes; `bus::Node` for the hub.

use super::*;

impl Hub {
    /// Takes an event ordered by the bus: stores and delivers it in offset
    /// order, repairing any gap before it.
    pub(super) fn accept(&self, room: &Arc<Room>, event: Event, pid: Option<u64>) -> Accepted {
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
    pub(super) async fn accept_reloading(
        self: &Arc<Self>,
        room: &Arc<Room>,
        event: Event,
        pid: Option<u64>,
    ) {
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

    pub(super) fn spawn_repair(self: &Arc<Self>, room: Arc<Room>, from: u64, to: u64) {
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
    pub(super) async fn repair(self: &Arc<Self>, room: &Arc<Room>, from: u64, to: u64) {
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
    pub(super) async fn fetch_from_peer(
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

    pub(super) async fn catch_up_room(self: &Arc<Self>, room: Arc<Room>) {
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
