//! A loaded room: its sequence of offsets, its delivered head, its members
//! and their presence (on this node and, in cluster mode, on others).
//!
//! One mutex guards a room's state. It is held only for short, non-blocking
//! work (assigning or accepting an offset and queueing its store job,
//! queueing frames with `Outbound::send`, which never blocks) and never
//! across an `.await`. Store jobs are queued under this lock in offset order
//! and the store runs callbacks in queue order, so [`Room::commit`] sees a
//! room's offsets in increasing order: offset order is delivery order.

pub mod kind;
pub mod name;
pub mod policy;

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::moderation::{Moderation, Refused};
use crate::outbound::{ConnId, Outbound};
use crate::protocol::{self, Presence, PresenceAction, UserInfo};

pub use crate::effect::{edit_tombstone, Effect};
pub use kind::withheld;
pub use kind::{
    Bundle, Chore, ChoreContext, Commit, CommitRefusal, Due, Erasure, KindState, Kinds,
    LoadContext, NoState, Retention, RoomKind, Viewer,
};
pub use name::{RoomName, RoomNameError};

/// Events buffered for a member whose join (with recovery) is in progress
/// before it counts as a slow consumer.
const MAX_PENDING: usize = 10_000;
/// Events from other nodes held while an earlier gap is repaired; beyond
/// this they are dropped and fetched again by the repair.
const MAX_AHEAD: usize = 10_000;

struct Member {
    user: UserInfo,
    /// A parent's children: kinds that filter (`RoomKind::shown`) show a
    /// parent what is their children's.
    children: std::sync::Arc<[String]>,
    /// `Viewer::moderator`, decided when joining.
    moderator: bool,
    out: Outbound,
    /// `Some` while a recovering join reads history: live events wait here so
    /// they follow the replayed ones with no gap and no duplicate.
    pending: Option<Vec<Bytes>>,
}

impl Member {
    /// Queues a frame, or holds it back while the member's recovering join
    /// is in progress (it then follows the join reply). False if refused.
    fn deliver(&mut self, frame: &Bytes) -> bool {
        match &mut self.pending {
            Some(pending) if pending.len() < MAX_PENDING => {
                pending.push(frame.clone());
                true
            }
            Some(_) => {
                self.out.mark_slow();
                false
            }
            None => self.out.send(frame.clone()),
        }
    }
}

struct State {
    /// The next offset to queue for storage (and, on a single node, to assign).
    next_offset: u64,
    /// The last offset delivered (stored and fanned out); 0 when empty.
    head: u64,
    /// The last offset removed by retention: history starts at `floor + 1`.
    floor: u64,
    /// Offsets queued for storage whose write has not completed yet.
    in_flight: u64,
    /// The last event timestamp given: timestamps never go down within a
    /// room, even if the wall clock does.
    last_ts: u64,
    /// Events from the bus that arrived ahead of `next_offset`.
    ahead: BTreeMap<u64, Queued>,
    /// Mutes, bans, slow mode, read-only, as of the last committed event.
    moderation: Moderation,
    /// What the room's kind derives from its events, as of the last
    /// committed event (a forum's thread index, a note's document).
    kind: Box<dyn KindState>,
    /// When each user last posted here (slow mode; this node only).
    last_post: HashMap<String, tokio::time::Instant>,
    /// Offsets with a redaction accepted here but not yet committed, so a
    /// second request for the same message is refused.
    redacting: std::collections::HashSet<u64>,
    /// A gap repair is running for this room.
    repairing: bool,
    members: HashMap<ConnId, Member>,
    /// Connections per user on this node (a user with two tabs is one member).
    users: HashMap<String, usize>,
    /// Users present through other nodes: node id → user id → user.
    remote: HashMap<String, HashMap<String, UserInfo>>,
    /// Past this many present users, presence is not broadcast and the
    /// join reply lists no members (only their count).
    presence_limit: usize,
    /// Set when the hub unloads the room; a closed room takes no one.
    closed: bool,
    /// Posts sent with an idempotency key since the room loaded (single
    /// node; the store answers for earlier ones): (user, key) → offset
    /// and ts, oldest first in `keys_order` for expiry.
    keys: HashMap<(String, String), (u64, u64)>,
    keys_order: std::collections::VecDeque<(u64, (String, String))>,
    /// Connections waiting for the ack of an offset besides its poster's
    /// (a retry of an in-flight keyed post; in cluster mode, a post stored
    /// here through another path than the one that carried its waiter).
    ack_waiting: HashMap<u64, Vec<AckWaiter>>,
    /// Redactions whose tombstone could not be written (storage failing):
    /// written again at the next successful commit, and meanwhile no
    /// moderation checkpoint is saved, so a reload replays them.
    pending_tombstones: Vec<PendingTombstone>,
}

/// A connection waiting for the ack of an offset: who, its request id,
/// since when (the sweep answers those waiting too long).
type AckWaiter = (Outbound, Option<u32>, tokio::time::Instant);

/// A redaction's tombstones to write again (see `State::pending_tombstones`).
#[derive(Debug, Clone)]
pub struct PendingTombstone {
    pub target: u64,
    pub tombstone: Bytes,
    pub edits: Vec<u64>,
    pub by: UserInfo,
    pub reason: Option<String>,
}

impl State {
    fn present(&self, user: &str) -> bool {
        self.users.contains_key(user) || self.remote.values().any(|m| m.contains_key(user))
    }

    /// Users present (a user present here and through another node counts
    /// twice: only used against the presence limit).
    fn present_count(&self) -> usize {
        self.users.len() + self.remote.values().map(HashMap::len).sum::<usize>()
    }

    /// Tells members that `user` came or went, unless the room is past its
    /// presence limit: in a room of thousands, every join reaching every
    /// member is quadratic, and a list that long helps nobody.
    fn announce(&mut self, room: &RoomName, action: PresenceAction, user: &UserInfo) {
        if self.present_count() > self.presence_limit {
            return;
        }
        let frame = protocol::presence(&Presence {
            room: room.to_string(),
            action,
            user: user.clone(),
        });
        for member in self.members.values_mut() {
            member.deliver(&frame);
        }
    }
}

/// An event on its way to storage: its frame, the post id its origin node
/// acks by, and its effect on the room.
#[derive(Debug, Clone)]
pub struct Queued {
    pub frame: Bytes,
    pub pid: Option<u64>,
    pub effect: Option<Effect>,
}

/// What [`Room::sequence_keyed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyed {
    /// Sequenced at this offset.
    New(u64),
    /// Already sequenced: delivered (`waiting` false: the caller acks it),
    /// or still being written (`waiting`: the waiter given was registered).
    Known { offset: u64, ts: u64, waiting: bool },
}

/// What [`Room::accept`] did with an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Queued for storage (with any buffered successors).
    Queued,
    /// Already queued or stored: ignored.
    Duplicate,
    /// Ahead of the next expected offset: buffered; `from..=to` is missing.
    Gap { from: u64, to: u64 },
    /// The room was unloaded meanwhile: load it again and retry.
    Closed,
}

pub struct Room {
    name: RoomName,
    epoch: String,
    state: Mutex<State>,
}

/// What a joining connection learns under the room's lock.
pub struct Joined {
    pub head: u64,
    pub floor: u64,
    /// Everyone present, or nobody past the presence limit.
    pub members: Vec<UserInfo>,
    /// How many users are present.
    pub member_count: u64,
    /// Pinned message offsets, ascending.
    pub pinned: Vec<u64>,
    /// Only moderators may write.
    pub read_only: bool,
    /// This is the user's first connection to the room on this node.
    pub first_here: bool,
}

/// What [`Room::leave`] did.
pub struct Left {
    /// The room has no local member left.
    pub empty: bool,
    /// The user's last connection to the room on this node left.
    pub last_here: Option<UserInfo>,
}

/// What [`Room::commit`] did and what is left to do.
#[derive(Default)]
pub struct Committed {
    /// Counts what fan-out did, for metrics.
    pub delivery: Delivery,
    /// The moderation state to checkpoint, if the event changed it.
    pub moderation: Option<Moderation>,
    /// Work the kind's state left (storing a version, compacting).
    pub chores: Vec<Chore>,
}

/// The error reply that replaces `ack` (an `ok` reply) when its event is
/// refused at commit: same request id.
fn refusal(ack: &Bytes, refused: &CommitRefusal) -> Bytes {
    let id = match protocol::decode_server_frame(ack) {
        Ok(protocol::ServerFrame::Ok { id, .. }) => id,
        _ => None,
    };
    protocol::error(id, refused.code, refused.message.clone())
}

/// What a kind's code sees of the room besides its own state
/// ([`Room::with_state`]).
pub struct View<'a> {
    /// The last offset delivered.
    pub head: u64,
    pub moderation: &'a Moderation,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Delivery {
    pub delivered: u64,
    pub refused: u64,
}

impl Room {
    pub fn new(
        name: RoomName,
        epoch: String,
        floor: u64,
        last_offset: u64,
        moderation: Moderation,
    ) -> Room {
        Room {
            name,
            epoch,
            state: Mutex::new(State {
                next_offset: last_offset + 1,
                head: last_offset,
                floor,
                in_flight: 0,
                last_ts: 0,
                ahead: BTreeMap::new(),
                moderation,
                kind: Box::new(NoState),
                last_post: HashMap::new(),
                redacting: std::collections::HashSet::new(),
                repairing: false,
                members: HashMap::new(),
                users: HashMap::new(),
                remote: HashMap::new(),
                presence_limit: usize::MAX,
                closed: false,
                keys: HashMap::new(),
                keys_order: std::collections::VecDeque::new(),
                ack_waiting: HashMap::new(),
                pending_tombstones: Vec::new(),
            }),
        }
    }

    /// Sets the state the room's kind derived from the stored events.
    pub fn with_kind(self, kind: Box<dyn KindState>) -> Room {
        self.state.lock().kind = kind;
        self
    }

    /// Runs `f` on the kind's state if it is a `T`, with the room's head
    /// and moderation state (under the room's lock: no I/O, nothing long).
    pub fn with_state<T: KindState, R>(&self, f: impl FnOnce(&mut T, &View<'_>) -> R) -> Option<R> {
        self.inspect(|kind, view| {
            let kind: &mut dyn std::any::Any = kind;
            kind.downcast_mut::<T>().map(|kind| f(kind, view))
        })
    }

    /// Runs `f` on the kind's state, whatever it is (under the room's lock).
    pub fn inspect<R>(&self, f: impl FnOnce(&mut dyn KindState, &View<'_>) -> R) -> R {
        let mut state = self.state.lock();
        let state = &mut *state;
        let view = View {
            head: state.head,
            moderation: &state.moderation,
        };
        f(state.kind.as_mut(), &view)
    }

    /// The events the kind's state has due at `now` (see
    /// [`KindState::take_due`]); nothing when the earliest is later.
    pub fn take_due(&self, now: u64) -> Vec<Due> {
        let mut state = self.state.lock();
        match state.kind.next_due() {
            Some(at) if at <= now => state.kind.take_due(now),
            _ => Vec::new(),
        }
    }

    /// Work the kind's state wants done before the room is unloaded.
    pub fn before_unload(&self) -> Option<Chore> {
        self.state.lock().kind.before_unload()
    }

    /// The room was loaded: its kind's state says so to the metrics.
    pub fn loaded(&self, metrics: &crate::metrics::Metrics) {
        self.state.lock().kind.loaded(metrics);
    }

    /// Sets the presence limit (see `Config::presence_limit`).
    pub fn with_presence_limit(self, limit: usize) -> Room {
        self.state.lock().presence_limit = limit;
        self
    }

    pub fn name(&self) -> &RoomName {
        &self.name
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// `(floor, head)`: history holds offsets `floor + 1 ..= head`.
    pub fn bounds(&self) -> (u64, u64) {
        let state = self.state.lock();
        (state.floor, state.head)
    }

    /// Retention removed events through `offset`.
    pub fn set_floor(&self, offset: u64) {
        let mut state = self.state.lock();
        state.floor = state.floor.max(offset);
    }

    /// Adds a connection. With `recovering`, live events are held back until
    /// [`Room::finish_join`]; otherwise `reply` is queued at once, before any
    /// live event. Returns `None` if the room was unloaded meanwhile.
    pub fn join(
        &self,
        user: &UserInfo,
        children: std::sync::Arc<[String]>,
        moderator: bool,
        out: &Outbound,
        recovering: bool,
        reply: impl FnOnce(&Joined) -> Option<Bytes>,
    ) -> Option<Joined> {
        let mut state = self.state.lock();
        if state.closed {
            return None;
        }
        let was_present = state.present(&user.id);
        let count = state.users.entry(user.id.clone()).or_insert(0);
        *count += 1;
        let first_here = *count == 1;
        if !was_present {
            state.announce(&self.name, PresenceAction::Join, user);
        }
        state.members.insert(
            out.conn(),
            Member {
                user: user.clone(),
                children,
                moderator,
                out: out.clone(),
                pending: recovering.then(Vec::new),
            },
        );
        let joined = Joined {
            head: state.head,
            floor: state.floor,
            members: if state.present_count() > state.presence_limit {
                Vec::new()
            } else {
                present_users(&state)
            },
            member_count: unique_present(&state) as u64,
            pinned: state.moderation.pinned.iter().copied().collect(),
            read_only: state.moderation.read_only,
            first_here,
        };
        if let Some(frame) = reply(&joined) {
            out.send(frame);
        }
        Some(joined)
    }

    /// Queues the join reply of a recovering member (outside its byte
    /// budget: the replay's size is capped by the caller), then the live
    /// events held back meanwhile, and lets live events flow to it directly.
    /// False if the member is gone meanwhile (a moderator removed it):
    /// the caller then answers the join itself.
    pub fn finish_join(&self, conn: ConnId, reply: Bytes) -> bool {
        let mut state = self.state.lock();
        let Some(member) = state.members.get_mut(&conn) else {
            return false;
        };
        let pending = member.pending.take().unwrap_or_default();
        member.out.send_unbudgeted(reply);
        for frame in pending {
            member.out.send(frame);
        }
        true
    }

    /// Removes a connection.
    pub fn leave(&self, conn: ConnId) -> Left {
        let mut state = self.state.lock();
        let Some(member) = state.members.remove(&conn) else {
            return Left {
                empty: state.members.is_empty(),
                last_here: None,
            };
        };
        let last_here = match state.users.get_mut(&member.user.id) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            _ => {
                state.users.remove(&member.user.id);
                true
            }
        };
        if last_here && !state.present(&member.user.id) {
            state.announce(&self.name, PresenceAction::Leave, &member.user);
        }
        Left {
            empty: state.members.is_empty(),
            last_here: last_here.then_some(member.user),
        }
    }

    /// A user became present (`Some`) or absent (`None`) in this room
    /// through `node`; local members hear of it if that changes whether the
    /// user is present at all.
    pub fn remote_presence(&self, node: &str, user_id: &str, user: Option<UserInfo>) {
        let mut state = self.state.lock();
        let before = state.present(user_id);
        let (after, info) = match user {
            Some(info) => {
                state
                    .remote
                    .entry(node.to_owned())
                    .or_default()
                    .insert(user_id.to_owned(), info.clone());
                (true, info)
            }
            None => {
                let Some(users) = state.remote.get_mut(node) else {
                    return;
                };
                let Some(info) = users.remove(user_id) else {
                    return;
                };
                if users.is_empty() {
                    state.remote.remove(node);
                }
                (state.present(user_id), info)
            }
        };
        match (before, after) {
            (false, true) => state.announce(&self.name, PresenceAction::Join, &info),
            (true, false) => state.announce(&self.name, PresenceAction::Leave, &info),
            _ => {}
        }
    }

    /// Replaces what `node` says is present here (a snapshot).
    pub fn remote_snapshot(&self, node: &str, users: Vec<UserInfo>) {
        let old: Vec<String> = {
            let state = self.state.lock();
            state
                .remote
                .get(node)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        };
        for id in old.iter().filter(|id| !users.iter().any(|u| &u.id == *id)) {
            self.remote_presence(node, id, None);
        }
        for user in users {
            let id = user.id.clone();
            self.remote_presence(node, &id, Some(user));
        }
    }

    /// Forgets everyone present through `node` (it died or left).
    pub fn drop_node(&self, node: &str) {
        self.remote_snapshot(node, Vec::new());
    }

    /// Users with a connection to this room on this node.
    pub fn local_users(&self) -> Vec<UserInfo> {
        let state = self.state.lock();
        let mut seen = std::collections::HashSet::new();
        state
            .members
            .values()
            .filter(|m| seen.insert(m.user.id.as_str()))
            .map(|m| m.user.clone())
            .collect()
    }

    /// Assigns the next offset and a timestamp (`now_ms`, but never below the
    /// room's previous one) and runs `queue` with them under the lock, so
    /// queue order is offset order. If `queue` fails, the offset is not used.
    /// `Ok(None)` if the room was unloaded meanwhile: load it again.
    pub fn sequence<E>(
        &self,
        now_ms: u64,
        queue: impl FnOnce(u64, u64) -> Result<(), E>,
    ) -> Result<Option<u64>, E> {
        let mut state = self.state.lock();
        if state.closed {
            return Ok(None);
        }
        next_sequenced(&mut state, now_ms, queue).map(|(offset, _)| Some(offset))
    }

    /// [`Room::sequence`] for a post with an idempotency key (`user`,
    /// `key`): if the room already sequenced that post within `window_ms`,
    /// nothing is queued and its `(offset, ts)` is returned as
    /// `Keyed::Known`. Entries older than the window are forgotten.
    pub fn sequence_keyed<E>(
        &self,
        now_ms: u64,
        window_ms: u64,
        idempotency: (&str, &str),
        waiter: Option<(&Outbound, Option<u32>)>,
        queue: impl FnOnce(u64, u64) -> Result<(), E>,
    ) -> Result<Option<Keyed>, E> {
        let mut state = self.state.lock();
        if state.closed {
            return Ok(None);
        }
        if let Some(known) = known_keyed(&mut state, now_ms, window_ms, idempotency, waiter) {
            return Ok(Some(known));
        }
        let id = (idempotency.0.to_owned(), idempotency.1.to_owned());
        let (offset, ts) = next_sequenced(&mut state, now_ms, queue)?;
        state.keys.insert(id.clone(), (offset, ts));
        state.keys_order.push_back((ts, id));
        Ok(Some(Keyed::New(offset)))
    }

    /// The post `user` sequenced here with idempotency key `key` since the
    /// room loaded (within the window), if any: already delivered
    /// (`waiting: false`, the caller acks it), or still being written, in
    /// which case `waiter` is registered for its ack, atomically (a
    /// failed write answers it with the error).
    pub fn known_key(
        &self,
        now_ms: u64,
        window_ms: u64,
        idempotency: (&str, &str),
        waiter: Option<(&Outbound, Option<u32>)>,
    ) -> Option<Keyed> {
        let mut state = self.state.lock();
        known_keyed(&mut state, now_ms, window_ms, idempotency, waiter)
    }

    /// Has `out` acked (request `id`) when `offset` is delivered here, as
    /// well as its poster. False if it already was (or is given up): the
    /// caller acks from storage.
    pub fn wait_ack(&self, offset: u64, out: &Outbound, id: Option<u32>) -> bool {
        let mut state = self.state.lock();
        if offset <= state.head {
            return false;
        }
        state.ack_waiting.entry(offset).or_default().push((
            out.clone(),
            id,
            tokio::time::Instant::now(),
        ));
        true
    }

    /// Answers `reply(id)` to connections waiting for an ack longer than
    /// `timeout` (an offset that never reached this node).
    pub fn expire_waiters(
        &self,
        timeout: std::time::Duration,
        reply: impl Fn(Option<u32>) -> Bytes,
    ) {
        let mut state = self.state.lock();
        let now = tokio::time::Instant::now();
        state.ack_waiting.retain(|_, waiters| {
            waiters.retain(|(out, id, since)| {
                let keep = now.duration_since(*since) < timeout;
                if !keep {
                    out.send(reply(*id));
                }
                keep
            });
            !waiters.is_empty()
        });
    }

    /// Answers `reply(id)` to the waiters of offsets at or below `offset`
    /// (a gap the repair gave up on: the events may come later, but their
    /// waiters are not kept waiting).
    pub fn drop_waiters_through(&self, offset: u64, reply: impl Fn(Option<u32>) -> Bytes) {
        let mut state = self.state.lock();
        // Offsets already queued here are about to be stored: kept.
        let next = state.next_offset;
        let gone: Vec<u64> = state
            .ack_waiting
            .keys()
            .copied()
            .filter(|o| *o <= offset && *o >= next)
            .collect();
        for o in gone {
            for (out, id, _) in state.ack_waiting.remove(&o).unwrap_or_default() {
                out.send(reply(id));
            }
        }
    }

    /// Takes an event ordered elsewhere (the cluster bus). The next
    /// expected offset is queued with `queue` at once, then any buffered
    /// successors; a later one is buffered and the gap reported; an earlier
    /// one is a duplicate. If `queue` fails, the offset stays expected (a
    /// repair fetches it again).
    pub fn accept<E>(
        &self,
        offset: u64,
        event: Queued,
        mut queue: impl FnMut(u64, Queued) -> Result<(), E>,
    ) -> Result<Accepted, E> {
        let mut state = self.state.lock();
        if state.closed {
            return Ok(Accepted::Closed);
        }
        if offset < state.next_offset {
            return Ok(Accepted::Duplicate);
        }
        if offset > state.next_offset {
            let from = state.next_offset;
            if state.ahead.len() < MAX_AHEAD {
                let slot = state.ahead.entry(offset).or_insert_with(|| event.clone());
                slot.pid = slot.pid.or(event.pid);
            }
            return Ok(Accepted::Gap {
                from,
                to: offset - 1,
            });
        }
        // The same offset may also wait in `ahead` (channel and stream both
        // delivered it): keep whichever post id is known.
        let mut event = event;
        if let Some(waiting) = state.ahead.remove(&offset) {
            event.pid = event.pid.or(waiting.pid);
        }
        queue(offset, event)?;
        state.next_offset = offset + 1;
        state.in_flight += 1;
        loop {
            let next = state.next_offset;
            let Some(event) = state.ahead.remove(&next) else {
                break;
            };
            if let Err(err) = queue(next, event.clone()) {
                state.ahead.insert(next, event);
                return Err(err);
            }
            state.next_offset = next + 1;
            state.in_flight += 1;
        }
        Ok(match state.ahead.keys().next() {
            Some(&first) => Accepted::Gap {
                from: state.next_offset,
                to: first - 1,
            },
            None => Accepted::Queued,
        })
    }

    /// The next offset this room expects to store.
    pub fn next_offset(&self) -> u64 {
        self.state.lock().next_offset
    }

    /// Marks a gap repair as running; false if one already is.
    pub fn start_repair(&self) -> bool {
        let mut state = self.state.lock();
        !std::mem::replace(&mut state.repairing, true)
    }

    pub fn end_repair(&self) {
        self.state.lock().repairing = false;
    }

    /// Delivers a durable event: `ack` to the poster first, then `frame` to
    /// every member (the poster included); then applies its `effect` and
    /// lets the kind's state fold it in. Says what to persist besides the
    /// event: the new moderation state, and the kind's chores.
    pub fn commit(
        &self,
        offset: u64,
        frame: &Bytes,
        ack: Option<(&Outbound, Bytes)>,
        effect: Option<&Effect>,
    ) -> Committed {
        let mut state = self.state.lock();
        debug_assert!(offset > state.head, "offsets are committed in order");
        state.head = offset;
        state.in_flight = state.in_flight.saturating_sub(1);
        // The kind's state sees the event before anyone hears of it, and
        // may refuse it (a note update that does not integrate into the
        // note as it is: `NoteDoc::apply`): then it is not delivered, on
        // every node alike, and its poster gets the refusal instead of the
        // ack. The event stays stored, inert (loading skips it the same
        // way) until the kind drops it.
        let mut chores = Vec::new();
        let commit = Commit {
            room: &self.name,
            offset,
            frame,
            effect,
        };
        if let Err(refused) = state.kind.check_commit(&commit, &mut chores) {
            tracing::warn!(room = %self.name, offset, error = %refused.message, "event refused at commit");
            if let Some((out, reply)) = ack {
                out.send(refusal(&reply, &refused));
            }
            for (out, id, _) in state.ack_waiting.remove(&offset).unwrap_or_default() {
                out.send(protocol::error(
                    id,
                    refused.waiter_code,
                    refused.waiter_message.clone(),
                ));
            }
            return Committed {
                chores,
                ..Committed::default()
            };
        }
        if let Some((out, reply)) = ack {
            out.send(reply);
        }
        if let Some(waiting) = state.ack_waiting.remove(&offset) {
            let ts = protocol::event_ts(frame).unwrap_or(0);
            for (out, id, _) in waiting {
                out.send(protocol::ok(
                    id,
                    &protocol::PostOk {
                        room: self.name.to_string(),
                        epoch: self.epoch.clone(),
                        offset,
                        ts,
                    },
                ));
            }
        }
        let mut delivery = Delivery::default();
        // A kind that filters decodes the event once, not once per member.
        let kind = self.name.kind();
        let decoded = if kind.filters() {
            match protocol::decode_server_frame(frame) {
                Ok(protocol::ServerFrame::Event(event)) => Some(event),
                _ => None,
            }
        } else {
            None
        };
        for member in state.members.values_mut() {
            if !crate::effect::shown_to(effect, &member.user) {
                continue;
            }
            if let Some(event) = &decoded {
                let viewer = Viewer {
                    user: &member.user,
                    children: &member.children,
                    moderator: member.moderator,
                };
                if !kind.shown(event, &viewer) {
                    continue;
                }
            }
            if member.deliver(frame) {
                delivery.delivered += 1;
            } else {
                delivery.refused += 1;
            }
        }
        state.kind.apply(&commit, &mut chores);
        let mut committed = Committed {
            delivery,
            chores,
            ..Committed::default()
        };
        let Some(effect) = effect else {
            return committed;
        };
        if let Effect::Redact { target, .. } = effect {
            state.redacting.remove(target);
        }
        if let Some(user) = effect.removes() {
            remove_user(&mut state, &self.name, user);
        }
        if effect.is_moderation() {
            state.moderation.apply(offset, effect);
            committed.moderation = Some(state.moderation.clone());
        }
        committed
    }

    /// Refuses a post (or typing) by moderation: banned, muted, read-only,
    /// and, when `posting`, slow mode. Moderators pass.
    pub fn check_post(
        &self,
        user: &str,
        moderator: bool,
        posting: bool,
        thread: Option<u64>,
        now_ms: u64,
    ) -> Result<(), Refused> {
        if moderator {
            return Ok(());
        }
        let state = self.state.lock();
        let moderation = &state.moderation;
        if moderation.banned.contains(user) {
            return Err(Refused::Banned);
        }
        if let Some(until) = moderation.muted_until(user, now_ms) {
            return Err(Refused::Muted { until });
        }
        if moderation.read_only || thread.is_some_and(|t| moderation.locked_threads.contains(&t)) {
            return Err(Refused::ReadOnly);
        }
        if posting && moderation.slow_mode_secs > 0 {
            let interval = std::time::Duration::from_secs(moderation.slow_mode_secs);
            if let Some(last) = state.last_post.get(user) {
                let elapsed = last.elapsed();
                if elapsed < interval {
                    let wait = interval - elapsed;
                    return Err(Refused::SlowMode {
                        retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
                    });
                }
            }
        }
        Ok(())
    }

    /// Notes a post for slow mode.
    pub fn record_post(&self, user: &str) {
        self.state
            .lock()
            .last_post
            .insert(user.to_owned(), tokio::time::Instant::now());
    }

    /// Remembers tombstones that could not be written.
    pub fn add_pending_tombstone(&self, pending: PendingTombstone) {
        self.state.lock().pending_tombstones.push(pending);
    }

    /// Takes the tombstones still to write (the caller puts back those it
    /// could not write).
    pub fn take_pending_tombstones(&self) -> Vec<PendingTombstone> {
        std::mem::take(&mut self.state.lock().pending_tombstones)
    }

    /// Whether tombstones are still to be written (no checkpoint then).
    pub fn has_pending_tombstones(&self) -> bool {
        !self.state.lock().pending_tombstones.is_empty()
    }

    /// Reserves the redaction of `offset`; false if one is already under way.
    pub fn reserve_redaction(&self, offset: u64) -> bool {
        self.state.lock().redacting.insert(offset)
    }

    /// Gives a reservation back (the redaction was not posted).
    pub fn release_redaction(&self, offset: u64) {
        self.state.lock().redacting.remove(&offset);
    }

    pub fn is_banned(&self, user: &str) -> bool {
        self.state.lock().moderation.banned.contains(user)
    }

    pub fn is_member(&self, conn: ConnId) -> bool {
        self.state.lock().members.contains_key(&conn)
    }

    /// Whether the room knows `user`: present now, or muted or banned here.
    pub fn knows_user(&self, user: &str) -> bool {
        let state = self.state.lock();
        state.present(user)
            || state.moderation.muted.contains_key(user)
            || state.moderation.banned.contains(user)
    }

    /// Everyone present, here or through other nodes, by id.
    pub fn present_users(&self) -> Vec<UserInfo> {
        present_users(&self.state.lock())
    }

    /// Other events that go with `target` when it is redacted (a forum
    /// post's edits).
    pub fn linked(&self, target: u64) -> Vec<u64> {
        self.state.lock().kind.linked(target)
    }

    /// The settings of the last `configure` (a forum's grants), if any.
    /// Whether the room's state lets `user` do `action` (`KindState::admits`).
    pub fn admits(&self, user: &crate::auth::Claims, action: policy::Action) -> bool {
        self.state.lock().kind.admits(user, action)
    }

    /// The file `id` of this room, if `viewer` may download it
    /// ([`KindState::file`]).
    pub fn file(&self, id: &str, viewer: &Viewer<'_>) -> Option<crate::files::FileRef> {
        self.state.lock().kind.file(id, viewer)
    }

    /// The files named `key`, for a zip ([`KindState::bundle`]).
    pub fn bundle(&self, key: &str, viewer: &Viewer<'_>) -> Option<kind::Bundle> {
        self.state.lock().kind.bundle(key, viewer)
    }

    pub fn grants(&self) -> Option<crate::protocol::ForumSettings> {
        self.state.lock().moderation.forum.clone()
    }

    pub fn moderation(&self) -> Moderation {
        self.state.lock().moderation.clone()
    }

    /// Gives up an offset whose write failed: nothing is delivered, the
    /// poster gets `error`. `head` stays where it is, so no client ever
    /// holds this offset as a position; if it was the last one before a
    /// restart, it is handed out again then, which is safe for that reason.
    pub fn skip(
        &self,
        offset: u64,
        poster: Option<(&Outbound, Option<u32>)>,
        error: impl Fn(Option<u32>) -> Bytes,
    ) {
        let mut state = self.state.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        // What the kind admitted after this one may depend on it.
        state.kind.skipped();
        if let Some((poster, id)) = poster {
            poster.send(error(id));
        }
        // A retry of this post waited for it: it gets the same error, and
        // the key is free for the next retry.
        for (out, id, _) in state.ack_waiting.remove(&offset).unwrap_or_default() {
            out.send(error(id));
        }
        state.keys.retain(|_, (o, _)| *o != offset);
    }

    /// Sends an ephemeral frame (typing) to every member but `except`.
    pub fn broadcast(&self, frame: &Bytes, except: ConnId) {
        let state = self.state.lock();
        for (conn, member) in &state.members {
            if *conn != except && member.pending.is_none() {
                member.out.send(frame.clone());
            }
        }
    }

    /// Marks the room closed if it has no member and no write in flight; the
    /// hub then forgets it. True if closed.
    /// Only the hub's map and the caller may hold the room: a request that
    /// loaded it (history, moderation, a bus event) keeps it open.
    pub fn close_if_idle(self: &std::sync::Arc<Self>) -> bool {
        let mut state = self.state.lock();
        if std::sync::Arc::strong_count(self) <= 2
            && state.members.is_empty()
            && state.in_flight == 0
            && state.remote.is_empty()
            && state.ahead.is_empty()
            && state.ack_waiting.is_empty()
            && state.pending_tombstones.is_empty()
            && !state.repairing
        {
            state.closed = true;
        }
        state.closed
    }

    /// The room is unloaded: its kind's state says so to the metrics.
    pub fn unloaded(&self, metrics: &crate::metrics::Metrics) {
        self.state.lock().kind.unloaded(metrics);
    }

    pub fn member_count(&self) -> usize {
        self.state.lock().members.len()
    }
}

/// The keyed post `idempotency` names, if sequenced here within the window
/// (see [`Room::known_key`]); forgets entries older than the window.
fn known_keyed(
    state: &mut State,
    now_ms: u64,
    window_ms: u64,
    idempotency: (&str, &str),
    waiter: Option<(&Outbound, Option<u32>)>,
) -> Option<Keyed> {
    let cutoff = now_ms.saturating_sub(window_ms);
    while let Some((ts, _)) = state.keys_order.front() {
        if *ts >= cutoff {
            break;
        }
        if let Some((ts, id)) = state.keys_order.pop_front() {
            // A newer post may have taken the key since (after a failed
            // write): only this entry's own record goes.
            if state.keys.get(&id).is_some_and(|(_, t)| *t == ts) {
                state.keys.remove(&id);
            }
        }
    }
    let id = (idempotency.0.to_owned(), idempotency.1.to_owned());
    let &(offset, ts) = state.keys.get(&id)?;
    if ts < cutoff {
        return None;
    }
    let waiting = offset > state.head;
    if waiting {
        if let Some((out, request)) = waiter {
            state.ack_waiting.entry(offset).or_default().push((
                out.clone(),
                request,
                tokio::time::Instant::now(),
            ));
        }
    }
    Some(Keyed::Known {
        offset,
        ts,
        waiting,
    })
}

/// Assigns the next offset and a timestamp (never below the room's last)
/// and runs `queue` with them; the offset is used only if `queue` succeeds.
fn next_sequenced<E>(
    state: &mut State,
    now_ms: u64,
    queue: impl FnOnce(u64, u64) -> Result<(), E>,
) -> Result<(u64, u64), E> {
    let offset = state.next_offset;
    let ts = now_ms.max(state.last_ts);
    queue(offset, ts)?;
    state.next_offset = offset + 1;
    state.last_ts = ts;
    state.in_flight += 1;
    Ok((offset, ts))
}

/// Removes every local connection of `user` (kick, ban) and forgets them
/// as present through other nodes: every node applies the same event.
fn remove_user(state: &mut State, room: &RoomName, user: &str) {
    let info = state
        .members
        .values()
        .find(|m| m.user.id == user)
        .map(|m| m.user.clone())
        .or_else(|| state.remote.values().find_map(|m| m.get(user).cloned()));
    state.members.retain(|_, m| m.user.id != user);
    state.users.remove(user);
    state.last_post.remove(user);
    for remote in state.remote.values_mut() {
        remote.remove(user);
    }
    state.remote.retain(|_, m| !m.is_empty());
    if let Some(info) = info {
        state.announce(room, PresenceAction::Leave, &info);
    }
}

/// How many distinct users are present, here or through other nodes.
fn unique_present(state: &State) -> usize {
    let mut remote_only = std::collections::HashSet::new();
    for users in state.remote.values() {
        for id in users.keys() {
            if !state.users.contains_key(id) {
                remote_only.insert(id.as_str());
            }
        }
    }
    state.users.len() + remote_only.len()
}

/// Everyone present, here or through other nodes, once each, by id.
fn present_users(state: &State) -> Vec<UserInfo> {
    let mut users: HashMap<&str, &UserInfo> = HashMap::new();
    for member in state.members.values() {
        users.entry(member.user.id.as_str()).or_insert(&member.user);
    }
    for remote in state.remote.values() {
        for (id, user) in remote {
            users.entry(id.as_str()).or_insert(user);
        }
    }
    let mut users: Vec<UserInfo> = users.into_values().cloned().collect();
    users.sort_by(|a, b| a.id.cmp(&b.id));
    users
}
