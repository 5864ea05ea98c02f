//! Forums: threads and replies (debate, help or inter-class; see
//! `protocol::Flavour`). A forum's own class uses it like a chat room; an
//! inter-class forum lets in the classes and moderators its `configure`
//! grants. Its state is the thread index (`index.rs`), rebuilt from the
//! events on load; its requests are in `requests.rs`.

pub mod index;
mod requests;

use std::sync::Arc;

use crate::auth::Claims;
use crate::protocol::{ForumSettings, ModAction, Request, Role};
use crate::room::policy::{self, Action};
use crate::room::{Commit, KindState, LoadContext, Room, RoomKind, RoomName};
use crate::session::kind::{BoxFuture, Handled, KindHandler, KindRequest};
use crate::session::{NewPost, Page, Refusal, Session};
use crate::store::StoreError;

pub use index::Forum as Index;

/// The kind's name in room names.
pub const NAME: &str = "forum";

pub struct Forum;

impl RoomKind for Forum {
    fn name(&self) -> &'static str {
        NAME
    }

    /// The class's own members as in chat rooms, plus the grants of an
    /// inter-class forum: pupils and teachers of its `classes` read and
    /// post, its `moderators` (teachers) moderate. Parents never read
    /// pupils' debates.
    fn allowed(
        &self,
        user: &Claims,
        room: &RoomName,
        grants: Option<&ForumSettings>,
        action: Action,
    ) -> bool {
        if policy::pupils_space(user, room, action) {
            return true;
        }
        let Some(settings) = grants else {
            return false;
        };
        let granted_class = settings.classes.iter().any(|c| user.in_class(c));
        let granted_moderator =
            user.role == Role::Teacher && settings.moderators.contains(&user.sub);
        match (user.role, action) {
            (Role::Teacher, Action::Moderate) => granted_moderator,
            (Role::Teacher, Action::Read | Action::Post) => granted_class || granted_moderator,
            (Role::Student, Action::Read | Action::Post) => granted_class,
            _ => false,
        }
    }

    fn has_grants(&self) -> bool {
        true
    }

    /// The thread index, from every stored event: a class forum holds a
    /// few thousand posts a year, which a rebuild reads in milliseconds.
    fn load(
        &self,
        cx: &LoadContext<'_>,
        room: &str,
        last: u64,
    ) -> Result<Box<dyn KindState>, StoreError> {
        let (frames, _) = cx.store.read_after(room, 0, last, usize::MAX)?;
        let events: Vec<crate::protocol::Event> = frames
            .iter()
            .filter_map(|frame| match crate::protocol::decode_server_frame(frame) {
                Ok(crate::protocol::ServerFrame::Event(event)) => Some(event),
                _ => None,
            })
            .collect();
        Ok(Box::new(index::Forum::rebuild(&events)))
    }
}

impl KindState for index::Forum {
    fn apply(&mut self, commit: &Commit<'_>, _chores: &mut Vec<crate::room::Chore>) {
        if let Some(effect) = commit.effect {
            self.apply_effect(commit.offset, effect);
        }
    }

    /// A post's edits carry its text: they go with it.
    fn linked(&self, target: u64) -> Vec<u64> {
        self.post(target)
            .map(|p| p.edits.clone())
            .unwrap_or_default()
    }
}

impl KindHandler for Forum {
    fn requests(&self) -> &'static [&'static str] {
        &["edit", "answer", "threads", "mark_read"]
    }

    /// A reply tells the thread's author, through their feed (not their
    /// own replies; not a deleted thread's); a post naming someone with
    /// `@` tells them.
    fn posted(&self, session: &Session, post: &crate::session::Posted<'_>) {
        super::common::notify_mentions(session, post);
        let (room, key) = (post.room, post.key);
        let (Some(thread), Ok(by)) = (post.thread, session.user()) else {
            return;
        };
        let head = room
            .with_state(|index: &mut index::Forum, _| {
                index
                    .thread_head(thread)
                    .map(|(from, title)| (from.clone(), title.map(str::to_owned)))
            })
            .flatten();
        let Some((author, Some(title))) = head else {
            return;
        };
        if author.id == by.id {
            return;
        }
        let fields = crate::kinds::inbox::NotifyFields {
            what: "reply".to_owned(),
            room: room.name().to_string(),
            at: Some(thread),
            title,
            preview: None,
            by: Some(by.clone()),
            hold_until: None,
            urgent: false,
        };
        // Stored once per reply: the post's own key when it has one (a
        // retry), else a fresh one.
        let key = format!(
            "reply-{thread}-{}",
            key.map_or_else(crate::ids::new_epoch, |k| format!("{}:{k}", by.id))
        );
        crate::kinds::inbox::notify_many(
            session.hub.clone(),
            vec![(author.id, author.role)],
            fields,
            key,
        );
    }

    fn handle<'a>(
        &'static self,
        session: &'a mut Session,
        request: KindRequest,
    ) -> BoxFuture<'a, Handled> {
        Box::pin(async move {
            let KindRequest::Decoded(request) = request else {
                return Err(crate::session::kind::not_owned(NAME, request.type_name()));
            };
            let id = request.id();
            match request {
                Request::Edit {
                    room,
                    offset,
                    text,
                    title,
                    ..
                } => requests::edit(session, id, &room, offset, text, title).await,
                Request::Answer {
                    room,
                    thread,
                    offset,
                    ..
                } => requests::answer(session, id, &room, thread, offset).await,
                Request::Threads {
                    room,
                    before,
                    limit,
                    ..
                } => requests::threads(session, id, &room, before, limit).await,
                Request::MarkRead {
                    room,
                    thread,
                    offset,
                    ..
                } => requests::mark_read(session, id, &room, thread, offset).await,
                other => Err(crate::session::kind::not_owned(NAME, other.type_name())),
            }
        })
    }

    fn check_post(
        &self,
        session: &Session,
        room: &Room,
        post: &NewPost,
    ) -> Result<Option<u64>, Refusal> {
        requests::check_forum_post(session, room, post)
    }

    fn check_action(
        &self,
        _session: &Session,
        room: &Room,
        action: &ModAction,
    ) -> Result<(), Refusal> {
        match action {
            ModAction::ReadOnly {
                thread: Some(thread),
                ..
            } => requests::check_thread(room, *thread),
            other => crate::session::kind::refuse_kind_actions(room, other),
        }
    }

    fn thread_history<'a>(
        &'static self,
        session: &'a mut Session,
        id: Option<u32>,
        room: &'a Arc<Room>,
        thread: u64,
        page: Page,
    ) -> BoxFuture<'a, Handled> {
        Box::pin(requests::thread_history(session, id, room, thread, page))
    }
}
