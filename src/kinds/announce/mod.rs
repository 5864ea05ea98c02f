//! Announcements through diffusion lists (`_/announce/<key>`, one room per
//! announcement): staff write to a class, a group, a level, all teachers,
//! all staff, the parents of a class, or the whole school; teachers to
//! their classes and their classes' parents. The recipients are resolved
//! from the school directory when it is sent and kept in the room (shown
//! to the sender and staff only), so the room admits exactly them
//! (`KindState::admits`).
//!
//! Each recipient is notified through their feed (`kinds::inbox`: live, or
//! at their next connection; held through their quiet hours unless the
//! announcement is urgent, which only staff may make, and which the
//! audit log records). Opening it posts `announce_read`, acknowledging it
//! `announce_ack`; those receipts are shown to their author, the sender
//! and staff only, and `announce_status` counts them: "read by 23 of 31",
//! the families none of whose parents read it, who has not acknowledged.
//! No reply-all: an announcement takes no messages.

mod requests;
pub mod state;

use crate::auth::Claims;
use crate::protocol::{Body, Bucket, ErrorCode, Event, ForumSettings, Role};
use crate::room::policy::Action;
use crate::room::{KindState, LoadContext, Room, RoomKind, RoomName, Viewer};
use crate::session::kind::{BoxFuture, Handled, KindHandler, KindRequest};
use crate::session::{NewPost, Refusal, Session};
use crate::store::StoreError;

pub use requests::{AnnounceOk, Family, Request as AnnounceRequest, SentList, SentOne, StatusOk};
pub use state::{AnnounceFields, Announcement};

pub const NAME: &str = "announce";
/// Event kinds.
pub const TO: &str = "announce_to";
pub const ANNOUNCE: &str = "announce";
pub const READ: &str = "announce_read";
pub const ACK: &str = "announce_ack";

pub struct Announce;

impl RoomKind for Announce {
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

    fn shows_presence(&self) -> bool {
        false
    }

    /// Nobody by role alone: the announcement's recipients, its sender and
    /// staff, by its events (`admits`).
    fn allowed(
        &self,
        _user: &Claims,
        _room: &RoomName,
        _grants: Option<&ForumSettings>,
        _action: Action,
    ) -> bool {
        false
    }

    fn may_create(&self, _user: &Claims, _room: &RoomName) -> bool {
        false
    }

    fn has_grants(&self) -> bool {
        true
    }

    fn events(&self) -> &'static [&'static str] {
        &[TO, ANNOUNCE, READ, ACK]
    }

    fn load(
        &self,
        cx: &LoadContext<'_>,
        room: &str,
        last: u64,
    ) -> Result<Box<dyn KindState>, StoreError> {
        let events = super::common::stored_events(cx, room, last)?;
        Ok(Box::new(Announcement::rebuild(&events)))
    }

    fn filters(&self) -> bool {
        true
    }

    /// The list of recipients: its sender and staff. A receipt: its
    /// author, the sender and staff. The announcement: everyone admitted.
    fn shown(&self, event: &Event, viewer: &Viewer<'_>) -> bool {
        let Body::Kind(body) = &event.body else {
            return true;
        };
        let staff = viewer.user.role == Role::Staff;
        match body.kind.as_str() {
            TO => staff || viewer.user.id == event.from.id,
            READ | ACK => {
                staff
                    || viewer.user.id == event.from.id
                    || body
                        .decode::<state::ReceiptFields>()
                        .is_ok_and(|r| r.sender == viewer.user.id)
            }
            _ => true,
        }
    }
}

impl KindHandler for Announce {
    fn requests(&self) -> &'static [&'static str] {
        requests::TYPES
    }

    fn bucket(&self, request: &KindRequest) -> Bucket {
        match request.type_name() {
            "announce" | "announce_read" | "announce_ack" => Bucket::InHandler,
            _ => Bucket::Requests,
        }
    }

    fn returned_by(&self, request: &str) -> &'static [ErrorCode] {
        use ErrorCode::*;
        match request {
            "announce" => &[
                Forbidden,
                MessageTooLong,
                RateLimited,
                Overloaded,
                StorageError,
                Unavailable,
            ],
            "announce_read" | "announce_ack" => &[
                InvalidRoom,
                Forbidden,
                RateLimited,
                Overloaded,
                StorageError,
                Unavailable,
            ],
            "announce_status" => &[
                InvalidRoom,
                Forbidden,
                RateLimited,
                StorageError,
                Unavailable,
            ],
            "announcements" => &[RateLimited, StorageError, Unavailable],
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

    /// No reply-all.
    fn check_post(
        &self,
        _session: &Session,
        _room: &Room,
        _post: &NewPost,
    ) -> Result<Option<u64>, Refusal> {
        Err(Refusal::new(
            ErrorCode::Forbidden,
            "an announcement takes no replies: write to its sender",
        ))
    }

    fn reportable(&self) -> bool {
        false
    }
}
