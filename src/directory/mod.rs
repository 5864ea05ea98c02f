//! The school directory: who exists, in which classes and groups, who
//! teaches what to whom, whose parent is whom. The ENT feeds it through
//! the admin API (`admin.rs`, `PUT /admin/directory`) or a file
//! (`preau directory import`); messages and diffusion lists read it to
//! know who may be written to, and to whom a list goes.
//!
//! **Tokens and the directory.** A token says who the user is; once the
//! directory holds anything (version > 0), it says what they may reach:
//! at `hello` the token's `classes` and `children` are replaced by the
//! directory's ([`Index::claims_for`]), a user it does not list is refused
//! (`unauthorized`, close 4001), and so is a token whose role differs
//! from it. Before
//! the first sync, tokens alone decide, as they always did. When a sync
//! changes what someone may reach (removed, moved to another class, a
//! parent's child added), their open connections are closed with
//! `4006 directory_changed`: they come back with what the directory says
//! now, so a pupil who left loses access at once.
//!
//! **Atomic, versioned syncs.** A sync ([`Sync`]) is checked whole
//! against the directory it would produce (every reference resolved)
//! before anything is written; then the new directory is one sled value,
//! written and flushed, then swapped in memory. So a sync interrupted
//! halfway (a dropped connection, a killed process) leaves the previous
//! version whole, and readers never see half of one. Versions only go up;
//! the same version with the same content again is a no-op, so the ENT
//! may retry blindly.

mod import;
mod model;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::auth::{Child, Claims};
use crate::protocol::{valid_class, Role};
use crate::store::{Store, StoreError};

pub use import::{parse_file, ImportError};
pub use model::{Class, Mode, Person, Removals, Stored, Sync, Teaching};

/// The class segment reserved for rooms that belong to no class (a
/// conversation, a user's notification feed): never a class's id.
pub const NO_CLASS: &str = crate::protocol::NO_CLASS;
/// Bounds of a sync, and of what the directory holds. A region's largest
/// lycée has about 2,500 pupils and twice as many parents.
pub const MAX_PEOPLE: usize = 200_000;
pub const MAX_CLASSES: usize = 10_000;
/// Per person: classes, teachings, children.
pub const MAX_PER_PERSON: usize = 64;
const MAX_ID_LEN: usize = 128;
const MAX_NAME_LEN: usize = 100;
const MAX_SUBJECT_LEN: usize = 100;
const MAX_LEVEL_LEN: usize = 32;
/// Problems listed in one refusal.
const MAX_PROBLEMS: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("the sync is not valid ({} problems)", .0.len())]
    Invalid(Vec<Problem>),
    #[error("version {given} conflicts with the directory's version {current}: {why}")]
    Conflict {
        given: u64,
        current: u64,
        why: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored directory unreadable: {0}")]
    Corrupt(String),
}

/// One thing wrong with a sync: where (`people[3].classes[1]`) and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub at: String,
    pub message: String,
}

/// What a sync did.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub version: u64,
    /// False for a retry of the version already applied.
    pub applied: bool,
    pub people: usize,
    pub classes: usize,
    /// Users whose access changed (removed included): their connections
    /// were closed.
    #[serde(skip)]
    pub changed: Vec<String>,
    /// How many of them.
    pub access_changed: usize,
}

/// What the directory says a user may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub role: Role,
    pub classes: Vec<String>,
    pub children: Vec<Child>,
}

/// Why a token is refused against the directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the school's directory does not list user {0:?}")]
    Unknown(String),
    #[error("the token says {}, the school's directory says {}", .token.as_str(), .directory.as_str())]
    Role { token: Role, directory: Role },
}

/// The directory, shared by the node: the current version in memory,
/// written through to the store.
pub struct Directory {
    current: RwLock<Arc<Index>>,
    /// One sync at a time.
    writing: Mutex<()>,
}

impl Directory {
    /// The stored directory, or an empty one. Blocking.
    pub fn open(store: &Store) -> Result<Directory, DirectoryError> {
        let stored = match store.directory()? {
            Some(bytes) => rmp_serde::from_slice::<Stored>(&bytes)
                .map_err(|e| DirectoryError::Corrupt(e.to_string()))?,
            None => Stored::default(),
        };
        Ok(Directory {
            current: RwLock::new(Arc::new(Index::new(stored))),
            writing: Mutex::new(()),
        })
    }

    /// The current version (a snapshot: later syncs do not change it).
    pub fn current(&self) -> Arc<Index> {
        self.current.read().clone()
    }

    /// Checks `sync` and applies it whole, durably, or refuses it whole.
    /// Blocking.
    pub fn apply(&self, store: &Store, sync: Sync) -> Result<Applied, DirectoryError> {
        let _writing = self.writing.lock();
        if sync.version == 0 {
            return Err(DirectoryError::Invalid(vec![Problem {
                at: "version".to_owned(),
                message: "versions start at 1".to_owned(),
            }]));
        }
        let old = self.current();
        let digest = digest(&sync);
        if sync.version <= old.stored.version {
            if sync.version == old.stored.version && digest == old.stored.digest {
                return Ok(Applied {
                    version: old.stored.version,
                    applied: false,
                    people: old.people.len(),
                    classes: old.classes.len(),
                    changed: Vec::new(),
                    access_changed: 0,
                });
            }
            return Err(DirectoryError::Conflict {
                given: sync.version,
                current: old.stored.version,
                why: if sync.version == old.stored.version {
                    "that version was applied with other content"
                } else {
                    "versions only go up"
                },
            });
        }
        if let Some(base) = sync.base {
            if base != old.stored.version {
                return Err(DirectoryError::Conflict {
                    given: sync.version,
                    current: old.stored.version,
                    why: "the sync was computed against another version (base)",
                });
            }
        }
        let stored = merged(&old.stored, sync, digest)?;
        let bytes =
            rmp_serde::to_vec_named(&stored).map_err(|e| DirectoryError::Corrupt(e.to_string()))?;
        store.set_directory(&bytes)?;
        let new = Arc::new(Index::new(stored));
        let changed = changed_access(&old, &new);
        *self.current.write() = new.clone();
        Ok(Applied {
            version: new.stored.version,
            applied: true,
            people: new.people.len(),
            classes: new.classes.len(),
            access_changed: changed.len(),
            changed,
        })
    }
}

impl Directory {
    /// The current version, encoded as stored (for other nodes).
    pub fn encoded(&self) -> Option<Vec<u8>> {
        let current = self.current();
        current
            .active()
            .then(|| rmp_serde::to_vec_named(&current.stored).ok())
            .flatten()
    }

    /// Installs a version another node applied (`encoded` there), if it
    /// is later than this one; returns the users whose access changed and
    /// whether this node's directory was active before. Blocking.
    pub fn install(
        &self,
        store: &Store,
        bytes: &[u8],
    ) -> Result<Option<(bool, Vec<String>)>, DirectoryError> {
        let stored: Stored =
            rmp_serde::from_slice(bytes).map_err(|e| DirectoryError::Corrupt(e.to_string()))?;
        let _writing = self.writing.lock();
        let old = self.current();
        if stored.version <= old.stored.version {
            return Ok(None);
        }
        store.set_directory(bytes)?;
        let new = Arc::new(Index::new(stored));
        let changed = changed_access(&old, &new);
        *self.current.write() = new;
        Ok(Some((old.active(), changed)))
    }
}

/// One version of the directory, with the lookups messages and lists need.
pub struct Index {
    stored: Stored,
    people: HashMap<String, usize>,
    classes: HashMap<String, usize>,
    /// Class or group → its pupils.
    pupils: HashMap<String, Vec<usize>>,
    /// Class or group → its teachers (with the subject).
    teachers: HashMap<String, Vec<(usize, String)>>,
    /// Pupil → their parents.
    parents: HashMap<String, Vec<usize>>,
    /// Level → its classes.
    levels: BTreeMap<String, Vec<String>>,
}

impl Index {
    fn new(stored: Stored) -> Index {
        let mut index = Index {
            people: HashMap::with_capacity(stored.people.len()),
            classes: HashMap::with_capacity(stored.classes.len()),
            pupils: HashMap::new(),
            teachers: HashMap::new(),
            parents: HashMap::new(),
            levels: BTreeMap::new(),
            stored: Stored::default(),
        };
        for (i, class) in stored.classes.iter().enumerate() {
            index.classes.insert(class.id.clone(), i);
            if let Some(level) = &class.level {
                index
                    .levels
                    .entry(level.clone())
                    .or_default()
                    .push(class.id.clone());
            }
        }
        for (i, person) in stored.people.iter().enumerate() {
            index.people.insert(person.id.clone(), i);
            match person.role {
                Role::Student => {
                    for class in &person.classes {
                        index.pupils.entry(class.clone()).or_default().push(i);
                    }
                }
                Role::Teacher => {
                    for t in &person.teaches {
                        index
                            .teachers
                            .entry(t.class.clone())
                            .or_default()
                            .push((i, t.subject.clone()));
                    }
                }
                Role::Parent => {
                    for child in &person.children {
                        index.parents.entry(child.clone()).or_default().push(i);
                    }
                }
                Role::Staff => {}
            }
        }
        index.stored = stored;
        index
    }

    /// Whether the directory was ever synced: only then does it decide.
    pub fn active(&self) -> bool {
        self.stored.version > 0
    }

    pub fn version(&self) -> u64 {
        self.stored.version
    }

    pub fn person(&self, id: &str) -> Option<&Person> {
        self.people.get(id).map(|&i| &self.stored.people[i])
    }

    pub fn class(&self, id: &str) -> Option<&Class> {
        self.classes.get(id).map(|&i| &self.stored.classes[i])
    }

    pub fn people(&self) -> &[Person] {
        &self.stored.people
    }

    pub fn classes(&self) -> &[Class] {
        &self.stored.classes
    }

    /// The pupils of a class or group.
    pub fn pupils_of(&self, class: &str) -> impl Iterator<Item = &Person> {
        self.pupils
            .get(class)
            .into_iter()
            .flatten()
            .map(|&i| &self.stored.people[i])
    }

    /// The teachers of a class or group, each with the subject.
    pub fn teachers_of(&self, class: &str) -> impl Iterator<Item = (&Person, &str)> {
        self.teachers
            .get(class)
            .into_iter()
            .flatten()
            .map(|(i, subject)| (&self.stored.people[*i], subject.as_str()))
    }

    /// A pupil's parents.
    pub fn parents_of(&self, pupil: &str) -> impl Iterator<Item = &Person> {
        self.parents
            .get(pupil)
            .into_iter()
            .flatten()
            .map(|&i| &self.stored.people[i])
    }

    /// The classes (not groups) of a level.
    pub fn classes_of_level(&self, level: &str) -> &[String] {
        self.levels.get(level).map_or(&[], |c| c.as_slice())
    }

    /// Everyone with `role`.
    pub fn with_role(&self, role: Role) -> impl Iterator<Item = &Person> {
        self.stored.people.iter().filter(move |p| p.role == role)
    }

    /// What `id` may reach: their classes and groups (a teacher's, the
    /// ones they teach; a parent's, their children's) and a parent's
    /// children.
    pub fn access(&self, id: &str) -> Option<Access> {
        let person = self.person(id)?;
        let mut classes: BTreeSet<&str> = person.classes.iter().map(String::as_str).collect();
        let mut children = Vec::new();
        match person.role {
            Role::Teacher => classes.extend(person.teaches.iter().map(|t| t.class.as_str())),
            Role::Parent => {
                for child in &person.children {
                    let Some(pupil) = self.person(child) else {
                        continue;
                    };
                    classes.extend(pupil.classes.iter().map(String::as_str));
                    children.push(Child {
                        id: pupil.id.clone(),
                        name: Some(pupil.name.clone()),
                        classes: pupil.classes.clone(),
                    });
                }
            }
            Role::Student | Role::Staff => {}
        }
        // A pupil's own class first (the app opens it first).
        let mut ordered: Vec<String> = person.classes.clone();
        ordered.extend(
            classes
                .into_iter()
                .filter(|c| !person.classes.iter().any(|p| p == c))
                .map(str::to_owned),
        );
        Some(Access {
            role: person.role,
            classes: ordered,
            children,
        })
    }

    /// The claims a session runs with: the token's, with `classes` and
    /// `children` from the directory once it is active.
    pub fn claims_for(&self, claims: &Claims) -> Result<Claims, Refused> {
        if !self.active() || claims.sub.starts_with(crate::auth::NODE_USER_PREFIX) {
            return Ok(claims.clone());
        }
        let access = self
            .access(&claims.sub)
            .ok_or_else(|| Refused::Unknown(claims.sub.clone()))?;
        if access.role != claims.role {
            return Err(Refused::Role {
                token: claims.role,
                directory: access.role,
            });
        }
        let mut effective = claims.clone();
        effective.classes = access.classes;
        effective.children = access.children;
        Ok(effective)
    }
}

/// The digest of a sync's content, to tell a retry from a conflict.
fn digest(sync: &Sync) -> String {
    let bytes = serde_json::to_vec(sync).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// The directory `sync` makes of `old`, checked whole.
fn merged(old: &Stored, sync: Sync, digest: String) -> Result<Stored, DirectoryError> {
    let mut problems = Problems::default();
    check_sync(&sync, &mut problems);
    let (mut people, mut classes): (BTreeMap<String, Person>, BTreeMap<String, Class>) =
        match sync.mode {
            Mode::Full => (BTreeMap::new(), BTreeMap::new()),
            Mode::Delta => (
                old.people
                    .iter()
                    .map(|p| (p.id.clone(), p.clone()))
                    .collect(),
                old.classes
                    .iter()
                    .map(|c| (c.id.clone(), c.clone()))
                    .collect(),
            ),
        };
    for id in &sync.remove.people {
        people.remove(id);
    }
    for id in &sync.remove.classes {
        classes.remove(id);
    }
    for person in sync.people {
        people.insert(person.id.clone(), person);
    }
    for class in sync.classes {
        classes.insert(class.id.clone(), class);
    }
    if people.len() > MAX_PEOPLE {
        problems.push("people", format!("at most {MAX_PEOPLE} people"));
    }
    if classes.len() > MAX_CLASSES {
        problems.push(
            "classes",
            format!("at most {MAX_CLASSES} classes and groups"),
        );
    }
    check_references(&people, &classes, &mut problems);
    if !problems.0.is_empty() {
        return Err(DirectoryError::Invalid(problems.0));
    }
    Ok(Stored {
        version: sync.version,
        digest,
        people: people.into_values().collect(),
        classes: classes.into_values().collect(),
    })
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, at: impl Into<String>, message: impl Into<String>) {
        if self.0.len() < MAX_PROBLEMS {
            self.0.push(Problem {
                at: at.into(),
                message: message.into(),
            });
        }
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && !id.chars().any(char::is_control)
}

fn valid_text(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

/// What a sync says, each record alone: shapes, bounds, duplicates.
fn check_sync(sync: &Sync, problems: &mut Problems) {
    if sync.version == 0 {
        problems.push("version", "versions start at 1");
    }
    if sync.mode == Mode::Full
        && (!sync.remove.people.is_empty() || !sync.remove.classes.is_empty())
    {
        problems.push(
            "remove",
            "a full sync removes by leaving out, not by remove",
        );
    }
    let mut seen = BTreeSet::new();
    for (i, person) in sync.people.iter().enumerate() {
        let at = format!("people[{i}]");
        if !valid_id(&person.id) {
            problems.push(format!("{at}.id"), "1 to 128 bytes, no control characters");
        } else if !seen.insert(person.id.as_str()) {
            problems.push(
                format!("{at}.id"),
                format!("{:?} is listed twice", person.id),
            );
        }
        if !valid_text(&person.name, MAX_NAME_LEN) {
            problems.push(format!("{at}.name"), "1 to 100 bytes, not blank");
        }
        if person.classes.len() > MAX_PER_PERSON
            || person.teaches.len() > MAX_PER_PERSON
            || person.children.len() > MAX_PER_PERSON
        {
            problems.push(
                at.clone(),
                format!("at most {MAX_PER_PERSON} classes, teachings and children"),
            );
        }
        match person.role {
            Role::Student if person.classes.is_empty() => {
                problems.push(format!("{at}.classes"), "a pupil is in a class")
            }
            Role::Teacher => {}
            _ if !person.teaches.is_empty() => {
                problems.push(format!("{at}.teaches"), "only teachers teach")
            }
            _ => {}
        }
        if person.role != Role::Parent && !person.children.is_empty() {
            problems.push(format!("{at}.children"), "only parents have children here");
        }
        if matches!(person.role, Role::Parent) && !person.classes.is_empty() {
            problems.push(
                format!("{at}.classes"),
                "a parent's classes are their children's: list children",
            );
        }
        for (j, t) in person.teaches.iter().enumerate() {
            if !valid_text(&t.subject, MAX_SUBJECT_LEN) {
                problems.push(format!("{at}.teaches[{j}].subject"), "1 to 100 bytes");
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (i, class) in sync.classes.iter().enumerate() {
        let at = format!("classes[{i}]");
        if !valid_class(&class.id) || class.id == NO_CLASS {
            problems.push(
                format!("{at}.id"),
                "1 to 32 of A-Z a-z 0-9 - _ (and not \"_\", which is reserved)",
            );
        } else if !seen.insert(class.id.as_str()) {
            problems.push(
                format!("{at}.id"),
                format!("{:?} is listed twice", class.id),
            );
        }
        if class
            .name
            .as_deref()
            .is_some_and(|n| !valid_text(n, MAX_NAME_LEN))
        {
            problems.push(format!("{at}.name"), "1 to 100 bytes, not blank");
        }
        if class
            .level
            .as_deref()
            .is_some_and(|l| !valid_text(l, MAX_LEVEL_LEN))
        {
            problems.push(format!("{at}.level"), "1 to 32 bytes, not blank");
        }
    }
}

/// What the resulting directory must hold: every class, group and child
/// named exists.
fn check_references(
    people: &BTreeMap<String, Person>,
    classes: &BTreeMap<String, Class>,
    problems: &mut Problems,
) {
    for person in people.values() {
        let at = format!("people[id={}]", person.id);
        for (j, class) in person.classes.iter().enumerate() {
            match classes.get(class) {
                None => problems.push(
                    format!("{at}.classes[{j}]"),
                    format!("no class or group {class:?}"),
                ),
                Some(c) if j == 0 && c.group && person.role == Role::Student => problems.push(
                    format!("{at}.classes[0]"),
                    format!("a pupil's first class is their class, and {class:?} is a group"),
                ),
                Some(_) => {}
            }
        }
        for (j, t) in person.teaches.iter().enumerate() {
            if !classes.contains_key(&t.class) {
                problems.push(
                    format!("{at}.teaches[{j}].class"),
                    format!("no class or group {:?}", t.class),
                );
            }
        }
        for (j, child) in person.children.iter().enumerate() {
            match people.get(child) {
                Some(c) if c.role == Role::Student => {}
                Some(_) => problems.push(
                    format!("{at}.children[{j}]"),
                    format!("{child:?} is not a pupil"),
                ),
                None => problems.push(format!("{at}.children[{j}]"), format!("no pupil {child:?}")),
            }
        }
    }
}

/// The users whose access differs between two versions (removed ones
/// included), sorted.
fn changed_access(old: &Index, new: &Index) -> Vec<String> {
    let mut changed = Vec::new();
    let ids: BTreeSet<&str> = old
        .stored
        .people
        .iter()
        .chain(new.stored.people.iter())
        .map(|p| p.id.as_str())
        .collect();
    for id in ids {
        if old.access(id) != new.access(id) {
            changed.push(id.to_owned());
        }
    }
    changed
}

#[cfg(test)]
mod tests;
