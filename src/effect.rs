//! What an event does to its room besides being delivered: moderation
//! actions change the moderation state, a redaction rewrites the stored
//! message, forum posts update the thread index, note updates change the
//! document. Computed from the event alone (`Effect::of`), so every node
//! derives the same effects in the same offset order.

use bytes::Bytes;

use crate::protocol::{self, Body, Event, ModAction, UserInfo};

/// What a forum event changes in the index (see [`Effect::Forum`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A post: a thread's first one (`thread` is `None`, `title` set) or a
    /// reply in `thread`.
    Post {
        from: UserInfo,
        ts: u64,
        title: Option<String>,
        thread: Option<u64>,
        reply_to: Option<u64>,
    },
    /// A new version of post `target`.
    Edit { target: u64, title: Option<String> },
    /// `offset` answers `thread` (`None`: no answer).
    Answer { thread: u64, offset: Option<u64> },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Changes the moderation state (and, for kick and ban, removes the
    /// user's connections).
    Action {
        action: ModAction,
        until: Option<u64>,
    },
    /// Replaces the stored message at `target` with `tombstone` (and a
    /// forum post's edits with tombstones of their own).
    Redact {
        target: u64,
        tombstone: Bytes,
        by: UserInfo,
        reason: Option<String>,
        /// Who the tombstone says wrote the message: its author, or
        /// `erased` when the redaction is an erasure (`privacy.rs`).
        author: UserInfo,
    },
    /// Updates a forum's thread index.
    Forum(Change),
    /// A Yjs v1 update of a note, already checked by the node that
    /// accepted it.
    NoteUpdate(Vec<u8>),
}

impl Effect {
    /// The effect of `event`, if it has one.
    pub fn of(event: &Event) -> Option<Effect> {
        match &event.body {
            Body::Moderation {
                action,
                until,
                target_from,
                target_ts,
                target_thread,
            } => Some(match action {
                ModAction::Redact { offset, reason } => {
                    let author = target_from.clone().unwrap_or_else(|| event.from.clone());
                    let tombstone = Event {
                        room: event.room.clone(),
                        epoch: event.epoch.clone(),
                        offset: *offset,
                        ts: target_ts.unwrap_or(0),
                        from: author.clone(),
                        body: Body::Redacted {
                            by: event.from.clone(),
                            reason: reason.clone(),
                            thread: *target_thread,
                            edit_of: None,
                        },
                    };
                    Effect::Redact {
                        target: *offset,
                        tombstone: protocol::event(&tombstone),
                        by: event.from.clone(),
                        reason: reason.clone(),
                        author,
                    }
                }
                other => Effect::Action {
                    action: other.clone(),
                    until: *until,
                },
            }),
            Body::Message {
                title,
                thread,
                reply_to,
                ..
            } if title.is_some() || thread.is_some() => Some(Effect::Forum(Change::Post {
                from: event.from.clone(),
                ts: event.ts,
                title: title.clone(),
                thread: *thread,
                reply_to: *reply_to,
            })),
            Body::Edit { target, title, .. } => Some(Effect::Forum(Change::Edit {
                target: *target,
                title: title.clone(),
            })),
            Body::Answer { thread, offset } => Some(Effect::Forum(Change::Answer {
                thread: *thread,
                offset: *offset,
            })),
            Body::YjsUpdate { data } => Some(Effect::NoteUpdate(data.clone())),
            // A kind's own events: its state reads them from the frame.
            Body::Message { .. }
            | Body::Redacted { .. }
            | Body::Report { .. }
            | Body::Audit { .. }
            | Body::Kind(_) => None,
        }
    }

    /// Whether the effect changes the moderation state (to checkpoint).
    pub fn is_moderation(&self) -> bool {
        matches!(self, Effect::Action { .. } | Effect::Redact { .. })
    }

    /// The pupil a moderation action is about, when it is about one person
    /// (mute, unmute, kick, ban, unban): such an event is shown to that
    /// person and to teachers and staff only, not to the whole class
    /// ([`withheld`]), unless the teacher chose to announce a mute, kick or
    /// ban (`announce`).
    pub fn personal(&self) -> Option<&str> {
        match self {
            Effect::Action {
                action:
                    ModAction::Mute {
                        user,
                        announce: false,
                        ..
                    }
                    | ModAction::Kick {
                        user,
                        announce: false,
                        ..
                    }
                    | ModAction::Ban {
                        user,
                        announce: false,
                        ..
                    }
                    | ModAction::Unmute { user, .. }
                    | ModAction::Unban { user, .. },
                ..
            } => Some(user),
            _ => None,
        }
    }

    /// The user whose connections leave the room (kick, ban).
    pub fn removes(&self) -> Option<&str> {
        match self {
            Effect::Action {
                action: ModAction::Kick { user, .. } | ModAction::Ban { user, .. },
                ..
            } => Some(user),
            _ => None,
        }
    }
}

/// Whether `viewer` may see an event whose effect is `effect`: what is
/// done to one pupil is theirs and the adults' business, not the class's.
pub fn shown_to(effect: Option<&Effect>, viewer: &UserInfo) -> bool {
    match effect.and_then(Effect::personal) {
        Some(target) => {
            target == viewer.id
                || matches!(viewer.role, protocol::Role::Teacher | protocol::Role::Staff)
        }
        None => true,
    }
}

/// The tombstone of an event linked to a redacted one (`KindState::linked`):
/// a forum post's edit, a diary entry's later version. Its envelope, its
/// text gone.
pub fn edit_tombstone(edit: &[u8], by: &UserInfo, reason: Option<&str>) -> Option<Bytes> {
    let Ok(protocol::ServerFrame::Event(mut event)) = protocol::decode_server_frame(edit) else {
        return None;
    };
    event.body = match event.body {
        Body::Edit { target, thread, .. } => Body::Redacted {
            by: by.clone(),
            reason: reason.map(str::to_owned),
            thread: Some(thread),
            edit_of: Some(target),
        },
        // A kind's event that goes with the redacted one (a later version
        // of a diary entry, its publication): a plain tombstone.
        Body::Kind(_) => Body::Redacted {
            by: by.clone(),
            reason: reason.map(str::to_owned),
            thread: None,
            edit_of: None,
        },
        _ => return None,
    };
    Some(protocol::event(&event))
}
