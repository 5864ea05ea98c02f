//! Room names: `class/kind/name`, e.g. `3B/chat/revision-bac`.

use std::fmt;

const MAX_NAME_LEN: usize = 64;
/// The one room name of kind `audit`.
pub const AUDIT_NAME: &str = "log";

/// What a room is for; each kind has its own policy (see `room::policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Live group chat (revision sessions, class chat).
    Chat,
    /// The class's moderation audit log: one room, `CLASS/audit/log`,
    /// written only by the server.
    Audit,
    /// Threads and replies (debate, help or inter-class; see
    /// `protocol::Flavour`).
    Forum,
    /// One shared Yjs document (collective note-taking).
    Notes,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Chat, Kind::Audit, Kind::Forum, Kind::Notes];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Chat => "chat",
            Kind::Audit => "audit",
            Kind::Forum => "forum",
            Kind::Notes => "notes",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomNameError {
    #[error("room name must be class/kind/name, got {0:?}")]
    Shape(String),
    #[error("bad class {0:?}: 1 to 32 of A-Z a-z 0-9 - _")]
    Class(String),
    #[error("unknown room kind {0:?} (known: chat, audit, forum, notes)")]
    Kind(String),
    #[error("bad room name {0:?}: 1 to 64 of A-Z a-z 0-9 - _ .")]
    Name(String),
}

/// A validated room name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomName {
    full: String,
    class_end: usize,
    kind: Kind,
}

impl RoomName {
    pub fn parse(s: &str) -> Result<RoomName, RoomNameError> {
        let mut parts = s.split('/');
        let (Some(class), Some(kind), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(RoomNameError::Shape(truncate(s)));
        };
        if !crate::protocol::valid_class(class) {
            return Err(RoomNameError::Class(truncate(class)));
        }
        let kind = Kind::parse(kind).ok_or_else(|| RoomNameError::Kind(truncate(kind)))?;
        if !valid_name(name) || (kind == Kind::Audit && name != AUDIT_NAME) {
            return Err(RoomNameError::Name(truncate(name)));
        }
        Ok(RoomName {
            full: s.to_owned(),
            class_end: class.len(),
            kind,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }

    pub fn class(&self) -> &str {
        &self.full[..self.class_end]
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The audit log room of this room's class.
    pub fn audit_log(&self) -> RoomName {
        let full = format!("{}/{}/{}", self.class(), Kind::Audit.as_str(), AUDIT_NAME);
        RoomName {
            class_end: self.class_end,
            kind: Kind::Audit,
            full,
        }
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Error messages echo at most 80 characters of what the client sent.
fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let room = RoomName::parse("3B/chat/revision-bac").unwrap();
        assert_eq!(room.class(), "3B");
        assert_eq!(room.kind(), Kind::Chat);
        for bad in [
            "",
            "3B",
            "3B/chat",
            "3B/chat/x/y",
            "/chat/x",
            "3B/chat/",
            "3B/video/x",
            "3 B/chat/x",
            "3B/chat/a b",
            "3B/chat/..",
            "3B/chat/é",
        ] {
            assert!(RoomName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(RoomName::parse(&format!("3B/chat/{}", "a".repeat(65))).is_err());
    }
}
