//! Direct messages (`_/dm/<key>`): conversations between two or more
//! people of the school, outside any class. Who may write to whom comes
//! from the school directory and the school's options (`policy.rs`); the
//! members of a conversation are in its events (`dm_members`), so the
//! room admits them (`KindState::admits`) and nobody else — staff only
//! after a report, and each such reading is written in the conversation
//! for its members to see (`dm_review`).
//!
//! Messages are ordinary `message` events (history, recovery, ordering,
//! redaction, erasure as in a chat), sent with `dm_send`, which waits
//! until the message is durable, then puts a notification in each other
//! member's feed (`kinds::inbox`; held through their quiet hours) and
//! tells the sender whose quiet hours hold it.
//!
//! A conversation of two has one room, whose key is derived from the pair,
//! so writing again to someone reopens the same conversation.

mod policy;
mod requests;
pub mod state;

use crate::auth::Claims;
use crate::protocol::{Body, Bucket, ErrorCode, Event, ForumSettings};
use crate::room::policy::Action;
use crate::room::{Erasure, KindState, LoadContext, Room, RoomKind, RoomName};
use crate::session::kind::{BoxFuture, Handled, KindHandler, KindRequest};
use crate::session::{NewPost, Refusal, Session};
use crate::store::StoreError;

pub use policy::{may_add, may_write};
pub use requests::{
    Contact, ContactsOk, ConversationsOk, DmOk, Quiet, Request as DmRequest, SentOk, SharedOk,
};
pub use state::Conversation;

pub const NAME: &str = "dm";
/// Event kinds.
pub const MEMBERS: &str = "dm_members";
pub const PREFS: &str = "dm_prefs";
pub const SHARED: &str = "dm_shared";
pub const REVIEWED: &str = "dm_reviewed";
/// Most members of a conversation.
pub const MAX_MEMBERS: usize = 12;

pub struct Dm;

impl RoomKind for Dm {
    fn name(&self) -> &'static str {
        NAME
    }

    fn valid_name(&self, name: &str) -> bool {
        name.len() == 32
            && name
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    }

    fn sample_name(&self) -> &'static str {
        "00000000000000000000000000000000"
    }

    fn classless(&self) -> bool {
        true
    }

    /// Nobody by role: members by the conversation's events (`admits`).
    fn allowed(
        &self,
        _user: &Claims,
        _room: &RoomName,
        _grants: Option<&ForumSettings>,
        _action: Action,
    ) -> bool {
        false
    }

    /// `dm_start` creates conversations; joining never does.
    fn may_create(&self, _user: &Claims, _room: &RoomName) -> bool {
        false
    }

    fn has_grants(&self) -> bool {
        true
    }

    fn events(&self) -> &'static [&'static str] {
        &[MEMBERS, PREFS, SHARED, REVIEWED]
    }

    fn load(
        &self,
        cx: &LoadContext<'_>,
        room: &str,
        last: u64,
    ) -> Result<Box<dyn KindState>, StoreError> {
        let events = super::common::stored_events(cx, room, last)?;
        Ok(Box::new(Conversation::rebuild(&events)))
    }

    /// A user's messages and preferences go with them; a member list they
    /// posted stays (the others' access to the conversation rests on it),
    /// counted in `kept`.
    fn erasure(&self, event: &Event) -> Erasure {
        match &event.body {
            Body::Kind(body) if body.kind == MEMBERS => Erasure::Keep,
            _ => Erasure::Redact,
        }
    }
}

impl KindHandler for Dm {
    fn requests(&self) -> &'static [&'static str] {
        requests::TYPES
    }

    fn bucket(&self, request: &KindRequest) -> Bucket {
        match request.type_name() {
            "dm_send" | "dm_start" | "dm_add" | "dm_prefs" | "dm_share" => Bucket::InHandler,
            _ => Bucket::Requests,
        }
    }

    fn returned_by(&self, request: &str) -> &'static [ErrorCode] {
        use ErrorCode::*;
        match request {
            "dm_start" => &[
                Forbidden,
                UnknownTarget,
                RateLimited,
                Overloaded,
                StorageError,
                Unavailable,
            ],
            "dm_add" => &[
                InvalidRoom,
                Forbidden,
                UnknownTarget,
                RateLimited,
                Overloaded,
                StorageError,
                Unavailable,
            ],
            "dm_send" => &[
                InvalidRoom,
                Forbidden,
                MessageTooLong,
                Banned,
                Muted,
                ReadOnly,
                SlowMode,
                RateLimited,
                Overloaded,
                StorageError,
                Unavailable,
            ],
            "dm_prefs" => &[
                InvalidRoom,
                Forbidden,
                RateLimited,
                Overloaded,
                StorageError,
                Unavailable,
            ],
            "dm_share" => &[
                InvalidRoom,
                UnknownRoom,
                Forbidden,
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
            "dm_review" => &[
                InvalidRoom,
                Forbidden,
                RateLimited,
                Overloaded,
                StorageError,
                Unavailable,
            ],
            "conversations" => &[RateLimited, StorageError, Unavailable],
            "contacts" => &[RateLimited],
            _ => &[],
        }
    }

    fn handle<'a>(
        &'static self,
        session: &'a mut Session,
        request: KindRequest,
    ) -> BoxFuture<'a, Handled> {
        Box::pin(requests::handle(session, request))
    }

    /// Messages go through `dm_send`, which notifies the other members.
    fn check_post(
        &self,
        _session: &Session,
        _room: &Room,
        _post: &NewPost,
    ) -> Result<Option<u64>, Refusal> {
        Err(Refusal::new(
            ErrorCode::InvalidField,
            "conversations take dm_send, not post",
        ))
    }
}
