//! An announcement, derived from its events: who it went to, who opened
//! it, who acknowledged it.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{ACK, ANNOUNCE, READ, TO};
use crate::auth::Claims;
use crate::protocol::{Body, Event, Role, UserInfo};
use crate::room::policy::Action;
use crate::room::{Chore, Commit, KindState};

/// `announce_to`: the recipients' ids (shown to the sender and staff only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToFields {
    pub recipients: Vec<String>,
}

/// `announce`: what every recipient reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnounceFields {
    pub title: String,
    pub text: String,
    /// The targets as written (`class:3B`, `parents:3B`, `teachers`…).
    pub targets: Vec<String>,
    /// How many it went to.
    pub count: u32,
    /// Recipients are asked to acknowledge it (« lu et approuvé »).
    #[serde(default)]
    pub ack: bool,
    /// Pushed through quiet hours (staff only; audited).
    #[serde(default)]
    pub urgent: bool,
}

/// `announce_read` and `announce_ack`: a recipient opened, or
/// acknowledged, the announcement of `sender` (shown to them, the sender
/// and staff).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptFields {
    pub sender: String,
}

#[derive(Default)]
pub struct Announcement {
    pub sender: Option<UserInfo>,
    pub fields: Option<AnnounceFields>,
    pub recipients: HashSet<String>,
    /// Recipient → when (ms).
    pub read: BTreeMap<String, u64>,
    pub acked: BTreeMap<String, u64>,
}

impl Announcement {
    pub fn rebuild(events: &[Event]) -> Announcement {
        let mut state = Announcement::default();
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
            TO => {
                if let Ok(to) = body.decode::<ToFields>() {
                    self.recipients.extend(to.recipients);
                    self.sender.get_or_insert_with(|| event.from.clone());
                }
            }
            ANNOUNCE => {
                if let Ok(fields) = body.decode::<AnnounceFields>() {
                    self.fields = Some(fields);
                    self.sender.get_or_insert_with(|| event.from.clone());
                }
            }
            READ if self.recipients.contains(&event.from.id) => {
                self.read.entry(event.from.id.clone()).or_insert(event.ts);
            }
            ACK if self.recipients.contains(&event.from.id) => {
                self.read.entry(event.from.id.clone()).or_insert(event.ts);
                self.acked.entry(event.from.id.clone()).or_insert(event.ts);
            }
            _ => {}
        }
    }

    pub fn is_sender(&self, user: &str) -> bool {
        self.sender.as_ref().is_some_and(|s| s.id == user)
    }

    pub fn is_recipient(&self, user: &str) -> bool {
        self.recipients.contains(user)
    }
}

impl KindState for Announcement {
    /// Its recipients and sender read it, and so do staff; nobody posts
    /// (no message, no typing): recipients' receipts go through
    /// `announce_read` and `announce_ack`, which check they are recipients.
    fn admits(&self, user: &Claims, action: Action) -> bool {
        match action {
            Action::Read => {
                user.role == Role::Staff
                    || self.is_sender(&user.sub)
                    || self.is_recipient(&user.sub)
            }
            Action::Post | Action::Moderate => false,
        }
    }

    fn apply(&mut self, commit: &Commit<'_>, _chores: &mut Vec<Chore>) {
        if let Ok(crate::protocol::ServerFrame::Event(event)) =
            crate::protocol::decode_server_frame(commit.frame)
        {
            self.apply_event(&event);
        }
    }
}
