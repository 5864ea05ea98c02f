//! Events: a room's durable timeline (`Event`, `Body`), the ephemeral
//! `presence` and `typing` frames, and `EventFrame` (an event inside a reply).

use serde::{Deserialize, Serialize};

use super::*;

/// An event as a complete `event` frame (`type: "event"` first) inside
/// another reply, exactly as `history` would return it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFrame(pub Event);

impl std::ops::Deref for EventFrame {
    type Target = Event;
    fn deref(&self) -> &Event {
        &self.0
    }
}

impl Serialize for EventFrame {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Frame<'a> {
            Event(&'a Event),
        }
        Frame::Event(&self.0).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for EventFrame {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match ServerFrame::deserialize(deserializer)? {
            ServerFrame::Event(event) => Ok(EventFrame(event)),
            _ => Err(serde::de::Error::custom("not an event frame")),
        }
    }
}

/// A durable event of a room's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub room: String,
    pub epoch: String,
    pub offset: u64,
    /// Milliseconds since the Unix epoch, server clock.
    pub ts: u64,
    pub from: UserInfo,
    pub body: Body,
}

/// What an event says; `kind` is the extension point for later event kinds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    Message {
        text: String,
        /// Forums: the first post of a new thread, titled so.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        /// Forums: a reply in this thread.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quote: Option<String>,
    },
    /// What remains of a redacted message (stored in its place).
    Redacted {
        by: UserInfo,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Forums: the thread the message was in (its own offset for a
        /// thread's first post).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread: Option<u64>,
        /// Forums: set when the redacted event was an edit of this post.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        edit_of: Option<u64>,
    },
    /// Forums: a new version of post `target` by its author.
    Edit {
        target: u64,
        thread: u64,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
    },
    /// Help forums: `offset` answers `thread` (`nil`: no answer any more).
    Answer {
        thread: u64,
        #[serde(default)]
        offset: Option<u64>,
    },
    /// Notes: one Yjs v1 update, applied in offset order.
    YjsUpdate {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// A moderation action, in the room it applies to (`from` is the
    /// moderator). `until` (ms) is set for `mute`; `target_from` and
    /// `target_ts` for `redact` (the redacted message's author and time).
    Moderation {
        action: ModAction,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_from: Option<UserInfo>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_ts: Option<u64>,
        /// Forums: the redacted post's thread.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_thread: Option<u64>,
    },
    /// A member reported the message at `offset` of `room` (in the class's
    /// audit log; `from` is the reporter).
    Report {
        room: String,
        offset: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// An entry of a class's audit log (`CLASS/audit/log`): `action` was
    /// done in `room` by `from`.
    Audit {
        room: String,
        action: ModAction,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<u64>,
    },
    /// An event of a room kind's own (`kind` is one of the kind's event
    /// kinds, e.g. `agenda_item`), with the fields the kind's section of
    /// the spec gives. Any `kind` not above reads as this: a client shows
    /// the kinds it knows and skips the others.
    #[serde(untagged)]
    Kind(KindBody),
}

/// `value` as a MessagePack value, structs as maps with named fields (as
/// on the wire; `rmpv::ext::to_value` would make them arrays).
pub fn named_value(value: &impl Serialize) -> Result<rmpv::Value, String> {
    let bytes = rmp_serde::to_vec_named(value).map_err(|e| e.to_string())?;
    rmpv::decode::read_value(&mut &bytes[..]).map_err(|e| e.to_string())
}

/// The body of a kind's own event (see [`Body::Kind`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindBody {
    pub kind: String,
    #[serde(flatten)]
    pub fields: std::collections::BTreeMap<String, rmpv::Value>,
}

// The server never writes floats in a kind's body (times are integer
// milliseconds), so equality is an equivalence there.
impl Eq for KindBody {}

impl KindBody {
    /// The body of kind `kind` with the fields of `value` (a struct that
    /// serializes to a map).
    pub fn new(kind: &str, value: &impl Serialize) -> Result<KindBody, String> {
        let fields = match named_value(value)? {
            rmpv::Value::Map(entries) => entries
                .into_iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v)))
                .collect(),
            _ => return Err("a kind's event body is a map".to_owned()),
        };
        Ok(KindBody {
            kind: kind.to_owned(),
            fields,
        })
    }

    /// The fields as `T`.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        let map = rmpv::Value::Map(
            self.fields
                .iter()
                .map(|(k, v)| (rmpv::Value::from(k.as_str()), v.clone()))
                .collect(),
        );
        rmpv::ext::from_value(map).map_err(|e| e.to_string())
    }
}

impl Body {
    /// A plain chat message.
    pub fn message(text: impl Into<String>) -> Body {
        Body::Message {
            text: text.into(),
            title: None,
            thread: None,
            reply_to: None,
            quote: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceAction {
    Join,
    Leave,
}

/// A member's first connection joined, or its last one left (ephemeral).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub room: String,
    pub action: PresenceAction,
    pub user: UserInfo,
}

/// A member is typing (ephemeral; clients expire it after 5 s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Typing {
    pub room: String,
    pub user: UserInfo,
}
