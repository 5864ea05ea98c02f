//! One connection's protocol state and request handlers: authentication,
//! joined rooms, and what each request type does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::auth::{AuthError, Claims};
use crate::hub::{Hub, HubError};
use crate::moderation::{Refused, MAX_MUTE_SECS, MAX_REASON_LEN, MAX_SLOW_MODE_SECS};
use crate::outbound::{ConnId, Outbound};
use crate::protocol::{
    self, Body, CloseCode, ErrorCode, ErrorReply, Event, HelloOk, Limits, ModAction, Position,
    Recovery, RecoveryFailure, Request, ServerFrame, Typing, UserInfo,
};
use crate::room::policy::{self, Action};
use crate::room::{Room, RoomName};

/// Typing indicators from one connection to one room are passed on at most
/// this often; the rest are coalesced (clients expire them after 5 s).
const TYPING_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_HISTORY_PAGE: usize = 50;
/// User ids of the tokens nodes mint for catching up from each other.
pub const NODE_USER_PREFIX: &str = "node:";
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
}

pub struct Session {
    hub: Arc<Hub>,
    out: Outbound,
    auth: Option<Authenticated>,
    rooms: HashMap<String, Joined>,
}

impl Session {
    pub fn new(hub: Arc<Hub>, out: Outbound) -> Session {
        Session {
            hub,
            out,
            auth: None,
            rooms: HashMap::new(),
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
        let costly = matches!(
            request,
            Request::Join { .. }
                | Request::History { .. }
                | Request::Report { .. }
                | Request::RoomView { .. }
                | Request::Moderate { .. }
        );
        let user = self
            .auth
            .as_ref()
            .map(|a| a.user.id.clone())
            .unwrap_or_default();
        // Peer nodes catching up (tokens the cluster mints for itself) page
        // many rooms at once; they are not limited.
        if costly && !user.starts_with(NODE_USER_PREFIX) {
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
            Request::Post { room, text, .. } => self.post(id, &room, text).await,
            Request::Typing { room, .. } => {
                self.typing(&room).map(|()| Some(protocol::ok_empty(id)))
            }
            Request::History {
                room,
                before,
                after,
                limit,
                ..
            } => self.history(id, &room, before, after, limit).await,
            Request::Ping { .. } => Ok(Some(protocol::ok_empty(id))),
            Request::Moderate { room, action, .. } => self.moderate(id, &room, action).await,
            Request::Report {
                room,
                offset,
                reason,
                ..
            } => self.report(id, &room, offset, reason).await,
            Request::RoomView { room, .. } => self.room_view(id, &room).await,
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

    /// Parses the room name and checks the policy for `action`.
    fn authorize(&self, room: &str, action: Action) -> Result<RoomName, Refusal> {
        let name = RoomName::parse(room)
            .map_err(|e| Refusal::new(ErrorCode::InvalidRoom, e.to_string()))?;
        let claims = self.auth.as_ref().map(|a| &a.claims);
        if !claims.is_some_and(|c| policy::allowed(c, &name, action)) {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                format!("not allowed to {} in {name}", action_verb(action)),
            ));
        }
        Ok(name)
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

    fn is_moderator(&self, room: &RoomName) -> bool {
        self.auth
            .as_ref()
            .is_some_and(|a| policy::allowed(&a.claims, room, Action::Moderate))
    }

    /// Refuses a post or typing indicator that moderation forbids.
    fn check_moderation(&self, room: &Room, user: &str, posting: bool) -> Result<(), Refusal> {
        let moderator = self.is_moderator(room.name());
        let now = (self.hub.clock)();
        room.check_post(user, moderator, posting, now)
            .map_err(|refused| match refused {
                Refused::Banned => Refusal::new(ErrorCode::Banned, "you are banned from this room"),
                Refused::Muted { until } => Refusal {
                    code: ErrorCode::Muted,
                    message: format!("you are muted here until {until} (ms since the epoch)"),
                    retry_after_ms: Some(until.saturating_sub(now).max(1)),
                },
                Refused::ReadOnly => Refusal::new(ErrorCode::ReadOnly, "this room is read-only"),
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
        let name = self.authorize(room, Action::Read)?;
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
        let (room, joined, recovering) = loop {
            let room = self.hub.room(&name).await?;
            if room.is_banned(&user.id) && !self.is_moderator(&name) {
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
    ) -> Result<Option<Bytes>, Refusal> {
        let max = self.hub.config.max_message_len;
        let room = self.joined(room)?.room.clone();
        self.authorize(room.name().as_str(), Action::Post)?;
        if text.trim().is_empty() {
            return Err(Refusal::new(ErrorCode::InvalidField, "text is empty"));
        }
        if text.len() > max {
            return Err(Refusal::new(
                ErrorCode::MessageTooLong,
                format!("text is {} bytes, the limit is {max}", text.len()),
            ));
        }
        let user = self.user()?.clone();
        self.check_moderation(&room, &user.id, true)?;
        if let Err(wait) = self.hub.rate_limit(&user.id) {
            let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
            return Err(Refusal {
                code: ErrorCode::RateLimited,
                message: format!("too many messages, retry in {ms} ms"),
                retry_after_ms: Some(ms),
            });
        }
        if let Err(err) = self
            .hub
            .post(&room, &user, Some((&self.out, id)), Body::Message { text })
            .await
        {
            let retry_after_ms = match (&err, self.hub.bus()) {
                (HubError::Bus(_), Some(bus)) => Some(bus.retry_after().map_or(1000, |d| {
                    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
                })),
                _ => None,
            };
            return Err(Refusal {
                retry_after_ms,
                ..Refusal::from(err)
            });
        }
        room.record_post(&user.id);
        // The ack is sent by the store's writer once the message is durable.
        Ok(None)
    }

    fn typing(&mut self, room: &str) -> Result<(), Refusal> {
        let user = self.user()?.clone();
        let conn = self.conn();
        let joined_room = self.joined(room)?.room.clone();
        let name = joined_room.name().as_str().to_owned();
        self.authorize(&name, Action::Post)?;
        self.check_moderation(&joined_room, &user.id, false)?;
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
        before: Option<u64>,
        after: Option<u64>,
        limit: Option<u32>,
    ) -> Result<Option<Bytes>, Refusal> {
        let name = self.authorize(room, Action::Read)?;
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
        let room = self.hub.room(&name).await?;
        if room.is_banned(&self.user()?.id) && !self.is_moderator(&name) {
            return Err(Refusal::new(
                ErrorCode::Banned,
                format!("you are banned from {name}"),
            ));
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
        if !self.rooms.contains_key(name.as_str()) {
            self.hub.release(&room);
        }
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

    /// A moderation action: checks, then appends to the class's audit log,
    /// then posts the action as an event of the room (acked like a post).
    async fn moderate(
        &mut self,
        id: Option<u32>,
        room: &str,
        action: ModAction,
    ) -> Result<Option<Bytes>, Refusal> {
        let name = RoomName::parse(room)
            .map_err(|e| Refusal::new(ErrorCode::InvalidRoom, e.to_string()))?;
        let user = self.user()?.clone();
        let moderator = self.is_moderator(&name);
        let own_redaction = matches!(action, ModAction::Redact { .. })
            && self
                .auth
                .as_ref()
                .is_some_and(|a| policy::allowed(&a.claims, &name, Action::Post));
        if !moderator && !own_redaction {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                format!("not allowed to moderate {name}"),
            ));
        }
        validate_action(&action)?;
        let room = self.hub.room(&name).await?;
        let now = (self.hub.clock)();
        let mut until = None;
        let mut target_from = None;
        let mut target_ts = None;
        match &action {
            ModAction::Redact { offset, .. } => {
                // Reserve first, then read: a redaction committed before the
                // reservation has already written its tombstone.
                if !room.reserve_redaction(*offset) {
                    return Err(Refusal::new(
                        ErrorCode::UnknownTarget,
                        format!("message {offset} is already being redacted"),
                    ));
                }
                let target = match self.read_message(&room, *offset).await {
                    Ok(target) if moderator || target.from.id == user.id => target,
                    Ok(_) => {
                        room.release_redaction(*offset);
                        return Err(Refusal::new(
                            ErrorCode::Forbidden,
                            "only moderators may redact others' messages",
                        ));
                    }
                    Err(refusal) => {
                        room.release_redaction(*offset);
                        return Err(refusal);
                    }
                };
                target_ts = Some(target.ts);
                target_from = Some(target.from);
            }
            ModAction::Mute {
                user: target,
                seconds,
                ..
            } => {
                self.known_user(&room, target).await?;
                until = Some(now.saturating_add(seconds.saturating_mul(1000)));
            }
            ModAction::Kick { user: target, .. } | ModAction::Ban { user: target, .. } => {
                self.known_user(&room, target).await?;
            }
            ModAction::Unmute { user: target } => {
                if room.moderation().muted_until(target, now).is_none() {
                    return Err(Refusal::new(
                        ErrorCode::UnknownTarget,
                        format!("{target} is not muted here"),
                    ));
                }
            }
            ModAction::Unban { user: target } => {
                if !room.is_banned(target) {
                    return Err(Refusal::new(
                        ErrorCode::UnknownTarget,
                        format!("{target} is not banned here"),
                    ));
                }
            }
            ModAction::Pin { offset } => {
                self.read_message(&room, *offset).await?;
            }
            ModAction::Unpin { offset } => {
                if !room.moderation().pinned.contains(offset) {
                    return Err(Refusal::new(
                        ErrorCode::UnknownTarget,
                        format!("message {offset} is not pinned"),
                    ));
                }
            }
            ModAction::Resolve { report, .. } => {
                let audit = self.hub.room(&name.audit_log()).await?;
                let open = self.open_reports(&audit, &name).await?;
                if !open.iter().any(|r| r.offset == *report) {
                    return Err(Refusal::new(
                        ErrorCode::UnknownTarget,
                        format!("no open report {report} for {name}"),
                    ));
                }
            }
            ModAction::SlowMode { .. } | ModAction::ReadOnly { .. } => {}
        }
        let redacting = match &action {
            ModAction::Redact { offset, .. } => Some(*offset),
            _ => None,
        };
        let posted = self
            .post_action(
                id,
                &name,
                &room,
                &user,
                action,
                until,
                target_from,
                target_ts,
            )
            .await;
        if let (Err(_), Some(offset)) = (&posted, redacting) {
            room.release_redaction(offset);
        }
        posted.map(|()| None)
    }

    /// Appends the audit entry (durable before the action takes effect),
    /// then posts the action as an event of the room.
    #[allow(clippy::too_many_arguments)]
    async fn post_action(
        &self,
        id: Option<u32>,
        name: &RoomName,
        room: &Arc<Room>,
        user: &UserInfo,
        action: ModAction,
        until: Option<u64>,
        target_from: Option<UserInfo>,
        target_ts: Option<u64>,
    ) -> Result<(), Refusal> {
        let audit = self.hub.room(&name.audit_log()).await?;
        // A resolution concerns the audit log only: it is the action.
        let audit_only = matches!(action, ModAction::Resolve { .. });
        self.hub
            .post(
                &audit,
                user,
                audit_only.then_some((&self.out, id)),
                Body::Audit {
                    room: name.to_string(),
                    action: action.clone(),
                    until,
                },
            )
            .await?;
        if audit_only {
            return Ok(());
        }
        tracing::info!(room = %name, action = action.name(), target = ?action.target_user(), "moderation");
        self.hub
            .post(
                room,
                user,
                Some((&self.out, id)),
                Body::Moderation {
                    action,
                    until,
                    target_from,
                    target_ts,
                },
            )
            .await?;
        Ok(())
    }

    /// Reports a message to the room's moderators: an entry in the class's
    /// audit log, which moderators follow live. Any reader of the room may.
    async fn report(
        &mut self,
        id: Option<u32>,
        room: &str,
        offset: u64,
        reason: Option<String>,
    ) -> Result<Option<Bytes>, Refusal> {
        let name = self.authorize(room, Action::Read)?;
        if name.kind() == crate::room::Kind::Audit {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "the audit log cannot be reported",
            ));
        }
        if reason.as_ref().is_some_and(|r| r.len() > MAX_REASON_LEN) {
            return Err(Refusal::new(
                ErrorCode::InvalidField,
                format!("reason is longer than {MAX_REASON_LEN} bytes"),
            ));
        }
        let user = self.user()?.clone();
        let room = self.hub.room(&name).await?;
        self.read_message(&room, offset).await?;
        let audit = self.hub.room(&name.audit_log()).await?;
        self.hub
            .post(
                &audit,
                &user,
                Some((&self.out, id)),
                Body::Report {
                    room: name.to_string(),
                    offset,
                    reason,
                },
            )
            .await?;
        tracing::info!(room = %name, offset, "message reported");
        Ok(None)
    }

    /// Reports of `room` in the audit log not resolved yet, oldest first
    /// (among the log's last [`AUDIT_SCAN`] entries).
    async fn open_reports(&self, audit: &Room, room: &RoomName) -> Result<Vec<Event>, Refusal> {
        let store = self.hub.store.clone();
        let key = audit.name().as_str().to_owned();
        let head = audit.bounds().1;
        let (frames, _) =
            tokio::task::spawn_blocking(move || store.read_before(&key, head + 1, AUDIT_SCAN))
                .await
                .map_err(HubError::from)?
                .map_err(HubError::from)?;
        let mut reports = Vec::new();
        let mut resolved = std::collections::HashSet::new();
        for frame in &frames {
            let Ok(ServerFrame::Event(event)) = protocol::decode_server_frame(frame) else {
                continue;
            };
            match &event.body {
                Body::Report { room: r, .. } if r == room.as_str() => reports.push(event),
                Body::Audit {
                    room: r,
                    action: ModAction::Resolve { report, .. },
                    ..
                } if r == room.as_str() => {
                    resolved.insert(*report);
                }
                _ => {}
            }
        }
        reports.retain(|r| !resolved.contains(&r.offset));
        Ok(reports)
    }

    /// What a moderator's console shows of a room.
    async fn room_view(&mut self, id: Option<u32>, room: &str) -> Result<Option<Bytes>, Refusal> {
        let name = RoomName::parse(room)
            .map_err(|e| Refusal::new(ErrorCode::InvalidRoom, e.to_string()))?;
        if !self.is_moderator(&name) {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                format!("not allowed to moderate {name}"),
            ));
        }
        let room = self.hub.room(&name).await?;
        let audit = self.hub.room(&name.audit_log()).await?;
        let open_reports = self.open_reports(&audit, &name).await?;
        let now = (self.hub.clock)();
        let moderation = room.moderation();
        let store = self.hub.store.clone();
        let key = name.as_str().to_owned();
        let head = room.bounds().1;
        let (recent, _) =
            tokio::task::spawn_blocking(move || store.read_before(&key, head + 1, RATE_SCAN))
                .await
                .map_err(HubError::from)?
                .map_err(HubError::from)?;
        let since = now.saturating_sub(RATE_WINDOW_MS);
        let recent_messages = recent
            .iter()
            .filter_map(|f| match protocol::decode_server_frame(f) {
                Ok(ServerFrame::Event(e)) if matches!(e.body, Body::Message { .. }) => Some(e.ts),
                _ => None,
            })
            .filter(|ts| *ts >= since)
            .count() as u64;
        let members = room
            .present_users()
            .into_iter()
            .map(|user| protocol::MemberState {
                muted_until: moderation.muted_until(&user.id, now),
                banned: moderation.banned.contains(&user.id),
                user,
            })
            .collect();
        let view = protocol::RoomView {
            room: name.to_string(),
            members,
            muted: moderation
                .muted
                .iter()
                .filter(|(_, until)| **until > now)
                .map(|(user, until)| (user.clone(), *until))
                .collect(),
            banned: moderation.banned.iter().cloned().collect(),
            slow_mode: moderation.slow_mode_secs,
            read_only: moderation.read_only,
            pinned: moderation.pinned.iter().copied().collect(),
            recent_messages,
            open_reports,
        };
        if !self.rooms.contains_key(name.as_str()) {
            self.hub.release(&room);
        }
        Ok(Some(protocol::ok(id, &view)))
    }

    /// The stored message at `offset`, or `unknown_target`.
    async fn read_message(&self, room: &Room, offset: u64) -> Result<Event, Refusal> {
        let store = self.hub.store.clone();
        let key = room.name().as_str().to_owned();
        let raw = tokio::task::spawn_blocking(move || store.raw_event(&key, offset))
            .await
            .map_err(HubError::from)?
            .map_err(HubError::from)?;
        let unknown = || {
            Refusal::new(
                ErrorCode::UnknownTarget,
                format!("no message at offset {offset}"),
            )
        };
        let frame = raw.ok_or_else(unknown)?;
        match protocol::decode_server_frame(&frame) {
            Ok(ServerFrame::Event(event)) if matches!(event.body, Body::Message { .. }) => {
                Ok(event)
            }
            _ => Err(unknown()),
        }
    }

    /// `unknown_target` unless the room knows `user`: present now, muted or
    /// banned here, or the author of one of its last messages.
    async fn known_user(&self, room: &Room, user: &str) -> Result<(), Refusal> {
        if room.knows_user(user) {
            return Ok(());
        }
        let store = self.hub.store.clone();
        let key = room.name().as_str().to_owned();
        let head = room.bounds().1;
        let recent =
            tokio::task::spawn_blocking(move || store.read_before(&key, head + 1, KNOWN_USER_SCAN))
                .await
                .map_err(HubError::from)?
                .map_err(HubError::from)?;
        let authored = recent.0.iter().any(|frame| {
            matches!(protocol::decode_server_frame(frame), Ok(ServerFrame::Event(e)) if e.from.id == user)
        });
        if authored {
            Ok(())
        } else {
            Err(Refusal::new(
                ErrorCode::UnknownTarget,
                format!("no user {user:?} in this room"),
            ))
        }
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

/// Bounds of moderation requests, each an `invalid_field` refusal.
fn validate_action(action: &ModAction) -> Result<(), Refusal> {
    let invalid = |message: String| Err(Refusal::new(ErrorCode::InvalidField, message));
    if action.reason().is_some_and(|r| r.len() > MAX_REASON_LEN) {
        return invalid(format!("reason is longer than {MAX_REASON_LEN} bytes"));
    }
    if action
        .target_user()
        .is_some_and(|u| u.is_empty() || u.len() > 128)
    {
        return invalid("user must be 1 to 128 bytes".to_owned());
    }
    match action {
        ModAction::Mute { seconds, .. } if *seconds == 0 || *seconds > MAX_MUTE_SECS => {
            invalid(format!("seconds must be between 1 and {MAX_MUTE_SECS}"))
        }
        ModAction::SlowMode { seconds } if *seconds > MAX_SLOW_MODE_SECS => invalid(format!(
            "seconds must be between 0 and {MAX_SLOW_MODE_SECS}"
        )),
        ModAction::Redact { offset: 0, .. }
        | ModAction::Pin { offset: 0 }
        | ModAction::Unpin { offset: 0 } => invalid("offset must be at least 1".to_owned()),
        _ => Ok(()),
    }
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
