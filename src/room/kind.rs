//! The seam between the core and room kinds, as the room layer sees it.
//!
//! A kind (chat, forum, notes, the audit log, the agenda…) is one folder
//! under `src/kinds/`, one struct implementing `session::KindHandler`,
//! which extends this [`RoomKind`]: who may do what (every role, parents
//! included), the state the kind derives from its events
//! ([`KindState`]), how long its events are kept, and its part of a
//! user's export and erasure. The core (hub, room, store, bus, session
//! dispatch) holds kinds only as `&'static dyn RoomKind` and never
//! branches on a particular one; `src/kinds/mod.rs` is the one
//! registration list.
//!
//! Derived state follows one rule, the same as moderation's: it is
//! computed from the room's events only, in offset order, so every node
//! derives the same state and a reload rebuilds it ([`RoomKind::load`]).

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;

use crate::auth::Claims;
use crate::config::Config;
use crate::effect::Effect;
use crate::metrics::Metrics;
use crate::protocol::{ErrorCode, Event, ForumSettings, UserInfo};
use crate::store::{Store, StoreError};

use super::name::{RoomName, RoomNameError};
use super::policy::Action;
use super::Room;

/// A room kind, as the room layer sees it. Implementations are unit
/// structs registered once (`src/kinds/mod.rs`); the core holds them as
/// `&'static dyn RoomKind`.
pub trait RoomKind: Send + Sync + 'static {
    /// The kind's segment in room names (`3B/<name>/…`): 1 to 16 of a-z.
    fn name(&self) -> &'static str;

    /// Whether `name` (the last segment) may name a room of this kind,
    /// beyond the characters every name allows (the audit log has one).
    fn valid_name(&self, _name: &str) -> bool {
        true
    }

    /// Whether its rooms belong to no class (a conversation, a feed, an
    /// announcement): their class segment is the reserved `_`, which no
    /// other kind's rooms may have.
    fn classless(&self) -> bool {
        false
    }

    /// Whether members see who else is there (presence, the join reply's
    /// `members`). Not in an announcement: its recipients do not learn
    /// of each other.
    fn shows_presence(&self) -> bool {
        true
    }

    /// A name [`RoomKind::valid_name`] accepts, for asking the policy about
    /// a class's rooms of this kind before naming one (`rooms`).
    fn sample_name(&self) -> &'static str {
        "_"
    }

    /// Whether `user` may do `action` in `room`. `grants` are the room's
    /// settings of its last `configure`, for kinds that use them. Every
    /// role is answered, parents included: a parent's `classes` claim
    /// holds their children's classes.
    fn allowed(
        &self,
        user: &Claims,
        room: &RoomName,
        grants: Option<&ForumSettings>,
        action: Action,
    ) -> bool;

    /// Whether `user` may create `room` by joining it or acting in it
    /// (a room exists once such a user did): by default those who
    /// moderate its class (`policy::home_moderator`).
    fn may_create(&self, user: &Claims, room: &RoomName) -> bool {
        super::policy::home_moderator(user, room)
    }

    /// Whether users outside the room's class may be let in by settings
    /// stored in the room (a forum's grants): such a room is loaded before
    /// the access check of someone who is not let in through the class.
    fn has_grants(&self) -> bool {
        false
    }

    /// The state the kind derives from the room's stored events through
    /// offset `last`. Blocking.
    fn load(
        &self,
        _cx: &LoadContext<'_>,
        _room: &str,
        _last: u64,
    ) -> Result<Box<dyn KindState>, StoreError> {
        Ok(Box::new(NoState))
    }

    /// The kind's own event kinds (`Body::Kind`'s `kind`), if it has any.
    fn events(&self) -> &'static [&'static str] {
        &[]
    }

    /// How retention treats the room's events.
    fn retention(&self) -> Retention {
        Retention::ByAge
    }

    /// How an erasure of the event's author treats it, for events whose
    /// body the core does not know (`Body::Kind`, see `privacy.rs`).
    fn erasure(&self, _event: &Event) -> Erasure {
        Erasure::Redact
    }

    /// Whether erasing `user` redacts `event` of room `room`, which they
    /// did not write: it is theirs or about them all the same (a
    /// notification in their feed, or one naming them in another's).
    fn erases_other(&self, _room: &str, _event: &Event, _user: &str) -> bool {
        false
    }

    /// Whether a `redact` may name one of the kind's own events (deleting
    /// a diary entry). Otherwise only messages are redacted by request;
    /// erasure redacts the kind's events whatever this says.
    fn redactable(&self) -> bool {
        false
    }

    /// Whether the kind's state posts events by itself when their time
    /// comes ([`KindState::take_due`]): the hub then asks its loaded rooms
    /// every second.
    fn schedules(&self) -> bool {
        false
    }

    /// Whether some of the kind's events are shown to some of the room's
    /// readers only ([`RoomKind::shown`]): a pupil's done mark, an entry
    /// scheduled for later. Kinds that say no cost nothing per member.
    fn filters(&self) -> bool {
        false
    }

    /// Whether `viewer` is shown `event`, live, in `history` and in a
    /// recovering join alike (asked only when [`RoomKind::filters`]).
    /// Decided from the event and the viewer alone, so every node and
    /// every read of the same event answers the same.
    fn shown(&self, _event: &Event, _viewer: &Viewer<'_>) -> bool {
        true
    }
}

/// Whether the stored event `frame` of a room of kind `kind` is withheld
/// from `viewer`: an action about another pupil (`effect::shown_to`), or what
/// the kind shows to some readers only (`RoomKind::shown`). Only frames
/// that can be either are decoded: a history page stays spliced from
/// stored bytes.
pub fn withheld(frame: &[u8], kind: &dyn RoomKind, viewer: &Viewer<'_>) -> bool {
    let moderator = matches!(
        viewer.user.role,
        crate::protocol::Role::Teacher | crate::protocol::Role::Staff
    );
    let maybe_personal = !moderator
        && frame
            .windows(b"moderation".len())
            .any(|w| w == b"moderation");
    if !maybe_personal && !kind.filters() {
        return false;
    }
    match crate::protocol::decode_server_frame(frame) {
        Ok(crate::protocol::ServerFrame::Event(event)) => {
            (maybe_personal && !crate::effect::shown_to(Effect::of(&event).as_ref(), viewer.user))
                || (kind.filters() && !kind.shown(&event, viewer))
        }
        _ => false,
    }
}

/// A reader of a room, as [`RoomKind::shown`] sees them.
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    pub user: &'a UserInfo,
    /// A parent's children (their user ids); empty for others.
    pub children: &'a [String],
    /// Whether the viewer moderates the room's class by their role (a
    /// teacher of the class, staff: `policy::home_moderator`), as opposed
    /// to reading it through a grant (a public blog's reader from another
    /// class).
    pub moderator: bool,
}

impl Viewer<'_> {
    /// Whether `user` is the viewer or one of their children.
    pub fn is_or_parent_of(&self, user: &str) -> bool {
        self.user.id == user || self.children.iter().any(|c| c == user)
    }
}

/// What [`RoomKind::load`] may read and report.
pub struct LoadContext<'a> {
    pub store: &'a Store,
    pub config: &'a Config,
    pub metrics: &'a Metrics,
}

/// How retention treats a kind's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Events older than `retention` are removed.
    ByAge,
    /// Never by age: the room is kept, or erased, as a whole (a note's
    /// updates are folded into its snapshot, which holds them all).
    Whole,
}

/// How erasure treats an event its user wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erasure {
    /// Redacted through its room, like a message.
    Redact,
    /// Kept as the school's record (counted in `kept`).
    Keep,
}

/// Work a committed event leaves to do after the room's lock is released:
/// storing a validated version, compacting a note.
pub struct Chore {
    /// Runs on the blocking pool rather than on the store's writer thread
    /// (long work: encoding a large document).
    pub off_writer: bool,
    pub run: Box<dyn FnOnce(&ChoreContext<'_>) + Send>,
}

/// What a [`Chore`] may use.
pub struct ChoreContext<'a> {
    pub store: &'a Store,
    pub metrics: &'a Metrics,
    pub room: &'a Arc<Room>,
}

/// An event the kind's state refuses at commit: it is stored, but not
/// applied and not delivered, on every node alike; its poster and those
/// waiting for its ack get these errors instead.
#[derive(Debug, Clone)]
pub struct CommitRefusal {
    pub code: ErrorCode,
    pub message: String,
    /// For connections waiting on the same offset (a retry).
    pub waiter_code: ErrorCode,
    pub waiter_message: String,
}

/// A committed event, as the kind's state sees it (under the room's lock).
pub struct Commit<'a> {
    pub room: &'a RoomName,
    pub offset: u64,
    pub frame: &'a Bytes,
    /// The event's effect (`Effect::of`), if any.
    pub effect: Option<&'a Effect>,
}

/// The state a kind derives from its events: a forum's thread index, a
/// note's document. Called under the room's lock: nothing blocking and
/// nothing long (the note's checks say how long they take).
pub trait KindState: Send + Any {
    /// Before delivery: `Err` refuses the event (see [`CommitRefusal`]).
    /// Work for later goes to `chores` either way.
    fn check_commit(
        &mut self,
        _commit: &Commit<'_>,
        _chores: &mut Vec<Chore>,
    ) -> Result<(), CommitRefusal> {
        Ok(())
    }

    /// Whether the room lets `user` do `action` through what its events
    /// say (a conversation's members), beyond the kind's policy. Asked
    /// for kinds that [`RoomKind::has_grants`], whose rooms are loaded
    /// before the check.
    fn admits(&self, _user: &Claims, _action: Action) -> bool {
        false
    }

    /// After delivery (not for a refused event): folds the event in.
    fn apply(&mut self, _commit: &Commit<'_>, _chores: &mut Vec<Chore>) {}

    /// An offset was given up (its write failed): nothing was applied.
    fn skipped(&mut self) {}

    /// Other events that carry `target`'s text and go with it when it is
    /// redacted (a forum post's edits).
    fn linked(&self, _target: u64) -> Vec<u64> {
        Vec::new()
    }

    /// Work to do before the room may be unloaded (its last member left):
    /// compacting a note. The hub runs it off the async workers, then
    /// unloads the room if nothing is left to do (a failing chore is
    /// retried by the next sweep, not in a loop).
    fn before_unload(&self) -> Option<Chore> {
        None
    }

    /// The earliest time (ms, the hub's clock) at which the state has
    /// events to post by itself (a scheduled publication), if any. Asked
    /// every second for kinds that [`RoomKind::schedules`].
    fn next_due(&self) -> Option<u64> {
        None
    }

    /// The events due at `now`, to post as [`Due::from`]'s. Each carries an
    /// idempotency key, so that the nodes that all hold the room and all
    /// find it due store it once.
    fn take_due(&mut self, _now: u64) -> Vec<Due> {
        Vec::new()
    }

    /// The file `id` that the room's events attach, if `viewer` may
    /// download it (`GET /files/<id>`): a hand-in's submission for its
    /// pupil, their parents and the class's teachers; a blog post's image
    /// for those shown the post. Decided like [`RoomKind::shown`]: from
    /// the events and the viewer alone.
    fn file(&self, _id: &str, _viewer: &Viewer<'_>) -> Option<crate::files::FileRef> {
        None
    }

    /// The files that `key` names (a hand-in's submissions), with the
    /// name each takes in a zip, if `viewer` may have them all.
    fn bundle(&self, _key: &str, _viewer: &Viewer<'_>) -> Option<Bundle> {
        None
    }

    /// The room was loaded with this state (gauges it counts in go up).
    fn loaded(&self, _metrics: &Metrics) {}

    /// The room is being unloaded (gauges it counts in go down).
    fn unloaded(&self, _metrics: &Metrics) {}
}

/// Files downloaded together (a zip): its name and each file with its
/// name inside.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub name: String,
    pub files: Vec<(String, crate::files::FileRef)>,
}

/// An event a kind's state posts by itself when its time comes
/// ([`KindState::take_due`]).
#[derive(Debug, Clone)]
pub struct Due {
    pub from: UserInfo,
    pub body: crate::protocol::Body,
    pub key: String,
}

/// The state of kinds that derive none (chat, the audit log).
pub struct NoState;

impl KindState for NoState {}

/// The room kinds this server knows: room names are parsed against them.
#[derive(Clone)]
pub struct Kinds {
    all: Vec<&'static dyn RoomKind>,
}

impl std::fmt::Debug for Kinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.all.iter().map(|k| k.name()))
            .finish()
    }
}

impl Kinds {
    /// The registry of `all`. The audit log is the core's own: moderation
    /// writes to it, so it must be registered.
    pub fn new(all: Vec<&'static dyn RoomKind>) -> Result<Kinds, RoomNameError> {
        let kinds = Kinds { all };
        for (i, kind) in kinds.all.iter().enumerate() {
            let name = kind.name();
            let shape = !name.is_empty()
                && name.len() <= super::name::MAX_KIND_LEN
                && name.bytes().all(|b| b.is_ascii_lowercase());
            if !shape || kinds.all[..i].iter().any(|k| k.name() == name) {
                return Err(RoomNameError::Kind(name.to_owned(), kinds.known()));
            }
        }
        if kinds.get(super::name::AUDIT_KIND).is_none() {
            return Err(RoomNameError::Kind(
                super::name::AUDIT_KIND.to_owned(),
                kinds.known(),
            ));
        }
        Ok(kinds)
    }

    pub fn get(&self, name: &str) -> Option<&'static dyn RoomKind> {
        self.all.iter().copied().find(|k| k.name() == name)
    }

    pub fn all(&self) -> &[&'static dyn RoomKind] {
        &self.all
    }

    /// The kinds' names, comma-separated (for error messages).
    pub fn known(&self) -> String {
        self.all
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Parses `class/kind/name` against these kinds.
    pub fn parse(&self, s: &str) -> Result<RoomName, RoomNameError> {
        RoomName::parse_with(s, |kind| self.get(kind), || self.known())
    }

    /// The audit log of `room`'s class.
    pub fn audit_log(&self, room: &RoomName) -> Result<RoomName, RoomNameError> {
        self.parse(&format!(
            "{}/{}/{}",
            room.class(),
            super::name::AUDIT_KIND,
            super::name::AUDIT_NAME
        ))
    }
}
