//! Shared-notes data of protocol v1. The y-protocols messages themselves
//! travel opaque (`yjs.data`); `crate::notes` reads them.

use serde::{Deserialize, Serialize};

use super::UserInfo;

/// How `note_export` renders a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// The `content` text as it is.
    Text,
    /// A header (label, who validated, when), then the `content` text.
    Markdown,
    /// The whole state as one Yjs v1 update (`bin`).
    Yjs,
}

/// A validated version of a note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteVersionInfo {
    pub version: u32,
    pub label: String,
    pub by: UserInfo,
    pub ts: u64,
    /// The event that made the version; it includes every update before.
    pub offset: u64,
}

/// Data of the `ok` reply to `note_versions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteVersions {
    pub versions: Vec<NoteVersionInfo>,
}

/// Data of the `ok` reply to `note_export`: `content` is a `str`, or a
/// `bin` for [`ExportFormat::Yjs`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoteExport {
    pub format: ExportFormat,
    pub content: rmpv::Value,
}

/// A y-protocols message from the server (`yjs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct YjsFrame {
    pub room: String,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}
