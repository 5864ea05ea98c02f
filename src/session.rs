//! One connection's protocol state and request handlers: authentication,
//! joined rooms, and what each request type does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::auth::{AuthError, Claims};
use crate::hub::{Hub, HubError};
use crate::outbound::{ConnId, Outbound};
use crate::protocol::{
    self, Body, CloseCode, ErrorCode, ErrorReply, HelloOk, Limits, Position, Recovery,
    RecoveryFailure, Request, Typing, UserInfo,
};
use crate::room::policy::{self, Action};
use crate::room::{Room, RoomName};

/// Typing indicators from one connection to one room are passed on at most
/// this often; the rest are coalesced (clients expire them after 5 s).
const TYPING_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_HISTORY_PAGE: usize = 50;

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
        tracing::error!(error = %err, "request failed");
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

    fn joined(&mut self, room: &str) -> Result<&mut Joined, Refusal> {
        self.rooms
            .get_mut(room)
            .ok_or_else(|| Refusal::new(ErrorCode::NotJoined, format!("join {room} first")))
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
        let reply = match failure {
            Some(reason) => join_reply(
                id,
                &room,
                &joined,
                Some(Recovery {
                    recovered: false,
                    reason: Some(reason),
                }),
                &[],
            ),
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
                        join_reply(
                            id,
                            &room,
                            &joined,
                            Some(Recovery {
                                recovered: false,
                                reason: Some(RecoveryFailure::OutOfRetention),
                            }),
                            &[],
                        )
                    }
                    Ok((events, _)) if events.iter().map(Bytes::len).sum::<usize>() > max_bytes => {
                        join_reply(
                            id,
                            &room,
                            &joined,
                            Some(Recovery {
                                recovered: false,
                                reason: Some(RecoveryFailure::TooFarBehind),
                            }),
                            &[],
                        )
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
        room.finish_join(self.conn(), reply);
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
            .post(&room, &user, &self.out, id, Body::Message { text })
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
        // The ack is sent by the store's writer once the message is durable.
        Ok(None)
    }

    fn typing(&mut self, room: &str) -> Result<(), Refusal> {
        let user = self.user()?.clone();
        let conn = self.conn();
        let name = self.joined(room)?.room.name().as_str().to_owned();
        self.authorize(&name, Action::Post)?;
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
            &HistoryData {
                room: name.as_str(),
                epoch: room.epoch(),
                head,
                first: floor + 1,
                more,
            },
            &events,
        )))
    }

    /// Leaves every room; called once when the connection ends.
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

/// `HistoryOk` without its events, which are spliced in as stored.
#[derive(serde::Serialize)]
struct HistoryData<'a> {
    room: &'a str,
    epoch: &'a str,
    head: u64,
    first: u64,
    more: bool,
}

/// `JoinOk` without its events, which are spliced in as stored.
#[derive(serde::Serialize)]
struct JoinData<'a> {
    room: &'a str,
    epoch: &'a str,
    head: u64,
    first: u64,
    members: &'a [UserInfo],
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery: Option<Recovery>,
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
        &JoinData {
            room: room.name().as_str(),
            epoch: room.epoch(),
            head: joined.head,
            first: joined.floor + 1,
            members: &joined.members,
            recovery,
        },
        events,
    )
}

fn action_verb(action: Action) -> &'static str {
    match action {
        Action::Read => "read",
        Action::Post => "post",
        Action::Moderate => "moderate",
    }
}
