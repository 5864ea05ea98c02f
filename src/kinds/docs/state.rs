//! The document space as of the last committed event: its folders, the
//! documents not removed, and whether pupils may share. Derived from the
//! room's events only, like the agenda's items: rebuilt on load, updated
//! by every committed event.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::effect::Effect;
use crate::files::FileRef;
use crate::protocol::{Body, Event, Role, UserInfo};
use crate::room::{Chore, Commit, KindState, Viewer};

use super::{ADD, CONFIG, FOLDER, PUPILS_FOLDER, PUPILS_FOLDER_TITLE, REMOVE};

/// What a `doc_folder` event says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderFields {
    pub folder: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// What a `doc_add` event says. The file reference is whole (its place in
/// the store included): the state is rebuilt from events alone, and a
/// download finds the bytes from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddFields {
    pub file: FileRef,
    /// A folder's id, or "" for the root.
    pub folder: String,
    pub title: String,
    /// The offset of the homework-diary entry it goes with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lesson: Option<String>,
}

/// What a `doc_remove` event says. The folder is repeated so that who is
/// shown the event is decided from the event alone (a pupil's removal of
/// their own shared work is not for parents either).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveFields {
    pub doc: u64,
    pub folder: String,
}

/// What a `docs_config` event says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFields {
    pub pupils_share: bool,
}

/// One folder as the `docs` reply gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Folder {
    pub folder: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// A file as the `docs` reply gives it: what a client shows and asks for
/// (`GET /files/<id>?room=…`), without the store's own path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocFile {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub mime: String,
    pub size: u64,
    pub sha256: String,
}

impl From<&FileRef> for DocFile {
    fn from(f: &FileRef) -> DocFile {
        DocFile {
            id: f.id.clone(),
            name: f.name.clone(),
            mime: f.mime.clone(),
            size: f.size,
            sha256: f.sha256.clone(),
        }
    }
}

/// One document as the `docs` reply gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doc {
    /// The document's id: the offset of its `doc_add` event.
    pub doc: u64,
    pub folder: String,
    pub title: String,
    pub file: DocFile,
    /// Who added it, and when (ms).
    pub by: UserInfo,
    pub ts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lesson: Option<String>,
}

/// A document of the state.
#[derive(Debug, Clone)]
pub struct Stored {
    pub fields: AddFields,
    pub by: UserInfo,
    pub ts: u64,
}

/// The document space of one class.
#[derive(Debug, Default)]
pub struct Docs {
    /// Folders by id, the pupils' one not included (it always exists).
    folders: BTreeMap<String, FolderFields>,
    /// Current documents by id (their `doc_add` offset).
    docs: BTreeMap<u64, Stored>,
    pupils_share: bool,
}

/// Whether `viewer` is shown what is in `folder`: parents are not shown
/// the pupils' folder (their classmates' work is minors' data).
pub fn folder_shown(folder: &str, viewer: &Viewer<'_>) -> bool {
    viewer.user.role != Role::Parent || folder != PUPILS_FOLDER
}

impl Docs {
    /// The space of the stored `events`, in offset order (tombstones and
    /// events that do not decode are skipped).
    pub fn rebuild<'a>(events: impl IntoIterator<Item = &'a Event>) -> Docs {
        let mut docs = Docs::default();
        for event in events {
            docs.apply_event(event);
        }
        docs
    }

    /// Folds one event in. The requests checked it against the state when
    /// they were made; what could still disagree (a folder named twice by
    /// two teachers at once) is settled the same way on every node: the
    /// first one stands.
    pub fn apply_event(&mut self, event: &Event) {
        let Body::Kind(body) = &event.body else {
            return;
        };
        match body.kind.as_str() {
            FOLDER => {
                let Ok(fields) = body.decode::<FolderFields>() else {
                    return;
                };
                if fields.folder != PUPILS_FOLDER && !self.folders.contains_key(&fields.folder) {
                    self.folders.insert(fields.folder.clone(), fields);
                }
            }
            ADD => {
                let Ok(fields) = body.decode::<AddFields>() else {
                    return;
                };
                // One document per file: removing it deletes the bytes,
                // which a second document would still point at.
                if self.holding(&fields.file.id).is_some() {
                    return;
                }
                self.docs.insert(
                    event.offset,
                    Stored {
                        fields,
                        by: event.from.clone(),
                        ts: event.ts,
                    },
                );
            }
            REMOVE => {
                if let Ok(fields) = body.decode::<RemoveFields>() {
                    self.docs.remove(&fields.doc);
                }
            }
            CONFIG => {
                if let Ok(fields) = body.decode::<ConfigFields>() {
                    self.pupils_share = fields.pupils_share;
                }
            }
            _ => {}
        }
    }

    /// Whether pupils may add to their folder.
    pub fn pupils_share(&self) -> bool {
        self.pupils_share
    }

    /// Whether `folder` is the root (""), the pupils' folder or a folder
    /// a teacher created.
    pub fn has_folder(&self, folder: &str) -> bool {
        folder.is_empty() || folder == PUPILS_FOLDER || self.folders.contains_key(folder)
    }

    /// Folders a teacher created.
    pub fn folder_count(&self) -> usize {
        self.folders.len()
    }

    pub fn doc_count(&self) -> usize {
        self.docs.len()
    }

    /// The current document that holds file `file`, if any.
    pub fn holding(&self, file: &str) -> Option<u64> {
        self.docs
            .iter()
            .find(|(_, d)| d.fields.file.id == file)
            .map(|(id, _)| *id)
    }

    /// The current document `doc`.
    pub fn doc(&self, doc: u64) -> Option<&Stored> {
        self.docs.get(&doc)
    }

    /// The folders and current documents `viewer` is shown: folders in id
    /// order (the pupils' first), documents in the order they were added.
    pub fn listing(&self, viewer: &Viewer<'_>) -> (Vec<Folder>, Vec<Doc>) {
        let pupils = Folder {
            folder: PUPILS_FOLDER.to_owned(),
            title: PUPILS_FOLDER_TITLE.to_owned(),
            parent: None,
        };
        let folders = std::iter::once(pupils)
            .chain(self.folders.values().map(|f| Folder {
                folder: f.folder.clone(),
                title: f.title.clone(),
                parent: f.parent.clone(),
            }))
            .filter(|f| folder_shown(&f.folder, viewer))
            .collect();
        let docs = self
            .docs
            .iter()
            .filter(|(_, d)| folder_shown(&d.fields.folder, viewer))
            .map(|(id, d)| Doc {
                doc: *id,
                folder: d.fields.folder.clone(),
                title: d.fields.title.clone(),
                file: DocFile::from(&d.fields.file),
                by: d.by.clone(),
                ts: d.ts,
                entry: d.fields.entry,
                lesson: d.fields.lesson.clone(),
            })
            .collect();
        (folders, docs)
    }
}

impl KindState for Docs {
    fn apply(&mut self, commit: &Commit<'_>, _chores: &mut Vec<Chore>) {
        // An erasure redacts a pupil's `doc_add` (their bytes go with
        // `Files::erase_user`): the document is gone.
        if let Some(Effect::Redact { target, .. }) = commit.effect {
            self.docs.remove(target);
            return;
        }
        if let Ok(crate::protocol::ServerFrame::Event(event)) =
            crate::protocol::decode_server_frame(commit.frame)
        {
            self.apply_event(&event);
        }
    }

    /// A current document's file, if `viewer` is shown its `doc_add`
    /// (the same rule as `RoomKind::shown`): a removed one's is no
    /// longer served, even to those who saw it.
    fn file(&self, id: &str, viewer: &Viewer<'_>) -> Option<FileRef> {
        self.docs
            .values()
            .find(|d| d.fields.file.id == id && folder_shown(&d.fields.folder, viewer))
            .map(|d| d.fields.file.clone())
    }
}
