//! Who hands out a room's offsets: this node alone ([`Local`], the
//! default) or the cluster through Redis (`cluster::Cluster`). The one
//! seam where single-node and cluster mode differ; the rest of the hub
//! calls the trait and never asks which mode it runs in.
//!
//! Boxed futures: one allocation per post, invisible next to the frame
//! encoding and the sled write each post costs: the `revision` benchmark's
//! CPU per delivery, before and after this seam replaced the
//! `Option<RedisBus>` branches, median ratio 1.01 over 6 rounds (noise
//! ±13%; `benches/results/ab/`).

use std::time::Duration;

use futures_util::future::BoxFuture;

use super::*;

/// One post to order: who, what, the client's idempotency key, and who
/// gets the ack once it is durable here.
pub struct Post<'a> {
    pub from: &'a UserInfo,
    pub body: Body,
    pub key: Option<&'a str>,
    pub waiter: Option<Waiter>,
}

/// How a room's events get their offsets, and what else differs when
/// several nodes share the rooms.
pub trait Sequencer: Send + Sync + 'static {
    /// Orders the post, has it stored, and acks it to its waiter once
    /// durable. An error means nothing was ordered, except bus errors
    /// (see [`Hub::post`]).
    fn post<'a>(
        &'a self,
        hub: &'a Arc<Hub>,
        room: &'a Arc<Room>,
        post: Post<'a>,
    ) -> BoxFuture<'a, Result<(), HubError>>;

    /// If `user` already posted to `room` with `key` (within the window),
    /// has `waiter` get that post's ack and returns true.
    fn ack_known<'a>(
        &'a self,
        hub: &'a Arc<Hub>,
        room: &'a Arc<Room>,
        user: &'a str,
        key: &'a str,
        waiter: Waiter,
    ) -> BoxFuture<'a, Result<bool, HubError>>;

    /// The epoch of a room this node has never stored: `None` lets the
    /// node make one (nobody else can have the room).
    fn epoch_of_new_room<'a>(
        &'a self,
        room: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, HubError>>;

    /// Whether another node created the room (never creates it).
    fn known_elsewhere<'a>(&'a self, room: &'a str) -> BoxFuture<'a, Result<bool, HubError>>;

    /// Rooms of `class` and `kind` opened on other nodes.
    fn rooms_elsewhere<'a>(
        &'a self,
        class: &'a str,
        kind: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, HubError>>;

    /// A room was just loaded here: catch up with what others stored.
    fn loaded(&self, hub: &Arc<Hub>, room: &Arc<Room>);

    /// Whether an ordered event exists beyond this node (so a failure to
    /// store it here does not un-order it).
    fn replicated(&self) -> bool;

    /// Tells other nodes about a local presence change.
    fn announce_presence(&self, room: &str, user: &UserInfo, present: bool);

    /// Deletes events from whatever copy of the room's log lives outside
    /// this node's store (Redis's stream), after a redaction or erasure.
    fn forget<'a>(
        &'a self,
        room: &'a str,
        offsets: &'a [u64],
    ) -> BoxFuture<'a, Result<(), HubError>>;

    /// After a post refused with `err`: how long the client should wait.
    /// A directory version this node applied, for the other nodes
    /// (cluster mode: through Redis; alone: nothing to do).
    fn share_directory<'a>(
        &'a self,
        version: u64,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), HubError>>;

    fn retry_after(&self, err: &HubError) -> Option<Duration>;

    /// Answers posts that waited for their ack longer than `timeout`.
    fn expire_waiters(&self, now: Instant, timeout: Duration);
}

/// Single node: the room orders its own posts (`Room::sequence`).
pub struct Local;

impl Sequencer for Local {
    fn post<'a>(
        &'a self,
        hub: &'a Arc<Hub>,
        room: &'a Arc<Room>,
        post: Post<'a>,
    ) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(local_post(hub, room, post))
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
            let window = hub.window_ms();
            let ack_to = Some((&waiter.out, waiter.id));
            let offset = match room.known_key((hub.clock)(), window, (user, key), ack_to) {
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
                None => hub.find_post(room, user, key).await?.map(|k| k.offset),
            };
            let Some(offset) = offset else {
                return Ok(false);
            };
            hub.ack_when_stored(room, offset, waiter).await;
            Ok(true)
        })
    }

    fn epoch_of_new_room<'a>(
        &'a self,
        _room: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, HubError>> {
        Box::pin(async { Ok(None) })
    }

    fn known_elsewhere<'a>(&'a self, _room: &'a str) -> BoxFuture<'a, Result<bool, HubError>> {
        Box::pin(async { Ok(false) })
    }

    fn rooms_elsewhere<'a>(
        &'a self,
        _class: &'a str,
        _kind: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, HubError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn loaded(&self, _hub: &Arc<Hub>, _room: &Arc<Room>) {}

    fn replicated(&self) -> bool {
        false
    }

    fn announce_presence(&self, _room: &str, _user: &UserInfo, _present: bool) {}

    fn forget<'a>(
        &'a self,
        _room: &'a str,
        _offsets: &'a [u64],
    ) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(async { Ok(()) })
    }

    fn retry_after(&self, _err: &HubError) -> Option<Duration> {
        None
    }

    fn share_directory<'a>(
        &'a self,
        _version: u64,
        _bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<(), HubError>> {
        Box::pin(async { Ok(()) })
    }

    fn expire_waiters(&self, _now: Instant, _timeout: Duration) {}
}

async fn local_post(hub: &Arc<Hub>, room: &Arc<Room>, post: Post<'_>) -> Result<(), HubError> {
    let Post {
        from,
        body,
        key,
        waiter,
    } = post;
    let window_ms = hub.window_ms();
    if let Some(key) = key {
        // Sequenced since the room loaded (maybe still being written): the
        // room answers, and registers the waiter.
        let ack_to = waiter.as_ref().map(|w| (&w.out, w.id));
        if let Some(known) = room.known_key((hub.clock)(), window_ms, (&from.id, key), ack_to) {
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
        // Stored before this room was loaded (or before a restart):
        // durable, since every write of this load is in the room's own
        // record above.
        if let Some(known) = hub.find_post(room, &from.id, key).await? {
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
            hub.submit(&room, offset, queued, waiter.clone(), idempotency)
        };
        let now = (hub.clock)();
        let ack_to = waiter.as_ref().map(|w| (&w.out, w.id));
        let sequenced = match key {
            None => room.sequence(now, queue)?.map(Keyed::New),
            Some(key) => room.sequence_keyed(now, window_ms, (&from.id, key), ack_to, queue)?,
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
            None => room = hub.room(room.name()).await?,
        }
    }
}
