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
        self.sequencer
            .post(
                self,
                room,
                Post {
                    from,
                    body,
                    key,
                    waiter,
                },
            )
            .await
    }

    /// The idempotency window in milliseconds.
    pub(super) fn window_ms(&self) -> u64 {
        u64::try_from(self.config.idempotency_window.as_millis()).unwrap_or(u64::MAX)
    }

    /// A post of `user` with `key` stored in `room` within the window
    /// (before this load of the room, or before a restart).
    pub(super) async fn find_post(
        &self,
        room: &Room,
        user: &str,
        key: &str,
    ) -> Result<Option<crate::store::KnownPost>, HubError> {
        let store = self.store.clone();
        let (name, user, key) = (room.name().to_string(), user.to_owned(), key.to_owned());
        let since = (self.clock)().saturating_sub(self.window_ms());
        Ok(
            tokio::task::spawn_blocking(move || store.find_post(&name, &user, &key, since))
                .await??,
        )
    }

    /// If `from` already posted to `room` with idempotency key `key` (within
    /// the window), has `out` get that post's ack (request `id`) and
    /// returns true.
    pub async fn ack_known(
        self: &Arc<Self>,
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
        self.sequencer
            .ack_known(self, room, &from.id, key, waiter)
            .await
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
        let cluster = self.sequencer.replicated();
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
                        edits: room.linked(*target),
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
            let edits = room.linked(*target);
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
        // The kind's work: inline ones first, in order (a version is
        // stored before a compaction may delete the event it came from),
        // then long ones on the blocking pool.
        let (inline, off_writer): (Vec<_>, Vec<_>) =
            committed.chores.into_iter().partition(|c| !c.off_writer);
        for chore in inline {
            run_chore(self.store, self.metrics, room, chore);
        }
        for chore in off_writer {
            let (store, metrics, room) = (self.store.clone(), self.metrics.clone(), room.clone());
            let run = move || run_chore(&store, &metrics, &room, chore);
            match self.runtime {
                Some(runtime) => drop(runtime.spawn_blocking(run)),
                None => run(),
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
}

/// Runs a kind's chore. Blocking.
pub(super) fn run_chore(store: &Store, metrics: &Metrics, room: &Arc<Room>, chore: Chore) {
    (chore.run)(&ChoreContext {
        store,
        metrics,
        room,
    });
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
