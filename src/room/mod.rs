//! A loaded room: its sequencer (next offset), its delivered head, its
//! members and their presence.
//!
//! One mutex guards a room's state. It is held only for short, non-blocking
//! work (assigning an offset, queueing frames with `Outbound::send`, which
//! never blocks) and never across an `.await`. Because offsets are assigned
//! and store jobs queued under this lock, and the store runs callbacks in
//! queue order, [`Room::commit`] sees a room's offsets in increasing order:
//! offset order is delivery order.

pub mod name;
pub mod policy;

use std::collections::HashMap;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::outbound::{ConnId, Outbound};
use crate::protocol::{self, Presence, PresenceAction, UserInfo};

pub use name::{Kind, RoomName};

/// Events buffered for a member whose join (with recovery) is in progress
/// before it counts as a slow consumer.
const MAX_PENDING: usize = 10_000;

struct Member {
    user: UserInfo,
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
    /// The next offset to assign.
    next_offset: u64,
    /// The last offset delivered (stored and fanned out); 0 when empty.
    head: u64,
    /// The last offset removed by retention: history starts at `floor + 1`.
    floor: u64,
    /// Offsets assigned whose write has not completed yet.
    in_flight: u64,
    /// The last event timestamp given: timestamps never go down within a
    /// room, even if the wall clock does.
    last_ts: u64,
    members: HashMap<ConnId, Member>,
    /// Connections per user, for presence (a user with two tabs is one member).
    users: HashMap<String, usize>,
    /// Set when the hub unloads the room; a closed room takes no one.
    closed: bool,
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
    pub members: Vec<UserInfo>,
}

/// Counts what fan-out did, for metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Delivery {
    pub delivered: u64,
    pub refused: u64,
}

impl Room {
    pub fn new(name: RoomName, epoch: String, floor: u64, last_offset: u64) -> Room {
        Room {
            name,
            epoch,
            state: Mutex::new(State {
                next_offset: last_offset + 1,
                head: last_offset,
                floor,
                in_flight: 0,
                last_ts: 0,
                members: HashMap::new(),
                users: HashMap::new(),
                closed: false,
            }),
        }
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
        out: &Outbound,
        recovering: bool,
        reply: impl FnOnce(&Joined) -> Option<Bytes>,
    ) -> Option<Joined> {
        let mut state = self.state.lock();
        if state.closed {
            return None;
        }
        let count = state.users.entry(user.id.clone()).or_insert(0);
        *count += 1;
        let first_connection = *count == 1;
        if first_connection {
            let frame = protocol::presence(&Presence {
                room: self.name.to_string(),
                action: PresenceAction::Join,
                user: user.clone(),
            });
            for member in state.members.values_mut() {
                member.deliver(&frame);
            }
        }
        state.members.insert(
            out.conn(),
            Member {
                user: user.clone(),
                out: out.clone(),
                pending: recovering.then(Vec::new),
            },
        );
        let joined = Joined {
            head: state.head,
            floor: state.floor,
            members: unique_members(&state),
        };
        if let Some(frame) = reply(&joined) {
            out.send(frame);
        }
        Some(joined)
    }

    /// Queues the join reply of a recovering member (outside its byte
    /// budget: the replay's size is capped by the caller), then the live
    /// events held back meanwhile, and lets live events flow to it directly.
    pub fn finish_join(&self, conn: ConnId, reply: Bytes) {
        let mut state = self.state.lock();
        if let Some(member) = state.members.get_mut(&conn) {
            let pending = member.pending.take().unwrap_or_default();
            member.out.send_unbudgeted(reply);
            for frame in pending {
                member.out.send(frame);
            }
        }
    }

    /// Removes a connection; true if the room is now empty.
    pub fn leave(&self, conn: ConnId) -> bool {
        let mut state = self.state.lock();
        let Some(member) = state.members.remove(&conn) else {
            return state.members.is_empty();
        };
        let last_connection = match state.users.get_mut(&member.user.id) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            _ => {
                state.users.remove(&member.user.id);
                true
            }
        };
        if last_connection {
            let frame = protocol::presence(&Presence {
                room: self.name.to_string(),
                action: PresenceAction::Leave,
                user: member.user,
            });
            for other in state.members.values_mut() {
                other.deliver(&frame);
            }
        }
        state.members.is_empty()
    }

    /// Assigns the next offset and a timestamp (`now_ms`, but never below the
    /// room's previous one) and runs `queue` with them under the lock, so
    /// queue order is offset order. If `queue` fails, the offset is not used.
    pub fn sequence<E>(
        &self,
        now_ms: u64,
        queue: impl FnOnce(u64, u64) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut state = self.state.lock();
        let offset = state.next_offset;
        let ts = now_ms.max(state.last_ts);
        queue(offset, ts)?;
        state.next_offset = offset + 1;
        state.last_ts = ts;
        state.in_flight += 1;
        Ok(offset)
    }

    /// Delivers a durable event: `ack` to the poster first, then `frame` to
    /// every member (the poster included).
    pub fn commit(&self, offset: u64, frame: &Bytes, ack: Option<(&Outbound, Bytes)>) -> Delivery {
        let mut state = self.state.lock();
        debug_assert!(offset > state.head, "offsets are committed in order");
        state.head = offset;
        state.in_flight = state.in_flight.saturating_sub(1);
        if let Some((out, reply)) = ack {
            out.send(reply);
        }
        let mut delivery = Delivery::default();
        for member in state.members.values_mut() {
            if member.deliver(frame) {
                delivery.delivered += 1;
            } else {
                delivery.refused += 1;
            }
        }
        delivery
    }

    /// Gives up an offset whose write failed: nothing is delivered, the
    /// poster gets `error`. `head` stays where it is, so no client ever
    /// holds this offset as a position; if it was the last one before a
    /// restart, it is handed out again then, which is safe for that reason.
    pub fn skip(&self, poster: &Outbound, error: Bytes) {
        let mut state = self.state.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        poster.send(error);
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
    pub fn close_if_idle(&self) -> bool {
        let mut state = self.state.lock();
        if state.members.is_empty() && state.in_flight == 0 {
            state.closed = true;
        }
        state.closed
    }

    pub fn member_count(&self) -> usize {
        self.state.lock().members.len()
    }
}

fn unique_members(state: &State) -> Vec<UserInfo> {
    let mut seen = std::collections::HashSet::new();
    let mut members: Vec<UserInfo> = state
        .members
        .values()
        .filter(|m| seen.insert(m.user.id.as_str()))
        .map(|m| m.user.clone())
        .collect();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    members
}
