//! A class's hand-ins as of the last committed event: each hand-in with
//! its pupils, their submissions (the latest counts; earlier ones were
//! replaced) and the corrections returned to them. Derived from the
//! room's events only, like the diary.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CHANGE, OPEN, RETURN, SUBMIT};
use crate::files::{clean_name, FileRef};
use crate::protocol::{Body, Event, UserInfo};
use crate::room::{Bundle, Chore, Commit, KindState, Viewer};

/// `handin_open`: what the teacher asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFields {
    pub title: String,
    #[serde(default)]
    pub instructions: String,
    /// The deadline (ms since the Unix epoch).
    pub due: u64,
    /// Who hands it in (user ids), resolved when it was opened.
    pub pupils: Vec<String>,
    /// How the teacher named them: `class:3B`, `group:ESP`, `pupils`.
    #[serde(default)]
    pub to: String,
    /// Families of files taken (`document`, `image`, `audio`, `video`);
    /// empty: any the store takes.
    #[serde(default)]
    pub accepts: Vec<String>,
    /// Whether a first submission after the deadline is taken (marked late).
    #[serde(default)]
    pub late: bool,
    /// The diary entry (its offset in the class's diary) it comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<u64>,
}

/// `handin_change`: a new deadline, or late submissions allowed or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeFields {
    pub handin: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late: Option<bool>,
}

/// `handin_submit`: a pupil's file (replacing their earlier one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitFields {
    pub handin: u64,
    pub file: FileRef,
    /// Sent after the deadline (allowed by the teacher).
    #[serde(default)]
    pub late: bool,
}

/// `handin_return`: a correction for one pupil, a file and/or a comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnFields {
    pub handin: u64,
    pub pupil: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef>,
    #[serde(default)]
    pub comment: String,
}

/// A pupil's submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    pub offset: u64,
    pub ts: u64,
    pub file: FileRef,
    pub late: bool,
    /// How many times it was replaced.
    pub replaced: u32,
}

/// A correction returned to a pupil.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Returned {
    pub offset: u64,
    pub ts: u64,
    pub by: UserInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef>,
    pub comment: String,
}

#[derive(Debug, Clone)]
pub struct Handin {
    pub offset: u64,
    pub ts: u64,
    pub by: UserInfo,
    pub fields: OpenFields,
    /// Pupil → their latest submission.
    pub submissions: BTreeMap<String, Submission>,
    /// Pupil → what they were given back.
    pub returns: BTreeMap<String, Returned>,
    /// Pupil → their name as their submission gave it.
    pub names: BTreeMap<String, String>,
}

impl Handin {
    pub fn targets(&self, pupil: &str) -> bool {
        self.fields.pupils.iter().any(|p| p == pupil)
    }

    /// Whether `viewer` sees it: teachers and staff, its pupils and their
    /// parents.
    pub fn seen_by(&self, viewer: &Viewer<'_>) -> bool {
        viewer.moderator || self.fields.pupils.iter().any(|p| viewer.is_or_parent_of(p))
    }
}

#[derive(Default)]
pub struct Handins {
    pub all: BTreeMap<u64, Handin>,
}

impl Handins {
    pub fn rebuild(events: &[Event]) -> Handins {
        let mut state = Handins::default();
        for event in events {
            state.apply_event(event);
        }
        state
    }

    fn apply_event(&mut self, event: &Event) {
        let Body::Kind(body) = &event.body else {
            return;
        };
        match body.kind.as_str() {
            OPEN => {
                if let Ok(fields) = body.decode::<OpenFields>() {
                    self.all.insert(
                        event.offset,
                        Handin {
                            offset: event.offset,
                            ts: event.ts,
                            by: event.from.clone(),
                            fields,
                            submissions: BTreeMap::new(),
                            returns: BTreeMap::new(),
                            names: BTreeMap::new(),
                        },
                    );
                }
            }
            CHANGE => {
                if let Ok(change) = body.decode::<ChangeFields>() {
                    if let Some(handin) = self.all.get_mut(&change.handin) {
                        if let Some(due) = change.due {
                            handin.fields.due = due;
                        }
                        if let Some(late) = change.late {
                            handin.fields.late = late;
                        }
                    }
                }
            }
            SUBMIT => {
                if let Ok(submit) = body.decode::<SubmitFields>() {
                    if let Some(handin) = self.all.get_mut(&submit.handin) {
                        let replaced = handin
                            .submissions
                            .get(&event.from.id)
                            .map_or(0, |s| s.replaced + 1);
                        handin
                            .names
                            .insert(event.from.id.clone(), event.from.name.clone());
                        handin.submissions.insert(
                            event.from.id.clone(),
                            Submission {
                                offset: event.offset,
                                ts: event.ts,
                                file: submit.file,
                                late: submit.late,
                                replaced,
                            },
                        );
                    }
                }
            }
            RETURN => {
                if let Ok(ret) = body.decode::<ReturnFields>() {
                    if let Some(handin) = self.all.get_mut(&ret.handin) {
                        handin.returns.insert(
                            ret.pupil,
                            Returned {
                                offset: event.offset,
                                ts: event.ts,
                                by: event.from.clone(),
                                file: ret.file,
                                comment: ret.comment,
                            },
                        );
                    }
                }
            }
            _ => {}
        }
    }
}

impl Handins {
    /// A redacted event (an erased pupil's submission, the correction
    /// returned to them) leaves the state as it leaves the stored history.
    fn redact(&mut self, target: u64) {
        if self.all.remove(&target).is_some() {
            return;
        }
        for handin in self.all.values_mut() {
            handin.submissions.retain(|_, s| s.offset != target);
            handin.returns.retain(|_, r| r.offset != target);
        }
    }
}

impl KindState for Handins {
    fn apply(&mut self, commit: &Commit<'_>, _chores: &mut Vec<Chore>) {
        if let Some(crate::effect::Effect::Redact { target, .. }) = commit.effect {
            self.redact(*target);
            return;
        }
        if let Ok(crate::protocol::ServerFrame::Event(event)) =
            crate::protocol::decode_server_frame(commit.frame)
        {
            self.apply_event(&event);
        }
    }

    /// A submission: its pupil, their parents, teachers and staff. A
    /// correction: the same.
    fn file(&self, id: &str, viewer: &Viewer<'_>) -> Option<FileRef> {
        let teacher = viewer.moderator;
        for handin in self.all.values() {
            for (pupil, sub) in &handin.submissions {
                if sub.file.id == id && (teacher || viewer.is_or_parent_of(pupil)) {
                    return Some(sub.file.clone());
                }
            }
            for (pupil, ret) in &handin.returns {
                if let Some(file) = ret.file.as_ref().filter(|f| f.id == id) {
                    if teacher || viewer.is_or_parent_of(pupil) {
                        return Some(file.clone());
                    }
                }
            }
        }
        None
    }

    /// `key`: a hand-in's id; its latest submissions, for teachers and
    /// staff, each named after its pupil.
    fn bundle(&self, key: &str, viewer: &Viewer<'_>) -> Option<Bundle> {
        if !viewer.moderator {
            return None;
        }
        let handin = self.all.get(&key.parse::<u64>().ok()?)?;
        let mut used = std::collections::HashSet::new();
        let files = handin
            .submissions
            .iter()
            .map(|(pupil, sub)| {
                let who = handin
                    .names
                    .get(pupil)
                    .map_or(pupil.as_str(), |n| n.as_str());
                let late = if sub.late { " (en retard)" } else { "" };
                let mut name = clean_name(&format!("{who}{late} - {}", sub.file.name));
                // Two pupils of the same name: the zip still holds both.
                if !used.insert(name.clone()) {
                    name = clean_name(&format!("{who} {pupil} - {}", sub.file.name));
                }
                (name, sub.file.clone())
            })
            .collect();
        Some(Bundle {
            name: clean_name(&handin.fields.title),
            files,
        })
    }
}
