//! A forum's thread index: which thread each post belongs to, who wrote
//! it, its edits, and each thread's last activity, replies and answer.
//!
//! Like the moderation state, the index is derived from the room's events
//! only, so every node builds the same one. It is not stored: loading a
//! forum rebuilds it from the stored events (`Forum::rebuild`), and every
//! committed event updates it (`Forum::apply_effect`). A class forum holds a few
//! thousand posts a year, which a rebuild reads in milliseconds.

use std::collections::HashMap;

use crate::effect::{Change, Effect};
use crate::moderation::Moderation;
use crate::protocol::{Body, Event, ThreadInfo, UserInfo};

/// Longest thread title, in bytes.
pub const MAX_TITLE_LEN: usize = 200;
/// Longest quote of a post in a reply, in bytes.
pub const MAX_QUOTE_LEN: usize = 500;

/// One post (a thread's first post or a reply).
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    pub thread: u64,
    pub author: String,
    pub ts: u64,
    /// Someone else replied to it (or, for a first post, in its thread).
    pub replied: bool,
    /// Offsets of its edit events, oldest first.
    pub edits: Vec<u64>,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Thread {
    title: Option<String>,
    from: UserInfo,
    ts: u64,
    last_offset: u64,
    last_ts: u64,
    answer: Option<u64>,
    deleted: bool,
    /// Every event of the thread (posts, edits, answers), by offset.
    events: Vec<u64>,
    /// The thread's posts (first one included) and their authors.
    posts: Vec<(u64, String)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Forum {
    threads: HashMap<u64, Thread>,
    posts: HashMap<u64, Post>,
}

impl Forum {
    /// The index of a forum whose stored events are `events`, in offset
    /// order. Tombstones keep the thread of what they replaced.
    pub fn rebuild<'a>(events: impl IntoIterator<Item = &'a Event>) -> Forum {
        let mut forum = Forum::default();
        for event in events {
            forum.apply_stored(event);
        }
        forum
    }

    /// Folds one stored event (the live path goes through [`Forum::apply`]).
    pub fn apply_stored(&mut self, event: &Event) {
        if let Body::Redacted {
            thread: Some(thread),
            edit_of,
            ..
        } = &event.body
        {
            match edit_of {
                Some(target) => {
                    if let Some(post) = self.posts.get_mut(target) {
                        post.edits.push(event.offset);
                    }
                    self.push_event(*thread, event.offset);
                }
                None => {
                    let start = *thread == event.offset;
                    self.add_post(
                        event.offset,
                        &event.from,
                        event.ts,
                        None,
                        (!start).then_some(*thread),
                        None,
                    );
                    self.mark_deleted(event.offset, None);
                }
            }
            return;
        }
        if let Some(effect) = Effect::of(event) {
            self.apply_effect(event.offset, &effect);
        }
    }

    /// Applies a committed event's effect.
    pub fn apply_effect(&mut self, offset: u64, effect: &Effect) {
        match effect {
            Effect::Forum(Change::Post {
                from,
                ts,
                title,
                thread,
                reply_to,
            }) => self.add_post(offset, from, *ts, title.clone(), *thread, *reply_to),
            Effect::Forum(Change::Edit { target, title }) => {
                let Some(post) = self.posts.get_mut(target) else {
                    return;
                };
                post.edits.push(offset);
                let thread = post.thread;
                if let (Some(title), true) = (title, thread == *target) {
                    if let Some(t) = self.threads.get_mut(&thread) {
                        t.title = Some(title.clone());
                    }
                }
                self.push_event(thread, offset);
            }
            Effect::Forum(Change::Answer {
                thread,
                offset: answer,
            }) => {
                if let Some(t) = self.threads.get_mut(thread) {
                    t.answer = *answer;
                }
                self.push_event(*thread, offset);
            }
            Effect::Redact { target, author, .. } => self.mark_deleted(*target, Some(author)),
            Effect::Action { .. } => {}
            Effect::NoteUpdate(_) => {}
        }
    }

    fn add_post(
        &mut self,
        offset: u64,
        from: &UserInfo,
        ts: u64,
        title: Option<String>,
        thread: Option<u64>,
        reply_to: Option<u64>,
    ) {
        let thread_id = match thread {
            None => {
                self.threads.insert(
                    offset,
                    Thread {
                        title,
                        from: from.clone(),
                        ts,
                        last_offset: offset,
                        last_ts: ts,
                        answer: None,
                        deleted: false,
                        events: Vec::new(),
                        posts: Vec::new(),
                    },
                );
                offset
            }
            Some(thread) => thread,
        };
        let Some(t) = self.threads.get_mut(&thread_id) else {
            return;
        };
        t.events.push(offset);
        t.posts.push((offset, from.id.clone()));
        t.last_offset = offset;
        t.last_ts = ts;
        self.posts.insert(
            offset,
            Post {
                thread: thread_id,
                author: from.id.clone(),
                ts,
                replied: false,
                edits: Vec::new(),
                deleted: false,
            },
        );
        if thread.is_some() {
            for replied in [Some(thread_id), reply_to].into_iter().flatten() {
                if let Some(post) = self.posts.get_mut(&replied) {
                    if post.author != from.id {
                        post.replied = true;
                    }
                }
            }
        }
    }

    fn push_event(&mut self, thread: u64, offset: u64) {
        if let Some(t) = self.threads.get_mut(&thread) {
            t.events.push(offset);
        }
    }

    /// Marks a post deleted; `author` is who its tombstone names (a thread
    /// whose first post an erasure redacted no longer names its author).
    fn mark_deleted(&mut self, offset: u64, author: Option<&UserInfo>) {
        let Some(post) = self.posts.get_mut(&offset) else {
            return;
        };
        post.deleted = true;
        let thread = post.thread;
        if let Some(t) = self.threads.get_mut(&thread) {
            if thread == offset {
                t.deleted = true;
                t.title = None;
                if let Some(author) = author {
                    t.from = author.clone();
                }
            }
            if t.answer == Some(offset) {
                t.answer = None;
            }
        }
    }

    pub fn post(&self, offset: u64) -> Option<&Post> {
        self.posts.get(&offset)
    }

    pub fn has_thread(&self, thread: u64) -> bool {
        self.threads.contains_key(&thread)
    }

    /// The thread's author (its first post's).
    pub fn thread_author(&self, thread: u64) -> Option<&str> {
        self.threads.get(&thread).map(|t| t.from.id.as_str())
    }

    /// The thread's author and title (absent once its first post was
    /// deleted).
    pub fn thread_head(&self, thread: u64) -> Option<(&UserInfo, Option<&str>)> {
        self.threads
            .get(&thread)
            .map(|t| (&t.from, t.title.as_deref()))
    }

    /// Every event of the thread, by offset.
    pub fn thread_events(&self, thread: u64) -> Option<&[u64]> {
        self.threads.get(&thread).map(|t| t.events.as_slice())
    }

    /// A page of the thread list for `user`: pinned threads first, then by
    /// last activity, newest first; `before` continues after the thread
    /// whose last activity was that offset.
    pub fn list(
        &self,
        moderation: &Moderation,
        reads: &HashMap<u64, u64>,
        user: &str,
        before: Option<u64>,
        limit: usize,
    ) -> (Vec<ThreadInfo>, bool) {
        let mut order: Vec<(bool, u64, u64)> = self
            .threads
            .iter()
            .map(|(id, t)| (moderation.pinned.contains(id), t.last_offset, *id))
            .collect();
        order.sort_unstable_by(|a, b| b.cmp(a));
        let mut page = Vec::new();
        let mut more = false;
        let skipping =
            |(pinned, last, _): &(bool, u64, u64)| before.is_some_and(|b| *pinned || *last >= b);
        for (pinned, _, id) in order.iter().filter(|o| !skipping(o)) {
            if page.len() == limit {
                more = true;
                break;
            }
            let Some(t) = self.threads.get(id) else {
                continue;
            };
            let read = reads.get(id).copied().unwrap_or(0);
            let unread = t
                .posts
                .iter()
                .filter(|(offset, author)| *offset > read && author != user)
                .count() as u64;
            page.push(ThreadInfo {
                thread: *id,
                title: t.title.clone(),
                from: t.from.clone(),
                ts: t.ts,
                last_offset: t.last_offset,
                last_ts: t.last_ts,
                replies: t.posts.len().saturating_sub(1) as u64,
                unread,
                answer: t.answer,
                locked: moderation.locked_threads.contains(id),
                pinned: *pinned,
                deleted: t.deleted,
            });
        }
        (page, more)
    }
}
