//! The class's moderation audit log: one room, `CLASS/audit/log`, written
//! only by the server (every moderation action and report of the class's
//! rooms is appended to it). The class's teachers and staff read it.

use crate::auth::Claims;
use crate::protocol::{ForumSettings, Role};
use crate::room::name::AUDIT_NAME;
use crate::room::policy::Action;
use crate::room::{RoomKind, RoomName};
use crate::session::KindHandler;

pub struct Audit;

impl RoomKind for Audit {
    fn name(&self) -> &'static str {
        crate::room::name::AUDIT_KIND
    }

    fn valid_name(&self, name: &str) -> bool {
        name == AUDIT_NAME
    }

    fn sample_name(&self) -> &'static str {
        AUDIT_NAME
    }

    /// Teachers of the class and staff read it; nobody posts to it (the
    /// server appends) and nobody moderates it; pupils and parents never
    /// see it.
    fn allowed(
        &self,
        user: &Claims,
        room: &RoomName,
        _grants: Option<&ForumSettings>,
        action: Action,
    ) -> bool {
        match (user.role, action) {
            (Role::Staff, Action::Read) => true,
            (Role::Teacher, Action::Read) => user.in_class(room.class()),
            _ => false,
        }
    }
}

impl KindHandler for Audit {
    fn reportable(&self) -> bool {
        false
    }
}
