//! The class agenda (`CLASS/agenda/NAME`): dated events teachers post for
//! a class (a test, a trip, a meeting, a deadline), which the class's
//! pupils and their parents read, live or by date range. The first kind
//! added through the kinds seam: its requests and events are its own
//! (`agenda_add`, `agenda_change`, `agenda_cancel`, `agenda`; events
//! `agenda_item`, `agenda_cancel`), decoded here, and the core knows
//! nothing of them.

mod requests;
pub mod state;

use crate::auth::Claims;
use crate::protocol::{Bucket, ErrorCode, ForumSettings, Role};
use crate::room::policy::Action;
use crate::room::{KindState, LoadContext, Room, RoomKind, RoomName};
use crate::session::kind::{BoxFuture, Handled, KindHandler, KindRequest};
use crate::session::{NewPost, Refusal, Session};
use crate::store::StoreError;

pub use requests::{AgendaOk, NewItem, Request as AgendaRequest};
pub use state::{Agenda as State, AgendaItem, CancelFields, ItemFields};

/// The kind's name in room names.
pub const NAME: &str = "agenda";
/// Event kinds.
pub const ITEM: &str = "agenda_item";
pub const CANCEL: &str = "agenda_cancel";

pub struct Agenda;

impl RoomKind for Agenda {
    fn name(&self) -> &'static str {
        NAME
    }

    /// The class's pupils and their parents read it (a parent's `classes`
    /// are their children's classes); the class's teachers and staff
    /// write and moderate it.
    fn allowed(
        &self,
        user: &Claims,
        room: &RoomName,
        _grants: Option<&ForumSettings>,
        action: Action,
    ) -> bool {
        let in_class = user.in_class(room.class());
        match (user.role, action) {
            (Role::Staff, _) => true,
            (Role::Teacher, _) => in_class,
            (Role::Student | Role::Parent, Action::Read) => in_class,
            (Role::Student | Role::Parent, Action::Post | Action::Moderate) => false,
        }
    }

    fn events(&self) -> &'static [&'static str] {
        &[ITEM, CANCEL]
    }

    /// The items, from every stored event: a class posts a few hundred a
    /// year.
    fn load(
        &self,
        cx: &LoadContext<'_>,
        room: &str,
        last: u64,
    ) -> Result<Box<dyn KindState>, StoreError> {
        let events = super::common::stored_events(cx, room, last)?;
        Ok(Box::new(state::Agenda::rebuild(&events)))
    }
}

impl KindHandler for Agenda {
    fn requests(&self) -> &'static [&'static str] {
        &["agenda_add", "agenda_change", "agenda_cancel", "agenda"]
    }

    /// Writing an item is a post: its handler takes from the post bucket.
    fn bucket(&self, request: &KindRequest) -> Bucket {
        match request.type_name() {
            "agenda" => Bucket::Requests,
            _ => Bucket::InHandler,
        }
    }

    fn returned_by(&self, request: &str) -> &'static [ErrorCode] {
        use ErrorCode::*;
        match request {
            "agenda_add" => &[
                NotJoined,
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
            "agenda_change" => &[
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
            "agenda_cancel" => &[
                NotJoined,
                Forbidden,
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
            "agenda" => &[
                InvalidRoom,
                UnknownRoom,
                Forbidden,
                Banned,
                RateLimited,
                StorageError,
                Unavailable,
            ],
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

    /// Agenda rooms carry items, not messages.
    fn check_post(
        &self,
        _session: &Session,
        _room: &Room,
        _post: &NewPost,
    ) -> Result<Option<u64>, Refusal> {
        Err(Refusal::new(
            ErrorCode::InvalidField,
            "agenda rooms take agenda_add, not post",
        ))
    }
}
