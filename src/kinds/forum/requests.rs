//! Forum requests: new threads and replies (checked here, posted by
//! `post`), edits, answers, the thread list, read marks and thread history.

use std::sync::Arc;

use bytes::Bytes;

use super::index::{Forum, MAX_QUOTE_LEN, MAX_TITLE_LEN};
use crate::hub::HubError;
use crate::protocol::{self, Body, ErrorCode, Flavour, ThreadsOk};
use crate::room::policy::Action;
use crate::room::{Room, RoomName};
use crate::session::{forbidden, NewPost, Page, Refusal, Session};

const DEFAULT_THREADS_PAGE: usize = 30;
const MAX_THREADS_PAGE: usize = 100;

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::InvalidField, message)
}

fn not_forum(room: &RoomName) -> Refusal {
    invalid(format!("{room} is not a forum"))
}

/// Checks a forum post's fields against the room: a title (a new thread) or a thread (a reply), a
/// `reply_to` in that thread. Returns the thread a reply goes to.
pub(super) fn check_forum_post(
    s: &Session,
    room: &Room,
    post: &NewPost,
) -> Result<Option<u64>, Refusal> {
    if let Some(quote) = &post.quote {
        if quote.len() > MAX_QUOTE_LEN {
            return Err(invalid(format!(
                "quote is longer than {MAX_QUOTE_LEN} bytes"
            )));
        }
        if post.reply_to.is_none() {
            return Err(invalid("a quote needs reply_to"));
        }
    }
    match (&post.title, post.thread) {
        (Some(_), Some(_)) => Err(invalid(
            "a post has a title (new thread) or a thread, not both",
        )),
        (None, None) => Err(invalid(
            "a forum post needs a title (new thread) or a thread (reply)",
        )),
        (Some(title), None) => {
            if title.trim().is_empty() || title.len() > MAX_TITLE_LEN {
                return Err(invalid(format!("title must be 1 to {MAX_TITLE_LEN} bytes")));
            }
            if post.reply_to.is_some() {
                return Err(invalid("a new thread replies to nothing"));
            }
            let flavour = room.grants().unwrap_or_default().flavour;
            if flavour == Flavour::Debate && !s.is_moderator(room) {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    "in a debate forum only moderators open threads",
                ));
            }
            Ok(None)
        }
        (None, Some(thread)) => {
            index(room, |forum, _| {
                if !forum.has_thread(thread) {
                    return Err(Refusal::new(
                        ErrorCode::UnknownTarget,
                        format!("no thread {thread}"),
                    ));
                }
                if let Some(reply_to) = post.reply_to {
                    if forum.post(reply_to).is_none_or(|p| p.thread != thread) {
                        return Err(Refusal::new(
                            ErrorCode::UnknownTarget,
                            format!("no post {reply_to} in thread {thread}"),
                        ));
                    }
                }
                Ok(())
            })?;
            Ok(Some(thread))
        }
    }
}

/// A new version of one's own forum post.
pub(super) async fn edit(
    s: &mut Session,
    id: Option<u32>,
    room: &str,
    offset: u64,
    text: String,
    title: Option<String>,
) -> Result<Option<Bytes>, Refusal> {
    let room = s.joined_room(room)?;
    if !is_forum(room.name()) {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "only forum posts can be edited",
        ));
    }
    if !s.allowed_in(&room, Action::Post) {
        return Err(forbidden(room.name(), Action::Post));
    }
    s.check_text(&text)?;
    let user = s.user()?.clone();
    let moderator = s.is_moderator(&room);
    let now = (s.hub.clock)();
    let window = u64::try_from(s.hub.config.edit_window.as_millis()).unwrap_or(u64::MAX);
    let thread = index(&room, |forum, _| {
        let post = forum.post(offset).filter(|p| !p.deleted).ok_or_else(|| {
            Refusal::new(
                ErrorCode::UnknownTarget,
                format!("no post at offset {offset}"),
            )
        })?;
        if post.author != user.id {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "only its author edits a post (moderators redact)",
            ));
        }
        if !moderator && now.saturating_sub(post.ts) > window {
            return Err(Refusal::new(
                ErrorCode::NotEditable,
                format!(
                    "posts can be edited for {} after posting",
                    humantime::format_duration(s.hub.config.edit_window)
                ),
            ));
        }
        if !moderator && post.replied {
            return Err(Refusal::new(
                ErrorCode::NotEditable,
                "someone replied to this post: it can no longer be edited",
            ));
        }
        Ok(post.thread)
    })?;
    if let Some(title) = &title {
        if thread != offset {
            return Err(invalid("only a thread's first post has a title"));
        }
        if title.trim().is_empty() || title.len() > MAX_TITLE_LEN {
            return Err(invalid(format!("title must be 1 to {MAX_TITLE_LEN} bytes")));
        }
    }
    s.check_moderation(&room, &user.id, true, Some(thread))?;
    s.take_post_token(&user.id)?;
    let body = Body::Edit {
        target: offset,
        thread,
        text,
        title,
    };
    s.send_post(id, &room, &user, body).await?;
    Ok(None)
}

/// Marks (or unmarks) a help thread's answer: its asker or a moderator.
pub(super) async fn answer(
    s: &mut Session,
    id: Option<u32>,
    room: &str,
    thread: u64,
    offset: Option<u64>,
) -> Result<Option<Bytes>, Refusal> {
    let room = s.joined_room(room)?;
    if !is_forum(room.name()) {
        return Err(not_forum(room.name()));
    }
    if room.grants().unwrap_or_default().flavour != Flavour::Help {
        return Err(Refusal::new(
            ErrorCode::Forbidden,
            "answers are marked in help forums only",
        ));
    }
    let user = s.user()?.clone();
    let moderator = s.is_moderator(&room);
    index(&room, |forum, _| {
        let author = forum
            .thread_author(thread)
            .ok_or_else(|| Refusal::new(ErrorCode::UnknownTarget, format!("no thread {thread}")))?;
        if !moderator && author != user.id {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                "only the asker or a moderator marks the answer",
            ));
        }
        if let Some(offset) = offset {
            let reply = forum
                .post(offset)
                .filter(|p| p.thread == thread && offset != thread && !p.deleted);
            if reply.is_none() {
                return Err(Refusal::new(
                    ErrorCode::UnknownTarget,
                    format!("no reply {offset} in thread {thread}"),
                ));
            }
        }
        Ok(())
    })?;
    s.check_moderation(&room, &user.id, false, Some(thread))?;
    s.send_post(id, &room, &user, Body::Answer { thread, offset })
        .await?;
    Ok(None)
}

/// The thread list, with the user's unread counts.
pub(super) async fn threads(
    s: &mut Session,
    id: Option<u32>,
    room: &str,
    before: Option<u64>,
    limit: Option<u32>,
) -> Result<Option<Bytes>, Refusal> {
    let limit = match limit {
        None => DEFAULT_THREADS_PAGE,
        Some(0) => return Err(invalid("limit must be at least 1")),
        Some(n) => (n as usize).min(MAX_THREADS_PAGE),
    };
    let (name, room) = open_forum(s, room).await?;
    let user = s.user()?.id.clone();
    let store = s.hub.store.clone();
    let (key, reader) = (name.as_str().to_owned(), user.clone());
    let marks = tokio::task::spawn_blocking(move || store.read_marks(&key, &reader))
        .await
        .map_err(HubError::from)
        .and_then(|r| r.map_err(HubError::from));
    let marks = match marks {
        Ok(marks) => marks,
        Err(err) => {
            s.release_unjoined(&room);
            return Err(err.into());
        }
    };
    let (threads, more) = index(&room, |forum, moderation| {
        forum.list(moderation, &marks, &user, before, limit)
    });
    let reply = ThreadsOk {
        room: name.to_string(),
        settings: room.grants().unwrap_or_default(),
        threads,
        more,
    };
    s.release_unjoined(&room);
    Ok(Some(protocol::ok(id, &reply)))
}

/// Records how far the user read a thread.
pub(super) async fn mark_read(
    s: &mut Session,
    id: Option<u32>,
    room: &str,
    thread: u64,
    offset: u64,
) -> Result<Option<Bytes>, Refusal> {
    let (name, room) = open_forum(s, room).await?;
    let known = index(&room, |forum, _| forum.has_thread(thread));
    let head = room.bounds().1;
    s.release_unjoined(&room);
    if !known {
        return Err(Refusal::new(
            ErrorCode::UnknownTarget,
            format!("no thread {thread}"),
        ));
    }
    // A mark never moves back: one past the head would hide every
    // later post from this user for good.
    if offset > head {
        return Err(invalid(format!(
            "offset {offset} is past the room's head {head}"
        )));
    }
    let user = s.user()?.id.clone();
    let store = s.hub.store.clone();
    let key = name.as_str().to_owned();
    tokio::task::spawn_blocking(move || store.mark_read(&key, &user, thread, offset))
        .await
        .map_err(HubError::from)?
        .map_err(HubError::from)?;
    Ok(Some(protocol::ok_empty(id)))
}

/// A forum the user may read and is not banned from.
async fn open_forum(s: &Session, room: &str) -> Result<(RoomName, Arc<Room>), Refusal> {
    let (name, room) = s.open(room, Action::Read).await?;
    if !is_forum(&name) {
        s.release_unjoined(&room);
        return Err(not_forum(&name));
    }
    s.refuse_banned(&room)?;
    Ok((name, room))
}

/// One page of a thread's events (`history` with `thread`): `after`
/// pages forward, otherwise backward from `before` (or the end).
pub(super) async fn thread_history(
    s: &mut Session,
    id: Option<u32>,
    room: &Arc<Room>,
    thread: u64,
    page: Page,
) -> Result<Option<Bytes>, Refusal> {
    if !is_forum(room.name()) {
        return Err(not_forum(room.name()));
    }
    let limit = page.limit.unwrap_or(1) as usize;
    let (offsets, more) = index(room, |forum, _| {
        let events = forum.thread_events(thread)?;
        let upper = page.before.unwrap_or(u64::MAX);
        Some(match page.after {
            Some(after) => {
                let range: Vec<u64> = events
                    .iter()
                    .copied()
                    .filter(|o| *o > after && *o < upper)
                    .collect();
                let more = range.len() > limit;
                (range.into_iter().take(limit).collect::<Vec<_>>(), more)
            }
            None => {
                let range: Vec<u64> = events.iter().copied().filter(|o| *o < upper).collect();
                let more = range.len() > limit;
                let start = range.len().saturating_sub(limit);
                (range[start..].to_vec(), more)
            }
        })
    })
    .ok_or_else(|| Refusal::new(ErrorCode::UnknownTarget, format!("no thread {thread}")))?;
    let store = s.hub.store.clone();
    let key = room.name().as_str().to_owned();
    let events = tokio::task::spawn_blocking(move || store.read_offsets(&key, &offsets))
        .await
        .map_err(HubError::from)?
        .map_err(HubError::from)?;
    let (floor, head) = room.bounds();
    Ok(Some(protocol::ok_with_events(
        id,
        &protocol::HistoryHead {
            room: room.name().as_str(),
            epoch: room.epoch(),
            head,
            first: floor + 1,
            more,
        },
        &events,
    )))
}

/// `read_only` of one thread: the thread must exist.
pub(super) fn check_thread(room: &Room, thread: u64) -> Result<(), Refusal> {
    if !index(room, |forum, _| forum.has_thread(thread)) {
        return Err(Refusal::new(
            ErrorCode::UnknownTarget,
            format!("no thread {thread} in {}", room.name()),
        ));
    }
    Ok(())
}

fn is_forum(room: &RoomName) -> bool {
    room.kind().name() == super::NAME
}

/// Runs `f` on the forum's index and moderation state (under the room's
/// lock). Callers check the room is a forum; any other room reads as an
/// empty forum.
fn index<T>(room: &Room, f: impl FnOnce(&Forum, &crate::moderation::Moderation) -> T) -> T {
    room.inspect(|state, view| {
        let state: &mut dyn std::any::Any = state;
        let empty = Forum::default();
        let forum = state.downcast_ref::<Forum>().unwrap_or(&empty);
        f(forum, view.moderation)
    })
}
