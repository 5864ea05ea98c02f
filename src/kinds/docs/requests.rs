//! The document space's requests: creating folders (`doc_folder`),
//! adding and removing documents (`doc_add`, `doc_remove`), whether
//! pupils may share (`docs_config`), each posted like a message and acked
//! once durable; and the listing (`docs`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::state::{AddFields, ConfigFields, Doc, Docs, Folder, FolderFields, RemoveFields};
use super::{ADD, CONFIG, FOLDER, NAME, PUPILS_FOLDER, REMOVE};
use crate::files::FilesError;
use crate::kinds::common;
use crate::protocol::{self, ErrorCode, Role};
use crate::room::policy::Action;
use crate::room::{Room, Viewer};
use crate::session::kind::{Handled, KindRequest};
use crate::session::{forbidden, Refusal, Session};

pub(super) const TYPES: &[&str] = &["docs", "doc_folder", "doc_add", "doc_remove", "docs_config"];

/// Longest folder id, in bytes (of `a-z`, `0-9` and `-`).
pub const MAX_FOLDER_ID_LEN: usize = 32;
/// Longest folder or document title, in bytes.
pub const MAX_TITLE_LEN: usize = 200;
/// Longest lesson name, in bytes.
pub const MAX_LESSON_LEN: usize = 100;
/// Folders a class's teachers may create.
pub const MAX_FOLDERS: usize = 200;
/// Current documents in one space: the `docs` reply lists them all, and
/// must stay well under a frame's budget (a class keeps a few hundred).
pub const MAX_DOCS: usize = 2_000;
/// Longest idempotency key, in bytes (as for `post`).
const MAX_KEY_LEN: usize = 64;

/// The document space's requests, as a client sends them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// The folders and current documents the user may see.
    Docs {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
    },
    /// A new folder (teachers of the class and staff).
    DocFolder {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        folder: String,
        title: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<String>,
    },
    /// Attaches the uploaded file `file` (its id from the upload) as a
    /// document of `folder` ("" or absent: the root).
    DocAdd {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        file: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        folder: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entry: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lesson: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// Removes document `doc` (its `doc_add` offset); its bytes are
    /// deleted once the removal is durable.
    DocRemove {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        doc: u64,
    },
    /// Whether pupils may add to their folder.
    DocsConfig {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        pupils_share: bool,
    },
}

/// The `docs` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocsOk {
    pub room: String,
    pub pupils_share: bool,
    pub folders: Vec<Folder>,
    pub docs: Vec<Doc>,
}

pub(super) async fn handle(s: &mut Session, request: KindRequest) -> Handled {
    let KindRequest::Frame { frame, .. } = request else {
        return Err(crate::session::kind::not_owned(NAME, request.type_name()));
    };
    let request: Request = protocol::decode_kind_request(&frame, TYPES)
        .map_err(|e| Refusal::new(e.code(), e.to_string()))?;
    match request {
        Request::Docs { id, room } => list(s, id, &room).await,
        Request::DocFolder {
            id,
            room,
            folder,
            title,
            parent,
        } => {
            let room = joined_space(s, &room)?;
            if !s.is_moderator(&room) {
                return Err(teachers_only(&room, "create folders"));
            }
            if !valid_folder_id(&folder) {
                return Err(invalid(format!(
                    "folder must be 1 to {MAX_FOLDER_ID_LEN} of a-z, 0-9 and -"
                )));
            }
            check_title(&title)?;
            let (exists, parent_known, count) = room
                .with_state(|docs: &mut Docs, _| {
                    (
                        docs.has_folder(&folder),
                        parent.as_deref().is_none_or(|p| docs.has_folder(p)),
                        docs.folder_count(),
                    )
                })
                .unwrap_or((false, false, 0));
            if folder == PUPILS_FOLDER || exists {
                return Err(invalid(format!("folder {folder} exists already")));
            }
            if parent.as_deref() == Some(PUPILS_FOLDER) {
                // Everything under it would be pupils' work, hidden from
                // parents: the pupils' folder stays flat.
                return Err(invalid("the pupils' folder has no subfolders"));
            }
            if parent.as_deref() == Some("") || !parent_known {
                return Err(Refusal::new(
                    ErrorCode::UnknownTarget,
                    format!(
                        "no folder {:?} in {}",
                        parent.unwrap_or_default(),
                        room.name()
                    ),
                ));
            }
            if count >= MAX_FOLDERS {
                return Err(invalid(format!(
                    "a space holds at most {MAX_FOLDERS} folders"
                )));
            }
            let fields = FolderFields {
                folder,
                title,
                parent,
            };
            common::write(s, id, &room, FOLDER, &fields, None).await
        }
        Request::DocAdd {
            id,
            room,
            file,
            folder,
            title,
            entry,
            lesson,
            key,
        } => {
            if key
                .as_ref()
                .is_some_and(|k| k.is_empty() || k.len() > MAX_KEY_LEN)
            {
                return Err(invalid(format!("key must be 1 to {MAX_KEY_LEN} bytes")));
            }
            let room = joined_space(s, &room)?;
            add(
                s,
                id,
                &room,
                file,
                folder.unwrap_or_default(),
                title,
                entry,
                lesson,
                key,
            )
            .await
        }
        Request::DocRemove { id, room, doc } => {
            let room = joined_space(s, &room)?;
            remove(s, id, &room, doc).await
        }
        Request::DocsConfig {
            id,
            room,
            pupils_share,
        } => {
            let room = joined_space(s, &room)?;
            if !s.is_moderator(&room) {
                return Err(teachers_only(&room, "configure the space"));
            }
            common::write(s, id, &room, CONFIG, &ConfigFields { pupils_share }, None).await
        }
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::InvalidField, message)
}

fn teachers_only(room: &Room, what: &str) -> Refusal {
    Refusal::new(
        ErrorCode::Forbidden,
        format!(
            "only the class's teachers (and staff) {what} in {}",
            room.name()
        ),
    )
}

/// A folder id: 1 to 32 of `a-z`, `0-9`, `-`.
fn valid_folder_id(folder: &str) -> bool {
    !folder.is_empty()
        && folder.len() <= MAX_FOLDER_ID_LEN
        && folder
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
}

fn check_title(title: &str) -> Result<(), Refusal> {
    if title.trim().is_empty() || title.len() > MAX_TITLE_LEN {
        return Err(invalid(format!("title must be 1 to {MAX_TITLE_LEN} bytes")));
    }
    Ok(())
}

/// The joined document space `room`.
fn joined_space(s: &mut Session, room: &str) -> Result<Arc<Room>, Refusal> {
    let room = s.joined_room(room)?;
    if room.name().kind().name() != NAME {
        return Err(invalid(format!("{} is not a document space", room.name())));
    }
    Ok(room)
}

/// Why the file store refused to attach: an id the user has no staged
/// file under is an unknown target; a store failure is storage's.
fn files_refusal(err: FilesError) -> Refusal {
    match err {
        FilesError::NotFound => Refusal::new(
            ErrorCode::UnknownTarget,
            "no uploaded file of yours with that id: upload it (POST /files/uploads) first",
        ),
        err => {
            tracing::error!(error = %err, "attaching a document failed");
            Refusal::new(
                ErrorCode::StorageError,
                "the file store failed; retry later",
            )
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn add(
    s: &mut Session,
    id: Option<u32>,
    room: &Arc<Room>,
    file: String,
    folder: String,
    title: Option<String>,
    entry: Option<u64>,
    lesson: Option<String>,
    key: Option<String>,
) -> Handled {
    let user = s.user()?.clone();
    let teacher = s.is_moderator(room);
    if !teacher {
        if user.role != Role::Student || !s.allowed_in(room, Action::Post) {
            return Err(teachers_only(room, "add documents"));
        }
        if folder != PUPILS_FOLDER {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                format!("pupils add only to the pupils' folder ({PUPILS_FOLDER})"),
            ));
        }
    }
    if let Some(title) = &title {
        check_title(title)?;
    }
    if lesson
        .as_ref()
        .is_some_and(|l| l.trim().is_empty() || l.len() > MAX_LESSON_LEN)
    {
        return Err(invalid(format!(
            "lesson must be 1 to {MAX_LESSON_LEN} bytes"
        )));
    }
    let (known, share, count, holding) = room
        .with_state(|docs: &mut Docs, _| {
            (
                docs.has_folder(&folder),
                docs.pupils_share(),
                docs.doc_count(),
                docs.holding(&file),
            )
        })
        .unwrap_or((false, false, 0, None));
    if let Some(doc) = holding {
        // A retry of an add that went through gets its ack; anything
        // else would be a second document on the same bytes.
        if let Some(key) = &key {
            if s.hub
                .ack_known(room, &user, key, &s.out, id)
                .await
                .map_err(Refusal::from)?
            {
                return Ok(None);
            }
        }
        return Err(Refusal::new(
            ErrorCode::UnknownTarget,
            format!("file {file} is document {doc} already"),
        ));
    }
    if !teacher && !share {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            format!(
                "pupils' sharing is off in {}: a teacher turns it on",
                room.name()
            ),
        ));
    }
    if !known {
        return Err(Refusal::new(
            ErrorCode::UnknownTarget,
            format!("no folder {folder:?} in {}", room.name()),
        ));
    }
    if count >= MAX_DOCS {
        return Err(invalid(format!(
            "a space holds at most {MAX_DOCS} documents"
        )));
    }
    // Refused before the file moves: a muted or banned pupil's upload
    // stays theirs, to attach later.
    s.check_moderation(room, &user.id, true, None)?;
    let class = room.name().class().to_owned();
    // Whom the file is about: a pupil's work is theirs (their erasure
    // deletes it); a teacher's resource is the class's (it outlives them).
    let subject = if user.role == Role::Student {
        user.id.clone()
    } else {
        format!("class:{class}")
    };
    let attached = s
        .hub
        .files
        .attach(&user.id, &file, &class, &subject)
        .await
        .map_err(files_refusal)?;
    let fields = AddFields {
        title: title.unwrap_or_else(|| attached.name.clone()),
        file: attached,
        folder,
        entry,
        lesson,
    };
    match common::write_durable(s, id, room, ADD, &fields, key.as_deref()).await {
        Ok(posted) => Ok(Some(protocol::ok(id, &posted))),
        Err(refusal) => {
            // No event names the file: its bytes would be nobody's.
            if let Err(err) = s.hub.files.delete(&fields.file).await {
                tracing::warn!(error = %err, file = %fields.file.id, "an unposted document's file was not deleted");
            }
            Err(refusal)
        }
    }
}

async fn remove(s: &mut Session, id: Option<u32>, room: &Arc<Room>, doc: u64) -> Handled {
    let user = s.user()?.clone();
    let teacher = s.is_moderator(room);
    // Before looking the document up: a parent learns nothing of what the
    // pupils' folder holds.
    if !teacher && (user.role != Role::Student || !s.allowed_in(room, Action::Post)) {
        return Err(forbidden(room.name(), Action::Post));
    }
    let found = room
        .with_state(|docs: &mut Docs, _| {
            docs.doc(doc).map(|d| {
                (
                    d.by.id.clone(),
                    d.fields.folder.clone(),
                    d.fields.file.clone(),
                )
            })
        })
        .flatten();
    let Some((by, folder, file)) = found else {
        return Err(Refusal::new(
            ErrorCode::UnknownTarget,
            format!("no document {doc} in {}", room.name()),
        ));
    };
    if !teacher && by != user.id {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            format!("document {doc} is {by}'s: pupils remove only their own"),
        ));
    }
    let posted =
        common::write_durable(s, id, room, REMOVE, &RemoveFields { doc, folder }, None).await?;
    // Only once the removal is durable: a document still listed never
    // points at deleted bytes.
    if let Err(err) = s.hub.files.delete(&file).await {
        tracing::warn!(error = %err, file = %file.id, "a removed document's file was not deleted");
    }
    Ok(Some(protocol::ok(id, &posted)))
}

/// The folders and documents the user may see in `room`, without joining.
async fn list(s: &mut Session, id: Option<u32>, room: &str) -> Handled {
    let (name, room) = s.open(room, Action::Read).await?;
    if name.kind().name() != NAME {
        s.release_unjoined(&room);
        return Err(invalid(format!("{name} is not a document space")));
    }
    s.refuse_banned(&room)?;
    let user = s.user()?.clone();
    let children = s.children();
    let viewer = Viewer {
        user: &user,
        children: &children,
        moderator: s.home_moderator(&room),
    };
    let listed = room.with_state(|docs: &mut Docs, _| {
        let (folders, listed) = docs.listing(&viewer);
        (docs.pupils_share(), folders, listed)
    });
    s.release_unjoined(&room);
    let (pupils_share, folders, docs) = listed.unwrap_or_default();
    Ok(Some(protocol::ok(
        id,
        &DocsOk {
            room: name.to_string(),
            pupils_share,
            folders,
            docs,
        },
    )))
}
