//! A user's feed, derived from their inbox room's events: the
//! notifications (newest kept in memory), what they marked read, their
//! quiet hours, and what was released after quiet hours.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::{JOINED, NOTIFY, QUIET, RELEASE, SEEN, SENT};
use crate::protocol::{Body, Event, KindBody, UserInfo};
use crate::quiet::QuietHours;
use crate::room::{Chore, Commit, Due, KindState};

/// Notifications a loaded feed keeps (older ones are still stored, until
/// retention, and are counted as read).
pub const MAX_KEPT: usize = 1_000;
/// A release asked for and not back yet is asked again after this long.
const REQUEST_AGAIN_MS: u64 = 30_000;

/// A `notify` event's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyFields {
    /// What it is about: `dm`, `announcement`, `homework`, `reply`,
    /// `mention`, `note`.
    pub what: String,
    /// The room it is about.
    pub room: String,
    /// The event it is about, in that room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
    /// Who it comes from (the event's `from` is the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<UserInfo>,
    /// Held by quiet hours until then (ms): not in the room's stream, only
    /// in `feed`, until a `feed_release` says it is time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_until: Option<u64>,
    /// Pushed through quiet hours (an urgent staff announcement; audited).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub urgent: bool,
}

/// A `feed_seen` event's fields: everything through inbox offset
/// `through` is read (of `room` only, when given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    pub through: u64,
}

/// A `quiet_hours` event's fields: the user's own hours, or `None` for
/// the school's default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietFields {
    #[serde(default)]
    pub hours: Option<QuietHours>,
}

/// A `feed_release` event's fields: notifications held until `until` or
/// earlier may be shown now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseFields {
    pub until: u64,
    pub count: u32,
}

/// A `dm_joined` event's fields: the user is in conversation `room`, with
/// these members (all of them, the user included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinedFields {
    pub room: String,
    pub members: Vec<UserInfo>,
}

/// An `announce_sent` event's fields: the user sent announcement `room`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentFields {
    pub room: String,
    pub title: String,
    pub recipients: u32,
}

/// One of the user's conversations, as `conversations` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    pub room: String,
    pub members: Vec<UserInfo>,
    /// The latest activity the feed knows of (ms).
    pub last: u64,
    pub unread: u32,
}

/// One notification, as `feed` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Its offset in the inbox room.
    pub offset: u64,
    pub ts: u64,
    #[serde(flatten)]
    pub fields: NotifyFields,
    pub read: bool,
}

/// The feed of one user.
#[derive(Default)]
pub struct Feed {
    items: BTreeMap<u64, (u64, NotifyFields)>,
    seen_all: u64,
    seen: HashMap<String, u64>,
    quiet: Option<QuietHours>,
    released: u64,
    requested: Option<(u64, u64)>,
    /// Conversation room → (when joined or last changed, members, the
    /// event's offset).
    conversations: HashMap<String, (u64, Vec<UserInfo>, u64)>,
    /// Announcements sent: (room, title, ts, recipients), oldest first.
    sent: Vec<(String, String, u64, u32)>,
}

impl Feed {
    pub fn rebuild(events: &[Event]) -> Feed {
        let mut feed = Feed::default();
        for event in events {
            feed.apply_event(event);
        }
        feed
    }

    fn apply_event(&mut self, event: &Event) {
        let Body::Kind(body) = &event.body else {
            return;
        };
        match body.kind.as_str() {
            NOTIFY => {
                if let Ok(fields) = body.decode::<NotifyFields>() {
                    self.items.insert(event.offset, (event.ts, fields));
                    while self.items.len() > MAX_KEPT {
                        if let Some((&first, _)) = self.items.iter().next() {
                            self.items.remove(&first);
                            self.seen_all = self.seen_all.max(first);
                        }
                    }
                }
            }
            SEEN => {
                if let Ok(seen) = body.decode::<SeenFields>() {
                    match seen.room {
                        Some(room) => {
                            let through = self.seen.entry(room).or_default();
                            *through = (*through).max(seen.through);
                        }
                        None => self.seen_all = self.seen_all.max(seen.through),
                    }
                }
            }
            QUIET => {
                if let Ok(quiet) = body.decode::<QuietFields>() {
                    self.quiet = quiet.hours;
                    // Whoever changes their quiet hours is there: what
                    // was held is theirs to read now (their client reads
                    // the feed again), not held by the old hours.
                    self.released = self
                        .items
                        .values()
                        .filter_map(|(_, f)| f.hold_until)
                        .fold(self.released, u64::max);
                    self.requested = None;
                }
            }
            SENT => {
                if let Ok(sent) = body.decode::<SentFields>() {
                    self.sent
                        .push((sent.room, sent.title, event.ts, sent.recipients));
                    if self.sent.len() > MAX_KEPT {
                        self.sent.remove(0);
                    }
                }
            }
            JOINED => {
                if let Ok(joined) = body.decode::<JoinedFields>() {
                    self.conversations
                        .insert(joined.room, (event.ts, joined.members, event.offset));
                }
            }
            RELEASE => {
                if let Ok(release) = body.decode::<ReleaseFields>() {
                    self.released = self.released.max(release.until);
                    self.requested = None;
                }
            }
            _ => {}
        }
    }

    /// The user's own quiet hours (`None`: the school's default).
    pub fn quiet(&self) -> Option<&QuietHours> {
        self.quiet.as_ref()
    }

    fn is_read(&self, offset: u64, room: &str) -> bool {
        offset <= self.seen_all || self.seen.get(room).is_some_and(|t| offset <= *t)
    }

    /// Up to `limit` notifications before inbox offset `before`, newest
    /// first, and whether there are more.
    pub fn page(&self, before: Option<u64>, limit: usize) -> (Vec<Item>, bool) {
        let mut items = Vec::new();
        let range = self.items.range(..before.unwrap_or(u64::MAX));
        for (&offset, (ts, fields)) in range.rev() {
            if items.len() == limit {
                return (items, true);
            }
            let mut fields = fields.clone();
            // Released: no longer held, whatever it said when it came.
            if fields.hold_until.is_some_and(|u| u <= self.released) {
                fields.hold_until = None;
            }
            items.push(Item {
                offset,
                ts: *ts,
                read: self.is_read(offset, &fields.room),
                fields,
            });
        }
        (items, false)
    }

    /// Unread notifications per room they are about.
    pub fn unread(&self) -> BTreeMap<String, u32> {
        let mut unread = BTreeMap::new();
        for (&offset, (_, fields)) in &self.items {
            if !self.is_read(offset, &fields.room) {
                *unread.entry(fields.room.clone()).or_default() += 1;
            }
        }
        unread
    }

    /// The announcements the user sent, latest first.
    pub fn sent(&self) -> Vec<(String, String, u64, u32)> {
        self.sent.iter().rev().cloned().collect()
    }

    /// The user's conversations, latest activity first.
    pub fn conversations(&self) -> Vec<Conversation> {
        let unread = self.unread();
        let mut last: HashMap<&str, u64> = HashMap::new();
        for (ts, fields) in self.items.values() {
            let entry = last.entry(fields.room.as_str()).or_default();
            *entry = (*entry).max(*ts);
        }
        let mut list: Vec<Conversation> = self
            .conversations
            .iter()
            .map(|(room, (since, members, _))| Conversation {
                room: room.clone(),
                members: members.clone(),
                last: last.get(room.as_str()).copied().unwrap_or(0).max(*since),
                unread: unread.get(room).copied().unwrap_or(0),
            })
            .collect();
        list.sort_by(|a, b| b.last.cmp(&a.last).then_with(|| a.room.cmp(&b.room)));
        list
    }

    /// The latest notification's offset (what "mark all read" covers).
    pub fn last(&self) -> u64 {
        self.items.keys().next_back().copied().unwrap_or(0)
    }

    /// Held notifications not released yet: (earliest end, latest end due
    /// at `now`, how many are due at `now`).
    fn held(&self, now: u64) -> (Option<u64>, u64, u32) {
        let mut earliest = None;
        let (mut latest_due, mut count) = (0, 0);
        for (_, fields) in self.items.values() {
            let Some(until) = fields.hold_until else {
                continue;
            };
            if until <= self.released || until >= crate::quiet::NEVER {
                continue;
            }
            earliest = Some(earliest.map_or(until, |e: u64| e.min(until)));
            if until <= now {
                latest_due = latest_due.max(until);
                count += 1;
            }
        }
        (earliest, latest_due, count)
    }
}

impl KindState for Feed {
    fn apply(&mut self, commit: &Commit<'_>, _chores: &mut Vec<Chore>) {
        // A notification redacted (its sender's erasure, or the feed's
        // owner's) leaves the feed.
        if let Some(crate::effect::Effect::Redact { target, .. }) = commit.effect {
            self.items.remove(target);
            self.conversations
                .retain(|_, (_, _, offset)| offset != target);
            return;
        }
        if let Ok(crate::protocol::ServerFrame::Event(event)) =
            crate::protocol::decode_server_frame(commit.frame)
        {
            self.apply_event(&event);
        }
    }

    fn next_due(&self) -> Option<u64> {
        let (earliest, _, _) = self.held(0);
        let earliest = earliest?;
        Some(match self.requested {
            Some((_, asked)) => earliest.max(asked + REQUEST_AGAIN_MS),
            None => earliest,
        })
    }

    /// When quiet hours end, one `feed_release` for what they held: the
    /// user's connections are told, and read their feed again.
    fn take_due(&mut self, now: u64) -> Vec<Due> {
        let (_, until, count) = self.held(now);
        if count == 0 {
            return Vec::new();
        }
        if self
            .requested
            .is_some_and(|(u, asked)| u == until && asked + REQUEST_AGAIN_MS > now)
        {
            return Vec::new();
        }
        let Ok(body) = KindBody::new(RELEASE, &ReleaseFields { until, count }) else {
            return Vec::new();
        };
        self.requested = Some((until, now));
        vec![Due {
            from: super::system(),
            body: Body::Kind(body),
            key: format!("release-{until}"),
        }]
    }
}
