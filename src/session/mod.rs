//! One connection's protocol state and request handlers: authentication,
//! joined rooms, and what each request type does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::admission::Slot;
use crate::auth::{AuthError, Claims};
use crate::hub::{Hub, HubError};
use crate::moderation::Refused;
use crate::outbound::{ConnId, Outbound};
use crate::protocol::{
    self, Body, CloseCode, ErrorCode, ErrorReply, HelloOk, Limits, Position, Recovery,
    RecoveryFailure, Request, Typing, UserInfo,
};
use crate::room::policy::{self, Action};
use crate::room::{Room, RoomName};

mod chat;
pub mod kind;
mod moderation;
mod rooms;

pub use kind::{Handled, Handlers, KindHandler, KindRequest, NewPost, Posted};
pub use rooms::Page;

/// The request types every room shares, handled here; every other type
/// is owned by a kind (`KindHandler::requests`).
pub const SHARED_REQUESTS: &[&str] = &[
    "hello",
    "join",
    "leave",
    "post",
    "typing",
    "history",
    "ping",
    "report",
    "room_view",
    "moderate",
    "rooms",
];

/// Typing indicators from one connection to one room are passed on at most
/// this often; the rest are coalesced (clients expire them after 5 s).
const TYPING_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_HISTORY_PAGE: usize = 50;
/// Longest idempotency key of a `post`, in bytes.
const MAX_KEY_LEN: usize = 64;
/// How many recent messages `known_user` looks through for an author.
const KNOWN_USER_SCAN: usize = 2_000;
/// How many recent audit entries are searched for open reports.
const AUDIT_SCAN: usize = 2_000;
/// The room view counts messages over this window, among the last
/// [`RATE_SCAN`] events.
const RATE_WINDOW_MS: u64 = 5 * 60 * 1000;
const RATE_SCAN: usize = 1_000;

/// A frame, decoded as far as the session goes before dispatching it.
enum Incoming {
    /// A request of the protocol module's own types.
    Shared(Request),
    /// A request of a type a kind owns, for that kind to decode.
    Kind(&'static dyn KindHandler, KindRequest),
    /// Refused as it is.
    Undecodable(protocol::DecodeError),
}

/// What the connection loop does after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Close(CloseCode),
}

/// A request refused: the error reply to send.
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_ms: Option<u64>,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }
}

impl From<HubError> for Refusal {
    fn from(err: HubError) -> Self {
        match &err {
            // Expected under load or while Redis is away.
            HubError::Bus(_) | HubError::Store(crate::store::StoreError::Full) => {
                tracing::warn!(error = %err, "request refused")
            }
            _ => tracing::error!(error = %err, "request failed"),
        }
        Refusal::new(err.code(), err.to_string())
    }
}

struct Authenticated {
    claims: Claims,
    user: UserInfo,
    /// A parent's children's ids, shared with every room joined.
    children: Arc<[String]>,
}

struct Joined {
    room: Arc<Room>,
    last_typing: Option<Instant>,
    /// What the room's kind keeps for this member (`KindHandler::member_state`).
    kind: Option<Box<dyn std::any::Any + Send + Sync>>,
}

pub struct Session {
    pub(crate) hub: Arc<Hub>,
    handlers: Arc<Handlers>,
    pub(crate) out: Outbound,
    auth: Option<Authenticated>,
    rooms: HashMap<String, Joined>,
    /// The connection's admission slot: unauthenticated until `hello`
    /// moves it to a session slot; freed with the session.
    slot: Slot,
    /// The type of the request being handled, for the debug check that
    /// every refusal is one the spec lists (`protocol::returned_by`).
    handling: Option<&'static str>,
}

/// `retry_after_ms` of a `hello` refused because the server is full (the
/// `Retry-After: 5` of a refused upgrade).
const FULL_RETRY_AFTER_MS: u64 = 5_000;

impl Session {
    pub fn new(hub: Arc<Hub>, handlers: Arc<Handlers>, out: Outbound, slot: Slot) -> Session {
        Session {
            hub,
            handlers,
            out,
            auth: None,
            rooms: HashMap::new(),
            slot,
            handling: None,
        }
    }

    pub fn conn(&self) -> ConnId {
        self.out.conn()
    }

    /// When the token expires (seconds since the Unix epoch), once authenticated.
    pub fn expires_at(&self) -> Option<u64> {
        self.auth.as_ref().map(|a| a.claims.exp)
    }

    /// Handles one binary frame.
    pub async fn handle(&mut self, frame: &[u8]) -> Flow {
        self.hub.metrics.frames_in.increment(1);
        self.handling = None;
        let incoming = match protocol::decode_request(frame) {
            Ok(request) => Incoming::Shared(request),
            // A type the protocol module does not know may be a kind's own.
            Err(protocol::DecodeError::UnknownType { id, ty }) => match self.handlers.owner(&ty) {
                Some(kind) => Incoming::Kind(
                    kind,
                    KindRequest::Frame {
                        id,
                        type_name: kind.request_name(&ty),
                        frame: Bytes::copy_from_slice(frame),
                    },
                ),
                None => Incoming::Undecodable(protocol::DecodeError::UnknownType { id, ty }),
            },
            Err(err) => Incoming::Undecodable(err),
        };
        let (id, type_name, bucket) = match &incoming {
            Incoming::Shared(request) => (request.id(), request.type_name(), request.bucket()),
            Incoming::Kind(kind, request) => {
                (request.id(), request.type_name(), kind.bucket(request))
            }
            Incoming::Undecodable(err) => {
                self.refuse(err.id(), Refusal::new(err.code(), err.to_string()));
                return if self.auth.is_none() {
                    Flow::Close(CloseCode::ProtocolViolation)
                } else {
                    Flow::Continue
                };
            }
        };
        self.handling = Some(type_name);
        if self.auth.is_none() {
            return match incoming {
                Incoming::Shared(Request::Hello { token, .. }) => self.hello(id, &token),
                _ => {
                    self.refuse(
                        id,
                        Refusal::new(ErrorCode::Unauthorized, format!("{type_name} before hello")),
                    );
                    Flow::Close(CloseCode::ProtocolViolation)
                }
            };
        }
        // Requests that read, load or create rooms take from a second,
        // more generous per-user bucket than posts.
        let costly = bucket == protocol::Bucket::Requests;
        let user = self
            .auth
            .as_ref()
            .map(|a| a.user.id.clone())
            .unwrap_or_default();
        // Peer nodes catching up (tokens the cluster mints for itself) page
        // many rooms at once; they are not limited.
        if costly && !user.starts_with(crate::auth::NODE_USER_PREFIX) {
            if let Err(wait) = self.hub.request_limit(&user) {
                let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
                self.refuse(
                    id,
                    Refusal {
                        code: ErrorCode::RateLimited,
                        message: format!("too many requests, retry in {ms} ms"),
                        retry_after_ms: Some(ms),
                    },
                );
                return Flow::Continue;
            }
        }
        let request = match incoming {
            Incoming::Shared(request) => request,
            Incoming::Kind(kind, request) => {
                let result = kind.handle(self, request).await;
                self.answer(id, result);
                return Flow::Continue;
            }
            Incoming::Undecodable(_) => return Flow::Continue,
        };
        let result = match request {
            Request::Hello { .. } => Err(Refusal::new(
                ErrorCode::AlreadyAuthenticated,
                "this connection is already authenticated",
            )),
            Request::Join { room, since, .. } => self.join(id, &room, since).await,
            Request::Leave { room, .. } => self.leave(&room).map(|()| Some(protocol::ok_empty(id))),
            Request::Post {
                room,
                text,
                title,
                thread,
                reply_to,
                quote,
                key,
                ..
            } => {
                let extra = NewPost {
                    title,
                    thread,
                    reply_to,
                    quote,
                };
                self.post(id, &room, text, extra, key).await
            }
            Request::Typing { room, .. } => {
                self.typing(&room).map(|()| Some(protocol::ok_empty(id)))
            }
            Request::History {
                room,
                before,
                after,
                limit,
                thread,
                ..
            } => {
                self.history(
                    id,
                    &room,
                    Page {
                        before,
                        after,
                        limit,
                    },
                    thread,
                )
                .await
            }
            Request::Ping { .. } => Ok(Some(protocol::ok_empty(id))),
            Request::Moderate { room, action, .. } => self.moderate(id, &room, action).await,
            Request::Report {
                room,
                offset,
                reason,
                ..
            } => self.report(id, &room, offset, reason).await,
            Request::RoomView { room, .. } => self.room_view(id, &room).await,
            Request::Rooms { class, kind, .. } => self.list_rooms(id, &class, &kind).await,
            other => match self.handlers.owner(other.type_name()) {
                Some(kind) => kind.handle(self, KindRequest::Decoded(other)).await,
                None => Err(Refusal::new(
                    ErrorCode::Internal,
                    format!("no kind handles {}", other.type_name()),
                )),
            },
        };
        self.answer(id, result);
        Flow::Continue
    }

    /// Sends a handler's reply or refusal.
    fn answer(&self, id: Option<u32>, result: Handled) {
        match result {
            Ok(Some(reply)) => {
                self.out.send(reply);
            }
            Ok(None) => {}
            Err(refusal) => self.refuse(id, refusal),
        }
    }

    fn refuse(&self, id: Option<u32>, refusal: Refusal) {
        // The spec's tables list every code a request can get; a client
        // written from them alone cannot handle another. The whole test
        // suite runs debug builds, so it checks every refusal it causes.
        #[cfg(debug_assertions)]
        if let Some(request) = self.handling {
            let before_hello = self.auth.is_none() && refusal.code == ErrorCode::Unauthorized;
            let listed = protocol::may_return(request, refusal.code)
                || self
                    .handlers
                    .owner(request)
                    .is_some_and(|kind| kind.returned_by(request).contains(&refusal.code));
            assert!(
                before_hello || listed,
                "`{request}` refused with `{}`, which protocol::returned_by does not list ({})",
                refusal.code,
                refusal.message
            );
        }
        self.hub.metrics.error(refusal.code);
        tracing::debug!(id, code = %refusal.code, message = %refusal.message, "request refused");
        self.out.send(protocol::error_reply(&ErrorReply {
            id,
            code: refusal.code,
            message: refusal.message,
            retry_after_ms: refusal.retry_after_ms,
        }));
    }

    fn hello(&mut self, id: Option<u32>, token: &str) -> Flow {
        let claims = match self.hub.keyring.verify(token, crate::auth::now_secs()) {
            Ok(claims) => claims,
            Err(err) => {
                let (code, close) = match err {
                    AuthError::Expired => (ErrorCode::TokenExpired, CloseCode::TokenExpired),
                    _ => (ErrorCode::Unauthorized, CloseCode::Unauthorized),
                };
                tracing::info!(error = %err, "authentication failed");
                self.refuse(id, Refusal::new(code, err.to_string()));
                return Flow::Close(close);
            }
        };
        // Once the school's directory is synced, it says what the user
        // may reach (`directory.rs`): classes and children are its.
        let claims = match self.hub.directory.current().claims_for(&claims) {
            Ok(claims) => claims,
            Err(refused) => {
                tracing::info!(error = %refused, "hello refused by the directory");
                self.refuse(
                    id,
                    Refusal::new(ErrorCode::Unauthorized, refused.to_string()),
                );
                return Flow::Close(CloseCode::Unauthorized);
            }
        };
        if let Err(err) = self.slot.promote() {
            self.hub
                .metrics
                .refused(crate::metrics::Refused::SessionsFull);
            tracing::warn!(error = %err, "hello refused: server full");
            self.refuse(
                id,
                Refusal {
                    code: ErrorCode::Overloaded,
                    message: "server full (max_connections), retry later".to_owned(),
                    retry_after_ms: Some(FULL_RETRY_AFTER_MS),
                },
            );
            return Flow::Close(CloseCode::TryAgainLater);
        }
        let user = claims.user_info();
        tracing::Span::current().record("user", user.id.as_str());
        self.hub.user_connected(&user.id, &self.out);
        let config = &self.hub.config;
        self.out.send(protocol::ok(
            id,
            &HelloOk {
                user: user.clone(),
                classes: claims.classes.clone(),
                children: claims
                    .children
                    .iter()
                    .map(|c| crate::protocol::ChildInfo {
                        id: c.id.clone(),
                        name: c.label().to_owned(),
                        classes: c.classes.clone(),
                    })
                    .collect(),
                node: config.node_id.clone(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                limits: Limits {
                    max_frame_bytes: config.max_frame_bytes as u64,
                    max_message_len: config.max_message_len as u64,
                    max_rooms: config.max_rooms_per_connection as u64,
                    history_page_max: config.history_page_max as u64,
                    ping_interval_ms: config.ping_interval.as_millis() as u64,
                },
            },
        ));
        let children = claims.children.iter().map(|c| c.id.clone()).collect();
        self.auth = Some(Authenticated {
            claims,
            user,
            children,
        });
        Flow::Continue
    }

    /// Whether the user may do `action` in the loaded `room` (with its grants).
    pub(crate) fn allowed_in(&self, room: &Room, action: Action) -> bool {
        self.auth.as_ref().is_some_and(|a| {
            policy::allowed(&a.claims, room.name(), room.grants().as_ref(), action)
                || (room.name().kind().has_grants() && room.admits(&a.claims, action))
        })
    }

    /// Whether the user moderates the room's class by their role (a
    /// teacher of the class, staff), not through a grant: `Viewer::moderator`.
    pub(crate) fn home_moderator(&self, room: &Room) -> bool {
        self.auth
            .as_ref()
            .is_some_and(|a| policy::home_moderator(&a.claims, room.name()))
    }

    pub(crate) fn is_moderator(&self, room: &Room) -> bool {
        self.allowed_in(room, Action::Moderate)
    }

    /// Unloads a room this connection looked at without joining, if idle.
    pub(crate) fn release_unjoined(&self, room: &Arc<Room>) {
        if !self.rooms.contains_key(room.name().as_str()) {
            self.hub.release(room);
        }
    }

    /// `banned` (releasing the room if this connection did not join it)
    /// for a banned user who does not moderate it.
    pub(crate) fn refuse_banned(&self, room: &Arc<Room>) -> Result<(), Refusal> {
        if room.is_banned(&self.user()?.id) && !self.is_moderator(room) {
            self.release_unjoined(room);
            return Err(Refusal::new(
                ErrorCode::Banned,
                format!("you are banned from {}", room.name()),
            ));
        }
        Ok(())
    }

    fn authenticated(&self) -> Result<&Authenticated, Refusal> {
        self.auth
            .as_ref()
            .ok_or_else(|| Refusal::new(ErrorCode::Unauthorized, "not authenticated"))
    }

    /// The joined room; a connection a moderator kicked is not joined any
    /// more (the room dropped it), so its stale entry goes.
    fn joined(&mut self, room: &str) -> Result<&mut Joined, Refusal> {
        let conn = self.conn();
        if self
            .rooms
            .get(room)
            .is_some_and(|joined| !joined.room.is_member(conn))
        {
            self.rooms.remove(room);
        }
        self.rooms
            .get_mut(room)
            .ok_or_else(|| Refusal::new(ErrorCode::NotJoined, format!("join {room} first")))
    }

    /// Refuses a post or typing indicator that moderation forbids.
    pub(crate) fn check_moderation(
        &self,
        room: &Room,
        user: &str,
        posting: bool,
        thread: Option<u64>,
    ) -> Result<(), Refusal> {
        let moderator = self.is_moderator(room);
        let now = (self.hub.clock)();
        room.check_post(user, moderator, posting, thread, now)
            .map_err(|refused| match refused {
                Refused::Banned => Refusal::new(ErrorCode::Banned, "you are banned from this room"),
                Refused::Muted { until } => Refusal {
                    code: ErrorCode::Muted,
                    message: format!("you are muted here until {until} (ms since the epoch)"),
                    retry_after_ms: Some(until.saturating_sub(now).max(1)),
                },
                Refused::ReadOnly => Refusal::new(
                    ErrorCode::ReadOnly,
                    if thread.is_some() {
                        "this thread or room is read-only"
                    } else {
                        "this room is read-only"
                    },
                ),
                Refused::SlowMode { retry_after_ms } => Refusal {
                    code: ErrorCode::SlowMode,
                    message: format!("slow mode: wait {retry_after_ms} ms"),
                    retry_after_ms: Some(retry_after_ms),
                },
            })
    }

    /// The user's claims (their classes, a parent's children).
    pub(crate) fn claims(&self) -> Result<&Claims, Refusal> {
        self.auth
            .as_ref()
            .map(|a| &a.claims)
            .ok_or_else(|| Refusal::new(ErrorCode::Unauthorized, "not authenticated"))
    }

    /// The user's children's ids (empty but for a parent).
    pub(crate) fn children(&self) -> Arc<[String]> {
        self.auth
            .as_ref()
            .map_or_else(|| Arc::from(Vec::new()), |a| a.children.clone())
    }

    /// [`Session::children`], borrowed.
    pub(crate) fn children_ref(&self) -> &[String] {
        self.auth.as_ref().map_or(&[], |a| &a.children)
    }

    /// Whether the stored event `frame` of `room` is withheld from this
    /// user (see `room::withheld`).
    pub(crate) fn withheld(&self, room: &Room, frame: &[u8]) -> bool {
        let Some(auth) = &self.auth else {
            return true;
        };
        let viewer = crate::room::Viewer {
            user: &auth.user,
            children: &auth.children,
            moderator: policy::home_moderator(&auth.claims, room.name()),
        };
        crate::room::withheld(frame, room.name().kind(), &viewer)
    }

    pub(crate) fn user(&self) -> Result<&UserInfo, Refusal> {
        self.auth
            .as_ref()
            .map(|a| &a.user)
            .ok_or_else(|| Refusal::new(ErrorCode::Unauthorized, "not authenticated"))
    }

    /// The room a joined room of this connection is, if joined (a
    /// connection a moderator kicked is not any more).
    pub(crate) fn joined_room(&mut self, room: &str) -> Result<Arc<Room>, Refusal> {
        Ok(self.joined(room)?.room.clone())
    }

    /// What the kind keeps for this member in the joined `room`, if it is
    /// a `T`.
    pub(crate) fn member_state<T: 'static>(&mut self, room: &str) -> Result<&mut T, Refusal> {
        self.joined(room)?
            .kind
            .as_mut()
            .and_then(|state| state.downcast_mut::<T>())
            .ok_or_else(|| Refusal::new(ErrorCode::Internal, format!("{room} keeps no such state")))
    }

    /// The room `room` names, against the kinds this server runs.
    pub(crate) fn parse_room(&self, room: &str) -> Result<RoomName, Refusal> {
        self.hub
            .kinds
            .parse(room)
            .map_err(|e| Refusal::new(ErrorCode::InvalidRoom, e.to_string()))
    }

    /// The audit log of `room`'s class.
    pub(crate) fn audit_log(&self, room: &RoomName) -> Result<RoomName, Refusal> {
        self.hub
            .kinds
            .audit_log(room)
            .map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))
    }

    /// The kind handler of `room`'s kind.
    pub(crate) fn handler(&self, room: &RoomName) -> Result<&'static dyn KindHandler, Refusal> {
        self.handlers.get(room.kind().name()).ok_or_else(|| {
            Refusal::new(
                ErrorCode::Internal,
                format!("no handler for kind {}", room.kind().name()),
            )
        })
    }

    /// Leaves every room; called when the connection ends (and again, as a
    /// no-op, on drop, which also covers a panicking connection task).
    pub fn close(&mut self) {
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            let _ = self.leave(&room);
        }
        if let Some(auth) = self.auth.take() {
            self.hub.user_disconnected(&auth.user.id, self.out.conn());
        }
    }
}

pub(crate) fn forbidden(room: &RoomName, action: Action) -> Refusal {
    Refusal::new(
        ErrorCode::Forbidden,
        format!("not allowed to {} in {room}", action_verb(action)),
    )
}

fn action_verb(action: Action) -> &'static str {
    match action {
        Action::Read => "read",
        Action::Post => "post",
        Action::Moderate => "moderate",
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}
