//! The hand-in requests: `handin_open`, `handin_change` (teachers),
//! `handin_submit` (pupils), `handin_return` (teachers), `handins` (each
//! reader's view: a teacher's counts, a pupil's own status, a parent's
//! children's) and `handin_status` (a teacher's row per pupil).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::state::{
    ChangeFields, Handin, Handins, OpenFields, ReturnFields, Returned, SubmitFields,
};
use super::{CHANGE, NAME, OPEN, RETURN, SUBMIT};
use crate::files::{FileKind, FileRef};
use crate::kinds::common;
use crate::protocol::{self, ErrorCode, Role, UserInfo};
use crate::room::policy::Action;
use crate::room::{Room, Viewer};
use crate::session::kind::{Handled, KindRequest};
use crate::session::{forbidden, Refusal, Session};

pub(super) const TYPES: &[&str] = &[
    "handin_open",
    "handin_change",
    "handin_submit",
    "handin_return",
    "handins",
    "handin_status",
];

const MAX_TITLE_LEN: usize = 200;
const MAX_INSTRUCTIONS_LEN: usize = 10_000;
const MAX_COMMENT_LEN: usize = 10_000;
/// Pupils named one by one.
const MAX_PUPILS: usize = 200;
/// A deadline at most a school year ahead.
const MAX_AHEAD_MS: u64 = 400 * 24 * 3600 * 1000;
const FAMILIES: &[&str] = &["document", "image", "audio", "video"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    HandinOpen {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        title: String,
        #[serde(default)]
        instructions: String,
        due: u64,
        /// Some pupils of the class, by id; or
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pupils: Vec<String>,
        /// a group (from the school directory); or, with neither, the class.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        accepts: Vec<String>,
        #[serde(default)]
        late: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entry: Option<u64>,
    },
    HandinChange {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        handin: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        due: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        late: Option<bool>,
    },
    HandinSubmit {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        handin: u64,
        /// The id of a finished upload (`POST /files/uploads/{id}/done`).
        file: String,
    },
    HandinReturn {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        handin: u64,
        pupil: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
        #[serde(default)]
        comment: String,
    },
    Handins {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
    },
    HandinStatus {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        handin: u64,
    },
}

/// Where one pupil stands on one hand-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PupilRow {
    pub pupil: UserInfo,
    /// `todo`, `handed_in`, `late`, `returned`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef>,
    #[serde(default)]
    pub replaced: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returned: Option<Returned>,
}

/// One hand-in as its reader sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandinView {
    pub handin: u64,
    pub title: String,
    pub instructions: String,
    pub due: u64,
    pub late: bool,
    pub accepts: Vec<String>,
    pub to: String,
    pub by: UserInfo,
    pub ts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<u64>,
    /// Teachers and staff: how many pupils, handed in, late, returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<Counts>,
    /// A pupil: their row; a parent: each child's it is for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mine: Vec<PupilRow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub pupils: u32,
    pub handed_in: u32,
    pub late: u32,
    pub returned: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandinsOk {
    pub room: String,
    pub handins: Vec<HandinView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusOk {
    pub room: String,
    pub handin: HandinView,
    pub pupils: Vec<PupilRow>,
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::InvalidField, message)
}

fn unknown(handin: u64, room: &Room) -> Refusal {
    Refusal::new(
        ErrorCode::UnknownTarget,
        format!("no hand-in {handin} in {}", room.name()),
    )
}

/// The hand-in room `room`, loaded for `action` (created by a teacher's
/// first `handin_open`).
async fn open(s: &Session, room: &str, action: Action) -> Result<Arc<Room>, Refusal> {
    let (name, room) = if action == Action::Moderate {
        s.open_or_create(room, action).await?
    } else {
        s.open(room, action).await?
    };
    if name.kind().name() != NAME {
        s.release_unjoined(&room);
        return Err(invalid(format!("{name} is not a hand-in room")));
    }
    s.refuse_banned(&room)?;
    Ok(room)
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), Refusal> {
    if value.len() > max {
        return Err(Refusal::new(
            ErrorCode::MessageTooLong,
            format!("{field} is longer than {max} bytes"),
        ));
    }
    Ok(())
}

fn row(handin: &Handin, pupil: &str, name: Option<&str>) -> PupilRow {
    let sub = handin.submissions.get(pupil);
    let returned = handin.returns.get(pupil).cloned();
    let status = match (&returned, sub) {
        (Some(_), _) => "returned",
        (None, Some(s)) if s.late => "late",
        (None, Some(_)) => "handed_in",
        (None, None) => "todo",
    };
    PupilRow {
        pupil: UserInfo {
            id: pupil.to_owned(),
            name: name
                .map(str::to_owned)
                .or_else(|| handin.names.get(pupil).cloned())
                .unwrap_or_else(|| pupil.to_owned()),
            role: Role::Student,
        },
        status: status.to_owned(),
        submitted: sub.map(|s| s.ts),
        file: sub.map(|s| s.file.clone()),
        replaced: sub.map_or(0, |s| s.replaced),
        returned,
    }
}

fn view(
    handin: &Handin,
    viewer: &Viewer<'_>,
    names: &dyn Fn(&str) -> Option<String>,
) -> HandinView {
    let teacher = viewer.moderator;
    let counts = teacher.then(|| Counts {
        pupils: handin.fields.pupils.len() as u32,
        handed_in: handin.submissions.len() as u32,
        late: handin.submissions.values().filter(|s| s.late).count() as u32,
        returned: handin.returns.len() as u32,
    });
    let mine = if teacher {
        Vec::new()
    } else {
        handin
            .fields
            .pupils
            .iter()
            .filter(|p| viewer.is_or_parent_of(p))
            .map(|p| row(handin, p, names(p).as_deref()))
            .collect()
    };
    HandinView {
        handin: handin.offset,
        title: handin.fields.title.clone(),
        instructions: handin.fields.instructions.clone(),
        due: handin.fields.due,
        late: handin.fields.late,
        accepts: handin.fields.accepts.clone(),
        to: handin.fields.to.clone(),
        by: handin.by.clone(),
        ts: handin.ts,
        entry: handin.fields.entry,
        counts,
        mine,
    }
}

pub(super) async fn handle(s: &mut Session, request: KindRequest) -> Handled {
    let KindRequest::Frame { frame, .. } = request else {
        return Err(crate::session::kind::not_owned(NAME, request.type_name()));
    };
    let request: Request = protocol::decode_kind_request(&frame, TYPES)
        .map_err(|e| Refusal::new(e.code(), e.to_string()))?;
    match request {
        Request::HandinOpen {
            id,
            room,
            title,
            instructions,
            due,
            pupils,
            group,
            accepts,
            late,
            entry,
        } => {
            let title = title.trim().to_owned();
            if title.is_empty() {
                return Err(invalid("a hand-in needs a title"));
            }
            check_len("title", &title, MAX_TITLE_LEN)?;
            check_len("instructions", &instructions, MAX_INSTRUCTIONS_LEN)?;
            if let Some(bad) = accepts.iter().find(|a| !FAMILIES.contains(&a.as_str())) {
                return Err(invalid(format!(
                    "accepts takes document, image, audio, video; not {bad:?}"
                )));
            }
            let now = (s.hub.clock)();
            if due <= now || due > now + MAX_AHEAD_MS {
                return Err(invalid("due must be later than now, within a school year"));
            }
            let room = open(s, &room, Action::Moderate).await?;
            if !s.allowed_in(&room, Action::Moderate) {
                s.release_unjoined(&room);
                return Err(forbidden(room.name(), Action::Moderate));
            }
            let class = room.name().class().to_owned();
            let index = s.hub.directory.current();
            let (mut pupils, to) = match (&group, pupils.is_empty()) {
                (Some(_), false) => return Err(invalid("name pupils or a group, not both")),
                (Some(group), true) => {
                    // Those of the group who are in the room's class: a
                    // hand-in never reaches pupils who cannot read it.
                    let members: Vec<String> = index
                        .pupils_of(group)
                        .filter(|p| index.pupils_of(&class).any(|q| q.id == p.id))
                        .map(|p| p.id.clone())
                        .collect();
                    (members, format!("group:{group}"))
                }
                (None, false) => {
                    if pupils.len() > MAX_PUPILS {
                        return Err(invalid(format!("at most {MAX_PUPILS} pupils by name")));
                    }
                    // Once the directory is synced, only pupils of the class.
                    let synced = index.version() > 0;
                    if let Some(stranger) = pupils.iter().find(|p| {
                        synced
                            && !index.person(p).is_some_and(|person| {
                                person.role == Role::Student
                                    && index.pupils_of(&class).any(|q| q.id == person.id)
                            })
                    }) {
                        return Err(Refusal::new(
                            ErrorCode::UnknownTarget,
                            format!("{stranger} is not a pupil of {class}"),
                        ));
                    }
                    (pupils, "pupils".to_owned())
                }
                (None, true) => (
                    index.pupils_of(&class).map(|p| p.id.clone()).collect(),
                    format!("class:{class}"),
                ),
            };
            pupils.sort();
            pupils.dedup();
            if pupils.is_empty() {
                return Err(Refusal::new(
                    ErrorCode::UnknownTarget,
                    "nobody to hand it in: the school directory lists no pupil there (name them with pupils)",
                ));
            }
            let fields = OpenFields {
                title,
                instructions,
                due,
                pupils: pupils.clone(),
                to,
                accepts,
                late,
                entry,
            };
            let posted = common::write_durable(s, id, &room, OPEN, &fields, None).await?;
            let notice = crate::kinds::inbox::NotifyFields {
                what: "handin".to_owned(),
                room: room.name().to_string(),
                at: Some(posted.offset),
                title: fields.title.clone(),
                preview: None,
                by: Some(s.user()?.clone()),
                hold_until: None,
                urgent: false,
            };
            let recipients = pupils.into_iter().map(|p| (p, Role::Student)).collect();
            let key = format!("handin-{class}-{}", posted.offset);
            crate::kinds::inbox::notify_many(s.hub.clone(), recipients, notice, key);
            Ok(Some(protocol::ok(id, &posted)))
        }
        Request::HandinChange {
            id,
            room,
            handin,
            due,
            late,
        } => {
            let room = open(s, &room, Action::Moderate).await?;
            if !s.allowed_in(&room, Action::Moderate) {
                return Err(forbidden(room.name(), Action::Moderate));
            }
            if !room
                .with_state(|h: &mut Handins, _| h.all.contains_key(&handin))
                .unwrap_or(false)
            {
                return Err(unknown(handin, &room));
            }
            let now = (s.hub.clock)();
            if due.is_some_and(|d| d > now + MAX_AHEAD_MS) {
                return Err(invalid("due must be within a school year"));
            }
            if due.is_none() && late.is_none() {
                return Err(invalid("change due, late or both"));
            }
            let posted = common::write_durable(
                s,
                id,
                &room,
                CHANGE,
                &ChangeFields { handin, due, late },
                None,
            )
            .await?;
            Ok(Some(protocol::ok(id, &posted)))
        }
        Request::HandinSubmit {
            id,
            room,
            handin,
            file,
        } => {
            let room = open(s, &room, Action::Post).await?;
            let user = s.user()?.clone();
            if user.role != Role::Student || !s.allowed_in(&room, Action::Post) {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    "only the pupils it is for hand it in",
                ));
            }
            let now = (s.hub.clock)();
            let found = room
                .with_state(|h: &mut Handins, _| {
                    h.all.get(&handin).map(|h| {
                        (
                            h.targets(&user.id),
                            h.fields.due,
                            h.fields.late,
                            h.fields.accepts.clone(),
                            h.submissions.get(&user.id).map(|s| s.file.clone()),
                            h.returns.contains_key(&user.id),
                        )
                    })
                })
                .flatten();
            let Some((targeted, due, late_ok, accepts, previous, returned)) = found else {
                return Err(unknown(handin, &room));
            };
            if !targeted {
                return Err(unknown(handin, &room));
            }
            if returned {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    "your work was returned: it can no longer be replaced",
                ));
            }
            let late = now > due;
            if late && (previous.is_some() || !late_ok) {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    if previous.is_some() {
                        "the deadline passed: your work can no longer be replaced"
                    } else {
                        "the deadline passed and the teacher takes no late work"
                    },
                ));
            }
            let class = room.name().class().to_owned();
            let attached = attach(s, &user.id, &file, &class, &user.id).await?;
            let families: Vec<FileKind> = accepts
                .iter()
                .filter_map(|a| serde_json::from_value(serde_json::Value::String(a.clone())).ok())
                .collect();
            if !FileKind::of_mime(&attached.mime).satisfies(&families) {
                let _ = s.hub.files.delete(&attached).await;
                return Err(invalid(format!(
                    "this hand-in takes {}; the file is {}",
                    accepts.join(", "),
                    attached.mime
                )));
            }
            let fields = SubmitFields {
                handin,
                file: attached.clone(),
                late,
            };
            match common::write_durable(s, id, &room, SUBMIT, &fields, None).await {
                Ok(posted) => {
                    // The replaced file is nobody's any more.
                    if let Some(old) = previous.filter(|old| old.id != attached.id) {
                        if let Err(err) = s.hub.files.delete(&old).await {
                            tracing::warn!(error = %err, "replaced hand-in file not deleted");
                        }
                    }
                    Ok(Some(protocol::ok(id, &posted)))
                }
                Err(refusal) => {
                    let _ = s.hub.files.delete(&attached).await;
                    Err(refusal)
                }
            }
        }
        Request::HandinReturn {
            id,
            room,
            handin,
            pupil,
            file,
            comment,
        } => {
            check_len("comment", &comment, MAX_COMMENT_LEN)?;
            if file.is_none() && comment.trim().is_empty() {
                return Err(invalid("return a file, a comment or both"));
            }
            let room = open(s, &room, Action::Moderate).await?;
            if !s.allowed_in(&room, Action::Moderate) {
                return Err(forbidden(room.name(), Action::Moderate));
            }
            let user = s.user()?.clone();
            let found = room
                .with_state(|h: &mut Handins, _| {
                    h.all.get(&handin).map(|h| {
                        (
                            h.targets(&pupil),
                            h.returns.get(&pupil).and_then(|r| r.file.clone()),
                            h.fields.title.clone(),
                        )
                    })
                })
                .flatten();
            let Some((true, previous, title)) = found else {
                return Err(unknown(handin, &room));
            };
            let class = room.name().class().to_owned();
            let attached = match &file {
                Some(file) => Some(attach(s, &user.id, file, &class, &pupil).await?),
                None => None,
            };
            let fields = ReturnFields {
                handin,
                pupil: pupil.clone(),
                file: attached.clone(),
                comment,
            };
            let posted = match common::write_durable(s, id, &room, RETURN, &fields, None).await {
                Ok(posted) => posted,
                Err(refusal) => {
                    if let Some(attached) = &attached {
                        let _ = s.hub.files.delete(attached).await;
                    }
                    return Err(refusal);
                }
            };
            if let Some(old) =
                previous.filter(|old| Some(&old.id) != attached.as_ref().map(|a| &a.id))
            {
                if let Err(err) = s.hub.files.delete(&old).await {
                    tracing::warn!(error = %err, "replaced correction file not deleted");
                }
            }
            // The pupil and their parents are told (not what it says).
            let index = s.hub.directory.current();
            let mut told = vec![(pupil.clone(), Role::Student)];
            told.extend(index.parents_of(&pupil).map(|p| (p.id.clone(), p.role)));
            let notice = crate::kinds::inbox::NotifyFields {
                what: "handin_returned".to_owned(),
                room: room.name().to_string(),
                at: Some(handin),
                title,
                preview: None,
                by: Some(user),
                hold_until: None,
                urgent: false,
            };
            let key = format!("handin-return-{class}-{}", posted.offset);
            crate::kinds::inbox::notify_many(s.hub.clone(), told, notice, key);
            Ok(Some(protocol::ok(id, &posted)))
        }
        Request::Handins { id, room } => {
            let room = open(s, &room, Action::Read).await?;
            let user = s.user()?.clone();
            let children = s.children_ref().to_vec();
            let viewer = Viewer {
                user: &user,
                children: &children,
                moderator: s.home_moderator(&room),
            };
            let index = s.hub.directory.current();
            let names = |id: &str| index.person(id).map(|p| p.name.clone());
            let handins = room
                .with_state(|h: &mut Handins, _| {
                    h.all
                        .values()
                        .rev()
                        .filter(|h| h.seen_by(&viewer))
                        .map(|h| view(h, &viewer, &names))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            let name = room.name().to_string();
            s.release_unjoined(&room);
            Ok(Some(protocol::ok(
                id,
                &HandinsOk {
                    room: name,
                    handins,
                },
            )))
        }
        Request::HandinStatus { id, room, handin } => {
            let room = open(s, &room, Action::Moderate).await?;
            if !s.allowed_in(&room, Action::Moderate) {
                s.release_unjoined(&room);
                return Err(forbidden(room.name(), Action::Moderate));
            }
            let user = s.user()?.clone();
            let viewer = Viewer {
                user: &user,
                children: &[],
                moderator: true,
            };
            let index = s.hub.directory.current();
            let names = |id: &str| index.person(id).map(|p| p.name.clone());
            let found = room
                .with_state(|h: &mut Handins, _| {
                    h.all.get(&handin).map(|h| {
                        let rows = h
                            .fields
                            .pupils
                            .iter()
                            .map(|p| row(h, p, names(p).as_deref()))
                            .collect::<Vec<_>>();
                        (view(h, &viewer, &names), rows)
                    })
                })
                .flatten();
            let name = room.name().to_string();
            s.release_unjoined(&room);
            let Some((handin, mut pupils)) = found else {
                return Err(unknown(handin, &room));
            };
            pupils.sort_by(|a, b| a.pupil.name.cmp(&b.pupil.name));
            Ok(Some(protocol::ok(
                id,
                &StatusOk {
                    room: name,
                    handin,
                    pupils,
                },
            )))
        }
    }
}

/// Moves the user's finished upload `file` under the class, about
/// `subject`: `unknown_target` if there is no such upload of theirs.
async fn attach(
    s: &Session,
    owner: &str,
    file: &str,
    class: &str,
    subject: &str,
) -> Result<FileRef, Refusal> {
    s.hub
        .files
        .attach(owner, file, class, subject)
        .await
        .map_err(|err| match err {
            crate::files::FilesError::NotFound => Refusal::new(
                ErrorCode::UnknownTarget,
                format!("no finished upload {file} of yours (finish it with POST /files/uploads/{file}/done)"),
            ),
            err => {
                tracing::error!(error = %err, "attaching a file failed");
                Refusal::new(ErrorCode::StorageError, "the file store failed; retry")
            }
        })
}
