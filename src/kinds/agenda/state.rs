//! The agenda's items, as of the last committed event: every item with
//! its versions (the first `agenda_item`, then each change), and whether
//! it was cancelled. Derived from the room's events only, like a forum's
//! index: rebuilt on load, updated by every committed event.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::effect::Effect;
use crate::protocol::{Body, Event, UserInfo};
use crate::room::{Chore, Commit, KindState};

use super::{CANCEL, ITEM};

/// What an `agenda_item` event says (the body's fields besides `kind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemFields {
    /// Absent: a new item (its id is the event's offset). Present: a new
    /// version of that item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<u64>,
    pub title: String,
    /// Milliseconds since the Unix epoch.
    pub starts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_day: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

/// What an `agenda_cancel` event says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelFields {
    pub item: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One item as an `agenda` reply gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgendaItem {
    /// The item's id: the offset of its first event.
    pub item: u64,
    pub title: String,
    pub starts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends: Option<u64>,
    #[serde(default)]
    pub all_day: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// Who wrote the version shown, and when (ms).
    pub by: UserInfo,
    pub ts: u64,
    /// Offset of the version shown (the item's id when never changed).
    pub version: u64,
    #[serde(default)]
    pub cancelled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone)]
struct Version {
    offset: u64,
    fields: ItemFields,
    by: UserInfo,
    ts: u64,
}

#[derive(Debug, Clone, Default)]
struct Item {
    /// Oldest first; the last one is shown.
    versions: Vec<Version>,
    /// The offset of the cancellation and its reason.
    cancelled: Option<(u64, Option<String>)>,
}

/// The agenda's items by id.
#[derive(Debug, Default)]
pub struct Agenda {
    items: BTreeMap<u64, Item>,
}

impl Agenda {
    /// The agenda of the stored `events`, in offset order (tombstones and
    /// events that do not decode are skipped).
    pub fn rebuild<'a>(events: impl IntoIterator<Item = &'a Event>) -> Agenda {
        let mut agenda = Agenda::default();
        for event in events {
            agenda.apply_event(event);
        }
        agenda
    }

    /// Folds one event in.
    pub fn apply_event(&mut self, event: &Event) {
        let Body::Kind(body) = &event.body else {
            return;
        };
        match body.kind.as_str() {
            ITEM => {
                let Ok(fields) = body.decode::<ItemFields>() else {
                    return;
                };
                // A change whose first version is gone (retention removed
                // it, or it was redacted) stands for the item.
                let id = fields.item.unwrap_or(event.offset);
                self.items.entry(id).or_default().versions.push(Version {
                    offset: event.offset,
                    fields,
                    by: event.from.clone(),
                    ts: event.ts,
                });
            }
            CANCEL => {
                let Ok(fields) = body.decode::<CancelFields>() else {
                    return;
                };
                if let Some(item) = self.items.get_mut(&fields.item) {
                    item.cancelled = Some((event.offset, fields.reason));
                }
            }
            _ => {}
        }
    }

    /// A redacted event (a moderator's, or an erasure's) is gone: the
    /// version it was, or the cancellation.
    fn redact(&mut self, target: u64) {
        for item in self.items.values_mut() {
            item.versions.retain(|v| v.offset != target);
            if item.cancelled.as_ref().is_some_and(|(o, _)| *o == target) {
                item.cancelled = None;
            }
        }
        self.items.retain(|_, item| !item.versions.is_empty());
    }

    /// Whether `item` exists (cancelled or not).
    pub fn has(&self, item: u64) -> bool {
        self.items.contains_key(&item)
    }

    /// Whether `item` is cancelled.
    pub fn is_cancelled(&self, item: u64) -> bool {
        self.items.get(&item).is_some_and(|i| i.cancelled.is_some())
    }

    /// Items overlapping `[from, to)`, by start then id, at most `limit`;
    /// and whether more matched.
    pub fn between(&self, from: u64, to: u64, limit: usize) -> (Vec<AgendaItem>, bool) {
        let mut found: Vec<AgendaItem> = self
            .items
            .iter()
            .filter_map(|(id, item)| {
                let shown = item.versions.last()?;
                let f = &shown.fields;
                let end = f.ends.unwrap_or(f.starts);
                (f.starts < to && end >= from).then(|| AgendaItem {
                    item: *id,
                    title: f.title.clone(),
                    starts: f.starts,
                    ends: f.ends,
                    all_day: f.all_day,
                    place: f.place.clone(),
                    details: f.details.clone(),
                    by: shown.by.clone(),
                    ts: shown.ts,
                    version: shown.offset,
                    cancelled: item.cancelled.is_some(),
                    reason: item.cancelled.as_ref().and_then(|(_, r)| r.clone()),
                })
            })
            .collect();
        found.sort_by_key(|i| (i.starts, i.item));
        let more = found.len() > limit;
        found.truncate(limit);
        (found, more)
    }
}

impl KindState for Agenda {
    fn apply(&mut self, commit: &Commit<'_>, _chores: &mut Vec<Chore>) {
        if let Some(Effect::Redact { target, .. }) = commit.effect {
            self.redact(*target);
            return;
        }
        // Only the kind's own events change the agenda: decoding the frame
        // costs a few microseconds, once per event of an agenda room.
        if let Ok(crate::protocol::ServerFrame::Event(event)) =
            crate::protocol::decode_server_frame(commit.frame)
        {
            self.apply_event(&event);
        }
    }
}
