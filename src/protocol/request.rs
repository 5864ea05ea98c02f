//! Requests: what a client sends (`Request`, its moderation actions
//! `ModAction`), and what the server derives from a request's type.

use serde::{Deserialize, Serialize};

use super::*;

/// Every request `type` of v1 (to tell `unknown_type` from
/// `invalid_field`), from the `Request` enum itself: the names serde reads
/// and writes (both derive them with snake_case; a unit test checks they
/// agree).
pub const REQUEST_TYPES: &[&str] = <Request as strum::VariantNames>::VARIANTS;

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
        /// Shown to the whole room (by default only to the pupil and to
        /// teachers and staff).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        announce: bool,
    },
    Unmute {
        user: String,
    },
    /// Removes the user's connections from the room now.
    Kick {
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Shown to the whole room (by default only to the pupil and to
        /// teachers and staff).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        announce: bool,
    },
    /// Kicks the user and refuses their joins until `unban`.
    Ban {
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Shown to the whole room (by default only to the pupil and to
        /// teachers and staff).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        announce: bool,
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
