//! Protocol v1: the only module that knows the wire format.
//!
//! Every WebSocket message is one binary frame holding one MessagePack map
//! with a string `type`. Requests may carry an `id` (u32) that the reply
//! (`ok` or `error`) echoes. Events (`event`, `presence`, `typing`) carry no
//! id. The full contract, with the tables of error and close codes, is
//! `protocol/README.md`; `protocol/vectors.json` holds sample frames that the
//! tests check this module against.

mod codes;
mod forum;
mod notes;

pub use codes::{may_return, returned_by, CloseCode, ErrorCode, ANY_REQUEST};
pub use forum::{Flavour, ForumSettings, RoomsOk, ThreadInfo, ThreadsOk};
pub use notes::{ExportFormat, NoteExport, NoteVersionInfo, NoteVersions, YjsFrame};

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The WebSocket subprotocol a client must offer.
pub const SUBPROTOCOL: &str = "preau.v1";

/// Every request `type` of v1 (to tell `unknown_type` from
/// `invalid_field`), from the `Request` enum itself: the names serde reads
/// and writes (both derive them with snake_case; a unit test checks they
/// agree).
pub const REQUEST_TYPES: &[&str] = <Request as strum::VariantNames>::VARIANTS;

/// Longest class name, in bytes.
pub const MAX_CLASS_LEN: usize = 32;

/// A class name, as in room names and tokens' `classes`: 1 to
/// [`MAX_CLASS_LEN`] of `A-Z a-z 0-9 - _`.
pub fn valid_class(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CLASS_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Where a request's rate limit is taken (see [`Request::bucket`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// The request bucket (`request_rate_per_sec`), before handling.
    Requests,
    /// None before handling: the handler takes from the post or request
    /// bucket once the request's own checks passed (`post`, `edit`, note
    /// updates), or the request is not rate-limited (`hello`, `leave`,
    /// `typing`, which is coalesced, `ping`, `answer`, awareness).
    InHandler,
}

/// Who a user is, as other users see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
}

/// The school role carried by a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Student,
    Teacher,
    Parent,
    Staff,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Student, Role::Teacher, Role::Parent, Role::Staff];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Student => "student",
            Role::Teacher => "teacher",
            Role::Parent => "parent",
            Role::Staff => "staff",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "student" => Ok(Role::Student),
            "teacher" => Ok(Role::Teacher),
            "parent" => Ok(Role::Parent),
            "staff" => Ok(Role::Staff),
            other => Err(format!(
                "unknown role {other:?}, expected student, teacher, parent or staff"
            )),
        }
    }
}

/// A position in a room's history: the last offset a client has seen under an epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub epoch: String,
    pub offset: u64,
}

/// A client request.
#[derive(
    Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr, strum::VariantNames,
)]
#[serde(tag = "type", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Request {
    Hello {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        token: String,
    },
    Join {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Position>,
    },
    Leave {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
    },
    Post {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        text: String,
        /// Forums: the message starts a thread with this title.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        /// Forums: the message replies in this thread (its first offset).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread: Option<u64>,
        /// Forums: the message answers this post of the thread.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<u64>,
        /// Forums: the excerpt of `reply_to` it quotes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quote: Option<String>,
        /// Idempotency key chosen by the client: a retry with the same key
        /// (same user and room, within `idempotency_window`) gets the first
        /// post's ack instead of a second post.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    Typing {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
    },
    History {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        /// Forums: only this thread's events.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread: Option<u64>,
    },
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
    },
    /// Reports the message at `offset` to the room's moderators.
    Report {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        offset: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The moderators' view of a room ([`RoomView`]).
    RoomView {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
    },
    /// A moderation action in `room` (see [`ModAction`]).
    Moderate {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        action: ModAction,
    },
    /// Forums: replaces the text (and, for a thread's first post, the
    /// title) of one's own post; the earlier versions stay in the history.
    Edit {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        offset: u64,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
    },
    /// Help forums: marks `offset` as the thread's answer (`nil`: unmarks).
    Answer {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        thread: u64,
        #[serde(default)]
        offset: Option<u64>,
    },
    /// Forums: the thread list ([`ThreadsOk`]).
    Threads {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        /// Threads whose last activity is older than this offset.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Forums: the user has read `thread` up to `offset` (for unread counts).
    MarkRead {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        thread: u64,
        offset: u64,
    },
    /// Notes: one y-protocols message (sync or awareness), or a part of
    /// one: with `more`, `data` continues in the connection's next `yjs`
    /// frame for `room` (sync step 2 and update messages only).
    Yjs {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        more: Option<bool>,
    },
    /// Notes: the validated versions ([`NoteVersions`]).
    NoteVersions {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
    },
    /// Notes: the draft or a version as text, Markdown or a Yjs update.
    NoteExport {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u32>,
        format: ExportFormat,
    },
    /// The rooms of one kind in a class that exist ([`RoomsOk`]).
    Rooms {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        class: String,
        kind: String,
    },
}

/// What a moderator (or, for `redact`, a message's author) does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModAction {
    /// Removes a message's content from storage; a tombstone remains.
    Redact {
        offset: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Refuses the user's posts in the room for `seconds`.
    Mute {
        user: String,
        seconds: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Unmute {
        user: String,
    },
    /// Removes the user's connections from the room now.
    Kick {
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Kicks the user and refuses their joins until `unban`.
    Ban {
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Unban {
        user: String,
    },
    /// At least `seconds` between two posts of one pupil (0: off).
    SlowMode {
        seconds: u64,
    },
    /// Only moderators may post while `on` (in `thread` only, if given:
    /// a locked forum thread).
    ReadOnly {
        on: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread: Option<u64>,
    },
    /// Pins a message: join replies list pinned offsets.
    Pin {
        offset: u64,
    },
    Unpin {
        offset: u64,
    },
    /// Closes the report at offset `report` of the class's audit log:
    /// dismissed, or acted upon. Written to the audit log only.
    Resolve {
        report: u64,
        dismissed: bool,
    },
    /// Notes: the document as it is becomes validated version N (N - 1
    /// validations came before in the room); with `lock`, the draft also
    /// becomes read-only.
    Validate {
        label: String,
        #[serde(default)]
        lock: bool,
    },
    /// Forums: opens the forum or changes its settings (moderators of its
    /// own class only).
    Configure {
        flavour: Flavour,
        /// Other classes whose pupils and teachers read and post.
        #[serde(default)]
        classes: Vec<String>,
        /// Teachers (user ids) who moderate besides the class's own.
        #[serde(default)]
        moderators: Vec<String>,
    },
}

impl ModAction {
    pub fn name(&self) -> &'static str {
        match self {
            ModAction::Redact { .. } => "redact",
            ModAction::Mute { .. } => "mute",
            ModAction::Unmute { .. } => "unmute",
            ModAction::Kick { .. } => "kick",
            ModAction::Ban { .. } => "ban",
            ModAction::Unban { .. } => "unban",
            ModAction::SlowMode { .. } => "slow_mode",
            ModAction::ReadOnly { .. } => "read_only",
            ModAction::Pin { .. } => "pin",
            ModAction::Unpin { .. } => "unpin",
            ModAction::Resolve { .. } => "resolve",
            ModAction::Configure { .. } => "configure",
            ModAction::Validate { .. } => "validate",
        }
    }

    /// The user the action targets, if any.
    pub fn target_user(&self) -> Option<&str> {
        match self {
            ModAction::Mute { user, .. }
            | ModAction::Unmute { user }
            | ModAction::Kick { user, .. }
            | ModAction::Ban { user, .. }
            | ModAction::Unban { user } => Some(user),
            _ => None,
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            ModAction::Redact { reason, .. }
            | ModAction::Mute { reason, .. }
            | ModAction::Kick { reason, .. }
            | ModAction::Ban { reason, .. } => reason.as_deref(),
            _ => None,
        }
    }
}

impl Request {
    pub fn id(&self) -> Option<u32> {
        match self {
            Request::Hello { id, .. }
            | Request::Join { id, .. }
            | Request::Leave { id, .. }
            | Request::Post { id, .. }
            | Request::Typing { id, .. }
            | Request::History { id, .. }
            | Request::Ping { id }
            | Request::Moderate { id, .. }
            | Request::Report { id, .. }
            | Request::RoomView { id, .. }
            | Request::Edit { id, .. }
            | Request::Answer { id, .. }
            | Request::Threads { id, .. }
            | Request::MarkRead { id, .. }
            | Request::Yjs { id, .. }
            | Request::NoteVersions { id, .. }
            | Request::NoteExport { id, .. }
            | Request::Rooms { id, .. } => *id,
        }
    }

    /// Which per-user rate bucket a request takes a token from before it
    /// is handled. An exhaustive match: a new request type must say.
    /// (`post` and `edit` take from the post bucket once their checks
    /// passed, and note updates from the request bucket, in their handlers.)
    pub fn bucket(&self) -> Bucket {
        match self {
            Request::Join { .. }
            | Request::History { .. }
            | Request::Report { .. }
            | Request::RoomView { .. }
            | Request::Moderate { .. }
            | Request::Threads { .. }
            | Request::MarkRead { .. }
            | Request::Rooms { .. }
            | Request::NoteVersions { .. }
            | Request::NoteExport { .. } => Bucket::Requests,
            Request::Hello { .. }
            | Request::Leave { .. }
            | Request::Post { .. }
            | Request::Typing { .. }
            | Request::Ping { .. }
            | Request::Edit { .. }
            | Request::Answer { .. }
            | Request::Yjs { .. } => Bucket::InHandler,
        }
    }

    /// Sets the request id (clients number their requests).
    pub fn set_id(&mut self, new: u32) {
        match self {
            Request::Hello { id, .. }
            | Request::Join { id, .. }
            | Request::Leave { id, .. }
            | Request::Post { id, .. }
            | Request::Typing { id, .. }
            | Request::History { id, .. }
            | Request::Ping { id }
            | Request::Moderate { id, .. }
            | Request::Report { id, .. }
            | Request::RoomView { id, .. }
            | Request::Edit { id, .. }
            | Request::Answer { id, .. }
            | Request::Threads { id, .. }
            | Request::MarkRead { id, .. }
            | Request::Yjs { id, .. }
            | Request::NoteVersions { id, .. }
            | Request::NoteExport { id, .. }
            | Request::Rooms { id, .. } => *id = Some(new),
        }
    }

    pub fn type_name(&self) -> &'static str {
        self.into()
    }
}

/// Limits the server announces in its `hello` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub max_frame_bytes: u64,
    pub max_message_len: u64,
    pub max_rooms: u64,
    pub history_page_max: u64,
    pub ping_interval_ms: u64,
}

/// Data of the `ok` reply to `hello`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelloOk {
    pub user: UserInfo,
    pub classes: Vec<String>,
    pub node: String,
    pub version: String,
    pub limits: Limits,
}

/// Why a recovery asked with `join.since` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryFailure {
    /// The room's history was reset or lost since the client's position.
    EpochMismatch,
    /// Events after the client's position were removed by retention.
    OutOfRetention,
    /// More events were missed than the server replays on join.
    TooFarBehind,
    /// The client claims an offset the room has not reached.
    OffsetAhead,
}

/// The outcome of `join.since`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    pub recovered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RecoveryFailure>,
}

/// Data of the `ok` reply to `join`, without its `events` (spliced in raw by
/// [`ok_with_events`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinOk {
    pub room: String,
    pub epoch: String,
    /// Offset of the last event in the room (0 when empty).
    pub head: u64,
    /// Offset of the oldest retained event (head + 1 when empty).
    pub first: u64,
    /// Everyone present, or empty past the server's presence limit.
    pub members: Vec<UserInfo>,
    /// How many users are present.
    #[serde(default)]
    pub member_count: u64,
    /// Offsets of the pinned messages, ascending.
    #[serde(default)]
    pub pinned: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
    #[serde(default)]
    pub events: Vec<Event>,
}

/// `JoinOk` as the server encodes it: everything but `events`, which
/// [`ok_with_events`] splices in as stored frames.
#[derive(Debug, Serialize)]
pub struct JoinHead<'a> {
    pub room: &'a str,
    pub epoch: &'a str,
    pub head: u64,
    pub first: u64,
    pub members: &'a [UserInfo],
    pub member_count: u64,
    pub pinned: &'a [u64],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
}

/// `HistoryOk` as the server encodes it, without `events`.
#[derive(Debug, Serialize)]
pub struct HistoryHead<'a> {
    pub room: &'a str,
    pub epoch: &'a str,
    pub head: u64,
    pub first: u64,
    pub more: bool,
}

/// A member as moderators see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    pub user: UserInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub muted_until: Option<u64>,
    pub banned: bool,
}

/// Data of the `ok` reply to `room_view` (moderators only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomView {
    pub room: String,
    /// Present members, with their moderation state.
    pub members: Vec<MemberState>,
    /// Muted user id → muted until (ms), mutes still running.
    pub muted: BTreeMap<String, u64>,
    pub banned: Vec<String>,
    pub slow_mode: u64,
    pub read_only: bool,
    pub pinned: Vec<u64>,
    /// Messages posted in the last 5 minutes.
    pub recent_messages: u64,
    /// Reports of this room not resolved yet (events of the audit log, as
    /// complete `event` frames).
    pub open_reports: Vec<EventFrame>,
}

/// An event as a complete `event` frame (`type: "event"` first) inside
/// another reply, exactly as `history` would return it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFrame(pub Event);

impl std::ops::Deref for EventFrame {
    type Target = Event;
    fn deref(&self) -> &Event {
        &self.0
    }
}

impl Serialize for EventFrame {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Frame<'a> {
            Event(&'a Event),
        }
        Frame::Event(&self.0).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for EventFrame {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match ServerFrame::deserialize(deserializer)? {
            ServerFrame::Event(event) => Ok(EventFrame(event)),
            _ => Err(serde::de::Error::custom("not an event frame")),
        }
    }
}

/// Data of the `ok` reply to `post`: the message is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostOk {
    pub room: String,
    pub epoch: String,
    pub offset: u64,
    pub ts: u64,
}

/// Data of the `ok` reply to `history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryOk {
    pub room: String,
    pub epoch: String,
    pub head: u64,
    pub first: u64,
    /// More events exist beyond this page in the direction asked.
    pub more: bool,
    #[serde(default)]
    pub events: Vec<Event>,
}

/// A durable event of a room's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub room: String,
    pub epoch: String,
    pub offset: u64,
    /// Milliseconds since the Unix epoch, server clock.
    pub ts: u64,
    pub from: UserInfo,
    pub body: Body,
}

/// What an event says; `kind` is the extension point for later event kinds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    Message {
        text: String,
        /// Forums: the first post of a new thread, titled so.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        /// Forums: a reply in this thread.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quote: Option<String>,
    },
    /// What remains of a redacted message (stored in its place).
    Redacted {
        by: UserInfo,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Forums: the thread the message was in (its own offset for a
        /// thread's first post).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread: Option<u64>,
        /// Forums: set when the redacted event was an edit of this post.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        edit_of: Option<u64>,
    },
    /// Forums: a new version of post `target` by its author.
    Edit {
        target: u64,
        thread: u64,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
    },
    /// Help forums: `offset` answers `thread` (`nil`: no answer any more).
    Answer {
        thread: u64,
        #[serde(default)]
        offset: Option<u64>,
    },
    /// Notes: one Yjs v1 update, applied in offset order.
    YjsUpdate {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// A moderation action, in the room it applies to (`from` is the
    /// moderator). `until` (ms) is set for `mute`; `target_from` and
    /// `target_ts` for `redact` (the redacted message's author and time).
    Moderation {
        action: ModAction,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_from: Option<UserInfo>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_ts: Option<u64>,
        /// Forums: the redacted post's thread.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_thread: Option<u64>,
    },
    /// A member reported the message at `offset` of `room` (in the class's
    /// audit log; `from` is the reporter).
    Report {
        room: String,
        offset: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An entry of a class's audit log (`CLASS/audit/log`): `action` was
    /// done in `room` by `from`.
    Audit {
        room: String,
        action: ModAction,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<u64>,
    },
}

impl Body {
    /// A plain chat message.
    pub fn message(text: impl Into<String>) -> Body {
        Body::Message {
            text: text.into(),
            title: None,
            thread: None,
            reply_to: None,
            quote: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceAction {
    Join,
    Leave,
}

/// A member's first connection joined, or its last one left (ephemeral).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub room: String,
    pub action: PresenceAction,
    pub user: UserInfo,
}

/// A member is typing (ephemeral; clients expire it after 5 s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Typing {
    pub room: String,
    pub user: UserInfo,
}

/// The `error` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    #[serde(default)]
    pub id: Option<u32>,
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// Any frame the server sends, as a client decodes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Ok {
        #[serde(default)]
        id: Option<u32>,
        #[serde(default = "nil")]
        data: rmpv::Value,
    },
    Error(ErrorReply),
    Event(Event),
    Presence(Presence),
    Typing(Typing),
    Yjs(YjsFrame),
}

fn nil() -> rmpv::Value {
    rmpv::Value::Nil
}

/// Why an incoming frame could not be turned into a [`Request`].
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("frame is not a messagepack map with a string `type`: {0}")]
    Malformed(String),
    #[error("unknown request type {ty:?}")]
    UnknownType { id: Option<u32>, ty: String },
    #[error("invalid {ty} request: {message}")]
    InvalidField {
        id: Option<u32>,
        ty: String,
        message: String,
    },
}

impl DecodeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::Malformed(_) => ErrorCode::MalformedFrame,
            DecodeError::UnknownType { .. } => ErrorCode::UnknownType,
            DecodeError::InvalidField { .. } => ErrorCode::InvalidField,
        }
    }

    pub fn id(&self) -> Option<u32> {
        match self {
            DecodeError::Malformed(_) => None,
            DecodeError::UnknownType { id, .. } | DecodeError::InvalidField { id, .. } => *id,
        }
    }
}

/// Deepest nesting of arrays and maps a frame may have. Real frames nest
/// about 5 deep; the bound keeps a hostile frame from exhausting the stack
/// of the decoder's recursion (a 730-byte frame nested 700 deep would).
pub const MAX_DEPTH: usize = 16;

fn from_slice_bounded<T: serde::de::DeserializeOwned>(
    frame: &[u8],
) -> Result<T, rmp_serde::decode::Error> {
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(frame);
    deserializer.set_max_depth(MAX_DEPTH);
    T::deserialize(&mut deserializer)
}

/// Decodes one client frame. The fast path is a single typed decode; only a
/// failing frame is decoded a second time, loosely, to say precisely what is wrong.
pub fn decode_request(frame: &[u8]) -> Result<Request, DecodeError> {
    // serde would also accept a tagged enum in positional (array) form;
    // the protocol says a frame is a map, so refuse anything else up front.
    if !frame.first().is_some_and(|&b| is_map_marker(b)) {
        return Err(classify_non_map(frame));
    }
    match from_slice_bounded::<Request>(frame) {
        Ok(request) => Ok(request),
        Err(typed_error) => Err(classify(frame, typed_error)),
    }
}

/// fixmap, map16, map32.
fn is_map_marker(byte: u8) -> bool {
    (0x80..=0x8f).contains(&byte) || byte == 0xde || byte == 0xdf
}

fn classify_non_map(frame: &[u8]) -> DecodeError {
    let mut reader = frame;
    match rmpv::decode::read_value_with_max_depth(&mut reader, MAX_DEPTH) {
        Ok(_) => DecodeError::Malformed("not a map".to_owned()),
        Err(err) => DecodeError::Malformed(format!("not messagepack: {err}")),
    }
}

fn classify(frame: &[u8], typed_error: rmp_serde::decode::Error) -> DecodeError {
    let mut reader = frame;
    let value = match rmpv::decode::read_value_with_max_depth(&mut reader, MAX_DEPTH) {
        Ok(value) => value,
        Err(err) => return DecodeError::Malformed(format!("not messagepack: {err}")),
    };
    let rmpv::Value::Map(entries) = value else {
        return DecodeError::Malformed("not a map".to_owned());
    };
    let field = |name: &str| {
        entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v)
    };
    let id = field("id")
        .and_then(|v| v.as_u64())
        .and_then(|v| u32::try_from(v).ok());
    let ty = match field("type") {
        Some(rmpv::Value::String(s)) => match s.as_str() {
            Some(s) => s.to_owned(),
            None => return DecodeError::Malformed("`type` is not valid utf-8".to_owned()),
        },
        Some(_) => return DecodeError::Malformed("`type` is not a string".to_owned()),
        None => return DecodeError::Malformed("missing `type`".to_owned()),
    };
    if !REQUEST_TYPES.contains(&ty.as_str()) {
        return DecodeError::UnknownType { id, ty };
    }
    DecodeError::InvalidField {
        id,
        ty,
        message: typed_error.to_string(),
    }
}

/// Decodes one server frame (client side).
pub fn decode_server_frame(frame: &[u8]) -> Result<ServerFrame, rmp_serde::decode::Error> {
    from_slice_bounded(frame)
}

/// Decodes the `data` of an `ok` frame as `T` (client side; the caller
/// knows which request the reply answers).
pub fn decode_ok_data<T: serde::de::DeserializeOwned>(
    frame: &[u8],
) -> Result<T, rmp_serde::decode::Error> {
    #[derive(Deserialize)]
    struct Data<T> {
        data: T,
    }
    from_slice_bounded::<Data<T>>(frame).map(|d| d.data)
}

/// Encodes any serializable value as a MessagePack map (field names kept).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(value).map(Bytes::from)
}

#[derive(Serialize)]
struct OkFrame<'a, T: Serialize> {
    #[serde(rename = "type")]
    ty: &'static str,
    id: Option<u32>,
    data: &'a T,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutFrame<'a> {
    Error(&'a ErrorReply),
    Event(&'a Event),
    Presence(&'a Presence),
    Typing(&'a Typing),
    Yjs(&'a YjsFrame),
}

/// A pre-encoded `internal` error, used if encoding itself ever fails.
fn internal_error_frame(id: Option<u32>) -> Bytes {
    let reply = ErrorReply {
        id,
        code: ErrorCode::Internal,
        message: "internal error".to_owned(),
        retry_after_ms: None,
    };
    encode(&OutFrame::Error(&reply)).unwrap_or_else(|_| Bytes::from_static(&[0x80]))
}

fn or_internal(id: Option<u32>, result: Result<Bytes, rmp_serde::encode::Error>) -> Bytes {
    result.unwrap_or_else(|err| {
        tracing::error!(error = %err, "encoding a server frame failed");
        internal_error_frame(id)
    })
}

/// `{type: "ok", id, data}`.
pub fn ok<T: Serialize>(id: Option<u32>, data: &T) -> Bytes {
    or_internal(id, encode(&OkFrame { ty: "ok", id, data }))
}

/// `{type: "ok", id, data: nil}`.
pub fn ok_empty(id: Option<u32>) -> Bytes {
    ok(id, &())
}

/// `{type: "ok", id, data}` where `data` is `data` plus an `events` array
/// whose items are already-encoded event frames (stored bytes, spliced as is).
/// `data` must serialize to a map without an `events` entry.
pub fn ok_with_events<T: Serialize, E: AsRef<[u8]>>(
    id: Option<u32>,
    data: &T,
    events: &[E],
) -> Bytes {
    or_internal(id, splice_events(id, data, events))
}

fn splice_events<T: Serialize, E: AsRef<[u8]>>(
    id: Option<u32>,
    data: &T,
    events: &[E],
) -> Result<Bytes, rmp_serde::encode::Error> {
    use rmp_serde::encode::Error as E2;
    let map = rmp_serde::to_vec_named(data)?;
    let mut rest = map.as_slice();
    let len = rmp::decode::read_map_len(&mut rest)
        .map_err(|_| E2::Syntax("data is not a map".to_owned()))?;
    let mut out =
        Vec::with_capacity(map.len() + 48 + events.iter().map(|e| e.as_ref().len()).sum::<usize>());
    rmp::encode::write_map_len(&mut out, 3)?;
    rmp::encode::write_str(&mut out, "type")?;
    rmp::encode::write_str(&mut out, "ok")?;
    rmp::encode::write_str(&mut out, "id")?;
    match id {
        Some(id) => rmp::encode::write_uint(&mut out, u64::from(id)).map(|_| ())?,
        None => rmp::encode::write_nil(&mut out).map_err(|e| E2::Syntax(e.to_string()))?,
    }
    rmp::encode::write_str(&mut out, "data")?;
    rmp::encode::write_map_len(&mut out, len + 1)?;
    out.extend_from_slice(rest);
    rmp::encode::write_str(&mut out, "events")?;
    let count =
        u32::try_from(events.len()).map_err(|_| E2::Syntax("too many events".to_owned()))?;
    rmp::encode::write_array_len(&mut out, count)?;
    for event in events {
        out.extend_from_slice(event.as_ref());
    }
    Ok(Bytes::from(out))
}

/// `{type: "error", id, code, message, retry_after_ms?}`.
pub fn error(id: Option<u32>, code: ErrorCode, message: impl Into<String>) -> Bytes {
    error_reply(&ErrorReply {
        id,
        code,
        message: message.into(),
        retry_after_ms: None,
    })
}

pub fn error_reply(reply: &ErrorReply) -> Bytes {
    or_internal(reply.id, encode(&OutFrame::Error(reply)))
}

/// `{type: "event", ...}`: the exact bytes that are stored and delivered.
pub fn event(event: &Event) -> Bytes {
    or_internal(None, encode(&OutFrame::Event(event)))
}

pub fn presence(presence: &Presence) -> Bytes {
    or_internal(None, encode(&OutFrame::Presence(presence)))
}

pub fn typing(typing: &Typing) -> Bytes {
    or_internal(None, encode(&OutFrame::Typing(typing)))
}

/// A `yjs` frame: one y-protocols message of a note.
pub fn yjs(frame: &YjsFrame) -> Bytes {
    or_internal(None, encode(&OutFrame::Yjs(frame)))
}

#[derive(Deserialize)]
struct Stamp {
    offset: u64,
    ts: u64,
}

/// The `ts` of a stored event frame, without keeping the rest.
pub fn event_ts(frame: &[u8]) -> Option<u64> {
    from_slice_bounded::<Stamp>(frame).ok().map(|s| s.ts)
}

/// The `from` of a stored event frame.
pub fn event_from(frame: &[u8]) -> Option<UserInfo> {
    #[derive(Deserialize)]
    struct From {
        from: UserInfo,
    }
    from_slice_bounded::<From>(frame).ok().map(|f| f.from)
}

/// The `offset` of a stored event frame, without keeping the rest.
pub fn event_offset(frame: &[u8]) -> Option<u64> {
    from_slice_bounded::<Stamp>(frame).ok().map(|s| s.offset)
}

/// Encodes a request (client side).
pub fn encode_request(request: &Request) -> Result<Bytes, rmp_serde::encode::Error> {
    encode(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_names_are_the_ones_serde_reads() {
        for name in REQUEST_TYPES {
            let frame =
                rmp_serde::to_vec_named(&std::collections::BTreeMap::from([("type", name)]))
                    .expect("encode");
            match rmp_serde::from_slice::<Request>(&frame) {
                Ok(request) => assert_eq!(request.type_name(), *name),
                Err(err) => assert!(
                    !err.to_string().contains("unknown variant"),
                    "serde does not know `{name}`: {err}"
                ),
            }
        }
    }

    fn user() -> UserInfo {
        UserInfo {
            id: "u1".into(),
            name: "Ana".into(),
            role: Role::Student,
        }
    }

    #[test]
    fn request_round_trip() {
        let req = Request::Join {
            id: Some(7),
            room: "3B/chat/revision".into(),
            since: Some(Position {
                epoch: "e1".into(),
                offset: 42,
            }),
        };
        let bytes = encode_request(&req).unwrap();
        assert_eq!(decode_request(&bytes).unwrap(), req);
    }

    #[test]
    fn classify_errors() {
        assert!(matches!(
            decode_request(&[0xc1]),
            Err(DecodeError::Malformed(_))
        ));
        let not_map = rmp_serde::to_vec(&5u8).unwrap();
        assert!(matches!(
            decode_request(&not_map),
            Err(DecodeError::Malformed(_))
        ));
        let positional = rmp_serde::to_vec(&("ping", 1u8)).unwrap();
        assert!(matches!(
            decode_request(&positional),
            Err(DecodeError::Malformed(_))
        ));
        let unknown =
            rmp_serde::to_vec_named(&serde_json::json!({"type": "fly", "id": 3})).unwrap();
        assert_eq!(
            decode_request(&unknown),
            Err(DecodeError::UnknownType {
                id: Some(3),
                ty: "fly".into()
            })
        );
        let wrong = rmp_serde::to_vec_named(
            &serde_json::json!({"type": "post", "id": 4, "room": 5, "text": "x"}),
        )
        .unwrap();
        let err = decode_request(&wrong).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidField);
        assert_eq!(err.id(), Some(4));
    }

    #[test]
    fn deep_nesting_is_malformed_not_a_crash() {
        for depth in [17usize, 700, 60_000] {
            let mut frame = vec![0x83];
            frame.extend(rmp_serde::to_vec("type").unwrap());
            frame.extend(rmp_serde::to_vec("ping").unwrap());
            frame.extend(rmp_serde::to_vec("id").unwrap());
            frame.push(1);
            frame.extend(rmp_serde::to_vec("x").unwrap());
            frame.extend(std::iter::repeat_n(0x91u8, depth));
            frame.push(0xc0);
            let err = decode_request(&frame).unwrap_err();
            assert_eq!(err.code(), ErrorCode::MalformedFrame, "depth {depth}");
        }
    }

    #[test]
    fn spliced_events_decode_as_typed_reply() {
        let ev = Event {
            room: "3B/chat/r".into(),
            epoch: "e".into(),
            offset: 1,
            ts: 10,
            from: user(),
            body: Body::message("salut"),
        };
        let raw = event(&ev);
        let data = PostOk {
            room: "3B/chat/r".into(),
            epoch: "e".into(),
            offset: 1,
            ts: 10,
        };
        let frame = ok_with_events(Some(9), &data, &[raw.clone(), raw]);
        let ServerFrame::Ok { id, .. } = decode_server_frame(&frame).unwrap() else {
            panic!("not ok")
        };
        assert_eq!(id, Some(9));
        #[derive(Deserialize)]
        struct WithEvents {
            offset: u64,
            events: Vec<Event>,
        }
        let parsed: WithEvents = decode_ok_data(&frame).unwrap();
        assert_eq!(parsed.offset, 1);
        assert_eq!(parsed.events, vec![ev.clone(), ev]);
    }
}
