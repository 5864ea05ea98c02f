//! A class's diary as of the last committed event: every entry with its
//! versions, whether and when it is published, and the pupils' done marks;
//! indexed by day, so "due this week" reads a few entries, not the year.
//! Derived from the room's events only (rebuilt on
//! load, updated by every committed event), like the agenda's items.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::effect::Effect;
use crate::protocol::{Body, Event, KindBody, UserInfo};
use crate::room::{Chore, Commit, Due, KindState};

use super::{DONE, ENTRY, PUBLISH};

/// A lesson record or a homework item. On the wire a string (read as a
/// string, not as a serde enum: `rmpv` reads enums only as maps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum What {
    /// What was done in class on `date`.
    Lesson,
    /// Work given on `date`, to do for `due`.
    Homework,
}

impl From<What> for &'static str {
    fn from(what: What) -> &'static str {
        match what {
            What::Lesson => "lesson",
            What::Homework => "homework",
        }
    }
}

impl TryFrom<String> for What {
    type Error = String;

    fn try_from(s: String) -> Result<What, String> {
        match s.as_str() {
            "lesson" => Ok(What::Lesson),
            "homework" => Ok(What::Homework),
            _ => Err(format!("what is lesson or homework, not {s:?}")),
        }
    }
}

/// What a `homework_entry` event says (and a `homework_publish`, which
/// repeats the version it publishes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryFields {
    /// Absent: a new entry (its id is the event's offset). Present: a new
    /// version of that entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<u64>,
    pub what: What,
    pub subject: String,
    pub text: String,
    /// The lesson's day, or the day the homework was given.
    pub date: NaiveDate,
    /// Homework: the day it is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<NaiveDate>,
    /// Homework: the teacher's estimate of the time it takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// Scheduled: shown to its author and staff only until then (ms since
    /// the Unix epoch); always later than the event's `ts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_at: Option<u64>,
    /// In a `homework_publish` event: the offset of the version published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

impl EntryFields {
    /// The day the entry is listed under: a lesson's day, homework's due
    /// day.
    pub fn day(&self) -> NaiveDate {
        match self.what {
            What::Lesson => self.date,
            What::Homework => self.due.unwrap_or(self.date),
        }
    }
}

/// What a `homework_done` event says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneFields {
    pub entry: u64,
    pub done: bool,
}

#[derive(Debug, Clone)]
struct Version {
    offset: u64,
    fields: EntryFields,
    by: UserInfo,
    ts: u64,
}

#[derive(Debug, Clone, Default)]
struct Entry {
    /// Oldest first; the last one is shown.
    versions: Vec<Version>,
    /// Offsets of the `homework_publish` events, with the version each
    /// published.
    publications: Vec<(u64, u64)>,
    /// Pupils who marked it done: id → (offset of the mark, who).
    done: BTreeMap<String, (u64, UserInfo)>,
    /// A publication of this version was handed to the hub at this time
    /// (ms) and has not come back committed yet.
    requested: Option<(u64, u64)>,
}

impl Entry {
    fn latest(&self) -> Option<&Version> {
        self.versions.last()
    }

    /// When the latest version becomes public, if it is scheduled.
    fn publish_at(&self) -> Option<u64> {
        let latest = self.latest()?;
        let at = latest.fields.publish_at?;
        // Published already (the publication event of this version, or of
        // a later one, is in).
        if self.publications.iter().any(|(_, v)| *v >= latest.offset) {
            return None;
        }
        Some(at)
    }
}

/// An entry as the diary's replies give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiaryEntry {
    /// The entry's id: the offset of its first event.
    pub entry: u64,
    pub what: What,
    pub subject: String,
    pub text: String,
    pub date: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// Who wrote the version shown, and when (ms).
    pub by: UserInfo,
    pub ts: u64,
    /// Who wrote the first version: they (and staff) write new ones.
    pub author: UserInfo,
    /// Offset of the version shown, and how many versions there are.
    pub version: u64,
    pub versions: u32,
    /// Scheduled and not yet public (its author and staff only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_at: Option<u64>,
    /// A pupil's own mark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<bool>,
    /// A parent: which of their children marked it done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_by: Option<Vec<String>>,
    /// Teachers and staff: how many pupils marked it done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_count: Option<u32>,
    /// Teachers and staff, where the school shows names: who.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_names: Option<Vec<UserInfo>>,
}

/// Who asks, for what the diary shows them.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    pub user: &'a UserInfo,
    /// A parent's children (ids).
    pub children: &'a [String],
    /// Sees scheduled entries of others and every mark's count (staff).
    pub staff: bool,
    /// Sees counts of done marks (teachers of the class, staff).
    pub counts: bool,
    /// Sees who marked done (counts, and the school shows names).
    pub names: bool,
}

/// One day's load: homework due that day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayLoad {
    pub date: NaiveDate,
    pub items: u32,
    /// The sum of the items' estimates (items without one count 0).
    pub minutes: u32,
    /// Items due that day without an estimate.
    pub unestimated: u32,
}

/// How long a publication handed to the hub may take to come back
/// committed before it is asked again (a node that lost Redis, say).
const REQUEST_AGAIN_MS: u64 = 30_000;

/// The diary's entries by id, and by day.
#[derive(Debug, Default)]
pub struct Diary {
    entries: BTreeMap<u64, Entry>,
    /// `(day, entry)` of the latest version of every entry.
    by_day: BTreeSet<(NaiveDate, u64)>,
    /// Which entry each event of the diary belongs to (for redactions).
    owner: HashMap<u64, u64>,
}

impl Diary {
    /// The diary of the stored `events`, in offset order (tombstones and
    /// events that do not decode are skipped).
    pub fn rebuild<'a>(events: impl IntoIterator<Item = &'a Event>) -> Diary {
        let mut diary = Diary::default();
        for event in events {
            diary.apply_event(event);
        }
        diary
    }

    fn reindex(&mut self, id: u64, before: Option<NaiveDate>) {
        if let Some(day) = before {
            self.by_day.remove(&(day, id));
        }
        if let Some(latest) = self.entries.get(&id).and_then(Entry::latest) {
            self.by_day.insert((latest.fields.day(), id));
        }
    }

    fn day_of(&self, id: u64) -> Option<NaiveDate> {
        self.entries
            .get(&id)
            .and_then(Entry::latest)
            .map(|v| v.fields.day())
    }

    /// Folds one event in.
    pub fn apply_event(&mut self, event: &Event) {
        let Body::Kind(body) = &event.body else {
            return;
        };
        match body.kind.as_str() {
            ENTRY => {
                let Ok(fields) = body.decode::<EntryFields>() else {
                    return;
                };
                // A change whose first version is gone (redacted) stands
                // for the entry.
                let id = fields.entry.unwrap_or(event.offset);
                let before = self.day_of(id);
                let entry = self.entries.entry(id).or_default();
                // Most entries keep one version: grow by one, not by
                // four (measured: 1.5 KiB an entry otherwise, see
                // `benches/diary.rs`).
                entry.versions.reserve_exact(1);
                entry.versions.push(Version {
                    offset: event.offset,
                    fields,
                    by: event.from.clone(),
                    ts: event.ts,
                });
                entry.requested = None;
                self.owner.insert(event.offset, id);
                self.reindex(id, before);
            }
            PUBLISH => {
                let Ok(fields) = body.decode::<EntryFields>() else {
                    return;
                };
                let (Some(id), Some(version)) = (fields.entry, fields.version) else {
                    return;
                };
                if let Some(entry) = self.entries.get_mut(&id) {
                    entry.publications.reserve_exact(1);
                    entry.publications.push((event.offset, version));
                    entry.requested = None;
                    self.owner.insert(event.offset, id);
                }
            }
            DONE => {
                let Ok(fields) = body.decode::<DoneFields>() else {
                    return;
                };
                if let Some(entry) = self.entries.get_mut(&fields.entry) {
                    if fields.done {
                        entry
                            .done
                            .insert(event.from.id.clone(), (event.offset, event.from.clone()));
                    } else {
                        entry.done.remove(&event.from.id);
                    }
                    self.owner.insert(event.offset, fields.entry);
                }
            }
            _ => {}
        }
    }

    /// A redacted event is gone: the entry's first event (the whole
    /// entry: its versions and publications go with it, `linked`), a later
    /// version, a publication, or a mark. What is left is what a reload of
    /// the tombstones gives: the room's history keeps the tombstones, the
    /// listings forget the entry.
    fn redact(&mut self, target: u64) {
        let Some(id) = self.owner.remove(&target) else {
            return;
        };
        let before = self.day_of(id);
        if target == id {
            self.entries.remove(&id);
            self.owner.retain(|_, e| *e != id);
            self.reindex(id, before);
            return;
        }
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        entry.versions.retain(|v| v.offset != target);
        entry.publications.retain(|(o, _)| *o != target);
        entry.done.retain(|_, (o, _)| *o != target);
        if entry.versions.is_empty() {
            self.entries.remove(&id);
            self.owner.retain(|_, e| *e != id);
        }
        self.reindex(id, before);
    }

    /// Entry `id`'s first author, and what it is.
    pub fn entry(&self, id: u64) -> Option<(&UserInfo, What)> {
        let entry = self.entries.get(&id)?;
        let first = entry.versions.first()?;
        Some((&first.by, entry.latest()?.fields.what))
    }

    /// Whether the entry is scheduled and not yet public at `now`.
    pub fn scheduled(&self, id: u64, now: u64) -> bool {
        self.entries
            .get(&id)
            .and_then(Entry::publish_at)
            .is_some_and(|at| at > now)
    }

    /// Whether `reader` sees entry `id` at `now`: its author and staff
    /// always, others once it is public.
    fn visible(entry: &Entry, reader: &Reader<'_>, now: u64) -> bool {
        let Some(first) = entry.versions.first() else {
            return false;
        };
        reader.staff
            || first.by.id == reader.user.id
            || entry.latest().is_some_and(|l| l.by.id == reader.user.id)
            || entry.publish_at().is_none_or(|at| at <= now)
    }

    /// Whether `reader` sees entry `id` at `now`.
    pub fn sees(&self, id: u64, reader: &Reader<'_>, now: u64) -> bool {
        self.entries
            .get(&id)
            .is_some_and(|e| Diary::visible(e, reader, now))
    }

    fn show(id: u64, entry: &Entry, reader: &Reader<'_>, now: u64) -> Option<DiaryEntry> {
        let latest = entry.latest()?;
        let f = &latest.fields;
        let pupil_mark = matches!(reader.user.role, crate::protocol::Role::Student)
            .then(|| entry.done.contains_key(&reader.user.id));
        let parent_marks = matches!(reader.user.role, crate::protocol::Role::Parent).then(|| {
            reader
                .children
                .iter()
                .filter(|c| entry.done.contains_key(*c))
                .cloned()
                .collect()
        });
        let is_homework = f.what == What::Homework;
        Some(DiaryEntry {
            entry: id,
            what: f.what,
            subject: f.subject.clone(),
            text: f.text.clone(),
            date: f.date,
            due: f.due,
            minutes: f.minutes,
            links: f.links.clone(),
            by: latest.by.clone(),
            ts: latest.ts,
            author: entry
                .versions
                .first()
                .map_or_else(|| latest.by.clone(), |v| v.by.clone()),
            version: latest.offset,
            versions: u32::try_from(entry.versions.len()).unwrap_or(u32::MAX),
            publish_at: entry.publish_at().filter(|at| *at > now),
            done: pupil_mark.filter(|_| is_homework),
            done_by: parent_marks.filter(|_| is_homework),
            done_count: (reader.counts && is_homework)
                .then(|| u32::try_from(entry.done.len()).unwrap_or(u32::MAX)),
            done_names: (reader.names && is_homework)
                .then(|| entry.done.values().map(|(_, u)| u.clone()).collect()),
        })
    }

    /// The entries `reader` sees at `now` whose day (a lesson's day,
    /// homework's due day) is in `[from, to]`, by day then id, at most
    /// `limit`; and whether more matched. `homework_only` leaves lessons
    /// out.
    pub fn between(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        reader: &Reader<'_>,
        now: u64,
        homework_only: bool,
        limit: usize,
    ) -> (Vec<DiaryEntry>, bool) {
        let mut found = Vec::new();
        for (_, id) in self.by_day.range((from, 0)..=(to, u64::MAX)) {
            let Some(entry) = self.entries.get(id) else {
                continue;
            };
            if !Diary::visible(entry, reader, now) {
                continue;
            }
            if homework_only
                && entry
                    .latest()
                    .is_some_and(|l| l.fields.what != What::Homework)
            {
                continue;
            }
            if found.len() == limit {
                return (found, true);
            }
            if let Some(shown) = Diary::show(*id, entry, reader, now) {
                found.push(shown);
            }
        }
        (found, false)
    }

    /// Homework due each day of `[from, to]` that `reader` sees at `now`
    /// (a teacher writing an item sees every item, scheduled ones
    /// included, as staff do; pupils and parents what is public), days
    /// with nothing due left out.
    pub fn load(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        reader: &Reader<'_>,
        now: u64,
    ) -> Vec<DayLoad> {
        let mut days: Vec<DayLoad> = Vec::new();
        for (day, id) in self.by_day.range((from, 0)..=(to, u64::MAX)) {
            let Some(entry) = self.entries.get(id) else {
                continue;
            };
            let Some(latest) = entry.latest() else {
                continue;
            };
            if latest.fields.what != What::Homework
                || !(reader.counts || Diary::visible(entry, reader, now))
            {
                continue;
            }
            if days.last().is_none_or(|d| d.date != *day) {
                days.push(DayLoad {
                    date: *day,
                    items: 0,
                    minutes: 0,
                    unestimated: 0,
                });
            }
            if let Some(d) = days.last_mut() {
                d.items += 1;
                match latest.fields.minutes {
                    Some(m) => d.minutes = d.minutes.saturating_add(m),
                    None => d.unestimated += 1,
                }
            }
        }
        days
    }

    /// Entries in the diary.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl KindState for Diary {
    fn apply(&mut self, commit: &Commit<'_>, _chores: &mut Vec<Chore>) {
        if let Some(Effect::Redact { target, .. }) = commit.effect {
            self.redact(*target);
            return;
        }
        if let Ok(crate::protocol::ServerFrame::Event(event)) =
            crate::protocol::decode_server_frame(commit.frame)
        {
            self.apply_event(&event);
        }
    }

    /// Deleting an entry (redacting its first event) takes every version
    /// and publication with it: each carries the entry's text.
    fn linked(&self, target: u64) -> Vec<u64> {
        match self.entries.get(&target) {
            Some(entry) => entry
                .versions
                .iter()
                .map(|v| v.offset)
                .chain(entry.publications.iter().map(|(o, _)| *o))
                .filter(|o| *o != target)
                .collect(),
            // A later version: the publication that repeats it.
            None => self
                .owner
                .get(&target)
                .and_then(|id| self.entries.get(id))
                .map(|entry| {
                    entry
                        .publications
                        .iter()
                        .filter(|(_, v)| *v == target)
                        .map(|(o, _)| *o)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn next_due(&self) -> Option<u64> {
        self.entries
            .values()
            .filter_map(|e| {
                let at = e.publish_at()?;
                // Asked already: again only if it did not come back.
                Some(match e.requested {
                    Some((_, asked)) => at.max(asked + REQUEST_AGAIN_MS),
                    None => at,
                })
            })
            .min()
    }

    /// The scheduled entries whose time has come, published as their
    /// latest version's author: the publication repeats that version, so
    /// that those who could not see it get it in one event.
    fn take_due(&mut self, now: u64) -> Vec<Due> {
        let mut due = Vec::new();
        for (id, entry) in &mut self.entries {
            let Some(at) = entry.publish_at() else {
                continue;
            };
            let Some(latest) = entry.versions.last() else {
                continue;
            };
            let again = entry
                .requested
                .is_none_or(|(v, asked)| v != latest.offset || asked + REQUEST_AGAIN_MS <= now);
            if at > now || !again {
                continue;
            }
            let fields = EntryFields {
                entry: Some(*id),
                publish_at: None,
                version: Some(latest.offset),
                ..latest.fields.clone()
            };
            let Ok(body) = KindBody::new(PUBLISH, &fields) else {
                continue;
            };
            entry.requested = Some((latest.offset, now));
            due.push(Due {
                from: latest.by.clone(),
                body: Body::Kind(body),
                key: format!("publish-{id}-{}", latest.offset),
            });
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> EntryFields {
        EntryFields {
            entry: None,
            what: What::Homework,
            subject: "Maths".into(),
            text: "Exercices".into(),
            date: NaiveDate::from_ymd_opt(2026, 12, 7).unwrap_or_default(),
            due: NaiveDate::from_ymd_opt(2026, 12, 10),
            minutes: Some(30),
            links: vec![],
            publish_at: None,
            version: None,
        }
    }

    #[test]
    fn entry_fields_survive_the_wire() {
        let body = KindBody::new(ENTRY, &fields()).map_err(|e| e.to_string());
        let body = body.as_ref().map_err(String::as_str);
        assert_eq!(
            body.and_then(|b| b.decode::<EntryFields>().map_err(|_| "decode")),
            Ok(fields())
        );
    }
}
