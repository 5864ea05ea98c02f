//! Chat rooms: live group chat (revision sessions, class chat). Chat
//! uses only the requests every room shares (`post`, `history`,
//! moderation), derives no state, and is kept for `retention`.

use crate::auth::Claims;
use crate::protocol::ForumSettings;
use crate::room::policy::{self, Action};
use crate::room::{RoomKind, RoomName};
use crate::session::KindHandler;

pub struct Chat;

impl RoomKind for Chat {
    fn name(&self) -> &'static str {
        "chat"
    }

    /// The pupils' space: parents never read it.
    fn allowed(
        &self,
        user: &Claims,
        room: &RoomName,
        _grants: Option<&ForumSettings>,
        action: Action,
    ) -> bool {
        policy::pupils_space(user, room, action)
    }
}

/// Chat owns no request of its own; a post naming someone with `@` tells
/// them.
impl KindHandler for Chat {
    fn posted(&self, session: &crate::session::Session, post: &crate::session::Posted<'_>) {
        super::common::notify_mentions(session, post);
    }
}
