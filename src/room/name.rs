//! Room names: `class/kind/name`, e.g. `3B/chat/revision-bac`.

use std::fmt;

use super::kind::RoomKind;

const MAX_NAME_LEN: usize = 64;
/// Longest kind segment.
pub const MAX_KIND_LEN: usize = 16;
/// The kind of the class's audit log, which moderation writes to (the
/// core's own kind: `room::Kinds::new` requires it).
pub const AUDIT_KIND: &str = "audit";
/// The one room name of kind `audit`.
pub const AUDIT_NAME: &str = "log";
pub use crate::protocol::NO_CLASS;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomNameError {
    #[error("room name must be class/kind/name, got {0:?}")]
    Shape(String),
    #[error("bad class {0:?}: 1 to 32 of A-Z a-z 0-9 - _")]
    Class(String),
    #[error("unknown room kind {0:?} (known: {1})")]
    Kind(String, String),
    #[error("bad room name {0:?}: 1 to 64 of A-Z a-z 0-9 - _ .")]
    Name(String),
}

/// A validated room name, with its kind (see `room::Kinds::parse`).
#[derive(Clone)]
pub struct RoomName {
    full: String,
    class_end: usize,
    kind: &'static dyn RoomKind,
}

impl PartialEq for RoomName {
    fn eq(&self, other: &Self) -> bool {
        self.full == other.full
    }
}

impl Eq for RoomName {}

impl std::hash::Hash for RoomName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.full.hash(state);
    }
}

impl fmt::Debug for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RoomName").field(&self.full).finish()
    }
}

impl RoomName {
    /// Parses `class/kind/name`, looking the kind up with `kind` (`known`
    /// lists the kinds for the error message).
    pub(super) fn parse_with(
        s: &str,
        kind: impl Fn(&str) -> Option<&'static dyn RoomKind>,
        known: impl Fn() -> String,
    ) -> Result<RoomName, RoomNameError> {
        let (class, kind_name, name) = split(s)?;
        let kind =
            kind(kind_name).ok_or_else(|| RoomNameError::Kind(truncate(kind_name), known()))?;
        if !valid_name(name) || !kind.valid_name(name) {
            return Err(RoomNameError::Name(truncate(name)));
        }
        // `_` is the class of the rooms that belong to none, and only theirs
        // (the audit log of those rooms included).
        let fits = if class == NO_CLASS {
            kind.classless() || kind.name() == AUDIT_KIND
        } else {
            !kind.classless()
        };
        if !fits {
            return Err(RoomNameError::Class(truncate(class)));
        }
        Ok(RoomName {
            full: s.to_owned(),
            class_end: class.len(),
            kind,
        })
    }

    /// Checks the shape of a room name (class, kind and name characters)
    /// without knowing the kinds: for names from other nodes, which the
    /// hub parses against its kinds before use.
    pub fn check_shape(s: &str) -> Result<(), RoomNameError> {
        let (_, kind, name) = split(s)?;
        if kind.is_empty()
            || kind.len() > MAX_KIND_LEN
            || !kind.bytes().all(|b| b.is_ascii_lowercase())
        {
            return Err(RoomNameError::Kind(truncate(kind), String::new()));
        }
        if !valid_name(name) {
            return Err(RoomNameError::Name(truncate(name)));
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }

    pub fn class(&self) -> &str {
        &self.full[..self.class_end]
    }

    /// The room's kind.
    pub fn kind(&self) -> &'static dyn RoomKind {
        self.kind
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// `(class, kind, name)` of a room name with three segments and a valid
/// class.
fn split(s: &str) -> Result<(&str, &str, &str), RoomNameError> {
    let mut parts = s.split('/');
    let (Some(class), Some(kind), Some(name), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RoomNameError::Shape(truncate(s)));
    };
    if !crate::protocol::valid_class(class) {
        return Err(RoomNameError::Class(truncate(class)));
    }
    Ok((class, kind, name))
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
    use crate::room::kind::Kinds;
    use crate::room::policy::Action;

    struct Test(&'static str);

    impl RoomKind for Test {
        fn name(&self) -> &'static str {
            self.0
        }
        fn valid_name(&self, name: &str) -> bool {
            self.0 != AUDIT_KIND || name == AUDIT_NAME
        }
        fn allowed(
            &self,
            _: &crate::auth::Claims,
            _: &RoomName,
            _: Option<&crate::protocol::ForumSettings>,
            _: Action,
        ) -> bool {
            false
        }
    }

    static CHAT: Test = Test("chat");
    static AUDIT: Test = Test("audit");

    #[test]
    fn parses_and_rejects() {
        let kinds = Kinds::new(vec![&CHAT, &AUDIT]).unwrap();
        let room = kinds.parse("3B/chat/revision-bac").unwrap();
        assert_eq!(room.class(), "3B");
        assert_eq!(room.kind().name(), "chat");
        assert!(kinds.parse("3B/audit/log").is_ok());
        for bad in [
            "",
            "3B",
            "3B/chat",
            "3B/chat/x/y",
            "/chat/x",
            "3B/chat/",
            "3B/video/x",
            "3B/Chat/x",
            "3 B/chat/x",
            "3B/chat/a b",
            "3B/chat/..",
            "3B/chat/é",
            "3B/audit/other",
        ] {
            assert!(kinds.parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(kinds.parse(&format!("3B/chat/{}", "a".repeat(65))).is_err());
        let err = kinds.parse("3B/video/x").unwrap_err().to_string();
        assert!(err.contains("known: chat, audit"), "{err}");
    }

    #[test]
    fn a_registry_needs_the_audit_log_and_distinct_names() {
        assert!(Kinds::new(vec![&CHAT]).is_err());
        assert!(Kinds::new(vec![&CHAT, &AUDIT, &CHAT]).is_err());
    }
}
