//! The seam between the session and room kinds: a kind's requests.
//!
//! [`KindHandler`] extends [`RoomKind`] (policy, derived state, retention,
//! erasure, at the room layer) with what a kind does at the session layer:
//! the request types it owns, its checks on the requests every kind shares
//! (a `post`'s extra fields, a moderation action's), and what each member
//! keeps per joined room. The session dispatches a request to the kind
//! that owns its type and never branches on a particular kind.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use super::{Page, Refusal, Session};
use crate::protocol::{Bucket, ErrorCode, ModAction, Request};
use crate::room::{Kinds, Room, RoomKind, RoomNameError};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a request handler answers: a reply to send now, nothing (the
/// reply comes later, e.g. an ack once durable), or a refusal.
pub type Handled = Result<Option<Bytes>, Refusal>;

/// The fields a `post` may carry beyond its text (forums use them).
#[derive(Debug, Default)]
pub struct NewPost {
    pub title: Option<String>,
    pub thread: Option<u64>,
    pub reply_to: Option<u64>,
    pub quote: Option<String>,
}

impl NewPost {
    fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.thread.is_none()
            && self.reply_to.is_none()
            && self.quote.is_none()
    }
}

/// A `post` just accepted, as [`KindHandler::posted`] sees it.
pub struct Posted<'a> {
    pub room: &'a Room,
    pub text: &'a str,
    pub thread: Option<u64>,
    pub key: Option<&'a str>,
}

/// A request of a type a kind owns.
pub enum KindRequest {
    /// A request the protocol module decodes (the v1 requests of forums
    /// and notes).
    Decoded(Request),
    /// A request of a type only its kind knows: the kind decodes `frame`
    /// (`protocol::decode_kind_request`).
    Frame {
        id: Option<u32>,
        type_name: &'static str,
        frame: Bytes,
    },
}

impl KindRequest {
    pub fn type_name(&self) -> &'static str {
        match self {
            KindRequest::Decoded(request) => request.type_name(),
            KindRequest::Frame { type_name, .. } => type_name,
        }
    }

    pub fn id(&self) -> Option<u32> {
        match self {
            KindRequest::Decoded(request) => request.id(),
            KindRequest::Frame { id, .. } => *id,
        }
    }
}

/// A room kind, as the session sees it. See the module documentation.
pub trait KindHandler: RoomKind {
    /// The request types this kind owns (`type` on the wire). A type is
    /// owned by one kind; the registry refuses two owners.
    fn requests(&self) -> &'static [&'static str] {
        &[]
    }

    /// Where one of its requests takes its rate limit: a v1 request where
    /// the protocol module says, a kind's own in the request bucket unless
    /// the kind says otherwise.
    fn bucket(&self, request: &KindRequest) -> Bucket {
        match request {
            KindRequest::Decoded(request) => request.bucket(),
            KindRequest::Frame { .. } => Bucket::Requests,
        }
    }

    /// The error codes one of its own request types may get besides those
    /// any request may get (`protocol::returned_by` lists the v1 ones):
    /// the spec's tables list the same, `tests/spec.rs` checks it.
    fn returned_by(&self, _request: &str) -> &'static [ErrorCode] {
        &[]
    }

    /// The static name of one of its request types (the one in
    /// [`KindHandler::requests`] equal to `request`).
    fn request_name(&self, request: &str) -> &'static str {
        self.requests()
            .iter()
            .copied()
            .find(|r| *r == request)
            .unwrap_or("unknown")
    }

    /// Handles one of its requests, for any room: the handler checks the
    /// room's kind itself, after the checks that come first (joined,
    /// allowed), as the spec orders them.
    fn handle<'a>(
        &'static self,
        _session: &'a mut Session,
        request: KindRequest,
    ) -> BoxFuture<'a, Handled> {
        let refusal = not_owned(self.name(), request.type_name());
        Box::pin(async move { Err(refusal) })
    }

    /// Checks the extra fields of a `post` in a room of this kind;
    /// returns the thread a reply goes to (slow mode and read-only are
    /// checked per thread). By default there are none.
    fn check_post(
        &self,
        _session: &Session,
        room: &Room,
        post: &NewPost,
    ) -> Result<Option<u64>, Refusal> {
        if post.is_empty() {
            return Ok(None);
        }
        Err(Refusal::new(
            ErrorCode::InvalidField,
            format!(
                "title, thread, reply_to and quote are not used in {} rooms",
                room.name().kind().name()
            ),
        ))
    }

    /// Checks a moderation action that only some kinds take (`validate`,
    /// `read_only` of one thread) against a room of this kind. By default
    /// those are refused.
    fn check_action(
        &self,
        _session: &Session,
        room: &Room,
        action: &ModAction,
    ) -> Result<(), Refusal> {
        refuse_kind_actions(room, action)
    }

    /// One page of a thread (`history` with `thread`). By default rooms
    /// have no threads.
    fn thread_history<'a>(
        &'static self,
        _session: &'a mut Session,
        id: Option<u32>,
        room: &'a std::sync::Arc<Room>,
        thread: u64,
        page: Page,
    ) -> BoxFuture<'a, Handled> {
        let _ = (id, thread, page);
        let kind = room.name().kind().name();
        Box::pin(async move {
            Err(Refusal::new(
                ErrorCode::InvalidField,
                format!("{kind} rooms have no threads"),
            ))
        })
    }

    /// A `post` of `text` in a room of this kind was accepted (ordered;
    /// its ack follows once durable): what the kind does besides (a forum
    /// tells the thread's author of a reply, chat and forums tell whom
    /// `@` names). `key` is the post's idempotency key, if the client gave
    /// one.
    fn posted(&self, _session: &Session, _post: &Posted<'_>) {}

    /// A moderation action in a room of this kind was accepted: what the
    /// kind does besides (a validated note tells the class).
    fn moderated(&self, _session: &Session, _room: &Room, _action: &ModAction) {}

    /// Whether its messages may be reported to moderators.
    fn reportable(&self) -> bool {
        true
    }

    /// What a member keeps per joined room of this kind (a note's
    /// awareness ids), if anything.
    fn member_state(&self) -> Option<Box<dyn Any + Send + Sync>> {
        None
    }

    /// A member left the room (or its connection closed): `state` is what
    /// [`KindHandler::member_state`] gave.
    fn left(&self, _session: &Session, _room: &Room, _state: Box<dyn Any + Send + Sync>) {}
}

/// The default of [`KindHandler::check_action`]: `validate` and the
/// `read_only` of one thread are refused (`invalid_field`).
pub fn refuse_kind_actions(room: &Room, action: &ModAction) -> Result<(), Refusal> {
    let kind = room.name().kind().name();
    match action {
        ModAction::Validate { .. } => Err(Refusal::new(
            ErrorCode::InvalidField,
            format!("validate is not an action of {kind} rooms"),
        )),
        ModAction::ReadOnly {
            thread: Some(_), ..
        } => Err(Refusal::new(
            ErrorCode::InvalidField,
            format!("{kind} rooms have no threads"),
        )),
        _ => Ok(()),
    }
}

/// The refusal of a request a kind was handed but does not own (a
/// registry bug: `Handlers::owner` hands each type to its owner).
pub fn not_owned(kind: &str, request: &str) -> Refusal {
    Refusal::new(
        ErrorCode::Internal,
        format!("{kind} rooms own no {request} request"),
    )
}

/// The kinds this server runs, and which kind owns which request type.
pub struct Handlers {
    all: Vec<&'static dyn KindHandler>,
    kinds: Kinds,
}

/// Why a list of kinds cannot be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Name(#[from] RoomNameError),
    #[error("request type {0:?} is owned by two kinds, or is one of the shared requests")]
    Request(String),
}

impl Handlers {
    pub fn new(all: &[&'static dyn KindHandler]) -> Result<Handlers, RegistryError> {
        let kinds = Kinds::new(all.iter().map(|k| *k as &'static dyn RoomKind).collect())?;
        let mut seen: Vec<&str> = Vec::new();
        for kind in all {
            for request in kind.requests() {
                if seen.contains(request) || super::SHARED_REQUESTS.contains(request) {
                    return Err(RegistryError::Request((*request).to_owned()));
                }
                seen.push(request);
            }
        }
        Ok(Handlers {
            all: all.to_vec(),
            kinds,
        })
    }

    /// The kinds as the room layer sees them (for the hub).
    pub fn kinds(&self) -> &Kinds {
        &self.kinds
    }

    /// The kind named `name`.
    pub fn get(&self, name: &str) -> Option<&'static dyn KindHandler> {
        self.all.iter().copied().find(|k| k.name() == name)
    }

    /// The kind that owns request type `request`.
    pub fn owner(&self, request: &str) -> Option<&'static dyn KindHandler> {
        self.all
            .iter()
            .copied()
            .find(|k| k.requests().contains(&request))
    }

    pub fn all(&self) -> &[&'static dyn KindHandler] {
        &self.all
    }
}
