//! The agenda's requests: writing items (`agenda_add`, `agenda_change`,
//! `agenda_cancel`, posted like messages and acked once durable) and
//! reading them by date range (`agenda`).

use serde::{Deserialize, Serialize};

use super::state::{Agenda, AgendaItem, CancelFields, ItemFields};
use super::{CANCEL, ITEM, NAME};
use crate::kinds::common;
use crate::protocol::{self, ErrorCode};
use crate::room::policy::Action;
use crate::room::Room;
use crate::session::kind::{Handled, KindRequest};
use crate::session::{forbidden, Refusal, Session};

/// Longest title and place, in bytes.
pub const MAX_TITLE_LEN: usize = 200;
/// Longest cancellation reason, in bytes.
pub const MAX_REASON_LEN: usize = 500;
/// Longest item: 31 days (a school trip, a project week, a holiday).
pub const MAX_SPAN_MS: u64 = 31 * 24 * 3600 * 1000;
/// Widest `agenda` range: 400 days (a school year and its margins).
pub const MAX_RANGE_MS: u64 = 400 * 24 * 3600 * 1000;
/// Latest time an item may start: the last millisecond of year 9999, so
/// every client's date type holds it.
pub const MAX_TIME_MS: u64 = 253_402_300_799_999;
/// Items per `agenda` reply: by default, and at most.
pub const DEFAULT_ITEMS: usize = 200;
pub const MAX_ITEMS: usize = 500;
/// Longest idempotency key, in bytes (as for `post`).
const MAX_KEY_LEN: usize = 64;

/// The agenda's requests, as a client sends them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// A new item; acked (`ok` with the event's position) once durable.
    AgendaAdd {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        #[serde(flatten)]
        item: NewItem,
        /// Idempotency key, as for `post`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// A new version of `item` (every field is replaced).
    AgendaChange {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        item: u64,
        #[serde(flatten)]
        fields: NewItem,
    },
    /// Cancels `item` (it stays listed, marked cancelled).
    AgendaCancel {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        item: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The items overlapping `[from, to)` (ms since the Unix epoch).
    Agenda {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        from: u64,
        to: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
}

/// An item's fields in `agenda_add` and `agenda_change`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewItem {
    pub title: String,
    pub starts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_day: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

/// The `agenda` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgendaOk {
    pub room: String,
    pub items: Vec<AgendaItem>,
    /// More items matched than `limit`: ask again from the last one's
    /// start.
    pub more: bool,
}

const TYPES: &[&str] = &["agenda_add", "agenda_change", "agenda_cancel", "agenda"];

pub(super) async fn handle(s: &mut Session, request: KindRequest) -> Handled {
    let KindRequest::Frame { frame, .. } = request else {
        return Err(crate::session::kind::not_owned(NAME, request.type_name()));
    };
    let request: Request = protocol::decode_kind_request(&frame, TYPES)
        .map_err(|e| Refusal::new(e.code(), e.to_string()))?;
    match request {
        Request::AgendaAdd {
            id,
            room,
            item,
            key,
        } => {
            if key
                .as_ref()
                .is_some_and(|k| k.is_empty() || k.len() > MAX_KEY_LEN)
            {
                return Err(invalid(format!("key must be 1 to {MAX_KEY_LEN} bytes")));
            }
            let room = writable(s, &room)?;
            let fields = check_item(s, None, item)?;
            common::write(s, id, &room, ITEM, &fields, key.as_deref()).await
        }
        Request::AgendaChange {
            id,
            room,
            item,
            fields,
        } => {
            let room = writable(s, &room)?;
            existing(&room, item)?;
            let fields = check_item(s, Some(item), fields)?;
            common::write(s, id, &room, ITEM, &fields, None).await
        }
        Request::AgendaCancel {
            id,
            room,
            item,
            reason,
        } => {
            let room = writable(s, &room)?;
            if reason.as_ref().is_some_and(|r| r.len() > MAX_REASON_LEN) {
                return Err(invalid(format!(
                    "reason is longer than {MAX_REASON_LEN} bytes"
                )));
            }
            existing(&room, item)?;
            common::write(s, id, &room, CANCEL, &CancelFields { item, reason }, None).await
        }
        Request::Agenda {
            id,
            room,
            from,
            to,
            limit,
        } => list(s, id, &room, from, to, limit).await,
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::InvalidField, message)
}

/// The joined agenda room `room`, if the user may write in it.
fn writable(s: &mut Session, room: &str) -> Result<std::sync::Arc<Room>, Refusal> {
    let room = s.joined_room(room)?;
    if room.name().kind().name() != NAME {
        return Err(invalid(format!("{} is not an agenda", room.name())));
    }
    if !s.allowed_in(&room, Action::Post) {
        return Err(forbidden(room.name(), Action::Post));
    }
    Ok(room)
}

/// `unknown_target` unless `item` is an item of the agenda, and
/// `not_editable` once it is cancelled.
fn existing(room: &Room, item: u64) -> Result<(), Refusal> {
    let (known, cancelled) = room
        .with_state(|agenda: &mut Agenda, _| (agenda.has(item), agenda.is_cancelled(item)))
        .unwrap_or((false, false));
    if !known {
        return Err(Refusal::new(
            ErrorCode::UnknownTarget,
            format!("no item {item} in {}", room.name()),
        ));
    }
    if cancelled {
        return Err(Refusal::new(
            ErrorCode::NotEditable,
            format!("item {item} is cancelled"),
        ));
    }
    Ok(())
}

/// Checks an item's fields against the bounds above.
fn check_item(s: &Session, item: Option<u64>, new: NewItem) -> Result<ItemFields, Refusal> {
    if new.title.trim().is_empty() || new.title.len() > MAX_TITLE_LEN {
        return Err(invalid(format!("title must be 1 to {MAX_TITLE_LEN} bytes")));
    }
    if new.place.as_ref().is_some_and(|p| p.len() > MAX_TITLE_LEN) {
        return Err(invalid(format!(
            "place is longer than {MAX_TITLE_LEN} bytes"
        )));
    }
    if let Some(details) = &new.details {
        s.check_text(details)?;
    }
    if new.starts > MAX_TIME_MS {
        return Err(invalid("starts is past the year 9999"));
    }
    if let Some(ends) = new.ends {
        if ends < new.starts {
            return Err(invalid("ends is before starts"));
        }
        if ends - new.starts > MAX_SPAN_MS {
            return Err(invalid("an item lasts at most 31 days"));
        }
    }
    Ok(ItemFields {
        item,
        title: new.title,
        starts: new.starts,
        ends: new.ends,
        all_day: new.all_day.unwrap_or(false),
        place: new.place,
        details: new.details,
    })
}

/// The items of `[from, to)`.
async fn list(
    s: &mut Session,
    id: Option<u32>,
    room: &str,
    from: u64,
    to: u64,
    limit: Option<u32>,
) -> Handled {
    if to <= from || to - from > MAX_RANGE_MS {
        return Err(invalid("to must be after from, at most 400 days later"));
    }
    let limit = match limit {
        None => DEFAULT_ITEMS,
        Some(0) => return Err(invalid("limit must be at least 1")),
        Some(n) => (n as usize).min(MAX_ITEMS),
    };
    let (name, room) = s.open(room, Action::Read).await?;
    if name.kind().name() != NAME {
        s.release_unjoined(&room);
        return Err(invalid(format!("{name} is not an agenda")));
    }
    s.refuse_banned(&room)?;
    let (items, more) = room
        .with_state(|agenda: &mut Agenda, _| agenda.between(from, to, limit))
        .unwrap_or_default();
    s.release_unjoined(&room);
    Ok(Some(protocol::ok(
        id,
        &AgendaOk {
            room: name.to_string(),
            items,
            more,
        },
    )))
}
