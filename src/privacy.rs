//! One user's data on request: export (GDPR articles 15 and 20) and
//! erasure (article 17), which a school owes its pupils, their parents and
//! its staff. The IT team calls them through `/admin/` (`gateway.rs`).
//!
//! Both scan every room this node stores, off the async workers. In
//! cluster mode every node stores every event, so the redactions of step 1
//! below reach all of them, but the rewrites of step 2 and the read marks
//! are each node's own: erasure is run against every node (it is
//! idempotent; the nodes after the first find nothing left to redact).
//!
//! Erasure, in this order:
//! 1. Every message and forum post the user wrote is redacted through its
//!    room, like a moderator's redaction: members see it go, other nodes
//!    store the tombstone, and the ack means it is durable. The tombstone
//!    names [`erased`] as its author, not the user. So are the kinds' own
//!    events (an agenda item) that their kind says to redact
//!    (`RoomKind::erasure`).
//! 2. What else names the user as its author is rewritten in place,
//!    without its text: tombstones of earlier redactions (and of their
//!    forum edits), moderation events about their messages, reports they
//!    filed, answers they marked, and their notes updates (the class's
//!    shared text stays: it is everyone's work).
//! 3. Their forum read marks are deleted, and their calendar feed's
//!    address stops working.
//!
//! Kept, and counted in [`Erasure::kept`]: moderation actions against the
//! user (mute, kick, ban) and what the user did as a moderator, with their
//! audit-log entries: the school's record of how order was kept.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::hub::{Hub, HubError};
use crate::outbound;
use crate::protocol::{self, Body, ErrorReply, Event, ModAction, Role, ServerFrame, UserInfo};
use crate::store::{Store, StoreError};

/// Events read from the store at a time while scanning a room.
const SCAN_PAGE: usize = 1_000;
/// Redactions posted before their acks are awaited (bounds what waits in
/// the erasure's own outbound queue).
const REDACT_BATCH: usize = 256;
/// Bytes of acks the erasure's outbound queue holds (a batch's take a
/// few KiB).
const ACK_BUDGET: usize = 1 << 20;
/// How long one redaction may take to become durable.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// The user id erased authors show.
pub const ERASED_ID: &str = "erased";
/// The reason every erasure tombstone gives.
pub const ERASURE_REASON: &str = "data erasure";

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Hub(#[from] HubError),
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("file store: {0}")]
    Files(#[from] crate::files::FilesError),
    #[error("cannot delete from the redis stream: {0}")]
    Stream(String),
    #[error("redaction of {room} offset {offset} failed: {message}")]
    NotRedacted {
        room: String,
        offset: u64,
        message: String,
    },
}

/// Everything this node stores that the user wrote or that concerns them.
#[derive(Debug, Serialize)]
pub struct Export {
    pub user: String,
    pub node: String,
    /// Milliseconds since the Unix epoch, server clock.
    pub generated_ts: u64,
    /// What the user wrote (messages, forum posts and edits, reports,
    /// moderation actions), room by room in offset order; a message
    /// redacted since shows as its tombstone.
    pub written: Vec<Event>,
    /// Others' events about the user: moderation actions naming them or
    /// their messages, and the audit log's entries of those; the
    /// notifications of their feed and those naming them in others'
    /// (what erasure takes with them: `RoomKind::erases_other`).
    pub about: Vec<Event>,
    /// Notes the user typed in, with how many of their updates are stored
    /// (a Yjs update is not readable text; the note's text is the class's).
    pub note_updates: Vec<NoteUpdates>,
    pub read_marks: Vec<ReadMark>,
    /// Whether the user has a calendar feed address that works.
    pub calendar_feed: bool,
    /// The objects the file store keeps about them (their hand-ins, the
    /// corrections returned to them, what they shared or posted, uploads
    /// in progress): path and size. What each is, and its name, is in the
    /// events above that reference it (`file.path`).
    pub files: Vec<StoredFile>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct StoredFile {
    pub path: String,
    pub size: u64,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct NoteUpdates {
    pub room: String,
    pub updates: u64,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ReadMark {
    pub room: String,
    pub thread: u64,
    pub offset: u64,
}

/// What an erasure did.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Erasure {
    pub user: String,
    /// Messages and forum posts redacted now, through their rooms.
    pub redacted: u64,
    /// Stored events rewritten so they no longer name the user.
    pub anonymized: u64,
    pub read_marks_deleted: u64,
    /// Their calendar feed address stopped working.
    pub calendar_feed_deleted: bool,
    /// Objects deleted from the file store: files about them (their
    /// hand-ins and the corrections returned to them, what they shared),
    /// staged files and uploads in progress.
    pub files_deleted: u64,
    /// Events still naming the user (see the module documentation).
    pub kept: u64,
}

/// Who erasure redactions are by.
fn eraser() -> UserInfo {
    UserInfo {
        id: "preau".to_owned(),
        name: "préau".to_owned(),
        role: Role::Staff,
    }
}

/// The author an erased user's events show instead (their role stays: a
/// pupil's deleted message still reads as a pupil's).
pub fn erased(role: Role) -> UserInfo {
    UserInfo {
        id: ERASED_ID.to_owned(),
        name: ERASED_ID.to_owned(),
        role,
    }
}

/// Calls `visit(room, frame, event)` for every event stored in every room,
/// room by room in offset order (frames that do not decode are skipped).
/// Blocking.
fn scan(store: &Store, mut visit: impl FnMut(&str, &Bytes, Event)) -> Result<(), StoreError> {
    for room in store.rooms()? {
        let mut after = 0;
        loop {
            let (page, more) = store.read_page(&room, after, SCAN_PAGE)?;
            for (offset, frame) in &page {
                after = *offset;
                if let Ok(ServerFrame::Event(event)) = protocol::decode_server_frame(frame) {
                    visit(&room, frame, event);
                }
            }
            if !more {
                break;
            }
        }
    }
    Ok(())
}

/// Whether an erasure redacts `event`, one of its room kind's own events
/// (`RoomKind::erasure`).
fn redacted_kind(kinds: &crate::room::Kinds, room: &str, event: &Event) -> bool {
    kinds
        .parse(room)
        .is_ok_and(|name| name.kind().erasure(event) == crate::room::Erasure::Redact)
}

fn erases_other(kinds: &crate::room::Kinds, room: &str, event: &Event, user: &str) -> bool {
    kinds
        .parse(room)
        .is_ok_and(|name| name.kind().erases_other(room, event, user))
}

/// Whether `event`, not written by `user`, is about them.
fn is_about(event: &Event, user: &str) -> bool {
    match &event.body {
        Body::Moderation {
            action,
            target_from,
            ..
        } => {
            action.target_user() == Some(user) || target_from.as_ref().is_some_and(|t| t.id == user)
        }
        Body::Audit { action, .. } => action.target_user() == Some(user),
        _ => false,
    }
}

/// Fills `export` (for its user) from the store. Blocking.
fn collect(
    store: &Store,
    kinds: &crate::room::Kinds,
    export: &mut Export,
) -> Result<(), StoreError> {
    let user = export.user.clone();
    scan(store, |room, _, event| {
        if event.from.id != user {
            if is_about(&event, &user) || erases_other(kinds, room, &event, &user) {
                export.about.push(event);
            }
            return;
        }
        if let Body::YjsUpdate { .. } = event.body {
            match export.note_updates.last_mut() {
                Some(last) if last.room == room => last.updates += 1,
                _ => export.note_updates.push(NoteUpdates {
                    room: room.to_owned(),
                    updates: 1,
                }),
            }
            return;
        }
        export.written.push(event);
    })?;
    export.read_marks = store
        .read_marks_of(&user)?
        .into_iter()
        .map(|(room, thread, offset)| ReadMark {
            room,
            thread,
            offset,
        })
        .collect();
    Ok(())
}

pub async fn export(hub: &Arc<Hub>, user: &str) -> Result<Export, PrivacyError> {
    let mut export = Export {
        user: user.to_owned(),
        node: hub.config.node_id.clone(),
        generated_ts: (hub.clock)(),
        written: Vec::new(),
        about: Vec::new(),
        note_updates: Vec::new(),
        read_marks: Vec::new(),
        calendar_feed: false,
        files: Vec::new(),
    };
    let store = hub.store.clone();
    let kinds = hub.kinds.clone();
    let export = tokio::task::spawn_blocking(move || {
        collect(&store, &kinds, &mut export)?;
        export.calendar_feed = store.feed(&export.user)?.is_some();
        Ok::<_, StoreError>(export)
    })
    .await??;
    let mut export = export;
    export.files = hub
        .files
        .of_user(user)
        .await?
        .into_iter()
        .map(|(path, size)| StoredFile { path, size })
        .collect();
    Ok(export)
}

pub async fn erase(hub: &Arc<Hub>, user: &str) -> Result<Erasure, PrivacyError> {
    let mut erasure = Erasure {
        user: user.to_owned(),
        ..Erasure::default()
    };
    // 1. Their messages, redacted through their rooms.
    let store = hub.store.clone();
    let id = user.to_owned();
    let kinds = hub.kinds.clone();
    let (messages, quoted) = tokio::task::spawn_blocking(move || {
        let mut messages = Vec::new();
        // Their posts others may have quoted: messages, and tombstones of
        // earlier redactions (the quote outlives the post).
        let mut quoted = HashSet::new();
        scan(&store, |room, _, event| {
            match event.body {
                Body::Message { .. } if event.from.id == id => {
                    quoted.insert((room.to_owned(), event.offset));
                    messages.push((room.to_owned(), event));
                }
                // A kind's own events (an agenda item): as its kind says.
                Body::Kind(_) if event.from.id == id && redacted_kind(&kinds, room, &event) => {
                    messages.push((room.to_owned(), event));
                }
                // Others' events that are theirs or about them all the
                // same (their notifications, or one naming them).
                Body::Kind(_) if event.from.id != id && erases_other(&kinds, room, &event, &id) => {
                    messages.push((room.to_owned(), event));
                }
                // Already erased (by another node's erasure, whose
                // redactions reached this one, or earlier): nobody quotes
                // an erased post.
                Body::Redacted { .. } if event.from.id == id || event.from.id == ERASED_ID => {
                    quoted.insert((room.to_owned(), event.offset));
                }
                _ => {}
            }
        })?;
        Ok::<_, StoreError>((messages, quoted))
    })
    .await??;
    for batch in messages.chunks(REDACT_BATCH) {
        erasure.redacted += redact_batch(hub, batch).await?;
    }
    // A message a moderator was redacting at the same moment was left to
    // them; if their redaction failed, it is still there: not done.
    let store = hub.store.clone();
    let id = user.to_owned();
    let kinds = hub.kinds.clone();
    let left = tokio::task::spawn_blocking(move || {
        let mut left = 0u64;
        scan(&store, |room, _, event| {
            let redacted = match &event.body {
                Body::Message { .. } => event.from.id == id,
                Body::Kind(_) => {
                    (event.from.id == id && redacted_kind(&kinds, room, &event))
                        || (event.from.id != id && erases_other(&kinds, room, &event, &id))
                }
                _ => false,
            };
            if redacted {
                left += 1;
            }
        })?;
        Ok::<_, StoreError>(left)
    })
    .await??;
    if left > 0 {
        return Err(PrivacyError::NotRedacted {
            room: String::new(),
            offset: 0,
            message: format!("{left} message(s) still stored (a redaction raced this one): run the erasure again"),
        });
    }
    // 2. and 3. What else names them or quotes them, rewritten; their
    // read marks. Then every key that sealed their words is destroyed
    // before this returns (`Store::settle`).
    let store = hub.store.clone();
    let id = user.to_owned();
    let (anonymized, kept, marks, streamed) = tokio::task::spawn_blocking(move || {
        // A sled reopen (after a failed write) in the middle could lose
        // rewrites: then this call fails, and running it again finishes.
        let since = store.generation();
        let (anonymized, kept, streamed) = anonymize(&store, &id, &quoted)?;
        let marks = store.delete_read_marks_of(&id)?;
        let feed = store.delete_feed(&id)?;
        store.flush_since(since)?;
        store.settle()?;
        Ok::<_, StoreError>((anonymized, kept, (marks, feed), streamed))
    })
    .await??;
    let (marks, feed) = marks;
    erasure.calendar_feed_deleted = feed;
    // Their files' bytes: the events that referenced them are redacted
    // above; the objects go here, one prefix per class.
    erasure.files_deleted = hub.files.erase_user(user).await? as u64;
    // With several nodes, Redis's stream of each room still holds the
    // original events: their redacted messages and what was rewritten.
    // Computed from what is stored, not from what this run changed, so a
    // run after a failed one deletes what that one could not.
    // (Nothing to do on a single node: `forget` does nothing there.)
    {
        let mut by_room: HashMap<String, Vec<u64>> = HashMap::new();
        for (room, event) in &messages {
            by_room.entry(room.clone()).or_default().push(event.offset);
        }
        for (room, offset) in streamed {
            by_room.entry(room).or_default().push(offset);
        }
        let mut failed = None;
        for (room, offsets) in by_room {
            if let Err(err) = hub.sequencer().forget(&room, &offsets).await {
                failed = Some(PrivacyError::Stream(err.to_string()));
            }
        }
        if let Some(err) = failed {
            return Err(err);
        }
    }
    erasure.anonymized = anonymized;
    erasure.kept = kept;
    erasure.read_marks_deleted = marks;
    tracing::info!(
        user,
        redacted = erasure.redacted,
        anonymized,
        kept,
        read_marks = marks,
        "user data erased"
    );
    Ok(erasure)
}

/// Redacts `messages` (room, event) and waits until each redaction is
/// durable; how many were redacted (one already being redacted by a
/// moderator is left to them).
async fn redact_batch(hub: &Arc<Hub>, messages: &[(String, Event)]) -> Result<u64, PrivacyError> {
    let (out, mut acks) = outbound::channel(hub.next_conn_id(), ACK_BUDGET);
    let eraser = eraser();
    let mut posted = Vec::new();
    for (room_name, event) in messages {
        let Ok(name) = hub.kinds.parse(room_name) else {
            continue;
        };
        let room = hub.room(&name).await?;
        if !room.reserve_redaction(event.offset) {
            hub.release(&room);
            continue;
        }
        let target_thread = match &event.body {
            Body::Message {
                thread: Some(thread),
                ..
            } => Some(*thread),
            Body::Message { title: Some(_), .. } => Some(event.offset),
            _ => None,
        };
        let id = u32::try_from(posted.len()).unwrap_or(u32::MAX);
        let result = hub
            .post(
                &room,
                &eraser,
                Some((&out, Some(id))),
                Body::Moderation {
                    action: ModAction::Redact {
                        offset: event.offset,
                        reason: Some(ERASURE_REASON.to_owned()),
                    },
                    until: None,
                    target_from: Some(erased(event.from.role)),
                    target_ts: Some(event.ts),
                    target_thread,
                },
            )
            .await;
        if let Err(err) = result {
            room.release_redaction(event.offset);
            hub.release(&room);
            return Err(err.into());
        }
        posted.push((room, event.offset));
    }
    let mut redacted = 0;
    for _ in 0..posted.len() {
        let frame = tokio::time::timeout(ACK_TIMEOUT, acks.recv()).await;
        match frame
            .ok()
            .flatten()
            .map(|f| protocol::decode_server_frame(&f))
        {
            Some(Ok(ServerFrame::Ok { .. })) => redacted += 1,
            Some(Ok(ServerFrame::Error(ErrorReply { id, message, .. }))) => {
                let (room, offset) = id
                    .and_then(|id| posted.get(id as usize))
                    .map_or((String::new(), 0), |(room, offset)| {
                        (room.name().to_string(), *offset)
                    });
                return Err(PrivacyError::NotRedacted {
                    room,
                    offset,
                    message,
                });
            }
            _ => {
                return Err(PrivacyError::NotRedacted {
                    room: String::new(),
                    offset: 0,
                    message: format!("no acknowledgement within {ACK_TIMEOUT:?}"),
                })
            }
        }
    }
    for (room, _) in &posted {
        hub.release(room);
    }
    Ok(redacted)
}

/// A stored event's place: room and offset.
type EventAt = (String, u64);

/// Rewrites the stored events that name `user` as their author, or their
/// redacted message's, without their words, and replies that quote one of
/// `quoted` without the quote; `(rewritten, kept, the events rewritten)`.
/// Blocking.
fn anonymize(
    store: &Store,
    user: &str,
    quoted: &HashSet<(String, u64)>,
) -> Result<(u64, u64, Vec<EventAt>), StoreError> {
    let mut rewrites = Vec::new();
    let mut streamed = Vec::new();
    let mut kept = 0;
    scan(store, |room, frame, mut event| {
        let own = event.from.id == user;
        let rewritten = match &mut event.body {
            Body::Message {
                reply_to: Some(target),
                quote: quote @ Some(_),
                ..
            } if !own && quoted.contains(&(room.to_owned(), *target)) => {
                *quote = None;
                true
            }
            Body::Redacted { .. }
            | Body::YjsUpdate { .. }
            | Body::Answer { .. }
            | Body::Edit { .. }
                if own =>
            {
                event.from = erased(event.from.role);
                if let Body::Edit { text, title, .. } = &mut event.body {
                    text.clear();
                    *title = None;
                }
                true
            }
            Body::Report { reason, .. } if own => {
                event.from = erased(event.from.role);
                *reason = None;
                true
            }
            Body::Moderation {
                action: ModAction::Redact { .. },
                target_from: Some(target),
                ..
            } if target.id == user => {
                *target = erased(target.role);
                true
            }
            _ => {
                if own || is_about(&event, user) {
                    kept += 1;
                }
                false
            }
        };
        // Everything of theirs or quoting them, rewritten now or by an
        // earlier run: the Redis streams may still hold the original.
        let related = rewritten
            || event.from.id == ERASED_ID
            || matches!(&event.body, Body::Message { reply_to: Some(t), .. } if quoted.contains(&(room.to_owned(), *t)))
            || matches!(&event.body, Body::Moderation { target_from: Some(t), .. } if t.id == ERASED_ID);
        if related {
            streamed.push((room.to_owned(), event.offset));
        }
        if rewritten {
            rewrites.push((
                room.to_owned(),
                event.offset,
                frame.clone(),
                protocol::event(&event),
            ));
        }
    })?;
    let mut anonymized = 0;
    for (room, offset, old, new) in rewrites {
        if store.replace_event(&room, offset, &old, &new)? {
            anonymized += 1;
        }
    }
    Ok((anonymized, kept, streamed))
}
