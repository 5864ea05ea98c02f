//! Stable error codes and WebSocket close codes of protocol v1.
//!
//! The strings and numbers here are part of the wire contract documented in
//! `protocol/README.md`: never renumber or rename one, only add.

use serde::{Deserialize, Serialize};

/// The `code` of an `error` reply. Serialized as a snake_case string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not MessagePack, not a map, or has no string `type`.
    MalformedFrame,
    /// `type` names no request of this protocol version.
    UnknownType,
    /// A field is missing, has the wrong type, or a value out of range.
    InvalidField,
    /// `hello` sent on a connection that is already authenticated.
    AlreadyAuthenticated,
    /// The token is missing, malformed, forged, signed by an unknown key or has bad claims.
    Unauthorized,
    /// The token's `exp` is in the past.
    TokenExpired,
    /// The room name is not `class/kind/name` or names an unknown kind.
    InvalidRoom,
    /// The room's policy does not allow this user to do this.
    Forbidden,
    /// The connection already joined this room.
    AlreadyJoined,
    /// The request needs the connection to have joined the room first.
    NotJoined,
    /// The connection joined as many rooms as the server allows.
    TooManyRooms,
    /// The message text is longer than `max_message_len` bytes.
    MessageTooLong,
    /// The user's token bucket is empty; `retry_after_ms` says when to retry.
    RateLimited,
    /// The server's write queue is full; nothing was stored, retry later.
    Overloaded,
    /// Storing failed; nothing was accepted.
    StorageError,
    /// A moderation request names a message or user the room does not know.
    UnknownTarget,
    /// The user is muted in this room until `until` (in the message).
    Muted,
    /// The user is banned from this room.
    Banned,
    /// The room is read-only: only moderators may post.
    ReadOnly,
    /// Slow mode: wait `retry_after_ms` before posting again.
    SlowMode,
    /// Cluster mode: Redis is unreachable or the cluster is resynchronising
    /// after a Redis restart; nothing was stored. Retry (after
    /// `retry_after_ms` when given).
    Unavailable,
    /// An unexpected server fault; nothing was accepted.
    Internal,
    /// A forum that no moderator has opened yet (`configure`).
    UnknownRoom,
    /// The post can no longer be edited: the edit window passed, or
    /// someone replied to it.
    NotEditable,
    /// A Yjs update that cannot be decoded or applied; the note is unchanged.
    InvalidUpdate,
    /// A Yjs message (whole or in parts) larger than `note_max_bytes`, or
    /// holding one value that cannot be cut to `note_max_update_bytes`.
    UpdateTooLarge,
    /// The update would make the note larger than `note_max_bytes`.
    DocumentTooLarge,
    /// A Yjs update that does not integrate completely into the note (it
    /// depends on an update the note does not hold, or deletes beyond it):
    /// nothing of it is applied; the client must resynchronise.
    OutOfSync,
}

impl ErrorCode {
    /// Every code, in table order (used for metrics labels and the spec test).
    pub const ALL: [ErrorCode; 28] = [
        ErrorCode::MalformedFrame,
        ErrorCode::UnknownType,
        ErrorCode::InvalidField,
        ErrorCode::AlreadyAuthenticated,
        ErrorCode::Unauthorized,
        ErrorCode::TokenExpired,
        ErrorCode::InvalidRoom,
        ErrorCode::Forbidden,
        ErrorCode::AlreadyJoined,
        ErrorCode::NotJoined,
        ErrorCode::TooManyRooms,
        ErrorCode::MessageTooLong,
        ErrorCode::RateLimited,
        ErrorCode::Overloaded,
        ErrorCode::StorageError,
        ErrorCode::UnknownTarget,
        ErrorCode::Muted,
        ErrorCode::Banned,
        ErrorCode::ReadOnly,
        ErrorCode::SlowMode,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::UnknownRoom,
        ErrorCode::NotEditable,
        ErrorCode::InvalidUpdate,
        ErrorCode::UpdateTooLarge,
        ErrorCode::DocumentTooLarge,
        ErrorCode::OutOfSync,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedFrame => "malformed_frame",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::AlreadyAuthenticated => "already_authenticated",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::MessageTooLong => "message_too_long",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::StorageError => "storage_error",
            ErrorCode::UnknownTarget => "unknown_target",
            ErrorCode::Muted => "muted",
            ErrorCode::Banned => "banned",
            ErrorCode::ReadOnly => "read_only",
            ErrorCode::SlowMode => "slow_mode",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::UnknownRoom => "unknown_room",
            ErrorCode::NotEditable => "not_editable",
            ErrorCode::InvalidUpdate => "invalid_update",
            ErrorCode::UpdateTooLarge => "update_too_large",
            ErrorCode::DocumentTooLarge => "document_too_large",
            ErrorCode::OutOfSync => "out_of_sync",
        }
    }

    /// Index into [`ErrorCode::ALL`].
    pub fn index(self) -> usize {
        ErrorCode::ALL
            .iter()
            .position(|c| *c == self)
            .unwrap_or(ErrorCode::ALL.len() - 1)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Codes any request may get, whatever its type: decoding errors
/// (`malformed_frame`, `unknown_type`, `invalid_field`) and `internal` (a
/// server fault). Before a successful `hello`, any request other than
/// `hello` gets `unauthorized`.
pub const ANY_REQUEST: [ErrorCode; 4] = [
    ErrorCode::MalformedFrame,
    ErrorCode::UnknownType,
    ErrorCode::InvalidField,
    ErrorCode::Internal,
];

/// The error codes a request of type `request` may get besides
/// [`ANY_REQUEST`]: the "error codes" column of the Requests table of
/// `protocol/README.md`, and the "Returned by" column of its error table
/// read the other way. `tests/spec.rs` checks both tables against this,
/// and debug builds check every refusal the server sends against it.
pub fn returned_by(request: &str) -> &'static [ErrorCode] {
    use ErrorCode::*;
    match request {
        "hello" => &[Unauthorized, TokenExpired, AlreadyAuthenticated, Overloaded],
        "join" => &[
            InvalidRoom,
            UnknownRoom,
            Forbidden,
            AlreadyJoined,
            TooManyRooms,
            Banned,
            RateLimited,
            StorageError,
            Unavailable,
        ],
        "leave" => &[NotJoined],
        "post" => &[
            NotJoined,
            Forbidden,
            MessageTooLong,
            UnknownTarget,
            Banned,
            Muted,
            ReadOnly,
            SlowMode,
            RateLimited,
            Overloaded,
            StorageError,
            Unavailable,
        ],
        "typing" => &[NotJoined, Forbidden, Banned, Muted, ReadOnly],
        "history" => &[
            InvalidRoom,
            UnknownRoom,
            Forbidden,
            UnknownTarget,
            Banned,
            RateLimited,
            StorageError,
            Unavailable,
        ],
        "moderate" => &[
            InvalidRoom,
            UnknownRoom,
            Forbidden,
            UnknownTarget,
            RateLimited,
            Overloaded,
            StorageError,
            Unavailable,
        ],
        "report" => &[
            InvalidRoom,
            UnknownRoom,
            Forbidden,
            UnknownTarget,
            Banned,
            RateLimited,
            Overloaded,
            StorageError,
            Unavailable,
        ],
        "room_view" => &[
            InvalidRoom,
            UnknownRoom,
            Forbidden,
            RateLimited,
            StorageError,
            Unavailable,
        ],
        "edit" => &[
            NotJoined,
            Forbidden,
            MessageTooLong,
            UnknownTarget,
            NotEditable,
            Banned,
            Muted,
            ReadOnly,
            SlowMode,
            RateLimited,
            Overloaded,
            StorageError,
            Unavailable,
        ],
        "answer" => &[
            NotJoined,
            Forbidden,
            UnknownTarget,
            Banned,
            Muted,
            ReadOnly,
            Overloaded,
            StorageError,
            Unavailable,
        ],
        "threads" => &[
            InvalidRoom,
            UnknownRoom,
            Forbidden,
            Banned,
            RateLimited,
            StorageError,
            Unavailable,
        ],
        "mark_read" => &[
            InvalidRoom,
            UnknownRoom,
            Forbidden,
            UnknownTarget,
            Banned,
            RateLimited,
            StorageError,
            Unavailable,
        ],
        "rooms" => &[
            InvalidRoom,
            Forbidden,
            RateLimited,
            StorageError,
            Unavailable,
        ],
        "yjs" => &[
            NotJoined,
            Forbidden,
            InvalidUpdate,
            OutOfSync,
            UpdateTooLarge,
            DocumentTooLarge,
            Banned,
            Muted,
            ReadOnly,
            RateLimited,
            Overloaded,
            StorageError,
            Unavailable,
        ],
        "note_versions" => &[
            InvalidRoom,
            UnknownRoom,
            Forbidden,
            Banned,
            RateLimited,
            StorageError,
            Unavailable,
        ],
        "note_export" => &[
            InvalidRoom,
            UnknownRoom,
            Forbidden,
            UnknownTarget,
            Banned,
            RateLimited,
            StorageError,
            Unavailable,
        ],
        _ => &[],
    }
}

/// Whether a request of type `request` may be refused with `code`, per
/// [`returned_by`] and [`ANY_REQUEST`].
pub fn may_return(request: &str, code: ErrorCode) -> bool {
    ANY_REQUEST.contains(&code) || returned_by(request).contains(&code)
}

/// WebSocket close codes the server uses. 1000–1011 are RFC 6455 codes;
/// 4000–4999 are préau's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// The server is shutting down; reconnect (to another node) and recover.
    GoingAway,
    /// A text frame was sent; protocol v1 is binary MessagePack only.
    UnsupportedData,
    /// A frame exceeded `max_frame_bytes`.
    MessageTooBig,
    /// An unexpected server fault.
    InternalError,
    /// Every session slot was taken at `hello`, or the connection was
    /// evicted before `hello` to make room: reconnect after a backoff.
    TryAgainLater,
    /// A request came before a successful `hello`.
    ProtocolViolation,
    /// The token in `hello` is missing, malformed, forged or has bad claims.
    Unauthorized,
    /// The token expired (at `hello`, or while connected).
    TokenExpired,
    /// No `hello` within `auth_timeout`.
    AuthTimeout,
    /// The outbound queue stayed over its budget: the client reads too slowly.
    SlowConsumer,
    /// Nothing was received within `idle_timeout` (not even a pong).
    IdleTimeout,
    /// The school's directory changed what this user may reach (they left,
    /// changed class, a parent's child was added): reconnect at once and
    /// recover; the next `hello` runs with what the directory says now.
    DirectoryChanged,
}

impl CloseCode {
    pub const ALL: [CloseCode; 12] = [
        CloseCode::GoingAway,
        CloseCode::UnsupportedData,
        CloseCode::MessageTooBig,
        CloseCode::InternalError,
        CloseCode::TryAgainLater,
        CloseCode::ProtocolViolation,
        CloseCode::Unauthorized,
        CloseCode::TokenExpired,
        CloseCode::AuthTimeout,
        CloseCode::SlowConsumer,
        CloseCode::IdleTimeout,
        CloseCode::DirectoryChanged,
    ];

    pub fn code(self) -> u16 {
        match self {
            CloseCode::GoingAway => 1001,
            CloseCode::UnsupportedData => 1003,
            CloseCode::MessageTooBig => 1009,
            CloseCode::InternalError => 1011,
            CloseCode::TryAgainLater => 1013,
            CloseCode::ProtocolViolation => 4000,
            CloseCode::Unauthorized => 4001,
            CloseCode::TokenExpired => 4002,
            CloseCode::AuthTimeout => 4003,
            CloseCode::SlowConsumer => 4004,
            CloseCode::IdleTimeout => 4005,
            CloseCode::DirectoryChanged => 4006,
        }
    }

    /// The close frame's reason text (short: close reasons are capped at 123 bytes).
    pub fn reason(self) -> &'static str {
        match self {
            CloseCode::GoingAway => "server shutting down",
            CloseCode::UnsupportedData => "text frames are not supported, send binary msgpack",
            CloseCode::MessageTooBig => "frame too large",
            CloseCode::InternalError => "internal error",
            CloseCode::TryAgainLater => "server busy, try again later",
            CloseCode::ProtocolViolation => "protocol violation: hello first",
            CloseCode::Unauthorized => "unauthorized",
            CloseCode::TokenExpired => "token expired",
            CloseCode::AuthTimeout => "no hello in time",
            CloseCode::SlowConsumer => "slow consumer",
            CloseCode::IdleTimeout => "idle timeout",
            CloseCode::DirectoryChanged => "access changed by the school directory, reconnect",
        }
    }
}
