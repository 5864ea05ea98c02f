//! Forum data of protocol v1: settings, the thread list.

use serde::{Deserialize, Serialize};

use super::UserInfo;

/// What a forum is for; it decides who may start threads and whether
/// answers are marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Flavour {
    /// The teacher opens questions before a lesson; pupils reply.
    #[default]
    Debate,
    /// Pupils ask, anyone answers; the asker or a moderator marks the answer.
    Help,
    /// Pupils of several classes (the forum's `classes`), moderated by
    /// several teachers (its `moderators`).
    Interclass,
}

/// A forum's settings, as the last `configure` set them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ForumSettings {
    pub flavour: Flavour,
    /// Other classes whose pupils and teachers read and post.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Teachers (user ids) who moderate besides the class's own.
    #[serde(default)]
    pub moderators: Vec<String>,
}

/// One thread in the thread list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadInfo {
    /// The offset of the thread's first post; the thread's id.
    pub thread: u64,
    /// Absent when the first post was redacted or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub from: UserInfo,
    pub ts: u64,
    /// Offset and time of the thread's last post (its last activity).
    pub last_offset: u64,
    pub last_ts: u64,
    /// Posts after the first one (redacted ones included).
    pub replies: u64,
    /// Posts the user has not read (after their `mark_read` position;
    /// their own posts count as read).
    pub unread: u64,
    /// The post marked as the answer (help forums).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<u64>,
    pub locked: bool,
    pub pinned: bool,
    pub deleted: bool,
}

/// Data of the `ok` reply to `threads`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadsOk {
    pub room: String,
    pub settings: ForumSettings,
    /// Pinned threads first, then by last activity, newest first.
    pub threads: Vec<ThreadInfo>,
    /// More threads exist beyond this page.
    pub more: bool,
}

/// Data of the `ok` reply to `rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomsOk {
    pub rooms: Vec<String>,
}
