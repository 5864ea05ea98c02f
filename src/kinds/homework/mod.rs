//! The homework diary, the *cahier de textes* (`CLASS/homework/diary`, one
//! per class or group): lesson records and homework items that the
//! class's teachers write, that its pupils read live and mark done, and
//! that parents read for each of their children. It is also the school's
//! record of lessons: kept whole (never by age), and a teacher's erasure
//! keeps their entries.
//!
//! What is special here, and why it lives in the kind:
//! - **Scheduled publication.** An entry may be written now and shown at
//!   `publish_at` (the start of the lesson). Its events are shown to its
//!   author and staff only ([`RoomKind::shown`]); at `publish_at` the
//!   state posts a `homework_publish` event repeating the version
//!   ([`KindState::take_due`]), which everyone is shown. Every node that
//!   holds the room does the same with the same idempotency key, and the
//!   room stores it once.
//! - **Done marks are private.** A pupil's `homework_done` is shown to
//!   that pupil and their parents only; teachers get counts from the
//!   listings, and names only where the school chose so
//!   (`homework_done_names`).
//! - **Queries across rooms.** `homework_due` reads the diaries of all
//!   the user's classes (a parent's: each child's, labelled with the
//!   child), from the state's day index (`state.rs`).

mod feed;
mod requests;
pub mod state;

use crate::auth::Claims;
use crate::protocol::{Body, Bucket, ErrorCode, Event, ForumSettings, Role};
use crate::room::policy::Action;
use crate::room::{Erasure, KindState, LoadContext, Retention, Room, RoomKind, RoomName, Viewer};
use crate::session::kind::{BoxFuture, Handled, KindHandler, KindRequest};
use crate::session::{NewPost, Refusal, Session};
use crate::store::StoreError;

pub use feed::{open as open_feed, FeedError, FeedOwner, FEED_LIFETIME_SECS};
pub use requests::{
    ChildLabel, DueItem, DueOk, FeedOk, HomeworkOk, LoadOk, Request as HomeworkRequest,
};
pub use state::{DayLoad, Diary as State, DiaryEntry, EntryFields, What};

/// The kind's name in room names.
pub const NAME: &str = "homework";
/// The one diary of a class: `CLASS/homework/diary`.
pub const DIARY: &str = "diary";
/// Event kinds.
pub const ENTRY: &str = "homework_entry";
pub const PUBLISH: &str = "homework_publish";
pub const DONE: &str = "homework_done";

/// The diary room of `class`.
pub fn diary_of(class: &str) -> String {
    format!("{class}/{NAME}/{DIARY}")
}

pub struct Homework;

impl RoomKind for Homework {
    fn name(&self) -> &'static str {
        NAME
    }

    /// One diary per class or group: queries across a user's classes find
    /// it by name.
    fn valid_name(&self, name: &str) -> bool {
        name == DIARY
    }

    fn sample_name(&self) -> &'static str {
        DIARY
    }

    /// The class's teachers write entries and moderate; its pupils read
    /// and mark homework done (`Post`); parents whose children are in the
    /// class read; staff do everything.
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
        &[ENTRY, PUBLISH, DONE]
    }

    /// Every stored event: a class writes a few thousand entries a year
    /// (see `tests/homework.rs` for the load time of a year).
    fn load(
        &self,
        cx: &LoadContext<'_>,
        room: &str,
        last: u64,
    ) -> Result<Box<dyn KindState>, StoreError> {
        let events = super::common::stored_events(cx, room, last)?;
        Ok(Box::new(state::Diary::rebuild(&events)))
    }

    /// The school keeps the diary for the year: not by age.
    fn retention(&self) -> Retention {
        Retention::Whole
    }

    /// A teacher's entries are the school's record of lessons and work
    /// set: kept. A pupil's done marks are theirs: redacted.
    fn erasure(&self, event: &Event) -> Erasure {
        match &event.body {
            Body::Kind(body) if body.kind == ENTRY || body.kind == PUBLISH => Erasure::Keep,
            _ => Erasure::Redact,
        }
    }

    /// Deleting an entry is redacting its first event.
    fn redactable(&self) -> bool {
        true
    }

    fn schedules(&self) -> bool {
        true
    }

    fn filters(&self) -> bool {
        true
    }

    /// A scheduled entry's events: its author and staff. A done mark: the
    /// pupil and their parents. Everything else: every reader.
    fn shown(&self, event: &Event, viewer: &Viewer<'_>) -> bool {
        let Body::Kind(body) = &event.body else {
            return true;
        };
        match body.kind.as_str() {
            ENTRY => match body.decode::<EntryFields>() {
                Ok(fields) if fields.publish_at.is_some_and(|at| at > event.ts) => {
                    viewer.user.id == event.from.id || viewer.user.role == Role::Staff
                }
                _ => true,
            },
            DONE => viewer.is_or_parent_of(&event.from.id),
            _ => true,
        }
    }
}

impl KindHandler for Homework {
    fn requests(&self) -> &'static [&'static str] {
        requests::TYPES
    }

    /// Writing an entry or a mark is a post: its handler takes from the
    /// post bucket.
    fn bucket(&self, request: &KindRequest) -> Bucket {
        match request.type_name() {
            "homework_write" | "homework_done" => Bucket::InHandler,
            _ => Bucket::Requests,
        }
    }

    fn returned_by(&self, request: &str) -> &'static [ErrorCode] {
        use ErrorCode::*;
        match request {
            "homework_write" => &[
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
            "homework_done" => &[
                NotJoined,
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
            "homework" | "homework_load" => &[
                InvalidRoom,
                UnknownRoom,
                Forbidden,
                Banned,
                RateLimited,
                StorageError,
                Unavailable,
            ],
            "homework_due" => &[RateLimited, StorageError, Unavailable],
            "calendar_feed" | "calendar_feed_revoke" => &[RateLimited, StorageError],
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

    /// Diary rooms carry entries and marks, not messages.
    fn check_post(
        &self,
        _session: &Session,
        _room: &Room,
        _post: &NewPost,
    ) -> Result<Option<u64>, Refusal> {
        Err(Refusal::new(
            ErrorCode::InvalidField,
            "diary rooms take homework_write, not post",
        ))
    }

    /// Entries are the teachers'; there is nothing for a moderator to be
    /// told about.
    fn reportable(&self) -> bool {
        false
    }
}
