//! The diary's requests: writing entries and marks (`homework_write`,
//! `homework_done`, posted like messages and acked once durable), reading
//! a class's diary by day (`homework`), its load (`homework_load`), what
//! is due for a pupil or a parent across their classes (`homework_due`),
//! and the calendar feed's secret address (`calendar_feed`,
//! `calendar_feed_revoke`).

use std::sync::Arc;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::feed;
use super::state::{DayLoad, Diary, DiaryEntry, DoneFields, EntryFields, Reader, What};
use super::{diary_of, DONE, ENTRY, NAME};
use crate::kinds::common;
use crate::protocol::{self, ErrorCode, Role, UserInfo};
use crate::room::policy::Action;
use crate::room::Room;
use crate::session::kind::{Handled, KindRequest};
use crate::session::{forbidden, Refusal, Session};

pub(super) const TYPES: &[&str] = &[
    "homework_write",
    "homework_done",
    "homework",
    "homework_load",
    "homework_due",
    "calendar_feed",
    "calendar_feed_revoke",
];

/// Longest subject, in bytes.
pub const MAX_SUBJECT_LEN: usize = 100;
/// Links per entry, and the longest link, in bytes.
pub const MAX_LINKS: usize = 10;
pub const MAX_LINK_LEN: usize = 500;
/// Longest estimate: 10 hours.
pub const MAX_MINUTES: u32 = 600;
/// Homework is due at most this many days after it is given.
pub const MAX_DUE_DAYS: i64 = 366;
/// Widest range of `homework` and `homework_due`, in days (a school year
/// and its margins), and of `homework_load` (two months).
pub const MAX_RANGE_DAYS: i64 = 400;
pub const MAX_LOAD_DAYS: i64 = 62;
/// How far ahead an entry may be scheduled: a school year.
pub const MAX_SCHEDULE_MS: u64 = 400 * 24 * 3600 * 1000;
/// Entries per reply: by default, and at most.
pub const DEFAULT_ENTRIES: usize = 200;
pub const MAX_ENTRIES: usize = 500;
/// Longest idempotency key, in bytes (as for `post`).
const MAX_KEY_LEN: usize = 64;

/// The diary's requests, as a client sends them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// A new entry, or (with `entry`) a new version of one.
    HomeworkWrite {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entry: Option<u64>,
        what: What,
        subject: String,
        text: String,
        date: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        minutes: Option<u32>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        links: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        publish_at: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// A pupil marks homework done, or not done.
    HomeworkDone {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        entry: u64,
        done: bool,
    },
    /// The entries of one diary whose day is in `[from, to]`.
    Homework {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        from: String,
        to: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Homework due each day of `[from, to]` in one diary.
    HomeworkLoad {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        from: String,
        to: String,
    },
    /// Homework due in `[from, to]` across the user's classes.
    HomeworkDue {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        from: String,
        to: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// The user's calendar feed address: the active one, or a new one
    /// when there is none or `new` is set (the last one then stops).
    CalendarFeed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        new: bool,
    },
    /// Stops the user's calendar feed.
    CalendarFeedRevoke {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
    },
}

/// The `homework` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HomeworkOk {
    pub room: String,
    pub entries: Vec<DiaryEntry>,
    pub more: bool,
}

/// The `homework_load` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadOk {
    pub room: String,
    pub days: Vec<DayLoad>,
}

/// One item of the `homework_due` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DueItem {
    pub room: String,
    pub class: String,
    #[serde(flatten)]
    pub entry: DiaryEntry,
    /// For a parent: which of their children it is for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildLabel>,
}

/// A child, as a parent's items name them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildLabel {
    pub id: String,
    pub name: String,
}

/// The `homework_due` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DueOk {
    pub items: Vec<DueItem>,
    pub more: bool,
}

/// The `calendar_feed` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedOk {
    /// The feed's path on this server (`/cal/…ics`).
    pub path: String,
    /// When the address stops working (ms since the Unix epoch).
    pub expires: u64,
}

/// The `calendar_feed_revoke` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevokeOk {
    /// Whether a feed was active.
    pub revoked: bool,
}

pub(super) async fn handle(s: &mut Session, request: KindRequest) -> Handled {
    let KindRequest::Frame { frame, .. } = request else {
        return Err(crate::session::kind::not_owned(NAME, request.type_name()));
    };
    let request: Request = protocol::decode_kind_request(&frame, TYPES)
        .map_err(|e| Refusal::new(e.code(), e.to_string()))?;
    match request {
        Request::HomeworkWrite {
            id,
            room,
            entry,
            what,
            subject,
            text,
            date,
            due,
            minutes,
            links,
            publish_at,
            key,
        } => {
            if key
                .as_ref()
                .is_some_and(|k| k.is_empty() || k.len() > MAX_KEY_LEN)
            {
                return Err(invalid(format!("key must be 1 to {MAX_KEY_LEN} bytes")));
            }
            let room = joined_diary(s, &room)?;
            if !s.allowed_in(&room, Action::Moderate) {
                return Err(forbidden(room.name(), Action::Post));
            }
            let now = (s.hub.clock)();
            if let Some(entry) = entry {
                // A time already past publishes at once: not a schedule.
                editable(s, &room, entry, publish_at.is_some_and(|at| at > now), now)?;
            }
            let fields = check_entry(
                s,
                NewEntry {
                    entry,
                    what,
                    subject,
                    text,
                    date,
                    due,
                    minutes,
                    links,
                    publish_at,
                },
                now,
            )?;
            // New homework, shown at once: its class's pupils and their
            // parents are told, through their feeds, once it is stored.
            // (A scheduled one is not announced when it is published.)
            let recipients = if fields.entry.is_none()
                && fields.what == What::Homework
                && fields.publish_at.is_none_or(|at| at <= now)
            {
                class_and_parents(s, room.name().class())
            } else {
                Vec::new()
            };
            if recipients.is_empty() {
                return common::write(s, id, &room, ENTRY, &fields, key.as_deref()).await;
            }
            let posted =
                common::write_durable(s, id, &room, ENTRY, &fields, key.as_deref()).await?;
            let first_line = fields.text.lines().next().unwrap_or("").chars().take(120);
            let notice = crate::kinds::inbox::NotifyFields {
                what: "homework".to_owned(),
                room: room.name().to_string(),
                at: Some(posted.offset),
                title: format!("{} : {}", fields.subject, first_line.collect::<String>()),
                preview: fields.due.map(|d| format!("pour le {}", d.format("%d/%m"))),
                by: Some(s.user()?.clone()),
                hold_until: None,
                urgent: false,
            };
            let key = format!("homework-{}-{}", room.name().class(), posted.offset);
            crate::kinds::inbox::notify_many(s.hub.clone(), recipients, notice, key);
            Ok(Some(protocol::ok(id, &posted)))
        }
        Request::HomeworkDone {
            id,
            room,
            entry,
            done,
        } => {
            let room = joined_diary(s, &room)?;
            let user = s.user()?.clone();
            if user.role != Role::Student || !s.allowed_in(&room, Action::Post) {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    format!(
                        "only the class's pupils mark homework done in {}",
                        room.name()
                    ),
                ));
            }
            let now = (s.hub.clock)();
            let reader = reader(s, &room)?;
            let found = room
                .with_state(|diary: &mut Diary, _| {
                    diary
                        .entry(entry)
                        .map(|(_, what)| what)
                        .filter(|_| diary.sees(entry, &reader, now))
                })
                .flatten();
            match found {
                None => {
                    return Err(Refusal::new(
                        ErrorCode::UnknownTarget,
                        format!("no entry {entry} in {}", room.name()),
                    ))
                }
                Some(What::Lesson) => return Err(invalid("a lesson is not marked done")),
                Some(What::Homework) => {}
            }
            common::write(s, id, &room, DONE, &DoneFields { entry, done }, None).await
        }
        Request::Homework {
            id,
            room,
            from,
            to,
            limit,
        } => {
            let (from, to) = range(&from, &to, MAX_RANGE_DAYS)?;
            let limit = limit_of(limit)?;
            let (name, room) = open_diary(s, &room).await?;
            let reader = reader(s, &room)?;
            let now = (s.hub.clock)();
            let (entries, more) = room
                .with_state(|diary: &mut Diary, _| {
                    diary.between(from, to, &reader, now, false, limit)
                })
                .unwrap_or_default();
            // Left loaded: the hub's sweep unloads it once idle (within two
            // minutes). Families ask again the same evening, and loading a
            // year's diary from disk costs more than answering
            // (`benches/results/diary.md`).
            Ok(Some(protocol::ok(
                id,
                &HomeworkOk {
                    room: name,
                    entries,
                    more,
                },
            )))
        }
        Request::HomeworkLoad { id, room, from, to } => {
            let (from, to) = range(&from, &to, MAX_LOAD_DAYS)?;
            let (name, room) = open_diary(s, &room).await?;
            let reader = reader(s, &room)?;
            let now = (s.hub.clock)();
            let days = room
                .with_state(|diary: &mut Diary, _| diary.load(from, to, &reader, now))
                .unwrap_or_default();
            // Left loaded: the hub's sweep unloads it once idle (within two
            // minutes). Families ask again the same evening, and loading a
            // year's diary from disk costs more than answering
            // (`benches/results/diary.md`).
            Ok(Some(protocol::ok(id, &LoadOk { room: name, days })))
        }
        Request::HomeworkDue {
            id,
            from,
            to,
            limit,
        } => {
            let (from, to) = range(&from, &to, MAX_RANGE_DAYS)?;
            let limit = limit_of(limit)?;
            let (items, more) = due(s, from, to, limit).await?;
            Ok(Some(protocol::ok(id, &DueOk { items, more })))
        }
        Request::CalendarFeed { id, new } => {
            let claims = s.claims()?.clone();
            let hub = s.hub.clone();
            let now = (hub.clock)();
            let made = tokio::task::spawn_blocking(move || feed::address(&hub, &claims, now, new))
                .await
                .map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))?
                .map_err(|e| Refusal::new(e.code(), e.to_string()))?;
            Ok(Some(protocol::ok(id, &made)))
        }
        Request::CalendarFeedRevoke { id } => {
            let user = s.user()?.id.clone();
            let hub = s.hub.clone();
            let revoked = tokio::task::spawn_blocking(move || feed::revoke(&hub, &user))
                .await
                .map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))?
                .map_err(|e| Refusal::new(e.code(), e.to_string()))?;
            Ok(Some(protocol::ok(id, &RevokeOk { revoked })))
        }
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::InvalidField, message)
}

/// A `YYYY-MM-DD` day.
fn day(field: &str, value: &str) -> Result<NaiveDate, Refusal> {
    let parsed = NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| {
        invalid(format!(
            "{field} must be a day as YYYY-MM-DD, not {value:?}"
        ))
    })?;
    // Four-digit years only, as the format says (chrono also reads "+10000").
    if value.len() != 10 {
        return Err(invalid(format!("{field} must be a day as YYYY-MM-DD")));
    }
    Ok(parsed)
}

/// `[from, to]`, at most `max_days` days wide.
fn range(from: &str, to: &str, max_days: i64) -> Result<(NaiveDate, NaiveDate), Refusal> {
    let (from, to) = (day("from", from)?, day("to", to)?);
    let days = (to - from).num_days();
    if days < 0 || days >= max_days {
        return Err(invalid(format!(
            "to must be on or after from, at most {} days later",
            max_days - 1
        )));
    }
    Ok((from, to))
}

fn limit_of(limit: Option<u32>) -> Result<usize, Refusal> {
    match limit {
        None => Ok(DEFAULT_ENTRIES),
        Some(0) => Err(invalid("limit must be at least 1")),
        Some(n) => Ok((n as usize).min(MAX_ENTRIES)),
    }
}

/// The joined diary room `room`.
fn joined_diary(s: &mut Session, room: &str) -> Result<Arc<Room>, Refusal> {
    let room = s.joined_room(room)?;
    if room.name().kind().name() != NAME {
        return Err(invalid(format!("{} is not a diary", room.name())));
    }
    Ok(room)
}

/// The diary room `room`, loaded for reading (released by the caller).
async fn open_diary(s: &mut Session, room: &str) -> Result<(String, Arc<Room>), Refusal> {
    let (name, room) = s.open(room, Action::Read).await?;
    if name.kind().name() != NAME {
        s.release_unjoined(&room);
        return Err(invalid(format!("{name} is not a diary")));
    }
    s.refuse_banned(&room)?;
    Ok((name.to_string(), room))
}

/// What the user is shown of `room`'s diary.
fn reader<'a>(s: &'a Session, room: &Room) -> Result<Reader<'a>, Refusal> {
    let user = s.user()?;
    let staff = user.role == Role::Staff;
    let counts = staff || (user.role == Role::Teacher && s.is_moderator(room));
    Ok(Reader {
        user,
        children: s.children_ref(),
        staff,
        counts,
        names: counts && s.hub.config.homework_done_names,
    })
}

/// `unknown_target` unless `entry` is an entry of the diary the user
/// sees; `forbidden` unless they wrote it (or are staff); `invalid_field`
/// to schedule an entry already public.
fn editable(
    s: &Session,
    room: &Room,
    entry: u64,
    scheduling: bool,
    now: u64,
) -> Result<(), Refusal> {
    let reader = reader(s, room)?;
    let found = room
        .with_state(|diary: &mut Diary, _| {
            let author = diary.entry(entry).map(|(by, _)| by.id.clone())?;
            diary
                .sees(entry, &reader, now)
                .then(|| (author, diary.scheduled(entry, now)))
        })
        .flatten();
    let Some((author, scheduled)) = found else {
        return Err(Refusal::new(
            ErrorCode::UnknownTarget,
            format!("no entry {entry} in {}", room.name()),
        ));
    };
    if author != reader.user.id && !reader.staff {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            format!("entry {entry} is {author}'s: only its author (or staff) changes it"),
        ));
    }
    if scheduling && !scheduled {
        return Err(invalid(format!(
            "entry {entry} is public already: publish_at is for entries not yet shown"
        )));
    }
    Ok(())
}

/// An entry's fields as sent.
struct NewEntry {
    entry: Option<u64>,
    what: What,
    subject: String,
    text: String,
    date: String,
    due: Option<String>,
    minutes: Option<u32>,
    links: Vec<String>,
    publish_at: Option<u64>,
}

/// Checks an entry's fields against the bounds above.
fn check_entry(s: &Session, new: NewEntry, now: u64) -> Result<EntryFields, Refusal> {
    if new.subject.trim().is_empty() || new.subject.len() > MAX_SUBJECT_LEN {
        return Err(invalid(format!(
            "subject must be 1 to {MAX_SUBJECT_LEN} bytes"
        )));
    }
    s.check_text(&new.text)?;
    let date = day("date", &new.date)?;
    let due = new.due.as_deref().map(|d| day("due", d)).transpose()?;
    match new.what {
        What::Lesson => {
            if due.is_some() || new.minutes.is_some() {
                return Err(invalid("a lesson has no due day nor minutes"));
            }
        }
        What::Homework => {
            let Some(due) = due else {
                return Err(invalid("homework needs its due day"));
            };
            let days = (due - date).num_days();
            if !(0..=MAX_DUE_DAYS).contains(&days) {
                return Err(invalid(format!(
                    "due must be on or after date, at most {MAX_DUE_DAYS} days later"
                )));
            }
        }
    }
    if new.minutes.is_some_and(|m| m == 0 || m > MAX_MINUTES) {
        return Err(invalid(format!("minutes must be 1 to {MAX_MINUTES}")));
    }
    if new.links.len() > MAX_LINKS {
        return Err(invalid(format!("at most {MAX_LINKS} links")));
    }
    for link in &new.links {
        let ok = link.len() <= MAX_LINK_LEN
            && url::Url::parse(link).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        if !ok {
            return Err(invalid(format!(
                "links are http or https addresses of at most {MAX_LINK_LEN} bytes"
            )));
        }
    }
    // A time already past publishes at once.
    let publish_at = new.publish_at.filter(|at| *at > now);
    if publish_at.is_some_and(|at| at - now > MAX_SCHEDULE_MS) {
        return Err(invalid("publish_at is at most 400 days ahead"));
    }
    Ok(EntryFields {
        entry: new.entry,
        what: new.what,
        subject: new.subject,
        text: new.text,
        date,
        due,
        minutes: new.minutes,
        links: new.links,
        publish_at,
        version: None,
    })
}

/// Homework due in `[from, to]` in the diaries of the user's classes; for
/// a parent, each item labelled with the children it is for (a child
/// whose classes the token does not give counts as in each).
async fn due(
    s: &mut Session,
    from: NaiveDate,
    to: NaiveDate,
    limit: usize,
) -> Result<(Vec<DueItem>, bool), Refusal> {
    let claims = s.claims()?.clone();
    let now = (s.hub.clock)();
    let mut items = Vec::new();
    let mut more = false;
    for class in &claims.classes {
        let name = diary_of(class);
        let room = match s.open(&name, Action::Read).await {
            Ok((_, room)) => room,
            // No diary in that class yet (or none for this role).
            Err(r) if matches!(r.code, ErrorCode::UnknownRoom | ErrorCode::Forbidden) => continue,
            Err(r) => return Err(r),
        };
        if room.is_banned(&claims.sub) {
            s.release_unjoined(&room);
            continue;
        }
        let children: Vec<ChildLabel> = claims
            .children
            .iter()
            .filter(|c| c.in_class(class))
            .map(|c| ChildLabel {
                id: c.id.clone(),
                name: c.label().to_owned(),
            })
            .collect();
        let ids: Vec<String> = children.iter().map(|c| c.id.clone()).collect();
        let user: UserInfo = claims.user_info();
        let reader = Reader {
            user: &user,
            children: &ids,
            staff: false,
            counts: false,
            names: false,
        };
        let (found, cut) = room
            .with_state(|diary: &mut Diary, _| diary.between(from, to, &reader, now, true, limit))
            .unwrap_or_default();
        // Left loaded until the sweep finds it idle (see `homework`).
        more |= cut;
        items.extend(found.into_iter().map(|entry| DueItem {
            room: name.clone(),
            class: class.clone(),
            entry,
            children: children.clone(),
        }));
    }
    items.sort_by(|a, b| {
        (a.entry.due, &a.class, &a.entry.subject, a.entry.entry).cmp(&(
            b.entry.due,
            &b.class,
            &b.entry.subject,
            b.entry.entry,
        ))
    });
    if items.len() > limit {
        items.truncate(limit);
        more = true;
    }
    Ok((items, more))
}

/// The pupils of `class` (a class or group) and their parents, from the
/// school directory (nobody before its first sync).
fn class_and_parents(s: &Session, class: &str) -> Vec<(String, crate::protocol::Role)> {
    let index = s.hub.directory.current();
    let mut people = std::collections::BTreeMap::new();
    for pupil in index.pupils_of(class) {
        people.insert(pupil.id.clone(), pupil.role);
        for parent in index.parents_of(&pupil.id) {
            people.insert(parent.id.clone(), parent.role);
        }
    }
    people.into_iter().collect()
}
