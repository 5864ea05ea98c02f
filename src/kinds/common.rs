//! What several kinds do the same way: reading every stored event of a
//! room to rebuild their state, and posting one of their own events as the
//! user's (acked once durable, with the moderation and rate checks of a
//! `post`).

use std::sync::Arc;

use serde::Serialize;

use crate::protocol::{Body, ErrorCode, Event, KindBody};
use crate::room::{LoadContext, Room};
use crate::session::kind::Handled;
use crate::session::{Refusal, Session};
use crate::store::StoreError;

/// Every stored event of `room` through `last`, decoded (tombstones
/// included; frames that do not decode are skipped). For kinds whose
/// rooms hold a few thousand events (the agenda, the diary). Blocking.
pub fn stored_events(
    cx: &LoadContext<'_>,
    room: &str,
    last: u64,
) -> Result<Vec<Event>, StoreError> {
    let (frames, _) = cx.store.read_after(room, 0, last, usize::MAX)?;
    Ok(frames
        .iter()
        .filter_map(|frame| match crate::protocol::decode_server_frame(frame) {
            Ok(crate::protocol::ServerFrame::Event(event)) => Some(event),
            _ => None,
        })
        .collect())
}

/// Posts an event of kind `kind` with `fields` as the user's, acked to
/// this connection once durable; refused as a `post` would be (banned,
/// muted, read-only, slow mode, rate limit). With `key`, a retry of a post
/// that went through gets its ack, not a refusal.
pub async fn write(
    s: &mut Session,
    id: Option<u32>,
    room: &Arc<Room>,
    kind: &str,
    fields: &impl Serialize,
    key: Option<&str>,
) -> Handled {
    let user = s.user()?.clone();
    let checked = s
        .check_moderation(room, &user.id, true, None)
        .and_then(|()| s.take_post_token(&user.id));
    if let Err(refusal) = checked {
        if let Some(key) = key {
            if s.hub
                .ack_known(room, &user, key, &s.out, id)
                .await
                .map_err(Refusal::from)?
            {
                return Ok(None);
            }
        }
        return Err(refusal);
    }
    let body = KindBody::new(kind, fields).map_err(|e| Refusal::new(ErrorCode::Internal, e))?;
    s.send_post_keyed(id, room, &user, Body::Kind(body), key)
        .await?;
    room.record_post(&user.id);
    Ok(None)
}
