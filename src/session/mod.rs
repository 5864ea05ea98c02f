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
use crate::room::{Kind, Room, RoomName};

mod forum;
mod moderation;
mod notes;

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

/// What the connection loop does after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Close(CloseCode),
}

/// A request refused: the error reply to send.
struct Refusal {
    code: ErrorCode,
    message: String,
    retry_after_ms: Option<u64>,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
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
}

struct Joined {
    room: Arc<Room>,
    last_typing: Option<Instant>,
    /// Notes: the awareness client ids this connection owns.
    awareness: crate::notes::AwarenessGuard,
    /// Notes: a message this connection is sending in parts.
    parts: crate::notes::Parts,
    /// Notes: when a sync step 2 larger than the outbound budget allows
    /// was last queued outside it.
    large_step2_at: Option<Instant>,
}

pub struct Session {
    hub: Arc<Hub>,
    out: Outbound,
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
    pub fn new(hub: Arc<Hub>, out: Outbound, slot: Slot) -> Session {
        Session {
            hub,
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
        let request = match protocol::decode_request(frame) {
            Ok(request) => request,
            Err(err) => {
                self.refuse(err.id(), Refusal::new(err.code(), err.to_string()));
                return if self.auth.is_none() {
                    Flow::Close(CloseCode::ProtocolViolation)
                } else {
                    Flow::Continue
                };
            }
        };
        let id = request.id();
        self.handling = Some(request.type_name());
        if self.auth.is_none() {
            return match request {
                Request::Hello { token, .. } => self.hello(id, &token),
                other => {
                    self.refuse(
                        id,
                        Refusal::new(
                            ErrorCode::Unauthorized,
                            format!("{} before hello", other.type_name()),
                        ),
                    );
                    Flow::Close(CloseCode::ProtocolViolation)
                }
            };
        }
        // Requests that read, load or create rooms take from a second,
        // more generous per-user bucket than posts.
        let costly = request.bucket() == protocol::Bucket::Requests;
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
                let forum = forum::NewPost {
                    title,
                    thread,
                    reply_to,
                    quote,
                };
                self.post(id, &room, text, forum, key).await
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
            Request::Edit {
                room,
                offset,
                text,
                title,
                ..
            } => self.edit(id, &room, offset, text, title).await,
            Request::Answer {
                room,
                thread,
                offset,
                ..
            } => self.answer(id, &room, thread, offset).await,
            Request::Threads {
                room,
                before,
                limit,
                ..
            } => self.threads(id, &room, before, limit).await,
            Request::MarkRead {
                room,
                thread,
                offset,
                ..
            } => self.mark_read(id, &room, thread, offset).await,
            Request::Rooms { class, kind, .. } => self.list_rooms(id, &class, &kind).await,
            Request::Yjs {
                room, data, more, ..
            } => self.yjs(id, &room, data, more.unwrap_or(false)).await,
            Request::NoteVersions { room, .. } => self.note_versions(id, &room).await,
            Request::NoteExport {
                room,
                version,
                format,
                ..
            } => self.note_export(id, &room, version, format).await,
        };
        match result {
            Ok(Some(reply)) => {
                self.out.send(reply);
            }
            Ok(None) => {}
            Err(refusal) => self.refuse(id, refusal),
        }
        Flow::Continue
    }

    fn refuse(&self, id: Option<u32>, refusal: Refusal) {
        // The spec's tables list every code a request can get; a client
        // written from them alone cannot handle another. The whole test
        // suite runs debug builds, so it checks every refusal it causes.
        #[cfg(debug_assertions)]
        if let Some(request) = self.handling {
            let before_hello = self.auth.is_none() && refusal.code == ErrorCode::Unauthorized;
            assert!(
                before_hello || protocol::may_return(request, refusal.code),
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
        self.hub.user_connected(&user.id);
        let config = &self.hub.config;
        self.out.send(protocol::ok(
            id,
            &HelloOk {
                user: user.clone(),
                classes: claims.classes.clone(),
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
        self.auth = Some(Authenticated { claims, user });
        Flow::Continue
    }

    /// Checks `action` in `room` and loads the room, which must exist:
    /// anyone allowed there but not allowed to create it gets
    /// `unknown_room`, and nothing is loaded or created (see
    /// [`Session::open_or_create`]). A forum's grants live in the room, so
    /// a forum is loaded before the check.
    async fn open(&self, room: &str, action: Action) -> Result<(RoomName, Arc<Room>), Refusal> {
        self.open_as(room, action, false).await
    }

    /// [`Session::open`] that creates the room if it does not exist yet and
    /// the user moderates its class (a teacher of the class, staff): rooms
    /// exist once such a user joins them or acts in them (`join`,
    /// `moderate`), never by a pupil naming them nor by a read.
    async fn open_or_create(
        &self,
        room: &str,
        action: Action,
    ) -> Result<(RoomName, Arc<Room>), Refusal> {
        self.open_as(room, action, true).await
    }

    async fn open_as(
        &self,
        room: &str,
        action: Action,
        create: bool,
    ) -> Result<(RoomName, Arc<Room>), Refusal> {
        let name = parse_room(room)?;
        let claims = &self.authenticated()?.claims;
        let home = policy::allowed(claims, &name, None, action);
        let may_create = create && policy::home_moderator(claims, &name);
        if name.kind() != Kind::Forum && !home {
            return Err(forbidden(&name, action));
        }
        if !may_create && !self.hub.room_exists(&name).await? {
            // Only those who may see the room learn that it does not exist.
            return Err(if home {
                Refusal::new(
                    ErrorCode::UnknownRoom,
                    format!("no room {name}: a teacher of the class opens it first"),
                )
            } else {
                forbidden(&name, action)
            });
        }
        let room = self.hub.room(&name).await?;
        if home || self.allowed_in(&room, action) {
            return Ok((name, room));
        }
        self.release_unjoined(&room);
        Err(forbidden(&name, action))
    }

    /// Whether the user may do `action` in the loaded `room` (with its grants).
    fn allowed_in(&self, room: &Room, action: Action) -> bool {
        self.auth.as_ref().is_some_and(|a| {
            policy::allowed(
                &a.claims,
                room.name(),
                room.forum_settings().as_ref(),
                action,
            )
        })
    }

    fn is_moderator(&self, room: &Room) -> bool {
        self.allowed_in(room, Action::Moderate)
    }

    /// Unloads a room this connection looked at without joining, if idle.
    fn release_unjoined(&self, room: &Arc<Room>) {
        if !self.rooms.contains_key(room.name().as_str()) {
            self.hub.release(room);
        }
    }

    /// `banned` (releasing the room if this connection did not join it)
    /// for a banned user who does not moderate it.
    fn refuse_banned(&self, room: &Arc<Room>) -> Result<(), Refusal> {
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
    fn check_moderation(
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

    fn user(&self) -> Result<&UserInfo, Refusal> {
        self.auth
            .as_ref()
            .map(|a| &a.user)
            .ok_or_else(|| Refusal::new(ErrorCode::Unauthorized, "not authenticated"))
    }

    async fn join(
        &mut self,
        id: Option<u32>,
        room: &str,
        since: Option<Position>,
    ) -> Result<Option<Bytes>, Refusal> {
        let (name, opened) = self.open_or_create(room, Action::Read).await?;
        // Entries of rooms a moderator removed this connection from go.
        let conn = self.conn();
        self.rooms.retain(|_, joined| joined.room.is_member(conn));
        if self.rooms.contains_key(name.as_str()) {
            return Err(Refusal::new(
                ErrorCode::AlreadyJoined,
                format!("already joined {name}"),
            ));
        }
        if self.rooms.len() >= self.hub.config.max_rooms_per_connection {
            return Err(Refusal::new(
                ErrorCode::TooManyRooms,
                format!(
                    "a connection may join at most {} rooms",
                    self.hub.config.max_rooms_per_connection
                ),
            ));
        }
        let user = self.user()?.clone();
        // The room may be unloaded between lookup and join; then look again.
        let mut opened = Some(opened);
        let (room, joined, recovering) = loop {
            let room = match opened.take() {
                Some(room) => room,
                None => self.hub.room(&name).await?,
            };
            if room.is_banned(&user.id) && !self.is_moderator(&room) {
                return Err(Refusal::new(
                    ErrorCode::Banned,
                    format!("you are banned from {name}"),
                ));
            }
            let recovering = since.as_ref().is_some_and(|p| p.epoch == room.epoch());
            let early_reply = |joined: &crate::room::Joined| {
                if recovering {
                    return None;
                }
                let recovery = since.as_ref().map(|_| Recovery {
                    recovered: false,
                    reason: Some(RecoveryFailure::EpochMismatch),
                });
                Some(join_reply(id, &room, joined, recovery, &[]))
            };
            if let Some(joined) = room.join(&user, &self.out, recovering, early_reply) {
                break (room, joined, recovering);
            }
        };
        self.rooms.insert(
            name.as_str().to_owned(),
            Joined {
                room: room.clone(),
                last_typing: None,
                awareness: crate::notes::AwarenessGuard::new(),
                parts: crate::notes::Parts::default(),
                large_step2_at: None,
            },
        );
        if joined.first_here {
            self.hub.announce_presence(&name, &user, true);
        }
        tracing::info!(room = %name, head = joined.head, recovering, "joined");
        let Some(since) = since.filter(|_| recovering) else {
            return Ok(None);
        };
        let max = self.hub.config.recovery_max as u64;
        let failure = if since.offset > joined.head {
            Some(RecoveryFailure::OffsetAhead)
        } else if since.offset < joined.floor {
            Some(RecoveryFailure::OutOfRetention)
        } else if joined.head - since.offset > max {
            Some(RecoveryFailure::TooFarBehind)
        } else {
            None
        };
        let failed = |reason| {
            join_reply(
                id,
                &room,
                &joined,
                Some(Recovery {
                    recovered: false,
                    reason: Some(reason),
                }),
                &[],
            )
        };
        let reply = match failure {
            Some(reason) => failed(reason),
            None => {
                let store = self.hub.store.clone();
                let key = name.as_str().to_owned();
                let head = joined.head;
                let read = tokio::task::spawn_blocking(move || {
                    store.read_after(&key, since.offset, head, usize::MAX)
                })
                .await
                .map_err(HubError::from)
                .and_then(|r| r.map_err(HubError::from));
                let max_bytes = self.hub.config.recovery_max_bytes;
                match read {
                    // Retention may have deleted the start of the range
                    // after this join read its floor: never claim a
                    // recovery that skips events.
                    Ok((events, _))
                        if events.first().and_then(|e| protocol::event_offset(e))
                            != (since.offset < head).then_some(since.offset + 1) =>
                    {
                        failed(RecoveryFailure::OutOfRetention)
                    }
                    Ok((events, _)) if events.iter().map(Bytes::len).sum::<usize>() > max_bytes => {
                        failed(RecoveryFailure::TooFarBehind)
                    }
                    Ok((events, _)) => join_reply(
                        id,
                        &room,
                        &joined,
                        Some(Recovery {
                            recovered: true,
                            reason: None,
                        }),
                        &events,
                    ),
                    Err(err) => {
                        self.leave(name.as_str())?;
                        return Err(err.into());
                    }
                }
            }
        };
        if !room.finish_join(self.conn(), reply) {
            self.rooms.remove(name.as_str());
            return Err(Refusal::new(
                ErrorCode::NotJoined,
                format!("removed from {name} by a moderator while joining"),
            ));
        }
        Ok(None)
    }

    fn leave(&mut self, room: &str) -> Result<(), Refusal> {
        let joined = self
            .rooms
            .remove(room)
            .ok_or_else(|| Refusal::new(ErrorCode::NotJoined, format!("not in {room}")))?;
        self.drop_awareness(&joined.room, self.conn(), &joined.awareness);
        let left = joined.room.leave(self.conn());
        if let Some(user) = &left.last_here {
            self.hub.announce_presence(joined.room.name(), user, false);
        }
        if left.empty {
            self.hub.release(&joined.room);
        }
        tracing::info!(room = %room, "left");
        Ok(())
    }

    async fn post(
        &mut self,
        id: Option<u32>,
        room: &str,
        text: String,
        forum: forum::NewPost,
        key: Option<String>,
    ) -> Result<Option<Bytes>, Refusal> {
        let room = self.joined(room)?.room.clone();
        if !self.allowed_in(&room, Action::Post) {
            return Err(forbidden(room.name(), Action::Post));
        }
        self.check_text(&text)?;
        if key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.len() > MAX_KEY_LEN)
        {
            return Err(Refusal::new(
                ErrorCode::InvalidField,
                format!("key must be 1 to {MAX_KEY_LEN} bytes"),
            ));
        }
        let user = self.user()?.clone();
        let thread = self.check_forum_post(&room, &forum)?;
        let checked = self
            .check_moderation(&room, &user.id, true, thread)
            .and_then(|()| self.take_post_token(&user.id));
        if let Err(refusal) = checked {
            // A retry of a post that went through (slow mode or the rate
            // limit would now refuse it, or a mute came since): its ack,
            // not a refusal.
            if let Some(key) = key.as_deref() {
                if self
                    .hub
                    .ack_known(&room, &user, key, &self.out, id)
                    .await
                    .map_err(Refusal::from)?
                {
                    return Ok(None);
                }
            }
            return Err(refusal);
        }
        let body = Body::Message {
            text,
            title: forum.title,
            thread: forum.thread,
            reply_to: forum.reply_to,
            quote: forum.quote,
        };
        self.send_post_keyed(id, &room, &user, body, key.as_deref())
            .await?;
        room.record_post(&user.id);
        // The ack is sent by the store's writer once the message is durable.
        Ok(None)
    }

    /// `invalid_field` for an empty text, `message_too_long` past the limit.
    fn check_text(&self, text: &str) -> Result<(), Refusal> {
        let max = self.hub.config.max_message_len;
        if text.trim().is_empty() {
            return Err(Refusal::new(ErrorCode::InvalidField, "text is empty"));
        }
        if text.len() > max {
            return Err(Refusal::new(
                ErrorCode::MessageTooLong,
                format!("text is {} bytes, the limit is {max}", text.len()),
            ));
        }
        Ok(())
    }

    /// Takes a token from the user's post bucket, or `rate_limited`.
    fn take_post_token(&self, user: &str) -> Result<(), Refusal> {
        self.hub.rate_limit(user).map_err(|wait| {
            let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
            Refusal {
                code: ErrorCode::RateLimited,
                message: format!("too many messages, retry in {ms} ms"),
                retry_after_ms: Some(ms),
            }
        })
    }

    /// Posts `body` as the user's event, acked to this connection once
    /// durable; a bus failure says when to retry.
    async fn send_post(
        &self,
        id: Option<u32>,
        room: &Arc<Room>,
        user: &UserInfo,
        body: Body,
    ) -> Result<(), Refusal> {
        self.send_post_keyed(id, room, user, body, None).await
    }

    /// [`Session::send_post`] with the client's idempotency key.
    async fn send_post_keyed(
        &self,
        id: Option<u32>,
        room: &Arc<Room>,
        user: &UserInfo,
        body: Body,
        key: Option<&str>,
    ) -> Result<(), Refusal> {
        let posted = self
            .hub
            .post_keyed(room, user, Some((&self.out, id)), body, key)
            .await;
        if let Err(err) = posted {
            return Err(self.post_refusal(err));
        }
        Ok(())
    }

    /// The refusal of a post that was not ordered.
    fn post_refusal(&self, err: HubError) -> Refusal {
        let retry_after_ms = match (&err, self.hub.bus()) {
            (HubError::Bus(_), Some(bus)) => Some(bus.retry_after().map_or(1000, |d| {
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
            })),
            _ => None,
        };
        Refusal {
            retry_after_ms,
            ..Refusal::from(err)
        }
    }

    fn typing(&mut self, room: &str) -> Result<(), Refusal> {
        let user = self.user()?.clone();
        let conn = self.conn();
        let joined_room = self.joined(room)?.room.clone();
        let name = joined_room.name().as_str().to_owned();
        if !self.allowed_in(&joined_room, Action::Post) {
            return Err(forbidden(joined_room.name(), Action::Post));
        }
        self.check_moderation(&joined_room, &user.id, false, None)?;
        let joined = self.joined(room)?;
        let now = Instant::now();
        if joined
            .last_typing
            .is_some_and(|last| now.duration_since(last) < TYPING_INTERVAL)
        {
            return Ok(());
        }
        joined.last_typing = Some(now);
        let frame = protocol::typing(&Typing { room: name, user });
        joined.room.broadcast(&frame, conn);
        Ok(())
    }

    async fn history(
        &mut self,
        id: Option<u32>,
        room: &str,
        page: Page,
        thread: Option<u64>,
    ) -> Result<Option<Bytes>, Refusal> {
        let Page {
            before,
            after,
            limit,
        } = page;
        let page_max = self.hub.config.history_page_max;
        let limit = match limit {
            None => DEFAULT_HISTORY_PAGE.min(page_max),
            Some(0) => {
                return Err(Refusal::new(
                    ErrorCode::InvalidField,
                    "limit must be at least 1",
                ))
            }
            Some(n) => (n as usize).min(page_max),
        };
        let (name, room) = self.open(room, Action::Read).await?;
        self.refuse_banned(&room)?;
        if let Some(thread) = thread {
            let page = Page {
                before,
                after,
                limit: Some(limit as u32),
            };
            let reply = self.thread_history(id, &room, thread, page).await;
            self.release_unjoined(&room);
            return reply;
        }
        let (floor, head) = room.bounds();
        let store = self.hub.store.clone();
        let key = name.as_str().to_owned();
        let read = tokio::task::spawn_blocking(move || match after {
            Some(after) => {
                let through = before.map_or(head, |b| b.saturating_sub(1).min(head));
                store.read_after(&key, after, through, limit)
            }
            None => store.read_before(&key, before.map_or(head + 1, |b| b.min(head + 1)), limit),
        })
        .await;
        self.release_unjoined(&room);
        let (events, more) = read.map_err(HubError::from)?.map_err(HubError::from)?;
        Ok(Some(protocol::ok_with_events(
            id,
            &protocol::HistoryHead {
                room: name.as_str(),
                epoch: room.epoch(),
                head,
                first: floor + 1,
                more,
            },
            &events,
        )))
    }

    /// Leaves every room; called when the connection ends (and again, as a
    /// no-op, on drop, which also covers a panicking connection task).
    pub fn close(&mut self) {
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            let _ = self.leave(&room);
        }
        if let Some(auth) = self.auth.take() {
            self.hub.user_disconnected(&auth.user.id);
        }
    }
}

fn join_reply(
    id: Option<u32>,
    room: &Room,
    joined: &crate::room::Joined,
    recovery: Option<Recovery>,
    events: &[Bytes],
) -> Bytes {
    protocol::ok_with_events(
        id,
        &protocol::JoinHead {
            room: room.name().as_str(),
            epoch: room.epoch(),
            head: joined.head,
            first: joined.floor + 1,
            members: &joined.members,
            member_count: joined.member_count,
            pinned: &joined.pinned,
            recovery,
        },
        events,
    )
}

/// A history page request: `before`/`after` bounds and a size.
struct Page {
    before: Option<u64>,
    after: Option<u64>,
    limit: Option<u32>,
}

fn parse_room(room: &str) -> Result<RoomName, Refusal> {
    RoomName::parse(room).map_err(|e| Refusal::new(ErrorCode::InvalidRoom, e.to_string()))
}

fn forbidden(room: &RoomName, action: Action) -> Refusal {
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
