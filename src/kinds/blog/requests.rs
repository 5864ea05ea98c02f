//! The blog's requests: writing a post with its files (`blog_write`),
//! the publication circuit (`blog_approve`, `blog_unpublish`),
//! `blog_delete`, `blog_comment`, the settings (`blog_config`) and the
//! listing (`blog`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::state::{Blog, BlogConfig, BlogPost, Circuit, CommentFields, PostFields};
use super::{COMMENT, CONFIG, NAME, POST, PUBLISH};
use crate::files::{FileKind, FileRef, FilesError};
use crate::kinds::common;
use crate::protocol::{self, Body, ErrorCode, KindBody, ModAction};
use crate::room::policy::Action;
use crate::room::Room;
use crate::session::kind::{Handled, KindRequest};
use crate::session::{forbidden, Refusal, Session};

pub(super) const TYPES: &[&str] = &[
    "blog",
    "blog_write",
    "blog_approve",
    "blog_unpublish",
    "blog_delete",
    "blog_comment",
    "blog_config",
];

/// Longest title, in bytes.
pub const MAX_TITLE_LEN: usize = 200;
/// Files per post.
pub const MAX_FILES: usize = 10;
/// Longest idempotency key, in bytes (as for `post`).
const MAX_KEY_LEN: usize = 64;

/// The blog's requests, as a client sends them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// The posts the user sees.
    Blog {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
    },
    /// A new post, with files uploaded before (their ids).
    BlogWrite {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        title: String,
        text: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// A teacher publishes a pending post.
    BlogApprove {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        post: u64,
    },
    /// A teacher takes a published post back (it is pending again).
    BlogUnpublish {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        post: u64,
    },
    /// Its author (or a teacher) deletes a post.
    BlogDelete {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        post: u64,
    },
    /// A comment on a published post.
    BlogComment {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        post: u64,
        text: String,
    },
    /// The blog's settings.
    BlogConfig {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        room: String,
        circuit: Circuit,
        public: bool,
    },
}

/// The `blog` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlogOk {
    pub room: String,
    pub config: BlogConfig,
    /// Newest first.
    pub posts: Vec<BlogPost>,
}

/// The `blog_write` reply: the `blog_post` event's position, and the
/// `blog_publish` event's offset when the post was published at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteOk {
    pub room: String,
    pub epoch: String,
    /// The post's id.
    pub offset: u64,
    pub ts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<u64>,
}

pub(super) async fn handle(s: &mut Session, request: KindRequest) -> Handled {
    let KindRequest::Frame { frame, .. } = request else {
        return Err(crate::session::kind::not_owned(NAME, request.type_name()));
    };
    let request: Request = protocol::decode_kind_request(&frame, TYPES)
        .map_err(|e| Refusal::new(e.code(), e.to_string()))?;
    match request {
        Request::Blog { id, room } => {
            let (name, room) = s.open(&room, Action::Read).await?;
            if name.kind().name() != NAME {
                s.release_unjoined(&room);
                return Err(invalid(format!("{name} is not a blog")));
            }
            s.refuse_banned(&room)?;
            let user = s.user()?.clone();
            // The claims decide who is a teacher of the class here (unlike
            // `shown`, which only has the role).
            let moderator = s.is_moderator(&room);
            let found = room
                .with_state(|blog: &mut Blog, _| (blog.config(), blog.listing(&user, moderator)));
            s.release_unjoined(&room);
            let (config, posts) = found.unwrap_or_default();
            Ok(Some(protocol::ok(
                id,
                &BlogOk {
                    room: name.to_string(),
                    config,
                    posts,
                },
            )))
        }
        Request::BlogWrite {
            id,
            room,
            title,
            text,
            files,
            key,
        } => {
            if key
                .as_ref()
                .is_some_and(|k| k.is_empty() || k.len() > MAX_KEY_LEN)
            {
                return Err(invalid(format!("key must be 1 to {MAX_KEY_LEN} bytes")));
            }
            let room = joined_blog(s, &room)?;
            if !s.allowed_in(&room, Action::Post) {
                return Err(forbidden(room.name(), Action::Post));
            }
            check_title(&title)?;
            s.check_text(&text)?;
            if files.len() > MAX_FILES {
                return Err(invalid(format!("at most {MAX_FILES} files")));
            }
            // Refused before any file moves (a banned or muted author's
            // files stay staged, swept later).
            let user = s.user()?.clone();
            s.check_moderation(&room, &user.id, true, None)?;
            let attached = attach_all(s, &room, &user.id, &files).await?;
            let fields = PostFields {
                title,
                text,
                files: attached,
            };
            let posted =
                match common::write_durable(s, id, &room, POST, &fields, key.as_deref()).await {
                    Ok(posted) => posted,
                    Err(refusal) => {
                        // Refused after the files were moved: they are
                        // nobody's, and would count against quotas.
                        delete_all(s, &fields.files).await;
                        return Err(refusal);
                    }
                };
            let circuit = room
                .with_state(|blog: &mut Blog, _| blog.config().circuit)
                .unwrap_or_default();
            let mut published = None;
            if s.is_moderator(&room) || circuit == Circuit::Direct {
                published = Some(publish(s, &room, posted.offset).await?.offset);
            }
            Ok(Some(protocol::ok(
                id,
                &WriteOk {
                    room: posted.room,
                    epoch: posted.epoch,
                    offset: posted.offset,
                    ts: posted.ts,
                    published,
                },
            )))
        }
        Request::BlogApprove { id, room, post } => {
            let room = joined_blog(s, &room)?;
            moderator_only(s, &room, "approve")?;
            match post_of(&room, post) {
                None => return Err(unknown_post(&room, post)),
                Some((_, true)) => {
                    return Err(invalid(format!("post {post} is published already")))
                }
                Some((_, false)) => {}
            }
            let user = s.user()?.clone();
            s.check_moderation(&room, &user.id, true, None)
                .and_then(|()| s.take_post_token(&user.id))?;
            let posted = publish(s, &room, post).await?;
            room.record_post(&user.id);
            Ok(Some(protocol::ok(id, &posted)))
        }
        Request::BlogUnpublish { id, room, post } => {
            let joined = joined_blog(s, &room)?;
            moderator_only(s, &joined, "unpublish")?;
            let publications = joined
                .with_state(|blog: &mut Blog, _| blog.post(post).map(|_| blog.publications(post)))
                .flatten();
            let Some(publications) = publications else {
                return Err(unknown_post(&joined, post));
            };
            let Some((last, earlier)) = publications.split_last() else {
                return Err(invalid(format!("post {post} is not published")));
            };
            // Two approvals that crossed published it twice: both go.
            for offset in earlier {
                redact(s, None, &room, *offset).await?;
            }
            redact(s, id, &room, *last).await
        }
        Request::BlogDelete { id, room, post } => {
            let joined = joined_blog(s, &room)?;
            let user = s.user()?.clone();
            let Some((author, _)) = post_of(&joined, post) else {
                return Err(unknown_post(&joined, post));
            };
            if author != user.id && !s.is_moderator(&joined) {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    format!("post {post} is {author}'s: only its author or a teacher deletes it"),
                ));
            }
            let files = joined
                .with_state(|blog: &mut Blog, _| blog.files(post))
                .unwrap_or_default();
            // The `blog_post` goes, and its publications and comments with
            // it (`KindState::linked`).
            let done = redact(s, id, &room, post).await?;
            // The words are gone: the files go too (an erasure deletes a
            // user's files by subject itself).
            let store = s.hub.files.clone();
            tokio::spawn(async move {
                for file in files {
                    if let Err(e) = store.delete(&file).await {
                        tracing::warn!(file = %file.id, error = %e, "cannot delete a deleted post's file");
                    }
                }
            });
            Ok(done)
        }
        Request::BlogComment {
            id,
            room,
            post,
            text,
        } => {
            let room = joined_blog(s, &room)?;
            if !s.allowed_in(&room, Action::Post) {
                return Err(forbidden(room.name(), Action::Post));
            }
            s.check_text(&text)?;
            // Only a published post is discussed: everyone shown the
            // comment is shown the post.
            if !matches!(post_of(&room, post), Some((_, true))) {
                return Err(unknown_post(&room, post));
            }
            common::write(s, id, &room, COMMENT, &CommentFields { post, text }, None).await
        }
        Request::BlogConfig {
            id,
            room,
            circuit,
            public,
        } => {
            let room = joined_blog(s, &room)?;
            moderator_only(s, &room, "configure")?;
            common::write(s, id, &room, CONFIG, &BlogConfig { circuit, public }, None).await
        }
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::InvalidField, message)
}

fn unknown_post(room: &Room, post: u64) -> Refusal {
    Refusal::new(
        ErrorCode::UnknownTarget,
        format!("no post {post} in {}", room.name()),
    )
}

fn check_title(title: &str) -> Result<(), Refusal> {
    if title.trim().is_empty() || title.len() > MAX_TITLE_LEN {
        return Err(invalid(format!("title must be 1 to {MAX_TITLE_LEN} bytes")));
    }
    Ok(())
}

/// The joined blog room `room`.
fn joined_blog(s: &mut Session, room: &str) -> Result<Arc<Room>, Refusal> {
    let room = s.joined_room(room)?;
    if room.name().kind().name() != NAME {
        return Err(invalid(format!("{} is not a blog", room.name())));
    }
    Ok(room)
}

/// `forbidden` unless the user is a teacher of the class or staff.
fn moderator_only(s: &Session, room: &Room, what: &str) -> Result<(), Refusal> {
    if s.is_moderator(room) {
        return Ok(());
    }
    Err(Refusal::new(
        ErrorCode::Forbidden,
        format!(
            "only the teachers of {} and staff {what} in {}",
            room.name().class(),
            room.name()
        ),
    ))
}

/// Post `post`'s author id and whether it is published.
fn post_of(room: &Room, post: u64) -> Option<(String, bool)> {
    room.with_state(|blog: &mut Blog, _| {
        blog.post(post)
            .map(|(author, published)| (author.id.clone(), published))
    })
    .flatten()
}

/// Attaches the user's uploaded files to the class, about the user, and
/// keeps images, recordings and videos only (a document attached by
/// mistake is deleted again).
async fn attach_all(
    s: &Session,
    room: &Room,
    user: &str,
    ids: &[String],
) -> Result<Vec<FileRef>, Refusal> {
    let class = room.name().class().to_owned();
    let mut attached = Vec::with_capacity(ids.len());
    for id in ids {
        if attached.iter().any(|f: &FileRef| &f.id == id) {
            return Err(invalid(format!("file {id} is named twice")));
        }
        let file = match s.hub.files.attach(user, id, &class, user).await {
            Ok(file) => file,
            Err(e) => {
                delete_all(s, &attached).await;
                return Err(files_refusal(id, e));
            }
        };
        if FileKind::of_mime(&file.mime) == FileKind::Document {
            let refusal = invalid(format!(
                "file {id} is {}: a blog takes images, audio and video",
                file.mime
            ));
            attached.push(file);
            delete_all(s, &attached).await;
            return Err(refusal);
        }
        attached.push(file);
    }
    Ok(attached)
}

/// Deletes files this request attached, when it is refused after all.
async fn delete_all(s: &Session, files: &[FileRef]) {
    for file in files {
        if let Err(e) = s.hub.files.delete(file).await {
            tracing::warn!(file = %file.id, error = %e, "cannot delete a refused blog file");
        }
    }
}

fn files_refusal(id: &str, err: FilesError) -> Refusal {
    match err {
        FilesError::NotFound => Refusal::new(
            ErrorCode::UnknownTarget,
            format!("no uploaded file {id} of yours"),
        ),
        FilesError::Store(e) => Refusal::new(ErrorCode::StorageError, e.to_string()),
        other => Refusal::new(ErrorCode::Internal, other.to_string()),
    }
}

/// Posts the `blog_publish` of post `post`, as the post's author (its
/// erasure then takes the publication too, and a teacher's erasure leaves
/// the pupils' posts they approved), and waits until it is durable. Keyed
/// by the room's head, so two approvals that cross store it once.
async fn publish(s: &Session, room: &Arc<Room>, post: u64) -> Result<protocol::PostOk, Refusal> {
    let found = room
        .with_state(|blog: &mut Blog, _| blog.publish_fields(post))
        .flatten();
    let Some((author, fields)) = found else {
        return Err(unknown_post(room, post));
    };
    let body = KindBody::new(PUBLISH, &fields).map_err(|e| Refusal::new(ErrorCode::Internal, e))?;
    let key = format!("blog-publish-{post}-{}", room.bounds().1);
    common::post_durable(s, None, room, &author, Body::Kind(body), Some(&key)).await
}

/// Redacts event `offset` of `room` through the core's `moderate` path
/// (its checks, the audit log, the tombstone, `linked` events); the ack
/// (of the moderation event) goes to request `id`.
async fn redact(s: &mut Session, id: Option<u32>, room: &str, offset: u64) -> Handled {
    s.moderate(
        id,
        room,
        ModAction::Redact {
            offset,
            reason: None,
        },
    )
    .await
}
