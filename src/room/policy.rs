//! Who may do what in a room: one policy per room kind.
//!
//! The table in `protocol/README.md` ("Authorization") is this function
//! written out; `tests/authz.rs` checks every cell of it over a socket.

use crate::auth::Claims;
use crate::protocol::Role;

use super::name::{Kind, RoomName};

/// An action a user attempts in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Join, see presence, read history.
    Read,
    /// Post messages and typing indicators.
    Post,
    /// Moderation: redact anyone's message, mute, kick, ban, slow mode,
    /// read-only.
    Moderate,
}

/// Whether `user` may do `action` in `room`.
pub fn allowed(user: &Claims, room: &RoomName, action: Action) -> bool {
    match room.kind() {
        Kind::Chat => chat(user, room, action),
        Kind::Audit => audit(user, room, action),
    }
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

/// Chat rooms are the pupils' space: pupils and teachers of the class read and
/// post, teachers of the class moderate, staff may do anything, and parents
/// never read pupils' chats.
fn chat(user: &Claims, room: &RoomName, action: Action) -> bool {
    let in_class = user.in_class(room.class());
    match (user.role, action) {
        (Role::Staff, _) => true,
        (Role::Teacher, _) => in_class,
        (Role::Student, Action::Read | Action::Post) => in_class,
        (Role::Student, Action::Moderate) => false,
        (Role::Parent, _) => false,
    }
}
