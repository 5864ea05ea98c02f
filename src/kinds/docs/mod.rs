//! The class document space (`CLASS/docs/main`, one per class): the
//! resources a class's teachers put in folders for the year (a lesson's
//! slides, an exercise sheet, linked from the homework diary), and a
//! pupils' folder (`eleves`) where pupils share work when their teachers
//! allow it.
//!
//! What is special here, and why it lives in the kind:
//! - **Files.** A `doc_add` attaches an uploaded file (`files::Files::
//!   attach`) under the class, about its pupil for a pupil's work and
//!   about the pseudo-subject `class:<CLASS>` for a teacher's resource:
//!   erasing a teacher keeps the school's resources, erasing a pupil
//!   deletes their work (`Files::erase_user` deletes by subject).
//! - **The pupils' folder is not for parents.** Pupils' work is minors'
//!   data: parents read the teachers' resources, and are shown no event
//!   of the pupils' folder ([`RoomKind::shown`]) nor any of its files
//!   (`KindState::file`).

mod requests;
pub mod state;

use crate::auth::Claims;
use crate::protocol::{Body, Bucket, ErrorCode, Event, ForumSettings, Role};
use crate::room::policy::Action;
use crate::room::{Erasure, KindState, LoadContext, Retention, Room, RoomKind, RoomName, Viewer};
use crate::session::kind::{BoxFuture, Handled, KindHandler, KindRequest};
use crate::session::{NewPost, Refusal, Session};
use crate::store::StoreError;

pub use requests::{DocsOk, Request as DocsRequest};
pub use state::{
    AddFields, ConfigFields, Doc, DocFile, Docs as State, Folder, FolderFields, RemoveFields,
};

/// The kind's name in room names.
pub const NAME: &str = "docs";
/// The one document space of a class: `CLASS/docs/main`.
pub const MAIN: &str = "main";
/// The built-in folder where pupils share their work.
pub const PUPILS_FOLDER: &str = "eleves";
pub const PUPILS_FOLDER_TITLE: &str = "Travaux des élèves";
/// Event kinds.
pub const FOLDER: &str = "doc_folder";
pub const ADD: &str = "doc_add";
pub const REMOVE: &str = "doc_remove";
pub const CONFIG: &str = "docs_config";

/// The document space of `class`.
pub fn space_of(class: &str) -> String {
    format!("{class}/{NAME}/{MAIN}")
}

pub struct DocsKind;

impl RoomKind for DocsKind {
    fn name(&self) -> &'static str {
        NAME
    }

    /// One space per class: the diary and clients find it by name.
    fn valid_name(&self, name: &str) -> bool {
        name == MAIN
    }

    fn sample_name(&self) -> &'static str {
        MAIN
    }

    /// The class's teachers and staff do everything; its pupils read and
    /// add (`Post`: into their folder, when allowed, which the request
    /// checks); parents of its pupils read.
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
        &[FOLDER, ADD, REMOVE, CONFIG]
    }

    /// Every stored event: a class adds a few hundred documents a year.
    fn load(
        &self,
        cx: &LoadContext<'_>,
        room: &str,
        last: u64,
    ) -> Result<Box<dyn KindState>, StoreError> {
        let events = super::common::stored_events(cx, room, last)?;
        Ok(Box::new(state::Docs::rebuild(&events)))
    }

    /// The class's resources for the year: not by age.
    fn retention(&self) -> Retention {
        Retention::Whole
    }

    /// What teachers and staff did (resources, folders, settings) is the
    /// school's and kept; what a pupil did (their shared work, its
    /// removal) is theirs: redacted, and their files deleted by subject.
    fn erasure(&self, event: &Event) -> Erasure {
        match (&event.body, event.from.role) {
            (Body::Kind(_), Role::Teacher | Role::Staff) => Erasure::Keep,
            _ => Erasure::Redact,
        }
    }

    fn filters(&self) -> bool {
        true
    }

    /// Parents are shown nothing of the pupils' folder; everyone else
    /// who reads the room is shown everything.
    fn shown(&self, event: &Event, viewer: &Viewer<'_>) -> bool {
        if viewer.user.role != Role::Parent {
            return true;
        }
        let Body::Kind(body) = &event.body else {
            return true;
        };
        let folder = match body.kind.as_str() {
            ADD => body.decode::<AddFields>().map(|f| f.folder),
            REMOVE => body.decode::<RemoveFields>().map(|f| f.folder),
            _ => return true,
        };
        // An event that does not decode is applied by nobody: withholding
        // it costs nothing and errs on the side of pupils.
        folder.is_ok_and(|folder| state::folder_shown(&folder, viewer))
    }
}

impl KindHandler for DocsKind {
    fn requests(&self) -> &'static [&'static str] {
        requests::TYPES
    }

    /// Writing is posting: those handlers take from the post bucket.
    fn bucket(&self, request: &KindRequest) -> Bucket {
        match request.type_name() {
            "docs" => Bucket::Requests,
            _ => Bucket::InHandler,
        }
    }

    fn returned_by(&self, request: &str) -> &'static [ErrorCode] {
        use ErrorCode::*;
        match request {
            "doc_folder" | "doc_add" | "doc_remove" => &[
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
            "docs_config" => &[
                NotJoined,
                Forbidden,
                Banned,
                Muted,
                ReadOnly,
                SlowMode,
                RateLimited,
                Overloaded,
                StorageError,
                Unavailable,
            ],
            "docs" => &[
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

    /// Document spaces carry documents, not messages.
    fn check_post(
        &self,
        _session: &Session,
        _room: &Room,
        _post: &NewPost,
    ) -> Result<Option<u64>, Refusal> {
        Err(Refusal::new(
            ErrorCode::InvalidField,
            "document spaces take doc_add, not post",
        ))
    }

    /// There are no messages to report; a document is removed by a
    /// teacher (`doc_remove`).
    fn reportable(&self) -> bool {
        false
    }
}
