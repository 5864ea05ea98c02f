//! Hand-ins, the *devoirs à rendre* (`CLASS/handin/main`, one room per
//! class): a teacher opens one (from a diary entry or not) with
//! instructions, a deadline, whom it is for and what files it takes;
//! each pupil hands in a file, and may replace it until the deadline;
//! late ones are marked, and taken only if the teacher allows; the
//! teacher downloads them all as one zip and returns each pupil a
//! correction, privately.
//!
//! Who sees what, decided per event ([`RoomKind::shown`]) so live
//! delivery, history and recovery agree: a hand-in is shown to its pupils,
//! their parents, teachers and staff; a submission and a correction to
//! that pupil, their parents, teachers and staff — never to another
//! pupil or another pupil's parents. Files follow the same rule
//! (`KindState::file`).

mod requests;
pub mod state;

use crate::auth::Claims;
use crate::protocol::{Body, Bucket, ErrorCode, Event, ForumSettings};
use crate::room::policy::Action;
use crate::room::{Erasure, KindState, LoadContext, Retention, Room, RoomKind, RoomName, Viewer};
use crate::session::kind::{BoxFuture, Handled, KindHandler, KindRequest};
use crate::session::{NewPost, Refusal, Session};
use crate::store::StoreError;

pub use requests::{
    Counts, HandinView, HandinsOk, PupilRow, Request as HandinRequest, StatusOk as HandinStatusOk,
};
pub use state::{Handins as State, OpenFields};

pub const NAME: &str = "handin";
/// The one hand-in room of a class.
pub const MAIN: &str = "main";
/// Event kinds.
pub const OPEN: &str = "handin_open";
pub const CHANGE: &str = "handin_change";
pub const SUBMIT: &str = "handin_submit";
pub const RETURN: &str = "handin_return";

pub struct Handin;

impl RoomKind for Handin {
    fn name(&self) -> &'static str {
        NAME
    }

    fn valid_name(&self, name: &str) -> bool {
        name == MAIN
    }

    fn sample_name(&self) -> &'static str {
        MAIN
    }

    /// The class's teachers open, change and return; its pupils read and
    /// hand in (`Post`); parents of its pupils read; staff everything.
    fn allowed(
        &self,
        user: &Claims,
        room: &RoomName,
        _grants: Option<&ForumSettings>,
        action: Action,
    ) -> bool {
        crate::room::policy::family_space(user, room, action)
    }

    fn events(&self) -> &'static [&'static str] {
        &[OPEN, CHANGE, SUBMIT, RETURN]
    }

    fn load(
        &self,
        cx: &LoadContext<'_>,
        room: &str,
        last: u64,
    ) -> Result<Box<dyn KindState>, StoreError> {
        let events = super::common::stored_events(cx, room, last)?;
        Ok(Box::new(state::Handins::rebuild(&events)))
    }

    /// Pupils' work for the year, like the diary: not by age. A replaced
    /// submission's file is deleted when it is replaced.
    fn retention(&self) -> Retention {
        Retention::Whole
    }

    /// What the teacher asked is the class's record: kept. A pupil's
    /// submissions are theirs: redacted (and their files deleted).
    fn erasure(&self, event: &Event) -> Erasure {
        match &event.body {
            Body::Kind(body) if body.kind == OPEN || body.kind == CHANGE => Erasure::Keep,
            Body::Kind(body) if body.kind == RETURN => Erasure::Keep,
            _ => Erasure::Redact,
        }
    }

    /// A correction returned to an erased pupil is theirs too.
    fn erases_other(&self, _room: &str, event: &Event, user: &str) -> bool {
        matches!(&event.body, Body::Kind(body) if body.kind == RETURN
            && body.decode::<state::ReturnFields>().is_ok_and(|r| r.pupil == user))
    }

    fn filters(&self) -> bool {
        true
    }

    fn shown(&self, event: &Event, viewer: &Viewer<'_>) -> bool {
        let Body::Kind(body) = &event.body else {
            return true;
        };
        if viewer.moderator {
            return true;
        }
        match body.kind.as_str() {
            OPEN => body
                .decode::<OpenFields>()
                .is_ok_and(|f| f.pupils.iter().any(|p| viewer.is_or_parent_of(p))),
            SUBMIT => viewer.is_or_parent_of(&event.from.id),
            RETURN => body
                .decode::<state::ReturnFields>()
                .is_ok_and(|r| viewer.is_or_parent_of(&r.pupil)),
            _ => true,
        }
    }
}

impl KindHandler for Handin {
    fn requests(&self) -> &'static [&'static str] {
        requests::TYPES
    }

    fn bucket(&self, request: &KindRequest) -> Bucket {
        match request.type_name() {
            "handin_open" | "handin_change" | "handin_submit" | "handin_return" => {
                Bucket::InHandler
            }
            _ => Bucket::Requests,
        }
    }

    fn returned_by(&self, request: &str) -> &'static [ErrorCode] {
        use ErrorCode::*;
        match request {
            "handin_open" | "handin_return" => &[
                InvalidRoom,
                UnknownRoom,
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
            "handin_change" | "handin_submit" => &[
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
            "handins" => &[
                InvalidRoom,
                UnknownRoom,
                Forbidden,
                Banned,
                RateLimited,
                StorageError,
                Unavailable,
            ],
            "handin_status" => &[
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

    fn handle<'a>(
        &'static self,
        session: &'a mut Session,
        request: KindRequest,
    ) -> BoxFuture<'a, Handled> {
        Box::pin(requests::handle(session, request))
    }

    /// Hand-in rooms carry hand-ins, not messages.
    fn check_post(
        &self,
        _session: &Session,
        _room: &Room,
        _post: &NewPost,
    ) -> Result<Option<u64>, Refusal> {
        Err(Refusal::new(
            ErrorCode::InvalidField,
            "hand-in rooms take handin_submit, not post",
        ))
    }

    fn reportable(&self) -> bool {
        false
    }
}
