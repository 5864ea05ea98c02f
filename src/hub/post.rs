//! The post pipeline: order (here, or through the bus), store, then ack
//! and fan out once durable (`Done`); idempotency keys and acks that wait
//! for an offset.

use super::*;

impl Hub {
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
                // Sequenced since the room loaded (maybe still being
                // written): the room answers, and registers the waiter.
                let now = (self.clock)();
                let ack_to = waiter.as_ref().map(|w| (&w.out, w.id));
                if let Some(known) = room.known_key(now, window_ms, (&from.id, key), ack_to) {
                    if let (
                        Keyed::Known {
                            offset,
                            ts,
                            waiting: false,
                        },
                        Some(waiter),
                    ) = (known, &waiter)
                    {
                        waiter.ack(room, offset, ts);
                    }
                    return Ok(());
                }
                // Stored before this room was loaded (or before a
                // restart): durable, since every write of this load is in
                // the room's own record above.
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
                let ack_to = waiter.as_ref().map(|w| (&w.out, w.id));
                let sequenced = match key {
                    None => room.sequence(now, queue)?.map(Keyed::New),
                    Some(key) => {
                        room.sequence_keyed(now, window_ms, (&from.id, key), ack_to, queue)?
                    }
                };
                match sequenced {
                    Some(Keyed::New(_)) => return Ok(()),
                    Some(Keyed::Known {
                        offset,
                        ts,
                        waiting,
                    }) => {
                        if let (false, Some(waiter)) = (waiting, &waiter) {
                            waiter.ack(&room, offset, ts);
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
        let window = u64::try_from(self.config.idempotency_window.as_millis()).unwrap_or(u64::MAX);
        let offset = match self.bus() {
            Some(bus) => bus.known_post(room.name().as_str(), &from.id, key).await?,
            None => {
                match room.known_key((self.clock)(), window, (&from.id, key), Some((out, id))) {
                    Some(Keyed::Known {
                        offset,
                        ts,
                        waiting,
                    }) => {
                        if !waiting {
                            waiter.ack(room, offset, ts);
                        }
                        return Ok(true);
                    }
                    Some(Keyed::New(_)) => return Ok(false),
                    None => {
                        let store = self.store.clone();
                        let (name, user, post_key) =
                            (room.name().to_string(), from.id.clone(), key.to_owned());
                        let since = (self.clock)().saturating_sub(window);
                        tokio::task::spawn_blocking(move || {
                            store.find_post(&name, &user, &post_key, since)
                        })
                        .await??
                        .map(|known| known.offset)
                    }
                }
            }
        };
        let Some(offset) = offset else {
            return Ok(false);
        };
        self.ack_when_stored(room, offset, waiter).await;
        Ok(true)
    }

    /// Acks `offset` of `room` to `waiter` once stored here (now, if it
    /// already is).
    pub(super) async fn ack_when_stored(&self, room: &Arc<Room>, offset: u64, waiter: Waiter) {
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
    pub(super) fn submit(
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
        let cluster = self.bus().is_some();
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
                    cluster,
                };
                done.deliver(waiter, offset, &done_frame, effect, result)
            }),
        })
    }
}

/// What the store's writer thread needs once an event is durable (or not).
struct Done<'a> {
    room: &'a Arc<Room>,
    store: &'a Arc<Store>,
    metrics: &'a Arc<Metrics>,
    runtime: Option<&'a tokio::runtime::Handle>,
    /// Cluster mode: the event was ordered by Redis, so it exists
    /// cluster-wide even if this node failed to write it.
    cluster: bool,
}
impl Done<'_> {
    /// Acks, fans out, and applies the event's effect (checkpointing the
    /// room's moderation state and writing a redaction's tombstone).
    pub(super) fn deliver(
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
            if let Some(Effect::Redact {
                target,
                tombstone,
                by,
                reason,
                ..
            }) = &effect
            {
                room.release_redaction(*target);
                // Ordered cluster-wide: every other node redacts the
                // message, so this one must not keep its text either.
                if self.cluster {
                    room.add_pending_tombstone(PendingTombstone {
                        target: *target,
                        tombstone: tombstone.clone(),
                        edits: room.post_edits(*target),
                        by: by.clone(),
                        reason: reason.clone(),
                    });
                }
            }
            room.skip(offset, waiter.as_ref().map(|w| (&w.out, w.id)), |id| {
                protocol::error(id, ErrorCode::StorageError, message.clone())
            });
            return;
        }
        // Storage works again: tombstones a failure left behind first.
        self.write_pending_tombstones();
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
                // Written again at the next commit; until then no
                // checkpoint covers the redaction, so a reload replays it.
                tracing::error!(room = %room.name(), error = %err, "cannot write a tombstone; retrying at the next write");
                room.add_pending_tombstone(PendingTombstone {
                    target: *target,
                    tombstone: tombstone.clone(),
                    edits,
                    by: by.clone(),
                    reason: reason.clone(),
                });
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
        if let Some(state) = committed
            .moderation
            .filter(|_| !room.has_pending_tombstones())
        {
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
    fn write_pending_tombstones(&self) {
        write_pending_tombstones(self.store, self.room);
    }

    pub(super) fn store_version(&self, version: NewVersion) {
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

/// Writes the tombstones a storage failure left behind in `room`; those
/// that fail again wait for the next commit or sweep. Blocking.
pub(super) fn write_pending_tombstones(store: &Store, room: &Room) {
    for pending in room.take_pending_tombstones() {
        let written = redact_stored(
            store,
            room.name().as_str(),
            (pending.target, &pending.tombstone),
            &pending.edits,
            &pending.by,
            pending.reason.as_deref(),
        );
        if let Err(err) = written {
            tracing::warn!(room = %room.name(), error = %err, "tombstone still not written");
            room.add_pending_tombstone(pending);
        }
    }
}
