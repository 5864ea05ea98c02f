//! The requests of announcements: `announce` (send to diffusion lists),
//! `announce_read` and `announce_ack` (receipts), `announce_status` (the
//! sender's counts) and `announcements` (what the user sent).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::state::{AnnounceFields, Announcement, ReceiptFields, ToFields};
use super::{ACK, ANNOUNCE, NAME, READ, TO};
use crate::directory::{Index, Person};
use crate::kinds::{common, inbox};
use crate::protocol::{self, Body, ErrorCode, KindBody, Role, UserInfo};
use crate::room::policy::Action;
use crate::room::Room;
use crate::session::kind::{Handled, KindRequest};
use crate::session::{Refusal, Session};

pub(super) const TYPES: &[&str] = &[
    "announce",
    "announce_read",
    "announce_ack",
    "announce_status",
    "announcements",
];
const MAX_TITLE_LEN: usize = 200;
/// Longest idempotency key, in bytes (as for `post`).
const MAX_KEY_LEN: usize = 64;
const MAX_TARGETS: usize = 50;
/// Most recipients of one announcement (a large school, parents included).
pub const MAX_RECIPIENTS: usize = 20_000;
/// Names listed per status list.
const MAX_LISTED: usize = 500;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    Announce {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        /// `class:3B`, `group:ESP`, `level:3e`, `parents:3B`, `teachers`,
        /// `teachers:3B`, `staff`, `school`.
        targets: Vec<String>,
        title: String,
        text: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ack: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        urgent: bool,
        /// An idempotency key (1–64 bytes): the same key from the same
        /// sender is the same announcement, sent once (a double click, a
        /// retry after a lost answer).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    AnnounceRead {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
    },
    AnnounceAck {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
    },
    AnnounceStatus {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
    },
    Announcements {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
    },
}

/// The `announce` reply: sent to `recipients` people (their notifications
/// follow).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnnounceOk {
    pub room: String,
    pub recipients: u32,
}

/// A family none of whose parents (among the recipients) opened it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Family {
    pub child: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    pub parents: Vec<String>,
}

/// The `announce_status` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusOk {
    pub room: String,
    pub title: String,
    pub recipients: u32,
    pub read: u32,
    pub ack: bool,
    pub acked: u32,
    /// Who has not opened it (at most 500, by name).
    pub not_read: Vec<UserInfo>,
    /// Who has not acknowledged it, when asked to (at most 500).
    pub not_acked: Vec<UserInfo>,
    /// For lists with parents: the families none of whose parents opened it.
    pub families_not_read: Vec<Family>,
}

/// One announcement the user sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentOne {
    pub room: String,
    pub title: String,
    pub ts: u64,
    pub recipients: u32,
}

/// The `announcements` reply: what the user sent, latest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentList {
    pub sent: Vec<SentOne>,
}

pub(super) async fn handle(s: &mut Session, request: KindRequest) -> Handled {
    let KindRequest::Frame { frame, .. } = request else {
        return Err(crate::session::kind::not_owned(NAME, request.type_name()));
    };
    let request: Request = protocol::decode_kind_request(&frame, TYPES)
        .map_err(|e| Refusal::new(e.code(), e.to_string()))?;
    match request {
        Request::Announce {
            id,
            targets,
            title,
            text,
            ack,
            urgent,
            key,
        } => announce(s, id, targets, title, text, ack, urgent, key).await,
        Request::AnnounceRead { id, room } => receipt(s, id, &room, READ).await,
        Request::AnnounceAck { id, room } => receipt(s, id, &room, ACK).await,
        Request::AnnounceStatus { id, room } => status(s, id, &room).await,
        Request::Announcements { id } => {
            let user = s.user()?.id.clone();
            let sent = inbox::sent(&s.hub, &user).await?;
            Ok(Some(protocol::ok(
                id,
                &SentList {
                    sent: sent
                        .into_iter()
                        .map(|(room, title, ts, recipients)| SentOne {
                            room,
                            title,
                            ts,
                            recipients,
                        })
                        .collect(),
                },
            )))
        }
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::InvalidField, message)
}

fn forbidden(message: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::Forbidden, message)
}

/// The people `target` names, if `claims` may write to them: staff to
/// any list; a teacher to their classes' pupils and parents, and to
/// their classes' teaching teams.
fn resolve<'a>(
    index: &'a Index,
    claims: &crate::auth::Claims,
    target: &str,
) -> Result<Vec<&'a Person>, Refusal> {
    let staff = claims.role == Role::Staff;
    let teacher_of = |class: &str| claims.role == Role::Teacher && claims.in_class(class);
    let known = |class: &str| {
        index.class(class).map(|_| ()).ok_or_else(|| {
            Refusal::new(ErrorCode::Forbidden, format!("no class or group {class:?}"))
        })
    };
    let (list, arg) = target.split_once(':').unwrap_or((target, ""));
    let staff_only = || {
        if staff {
            Ok(())
        } else {
            Err(forbidden(format!("only staff write to {target}")))
        }
    };
    let own_class = |class: &str| {
        known(class)?;
        if staff || teacher_of(class) {
            Ok(())
        } else {
            Err(forbidden(format!(
                "teachers write to their own classes' lists, not {target}"
            )))
        }
    };
    Ok(match (list, arg) {
        ("school", "") => {
            staff_only()?;
            index.people().iter().collect()
        }
        ("staff", "") => {
            staff_only()?;
            index.with_role(Role::Staff).collect()
        }
        ("teachers", "") => {
            staff_only()?;
            index.with_role(Role::Teacher).collect()
        }
        ("teachers", class) => {
            own_class(class)?;
            index.teachers_of(class).map(|(p, _)| p).collect()
        }
        ("class" | "group", class) if !class.is_empty() => {
            own_class(class)?;
            index.pupils_of(class).collect()
        }
        ("parents", class) if !class.is_empty() => {
            own_class(class)?;
            index
                .pupils_of(class)
                .flat_map(|pupil| index.parents_of(&pupil.id))
                .collect()
        }
        ("level", level) if !level.is_empty() => {
            staff_only()?;
            index
                .classes_of_level(level)
                .iter()
                .flat_map(|class| index.pupils_of(class))
                .collect()
        }
        _ => {
            return Err(invalid(format!(
                "unknown target {target:?}: class:C, group:G, level:L, parents:C, teachers, teachers:C, staff, school"
            )))
        }
    })
}

#[allow(clippy::too_many_arguments)]
async fn announce(
    s: &mut Session,
    id: Option<u32>,
    targets: Vec<String>,
    title: String,
    text: String,
    ack: bool,
    urgent: bool,
    key: Option<String>,
) -> Handled {
    if key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > MAX_KEY_LEN)
    {
        return Err(invalid(format!("key must be 1 to {MAX_KEY_LEN} bytes")));
    }
    if title.trim().is_empty() || title.len() > MAX_TITLE_LEN {
        return Err(invalid(format!("title must be 1 to {MAX_TITLE_LEN} bytes")));
    }
    s.check_text(&text)?;
    if targets.is_empty() || targets.len() > MAX_TARGETS {
        return Err(invalid(format!("name 1 to {MAX_TARGETS} targets")));
    }
    let user = s.user()?.clone();
    let claims = s.claims()?.clone();
    if urgent && user.role != Role::Staff {
        return Err(forbidden("only staff send urgent announcements"));
    }
    let index = s.hub.directory.current();
    if !index.active() {
        return Err(forbidden(
            "announcements need the school's directory (not synced yet)",
        ));
    }
    let mut recipients: BTreeMap<String, Role> = BTreeMap::new();
    for target in &targets {
        for person in resolve(&index, &claims, target)? {
            if person.id != user.id {
                recipients.insert(person.id.clone(), person.role);
            }
        }
    }
    if recipients.is_empty() {
        return Err(forbidden("these lists have nobody in them"));
    }
    if recipients.len() > MAX_RECIPIENTS {
        return Err(forbidden(format!("at most {MAX_RECIPIENTS} recipients")));
    }
    // With a key, the room is derived from the sender and the key: the
    // same request again finds the announcement it already sent.
    let bytes: [u8; 16] = match &key {
        Some(key) => {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(format!("announce\0{}\0{key}", user.id));
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            bytes
        }
        None => {
            let mut bytes = [0u8; 16];
            rand::thread_rng().fill_bytes(&mut bytes);
            bytes
        }
    };
    let keyed_name = format!(
        "{}/{NAME}/{}",
        crate::directory::NO_CLASS,
        hex::encode(bytes)
    );
    if key.is_some() {
        let name = s
            .hub
            .kinds
            .parse(&keyed_name)
            .map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))?;
        if s.hub.room_exists(&name).await? {
            let room = s.hub.room(&name).await?;
            let sent = room
                .with_state(|a: &mut Announcement, _| {
                    a.fields
                        .as_ref()
                        .filter(|_| a.is_sender(&user.id))
                        .map(|f| f.count)
                })
                .flatten();
            s.release_unjoined(&room);
            if let Some(count) = sent {
                return Ok(Some(protocol::ok(
                    id,
                    &AnnounceOk {
                        room: name.to_string(),
                        recipients: count,
                    },
                )));
            }
        }
    }
    s.take_post_token(&user.id)?;
    let name = s
        .hub
        .kinds
        .parse(&keyed_name)
        .map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))?;
    let room = s.hub.room(&name).await?;
    let count = recipients.len() as u32;
    let to = ToFields {
        recipients: recipients.keys().cloned().collect(),
    };
    let kind = |kind: &str, fields: &dyn erased::Fields| {
        fields
            .body(kind)
            .map(Body::Kind)
            .map_err(|e| Refusal::new(ErrorCode::Internal, e))
    };
    // Keyed: two requests with one key racing (two tabs) store each event
    // once; the second gets the first's ack.
    common::post_durable(s, None, &room, &user, kind(TO, &to)?, Some(TO)).await?;
    let fields = AnnounceFields {
        title: title.clone(),
        text,
        targets,
        count,
        ack,
        urgent,
    };
    let posted = common::post_durable(
        s,
        None,
        &room,
        &user,
        kind(ANNOUNCE, &fields)?,
        Some(ANNOUNCE),
    )
    .await?;
    if urgent {
        // The override of quiet hours is written in the audit log.
        let audit = s.hub.room(&s.audit_log(&name)?).await?;
        let body = KindBody::new(
            "announce_urgent",
            &serde_json::json!({ "room": name.to_string(), "title": title, "recipients": count }),
        )
        .map_err(|e| Refusal::new(ErrorCode::Internal, e))?;
        s.hub.post(&audit, &user, None, Body::Kind(body)).await?;
        tracing::info!(room = %name, recipients = count, "urgent announcement: quiet hours overridden");
    }
    inbox::sent_by(
        &s.hub,
        &user.id,
        &name.to_string(),
        &title,
        count,
        posted.offset,
    )
    .await
    .map_err(Refusal::from)?;
    s.release_unjoined(&room);
    let fields = inbox::NotifyFields {
        what: "announcement".to_owned(),
        room: name.to_string(),
        at: Some(posted.offset),
        title,
        preview: None,
        by: Some(user),
        hold_until: None,
        urgent,
    };
    let key = format!(
        "announce-{}",
        name.as_str().rsplit('/').next().unwrap_or("")
    );
    inbox::notify_many(s.hub.clone(), recipients.into_iter().collect(), fields, key);
    Ok(Some(protocol::ok(
        id,
        &AnnounceOk {
            room: name.to_string(),
            recipients: count,
        },
    )))
}

/// The announcement `room`, if the user may do `action` in it.
async fn opened(s: &Session, room: &str, action: Action) -> Result<Arc<Room>, Refusal> {
    let name = s.parse_room(room)?;
    if name.kind().name() != NAME {
        return Err(Refusal::new(
            ErrorCode::InvalidRoom,
            format!("{name} is not an announcement"),
        ));
    }
    Ok(s.open(room, action).await?.1)
}

/// A recipient's receipt, once (again: the same ack).
async fn receipt(s: &mut Session, id: Option<u32>, room: &str, kind: &str) -> Handled {
    let user = s.user()?.id.clone();
    let room = opened(s, room, Action::Read).await?;
    let (recipient, sender) = room
        .with_state(|a: &mut Announcement, _| {
            (
                a.is_recipient(&user),
                a.sender.as_ref().map(|s| s.id.clone()).unwrap_or_default(),
            )
        })
        .unwrap_or_default();
    if !recipient {
        s.release_unjoined(&room);
        return Err(forbidden("only its recipients send receipts"));
    }
    // Once per reader (within the idempotency window; later ones change
    // nothing).
    let result = common::write(s, id, &room, kind, &ReceiptFields { sender }, Some(kind)).await;
    s.release_unjoined(&room);
    result
}

async fn status(s: &mut Session, id: Option<u32>, room: &str) -> Handled {
    let user = s.user()?.clone();
    let room = opened(s, room, Action::Read).await?;
    let index = s.hub.directory.current();
    let result = room
        .with_state(|a: &mut Announcement, _| {
            if !a.is_sender(&user.id) && user.role != Role::Staff {
                return Err(forbidden("only its sender and staff see who read it"));
            }
            let info = |id: &String| match index.person(id) {
                Some(p) => UserInfo {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    role: p.role,
                },
                None => UserInfo {
                    id: id.clone(),
                    name: id.clone(),
                    role: Role::Student,
                },
            };
            let by_name = |mut list: Vec<UserInfo>| {
                list.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
                list.truncate(MAX_LISTED);
                list
            };
            let fields = a.fields.clone();
            let ack = fields.as_ref().is_some_and(|f| f.ack);
            let not_read = by_name(
                a.recipients
                    .iter()
                    .filter(|r| !a.read.contains_key(*r))
                    .map(info)
                    .collect(),
            );
            let not_acked = if ack {
                by_name(
                    a.recipients
                        .iter()
                        .filter(|r| !a.acked.contains_key(*r))
                        .map(info)
                        .collect(),
                )
            } else {
                Vec::new()
            };
            // Families: a pupil whose parents are among the recipients,
            // none of whom opened it.
            let mut children: BTreeSet<String> = BTreeSet::new();
            for recipient in &a.recipients {
                if let Some(parent) = index.person(recipient).filter(|p| p.role == Role::Parent) {
                    children.extend(parent.children.iter().cloned());
                }
            }
            let mut families = Vec::new();
            for child in &children {
                let parents: Vec<&Person> = index
                    .parents_of(child)
                    .filter(|p| a.recipients.contains(&p.id))
                    .collect();
                if parents.is_empty() || parents.iter().any(|p| a.read.contains_key(&p.id)) {
                    continue;
                }
                let pupil = index.person(child);
                families.push(Family {
                    child: pupil.map_or_else(|| child.clone(), |p| p.name.clone()),
                    class: pupil.and_then(|p| p.classes.first().cloned()),
                    parents: parents.iter().map(|p| p.name.clone()).collect(),
                });
            }
            families.sort_by(|a, b| a.class.cmp(&b.class).then_with(|| a.child.cmp(&b.child)));
            families.truncate(MAX_LISTED);
            Ok(StatusOk {
                room: room.name().to_string(),
                title: fields.map(|f| f.title).unwrap_or_default(),
                recipients: a.recipients.len() as u32,
                read: a.read.len() as u32,
                ack,
                acked: a.acked.len() as u32,
                not_read,
                not_acked,
                families_not_read: families,
            })
        })
        .unwrap_or_else(|| {
            Err(Refusal::new(
                ErrorCode::Internal,
                "not an announcement's state",
            ))
        });
    s.release_unjoined(&room);
    Ok(Some(protocol::ok(id, &result?)))
}

/// Kind bodies from fields of any type (one closure above builds both).
mod erased {
    pub trait Fields {
        fn body(&self, kind: &str) -> Result<crate::protocol::KindBody, String>;
    }
    impl<T: serde::Serialize> Fields for T {
        fn body(&self, kind: &str) -> Result<crate::protocol::KindBody, String> {
            crate::protocol::KindBody::new(kind, self)
        }
    }
}
