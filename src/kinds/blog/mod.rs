//! Class blogs (`CLASS/blog/<name>`: `main` is the class's blog, other
//! names its project blogs, « sortie au musée »): posts with images,
//! recordings and videos that the class's pupils and teachers write, that
//! its teachers publish, and that the class, its pupils' parents and
//! staff read (with `public`, every user of the school) and comment.
//!
//! What is special here, and why it lives in the kind:
//! - **A publication circuit.** A `blog_post` event is shown to its author,
//!   teachers and staff only ([`RoomKind::shown`]). Publishing posts a
//!   `blog_publish` event that repeats the post's content, shown to every
//!   reader: `shown` decides from the event and the viewer alone, so the
//!   event itself must carry what readers may see. A teacher's post, or any
//!   post when the circuit is `direct`, is published at once; with
//!   `approve` a pupil's post waits for `blog_approve`.
//! - **Unpublishing is a redaction.** `blog_unpublish` redacts the
//!   `blog_publish` event through the core's `moderate` path: its words
//!   leave every reader's history (a tombstone), the audit log records it,
//!   and the post is pending again. Deleting a post redacts its
//!   `blog_post`, which takes its publications and comments along
//!   ([`KindState::linked`]).
//! - **Outsiders of a public blog** are let in through the room's state
//!   ([`RoomKind::has_grants`], `KindState::admits`): the settings are an
//!   event of the room, not the class's policy.

mod requests;
pub mod state;

use crate::auth::Claims;
use crate::protocol::{Body, Bucket, ErrorCode, Event, ForumSettings, Role};
use crate::room::policy::Action;
use crate::room::{Erasure, KindState, LoadContext, Retention, Room, RoomKind, RoomName, Viewer};
use crate::session::kind::{BoxFuture, Handled, KindHandler, KindRequest};
use crate::session::{NewPost, Refusal, Session};
use crate::store::StoreError;

pub use requests::{BlogOk, Request as BlogRequest, WriteOk};
pub use state::{
    Blog as State, BlogConfig, BlogPost, Circuit, CommentFields, PostFields, PublishFields, Status,
};

/// The kind's name in room names.
pub const NAME: &str = "blog";
/// The class's own blog: `CLASS/blog/main`.
pub const MAIN: &str = "main";
/// Event kinds.
pub const CONFIG: &str = "blog_config";
pub const POST: &str = "blog_post";
pub const PUBLISH: &str = "blog_publish";
pub const COMMENT: &str = "blog_comment";

pub struct Blog;

impl RoomKind for Blog {
    fn name(&self) -> &'static str {
        NAME
    }

    fn sample_name(&self) -> &'static str {
        MAIN
    }

    /// The class's pupils and teachers write and comment (`Post`), its
    /// teachers moderate (approve, unpublish, configure), parents whose
    /// children are in the class read, staff do everything. Readers from
    /// outside the class come through a public blog's settings
    /// (`KindState::admits`), never through `grants`.
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
            (Role::Student, Action::Read | Action::Post) => in_class,
            (Role::Parent, Action::Read) => in_class,
            (Role::Student | Role::Parent, _) => false,
        }
    }

    /// A public blog's readers are in its settings, an event of the room:
    /// it is loaded before the check of someone outside the class.
    fn has_grants(&self) -> bool {
        true
    }

    /// Every stored event: a class blog holds a few hundred posts a year.
    fn load(
        &self,
        cx: &LoadContext<'_>,
        room: &str,
        last: u64,
    ) -> Result<Box<dyn KindState>, StoreError> {
        let events = super::common::stored_events(cx, room, last)?;
        Ok(Box::new(state::Blog::rebuild(&events)))
    }

    fn events(&self) -> &'static [&'static str] {
        &[CONFIG, POST, PUBLISH, COMMENT]
    }

    /// A class keeps its blog for the year (and its files with it): not by
    /// age.
    fn retention(&self) -> Retention {
        Retention::Whole
    }

    /// A setting holds no one's words and redacting it would change the
    /// blog's circuit: kept. Posts, publications (posted as the post's
    /// author) and comments are their author's: redacted.
    fn erasure(&self, event: &Event) -> Erasure {
        match &event.body {
            Body::Kind(body) if body.kind == CONFIG => Erasure::Keep,
            _ => Erasure::Redact,
        }
    }

    /// Unpublishing, deleting a post and deleting a comment are
    /// redactions of the kind's events.
    fn redactable(&self) -> bool {
        true
    }

    fn filters(&self) -> bool {
        true
    }

    /// A `blog_post`: its author, teachers and staff. Everything else
    /// (publications, which repeat the post, comments, settings): every
    /// reader.
    fn shown(&self, event: &Event, viewer: &Viewer<'_>) -> bool {
        match &event.body {
            Body::Kind(body) if body.kind == POST => state::sees_pending(&event.from.id, viewer),
            _ => true,
        }
    }
}

impl KindHandler for Blog {
    fn requests(&self) -> &'static [&'static str] {
        requests::TYPES
    }

    /// Writing, approving, commenting and configuring post events: their
    /// handler takes from the post bucket (`common::write`).
    fn bucket(&self, request: &KindRequest) -> Bucket {
        match request.type_name() {
            "blog_write" | "blog_approve" | "blog_comment" | "blog_config" => Bucket::InHandler,
            _ => Bucket::Requests,
        }
    }

    fn returned_by(&self, request: &str) -> &'static [ErrorCode] {
        use ErrorCode::*;
        match request {
            "blog" => &[
                InvalidRoom,
                UnknownRoom,
                Forbidden,
                Banned,
                RateLimited,
                StorageError,
                Unavailable,
            ],
            "blog_write" => &[
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
            "blog_comment" => &[
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
            "blog_approve" => &[
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
            "blog_config" => &[
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
            // Redactions through `moderate`: its codes.
            "blog_unpublish" | "blog_delete" => &[
                NotJoined,
                InvalidRoom,
                UnknownRoom,
                Forbidden,
                UnknownTarget,
                RateLimited,
                Overloaded,
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

    /// Blog rooms carry posts and comments, not messages.
    fn check_post(
        &self,
        _session: &Session,
        _room: &Room,
        _post: &NewPost,
    ) -> Result<Option<u64>, Refusal> {
        Err(Refusal::new(
            ErrorCode::InvalidField,
            "blog rooms take blog_write and blog_comment, not post",
        ))
    }
}
