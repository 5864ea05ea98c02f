//! The feed's requests: `feed` (the notifications, unread counts and quiet
//! hours), `feed_read` (mark read) and `quiet_hours` (read or set them).
//! Each acts on the caller's own inbox, whose room name `feed` gives (join
//! it to be told live).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::state::{Feed, Item, QuietFields, SeenFields};
use super::{default_quiet, inbox_of, timezone, NAME, QUIET, SEEN};
use crate::kinds::common;
use crate::protocol::{self, ErrorCode};
use crate::quiet::QuietHours;
use crate::room::Room;
use crate::session::kind::{Handled, KindRequest};
use crate::session::{Refusal, Session};

pub(super) const TYPES: &[&str] = &["feed", "feed_read", "quiet_hours"];
/// Notifications per `feed` reply: by default, and at most.
const DEFAULT_ITEMS: usize = 50;
const MAX_ITEMS: usize = 200;
/// Longest room name a mark may name.
const MAX_ROOM_LEN: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// The newest notifications (before inbox offset `before`), the
    /// unread counts, the quiet hours.
    Feed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Marks read every notification through inbox offset `through` (the
    /// latest by default), of `room` only when given.
    FeedRead {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        through: Option<u64>,
    },
    /// With `hours`, sets the user's quiet hours; with `default: true`,
    /// goes back to the school's; with neither, reads them.
    QuietHours {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hours: Option<QuietHours>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        default: bool,
    },
}

/// The `feed` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedOk {
    /// The inbox room: join it to be told of new notifications live.
    pub room: String,
    pub items: Vec<Item>,
    /// More notifications before the last one listed.
    pub more: bool,
    /// Unread notifications per room they are about.
    pub unread: BTreeMap<String, u32>,
    pub total_unread: u32,
    pub quiet: QuietOk,
}

/// The quiet hours in force for the user (the `quiet_hours` reply).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuietOk {
    pub hours: QuietHours,
    /// The user's own (false: the school's default for their role).
    pub own: bool,
    /// Quiet now, until then (ms; absent when not quiet; `quiet::NEVER`
    /// when quiet every day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    /// The school's time zone (IANA), in which `hours` are read.
    pub timezone: String,
}

pub(super) async fn handle(s: &mut Session, request: KindRequest) -> Handled {
    let KindRequest::Frame { frame, .. } = request else {
        return Err(crate::session::kind::not_owned(NAME, request.type_name()));
    };
    let request: Request = protocol::decode_kind_request(&frame, TYPES)
        .map_err(|e| Refusal::new(e.code(), e.to_string()))?;
    let room = inbox(s).await?;
    let result = match request {
        Request::Feed { id, before, limit } => {
            let limit = match limit {
                None => DEFAULT_ITEMS,
                Some(0) => return Err(invalid("limit must be at least 1")),
                Some(n) => (n as usize).min(MAX_ITEMS),
            };
            let (items, more, unread) = room
                .with_state(|feed: &mut Feed, _| {
                    let (items, more) = feed.page(before, limit);
                    (items, more, feed.unread())
                })
                .unwrap_or_default();
            let total_unread = unread.values().sum();
            Ok(Some(protocol::ok(
                id,
                &FeedOk {
                    room: room.name().to_string(),
                    items,
                    more,
                    unread,
                    total_unread,
                    quiet: quiet_ok(s, &room)?,
                },
            )))
        }
        Request::FeedRead {
            id,
            room: about,
            through,
        } => {
            if about
                .as_ref()
                .is_some_and(|r| r.is_empty() || r.len() > MAX_ROOM_LEN)
            {
                return Err(invalid(format!("room must be 1 to {MAX_ROOM_LEN} bytes")));
            }
            // Never beyond the latest notification: a mark does not read
            // what has not come yet.
            let last = room
                .with_state(|feed: &mut Feed, _| feed.last())
                .unwrap_or(0);
            let through = through.map_or(last, |t| t.min(last));
            let fields = SeenFields {
                room: about,
                through,
            };
            common::write(s, id, &room, SEEN, &fields, None).await
        }
        Request::QuietHours { id, hours, default } => match (hours, default) {
            (Some(_), true) => Err(invalid("send hours or default, not both")),
            (None, false) => Ok(Some(protocol::ok(id, &quiet_ok(s, &room)?))),
            (hours, _) => {
                if let Some(hours) = &hours {
                    hours.check().map_err(invalid)?;
                }
                let fields = QuietFields {
                    hours: hours.map(QuietHours::normalized),
                };
                common::write(s, id, &room, QUIET, &fields, None).await
            }
        },
    };
    s.release_unjoined(&room);
    result
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::InvalidField, message)
}

/// The caller's inbox, created at their first look.
async fn inbox(s: &Session) -> Result<Arc<Room>, Refusal> {
    let user = s.user()?;
    let name = s
        .hub
        .kinds
        .parse(&inbox_of(&user.id))
        .map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))?;
    Ok(s.hub.room(&name).await?)
}

fn quiet_ok(s: &Session, room: &Room) -> Result<QuietOk, Refusal> {
    let role = s.user()?.role;
    let own = room
        .with_state(|feed: &mut Feed, _| feed.quiet().cloned())
        .flatten();
    let hours = own
        .clone()
        .unwrap_or_else(|| default_quiet(&s.hub.config, role));
    let until = crate::quiet::hold_until(&hours, (s.hub.clock)(), timezone(&s.hub.config));
    Ok(QuietOk {
        hours,
        own: own.is_some(),
        until,
        timezone: timezone(&s.hub.config).name().to_owned(),
    })
}
