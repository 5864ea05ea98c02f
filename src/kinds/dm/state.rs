//! A conversation, derived from its events: its members, when each one
//! wrote (the pupils' caps), the pupils who let their name be shown when
//! a teacher shares their question, who reviewed it after a report.

use std::collections::{BTreeSet, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::{MEMBERS, PREFS, REVIEWED, SHARED};
use crate::auth::Claims;
use crate::protocol::{Body, Event, Role, UserInfo};
use crate::room::policy::Action;
use crate::room::{Chore, Commit, KindState};

/// Posts remembered per conversation for the caps (a day of a busy one).
const MAX_RECENT: usize = 2_000;
const DAY_MS: u64 = 24 * 3600 * 1000;

/// `dm_members`: these people join (the first one starts it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersFields {
    pub members: Vec<UserInfo>,
}

/// `dm_prefs`: whether the pupil's name may be shown when a teacher shares
/// one of their questions with the class (anonymous otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefsFields {
    pub named: bool,
}

/// `dm_shared`: message `at` became thread `thread` of forum `forum`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedFields {
    pub at: u64,
    pub forum: String,
    pub thread: u64,
    pub anonymous: bool,
}

/// `dm_reviewed`: a member of staff read the conversation after a report
/// (every member sees it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewedFields {
    /// The report, in the audit log.
    pub report: u64,
}

#[derive(Default)]
pub struct Conversation {
    members: Vec<UserInfo>,
    /// (author, ts) of the latest messages.
    recent: VecDeque<(String, u64)>,
    named: HashSet<String>,
    /// Staff who reviewed it.
    reviewers: BTreeSet<String>,
    /// Offsets of its messages → author (to share or check one).
    authors: std::collections::HashMap<u64, String>,
}

impl Conversation {
    pub fn rebuild(events: &[Event]) -> Conversation {
        let mut conversation = Conversation::default();
        for event in events {
            conversation.apply_event(event);
        }
        conversation
    }

    fn apply_event(&mut self, event: &Event) {
        match &event.body {
            Body::Message { .. } => {
                self.recent.push_back((event.from.id.clone(), event.ts));
                while self.recent.len() > MAX_RECENT {
                    self.recent.pop_front();
                }
                self.authors.insert(event.offset, event.from.id.clone());
            }
            Body::Redacted { .. } => {
                self.authors.remove(&event.offset);
            }
            Body::Kind(body) => match body.kind.as_str() {
                MEMBERS => {
                    if let Ok(fields) = body.decode::<MembersFields>() {
                        for member in fields.members {
                            if !self.members.iter().any(|m| m.id == member.id) {
                                self.members.push(member);
                            }
                        }
                    }
                }
                PREFS => {
                    if let Ok(fields) = body.decode::<PrefsFields>() {
                        if fields.named {
                            self.named.insert(event.from.id.clone());
                        } else {
                            self.named.remove(&event.from.id);
                        }
                    }
                }
                REVIEWED => {
                    self.reviewers.insert(event.from.id.clone());
                }
                SHARED => {}
                _ => {}
            },
            _ => {}
        }
    }

    pub fn members(&self) -> &[UserInfo] {
        &self.members
    }

    pub fn is_member(&self, user: &str) -> bool {
        self.members.iter().any(|m| m.id == user)
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.members.iter().any(|m| m.role == role)
    }

    /// How many messages `user` wrote after `since` (ms), and the oldest
    /// of them.
    pub fn sent_since(&self, user: &str, since: u64) -> (usize, Option<u64>) {
        let mut count = 0;
        let mut oldest = None;
        for (author, ts) in self.recent.iter().rev() {
            if *ts <= since {
                break;
            }
            if author == user {
                count += 1;
                oldest = Some(*ts);
            }
        }
        (count, oldest)
    }

    /// The author of message `offset`, if it is a message here.
    pub fn author_of(&self, offset: u64) -> Option<&str> {
        self.authors.get(&offset).map(String::as_str)
    }

    /// Whether pupil `user` let their name be shown.
    pub fn named(&self, user: &str) -> bool {
        self.named.contains(user)
    }

    pub fn day_ms() -> u64 {
        DAY_MS
    }
}

impl KindState for Conversation {
    /// Its members read and write; staff who reviewed it after a report
    /// read it.
    fn admits(&self, user: &Claims, action: Action) -> bool {
        match action {
            Action::Read => self.is_member(&user.sub) || self.reviewers.contains(&user.sub),
            Action::Post => self.is_member(&user.sub),
            Action::Moderate => false,
        }
    }

    fn apply(&mut self, commit: &Commit<'_>, _chores: &mut Vec<Chore>) {
        if let Some(crate::effect::Effect::Redact { target, .. }) = commit.effect {
            self.authors.remove(target);
            return;
        }
        if let Ok(crate::protocol::ServerFrame::Event(event)) =
            crate::protocol::decode_server_frame(commit.frame)
        {
            self.apply_event(&event);
        }
    }
}
