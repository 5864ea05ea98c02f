//! Protocol v1: the only module that knows the wire format.
//!
//! Every WebSocket message is one binary frame holding one MessagePack map
//! with a string `type`. Requests may carry an `id` (u32) that the reply
//! (`ok` or `error`) echoes. Events (`event`, `presence`, `typing`) carry no
//! id. The full contract, with the tables of error and close codes, is
//! `protocol/README.md`; `protocol/vectors.json` holds sample frames that the
//! tests check this module against.

mod codec;
mod codes;
mod event;
mod forum;
mod notes;
mod reply;
mod request;

pub use codec::*;
pub use codes::{may_return, returned_by, CloseCode, ErrorCode, ANY_REQUEST};
pub use event::*;
pub use forum::{Flavour, ForumSettings, RoomsOk, ThreadInfo, ThreadsOk};
pub use notes::{ExportFormat, NoteExport, NoteVersionInfo, NoteVersions, YjsFrame};
pub use reply::*;
pub use request::*;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The WebSocket subprotocol a client must offer.
pub const SUBPROTOCOL: &str = "preau.v1";

/// The class segment of rooms that belong to no class (a conversation, a
/// user's feed, an announcement, and their audit log): never a class.
pub const NO_CLASS: &str = "_";

/// Longest class name, in bytes.
pub const MAX_CLASS_LEN: usize = 32;

/// A class name, as in room names and tokens' `classes`: 1 to
/// [`MAX_CLASS_LEN`] of `A-Z a-z 0-9 - _`.
pub fn valid_class(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_CLASS_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Who a user is, as other users see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: String,
    pub name: String,
    pub role: Role,
}

/// The school role carried by a token. On the wire, its name as a
/// string; read through `String` so that a kind's fields holding a role
/// (a conversation's members) decode from `rmpv` values too, which serde
/// enums do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Role {
    Student,
    Teacher,
    Parent,
    Staff,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Student, Role::Teacher, Role::Parent, Role::Staff];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Student => "student",
            Role::Teacher => "teacher",
            Role::Parent => "parent",
            Role::Staff => "staff",
        }
    }
}

impl TryFrom<String> for Role {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Role> for &'static str {
    fn from(role: Role) -> &'static str {
        role.as_str()
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "student" => Ok(Role::Student),
            "teacher" => Ok(Role::Teacher),
            "parent" => Ok(Role::Parent),
            "staff" => Ok(Role::Staff),
            other => Err(format!(
                "unknown role {other:?}, expected student, teacher, parent or staff"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_names_are_the_ones_serde_reads() {
        for name in REQUEST_TYPES {
            let frame =
                rmp_serde::to_vec_named(&std::collections::BTreeMap::from([("type", name)]))
                    .expect("encode");
            match rmp_serde::from_slice::<Request>(&frame) {
                Ok(request) => assert_eq!(request.type_name(), *name),
                Err(err) => assert!(
                    !err.to_string().contains("unknown variant"),
                    "serde does not know `{name}`: {err}"
                ),
            }
        }
    }

    fn user() -> UserInfo {
        UserInfo {
            id: "u1".into(),
            name: "Ana".into(),
            role: Role::Student,
        }
    }

    #[test]
    fn request_round_trip() {
        let req = Request::Join {
            id: Some(7),
            room: "3B/chat/revision".into(),
            since: Some(Position {
                epoch: "e1".into(),
                offset: 42,
            }),
        };
        let bytes = encode_request(&req).unwrap();
        assert_eq!(decode_request(&bytes).unwrap(), req);
    }

    #[test]
    fn classify_errors() {
        assert!(matches!(
            decode_request(&[0xc1]),
            Err(DecodeError::Malformed(_))
        ));
        let not_map = rmp_serde::to_vec(&5u8).unwrap();
        assert!(matches!(
            decode_request(&not_map),
            Err(DecodeError::Malformed(_))
        ));
        let positional = rmp_serde::to_vec(&("ping", 1u8)).unwrap();
        assert!(matches!(
            decode_request(&positional),
            Err(DecodeError::Malformed(_))
        ));
        let unknown =
            rmp_serde::to_vec_named(&serde_json::json!({"type": "fly", "id": 3})).unwrap();
        assert_eq!(
            decode_request(&unknown),
            Err(DecodeError::UnknownType {
                id: Some(3),
                ty: "fly".into()
            })
        );
        let wrong = rmp_serde::to_vec_named(
            &serde_json::json!({"type": "post", "id": 4, "room": 5, "text": "x"}),
        )
        .unwrap();
        let err = decode_request(&wrong).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidField);
        assert_eq!(err.id(), Some(4));
    }

    #[test]
    fn deep_nesting_is_malformed_not_a_crash() {
        for depth in [17usize, 700, 60_000] {
            let mut frame = vec![0x83];
            frame.extend(rmp_serde::to_vec("type").unwrap());
            frame.extend(rmp_serde::to_vec("ping").unwrap());
            frame.extend(rmp_serde::to_vec("id").unwrap());
            frame.push(1);
            frame.extend(rmp_serde::to_vec("x").unwrap());
            frame.extend(std::iter::repeat_n(0x91u8, depth));
            frame.push(0xc0);
            let err = decode_request(&frame).unwrap_err();
            assert_eq!(err.code(), ErrorCode::MalformedFrame, "depth {depth}");
        }
    }

    #[test]
    fn spliced_events_decode_as_typed_reply() {
        let ev = Event {
            room: "3B/chat/r".into(),
            epoch: "e".into(),
            offset: 1,
            ts: 10,
            from: user(),
            body: Body::message("salut"),
        };
        let raw = event(&ev);
        let data = PostOk {
            room: "3B/chat/r".into(),
            epoch: "e".into(),
            offset: 1,
            ts: 10,
        };
        let frame = ok_with_events(Some(9), &data, &[raw.clone(), raw]);
        let ServerFrame::Ok { id, .. } = decode_server_frame(&frame).unwrap() else {
            panic!("not ok")
        };
        assert_eq!(id, Some(9));
        #[derive(Deserialize)]
        struct WithEvents {
            offset: u64,
            events: Vec<Event>,
        }
        let parsed: WithEvents = decode_ok_data(&frame).unwrap();
        assert_eq!(parsed.offset, 1);
        assert_eq!(parsed.events, vec![ev.clone(), ev]);
    }
}
