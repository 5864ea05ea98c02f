//! A blog as of the last committed event: its settings, every post with
//! its files, whether it is published (by which `blog_publish` events) and
//! its comments. Derived from the room's events only (rebuilt on load,
//! updated by every committed event), like the diary.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::effect::Effect;
use crate::files::FileRef;
use crate::protocol::{Body, Event, UserInfo};
use crate::room::policy::Action;
use crate::room::{Chore, Commit, KindState, Viewer};

use super::{COMMENT, CONFIG, POST, PUBLISH};

/// How a pupil's post gets published. On the wire a string (read through
/// `String`: `rmpv` reads serde enums only as maps).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Circuit {
    /// A teacher approves each pupil's post (`blog_approve`).
    #[default]
    Approve,
    /// Pupils' posts are published at once.
    Direct,
}

impl From<Circuit> for &'static str {
    fn from(circuit: Circuit) -> &'static str {
        match circuit {
            Circuit::Approve => "approve",
            Circuit::Direct => "direct",
        }
    }
}

impl TryFrom<String> for Circuit {
    type Error = String;

    fn try_from(s: String) -> Result<Circuit, String> {
        match s.as_str() {
            "approve" => Ok(Circuit::Approve),
            "direct" => Ok(Circuit::Direct),
            _ => Err(format!("circuit is approve or direct, not {s:?}")),
        }
    }
}

/// What a `blog_config` event says: the blog's settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlogConfig {
    #[serde(default)]
    pub circuit: Circuit,
    /// Every authenticated user of the school may read it.
    #[serde(default)]
    pub public: bool,
}

/// What a `blog_post` event says (its id is the event's offset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostFields {
    pub title: String,
    pub text: String,
    #[serde(default)]
    pub files: Vec<FileRef>,
}

/// What a `blog_publish` event says: the post it publishes, and its
/// content again, so that those not shown the `blog_post` get it in one
/// event (and `shown` decides from the event alone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishFields {
    pub post: u64,
    pub title: String,
    pub text: String,
    #[serde(default)]
    pub files: Vec<FileRef>,
}

/// What a `blog_comment` event says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentFields {
    pub post: u64,
    pub text: String,
}

/// Where a post is in the publication circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Shown to its author, the class's teachers and staff only.
    Pending,
    /// Shown to every reader.
    Published,
}

#[derive(Debug, Clone)]
struct Post {
    author: UserInfo,
    ts: u64,
    fields: PostFields,
    /// Offsets of its live `blog_publish` events (one, but for two
    /// approvals that crossed).
    publications: Vec<u64>,
    /// Offsets of its live comments.
    comments: Vec<u64>,
}

impl Post {
    fn published(&self) -> bool {
        !self.publications.is_empty()
    }
}

/// A post as the `blog` reply gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlogPost {
    /// The post's id: the offset of its `blog_post` event.
    pub post: u64,
    pub author: UserInfo,
    pub ts: u64,
    pub title: String,
    pub text: String,
    pub files: Vec<FileRef>,
    pub status: Status,
    /// The offset of the `blog_publish` event, when published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<u64>,
    pub comments: u32,
}

/// The blog's settings and posts.
#[derive(Debug, Default)]
pub struct Blog {
    /// Every live `blog_config`, oldest first: the last one holds (a
    /// redacted one gives way to the one before).
    configs: Vec<(u64, BlogConfig)>,
    posts: BTreeMap<u64, Post>,
    /// Which post each publication and comment belongs to (for
    /// redactions).
    owner: HashMap<u64, u64>,
}

impl Blog {
    /// The blog of the stored `events`, in offset order (tombstones and
    /// events that do not decode are skipped).
    pub fn rebuild<'a>(events: impl IntoIterator<Item = &'a Event>) -> Blog {
        let mut blog = Blog::default();
        for event in events {
            blog.apply_event(event);
        }
        blog
    }

    pub fn config(&self) -> BlogConfig {
        self.configs.last().map(|(_, c)| *c).unwrap_or_default()
    }

    /// Folds one event in.
    pub fn apply_event(&mut self, event: &Event) {
        let Body::Kind(body) = &event.body else {
            return;
        };
        match body.kind.as_str() {
            CONFIG => {
                if let Ok(config) = body.decode::<BlogConfig>() {
                    self.configs.push((event.offset, config));
                }
            }
            POST => {
                if let Ok(fields) = body.decode::<PostFields>() {
                    self.posts.insert(
                        event.offset,
                        Post {
                            author: event.from.clone(),
                            ts: event.ts,
                            fields,
                            publications: Vec::new(),
                            comments: Vec::new(),
                        },
                    );
                }
            }
            PUBLISH => {
                let Ok(fields) = body.decode::<PublishFields>() else {
                    return;
                };
                if let Some(post) = self.posts.get_mut(&fields.post) {
                    post.publications.push(event.offset);
                    self.owner.insert(event.offset, fields.post);
                }
            }
            COMMENT => {
                let Ok(fields) = body.decode::<CommentFields>() else {
                    return;
                };
                if let Some(post) = self.posts.get_mut(&fields.post) {
                    post.comments.push(event.offset);
                    self.owner.insert(event.offset, fields.post);
                }
            }
            _ => {}
        }
    }

    /// A redacted event is gone: a post (its publications and comments go
    /// with it, `linked`), a publication (the post is pending again), a
    /// comment, or a setting. What is left is what a reload of the
    /// tombstones gives.
    fn redact(&mut self, target: u64) {
        if self.posts.remove(&target).is_some() {
            self.owner.retain(|_, p| *p != target);
            return;
        }
        if let Some(id) = self.owner.remove(&target) {
            if let Some(post) = self.posts.get_mut(&id) {
                post.publications.retain(|o| *o != target);
                post.comments.retain(|o| *o != target);
            }
            return;
        }
        self.configs.retain(|(o, _)| *o != target);
    }

    /// Post `id`'s author and whether it is published.
    pub fn post(&self, id: u64) -> Option<(&UserInfo, bool)> {
        self.posts.get(&id).map(|p| (&p.author, p.published()))
    }

    /// Post `id`'s live publications.
    pub fn publications(&self, id: u64) -> Vec<u64> {
        self.posts
            .get(&id)
            .map(|p| p.publications.clone())
            .unwrap_or_default()
    }

    /// Post `id`'s files.
    pub fn files(&self, id: u64) -> Vec<FileRef> {
        self.posts
            .get(&id)
            .map(|p| p.fields.files.clone())
            .unwrap_or_default()
    }

    /// Post `id`'s content, to repeat in a `blog_publish`.
    pub fn publish_fields(&self, id: u64) -> Option<(UserInfo, PublishFields)> {
        let post = self.posts.get(&id)?;
        Some((
            post.author.clone(),
            PublishFields {
                post: id,
                title: post.fields.title.clone(),
                text: post.fields.text.clone(),
                files: post.fields.files.clone(),
            },
        ))
    }

    /// The posts `user` sees, newest first: the published ones, and the
    /// pending ones of which they are the author or (`moderator`) a
    /// teacher of the class or staff.
    pub fn listing(&self, user: &UserInfo, moderator: bool) -> Vec<BlogPost> {
        self.posts
            .iter()
            .rev()
            .filter(|(_, p)| p.published() || moderator || p.author.id == user.id)
            .map(|(id, p)| BlogPost {
                post: *id,
                author: p.author.clone(),
                ts: p.ts,
                title: p.fields.title.clone(),
                text: p.fields.text.clone(),
                files: p.fields.files.clone(),
                status: if p.published() {
                    Status::Published
                } else {
                    Status::Pending
                },
                published: p.publications.last().copied(),
                comments: u32::try_from(p.comments.len()).unwrap_or(u32::MAX),
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.posts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.posts.is_empty()
    }
}

/// Whether `viewer` is shown what only a post's author, the class's
/// teachers and staff see (a pending post, its files): a teacher of
/// another class reading a public blog is not.
pub fn sees_pending(author: &str, viewer: &Viewer<'_>) -> bool {
    viewer.user.id == author || viewer.moderator
}

impl KindState for Blog {
    fn apply(&mut self, commit: &Commit<'_>, _chores: &mut Vec<Chore>) {
        if let Some(Effect::Redact { target, .. }) = commit.effect {
            self.redact(*target);
            return;
        }
        if let Ok(crate::protocol::ServerFrame::Event(event)) =
            crate::protocol::decode_server_frame(commit.frame)
        {
            self.apply_event(&event);
        }
    }

    /// A public blog lets every authenticated user of the school read it;
    /// nobody outside the class writes or comments.
    fn admits(&self, _user: &crate::auth::Claims, action: Action) -> bool {
        matches!(action, Action::Read) && self.config().public
    }

    /// Deleting a post (redacting its `blog_post`) takes its publications,
    /// which repeat its words, and its comments, which answer them.
    fn linked(&self, target: u64) -> Vec<u64> {
        self.posts
            .get(&target)
            .map(|p| p.publications.iter().chain(&p.comments).copied().collect())
            .unwrap_or_default()
    }

    /// A published post's files for every reader (the room's read check
    /// is done before); a pending post's for its author, teachers and
    /// staff.
    fn file(&self, id: &str, viewer: &Viewer<'_>) -> Option<FileRef> {
        self.posts.values().find_map(|p| {
            let file = p.fields.files.iter().find(|f| f.id == id)?;
            (p.published() || sees_pending(&p.author.id, viewer)).then(|| file.clone())
        })
    }
}
