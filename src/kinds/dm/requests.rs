//! The requests of direct messages: `dm_start`, `dm_add`, `dm_send`,
//! `conversations`, `dm_prefs`, `dm_share` (a teacher answers a pupil's
//! question for the whole class in a forum thread) and `dm_review` (staff,
//! after a report).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::state::{Conversation, MembersFields, PrefsFields, ReviewedFields, SharedFields};
use super::{MAX_MEMBERS, MEMBERS, NAME, PREFS, REVIEWED, SHARED};
use crate::kinds::{common, inbox};
use crate::protocol::{self, Body, ErrorCode, Role, UserInfo};
use crate::room::policy::Action;
use crate::room::Room;
use crate::session::kind::{Handled, KindRequest};
use crate::session::{forbidden, Refusal, Session};

pub(super) const TYPES: &[&str] = &[
    "dm_start",
    "dm_add",
    "dm_send",
    "conversations",
    "dm_prefs",
    "dm_share",
    "dm_review",
    "contacts",
];
/// Contacts per reply: by default, and at most.
const DEFAULT_CONTACTS: usize = 100;
const MAX_CONTACTS: usize = 500;
const MAX_QUERY_LEN: usize = 100;
/// Longest idempotency key and forum title, in bytes.
const MAX_KEY_LEN: usize = 64;
const MAX_TITLE_LEN: usize = 200;
const HOUR_MS: u64 = 3600 * 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// A conversation with `to` (user ids): the existing one for a pair.
    DmStart {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        to: Vec<String>,
    },
    /// Adds `users` to conversation `room`.
    DmAdd {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        users: Vec<String>,
    },
    /// A message, acked once durable (with whose quiet hours hold it).
    DmSend {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// The user's conversations, latest first, with unread counts.
    Conversations {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
    },
    /// A pupil lets their name be shown (or not) when a teacher shares
    /// their question with the class.
    DmPrefs {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        named: bool,
    },
    /// A teacher turns pupil message `at` into a new thread of help forum
    /// `forum`, to answer it for the whole class.
    DmShare {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        at: u64,
        forum: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
    },
    /// Staff open a reported conversation (written in it for its members).
    DmReview {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
    },
    /// The people the user may write to, from the directory, whose name
    /// contains `query` (case and accents aside), by name.
    Contacts {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
}

/// Someone the user may write to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// A pupil's classes; a teacher's, with what they teach there
    /// (`3B · Mathématiques`); a parent's children's names.
    pub about: Vec<String>,
}

/// The `contacts` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactsOk {
    pub contacts: Vec<Contact>,
    /// More matched than `limit`.
    pub more: bool,
}

/// A member whose quiet hours hold what is sent now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quiet {
    pub id: String,
    pub name: String,
    /// When they will be told (ms); the largest integer when they are
    /// quiet every day (they read their feed).
    pub until: u64,
}

/// The `dm_start` and `dm_add` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DmOk {
    pub room: String,
    /// False when the conversation existed (a pair writing again).
    pub created: bool,
    pub members: Vec<UserInfo>,
    /// The other members in quiet hours now.
    pub quiet: Vec<Quiet>,
}

/// The `dm_send` reply: the message's position, and who will be told later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentOk {
    pub room: String,
    pub epoch: String,
    pub offset: u64,
    pub ts: u64,
    pub held: Vec<Quiet>,
}

/// The `conversations` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationsOk {
    pub conversations: Vec<inbox::Conversation>,
}

/// The `dm_share` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedOk {
    pub forum: String,
    pub thread: u64,
    pub anonymous: bool,
}

pub(super) async fn handle(s: &mut Session, request: KindRequest) -> Handled {
    let KindRequest::Frame { frame, .. } = request else {
        return Err(crate::session::kind::not_owned(NAME, request.type_name()));
    };
    let request: Request = protocol::decode_kind_request(&frame, TYPES)
        .map_err(|e| Refusal::new(e.code(), e.to_string()))?;
    match request {
        Request::DmStart { id, to } => start(s, id, to).await,
        Request::DmAdd { id, room, users } => add(s, id, &room, users).await,
        Request::DmSend {
            id,
            room,
            text,
            key,
        } => send(s, id, &room, text, key).await,
        Request::Conversations { id } => {
            let user = s.user()?.id.clone();
            let conversations = inbox::conversations(&s.hub, &user).await?;
            Ok(Some(protocol::ok(id, &ConversationsOk { conversations })))
        }
        Request::DmPrefs { id, room, named } => {
            let room = conversation(s, &room, Action::Post).await?;
            if s.user()?.role != Role::Student {
                s.release_unjoined(&room);
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    "only pupils set dm_prefs",
                ));
            }
            let result = common::write(s, id, &room, PREFS, &PrefsFields { named }, None).await;
            s.release_unjoined(&room);
            result
        }
        Request::DmShare {
            id,
            room,
            at,
            forum,
            title,
        } => share(s, id, &room, at, &forum, title).await,
        Request::DmReview { id, room } => review(s, id, &room).await,
        Request::Contacts { id, query, limit } => contacts(s, id, query, limit),
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::InvalidField, message)
}

/// The conversation `room`, if the user may do `action` in it.
async fn conversation(s: &Session, room: &str, action: Action) -> Result<Arc<Room>, Refusal> {
    let name = s.parse_room(room)?;
    if name.kind().name() != NAME {
        return Err(Refusal::new(
            ErrorCode::InvalidRoom,
            format!("{name} is not a conversation"),
        ));
    }
    let (_, room) = s.open(room, action).await?;
    Ok(room)
}

/// The room key of a conversation, derived from the people who start it:
/// writing again to the same people reopens it (and a pupil does not get
/// a fresh conversation, with fresh caps, by starting another).
fn key_for(members: &[&str]) -> String {
    let mut sorted = members.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut hash = Sha256::new();
    hash.update(b"preau dm\0");
    for member in sorted {
        hash.update(member.as_bytes());
        hash.update(b"\0");
    }
    hex::encode(&hash.finalize()[..16])
}

/// The people named by `ids`, each one the user may write to (or add).
fn recipients(
    s: &Session,
    ids: &[String],
    adding: bool,
) -> Result<Vec<crate::directory::Person>, Refusal> {
    let claims = s.claims()?;
    let index = s.hub.directory.current();
    if !index.active() {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "messages need the school's directory (not synced yet)",
        ));
    }
    if ids.is_empty() || ids.len() >= MAX_MEMBERS {
        return Err(invalid(format!("name 1 to {} people", MAX_MEMBERS - 1)));
    }
    let mut people = Vec::new();
    for id in ids {
        if people
            .iter()
            .any(|p: &crate::directory::Person| &p.id == id)
        {
            continue;
        }
        let person = index.person(id).ok_or_else(|| {
            Refusal::new(
                ErrorCode::UnknownTarget,
                format!("the school's directory has no {id:?}"),
            )
        })?;
        let allowed = if adding {
            super::may_add(&index, &s.hub.config, claims, person)
        } else {
            super::may_write(&index, &s.hub.config, claims, person)
        };
        // The id as given, not the directory's name: a refusal must not
        // tell who someone is.
        allowed.map_err(|why| Refusal::new(ErrorCode::Forbidden, format!("{id}: {why}")))?;
        people.push(person.clone());
    }
    Ok(people)
}

fn info(person: &crate::directory::Person) -> UserInfo {
    UserInfo {
        id: person.id.clone(),
        name: person.name.clone(),
        role: person.role,
    }
}

/// The members of `room` in quiet hours now (but `user`).
async fn quiet_members(
    s: &Session,
    members: &[UserInfo],
    user: &str,
) -> Result<Vec<Quiet>, Refusal> {
    let mut quiet = Vec::new();
    for member in members.iter().filter(|m| m.id != user) {
        if let Some(until) = inbox::quiet_until(&s.hub, &member.id, member.role).await? {
            quiet.push(Quiet {
                id: member.id.clone(),
                name: member.name.clone(),
                until,
            });
        }
    }
    Ok(quiet)
}

/// Tells every member they are in the conversation (their list reads it).
async fn announce_members(s: &Session, room: &Room, members: &[UserInfo], offset: u64) {
    let fields = inbox::JoinedFields {
        room: room.name().to_string(),
        members: members.to_vec(),
    };
    let key = format!(
        "joined-{}-{offset}",
        room.name().as_str().rsplit('/').next().unwrap_or("")
    );
    for member in members {
        if let Err(err) = inbox::joined(&s.hub, &member.id, &fields, &key).await {
            tracing::warn!(error = %err, room = %room.name(), "conversation not listed in a feed");
        }
    }
}

fn members_of(room: &Room) -> Vec<UserInfo> {
    room.with_state(|c: &mut Conversation, _| c.members().to_vec())
        .unwrap_or_default()
}

async fn start(s: &mut Session, id: Option<u32>, to: Vec<String>) -> Handled {
    let user = s.user()?.clone();
    // Taken first: looking people up is not free (the directory is not
    // for browsing by refusals).
    s.take_post_token(&user.id)?;
    let people = recipients(s, &to, false)?;
    let mut ids: Vec<&str> = people.iter().map(|p| p.id.as_str()).collect();
    ids.push(&user.id);
    let name = s
        .hub
        .kinds
        .parse(&format!(
            "{}/{NAME}/{}",
            crate::directory::NO_CLASS,
            key_for(&ids)
        ))
        .map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))?;
    let room = s.hub.room(&name).await?;
    let known = room
        .with_state(|c: &mut Conversation, _| c.is_member(&user.id))
        .unwrap_or(false);
    let created = !known;
    if created {
        let mut members = vec![user.clone()];
        members.extend(people.iter().map(info));
        let body = Body::Kind(
            protocol::KindBody::new(MEMBERS, &MembersFields { members })
                .map_err(|e| Refusal::new(ErrorCode::Internal, e))?,
        );
        let posted = common::post_durable(s, None, &room, &user, body, None).await?;
        announce_members(s, &room, &members_of(&room), posted.offset).await;
    }
    let members = members_of(&room);
    let quiet = quiet_members(s, &members, &user.id).await?;
    s.release_unjoined(&room);
    Ok(Some(protocol::ok(
        id,
        &DmOk {
            room: name.to_string(),
            created,
            members,
            quiet,
        },
    )))
}

async fn add(s: &mut Session, id: Option<u32>, room: &str, users: Vec<String>) -> Handled {
    let user = s.user()?.clone();
    s.take_post_token(&user.id)?;
    let room = conversation(s, room, Action::Post).await?;
    let result = async {
        let people = recipients(s, &users, true)?;
        let members = members_of(&room);
        let new: Vec<UserInfo> = people
            .iter()
            .filter(|p| !members.iter().any(|m| m.id == p.id))
            .map(info)
            .collect();
        if members.len() + new.len() > MAX_MEMBERS {
            return Err(invalid(format!(
                "a conversation has at most {MAX_MEMBERS} members"
            )));
        }
        if !new.is_empty() {
            let body = Body::Kind(
                protocol::KindBody::new(MEMBERS, &MembersFields { members: new })
                    .map_err(|e| Refusal::new(ErrorCode::Internal, e))?,
            );
            let posted = common::post_durable(s, None, &room, &user, body, None).await?;
            announce_members(s, &room, &members_of(&room), posted.offset).await;
        }
        let members = members_of(&room);
        let quiet = quiet_members(s, &members, &user.id).await?;
        Ok(Some(protocol::ok(
            id,
            &DmOk {
                room: room.name().to_string(),
                created: false,
                members,
                quiet,
            },
        )))
    }
    .await;
    s.release_unjoined(&room);
    result
}

async fn send(
    s: &mut Session,
    id: Option<u32>,
    room: &str,
    text: String,
    key: Option<String>,
) -> Handled {
    if key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > MAX_KEY_LEN)
    {
        return Err(invalid(format!("key must be 1 to {MAX_KEY_LEN} bytes")));
    }
    s.check_text(&text)?;
    let user = s.user()?.clone();
    let room = conversation(s, room, Action::Post).await?;
    let result = async {
        cap(s, &room, &user)?;
        s.check_moderation(&room, &user.id, true, None)?;
        s.take_post_token(&user.id)?;
        let posted =
            common::post_durable(s, None, &room, &user, Body::message(text), key.as_deref())
                .await?;
        let members = members_of(&room);
        let mut held = Vec::new();
        let room_key = room
            .name()
            .as_str()
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_owned();
        for member in members.iter().filter(|m| m.id != user.id) {
            let fields = inbox::NotifyFields {
                what: "dm".to_owned(),
                room: room.name().to_string(),
                at: Some(posted.offset),
                title: String::new(),
                preview: None,
                by: Some(user.clone()),
                hold_until: None,
                urgent: false,
            };
            let recipient = inbox::Recipient {
                id: &member.id,
                role: member.role,
            };
            match inbox::notify(
                &s.hub,
                &recipient,
                fields,
                &format!("dm-{room_key}-{}", posted.offset),
            )
            .await
            {
                Ok(Some(until)) => held.push(Quiet {
                    id: member.id.clone(),
                    name: member.name.clone(),
                    until,
                }),
                Ok(None) => {}
                // The message is stored: a lost notification is not worth
                // failing it (the member sees it in the conversation).
                Err(err) => tracing::warn!(error = %err, "message notification not posted"),
            }
        }
        room.record_post(&user.id);
        Ok(Some(protocol::ok(
            id,
            &SentOk {
                room: posted.room,
                epoch: posted.epoch,
                offset: posted.offset,
                ts: posted.ts,
                held,
            },
        )))
    }
    .await;
    s.release_unjoined(&room);
    result
}

/// A pupil writing to a teacher is bounded: `dm_pupil_per_hour` and
/// `dm_pupil_per_day` messages per conversation with a teacher in it.
fn cap(s: &Session, room: &Room, user: &UserInfo) -> Result<(), Refusal> {
    if user.role != Role::Student {
        return Ok(());
    }
    let now = (s.hub.clock)();
    let config = &s.hub.config;
    let counts = room.with_state(|c: &mut Conversation, _| {
        if !c.has_role(Role::Teacher) {
            return None;
        }
        Some((
            c.sent_since(&user.id, now.saturating_sub(HOUR_MS)),
            c.sent_since(&user.id, now.saturating_sub(Conversation::day_ms())),
        ))
    });
    let Some(Some(((hour, oldest_hour), (day, oldest_day)))) = counts else {
        return Ok(());
    };
    let refuse = |limit: u32, per: &str, oldest: Option<u64>, span: u64| Refusal {
        code: ErrorCode::RateLimited,
        message: format!(
            "at most {limit} messages {per} to a teacher: ask the class in the help forum, or wait"
        ),
        retry_after_ms: Some(
            oldest
                .map_or(span, |o| (o + span).saturating_sub(now))
                .max(1),
        ),
    };
    if day >= config.dm_pupil_per_day as usize {
        return Err(refuse(
            config.dm_pupil_per_day,
            "a day",
            oldest_day,
            Conversation::day_ms(),
        ));
    }
    if hour >= config.dm_pupil_per_hour as usize {
        return Err(refuse(
            config.dm_pupil_per_hour,
            "an hour",
            oldest_hour,
            HOUR_MS,
        ));
    }
    Ok(())
}

async fn share(
    s: &mut Session,
    id: Option<u32>,
    room: &str,
    at: u64,
    forum: &str,
    title: Option<String>,
) -> Handled {
    if title
        .as_ref()
        .is_some_and(|t| t.trim().is_empty() || t.len() > MAX_TITLE_LEN)
    {
        return Err(invalid(format!("title must be 1 to {MAX_TITLE_LEN} bytes")));
    }
    let user = s.user()?.clone();
    if user.role != Role::Teacher {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "teachers share questions",
        ));
    }
    s.take_post_token(&user.id)?;
    let room = conversation(s, room, Action::Post).await?;
    let result = async {
        let author = room
            .with_state(|c: &mut Conversation, _| c.author_of(at).map(str::to_owned))
            .flatten();
        let question = s.read_message(&room, at).await?;
        let (Some(author), Body::Message { text, .. }) = (author, &question.body) else {
            return Err(Refusal::new(
                ErrorCode::UnknownTarget,
                format!("no message at {at}"),
            ));
        };
        if question.from.role != Role::Student || author != question.from.id {
            return Err(Refusal::new(
                ErrorCode::UnknownTarget,
                format!("message {at} is not a pupil's question"),
            ));
        }
        let forum_name = s.parse_room(forum)?;
        if forum_name.kind().name() != crate::kinds::forum::NAME {
            return Err(Refusal::new(
                ErrorCode::InvalidRoom,
                format!("{forum} is not a forum"),
            ));
        }
        // A help forum of one of the pupil's classes, where the teacher
        // may post (and is not muted or banned).
        let pupil_classes = s
            .hub
            .directory
            .current()
            .person(&author)
            .map(|p| p.classes.clone())
            .unwrap_or_default();
        if !pupil_classes.iter().any(|c| c == forum_name.class()) {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                format!("{forum_name} is not a forum of the pupil's classes"),
            ));
        }
        let (_, forum_room) = s.open(forum, Action::Post).await?;
        let help = forum_room
            .grants()
            .is_some_and(|g| g.flavour == protocol::Flavour::Help);
        if !help {
            s.release_unjoined(&forum_room);
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                format!("{forum_name} is not a help forum"),
            ));
        }
        if let Err(refusal) = s.check_moderation(&forum_room, &user.id, true, None) {
            s.release_unjoined(&forum_room);
            return Err(refusal);
        }
        let named = room
            .with_state(|c: &mut Conversation, _| c.named(&author))
            .unwrap_or(false);
        let anonymous = !named;
        let title = title.unwrap_or_else(|| {
            if anonymous {
                "Question d'un élève".to_owned()
            } else {
                format!("Question de {}", question.from.name)
            }
        });
        let body = Body::Message {
            text: text.clone(),
            title: Some(title),
            thread: None,
            reply_to: None,
            quote: None,
        };
        let thread = common::post_durable(s, None, &forum_room, &user, body, None).await;
        s.release_unjoined(&forum_room);
        let thread = thread?;
        let fields = SharedFields {
            at,
            forum: forum_name.to_string(),
            thread: thread.offset,
            anonymous,
        };
        let body = Body::Kind(
            protocol::KindBody::new(SHARED, &fields)
                .map_err(|e| Refusal::new(ErrorCode::Internal, e))?,
        );
        common::post_durable(s, None, &room, &user, body, None).await?;
        Ok(Some(protocol::ok(
            id,
            &SharedOk {
                forum: forum_name.to_string(),
                thread: thread.offset,
                anonymous,
            },
        )))
    }
    .await;
    s.release_unjoined(&room);
    result
}

async fn review(s: &mut Session, id: Option<u32>, room: &str) -> Handled {
    let user = s.user()?.clone();
    if user.role != Role::Staff {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "staff review reported conversations",
        ));
    }
    let name = s.parse_room(room)?;
    if name.kind().name() != NAME {
        return Err(Refusal::new(
            ErrorCode::InvalidRoom,
            format!("{name} is not a conversation"),
        ));
    }
    if !s.hub.room_exists(&name).await? {
        return Err(forbidden(&name, Action::Read));
    }
    let room = s.hub.room(&name).await?;
    let result = async {
        let audit = s.hub.room(&s.audit_log(&name)?).await?;
        let reports = s.open_reports(&audit, &name).await?;
        let Some(report) = reports.last() else {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "staff read a conversation only after one of its members reported it",
            ));
        };
        let body = Body::Kind(
            protocol::KindBody::new(REVIEWED, &ReviewedFields { report: report.offset })
                .map_err(|e| Refusal::new(ErrorCode::Internal, e))?,
        );
        common::post_durable(s, None, &room, &user, body, None).await?;
        tracing::info!(room = %name, report = report.offset, "reported conversation opened by staff");
        Ok(Some(protocol::ok(
            id,
            &DmOk {
                room: name.to_string(),
                created: false,
                members: members_of(&room),
                quiet: Vec::new(),
            },
        )))
    }
    .await;
    s.release_unjoined(&room);
    result
}

fn contacts(s: &Session, id: Option<u32>, query: Option<String>, limit: Option<u32>) -> Handled {
    if query.as_ref().is_some_and(|q| q.len() > MAX_QUERY_LEN) {
        return Err(invalid(format!(
            "query is longer than {MAX_QUERY_LEN} bytes"
        )));
    }
    let limit = match limit {
        None => DEFAULT_CONTACTS,
        Some(0) => return Err(invalid("limit must be at least 1")),
        Some(n) => (n as usize).min(MAX_CONTACTS),
    };
    let claims = s.claims()?;
    let index = s.hub.directory.current();
    let query = query
        .map(|q| common::folded(q.trim()))
        .filter(|q| !q.is_empty());
    let mut found: Vec<Contact> = index
        .people()
        .iter()
        .filter(|p| {
            query
                .as_ref()
                .is_none_or(|q| common::folded(&p.name).contains(q.as_str()))
        })
        .filter(|p| super::may_write(&index, &s.hub.config, claims, p).is_ok())
        .map(|p| Contact {
            id: p.id.clone(),
            name: p.name.clone(),
            role: p.role,
            about: match p.role {
                Role::Student => p.classes.clone(),
                Role::Teacher => p
                    .teaches
                    .iter()
                    .filter(|t| {
                        // Pupils and parents see what is taught in their classes.
                        !matches!(claims.role, Role::Student | Role::Parent)
                            || claims.in_class(&t.class)
                    })
                    .map(|t| format!("{} · {}", t.class, t.subject))
                    .collect(),
                Role::Parent => p
                    .children
                    .iter()
                    .filter_map(|c| index.person(c))
                    .map(|c| c.name.clone())
                    .collect(),
                Role::Staff => Vec::new(),
            },
        })
        .collect();
    found.sort_by(|a, b| {
        common::folded(&a.name)
            .cmp(&common::folded(&b.name))
            .then_with(|| a.id.cmp(&b.id))
    });
    let more = found.len() > limit;
    found.truncate(limit);
    Ok(Some(protocol::ok(
        id,
        &ContactsOk {
            contacts: found,
            more,
        },
    )))
}
