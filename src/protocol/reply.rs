//! Replies: the `data` of `ok` replies per request, `error` replies, and
//! `ServerFrame`, any frame as a client decodes it.

use serde::{Deserialize, Serialize};

use super::*;

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
    /// A parent's children, as their token lists them (absent for others).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildInfo>,
    pub node: String,
    pub version: String,
    pub limits: Limits,
}

/// One of a parent's children in `HelloOk`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildInfo {
    pub id: String,
    /// The name the token gives, or the id.
    pub name: String,
    /// The child's classes; empty when the token does not say (the child
    /// then counts as in each of the parent's classes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
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
    /// Only moderators may write (`read_only`, or a note locked by
    /// `validate`): a client shows it so before the first refusal.
    #[serde(default)]
    pub read_only: bool,
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
    pub read_only: bool,
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

pub(super) fn nil() -> rmpv::Value {
    rmpv::Value::Nil
}
