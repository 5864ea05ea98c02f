//! Who may do what in a room: each kind answers for its rooms
//! ([`RoomKind::allowed`](super::RoomKind::allowed)); the rules several
//! kinds share are here.
//!
//! The tables in `protocol/README.md` ("Rooms and authorization") are the
//! kinds' policies written out, one column per role, parents included;
//! `tests/authz.rs` checks every cell of them over a socket.

use crate::auth::Claims;
use crate::protocol::{ForumSettings, Role};

use super::name::RoomName;

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

/// Whether `user` may do `action` in `room`: its kind's policy. `grants`
/// are the room's settings (a forum's), for kinds that use them.
pub fn allowed(
    user: &Claims,
    room: &RoomName,
    grants: Option<&ForumSettings>,
    action: Action,
) -> bool {
    room.kind().allowed(user, room, grants, action)
}

/// Whether `user` moderates `room` through its own class (a teacher of
/// the class) or as staff, grants aside: only they create rooms and
/// change a room's settings.
pub fn home_moderator(user: &Claims, room: &RoomName) -> bool {
    // A room of no class (a conversation, an announcement) is nobody's to
    // configure.
    if room.kind().classless() {
        return false;
    }
    match user.role {
        Role::Staff => true,
        Role::Teacher => user.in_class(room.class()),
        Role::Student | Role::Parent => false,
    }
}

/// The family space (the homework diary, hand-ins, the document space):
/// as [`pupils_space`], but the parents of the class's pupils read (a
/// parent's `classes` claim holds their children's classes; what each
/// parent is shown of it is the kind's `shown`).
pub fn family_space(user: &Claims, room: &RoomName, action: Action) -> bool {
    match (user.role, action) {
        (Role::Parent, Action::Read) => user.in_class(room.class()),
        _ => pupils_space(user, room, action),
    }
}

/// The pupils' space (chat rooms, notes, a forum's own class): pupils and
/// teachers of the class read and post, teachers of the class moderate,
/// staff may do anything, and parents never read pupils' work.
pub fn pupils_space(user: &Claims, room: &RoomName, action: Action) -> bool {
    let in_class = user.in_class(room.class());
    match (user.role, action) {
        (Role::Staff, _) => true,
        (Role::Teacher, _) => in_class,
        (Role::Student, Action::Read | Action::Post) => in_class,
        (Role::Student, Action::Moderate) => false,
        (Role::Parent, _) => false,
    }
}
