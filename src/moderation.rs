//! A room's moderation state (mutes, bans, slow mode, read-only) and what
//! moderation events do besides being delivered.
//!
//! Moderation actions are ordinary events of the room's timeline, so they
//! are ordered, stored, replicated to every node and replayed exactly like
//! messages; every node derives the same state from them. The state is
//! checkpointed in the store with the offset it covers (`through`); loading
//! a room replays the events after the checkpoint.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::effect::Effect;
use crate::protocol::{ForumSettings, ModAction};

/// Longest mute: 30 days.
pub const MAX_MUTE_SECS: u64 = 30 * 24 * 3600;
/// Longest slow-mode interval: 6 hours (Discord's bound too).
pub const MAX_SLOW_MODE_SECS: u64 = 6 * 3600;
/// Longest moderation reason, in bytes.
pub const MAX_REASON_LEN: usize = 500;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moderation {
    /// User id → muted until (ms since the Unix epoch).
    pub muted: BTreeMap<String, u64>,
    pub banned: BTreeSet<String>,
    pub slow_mode_secs: u64,
    pub read_only: bool,
    /// Pinned message offsets.
    #[serde(default)]
    pub pinned: BTreeSet<u64>,
    /// The last offset whose effect is included.
    pub through: u64,
    /// Forums: the settings of the last `configure` (`None`: never opened).
    #[serde(default)]
    pub forum: Option<ForumSettings>,
    /// Forums: threads (first offsets) locked by `read_only` with a thread.
    #[serde(default)]
    pub locked_threads: BTreeSet<u64>,
}

/// Why a post is refused by moderation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    Banned,
    Muted { until: u64 },
    ReadOnly,
    SlowMode { retry_after_ms: u64 },
}

impl Moderation {
    pub fn apply(&mut self, offset: u64, effect: &Effect) {
        if let Effect::Action { action, until } = effect {
            match action {
                ModAction::Mute { user, .. } => {
                    self.muted.insert(user.clone(), until.unwrap_or(0));
                }
                ModAction::Unmute { user } => {
                    self.muted.remove(user);
                }
                ModAction::Ban { user, .. } => {
                    self.banned.insert(user.clone());
                }
                ModAction::Unban { user } => {
                    self.banned.remove(user);
                }
                ModAction::SlowMode { seconds } => self.slow_mode_secs = *seconds,
                ModAction::ReadOnly { on, thread: None } => self.read_only = *on,
                ModAction::ReadOnly {
                    on,
                    thread: Some(thread),
                } => {
                    if *on {
                        self.locked_threads.insert(*thread);
                    } else {
                        self.locked_threads.remove(thread);
                    }
                }
                ModAction::Validate { lock, .. } => {
                    if *lock {
                        self.read_only = true;
                    }
                }
                ModAction::Configure {
                    flavour,
                    classes,
                    moderators,
                } => {
                    self.forum = Some(ForumSettings {
                        flavour: *flavour,
                        classes: classes.clone(),
                        moderators: moderators.clone(),
                    });
                }
                ModAction::Pin { offset } => {
                    self.pinned.insert(*offset);
                }
                ModAction::Unpin { offset } => {
                    self.pinned.remove(offset);
                }
                ModAction::Kick { .. } | ModAction::Redact { .. } | ModAction::Resolve { .. } => {}
            }
        }
        // A redacted message is not pinned any more.
        if let Effect::Redact { target, .. } = effect {
            self.pinned.remove(target);
        }
        self.through = self.through.max(offset);
    }

    /// Until when `user` is muted, if they are at `now_ms`.
    pub fn muted_until(&self, user: &str, now_ms: u64) -> Option<u64> {
        self.muted
            .get(user)
            .copied()
            .filter(|until| *until > now_ms)
    }

    pub fn encode(&self) -> Bytes {
        rmp_serde::to_vec_named(self)
            .map(Bytes::from)
            .unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<Moderation> {
        rmp_serde::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{self, Body, Event, Role, UserInfo};

    fn event(offset: u64, body: Body) -> Event {
        Event {
            room: "3B/chat/r".into(),
            epoch: "e".into(),
            offset,
            ts: 100,
            from: UserInfo {
                id: "prof".into(),
                name: "Prof".into(),
                role: Role::Teacher,
            },
            body,
        }
    }

    fn action(action: ModAction, until: Option<u64>) -> Body {
        Body::Moderation {
            action,
            until,
            target_from: None,
            target_ts: None,
            target_thread: None,
        }
    }

    #[test]
    fn state_follows_actions() {
        let mut state = Moderation::default();
        let steps = [
            action(
                ModAction::Mute {
                    user: "ana".into(),
                    seconds: 60,
                    reason: None,
                    announce: false,
                },
                Some(61_000),
            ),
            action(
                ModAction::Ban {
                    user: "bob".into(),
                    reason: None,
                    announce: false,
                },
                None,
            ),
            action(ModAction::SlowMode { seconds: 30 }, None),
            action(
                ModAction::ReadOnly {
                    on: true,
                    thread: None,
                },
                None,
            ),
        ];
        for (i, body) in steps.into_iter().enumerate() {
            let effect = Effect::of(&event(i as u64 + 1, body)).unwrap();
            state.apply(i as u64 + 1, &effect);
        }
        assert_eq!(state.muted_until("ana", 1_000), Some(61_000));
        assert_eq!(state.muted_until("ana", 61_000), None, "expired");
        assert!(state.banned.contains("bob"));
        assert_eq!(
            (state.slow_mode_secs, state.read_only, state.through),
            (30, true, 4)
        );
        assert_eq!(Moderation::decode(&state.encode()), Some(state));
    }

    #[test]
    fn redaction_builds_the_same_tombstone_everywhere() {
        let author = UserInfo {
            id: "ana".into(),
            name: "Ana".into(),
            role: Role::Student,
        };
        let body = Body::Moderation {
            action: ModAction::Redact {
                offset: 3,
                reason: Some("insult".into()),
            },
            until: None,
            target_from: Some(author.clone()),
            target_ts: Some(42),
            target_thread: None,
        };
        let Some(Effect::Redact {
            target, tombstone, ..
        }) = Effect::of(&event(9, body))
        else {
            panic!("not a redaction")
        };
        assert_eq!(target, 3);
        let ServerFrameEvent(decoded) = decode(&tombstone);
        assert_eq!((decoded.offset, decoded.ts, decoded.from), (3, 42, author));
        assert!(matches!(decoded.body, Body::Redacted { .. }));
    }

    struct ServerFrameEvent(Event);

    fn decode(frame: &[u8]) -> ServerFrameEvent {
        match protocol::decode_server_frame(frame).unwrap() {
            protocol::ServerFrame::Event(event) => ServerFrameEvent(event),
            other => panic!("{other:?}"),
        }
    }
}
