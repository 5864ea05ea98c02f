//! What the directory holds, as the ENT sends it (JSON on the admin API,
//! MessagePack on disk): people and classes. Teaching assignments are a
//! teacher's `teaches`, parent–child links a parent's `children`, so that a
//! person's record is the unit a sync replaces (see `protocol/directory.openapi.yaml`).

use serde::{Deserialize, Serialize};

use crate::protocol::Role;

/// One person of the school.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Person {
    /// The ENT's id: what tokens carry in `sub`.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// A pupil: their class first, then their groups (language groups,
    /// options). Staff and parents: empty (staff see every class; a
    /// parent's classes are their children's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// A teacher: the classes and groups they teach, with the subject.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teaches: Vec<Teaching>,
    /// A parent: their children's ids (pupils of the directory).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
}

/// A teaching assignment: this teacher teaches `subject` to `class` (a
/// class or a group).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Teaching {
    pub class: String,
    pub subject: String,
}

/// A class or a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Class {
    /// As in room names: 1 to 32 of `A-Z a-z 0-9 - _`.
    pub id: String,
    /// Shown name (« 3e B », « Espagnol LV2 — 3e »); the id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The level (« 6e », « 3e », « 2nde »): a diffusion list may target
    /// every class of a level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// A group (pupils of several classes, or part of one) rather than a
    /// class. A pupil's first class must be a class, not a group.
    #[serde(default)]
    pub group: bool,
}

/// Whether a sync is the whole directory or changes to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The whole directory: whatever it does not list is removed.
    Full,
    /// Upserts and removals on top of the current directory.
    Delta,
}

/// One sync, applied whole or not at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sync {
    /// The ENT's version of its directory: greater than the current one.
    /// Sending the version already applied with the same content again is
    /// a no-op (a retry); with other content, a conflict.
    pub version: u64,
    pub mode: Mode,
    /// A delta computed against version `base`: refused unless the
    /// directory is at `base` (so it is not applied over a newer state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<u64>,
    /// People added or replaced whole.
    #[serde(default)]
    pub people: Vec<Person>,
    /// Classes and groups added or replaced whole.
    #[serde(default)]
    pub classes: Vec<Class>,
    #[serde(default)]
    pub remove: Removals,
}

/// What a delta removes (ids). A full sync has none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Removals {
    #[serde(default)]
    pub people: Vec<String>,
    #[serde(default)]
    pub classes: Vec<String>,
}

/// The directory as stored: the last version applied, its digest (to
/// recognise a retry), and its content sorted by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub version: u64,
    /// Digest of the last sync's canonical JSON (hex).
    pub digest: String,
    pub people: Vec<Person>,
    pub classes: Vec<Class>,
}
