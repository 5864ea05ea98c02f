//! Who may do what in a room: one policy per room kind.
//!
//! The tables in `protocol/README.md` ("Rooms and authorization") are these
//! functions written out; `tests/authz.rs` checks every cell of them over a
//! socket.

use crate::auth::Claims;
use crate::protocol::{ForumSettings, Role};

use super::name::{Kind, RoomName};

/// An action a user attempts in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Join, see presence, read history (forums: the thread list; notes:
    /// receive the document).
    Read,
    /// Post messages and typing indicators (forums: reply, edit and delete
    /// one's own posts; notes: edit).
    Post,
    /// Moderation: redact anyone's message, mute, kick, ban, slow mode,
    /// read-only, pin (notes: validate).
    Moderate,
}

/// Whether `user` may do `action` in `room`. `forum` is the room's forum
/// settings (its grants), for rooms of kind `forum` that have them.
pub fn allowed(
    user: &Claims,
    room: &RoomName,
    forum: Option<&ForumSettings>,
    action: Action,
) -> bool {
    match room.kind() {
        Kind::Chat | Kind::Notes => class_room(user, room, action),
        Kind::Audit => audit(user, room, action),
        Kind::Forum => self::forum(user, room, forum, action),
    }
}

/// Whether `user` moderates `room` through its own class (or as staff),
/// grants aside: only they may change a forum's settings.
pub fn home_moderator(user: &Claims, room: &RoomName) -> bool {
    class_room(user, room, Action::Moderate)
}

/// The audit log: the class's teachers and staff read it; nobody posts to
/// it (the server appends) and nobody moderates it.
fn audit(user: &Claims, room: &RoomName, action: Action) -> bool {
    match (user.role, action) {
        (Role::Staff, Action::Read) => true,
        (Role::Teacher, Action::Read) => user.in_class(room.class()),
        _ => false,
    }
}

/// Chat rooms and notes are the pupils' space: pupils and teachers of the
/// class read and post (edit), teachers of the class moderate (validate),
/// staff may do anything, and parents never read pupils' work.
fn class_room(user: &Claims, room: &RoomName, action: Action) -> bool {
    let in_class = user.in_class(room.class());
    match (user.role, action) {
        (Role::Staff, _) => true,
        (Role::Teacher, _) => in_class,
        (Role::Student, Action::Read | Action::Post) => in_class,
        (Role::Student, Action::Moderate) => false,
        (Role::Parent, _) => false,
    }
}

/// Forums: the class's own members as in chat rooms, plus the grants of
/// an inter-class forum: pupils and teachers of its `classes` read and
/// post, its `moderators` (teachers) moderate.
fn forum(user: &Claims, room: &RoomName, settings: Option<&ForumSettings>, action: Action) -> bool {
    if class_room(user, room, action) {
        return true;
    }
    let Some(settings) = settings else {
        return false;
    };
    let granted_class = settings.classes.iter().any(|c| user.in_class(c));
    let granted_moderator = user.role == Role::Teacher && settings.moderators.contains(&user.sub);
    match (user.role, action) {
        (Role::Teacher, Action::Moderate) => granted_moderator,
        (Role::Teacher, Action::Read | Action::Post) => granted_class || granted_moderator,
        (Role::Student, Action::Read | Action::Post) => granted_class,
        _ => false,
    }
}
