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

/// Longest wait for a post to be durable in [`post_durable`] (the hub's
/// sweep answers a waiter left without an ack before this).
const DURABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Posts `body` as `user`'s, waits until it is durable, sends the client
/// its ack (request `id`) and returns the event's position: for kinds that
/// act once an event is stored (notify a conversation's members). A
/// refusal reaches the client as an error reply instead.
pub async fn post_durable(
    s: &Session,
    id: Option<u32>,
    room: &Arc<Room>,
    user: &crate::protocol::UserInfo,
    body: Body,
    key: Option<&str>,
) -> Result<crate::protocol::PostOk, Refusal> {
    let (out, mut rx) = crate::outbound::channel(s.conn(), usize::MAX);
    s.hub
        .post_keyed(room, user, Some((&out, id)), body, key)
        .await
        .map_err(|e| s.post_refusal(e))?;
    let frame = match tokio::time::timeout(DURABLE_WAIT, rx.recv()).await {
        Ok(Some(frame)) => frame,
        _ => {
            return Err(Refusal::new(
                ErrorCode::Unavailable,
                "the post was not stored in time; retry with the same key",
            ))
        }
    };
    match crate::protocol::decode_server_frame(&frame) {
        Ok(crate::protocol::ServerFrame::Ok { .. }) => {
            let ok = crate::protocol::decode_ok_data::<crate::protocol::PostOk>(&frame)
                .map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))?;
            Ok(ok)
        }
        Ok(crate::protocol::ServerFrame::Error(reply)) => Err(Refusal {
            code: reply.code,
            message: reply.message,
            retry_after_ms: reply.retry_after_ms,
        }),
        _ => Err(Refusal::new(
            ErrorCode::Internal,
            "unexpected reply to a post",
        )),
    }
}

/// [`write`] that waits until the event is durable and returns its
/// position (the caller sends the ack): for kinds that act once their
/// event is stored (notify the class of new homework).
pub async fn write_durable(
    s: &mut Session,
    id: Option<u32>,
    room: &Arc<Room>,
    kind: &str,
    fields: &impl Serialize,
    key: Option<&str>,
) -> Result<crate::protocol::PostOk, Refusal> {
    let user = s.user()?.clone();
    s.check_moderation(room, &user.id, true, None)
        .and_then(|()| s.take_post_token(&user.id))?;
    let body = KindBody::new(kind, fields).map_err(|e| Refusal::new(ErrorCode::Internal, e))?;
    let posted = post_durable(s, id, room, &user, Body::Kind(body), key).await?;
    room.record_post(&user.id);
    Ok(posted)
}

/// Lowercase without accents, to match names as people type them.
pub fn folded(s: &str) -> String {
    s.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'à' | 'â' | 'ä' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'î' | 'ï' => 'i',
            'ô' | 'ö' => 'o',
            'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            'ÿ' => 'y',
            other => other,
        })
        .collect()
}

/// Most people one post may mention (a pupil naming the whole class is
/// not told to 30 feeds).
const MAX_MENTIONS: usize = 5;

/// Tells the people of the room's class (pupils and teachers, from the
/// school directory) whom `post` names with `@` (`@Léa Martin`, or
/// `@lea`, their id), but its author, through their feeds. The
/// notification holds no words of the post (a post deleted later leaves
/// nothing behind).
pub fn notify_mentions(s: &Session, post: &crate::session::Posted<'_>) {
    if !post.text.contains('@') {
        return;
    }
    let Ok(by) = s.user() else {
        return;
    };
    let index = s.hub.directory.current();
    let class = post.room.name().class();
    let text = folded(post.text);
    let named = |name: &str| {
        let name = folded(name);
        text.match_indices('@').any(|(at, _)| {
            text[at + 1..].starts_with(&name)
                && !text[at + 1 + name.len()..]
                    .chars()
                    .next()
                    .is_some_and(char::is_alphanumeric)
        })
    };
    let mut told: Vec<(String, crate::protocol::Role)> = index
        .pupils_of(class)
        .chain(index.teachers_of(class).map(|(p, _)| p))
        .filter(|p| p.id != by.id && (named(&p.name) || named(&p.id)))
        .map(|p| (p.id.clone(), p.role))
        .collect();
    told.sort_by(|a, b| a.0.cmp(&b.0));
    told.dedup_by(|a, b| a.0 == b.0);
    told.truncate(MAX_MENTIONS);
    if told.is_empty() {
        return;
    }
    let fields = crate::kinds::inbox::NotifyFields {
        what: "mention".to_owned(),
        room: post.room.name().to_string(),
        at: post.thread,
        title: String::new(),
        preview: None,
        by: Some(by.clone()),
        hold_until: None,
        urgent: false,
    };
    let key = format!(
        "mention-{}",
        post.key
            .map_or_else(crate::ids::new_epoch, |k| format!("{}:{k}", by.id))
    );
    crate::kinds::inbox::notify_many(s.hub.clone(), told, fields, key);
}
