//! Protocol v1 test vectors (`protocol/vectors.json`) and the spec
//! (`protocol/README.md`) checked against the server's own encoders and
//! decoders, and against a running server.
//!
//! `PREAU_WRITE_VECTORS=1 cargo test --test vectors` rewrites
//! `protocol/vectors.json` from the encoders (review the diff by eye), then
//! checks it like a normal run.

mod support;

use std::collections::BTreeSet;
use std::fmt;

use bytes::Bytes;
use futures_util::SinkExt;
use preau::auth::{Claims, Keyring};
use preau::protocol::{
    self, Body, CloseCode, DecodeError, ErrorCode, ErrorReply, Event, HelloOk, HistoryOk, JoinOk,
    Limits, ModAction, Position, PostOk, Presence, PresenceAction, Recovery, RecoveryFailure,
    Request, Role, ServerFrame, Typing, UserInfo,
};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use support::*;
use tokio_tungstenite::tungstenite::Message;

const VECTORS_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/vectors.json");
const README_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/README.md");

/// The key that signs the token of the `hello` vectors (documented in the README).
const VECTOR_SECRET: &str = "k1:0123456789abcdef0123456789abcdef";

// ---------------------------------------------------------------------------
// Order-preserving JSON (serde_json's Value sorts keys; wire order matters here)
// ---------------------------------------------------------------------------

/// A JSON value whose objects keep their keys in order.
#[derive(Debug, Clone, PartialEq)]
enum J {
    Null,
    Bool(bool),
    Uint(u64),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            J::Str(s) => Some(s),
            _ => None,
        }
    }

    fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("J converts to serde_json::Value")
    }

    /// The keys of every object, recursively, in order (values ignored;
    /// an array's shape is its first item's).
    fn shape(&self) -> String {
        match self {
            J::Obj(entries) => {
                let inner: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!("{k}{}", v.shape()))
                    .collect();
                format!("{{{}}}", inner.join(","))
            }
            J::Arr(items) => match items.first() {
                Some(first) => format!("[{}]", first.shape()),
                None => "[]".to_owned(),
            },
            _ => String::new(),
        }
    }
}

impl Serialize for J {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            J::Null => serializer.serialize_unit(),
            J::Bool(b) => serializer.serialize_bool(*b),
            J::Uint(n) => serializer.serialize_u64(*n),
            J::Int(n) => serializer.serialize_i64(*n),
            J::Float(f) => serializer.serialize_f64(*f),
            J::Str(s) => serializer.serialize_str(s),
            J::Arr(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            J::Obj(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<J, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = J;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<J, E> {
                Ok(J::Null)
            }
            fn visit_none<E>(self) -> Result<J, E> {
                Ok(J::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<J, E> {
                Ok(J::Bool(b))
            }
            fn visit_u64<E>(self, n: u64) -> Result<J, E> {
                Ok(J::Uint(n))
            }
            fn visit_i64<E>(self, n: i64) -> Result<J, E> {
                Ok(u64::try_from(n).map_or(J::Int(n), J::Uint))
            }
            fn visit_f64<E>(self, f: f64) -> Result<J, E> {
                Ok(J::Float(f))
            }
            fn visit_str<E>(self, s: &str) -> Result<J, E> {
                Ok(J::Str(s.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<J, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(J::Arr(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<J, A::Error> {
                let mut entries: Vec<(String, J)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, J>()? {
                    if entries.iter().any(|(e, _)| *e == k) {
                        return Err(de::Error::custom(format!("duplicate key {k:?}")));
                    }
                    entries.push((k, v));
                }
                Ok(J::Obj(entries))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Decodes one MessagePack value into ordered JSON. `None` unless the frame
/// is exactly one value in its shortest encoding, which every vector is (this
/// also rejects the reserved marker 0xc1, which rmpv would read as nil).
fn generic(frame: &[u8]) -> Option<J> {
    let mut rest = frame;
    let value = rmpv::decode::read_value(&mut rest).ok()?;
    let mut canonical = Vec::new();
    rmpv::encode::write_value(&mut canonical, &value).ok()?;
    if !rest.is_empty() || canonical != frame {
        return None;
    }
    Some(msgpack_to_json(&value))
}

fn msgpack_to_json(value: &rmpv::Value) -> J {
    use rmpv::Value as M;
    match value {
        M::Nil => J::Null,
        M::Boolean(b) => J::Bool(*b),
        M::Integer(n) => match n.as_u64() {
            Some(u) => J::Uint(u),
            None => J::Int(n.as_i64().expect("integer fits i64")),
        },
        M::F32(f) => J::Float(f64::from(*f)),
        M::F64(f) => J::Float(*f),
        M::String(s) => J::Str(s.as_str().expect("utf-8 string").to_owned()),
        M::Array(items) => J::Arr(items.iter().map(msgpack_to_json).collect()),
        M::Map(entries) => J::Obj(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = k.as_str().expect("map keys are strings").to_owned();
                    (key, msgpack_to_json(v))
                })
                .collect(),
        ),
        // `bin` (only Yjs payloads) reads as an array of byte values.
        M::Binary(bytes) => J::Arr(bytes.iter().map(|b| J::Uint(u64::from(*b))).collect()),
        M::Ext(..) => panic!("protocol v1 has no ext values"),
    }
}

// ---------------------------------------------------------------------------
// The vectors file
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    name: String,
    direction: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    json: Option<J>,
    hex: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Vector {
    fn bytes(&self) -> Vec<u8> {
        hex::decode(&self.hex).unwrap_or_else(|e| panic!("{}: bad hex: {e}", self.name))
    }

    fn json(&self) -> &J {
        self.json
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no json", self.name))
    }
}

/// serde_json's compact output with a space after `:` and `,`.
struct Spaced;

impl serde_json::ser::Formatter for Spaced {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

fn one_line<T: Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Spaced);
    value.serialize(&mut ser).expect("serializes");
    String::from_utf8(out).expect("utf-8")
}

/// One vector per object, one field per line, each frame's json on one line.
fn render(vectors: &[Vector]) -> String {
    let mut out = String::from("[\n");
    for (i, v) in vectors.iter().enumerate() {
        out.push_str("  {\n");
        let mut fields = vec![
            format!("\"name\": {}", one_line(&v.name)),
            format!("\"direction\": {}", one_line(&v.direction)),
        ];
        if let Some(json) = &v.json {
            fields.push(format!("\"json\": {}", one_line(json)));
        }
        fields.push(format!("\"hex\": {}", one_line(&v.hex)));
        if let Some(error) = &v.error {
            fields.push(format!("\"error\": {}", one_line(error)));
        }
        out.push_str(
            &fields
                .iter()
                .map(|f| format!("    {f}"))
                .collect::<Vec<_>>()
                .join(",\n"),
        );
        out.push_str(if i + 1 == vectors.len() {
            "\n  }\n"
        } else {
            "\n  },\n"
        });
    }
    out.push_str("]\n");
    out
}

fn load_vectors() -> Vec<Vector> {
    let text = std::fs::read_to_string(VECTORS_PATH)
        .unwrap_or_else(|e| panic!("cannot read {VECTORS_PATH}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{VECTORS_PATH} is not valid: {e}"))
}

// ---------------------------------------------------------------------------
// The generator: sample frames built with the server's own encoders
// ---------------------------------------------------------------------------

const ROOM: &str = "3B/chat/revision-bac";
const EPOCH: &str = "9f2c4e6a8b1d3f57";
/// 2025-11-28T08:00:00Z in milliseconds: above u32::MAX, so a uint64 on the wire.
const T0: u64 = 1_764_316_800_000;

fn ana() -> UserInfo {
    UserInfo {
        id: "ana".into(),
        name: "Ana Martin".into(),
        role: Role::Student,
    }
}

fn prof() -> UserInfo {
    UserInfo {
        id: "t-durand".into(),
        name: "M. Durand".into(),
        role: Role::Teacher,
    }
}

fn sample_event(offset: u64) -> Event {
    let (from, text, minutes) = match offset {
        41 => (prof(), "Révisions ce soir à 18 h.", 0),
        42 => (ana(), "Bonjour à tous", 1),
        43 => (prof(), "Chapitre 3 d'abord.", 2),
        44 => (ana(), "On commence par l'exercice 2 ?", 3),
        other => panic!("no sample event {other}"),
    };
    Event {
        room: ROOM.into(),
        epoch: EPOCH.into(),
        offset,
        ts: T0 + minutes * 60_000,
        from,
        body: Body::message(text),
    }
}

const AUDIT_ROOM: &str = "3B/audit/log";
const AUDIT_EPOCH: &str = "5e7d9c1b3a2f4e60";
const REDACT_REASON: &str = "Propos déplacés";
/// The mute of the samples: 600 s from the moderation event at offset 46.
const MUTE_SECS: u64 = 600;

fn moderate_in(room: &str, id: u32, action: ModAction) -> Request {
    Request::Moderate {
        id: Some(id),
        room: room.into(),
        action,
    }
}

fn moderate(id: u32, action: ModAction) -> Request {
    moderate_in(ROOM, id, action)
}

/// The moderation events of the samples, after the messages 41..=44.
fn moderation_event(offset: u64) -> Event {
    let (from, action, minutes) = match offset {
        45 => (
            prof(),
            ModAction::Redact {
                offset: 42,
                reason: Some(REDACT_REASON.into()),
            },
            5,
        ),
        46 => (
            prof(),
            ModAction::Mute {
                user: "ana".into(),
                seconds: MUTE_SECS,
                reason: Some("Hors sujet".into()),
                announce: false,
            },
            6,
        ),
        47 => (
            prof(),
            ModAction::Ban {
                user: "ana".into(),
                reason: Some("Insultes répétées".into()),
                announce: false,
            },
            7,
        ),
        48 => (prof(), ModAction::SlowMode { seconds: 30 }, 8),
        // A pupil redacting their own message.
        49 => (
            ana(),
            ModAction::Redact {
                offset: 44,
                reason: None,
            },
            9,
        ),
        other => panic!("no sample moderation event {other}"),
    };
    let ts = T0 + minutes * 60_000;
    let until = matches!(action, ModAction::Mute { .. }).then_some(ts + MUTE_SECS * 1000);
    let (target_from, target_ts) = match &action {
        ModAction::Redact { offset, .. } => {
            let target = sample_event(*offset);
            (Some(target.from), Some(target.ts))
        }
        _ => (None, None),
    };
    Event {
        room: ROOM.into(),
        epoch: EPOCH.into(),
        offset,
        ts,
        from,
        body: Body::Moderation {
            action,
            until,
            target_from,
            target_ts,
            target_thread: None,
        },
    }
}

/// The tombstone the server stores in place of the message a redaction
/// event removes, built by the server's own code.
fn tombstone(redaction: &Event) -> Event {
    let Some(preau::room::Effect::Redact { tombstone, .. }) = preau::room::Effect::of(redaction)
    else {
        panic!("offset {} is not a redaction", redaction.offset)
    };
    match protocol::decode_server_frame(&tombstone).expect("tombstone decodes") {
        ServerFrame::Event(event) => {
            assert_eq!(protocol::event(&event), tombstone, "tombstone re-encodes");
            event
        }
        other => panic!("tombstone is not an event: {other:?}"),
    }
}

/// A report of message 12, as the audit log holds it.
fn report_event(offset: u64) -> Event {
    Event {
        room: AUDIT_ROOM.into(),
        epoch: AUDIT_EPOCH.into(),
        offset,
        ts: 1_795_000_050_000,
        from: ana(),
        body: Body::Report {
            room: ROOM.into(),
            offset: 12,
            reason: Some("moquerie".into()),
        },
    }
}

/// The audit log entry appended before the room's moderation event.
fn audit_event(offset: u64, moderation: &Event) -> Event {
    let Body::Moderation { action, until, .. } = &moderation.body else {
        panic!("not a moderation event")
    };
    Event {
        room: AUDIT_ROOM.into(),
        epoch: AUDIT_EPOCH.into(),
        offset,
        ts: moderation.ts,
        from: moderation.from.clone(),
        body: Body::Audit {
            room: moderation.room.clone(),
            action: action.clone(),
            until: *until,
        },
    }
}

fn vector_claims() -> Claims {
    Claims {
        sub: "ana".into(),
        name: "Ana Martin".into(),
        role: Role::Student,
        classes: vec!["3B".into()],
        children: vec![],
        exp: 1_764_345_600, // 2025-11-28T16:00:00Z
        iat: 1_764_316_800, // 2025-11-28T08:00:00Z
    }
}

fn vector_token() -> String {
    Keyring::parse(VECTOR_SECRET)
        .expect("vector secret parses")
        .mint(&vector_claims())
        .expect("mint")
}

fn hello_ok() -> HelloOk {
    HelloOk {
        user: ana(),
        classes: vec!["3B".into()],
        children: vec![],
        node: "local".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        limits: Limits {
            max_frame_bytes: 65_536,
            max_message_len: 4_000,
            max_rooms: 32,
            history_page_max: 200,
            ping_interval_ms: 25_000,
        },
    }
}

fn join_frame(id: Option<u32>, ok: &JoinOk) -> Bytes {
    let events: Vec<Bytes> = ok.events.iter().map(protocol::event).collect();
    protocol::ok_with_events(
        id,
        &protocol::JoinHead {
            room: &ok.room,
            epoch: &ok.epoch,
            head: ok.head,
            first: ok.first,
            members: &ok.members,
            member_count: ok.member_count,
            pinned: &ok.pinned,
            read_only: ok.read_only,
            recovery: ok.recovery.clone(),
        },
        &events,
    )
}

fn history_frame(id: Option<u32>, ok: &HistoryOk) -> Bytes {
    let events: Vec<Bytes> = ok.events.iter().map(protocol::event).collect();
    protocol::ok_with_events(
        id,
        &protocol::HistoryHead {
            room: &ok.room,
            epoch: &ok.epoch,
            head: ok.head,
            first: ok.first,
            more: ok.more,
        },
        &events,
    )
}

const FORUM_ROOM: &str = "3B/forum/debat-1789";
const NOTES_ROOM: &str = "3B/notes/chapitre-3";
/// A y-protocols update message: `0, 2, varbytes(update)`, the update
/// inserting "Chapitre 3" at the start of the text `content` (client 7).
const YJS_UPDATE: [u8; 26] = [
    1, 1, 7, 0, 4, 1, 7, 99, 111, 110, 116, 101, 110, 116, 10, 67, 104, 97, 112, 105, 116, 114,
    101, 32, 51, 0,
];
const YJS_UPDATE_MSG: [u8; 29] = [
    0, 2, 26, 1, 1, 7, 0, 4, 1, 7, 99, 111, 110, 116, 101, 110, 116, 10, 67, 104, 97, 112, 105,
    116, 114, 101, 32, 51, 0,
];
const YJS_STEP2_MSG: [u8; 29] = [
    0, 1, 26, 1, 1, 7, 0, 4, 1, 7, 99, 111, 110, 116, 101, 110, 116, 10, 67, 104, 97, 112, 105,
    116, 114, 101, 32, 51, 0,
];

fn forum_event(offset: u64) -> Event {
    let body = match offset {
        3 => Body::Message {
            text: "Qu'est-ce qui change en 1789 ?".into(),
            title: Some("La Révolution".into()),
            thread: None,
            reply_to: None,
            quote: None,
        },
        5 => Body::Message {
            text: "Pas d'accord : tout ne change pas.".into(),
            title: None,
            thread: Some(3),
            reply_to: Some(4),
            quote: Some("tout change".into()),
        },
        6 => Body::Edit {
            target: 3,
            thread: 3,
            text: "Qu'est-ce qui change, et pour qui, en 1789 ?".into(),
            title: Some("La Révolution française".into()),
        },
        7 => Body::Answer {
            thread: 3,
            offset: Some(5),
        },
        other => panic!("no forum event {other}"),
    };
    let from = if offset == 5 { ana() } else { prof() };
    Event {
        room: FORUM_ROOM.into(),
        epoch: EPOCH.into(),
        offset,
        ts: T0 + offset * 60_000,
        from,
        body,
    }
}

fn notes_event(offset: u64) -> Event {
    let (from, body) = match offset {
        8 => (
            ana(),
            Body::YjsUpdate {
                data: YJS_UPDATE.to_vec(),
            },
        ),
        9 => (
            prof(),
            Body::Moderation {
                action: ModAction::Validate {
                    label: "Chapitre 3 — validé le 12/03".into(),
                    lock: true,
                },
                until: None,
                target_from: None,
                target_ts: None,
                target_thread: None,
            },
        ),
        other => panic!("no notes event {other}"),
    };
    Event {
        room: NOTES_ROOM.into(),
        epoch: EPOCH.into(),
        offset,
        ts: T0 + offset * 60_000,
        from,
        body,
    }
}

fn client_samples() -> Vec<(&'static str, Request)> {
    let room = || ROOM.to_owned();
    vec![
        (
            "hello",
            Request::Hello {
                id: Some(1),
                token: vector_token(),
            },
        ),
        (
            "hello.no_id",
            Request::Hello {
                id: None,
                token: vector_token(),
            },
        ),
        (
            "join",
            Request::Join {
                id: Some(2),
                room: room(),
                since: None,
            },
        ),
        (
            "join.since",
            Request::Join {
                id: Some(3),
                room: room(),
                since: Some(Position {
                    epoch: EPOCH.into(),
                    offset: 41,
                }),
            },
        ),
        (
            "leave",
            Request::Leave {
                id: Some(4),
                room: room(),
            },
        ),
        (
            "post",
            Request::Post {
                id: Some(5),
                room: room(),
                text: "On commence par l'exercice 2 ?".into(),
                title: None,
                thread: None,
                reply_to: None,
                quote: None,
                key: None,
            },
        ),
        (
            "post.no_id",
            Request::Post {
                id: None,
                room: room(),
                text: "Bonjour à tous".into(),
                title: None,
                thread: None,
                reply_to: None,
                quote: None,
                key: None,
            },
        ),
        (
            "typing",
            Request::Typing {
                id: Some(6),
                room: room(),
            },
        ),
        (
            "typing.no_id",
            Request::Typing {
                id: None,
                room: room(),
            },
        ),
        (
            "history",
            Request::History {
                id: Some(7),
                room: room(),
                before: None,
                after: None,
                limit: None,
                thread: None,
            },
        ),
        (
            "history.before_limit",
            Request::History {
                id: Some(8),
                room: room(),
                before: Some(43),
                after: None,
                limit: Some(2),
                thread: None,
            },
        ),
        (
            "history.after_limit",
            Request::History {
                id: Some(9),
                room: room(),
                before: None,
                after: Some(40),
                limit: Some(200),
                thread: None,
            },
        ),
        (
            "history.after_before",
            Request::History {
                id: Some(10),
                room: room(),
                before: Some(44),
                after: Some(41),
                limit: None,
                thread: None,
            },
        ),
        (
            "moderate.redact",
            moderate(
                11,
                ModAction::Redact {
                    offset: 42,
                    reason: Some(REDACT_REASON.into()),
                },
            ),
        ),
        (
            "moderate.redact.own",
            moderate(
                12,
                ModAction::Redact {
                    offset: 44,
                    reason: None,
                },
            ),
        ),
        (
            "moderate.mute",
            moderate(
                13,
                ModAction::Mute {
                    user: "ana".into(),
                    seconds: 600,
                    reason: Some("Hors sujet".into()),
                    announce: false,
                },
            ),
        ),
        (
            "moderate.mute_announced",
            moderate(
                13,
                ModAction::Mute {
                    user: "ana".into(),
                    seconds: 600,
                    reason: Some("Hors sujet".into()),
                    announce: true,
                },
            ),
        ),
        (
            "moderate.unmute",
            moderate(14, ModAction::Unmute { user: "ana".into() }),
        ),
        (
            "moderate.kick",
            moderate(
                15,
                ModAction::Kick {
                    user: "ana".into(),
                    reason: None,
                    announce: false,
                },
            ),
        ),
        (
            "moderate.ban",
            moderate(
                16,
                ModAction::Ban {
                    user: "ana".into(),
                    reason: Some("Insultes répétées".into()),
                    announce: false,
                },
            ),
        ),
        (
            "moderate.unban",
            moderate(17, ModAction::Unban { user: "ana".into() }),
        ),
        (
            "moderate.slow_mode",
            moderate(18, ModAction::SlowMode { seconds: 30 }),
        ),
        (
            "moderate.slow_mode.off",
            moderate(19, ModAction::SlowMode { seconds: 0 }),
        ),
        (
            "moderate.read_only",
            moderate(
                20,
                ModAction::ReadOnly {
                    on: true,
                    thread: None,
                },
            ),
        ),
        (
            "moderate.read_only.off",
            moderate(
                21,
                ModAction::ReadOnly {
                    on: false,
                    thread: None,
                },
            ),
        ),
        ("moderate.pin", moderate(22, ModAction::Pin { offset: 12 })),
        (
            "moderate.unpin",
            moderate(23, ModAction::Unpin { offset: 12 }),
        ),
        (
            "moderate.resolve",
            moderate(
                24,
                ModAction::Resolve {
                    report: 9,
                    dismissed: true,
                },
            ),
        ),
        (
            "report",
            Request::Report {
                id: Some(25),
                room: ROOM.into(),
                offset: 12,
                reason: Some("moquerie".into()),
            },
        ),
        (
            "report.no_reason",
            Request::Report {
                id: Some(26),
                room: ROOM.into(),
                offset: 12,
                reason: None,
            },
        ),
        (
            "room_view",
            Request::RoomView {
                id: Some(27),
                room: ROOM.into(),
            },
        ),
        (
            "post.forum.thread",
            Request::Post {
                id: Some(40),
                room: FORUM_ROOM.into(),
                text: "Qu'est-ce qui change en 1789 ?".into(),
                title: Some("La Révolution".into()),
                thread: None,
                reply_to: None,
                quote: None,
                key: None,
            },
        ),
        (
            "post.forum.reply",
            Request::Post {
                id: Some(41),
                room: FORUM_ROOM.into(),
                text: "Pas d'accord : tout ne change pas.".into(),
                title: None,
                thread: Some(3),
                reply_to: Some(5),
                quote: Some("tout change".into()),
                key: None,
            },
        ),
        (
            "history.thread",
            Request::History {
                id: Some(42),
                room: FORUM_ROOM.into(),
                before: None,
                after: None,
                limit: Some(50),
                thread: Some(3),
            },
        ),
        (
            "edit",
            Request::Edit {
                id: Some(43),
                room: FORUM_ROOM.into(),
                offset: 3,
                text: "Qu'est-ce qui change, et pour qui, en 1789 ?".into(),
                title: Some("La Révolution française".into()),
            },
        ),
        (
            "answer",
            Request::Answer {
                id: Some(44),
                room: FORUM_ROOM.into(),
                thread: 3,
                offset: Some(5),
            },
        ),
        (
            "answer.unmark",
            Request::Answer {
                id: Some(45),
                room: FORUM_ROOM.into(),
                thread: 3,
                offset: None,
            },
        ),
        (
            "threads",
            Request::Threads {
                id: Some(46),
                room: FORUM_ROOM.into(),
                before: None,
                limit: Some(30),
            },
        ),
        (
            "mark_read",
            Request::MarkRead {
                id: Some(47),
                room: FORUM_ROOM.into(),
                thread: 3,
                offset: 6,
            },
        ),
        (
            "rooms",
            Request::Rooms {
                id: Some(48),
                class: "3B".into(),
                kind: "forum".into(),
            },
        ),
        (
            "moderate.configure",
            moderate_in(
                FORUM_ROOM,
                49,
                ModAction::Configure {
                    flavour: protocol::Flavour::Interclass,
                    classes: vec!["5C".into()],
                    moderators: vec!["prof-5c".into()],
                },
            ),
        ),
        (
            "moderate.read_only.thread",
            moderate_in(
                FORUM_ROOM,
                50,
                ModAction::ReadOnly {
                    on: true,
                    thread: Some(3),
                },
            ),
        ),
        (
            "yjs.step1",
            Request::Yjs {
                id: Some(60),
                room: NOTES_ROOM.into(),
                data: vec![0, 0, 1, 0],
                more: None,
            },
        ),
        (
            "yjs.update",
            Request::Yjs {
                id: Some(61),
                room: NOTES_ROOM.into(),
                data: YJS_UPDATE_MSG.to_vec(),
                more: None,
            },
        ),
        (
            "yjs.part",
            Request::Yjs {
                id: Some(65),
                room: NOTES_ROOM.into(),
                data: YJS_UPDATE_MSG[..4].to_vec(),
                more: Some(true),
            },
        ),
        (
            "moderate.validate",
            moderate_in(
                NOTES_ROOM,
                62,
                ModAction::Validate {
                    label: "Chapitre 3 — validé le 12/03".into(),
                    lock: true,
                },
            ),
        ),
        (
            "note_versions",
            Request::NoteVersions {
                id: Some(63),
                room: NOTES_ROOM.into(),
            },
        ),
        (
            "note_export",
            Request::NoteExport {
                id: Some(64),
                room: NOTES_ROOM.into(),
                version: Some(1),
                format: protocol::ExportFormat::Markdown,
            },
        ),
        ("ping", Request::Ping { id: Some(300) }),
        ("ping.no_id", Request::Ping { id: None }),
        ("ping.max_id", Request::Ping { id: Some(u32::MAX) }),
    ]
}

const AGENDA_ROOM: &str = "3B/agenda/classe";
/// 2025-12-01T07:00:00Z: a Monday at 8:00 in Paris.
const A_MONDAY: u64 = 1_764_572_400_000;

fn agenda_fields(item: Option<u64>) -> preau::kinds::agenda::ItemFields {
    preau::kinds::agenda::ItemFields {
        item,
        title: if item.is_some() {
            "Contrôle de maths (chapitre 4)".into()
        } else {
            "Contrôle de maths".into()
        },
        starts: A_MONDAY + if item.is_some() { 86_400_000 } else { 0 },
        ends: Some(A_MONDAY + 3_600_000 + if item.is_some() { 86_400_000 } else { 0 }),
        all_day: false,
        place: Some("Salle 12".into()),
        details: item.is_none().then(|| "Calculatrice autorisée.".into()),
    }
}

/// The agenda's requests (a kind's own types, encoded as the kind's
/// `AgendaRequest`).
fn agenda_client_samples() -> Vec<(&'static str, Bytes)> {
    use preau::kinds::agenda::{AgendaRequest, NewItem};
    let item = |fields: preau::kinds::agenda::ItemFields| NewItem {
        title: fields.title,
        starts: fields.starts,
        ends: fields.ends,
        all_day: None,
        place: fields.place,
        details: fields.details,
    };
    let encode =
        |request: AgendaRequest| Bytes::from(rmp_serde::to_vec_named(&request).expect("encodes"));
    vec![
        (
            "agenda_add",
            encode(AgendaRequest::AgendaAdd {
                id: Some(80),
                room: AGENDA_ROOM.into(),
                item: item(agenda_fields(None)),
                key: Some("c1f0-agenda-1".into()),
            }),
        ),
        (
            "agenda_change",
            encode(AgendaRequest::AgendaChange {
                id: Some(81),
                room: AGENDA_ROOM.into(),
                item: 1,
                fields: item(agenda_fields(Some(1))),
            }),
        ),
        (
            "agenda_cancel",
            encode(AgendaRequest::AgendaCancel {
                id: Some(82),
                room: AGENDA_ROOM.into(),
                item: 1,
                reason: Some("Grève des transports".into()),
            }),
        ),
        (
            "agenda",
            encode(AgendaRequest::Agenda {
                id: Some(83),
                room: AGENDA_ROOM.into(),
                from: A_MONDAY,
                to: A_MONDAY + 7 * 86_400_000,
                limit: None,
            }),
        ),
    ]
}

fn agenda_event(offset: u64) -> Event {
    use preau::protocol::KindBody;
    let body = match offset {
        1 => KindBody::new("agenda_item", &agenda_fields(None)),
        2 => KindBody::new("agenda_item", &agenda_fields(Some(1))),
        3 => KindBody::new(
            "agenda_cancel",
            &preau::kinds::agenda::CancelFields {
                item: 1,
                reason: Some("Grève des transports".into()),
            },
        ),
        other => panic!("no agenda event {other}"),
    }
    .expect("a kind body");
    Event {
        room: AGENDA_ROOM.into(),
        epoch: EPOCH.into(),
        offset,
        ts: T0 + offset * 60_000,
        from: prof(),
        body: Body::Kind(body),
    }
}

fn agenda_server_samples() -> Vec<(&'static str, Bytes)> {
    vec![
        ("event.agenda_item", protocol::event(&agenda_event(1))),
        (
            "event.agenda_item.change",
            protocol::event(&agenda_event(2)),
        ),
        ("event.agenda_cancel", protocol::event(&agenda_event(3))),
        (
            "ok.agenda_add",
            protocol::ok(
                Some(80),
                &PostOk {
                    room: AGENDA_ROOM.into(),
                    epoch: EPOCH.into(),
                    offset: 1,
                    ts: T0 + 60_000,
                },
            ),
        ),
        (
            "ok.agenda",
            protocol::ok(
                Some(83),
                &preau::kinds::agenda::AgendaOk {
                    room: AGENDA_ROOM.into(),
                    items: vec![preau::kinds::agenda::AgendaItem {
                        item: 1,
                        title: "Contrôle de maths (chapitre 4)".into(),
                        starts: A_MONDAY + 86_400_000,
                        ends: Some(A_MONDAY + 86_400_000 + 3_600_000),
                        all_day: false,
                        place: Some("Salle 12".into()),
                        details: None,
                        by: prof(),
                        ts: T0 + 120_000,
                        version: 2,
                        cancelled: true,
                        reason: Some("Grève des transports".into()),
                    }],
                    more: false,
                },
            ),
        ),
    ]
}

const DOCS_ROOM: &str = "3B/docs/main";
const DOC_FILE_ID: &str = "4f1c2a9e7b3d5f60a8c1e2d3b4a59687";
const PUPIL_FILE_ID: &str = "9a8b7c6d5e4f30211203f4e5d6c7b8a9";

fn doc_file(id: &str, name: &str, subject_key: &str) -> preau::files::FileRef {
    preau::files::FileRef {
        id: id.into(),
        name: name.into(),
        mime: "application/pdf".into(),
        size: 48_213,
        sha256: "3f0a9c2b7e1d4a5b6c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d".into(),
        path: format!("c/3B/{subject_key}/{id}"),
    }
}

/// The document space's requests (a kind's own types, encoded as the
/// kind's `DocsRequest`).
fn docs_client_samples() -> Vec<(&'static str, Bytes)> {
    use preau::kinds::docs::DocsRequest;
    let encode =
        |request: DocsRequest| Bytes::from(rmp_serde::to_vec_named(&request).expect("encodes"));
    vec![
        (
            "docs",
            encode(DocsRequest::Docs {
                id: Some(120),
                room: DOCS_ROOM.into(),
            }),
        ),
        (
            "doc_folder",
            encode(DocsRequest::DocFolder {
                id: Some(121),
                room: DOCS_ROOM.into(),
                folder: "maths-chap-4".into(),
                title: "Chapitre 4 : fonctions".into(),
                parent: None,
            }),
        ),
        (
            "doc_add",
            encode(DocsRequest::DocAdd {
                id: Some(122),
                room: DOCS_ROOM.into(),
                file: DOC_FILE_ID.into(),
                folder: Some("maths-chap-4".into()),
                title: Some("Fiche d'exercices".into()),
                entry: Some(12),
                lesson: Some("Fonctions affines".into()),
                key: Some("c1f0-doc-1".into()),
            }),
        ),
        (
            "doc_add.pupil",
            encode(DocsRequest::DocAdd {
                id: Some(123),
                room: DOCS_ROOM.into(),
                file: PUPIL_FILE_ID.into(),
                folder: Some("eleves".into()),
                title: None,
                entry: None,
                lesson: None,
                key: None,
            }),
        ),
        (
            "doc_remove",
            encode(DocsRequest::DocRemove {
                id: Some(124),
                room: DOCS_ROOM.into(),
                doc: 4,
            }),
        ),
        (
            "docs_config",
            encode(DocsRequest::DocsConfig {
                id: Some(125),
                room: DOCS_ROOM.into(),
                pupils_share: true,
            }),
        ),
    ]
}

fn docs_event(offset: u64) -> Event {
    use preau::kinds::docs::{AddFields, ConfigFields, FolderFields, RemoveFields};
    use preau::protocol::KindBody;
    let (from, body) = match offset {
        1 => (
            prof(),
            KindBody::new(
                "doc_folder",
                &FolderFields {
                    folder: "maths-chap-4".into(),
                    title: "Chapitre 4 : fonctions".into(),
                    parent: None,
                },
            ),
        ),
        2 => (
            prof(),
            KindBody::new("docs_config", &ConfigFields { pupils_share: true }),
        ),
        3 => (
            prof(),
            KindBody::new(
                "doc_add",
                &AddFields {
                    file: doc_file(
                        DOC_FILE_ID,
                        "fiche-exercices.pdf",
                        "7c1e0f3a9b2d4e5f6a7b8c9d0e1f2a3b",
                    ),
                    folder: "maths-chap-4".into(),
                    title: "Fiche d'exercices".into(),
                    entry: Some(12),
                    lesson: Some("Fonctions affines".into()),
                },
            ),
        ),
        4 => (
            ana(),
            KindBody::new(
                "doc_add",
                &AddFields {
                    file: doc_file(
                        PUPIL_FILE_ID,
                        "exposé.pdf",
                        "24d4b96f58da6d4a8512313bbd02a28e",
                    ),
                    folder: "eleves".into(),
                    title: "exposé.pdf".into(),
                    entry: None,
                    lesson: None,
                },
            ),
        ),
        5 => (
            ana(),
            KindBody::new(
                "doc_remove",
                &RemoveFields {
                    doc: 4,
                    folder: "eleves".into(),
                },
            ),
        ),
        other => panic!("no docs event {other}"),
    };
    Event {
        room: DOCS_ROOM.into(),
        epoch: EPOCH.into(),
        offset,
        ts: T0 + offset * 60_000,
        from,
        body: Body::Kind(body.expect("a kind body")),
    }
}

fn docs_server_samples() -> Vec<(&'static str, Bytes)> {
    use preau::kinds::docs::{Doc, DocFile, DocsOk, Folder};
    vec![
        ("event.doc_folder", protocol::event(&docs_event(1))),
        ("event.docs_config", protocol::event(&docs_event(2))),
        ("event.doc_add", protocol::event(&docs_event(3))),
        ("event.doc_add.pupil", protocol::event(&docs_event(4))),
        ("event.doc_remove", protocol::event(&docs_event(5))),
        (
            "ok.doc_add",
            protocol::ok(
                Some(122),
                &PostOk {
                    room: DOCS_ROOM.into(),
                    epoch: EPOCH.into(),
                    offset: 3,
                    ts: T0 + 180_000,
                },
            ),
        ),
        (
            "ok.docs",
            protocol::ok(
                Some(120),
                &DocsOk {
                    room: DOCS_ROOM.into(),
                    pupils_share: true,
                    folders: vec![
                        Folder {
                            folder: "eleves".into(),
                            title: "Travaux des élèves".into(),
                            parent: None,
                        },
                        Folder {
                            folder: "maths-chap-4".into(),
                            title: "Chapitre 4 : fonctions".into(),
                            parent: None,
                        },
                    ],
                    docs: vec![Doc {
                        doc: 3,
                        folder: "maths-chap-4".into(),
                        title: "Fiche d'exercices".into(),
                        file: DocFile::from(&doc_file(
                            DOC_FILE_ID,
                            "fiche-exercices.pdf",
                            "7c1e0f3a9b2d4e5f6a7b8c9d0e1f2a3b",
                        )),
                        by: prof(),
                        ts: T0 + 180_000,
                        entry: Some(12),
                        lesson: Some("Fonctions affines".into()),
                    }],
                },
            ),
        ),
    ]
}

const DIARY_ROOM: &str = "3B/homework/diary";

fn day(s: &str) -> chrono::NaiveDate {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("a day")
}

fn diary_fields(entry: Option<u64>) -> preau::kinds::homework::EntryFields {
    preau::kinds::homework::EntryFields {
        entry,
        what: preau::kinds::homework::What::Homework,
        subject: "Maths".into(),
        text: "Exercices 4 et 5 p. 32".into(),
        date: day("2025-12-01"),
        due: Some(day("2025-12-04")),
        minutes: Some(30),
        links: vec!["https://fr.khanacademy.org/math/fractions".into()],
        publish_at: None,
        version: None,
    }
}

/// The diary's requests (a kind's own types, encoded as the kind's
/// `HomeworkRequest`).
fn homework_client_samples() -> Vec<(&'static str, Bytes)> {
    use preau::kinds::homework::{HomeworkRequest, What};
    let encode =
        |request: HomeworkRequest| Bytes::from(rmp_serde::to_vec_named(&request).expect("encodes"));
    vec![
        (
            "homework_write",
            encode(HomeworkRequest::HomeworkWrite {
                id: Some(90),
                room: DIARY_ROOM.into(),
                entry: None,
                what: What::Homework,
                subject: "Maths".into(),
                text: "Exercices 4 et 5 p. 32".into(),
                date: "2025-12-01".into(),
                due: Some("2025-12-04".into()),
                minutes: Some(30),
                links: vec!["https://fr.khanacademy.org/math/fractions".into()],
                publish_at: None,
                key: Some("c1f0-diary-1".into()),
            }),
        ),
        (
            "homework_write.scheduled_lesson",
            encode(HomeworkRequest::HomeworkWrite {
                id: Some(91),
                room: DIARY_ROOM.into(),
                entry: None,
                what: What::Lesson,
                subject: "Histoire".into(),
                text: "La Révolution française : les causes".into(),
                date: "2025-12-01".into(),
                due: None,
                minutes: None,
                links: vec![],
                publish_at: Some(A_MONDAY + 3_600_000),
                key: None,
            }),
        ),
        (
            "homework_write.new_version",
            encode(HomeworkRequest::HomeworkWrite {
                id: Some(92),
                room: DIARY_ROOM.into(),
                entry: Some(1),
                what: What::Homework,
                subject: "Maths".into(),
                text: "Exercices 4, 5 et 6 p. 32".into(),
                date: "2025-12-01".into(),
                due: Some("2025-12-05".into()),
                minutes: Some(45),
                links: vec![],
                publish_at: None,
                key: None,
            }),
        ),
        (
            "homework_done",
            encode(HomeworkRequest::HomeworkDone {
                id: Some(93),
                room: DIARY_ROOM.into(),
                entry: 1,
                done: true,
            }),
        ),
        (
            "homework",
            encode(HomeworkRequest::Homework {
                id: Some(94),
                room: DIARY_ROOM.into(),
                from: "2025-12-01".into(),
                to: "2025-12-07".into(),
                limit: None,
            }),
        ),
        (
            "homework_load",
            encode(HomeworkRequest::HomeworkLoad {
                id: Some(95),
                room: DIARY_ROOM.into(),
                from: "2025-12-01".into(),
                to: "2025-12-07".into(),
            }),
        ),
        (
            "homework_due",
            encode(HomeworkRequest::HomeworkDue {
                id: Some(96),
                from: "2025-12-01".into(),
                to: "2025-12-07".into(),
                limit: Some(100),
            }),
        ),
        (
            "calendar_feed",
            encode(HomeworkRequest::CalendarFeed {
                id: Some(97),
                new: false,
            }),
        ),
        (
            "calendar_feed.new",
            encode(HomeworkRequest::CalendarFeed {
                id: Some(99),
                new: true,
            }),
        ),
        (
            "calendar_feed_revoke",
            encode(HomeworkRequest::CalendarFeedRevoke { id: Some(98) }),
        ),
    ]
}

const BLOG_ROOM: &str = "3B/blog/main";

/// The blog's requests (a kind's own types, encoded as the kind's
/// `BlogRequest`).
fn blog_client_samples() -> Vec<(&'static str, Bytes)> {
    use preau::kinds::blog::{BlogRequest, Circuit};
    let encode =
        |request: BlogRequest| Bytes::from(rmp_serde::to_vec_named(&request).expect("encodes"));
    vec![
        (
            "blog",
            encode(BlogRequest::Blog {
                id: Some(140),
                room: BLOG_ROOM.into(),
            }),
        ),
        (
            "blog_write",
            encode(BlogRequest::BlogWrite {
                id: Some(141),
                room: BLOG_ROOM.into(),
                title: "Sortie au musée".into(),
                text: "Nous avons vu les impressionnistes.".into(),
                files: vec!["0123456789abcdef0123456789abcdef".into()],
                key: Some("c1f0-blog-1".into()),
            }),
        ),
        (
            "blog_approve",
            encode(BlogRequest::BlogApprove {
                id: Some(142),
                room: BLOG_ROOM.into(),
                post: 1,
            }),
        ),
        (
            "blog_unpublish",
            encode(BlogRequest::BlogUnpublish {
                id: Some(143),
                room: BLOG_ROOM.into(),
                post: 1,
            }),
        ),
        (
            "blog_delete",
            encode(BlogRequest::BlogDelete {
                id: Some(144),
                room: BLOG_ROOM.into(),
                post: 1,
            }),
        ),
        (
            "blog_comment",
            encode(BlogRequest::BlogComment {
                id: Some(145),
                room: BLOG_ROOM.into(),
                post: 1,
                text: "Trop bien !".into(),
            }),
        ),
        (
            "blog_config",
            encode(BlogRequest::BlogConfig {
                id: Some(146),
                room: BLOG_ROOM.into(),
                circuit: Circuit::Approve,
                public: false,
            }),
        ),
    ]
}

/// The blog's events and replies.
fn blog_server_samples() -> Vec<(&'static str, Bytes)> {
    use preau::files::FileRef;
    use preau::kinds::blog::{
        BlogConfig, BlogOk, BlogPost, Circuit, CommentFields, PostFields, PublishFields, Status,
        WriteOk,
    };
    use preau::protocol::KindBody;
    let event = |offset: u64, from: UserInfo, body: KindBody| Event {
        room: BLOG_ROOM.into(),
        epoch: EPOCH.into(),
        offset,
        ts: T0 + offset * 60_000,
        from,
        body: Body::Kind(body),
    };
    let photo = FileRef {
        id: "0123456789abcdef0123456789abcdef".into(),
        name: "musee.jpg".into(),
        mime: "image/jpeg".into(),
        size: 48_213,
        sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        path: "c/3B/5e8ff9bf55ba3508199d22e984129be6/0123456789abcdef0123456789abcdef".into(),
    };
    let config = BlogConfig {
        circuit: Circuit::Approve,
        public: false,
    };
    vec![
        (
            "event.blog_config",
            protocol::event(&event(
                1,
                prof(),
                KindBody::new("blog_config", &config).expect("body"),
            )),
        ),
        (
            "event.blog_post",
            protocol::event(&event(
                2,
                ana(),
                KindBody::new(
                    "blog_post",
                    &PostFields {
                        title: "Sortie au musée".into(),
                        text: "Nous avons vu les impressionnistes.".into(),
                        files: vec![photo.clone()],
                    },
                )
                .expect("body"),
            )),
        ),
        (
            "event.blog_publish",
            protocol::event(&event(
                3,
                ana(),
                KindBody::new(
                    "blog_publish",
                    &PublishFields {
                        post: 2,
                        title: "Sortie au musée".into(),
                        text: "Nous avons vu les impressionnistes.".into(),
                        files: vec![photo.clone()],
                    },
                )
                .expect("body"),
            )),
        ),
        (
            "event.blog_comment",
            protocol::event(&event(
                4,
                prof(),
                KindBody::new(
                    "blog_comment",
                    &CommentFields {
                        post: 2,
                        text: "Bravo !".into(),
                    },
                )
                .expect("body"),
            )),
        ),
        (
            "ok.blog",
            protocol::ok(
                Some(140),
                &BlogOk {
                    room: BLOG_ROOM.into(),
                    config,
                    posts: vec![BlogPost {
                        post: 2,
                        author: ana(),
                        ts: T0 + 2 * 60_000,
                        title: "Sortie au musée".into(),
                        text: "Nous avons vu les impressionnistes.".into(),
                        files: vec![photo],
                        status: Status::Published,
                        published: Some(3),
                        comments: 1,
                    }],
                },
            ),
        ),
        (
            "ok.blog_write",
            protocol::ok(
                Some(141),
                &WriteOk {
                    room: BLOG_ROOM.into(),
                    epoch: EPOCH.into(),
                    offset: 2,
                    ts: T0 + 2 * 60_000,
                    published: None,
                },
            ),
        ),
    ]
}

fn homework_server_samples() -> Vec<(&'static str, Bytes)> {
    use preau::kinds::homework::{DayLoad, DiaryEntry, HomeworkOk, LoadOk, What};
    use preau::protocol::KindBody;
    let event = |offset: u64, from: UserInfo, body: KindBody| Event {
        room: DIARY_ROOM.into(),
        epoch: EPOCH.into(),
        offset,
        ts: T0 + offset * 60_000,
        from,
        body: Body::Kind(body),
    };
    let scheduled = preau::kinds::homework::EntryFields {
        what: What::Lesson,
        subject: "Histoire".into(),
        text: "La Révolution française : les causes".into(),
        due: None,
        minutes: None,
        links: vec![],
        publish_at: Some(A_MONDAY + 3_600_000),
        ..diary_fields(None)
    };
    let published = preau::kinds::homework::EntryFields {
        entry: Some(2),
        publish_at: None,
        version: Some(2),
        ..scheduled.clone()
    };
    let entry = DiaryEntry {
        entry: 1,
        what: What::Homework,
        subject: "Maths".into(),
        text: "Exercices 4 et 5 p. 32".into(),
        date: day("2025-12-01"),
        due: Some(day("2025-12-04")),
        minutes: Some(30),
        links: vec!["https://fr.khanacademy.org/math/fractions".into()],
        by: prof(),
        ts: T0 + 60_000,
        author: prof(),
        version: 1,
        versions: 1,
        publish_at: None,
        done: Some(true),
        done_by: None,
        done_count: None,
        done_names: None,
    };
    vec![
        (
            "event.homework_entry",
            protocol::event(&event(
                1,
                prof(),
                KindBody::new("homework_entry", &diary_fields(None)).expect("body"),
            )),
        ),
        (
            "event.homework_entry.scheduled",
            protocol::event(&event(
                2,
                prof(),
                KindBody::new("homework_entry", &scheduled).expect("body"),
            )),
        ),
        (
            "event.homework_publish",
            protocol::event(&event(
                3,
                prof(),
                KindBody::new("homework_publish", &published).expect("body"),
            )),
        ),
        (
            "event.homework_done",
            protocol::event(&event(
                4,
                ana(),
                KindBody::new(
                    "homework_done",
                    &preau::kinds::homework::state::DoneFields {
                        entry: 1,
                        done: true,
                    },
                )
                .expect("body"),
            )),
        ),
        (
            "ok.homework",
            protocol::ok(
                Some(94),
                &HomeworkOk {
                    room: DIARY_ROOM.into(),
                    entries: vec![entry.clone()],
                    more: false,
                },
            ),
        ),
        (
            "ok.homework_load",
            protocol::ok(
                Some(95),
                &LoadOk {
                    room: DIARY_ROOM.into(),
                    days: vec![DayLoad {
                        date: day("2025-12-04"),
                        items: 2,
                        minutes: 30,
                        unestimated: 1,
                    }],
                },
            ),
        ),
        (
            "ok.homework_due.parent",
            protocol::ok(
                Some(96),
                &preau::kinds::homework::DueOk {
                    items: vec![preau::kinds::homework::DueItem {
                        room: DIARY_ROOM.into(),
                        class: "3B".into(),
                        entry: DiaryEntry {
                            done: None,
                            done_by: Some(vec!["ana".into()]),
                            ..entry
                        },
                        children: vec![preau::kinds::homework::ChildLabel {
                            id: "ana".into(),
                            name: "Ana Martin".into(),
                        }],
                    }],
                    more: false,
                },
            ),
        ),
    ]
}

/// Ana's feed: `_/inbox/` and the first 16 bytes of SHA-256("ana"), hex.
const INBOX_ROOM: &str = "_/inbox/24d4b96f58da6d4a8512313bbd02a28e";
/// The conversation of Ana and M. Durand (a pair's key, derived from the
/// two ids).
const DM_ROOM: &str = "_/dm/95c887945bda3db4141e0b72327e19c0";
/// M. Durand's announcement to the parents of 3B.
const ANNOUNCE_ROOM: &str = "_/announce/7c1e5a90d2b34f6e8a0b1c2d3e4f5a6b";
/// Another one, to 3B's pupils.
const CLASS_ANNOUNCE_ROOM: &str = "_/announce/2b8d0f4a6c1e3a5b7d9f1b3d5f7a9c0e";
/// The epoch of the samples' feeds, conversation and announcements.
const MESSAGING_EPOCH: &str = "3a5c7e9f1b2d4f68";
/// Friday 2025-11-28, 21:00 in Paris (T0 is 09:00): M. Durand's quiet
/// hours (the teachers' default, 20:00–07:00) hold what reaches him until
/// Saturday 07:00. Everything else happens on Friday morning.
const FRIDAY_21H: u64 = T0 + 12 * 3_600_000;
const SATURDAY_7H: u64 = T0 + 22 * 3_600_000;

fn parent() -> UserInfo {
    UserInfo {
        id: "p-martin".into(),
        name: "Mme Martin".into(),
        role: Role::Parent,
    }
}

fn staff() -> UserInfo {
    UserInfo {
        id: "proviseur".into(),
        name: "M. le proviseur".into(),
        role: Role::Staff,
    }
}

/// The notification of message `at` of the conversation, from `by`
/// (held until Saturday 07:00 when `held`).
fn dm_notice(by: UserInfo, at: u64, held: bool) -> preau::kinds::inbox::NotifyFields {
    preau::kinds::inbox::NotifyFields {
        what: "dm".into(),
        room: DM_ROOM.into(),
        at: Some(at),
        title: String::new(),
        preview: None,
        by: Some(by),
        hold_until: held.then_some(SATURDAY_7H),
        urgent: false,
    }
}

/// The notification of the announcement to 3B's pupils, in Ana's feed.
fn announce_notice() -> preau::kinds::inbox::NotifyFields {
    preau::kinds::inbox::NotifyFields {
        what: "announcement".into(),
        room: CLASS_ANNOUNCE_ROOM.into(),
        at: None,
        title: "Photo de classe".into(),
        preview: None,
        by: Some(prof()),
        hold_until: None,
        urgent: false,
    }
}

/// The feed's, the conversations' and the announcements' requests (kinds'
/// own types, encoded as each kind's request type).
fn messaging_client_samples() -> Vec<(&'static str, Bytes)> {
    use preau::kinds::announce::AnnounceRequest;
    use preau::kinds::dm::DmRequest;
    use preau::kinds::inbox::FeedRequest;
    fn encode(request: &impl Serialize) -> Bytes {
        Bytes::from(rmp_serde::to_vec_named(request).expect("encodes"))
    }
    vec![
        (
            "feed",
            encode(&FeedRequest::Feed {
                id: Some(100),
                before: None,
                limit: Some(20),
            }),
        ),
        (
            "feed_read",
            encode(&FeedRequest::FeedRead {
                id: Some(101),
                room: Some(DM_ROOM.into()),
                through: Some(7),
            }),
        ),
        (
            "quiet_hours",
            encode(&FeedRequest::QuietHours {
                id: Some(102),
                hours: Some(preau::quiet::QuietHours {
                    start: "19:30".into(),
                    end: "07:30".into(),
                    days: vec!["sat".into(), "sun".into()],
                }),
                default: false,
            }),
        ),
        (
            "quiet_hours.read",
            encode(&FeedRequest::QuietHours {
                id: Some(103),
                hours: None,
                default: false,
            }),
        ),
        (
            "quiet_hours.default",
            encode(&FeedRequest::QuietHours {
                id: Some(104),
                hours: None,
                default: true,
            }),
        ),
        (
            "dm_start",
            encode(&DmRequest::DmStart {
                id: Some(110),
                to: vec!["t-durand".into()],
            }),
        ),
        (
            "dm_add",
            encode(&DmRequest::DmAdd {
                id: Some(111),
                room: DM_ROOM.into(),
                users: vec!["p-martin".into()],
            }),
        ),
        (
            "dm_send",
            encode(&DmRequest::DmSend {
                id: Some(112),
                room: DM_ROOM.into(),
                text: "Monsieur, je n'ai pas compris l'exercice 3.".into(),
                key: Some("c1f0-dm-1".into()),
            }),
        ),
        (
            "conversations",
            encode(&DmRequest::Conversations { id: Some(113) }),
        ),
        (
            "contacts",
            encode(&DmRequest::Contacts {
                id: Some(114),
                query: Some("durand".into()),
                limit: None,
            }),
        ),
        (
            "dm_prefs",
            encode(&DmRequest::DmPrefs {
                id: Some(115),
                room: DM_ROOM.into(),
                named: true,
            }),
        ),
        (
            "dm_share",
            encode(&DmRequest::DmShare {
                id: Some(116),
                room: DM_ROOM.into(),
                at: 3,
                forum: "3B/forum/aide".into(),
                title: None,
            }),
        ),
        (
            "dm_review",
            encode(&DmRequest::DmReview {
                id: Some(117),
                room: DM_ROOM.into(),
            }),
        ),
        (
            "announce",
            encode(&AnnounceRequest::Announce {
                id: Some(120),
                targets: vec!["parents:3B".into()],
                title: "Sortie au musée".into(),
                text: "Le jeudi 17, prévoir un pique-nique.".into(),
                ack: true,
                urgent: false,
                key: None,
            }),
        ),
        (
            "announce.urgent",
            encode(&AnnounceRequest::Announce {
                id: Some(121),
                targets: vec!["school".into()],
                title: "Fermeture du collège".into(),
                text: "Alerte météo : le collège est fermé demain.".into(),
                ack: false,
                urgent: true,
                key: None,
            }),
        ),
        (
            "announce_read",
            encode(&AnnounceRequest::AnnounceRead {
                id: Some(122),
                room: ANNOUNCE_ROOM.into(),
            }),
        ),
        (
            "announce_ack",
            encode(&AnnounceRequest::AnnounceAck {
                id: Some(123),
                room: ANNOUNCE_ROOM.into(),
            }),
        ),
        (
            "announce_status",
            encode(&AnnounceRequest::AnnounceStatus {
                id: Some(124),
                room: ANNOUNCE_ROOM.into(),
            }),
        ),
        (
            "announcements",
            encode(&AnnounceRequest::Announcements { id: Some(125) }),
        ),
    ]
}

/// A hand-in's file, as its events and replies carry it.
fn sample_file(id: &str, name: &str) -> preau::files::FileRef {
    preau::files::FileRef {
        id: id.into(),
        name: name.into(),
        mime: "application/pdf".into(),
        size: 48_213,
        sha256: "9f2c".repeat(16),
        path: format!("c/3B/6b86b273ff34fce19d6b804eff5a3f57/{id}"),
    }
}

/// The hand-ins' requests.
fn handin_client_samples() -> Vec<(&'static str, Bytes)> {
    use preau::kinds::handin::HandinRequest;
    fn encode(request: &impl Serialize) -> Bytes {
        Bytes::from(rmp_serde::to_vec_named(request).expect("encodes"))
    }
    vec![
        (
            "handin_open",
            encode(&HandinRequest::HandinOpen {
                id: Some(140),
                room: "3B/handin/main".into(),
                title: "Exposé : la Révolution".into(),
                instructions: "Un PDF ou un enregistrement de 3 minutes.".into(),
                due: 1_796_979_600_000,
                pupils: vec![],
                group: None,
                accepts: vec!["document".into(), "audio".into()],
                late: true,
                entry: Some(12),
            }),
        ),
        (
            "handin_open.some_pupils",
            encode(&HandinRequest::HandinOpen {
                id: Some(141),
                room: "3B/handin/main".into(),
                title: "Rattrapage".into(),
                instructions: String::new(),
                due: 1_796_979_600_000,
                pupils: vec!["ana".into(), "bob".into()],
                group: None,
                accepts: vec![],
                late: false,
                entry: None,
            }),
        ),
        (
            "handin_change",
            encode(&HandinRequest::HandinChange {
                id: Some(142),
                room: "3B/handin/main".into(),
                handin: 3,
                due: Some(1_797_066_000_000),
                late: None,
            }),
        ),
        (
            "handin_submit",
            encode(&HandinRequest::HandinSubmit {
                id: Some(143),
                room: "3B/handin/main".into(),
                handin: 3,
                file: "5d41402abc4b2a76b9719d911017c592".into(),
            }),
        ),
        (
            "handin_return",
            encode(&HandinRequest::HandinReturn {
                id: Some(144),
                room: "3B/handin/main".into(),
                handin: 3,
                pupil: "ana".into(),
                file: Some("7d793037a0760186574b0282f2f435e7".into()),
                comment: "Très bien, 16/20.".into(),
            }),
        ),
        (
            "handins",
            encode(&HandinRequest::Handins {
                id: Some(145),
                room: "3B/handin/main".into(),
            }),
        ),
        (
            "handin_status",
            encode(&HandinRequest::HandinStatus {
                id: Some(146),
                room: "3B/handin/main".into(),
                handin: 3,
            }),
        ),
    ]
}

/// The hand-ins' events and replies.
fn handin_server_samples() -> Vec<(&'static str, Bytes)> {
    use preau::kinds::handin::state::{OpenFields, Returned, SubmitFields};
    use preau::kinds::handin::{Counts, HandinStatusOk, HandinView, HandinsOk, PupilRow};
    let teacher = UserInfo {
        id: "durand".into(),
        name: "M. Durand".into(),
        role: Role::Teacher,
    };
    let ana = UserInfo {
        id: "ana".into(),
        name: "Ana Martin".into(),
        role: Role::Student,
    };
    let open = OpenFields {
        title: "Exposé : la Révolution".into(),
        instructions: "Un PDF ou un enregistrement de 3 minutes.".into(),
        due: 1_796_979_600_000,
        pupils: vec!["ana".into(), "bob".into()],
        to: "class:3B".into(),
        accepts: vec!["document".into(), "audio".into()],
        late: true,
        entry: Some(12),
    };
    let event = |offset: u64, from: &UserInfo, kind: &str, fields: &dyn ErasedFields| {
        let mut event = fields.event(
            offset,
            1_796_806_800_000 + offset * 60_000,
            from.clone(),
            kind,
        );
        event.room = "3B/handin/main".into();
        protocol::event(&event)
    };
    let file = sample_file("5d41402abc4b2a76b9719d911017c592", "exposé ana.pdf");
    let correction = sample_file("7d793037a0760186574b0282f2f435e7", "corrigé ana.pdf");
    let returned = Returned {
        offset: 9,
        ts: 1_796_893_200_000,
        by: teacher.clone(),
        file: Some(correction.clone()),
        comment: "Très bien, 16/20.".into(),
    };
    let view = HandinView {
        handin: 3,
        title: open.title.clone(),
        instructions: open.instructions.clone(),
        due: open.due,
        late: true,
        accepts: open.accepts.clone(),
        to: open.to.clone(),
        by: teacher.clone(),
        ts: 1_796_806_980_000,
        entry: Some(12),
        counts: None,
        mine: vec![PupilRow {
            pupil: ana.clone(),
            status: "returned".into(),
            submitted: Some(1_796_810_400_000),
            file: Some(file.clone()),
            replaced: 1,
            returned: Some(returned.clone()),
        }],
    };
    vec![
        (
            "event.handin_open",
            event(3, &teacher, "handin_open", &open),
        ),
        (
            "event.handin_submit",
            event(
                5,
                &ana,
                "handin_submit",
                &SubmitFields {
                    handin: 3,
                    file: file.clone(),
                    late: false,
                },
            ),
        ),
        (
            "event.handin_change",
            event(
                6,
                &teacher,
                "handin_change",
                &preau::kinds::handin::state::ChangeFields {
                    handin: 3,
                    due: Some(1_797_066_000_000),
                    late: None,
                },
            ),
        ),
        (
            "event.handin_return",
            event(
                9,
                &teacher,
                "handin_return",
                &preau::kinds::handin::state::ReturnFields {
                    handin: 3,
                    pupil: "ana".into(),
                    file: Some(correction.clone()),
                    comment: "Très bien, 16/20.".into(),
                },
            ),
        ),
        (
            "ok.handins",
            protocol::ok(
                Some(145),
                &HandinsOk {
                    room: "3B/handin/main".into(),
                    handins: vec![view.clone()],
                },
            ),
        ),
        (
            "ok.handin_status",
            protocol::ok(
                Some(146),
                &HandinStatusOk {
                    room: "3B/handin/main".into(),
                    handin: HandinView {
                        counts: Some(Counts {
                            pupils: 2,
                            handed_in: 1,
                            late: 0,
                            returned: 1,
                        }),
                        mine: vec![],
                        ..view.clone()
                    },
                    pupils: view.mine.clone(),
                },
            ),
        ),
    ]
}

fn messaging_server_samples() -> Vec<(&'static str, Bytes)> {
    use preau::kinds::announce::state::{ReceiptFields, ToFields};
    use preau::kinds::announce::{AnnounceFields, AnnounceOk, Family, SentList, SentOne, StatusOk};
    use preau::kinds::dm::state::{MembersFields, PrefsFields, ReviewedFields, SharedFields};
    use preau::kinds::dm::{Contact, ContactsOk, ConversationsOk, DmOk, Quiet, SentOk, SharedOk};
    use preau::kinds::inbox::state::{QuietFields, ReleaseFields, SeenFields, SentFields};
    use preau::kinds::inbox::{Conversation, FeedOk, Item, JoinedFields, QuietOk};
    assert_eq!(preau::kinds::inbox::inbox_of("ana"), INBOX_ROOM);
    let system = preau::kinds::inbox::system();
    let teachers_default = preau::quiet::QuietHours::parse("20:00-07:00 sun").expect("hours");
    let evening = preau::quiet::QuietHours {
        start: "19:30".into(),
        end: "07:30".into(),
        days: vec!["sat".into(), "sun".into()],
    };
    let inbox = |offset: u64, ts: u64, from: UserInfo, kind: &str, fields: &dyn ErasedFields| {
        protocol::event(&Event {
            room: INBOX_ROOM.into(),
            ..fields.event(offset, ts, from, kind)
        })
    };
    let dm = |offset: u64, from: UserInfo, kind: &str, fields: &dyn ErasedFields| {
        protocol::event(&Event {
            room: DM_ROOM.into(),
            ..fields.event(offset, T0 + offset * 60_000, from, kind)
        })
    };
    let announce = |offset: u64, from: UserInfo, kind: &str, fields: &dyn ErasedFields| {
        protocol::event(&Event {
            room: ANNOUNCE_ROOM.into(),
            ..fields.event(offset, T0 + offset * 60_000, from, kind)
        })
    };
    let durand_quiet = Quiet {
        id: "t-durand".into(),
        name: "M. Durand".into(),
        until: SATURDAY_7H,
    };
    vec![
        (
            "event.notify",
            inbox(
                5,
                T0 + 300_000,
                system.clone(),
                "notify",
                &announce_notice(),
            ),
        ),
        (
            "event.notify.dm",
            inbox(
                6,
                T0 + 360_000,
                system.clone(),
                "notify",
                &dm_notice(prof(), 6, false),
            ),
        ),
        (
            "event.feed_seen",
            inbox(
                7,
                T0 + 420_000,
                ana(),
                "feed_seen",
                &SeenFields {
                    room: Some(DM_ROOM.into()),
                    through: 6,
                },
            ),
        ),
        (
            "event.quiet_hours",
            inbox(
                8,
                T0 + 480_000,
                ana(),
                "quiet_hours",
                &QuietFields {
                    hours: Some(evening.clone()),
                },
            ),
        ),
        (
            "event.quiet_hours.default",
            inbox(
                9,
                T0 + 540_000,
                ana(),
                "quiet_hours",
                &QuietFields { hours: None },
            ),
        ),
        (
            "event.feed_release",
            inbox(
                12,
                SATURDAY_7H,
                system.clone(),
                "feed_release",
                &ReleaseFields {
                    until: SATURDAY_7H,
                    count: 2,
                },
            ),
        ),
        (
            "event.dm_joined",
            inbox(
                2,
                T0 + 60_000,
                system.clone(),
                "dm_joined",
                &JoinedFields {
                    room: DM_ROOM.into(),
                    members: vec![ana(), prof()],
                },
            ),
        ),
        (
            // In the sender's feed.
            "event.announce_sent",
            protocol::event(&Event {
                room: preau::kinds::inbox::inbox_of("t-durand"),
                ..SentFields {
                    room: ANNOUNCE_ROOM.into(),
                    title: "Sortie au musée".into(),
                    recipients: 2,
                }
                .event(3, T0 + 120_000, system.clone(), "announce_sent")
            }),
        ),
        (
            "ok.feed",
            protocol::ok(
                Some(100),
                &FeedOk {
                    room: INBOX_ROOM.into(),
                    items: vec![
                        Item {
                            offset: 6,
                            ts: T0 + 360_000,
                            fields: dm_notice(prof(), 6, false),
                            read: false,
                        },
                        Item {
                            offset: 5,
                            ts: T0 + 300_000,
                            fields: announce_notice(),
                            read: true,
                        },
                    ],
                    more: false,
                    unread: [(DM_ROOM.to_owned(), 1)].into_iter().collect(),
                    total_unread: 1,
                    quiet: QuietOk {
                        hours: teachers_default.clone(),
                        own: false,
                        until: None,
                        timezone: "Europe/Paris".into(),
                    },
                },
            ),
        ),
        (
            "ok.feed.held",
            protocol::ok(
                Some(100),
                &FeedOk {
                    room: preau::kinds::inbox::inbox_of("t-durand"),
                    items: vec![Item {
                        offset: 4,
                        ts: FRIDAY_21H,
                        fields: dm_notice(ana(), 7, true),
                        read: false,
                    }],
                    more: true,
                    unread: [(DM_ROOM.to_owned(), 1)].into_iter().collect(),
                    total_unread: 1,
                    quiet: QuietOk {
                        hours: teachers_default.clone(),
                        own: false,
                        until: Some(SATURDAY_7H),
                        timezone: "Europe/Paris".into(),
                    },
                },
            ),
        ),
        (
            "ok.feed_read",
            protocol::ok(
                Some(101),
                &PostOk {
                    room: INBOX_ROOM.into(),
                    epoch: MESSAGING_EPOCH.into(),
                    offset: 7,
                    ts: T0 + 420_000,
                },
            ),
        ),
        (
            "ok.quiet_hours",
            protocol::ok(
                Some(103),
                &QuietOk {
                    hours: evening,
                    own: true,
                    until: None,
                    timezone: "Europe/Paris".into(),
                },
            ),
        ),
        (
            "event.dm_members",
            dm(
                1,
                ana(),
                "dm_members",
                &MembersFields {
                    members: vec![ana(), prof()],
                },
            ),
        ),
        (
            "event.dm_prefs",
            dm(2, ana(), "dm_prefs", &PrefsFields { named: true }),
        ),
        (
            "event.dm.message",
            protocol::event(&Event {
                room: DM_ROOM.into(),
                epoch: MESSAGING_EPOCH.into(),
                offset: 3,
                ts: T0 + 180_000,
                from: ana(),
                body: Body::message("Monsieur, je n'ai pas compris l'exercice 3."),
            }),
        ),
        (
            "event.dm_shared",
            dm(
                4,
                prof(),
                "dm_shared",
                &SharedFields {
                    at: 3,
                    forum: "3B/forum/aide".into(),
                    thread: 12,
                    anonymous: false,
                },
            ),
        ),
        (
            "event.dm_reviewed",
            dm(5, staff(), "dm_reviewed", &ReviewedFields { report: 9 }),
        ),
        (
            "ok.dm_start",
            protocol::ok(
                Some(110),
                &DmOk {
                    room: DM_ROOM.into(),
                    created: true,
                    members: vec![ana(), prof()],
                    quiet: vec![],
                },
            ),
        ),
        (
            // Again, on Friday evening: the pair's conversation, and
            // M. Durand is in his quiet hours.
            "ok.dm_start.again_quiet",
            protocol::ok(
                Some(110),
                &DmOk {
                    room: DM_ROOM.into(),
                    created: false,
                    members: vec![ana(), prof()],
                    quiet: vec![durand_quiet.clone()],
                },
            ),
        ),
        (
            "ok.dm_send",
            protocol::ok(
                Some(112),
                &SentOk {
                    room: DM_ROOM.into(),
                    epoch: MESSAGING_EPOCH.into(),
                    offset: 7,
                    ts: FRIDAY_21H,
                    held: vec![durand_quiet.clone()],
                },
            ),
        ),
        (
            // M. Durand is quiet every day: never pushed (2^64 - 1).
            "ok.dm_send.quiet_every_day",
            protocol::ok(
                Some(112),
                &SentOk {
                    room: DM_ROOM.into(),
                    epoch: MESSAGING_EPOCH.into(),
                    offset: 7,
                    ts: FRIDAY_21H,
                    held: vec![Quiet {
                        until: preau::quiet::NEVER,
                        ..durand_quiet
                    }],
                },
            ),
        ),
        (
            "ok.conversations",
            protocol::ok(
                Some(113),
                &ConversationsOk {
                    conversations: vec![Conversation {
                        room: DM_ROOM.into(),
                        members: vec![ana(), prof()],
                        last: T0 + 360_000,
                        unread: 1,
                    }],
                },
            ),
        ),
        (
            "ok.contacts",
            protocol::ok(
                Some(114),
                &ContactsOk {
                    contacts: vec![Contact {
                        id: "t-durand".into(),
                        name: "M. Durand".into(),
                        role: Role::Teacher,
                        about: vec!["3B · Mathématiques".into()],
                    }],
                    more: false,
                },
            ),
        ),
        (
            "ok.dm_share",
            protocol::ok(
                Some(116),
                &SharedOk {
                    forum: "3B/forum/aide".into(),
                    thread: 12,
                    anonymous: false,
                },
            ),
        ),
        (
            "event.announce_to",
            announce(
                1,
                prof(),
                "announce_to",
                &ToFields {
                    recipients: vec!["p-martin".into(), "p-petit".into()],
                },
            ),
        ),
        (
            "event.announce",
            announce(
                2,
                prof(),
                "announce",
                &AnnounceFields {
                    title: "Sortie au musée".into(),
                    text: "Le jeudi 17, prévoir un pique-nique.".into(),
                    targets: vec!["parents:3B".into()],
                    count: 2,
                    ack: true,
                    urgent: false,
                },
            ),
        ),
        (
            "event.announce_read",
            announce(
                3,
                parent(),
                "announce_read",
                &ReceiptFields {
                    sender: "t-durand".into(),
                },
            ),
        ),
        (
            "event.announce_ack",
            announce(
                4,
                parent(),
                "announce_ack",
                &ReceiptFields {
                    sender: "t-durand".into(),
                },
            ),
        ),
        (
            "ok.announce",
            protocol::ok(
                Some(120),
                &AnnounceOk {
                    room: ANNOUNCE_ROOM.into(),
                    recipients: 2,
                },
            ),
        ),
        (
            "ok.announce_status",
            protocol::ok(
                Some(124),
                &StatusOk {
                    room: ANNOUNCE_ROOM.into(),
                    title: "Sortie au musée".into(),
                    recipients: 2,
                    read: 1,
                    ack: true,
                    acked: 1,
                    not_read: vec![UserInfo {
                        id: "p-petit".into(),
                        name: "M. Petit".into(),
                        role: Role::Parent,
                    }],
                    not_acked: vec![UserInfo {
                        id: "p-petit".into(),
                        name: "M. Petit".into(),
                        role: Role::Parent,
                    }],
                    families_not_read: vec![Family {
                        child: "Hugo Petit".into(),
                        class: Some("3B".into()),
                        parents: vec!["M. Petit".into()],
                    }],
                },
            ),
        ),
        (
            "ok.announcements",
            protocol::ok(
                Some(125),
                &SentList {
                    sent: vec![SentOne {
                        room: ANNOUNCE_ROOM.into(),
                        title: "Sortie au musée".into(),
                        ts: T0 + 120_000,
                        recipients: 2,
                    }],
                },
            ),
        ),
    ]
}

/// The fields of a kind's event, whatever their type (one closure per room
/// above builds them all); the caller sets the room.
trait ErasedFields {
    fn event(&self, offset: u64, ts: u64, from: UserInfo, kind: &str) -> Event;
}

impl<T: Serialize> ErasedFields for T {
    fn event(&self, offset: u64, ts: u64, from: UserInfo, kind: &str) -> Event {
        Event {
            room: String::new(),
            epoch: MESSAGING_EPOCH.into(),
            offset,
            ts,
            from,
            body: Body::Kind(protocol::KindBody::new(kind, self).expect("a kind body")),
        }
    }
}

fn server_samples() -> Vec<(&'static str, Bytes)> {
    let join_ok = JoinOk {
        room: ROOM.into(),
        epoch: EPOCH.into(),
        head: 43,
        first: 1,
        members: vec![ana(), prof()],
        member_count: 2,
        pinned: vec![12],
        read_only: false,
        recovery: None,
        events: vec![],
    };
    let recovered = JoinOk {
        recovery: Some(Recovery {
            recovered: true,
            reason: None,
        }),
        events: vec![sample_event(42), sample_event(43)],
        ..join_ok.clone()
    };
    let not_recovered = JoinOk {
        head: 1843,
        recovery: Some(Recovery {
            recovered: false,
            reason: Some(RecoveryFailure::TooFarBehind),
        }),
        ..join_ok.clone()
    };
    let epoch_mismatch = JoinOk {
        recovery: Some(Recovery {
            recovered: false,
            reason: Some(RecoveryFailure::EpochMismatch),
        }),
        ..join_ok.clone()
    };
    let empty_room = JoinOk {
        room: "5A/chat/club-echecs".into(),
        epoch: "0c1d2e3f40516273".into(),
        head: 0,
        first: 1,
        members: vec![ana()],
        member_count: 1,
        pinned: Vec::new(),
        read_only: true,
        recovery: None,
        events: vec![],
    };
    let page = HistoryOk {
        room: ROOM.into(),
        epoch: EPOCH.into(),
        head: 44,
        first: 1,
        more: true,
        events: vec![sample_event(41), sample_event(42)],
    };
    let empty_page = HistoryOk {
        more: false,
        events: vec![],
        ..page.clone()
    };
    let redacted_page = HistoryOk {
        head: 49,
        events: vec![
            sample_event(41),
            tombstone(&moderation_event(45)),
            sample_event(43),
        ],
        ..page.clone()
    };
    let mute_until = T0 + 6 * 60_000 + MUTE_SECS * 1000;
    let malformed = protocol::decode_request(&[0x05]).expect_err("an int is not a request");
    vec![
        ("ok.hello", protocol::ok(Some(1), &hello_ok())),
        (
            "ok.hello.parent",
            protocol::ok(
                Some(1),
                &HelloOk {
                    user: UserInfo {
                        id: "p-martin".into(),
                        name: "Mme Martin".into(),
                        role: Role::Parent,
                    },
                    classes: vec!["3B".into(), "4A".into()],
                    children: vec![
                        protocol::ChildInfo {
                            id: "ana".into(),
                            name: "Ana Martin".into(),
                            classes: vec!["3B".into()],
                        },
                        protocol::ChildInfo {
                            id: "leo".into(),
                            name: "Léo Martin".into(),
                            classes: vec!["4A".into()],
                        },
                    ],
                    ..hello_ok()
                },
            ),
        ),
        ("ok.join", join_frame(Some(2), &join_ok)),
        ("ok.join.empty_room", join_frame(Some(2), &empty_room)),
        ("ok.join.recovered", join_frame(Some(3), &recovered)),
        (
            "ok.join.too_far_behind",
            join_frame(Some(3), &not_recovered),
        ),
        (
            "ok.join.epoch_mismatch",
            join_frame(Some(3), &epoch_mismatch),
        ),
        ("ok.leave", protocol::ok_empty(Some(4))),
        (
            "ok.post",
            protocol::ok(
                Some(5),
                &PostOk {
                    room: ROOM.into(),
                    epoch: EPOCH.into(),
                    offset: 44,
                    ts: sample_event(44).ts,
                },
            ),
        ),
        ("ok.typing.no_id", protocol::ok_empty(None)),
        ("ok.history", history_frame(Some(8), &page)),
        ("ok.history.empty", history_frame(Some(9), &empty_page)),
        (
            "ok.history.redacted",
            history_frame(Some(8), &redacted_page),
        ),
        ("ok.ping", protocol::ok_empty(Some(300))),
        (
            "ok.moderate",
            protocol::ok(
                Some(11),
                &PostOk {
                    room: ROOM.into(),
                    epoch: EPOCH.into(),
                    offset: 45,
                    ts: moderation_event(45).ts,
                },
            ),
        ),
        (
            "error.not_joined",
            protocol::error(Some(5), ErrorCode::NotJoined, format!("join {ROOM} first")),
        ),
        (
            "error.rate_limited",
            protocol::error_reply(&ErrorReply {
                id: Some(5),
                code: ErrorCode::RateLimited,
                message: "too many messages, retry in 500 ms".into(),
                retry_after_ms: Some(500),
            }),
        ),
        (
            "error.malformed_frame.no_id",
            protocol::error(None, malformed.code(), malformed.to_string()),
        ),
        (
            "error.forbidden",
            protocol::error(
                Some(13),
                ErrorCode::Forbidden,
                format!("not allowed to moderate {ROOM}"),
            ),
        ),
        (
            "error.invalid_field",
            protocol::error(
                Some(13),
                ErrorCode::InvalidField,
                "seconds must be between 1 and 2592000",
            ),
        ),
        (
            "error.unknown_target",
            protocol::error(
                Some(11),
                ErrorCode::UnknownTarget,
                "no message at offset 42",
            ),
        ),
        (
            "error.muted",
            protocol::error_reply(&ErrorReply {
                id: Some(5),
                code: ErrorCode::Muted,
                message: format!("you are muted here until {mute_until} (ms since the epoch)"),
                retry_after_ms: Some(540_000),
            }),
        ),
        (
            "error.banned",
            protocol::error(
                Some(2),
                ErrorCode::Banned,
                format!("you are banned from {ROOM}"),
            ),
        ),
        (
            "error.read_only",
            protocol::error(Some(5), ErrorCode::ReadOnly, "this room is read-only"),
        ),
        (
            "error.slow_mode",
            protocol::error_reply(&ErrorReply {
                id: Some(5),
                code: ErrorCode::SlowMode,
                message: "slow mode: wait 12500 ms".into(),
                retry_after_ms: Some(12_500),
            }),
        ),
        ("event", protocol::event(&sample_event(44))),
        ("event.forum.thread", protocol::event(&forum_event(3))),
        ("event.forum.reply", protocol::event(&forum_event(5))),
        ("event.forum.edit", protocol::event(&forum_event(6))),
        ("event.forum.answer", protocol::event(&forum_event(7))),
        ("event.yjs_update", protocol::event(&notes_event(8))),
        (
            "event.moderation.validate",
            protocol::event(&notes_event(9)),
        ),
        (
            "yjs.step2",
            protocol::yjs(&protocol::YjsFrame {
                room: NOTES_ROOM.into(),
                data: YJS_STEP2_MSG.to_vec(),
            }),
        ),
        (
            "ok.threads",
            protocol::ok(
                Some(46),
                &protocol::ThreadsOk {
                    room: FORUM_ROOM.into(),
                    settings: protocol::ForumSettings {
                        flavour: protocol::Flavour::Help,
                        classes: vec![],
                        moderators: vec![],
                    },
                    threads: vec![protocol::ThreadInfo {
                        thread: 3,
                        title: Some("La Révolution".into()),
                        from: prof(),
                        ts: T0,
                        last_offset: 5,
                        last_ts: T0 + 60_000,
                        replies: 1,
                        unread: 1,
                        answer: Some(5),
                        locked: false,
                        pinned: true,
                        deleted: false,
                    }],
                    more: false,
                },
            ),
        ),
        (
            "ok.rooms",
            protocol::ok(
                Some(48),
                &protocol::RoomsOk {
                    rooms: vec![FORUM_ROOM.into(), "3B/forum/aide-maths".into()],
                },
            ),
        ),
        (
            "ok.note_versions",
            protocol::ok(
                Some(63),
                &protocol::NoteVersions {
                    versions: vec![protocol::NoteVersionInfo {
                        version: 1,
                        label: "Chapitre 3 — validé le 12/03".into(),
                        by: prof(),
                        ts: T0,
                        offset: 9,
                    }],
                },
            ),
        ),
        (
            "ok.note_export",
            protocol::ok(
                Some(64),
                &protocol::NoteExport {
                    format: protocol::ExportFormat::Text,
                    content: rmpv::Value::from("Chapitre 3"),
                },
            ),
        ),
        (
            "error.unknown_room",
            protocol::error(
                Some(40),
                ErrorCode::UnknownRoom,
                "no forum 3B/forum/debat: a teacher of the class opens it first",
            ),
        ),
        (
            "error.not_editable",
            protocol::error(
                Some(43),
                ErrorCode::NotEditable,
                "someone replied to this post: it can no longer be edited",
            ),
        ),
        (
            "error.invalid_update",
            protocol::error(
                Some(61),
                ErrorCode::InvalidUpdate,
                "invalid yjs update: the note is unchanged",
            ),
        ),
        (
            "event.moderation.redact",
            protocol::event(&moderation_event(45)),
        ),
        (
            "event.moderation.mute",
            protocol::event(&moderation_event(46)),
        ),
        (
            "event.moderation.ban",
            protocol::event(&moderation_event(47)),
        ),
        (
            "event.moderation.slow_mode",
            protocol::event(&moderation_event(48)),
        ),
        (
            "event.moderation.redact.own",
            protocol::event(&moderation_event(49)),
        ),
        (
            "event.redacted",
            protocol::event(&tombstone(&moderation_event(45))),
        ),
        (
            "event.redacted.own",
            protocol::event(&tombstone(&moderation_event(49))),
        ),
        (
            "event.audit.redact",
            protocol::event(&audit_event(7, &moderation_event(45))),
        ),
        (
            "event.audit.mute",
            protocol::event(&audit_event(8, &moderation_event(46))),
        ),
        ("event.audit.report", protocol::event(&report_event(9))),
        (
            "event.audit.resolve",
            protocol::event(&Event {
                room: AUDIT_ROOM.into(),
                epoch: AUDIT_EPOCH.into(),
                offset: 10,
                ts: 1_795_000_100_000,
                from: prof(),
                body: Body::Audit {
                    room: ROOM.into(),
                    action: ModAction::Resolve {
                        report: 9,
                        dismissed: true,
                    },
                    until: None,
                },
            }),
        ),
        (
            "ok.room_view",
            protocol::ok(
                Some(27),
                &protocol::RoomView {
                    room: ROOM.into(),
                    members: vec![
                        protocol::MemberState {
                            user: ana(),
                            muted_until: Some(1_795_000_400_000),
                            banned: false,
                        },
                        protocol::MemberState {
                            user: prof(),
                            muted_until: None,
                            banned: false,
                        },
                    ],
                    muted: [("ana".to_owned(), 1_795_000_400_000)]
                        .into_iter()
                        .collect(),
                    banned: vec!["bob".into()],
                    slow_mode: 30,
                    read_only: false,
                    pinned: vec![12],
                    recent_messages: 14,
                    open_reports: vec![preau::protocol::EventFrame(report_event(9))],
                },
            ),
        ),
        (
            "presence.join",
            protocol::presence(&Presence {
                room: ROOM.into(),
                action: PresenceAction::Join,
                user: prof(),
            }),
        ),
        (
            "presence.leave",
            protocol::presence(&Presence {
                room: ROOM.into(),
                action: PresenceAction::Leave,
                user: prof(),
            }),
        ),
        (
            "typing.indicator",
            protocol::typing(&Typing {
                room: ROOM.into(),
                user: ana(),
            }),
        ),
    ]
}

fn named(value: serde_json::Value) -> Vec<u8> {
    rmp_serde::to_vec_named(&value).expect("encodes")
}

/// A msgpack map with its keys in the given order.
fn map(entries: &[(&str, rmpv::Value)]) -> Vec<u8> {
    let value = rmpv::Value::Map(
        entries
            .iter()
            .map(|(k, v)| (rmpv::Value::from(*k), v.clone()))
            .collect(),
    );
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &value).expect("encodes");
    out
}

fn invalid_samples() -> Vec<(&'static str, Vec<u8>)> {
    use rmpv::Value as M;
    let s = |text: &str| M::from(text);
    vec![
        ("not_msgpack", vec![0xc1]),
        ("empty_frame", vec![]),
        ("truncated_map", vec![0x82, 0xa4, b't', b'y']),
        ("int", vec![0x05]),
        (
            "map_without_type",
            map(&[("id", M::from(1)), ("room", s(ROOM))]),
        ),
        (
            "type_not_a_string",
            map(&[("type", M::from(1)), ("id", M::from(2))]),
        ),
        (
            "unknown_type",
            map(&[("type", s("fly")), ("id", M::from(3))]),
        ),
        (
            "room_is_an_int",
            map(&[
                ("type", s("join")),
                ("id", M::from(4)),
                ("room", M::from(5)),
            ]),
        ),
        (
            "post_without_text",
            map(&[("type", s("post")), ("id", M::from(5)), ("room", s(ROOM))]),
        ),
        (
            "hello_without_token",
            map(&[("type", s("hello")), ("id", M::from(6))]),
        ),
        (
            "id_negative",
            map(&[("type", s("ping")), ("id", M::from(-1))]),
        ),
        (
            "id_above_u32",
            map(&[("type", s("ping")), ("id", M::from(4_294_967_296u64))]),
        ),
        (
            "since_offset_is_a_string",
            map(&[
                ("type", s("join")),
                ("id", M::from(7)),
                ("room", s(ROOM)),
                (
                    "since",
                    M::Map(vec![(s("epoch"), s(EPOCH)), (s("offset"), s("41"))]),
                ),
            ]),
        ),
        (
            "history_limit_negative",
            map(&[
                ("type", s("history")),
                ("id", M::from(8)),
                ("room", s(ROOM)),
                ("limit", M::from(-1)),
            ]),
        ),
        (
            "moderate_without_action",
            map(&[
                ("type", s("moderate")),
                ("id", M::from(22)),
                ("room", s(ROOM)),
            ]),
        ),
        (
            "moderate_unknown_kind",
            map(&[
                ("type", s("moderate")),
                ("id", M::from(23)),
                ("room", s(ROOM)),
                (
                    "action",
                    M::Map(vec![
                        (s("kind"), s("frobnicate")),
                        (s("offset"), M::from(42)),
                    ]),
                ),
            ]),
        ),
        (
            "moderate_mute_seconds_negative",
            map(&[
                ("type", s("moderate")),
                ("id", M::from(24)),
                ("room", s(ROOM)),
                (
                    "action",
                    M::Map(vec![
                        (s("kind"), s("mute")),
                        (s("user"), s("ana")),
                        (s("seconds"), M::from(-60)),
                    ]),
                ),
            ]),
        ),
    ]
}

fn generate() -> Vec<Vector> {
    let mut vectors = Vec::new();
    for (name, request) in client_samples() {
        let bytes = protocol::encode_request(&request).expect("encodes");
        vectors.push(Vector {
            name: name.into(),
            direction: "client".into(),
            json: Some(generic(&bytes).expect("msgpack")),
            hex: hex::encode(&bytes),
            error: None,
        });
    }
    for (name, bytes) in agenda_client_samples()
        .into_iter()
        .chain(homework_client_samples())
        .chain(docs_client_samples())
        .chain(messaging_client_samples())
        .chain(handin_client_samples())
        .chain(blog_client_samples())
    {
        vectors.push(Vector {
            name: name.into(),
            direction: "client".into(),
            json: Some(generic(&bytes).expect("msgpack")),
            hex: hex::encode(&bytes),
            error: None,
        });
    }
    for (name, bytes) in server_samples()
        .into_iter()
        .chain(agenda_server_samples())
        .chain(homework_server_samples())
        .chain(docs_server_samples())
        .chain(messaging_server_samples())
        .chain(handin_server_samples())
        .chain(blog_server_samples())
    {
        vectors.push(Vector {
            name: name.into(),
            direction: "server".into(),
            json: Some(generic(&bytes).expect("msgpack")),
            hex: hex::encode(&bytes),
            error: None,
        });
    }
    for (name, bytes) in invalid_samples() {
        let err = protocol::decode_request(&bytes)
            .expect_err("invalid sample must not decode")
            .code();
        vectors.push(Vector {
            name: format!("invalid.{name}"),
            direction: "client-invalid".into(),
            json: generic(&bytes),
            hex: hex::encode(&bytes),
            error: Some(err.as_str().into()),
        });
    }
    vectors
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

fn typed<T: serde::de::DeserializeOwned>(v: &Vector, value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap_or_else(|e| {
        panic!(
            "{}: json is not a valid {}: {e}",
            v.name,
            std::any::type_name::<T>()
        )
    })
}

/// `json` as a MessagePack value, maps in their order.
fn rmpv_of(json: &J) -> rmpv::Value {
    match json {
        J::Null => rmpv::Value::Nil,
        J::Bool(b) => rmpv::Value::Boolean(*b),
        J::Uint(n) => rmpv::Value::from(*n),
        J::Int(n) => rmpv::Value::from(*n),
        J::Float(f) => rmpv::Value::F64(*f),
        J::Str(s) => rmpv::Value::from(s.as_str()),
        J::Arr(items) => rmpv::Value::Array(items.iter().map(rmpv_of).collect()),
        J::Obj(entries) => rmpv::Value::Map(
            entries
                .iter()
                .map(|(k, v)| (rmpv::Value::from(k.as_str()), rmpv_of(v)))
                .collect(),
        ),
    }
}

/// Builds a server frame from its readable json with the server's encoders.
fn encode_server(v: &Vector) -> Bytes {
    let json = v.json();
    let value = json.to_value();
    match json.get("type").and_then(J::as_str) {
        Some("event") => {
            let mut event = typed::<Event>(v, value);
            // serde_json's maps sort their keys: a kind's fields hold nested
            // maps (quiet hours) whose wire order only the json keeps.
            if let (Body::Kind(body), Some(J::Obj(fields))) = (&mut event.body, json.get("body")) {
                for (key, field) in fields {
                    if let Some(slot) = body.fields.get_mut(key) {
                        *slot = rmpv_of(field);
                    }
                }
            }
            protocol::event(&event)
        }
        Some("presence") => protocol::presence(&typed::<Presence>(v, value)),
        Some("typing") => protocol::typing(&typed::<Typing>(v, value)),
        Some("yjs") => protocol::yjs(&typed::<protocol::YjsFrame>(v, value)),
        Some("error") => {
            let reply: ErrorReply = typed(v, value);
            let frame = protocol::error_reply(&reply);
            if reply.retry_after_ms.is_none() {
                let plain = protocol::error(reply.id, reply.code, reply.message.clone());
                assert_eq!(plain, frame, "{}: error() and error_reply() differ", v.name);
            }
            frame
        }
        Some("ok") => {
            let id: Option<u32> = typed(v, value["id"].clone());
            let data = value["data"].clone();
            // The name says which request the reply answers: `ok.<request>...`.
            match v.name.split('.').nth(1).unwrap_or_default() {
                "hello" => protocol::ok(id, &typed::<HelloOk>(v, data)),
                "post" | "moderate" => protocol::ok(id, &typed::<PostOk>(v, data)),
                "join" => join_frame(id, &typed::<JoinOk>(v, data)),
                "history" => history_frame(id, &typed::<HistoryOk>(v, data)),
                "room_view" => protocol::ok(id, &typed::<protocol::RoomView>(v, data)),
                "threads" => protocol::ok(id, &typed::<protocol::ThreadsOk>(v, data)),
                "rooms" => protocol::ok(id, &typed::<protocol::RoomsOk>(v, data)),
                "note_versions" => protocol::ok(id, &typed::<protocol::NoteVersions>(v, data)),
                "note_export" => protocol::ok(id, &typed::<protocol::NoteExport>(v, data)),
                "agenda_add" => protocol::ok(id, &typed::<PostOk>(v, data)),
                "agenda" => protocol::ok(id, &typed::<preau::kinds::agenda::AgendaOk>(v, data)),
                "homework" => {
                    protocol::ok(id, &typed::<preau::kinds::homework::HomeworkOk>(v, data))
                }
                "homework_load" => {
                    protocol::ok(id, &typed::<preau::kinds::homework::LoadOk>(v, data))
                }
                "homework_due" => {
                    protocol::ok(id, &typed::<preau::kinds::homework::DueOk>(v, data))
                }
                "doc_add" => protocol::ok(id, &typed::<PostOk>(v, data)),
                "docs" => protocol::ok(id, &typed::<preau::kinds::docs::DocsOk>(v, data)),
                "feed" => protocol::ok(id, &typed::<preau::kinds::inbox::FeedOk>(v, data)),
                "quiet_hours" => protocol::ok(id, &typed::<preau::kinds::inbox::QuietOk>(v, data)),
                "feed_read" => protocol::ok(id, &typed::<PostOk>(v, data)),
                "dm_start" => protocol::ok(id, &typed::<preau::kinds::dm::DmOk>(v, data)),
                "dm_send" => protocol::ok(id, &typed::<preau::kinds::dm::SentOk>(v, data)),
                "conversations" => {
                    protocol::ok(id, &typed::<preau::kinds::dm::ConversationsOk>(v, data))
                }
                "contacts" => protocol::ok(id, &typed::<preau::kinds::dm::ContactsOk>(v, data)),
                "dm_share" => protocol::ok(id, &typed::<preau::kinds::dm::SharedOk>(v, data)),
                "announce" => {
                    protocol::ok(id, &typed::<preau::kinds::announce::AnnounceOk>(v, data))
                }
                "announce_status" => {
                    protocol::ok(id, &typed::<preau::kinds::announce::StatusOk>(v, data))
                }
                "announcements" => {
                    protocol::ok(id, &typed::<preau::kinds::announce::SentList>(v, data))
                }
                "handins" => protocol::ok(id, &typed::<preau::kinds::handin::HandinsOk>(v, data)),
                "handin_status" => {
                    protocol::ok(id, &typed::<preau::kinds::handin::HandinStatusOk>(v, data))
                }
                "blog" => protocol::ok(id, &typed::<preau::kinds::blog::BlogOk>(v, data)),
                "blog_write" => protocol::ok(id, &typed::<preau::kinds::blog::WriteOk>(v, data)),
                "leave" | "typing" | "ping" => {
                    assert!(data.is_null(), "{}: data must be nil", v.name);
                    let frame = protocol::ok_empty(id);
                    assert_eq!(frame, protocol::ok(id, &()), "{}", v.name);
                    frame
                }
                other => panic!("{}: ok vector for unknown request {other:?}", v.name),
            }
        }
        other => panic!("{}: unknown server frame type {other:?}", v.name),
    }
}

/// Checks that the typed client decoders read the `data` of an ok vector.
fn check_ok_data(v: &Vector, bytes: &[u8]) {
    let data = v.json().get("data").expect("ok has data").to_value();
    match v.name.split('.').nth(1).unwrap_or_default() {
        "hello" => assert_eq!(
            protocol::decode_ok_data::<HelloOk>(bytes).expect("HelloOk"),
            serde_json::from_value::<HelloOk>(data).expect("HelloOk json")
        ),
        "post" | "moderate" => assert_eq!(
            protocol::decode_ok_data::<PostOk>(bytes).expect("PostOk"),
            serde_json::from_value::<PostOk>(data).expect("PostOk json")
        ),
        "join" => assert_eq!(
            protocol::decode_ok_data::<JoinOk>(bytes).expect("JoinOk"),
            serde_json::from_value::<JoinOk>(data).expect("JoinOk json")
        ),
        "history" => assert_eq!(
            protocol::decode_ok_data::<HistoryOk>(bytes).expect("HistoryOk"),
            serde_json::from_value::<HistoryOk>(data).expect("HistoryOk json")
        ),
        "room_view" => assert_eq!(
            protocol::decode_ok_data::<protocol::RoomView>(bytes).expect("RoomView"),
            serde_json::from_value::<protocol::RoomView>(data).expect("RoomView json")
        ),
        "threads" => assert_eq!(
            protocol::decode_ok_data::<protocol::ThreadsOk>(bytes).expect("ThreadsOk"),
            serde_json::from_value::<protocol::ThreadsOk>(data).expect("ThreadsOk json")
        ),
        "rooms" => assert_eq!(
            protocol::decode_ok_data::<protocol::RoomsOk>(bytes).expect("RoomsOk"),
            serde_json::from_value::<protocol::RoomsOk>(data).expect("RoomsOk json")
        ),
        "note_versions" => assert_eq!(
            protocol::decode_ok_data::<protocol::NoteVersions>(bytes).expect("NoteVersions"),
            serde_json::from_value::<protocol::NoteVersions>(data).expect("NoteVersions json")
        ),
        "note_export" => {
            protocol::decode_ok_data::<protocol::NoteExport>(bytes).expect("NoteExport");
        }
        "agenda_add" => assert_eq!(
            protocol::decode_ok_data::<PostOk>(bytes).expect("PostOk"),
            serde_json::from_value::<PostOk>(data).expect("PostOk json")
        ),
        "agenda" => assert_eq!(
            protocol::decode_ok_data::<preau::kinds::agenda::AgendaOk>(bytes).expect("AgendaOk"),
            serde_json::from_value::<preau::kinds::agenda::AgendaOk>(data).expect("AgendaOk json")
        ),
        "homework" => assert_eq!(
            protocol::decode_ok_data::<preau::kinds::homework::HomeworkOk>(bytes)
                .expect("HomeworkOk"),
            serde_json::from_value::<preau::kinds::homework::HomeworkOk>(data)
                .expect("HomeworkOk json")
        ),
        "homework_load" => assert_eq!(
            protocol::decode_ok_data::<preau::kinds::homework::LoadOk>(bytes).expect("LoadOk"),
            serde_json::from_value::<preau::kinds::homework::LoadOk>(data).expect("LoadOk json")
        ),
        "homework_due" => assert_eq!(
            protocol::decode_ok_data::<preau::kinds::homework::DueOk>(bytes).expect("DueOk"),
            serde_json::from_value::<preau::kinds::homework::DueOk>(data).expect("DueOk json")
        ),
        "doc_add" => same_ok_data::<PostOk>(v, bytes, data),
        "docs" => same_ok_data::<preau::kinds::docs::DocsOk>(v, bytes, data),
        "feed" => same_ok_data::<preau::kinds::inbox::FeedOk>(v, bytes, data),
        "quiet_hours" => same_ok_data::<preau::kinds::inbox::QuietOk>(v, bytes, data),
        "feed_read" => same_ok_data::<PostOk>(v, bytes, data),
        "dm_start" => same_ok_data::<preau::kinds::dm::DmOk>(v, bytes, data),
        "dm_send" => same_ok_data::<preau::kinds::dm::SentOk>(v, bytes, data),
        "conversations" => same_ok_data::<preau::kinds::dm::ConversationsOk>(v, bytes, data),
        "contacts" => same_ok_data::<preau::kinds::dm::ContactsOk>(v, bytes, data),
        "dm_share" => same_ok_data::<preau::kinds::dm::SharedOk>(v, bytes, data),
        "announce" => same_ok_data::<preau::kinds::announce::AnnounceOk>(v, bytes, data),
        "announce_status" => same_ok_data::<preau::kinds::announce::StatusOk>(v, bytes, data),
        "announcements" => same_ok_data::<preau::kinds::announce::SentList>(v, bytes, data),
        "handins" => same_ok_data::<preau::kinds::handin::HandinsOk>(v, bytes, data),
        "handin_status" => same_ok_data::<preau::kinds::handin::HandinStatusOk>(v, bytes, data),
        "blog" => same_ok_data::<preau::kinds::blog::BlogOk>(v, bytes, data),
        "blog_write" => same_ok_data::<preau::kinds::blog::WriteOk>(v, bytes, data),
        _ => assert_eq!(
            protocol::decode_ok_data::<rmpv::Value>(bytes).expect("nil data"),
            rmpv::Value::Nil
        ),
    }
}

/// The typed decoder reads the `data` of an ok vector as its json says.
fn same_ok_data<T>(v: &Vector, bytes: &[u8], data: serde_json::Value)
where
    T: serde::de::DeserializeOwned + PartialEq + fmt::Debug,
{
    assert_eq!(
        protocol::decode_ok_data::<T>(bytes).unwrap_or_else(|e| panic!("{}: {e}", v.name)),
        serde_json::from_value::<T>(data).unwrap_or_else(|e| panic!("{}: json: {e}", v.name)),
        "{}",
        v.name
    );
}

/// A client vector of a kind's own request type: the protocol module does
/// not know it (`unknown_type`), the kind's request type decodes it, and
/// encodes it back to the same bytes.
fn check_kind_request(v: &Vector, bytes: &[u8], kind: &str) {
    assert!(
        matches!(
            protocol::decode_request(bytes),
            Err(protocol::DecodeError::UnknownType { .. })
        ),
        "{}: a kind's request is not one of the protocol module's",
        v.name
    );
    assert_eq!(generic(bytes).as_ref(), Some(v.json()), "{}: json", v.name);
    match kind {
        "agenda" => {
            use preau::kinds::agenda::AgendaRequest;
            let types = preau::session::KindHandler::requests(&preau::kinds::agenda::Agenda);
            let request: AgendaRequest = protocol::decode_kind_request(bytes, types)
                .unwrap_or_else(|e| panic!("{}: the agenda does not decode it: {e}", v.name));
            let encoded = rmp_serde::to_vec_named(&request).expect("encodes");
            assert_eq!(hex::encode(encoded), v.hex, "{}: re-encoded", v.name);
            let from_json: AgendaRequest = serde_json::from_value(v.json().to_value())
                .unwrap_or_else(|e| panic!("{}: json is not an agenda request: {e}", v.name));
            assert_eq!(from_json, request, "{}: json and hex differ", v.name);
        }
        "homework" => {
            use preau::kinds::homework::HomeworkRequest;
            let types = preau::session::KindHandler::requests(&preau::kinds::homework::Homework);
            let request: HomeworkRequest = protocol::decode_kind_request(bytes, types)
                .unwrap_or_else(|e| panic!("{}: the diary does not decode it: {e}", v.name));
            let encoded = rmp_serde::to_vec_named(&request).expect("encodes");
            assert_eq!(hex::encode(encoded), v.hex, "{}: re-encoded", v.name);
            let from_json: HomeworkRequest = serde_json::from_value(v.json().to_value())
                .unwrap_or_else(|e| panic!("{}: json is not a diary request: {e}", v.name));
            assert_eq!(from_json, request, "{}: json and hex differ", v.name);
        }
        "inbox" => same_kind_request::<preau::kinds::inbox::FeedRequest>(
            v,
            bytes,
            &preau::kinds::inbox::Inbox,
        ),
        "dm" => same_kind_request::<preau::kinds::dm::DmRequest>(v, bytes, &preau::kinds::dm::Dm),
        "announce" => same_kind_request::<preau::kinds::announce::AnnounceRequest>(
            v,
            bytes,
            &preau::kinds::announce::Announce,
        ),
        "handin" => same_kind_request::<preau::kinds::handin::HandinRequest>(
            v,
            bytes,
            &preau::kinds::handin::Handin,
        ),
        "blog" => same_kind_request::<preau::kinds::blog::BlogRequest>(
            v,
            bytes,
            &preau::kinds::blog::Blog,
        ),
        "docs" => same_kind_request::<preau::kinds::docs::DocsRequest>(
            v,
            bytes,
            &preau::kinds::docs::DocsKind,
        ),
        other => panic!("{}: no vector check for kind {other}", v.name),
    }
}

/// A kind's request decodes from the vector's bytes with the kind's own
/// types, encodes back to them, and is what its json says.
fn same_kind_request<T>(v: &Vector, bytes: &[u8], kind: &dyn preau::session::KindHandler)
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq + fmt::Debug,
{
    let request: T = protocol::decode_kind_request(bytes, kind.requests())
        .unwrap_or_else(|e| panic!("{}: {} does not decode it: {e}", v.name, kind.name()));
    let encoded = rmp_serde::to_vec_named(&request).expect("encodes");
    assert_eq!(hex::encode(encoded), v.hex, "{}: re-encoded", v.name);
    let from_json: T = serde_json::from_value(v.json().to_value())
        .unwrap_or_else(|e| panic!("{}: json is not a {} request: {e}", v.name, kind.name()));
    assert_eq!(from_json, request, "{}: json and hex differ", v.name);
}

fn check_vector(v: &Vector) {
    let bytes = v.bytes();
    assert_eq!(
        v.hex,
        hex::encode(&bytes),
        "{}: hex must be lowercase",
        v.name
    );
    match v.direction.as_str() {
        "client" => {
            assert!(
                v.error.is_none(),
                "{}: client vectors have no error",
                v.name
            );
            let ty = v.json().get("type").and_then(J::as_str).unwrap_or_default();
            let owner = preau::kinds::ALL
                .iter()
                .find(|k| k.requests().contains(&ty));
            if let Some(kind) = owner.filter(|_| !protocol::REQUEST_TYPES.contains(&ty)) {
                check_kind_request(v, &bytes, kind.name());
                return;
            }
            let request = protocol::decode_request(&bytes)
                .unwrap_or_else(|e| panic!("{}: decode_request failed: {e}", v.name));
            let encoded = protocol::encode_request(&request).expect("encodes");
            assert_eq!(
                hex::encode(&encoded),
                v.hex,
                "{}: encode_request(decode_request(hex)) differs from hex",
                v.name
            );
            assert_eq!(generic(&bytes).as_ref(), Some(v.json()), "{}: json", v.name);
            let from_json: Request = serde_json::from_value(v.json().to_value())
                .unwrap_or_else(|e| panic!("{}: json is not a request: {e}", v.name));
            assert_eq!(from_json, request, "{}: json and hex differ", v.name);
        }
        "server" => {
            assert!(
                v.error.is_none(),
                "{}: server vectors have no error",
                v.name
            );
            let encoded = encode_server(v);
            assert_eq!(
                hex::encode(&encoded),
                v.hex,
                "{}: the server's encoder gives other bytes than hex",
                v.name
            );
            let frame = protocol::decode_server_frame(&bytes)
                .unwrap_or_else(|e| panic!("{}: decode_server_frame failed: {e}", v.name));
            assert_eq!(generic(&bytes).as_ref(), Some(v.json()), "{}: json", v.name);
            let ty = v.json().get("type").and_then(J::as_str);
            let frame_ty = match &frame {
                ServerFrame::Ok { .. } => "ok",
                ServerFrame::Error(_) => "error",
                ServerFrame::Event(_) => "event",
                ServerFrame::Presence(_) => "presence",
                ServerFrame::Typing(_) => "typing",
                ServerFrame::Yjs(_) => "yjs",
            };
            assert_eq!(ty, Some(frame_ty), "{}: decoded as another type", v.name);
            if frame_ty == "ok" {
                check_ok_data(v, &bytes);
            }
        }
        "client-invalid" => {
            let expected = v
                .error
                .as_deref()
                .unwrap_or_else(|| panic!("{}: invalid vectors need error", v.name));
            let err = protocol::decode_request(&bytes)
                .err()
                .unwrap_or_else(|| panic!("{}: decode_request accepted it", v.name));
            assert_eq!(err.code().as_str(), expected, "{}: {err}", v.name);
            assert_eq!(generic(&bytes), v.json, "{}: json", v.name);
        }
        other => panic!("{}: unknown direction {other:?}", v.name),
    }
}

#[test]
fn vectors_match_the_encoders() {
    let generated = generate();
    if std::env::var("PREAU_WRITE_VECTORS").as_deref() == Ok("1") {
        std::fs::write(VECTORS_PATH, render(&generated)).expect("write vectors.json");
    }
    let vectors = load_vectors();
    let mut names = BTreeSet::new();
    for v in &vectors {
        assert!(names.insert(v.name.as_str()), "duplicate name {}", v.name);
        check_vector(v);
    }
    // Every check passed on the file; now make sure none was dropped or changed.
    assert_eq!(
        vectors, generated,
        "protocol/vectors.json differs from the encoders' output: if the wire \
         format changed on purpose, run PREAU_WRITE_VECTORS=1 cargo test --test vectors \
         and review the diff"
    );
}

/// Every moderation action kind; `action_kind` fails to build when
/// `ModAction` gains a variant, which then needs a vector and a line here.
const ACTION_KINDS: [&str; 13] = [
    "redact",
    "mute",
    "unmute",
    "kick",
    "ban",
    "unban",
    "slow_mode",
    "read_only",
    "pin",
    "unpin",
    "resolve",
    "configure",
    "validate",
];

fn action_kind(action: &ModAction) -> &'static str {
    let kind = match action {
        ModAction::Redact { .. } => "redact",
        ModAction::Mute { .. } => "mute",
        ModAction::Unmute { .. } => "unmute",
        ModAction::Kick { .. } => "kick",
        ModAction::Ban { .. } => "ban",
        ModAction::Unban { .. } => "unban",
        ModAction::SlowMode { .. } => "slow_mode",
        ModAction::ReadOnly { .. } => "read_only",
        ModAction::Pin { .. } => "pin",
        ModAction::Unpin { .. } => "unpin",
        ModAction::Resolve { .. } => "resolve",
        ModAction::Configure { .. } => "configure",
        ModAction::Validate { .. } => "validate",
    };
    assert_eq!(kind, action.name());
    kind
}

/// Every event body kind (same rule as [`ACTION_KINDS`]).
const BODY_KINDS: [&str; 8] = [
    "message",
    "redacted",
    "moderation",
    "audit",
    "report",
    "edit",
    "answer",
    "yjs_update",
];

fn body_kind(body: &Body) -> String {
    match body {
        Body::Kind(body) => body.kind.clone(),
        other => core_body_kind(other).to_owned(),
    }
}

fn core_body_kind(body: &Body) -> &'static str {
    match body {
        Body::Message { .. } => "message",
        Body::Redacted { .. } => "redacted",
        Body::Moderation { .. } => "moderation",
        Body::Audit { .. } => "audit",
        Body::Report { .. } => "report",
        Body::Edit { .. } => "edit",
        Body::Answer { .. } => "answer",
        Body::YjsUpdate { .. } => "yjs_update",
        Body::Kind(_) => "",
    }
}

#[test]
fn vectors_cover_every_request_and_frame() {
    let vectors = load_vectors();
    let types = |direction: &str| -> BTreeSet<String> {
        vectors
            .iter()
            .filter(|v| v.direction == direction)
            .filter_map(|v| v.json.as_ref()?.get("type")?.as_str().map(str::to_owned))
            .collect()
    };
    // The protocol module's request types and the kinds' own.
    let requests: BTreeSet<String> = protocol::REQUEST_TYPES
        .iter()
        .chain(preau::kinds::ALL.iter().flat_map(|k| k.requests()))
        .map(|s| s.to_string())
        .collect();
    assert_eq!(types("client"), requests);
    let frames: BTreeSet<String> = ["ok", "error", "event", "presence", "typing", "yjs"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(types("server"), frames);
    let has = |name: &str| vectors.iter().any(|v| v.name == name);
    for name in [
        "ok.hello",
        "ok.join",
        "ok.join.recovered",
        "ok.post",
        "ok.history",
        "ok.ping",
        "error.rate_limited",
        "error.not_joined",
        "presence.join",
        "presence.leave",
        "join.since",
        "history.before_limit",
        "history.after_limit",
        "ok.moderate",
        "ok.history.redacted",
        "event.redacted",
        "event.audit.redact",
    ] {
        assert!(has(name), "missing vector {name}");
    }
    // Every moderation action kind, as a request.
    let actions: BTreeSet<&str> = vectors
        .iter()
        .filter(|v| v.direction == "client")
        .filter_map(|v| match protocol::decode_request(&v.bytes()) {
            Ok(Request::Moderate { action, .. }) => Some(action_kind(&action)),
            _ => None,
        })
        .collect();
    assert_eq!(actions, BTreeSet::from(ACTION_KINDS));
    // Every event body kind, live or spliced into a join or history reply.
    let mut bodies = BTreeSet::new();
    for v in vectors.iter().filter(|v| v.direction == "server") {
        let json = v.json();
        let mut events: Vec<&J> = Vec::new();
        if json.get("type").and_then(J::as_str) == Some("event") {
            events.push(json);
        }
        if let Some(J::Arr(spliced)) = json.get("data").and_then(|d| d.get("events")) {
            events.extend(spliced);
        }
        for event in events {
            let event: Event = serde_json::from_value(event.to_value())
                .unwrap_or_else(|e| panic!("{}: not an event: {e}", v.name));
            bodies.insert(body_kind(&event.body));
        }
    }
    let known: BTreeSet<String> = BODY_KINDS
        .iter()
        .copied()
        .chain(
            preau::kinds::ALL
                .iter()
                .flat_map(|k| k.events().iter().copied()),
        )
        .map(str::to_owned)
        .collect();
    assert_eq!(bodies, known);
    // The moderation refusals have sample replies; `muted` and `slow_mode`
    // say when to retry.
    let errors: BTreeSet<&str> = vectors
        .iter()
        .filter(|v| v.direction == "server")
        .filter_map(|v| {
            let json = v.json();
            (json.get("type")?.as_str()? == "error").then_some(json.get("code")?.as_str()?)
        })
        .collect();
    for code in [
        ErrorCode::UnknownTarget,
        ErrorCode::Muted,
        ErrorCode::Banned,
        ErrorCode::ReadOnly,
        ErrorCode::SlowMode,
        ErrorCode::Forbidden,
    ] {
        assert!(errors.contains(code.as_str()), "no error.{code} vector");
    }
    for name in ["error.muted", "error.slow_mode", "error.rate_limited"] {
        let v = vectors.iter().find(|v| v.name == name).unwrap();
        assert!(
            matches!(v.json().get("retry_after_ms"), Some(J::Uint(ms)) if *ms > 0),
            "{name} carries retry_after_ms"
        );
    }
    // A tombstone keeps the redacted message's room, epoch, offset, ts and
    // author, and its text is gone; the history page has it in place.
    let message = protocol::event(&sample_event(42));
    let message = generic(&message).unwrap();
    let redacted = vectors.iter().find(|v| v.name == "event.redacted").unwrap();
    for key in ["type", "room", "epoch", "offset", "ts", "from"] {
        assert_eq!(
            redacted.json().get(key),
            message.get(key),
            "tombstone {key}"
        );
    }
    assert!(!redacted.hex.contains(&hex::encode("Bonjour")), "text gone");
    let page = vectors
        .iter()
        .find(|v| v.name == "ok.history.redacted")
        .unwrap();
    let Some(J::Arr(events)) = page.json().get("data").and_then(|d| d.get("events")) else {
        panic!("history page has events")
    };
    assert_eq!(events.get(1), redacted.json.as_ref());
    // Audit entries live in the class's audit room and name the room acted in.
    for v in vectors.iter().filter(|v| v.name.starts_with("event.audit")) {
        assert_eq!(v.json().get("room").and_then(J::as_str), Some(AUDIT_ROOM));
        let room = v
            .json()
            .get("body")
            .and_then(|b| b.get("room"))
            .and_then(J::as_str);
        assert_eq!(room, Some(ROOM), "{}", v.name);
    }
    let invalid: BTreeSet<&str> = vectors
        .iter()
        .filter(|v| v.direction == "client-invalid")
        .filter_map(|v| v.error.as_deref())
        .collect();
    assert_eq!(
        invalid,
        BTreeSet::from(["malformed_frame", "unknown_type", "invalid_field"])
    );
    // The recovered join splices complete event frames, in offset order.
    let recovered = vectors
        .iter()
        .find(|v| v.name == "ok.join.recovered")
        .unwrap();
    let data = recovered.json().get("data").unwrap();
    let Some(J::Arr(events)) = data.get("events") else {
        panic!("recovered join has events")
    };
    let offsets: Vec<&J> = events.iter().filter_map(|e| e.get("offset")).collect();
    assert_eq!(offsets, vec![&J::Uint(42), &J::Uint(43)]);
    assert_eq!(data.get("head"), Some(&J::Uint(43)));
    assert!(events
        .iter()
        .all(|e| e.get("type").and_then(J::as_str) == Some("event")));
}

#[test]
fn hello_vector_token_verifies_with_the_documented_key() {
    let vectors = load_vectors();
    let hello = vectors.iter().find(|v| v.name == "hello").unwrap();
    let token = hello.json().get("token").and_then(J::as_str).unwrap();
    let ring = Keyring::parse(VECTOR_SECRET).unwrap();
    let claims = vector_claims();
    assert_eq!(ring.verify(token, claims.iat).unwrap(), claims);
    assert!(matches!(
        ring.verify(token, claims.exp),
        Err(preau::auth::AuthError::Expired)
    ));
    let readme = std::fs::read_to_string(README_PATH).unwrap();
    assert!(
        readme.contains(VECTOR_SECRET),
        "the README names the key of the hello vectors"
    );
}

/// What the README says about tokens: the key is picked by `kid` (the
/// first key without one), an `aud` claim is refused, other claims are
/// ignored, the signature is checked before expiry.
#[test]
fn token_rules_are_as_documented() {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let ring =
        Keyring::parse("new:fedcba9876543210fedcba98,k1:0123456789abcdef0123456789abcdef").unwrap();
    let claims = vector_claims();
    let now = claims.iat;
    let sign = |kid: Option<&str>, secret: &str, body: serde_json::Value| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        encode(&header, &body, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    };
    let body = serde_json::to_value(&claims).unwrap();
    let k1 = "0123456789abcdef0123456789abcdef";
    assert_eq!(
        ring.verify(&sign(Some("k1"), k1, body.clone()), now)
            .unwrap(),
        claims
    );
    // No kid: the first (signing) key verifies.
    assert!(ring.verify(&sign(None, k1, body.clone()), now).is_err());
    assert!(ring
        .verify(&sign(None, "fedcba9876543210fedcba98", body.clone()), now)
        .is_ok());
    assert!(ring
        .verify(&sign(Some("zz"), k1, body.clone()), now)
        .is_err());
    let mut extra = body.clone();
    extra["school"] = "lycee-hugo".into();
    assert_eq!(
        ring.verify(&sign(Some("k1"), k1, extra), now).unwrap(),
        claims
    );
    let mut aud = body.clone();
    aud["aud"] = "preau".into();
    assert!(matches!(
        ring.verify(&sign(Some("k1"), k1, aud), now),
        Err(preau::auth::AuthError::Invalid(_))
    ));
    // A forged token is unauthorized even when expired.
    let forged = sign(Some("k1"), "not-the-right-secret-at-all", body);
    assert!(matches!(
        ring.verify(&forged, claims.exp + 1),
        Err(preau::auth::AuthError::Invalid(_))
    ));
}

/// First cells of the table rows in the README section whose heading starts
/// with `heading`, up to the next heading of the same or a higher level.
fn table_first_cells(readme: &str, heading: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut level = None;
    for line in readme.lines() {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if hashes > 0 && line[hashes..].starts_with(' ') {
            match level {
                Some(l) if hashes <= l => break,
                Some(_) => {}
                None if line[hashes..].trim().starts_with(heading) => level = Some(hashes),
                None => {}
            }
            continue;
        }
        if level.is_none() {
            continue;
        }
        let Some(row) = line.trim().strip_prefix('|') else {
            continue;
        };
        let first = row.split('|').next().unwrap_or_default().trim();
        if first.is_empty() || first.chars().all(|c| c == '-' || c == ':') {
            continue;
        }
        cells.push(first.to_owned());
    }
    cells
}

#[test]
fn readme_tables_list_exactly_the_codes() {
    let readme = std::fs::read_to_string(README_PATH).expect("protocol/README.md");
    let errors: Vec<String> = table_first_cells(&readme, "Error codes")
        .into_iter()
        .filter(|c| c != "Code")
        .collect();
    let documented: BTreeSet<&str> = errors
        .iter()
        .map(|c| {
            c.strip_prefix('`')
                .and_then(|c| c.strip_suffix('`'))
                .unwrap_or_else(|| panic!("error code cell {c:?} is not `code`"))
        })
        .collect();
    assert_eq!(
        documented.len(),
        errors.len(),
        "an error code is listed twice"
    );
    let expected: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(
        documented, expected,
        "README error code table vs ErrorCode::ALL"
    );

    let closes: Vec<String> = table_first_cells(&readme, "Close codes")
        .into_iter()
        .filter(|c| c != "Code")
        .collect();
    let documented: BTreeSet<u16> = closes
        .iter()
        .map(|c| {
            c.parse()
                .unwrap_or_else(|_| panic!("close code cell {c:?} is not a number"))
        })
        .collect();
    assert_eq!(
        documented.len(),
        closes.len(),
        "a close code is listed twice"
    );
    let expected: BTreeSet<u16> = CloseCode::ALL.iter().map(|c| c.code()).collect();
    assert_eq!(
        documented, expected,
        "README close code table vs CloseCode::ALL"
    );
}

/// What the README says about decoding: key order is free, unknown keys are
/// ignored, an absent optional field may also be nil.
#[test]
fn decoding_is_as_lenient_as_documented() {
    use serde_json::json;
    let expected = Request::Join {
        id: Some(3),
        room: ROOM.into(),
        since: Some(Position {
            epoch: EPOCH.into(),
            offset: 41,
        }),
    };
    let reordered = named(
        json!({"since": {"offset": 41, "epoch": EPOCH}, "room": ROOM,
                                  "id": 3, "type": "join", "client": "web-1.2"}),
    );
    assert_eq!(protocol::decode_request(&reordered).unwrap(), expected);
    let nils = named(json!({"type": "history", "id": null, "room": ROOM,
                             "before": null, "after": null, "limit": null}));
    assert_eq!(
        protocol::decode_request(&nils).unwrap(),
        Request::History {
            id: None,
            room: ROOM.into(),
            before: None,
            after: None,
            limit: None,
            thread: None
        }
    );
    // Integers in any msgpack width are accepted: id 2 as uint32 (0xce).
    let mut wide = vec![0x82, 0xa4];
    wide.extend_from_slice(b"type");
    wide.extend_from_slice(&[0xa4]);
    wide.extend_from_slice(b"ping");
    wide.extend_from_slice(&[0xa2]);
    wide.extend_from_slice(b"id");
    wide.extend_from_slice(&[0xce, 0, 0, 0, 2]);
    assert_eq!(
        protocol::decode_request(&wide).unwrap(),
        Request::Ping { id: Some(2) }
    );
}

/// A frame is one map: a positional array must not pass for a request.
#[test]
fn array_frames_are_malformed() {
    use serde_json::json;
    for frame in [
        named(json!(["ping", 1])),
        named(json!(["post", 5, ROOM, "hi"])),
    ] {
        let result = protocol::decode_request(&frame);
        assert_eq!(
            result.as_ref().map_err(DecodeError::code),
            Err(ErrorCode::MalformedFrame),
            "{frame:02x?} decoded as {result:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Against a running server
// ---------------------------------------------------------------------------

async fn raw_frame(ws: &mut RawWs) -> Bytes {
    use futures_util::StreamExt;
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("frame within WAIT")
            .expect("socket open")
            .expect("socket ok");
        match message {
            Message::Binary(bytes) => return bytes,
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => continue,
        }
    }
}

/// Sends `frame`, returns the next binary frame's generic json.
async fn exchange(ws: &mut RawWs, frame: Vec<u8>) -> (Bytes, J) {
    ws.send(Message::Binary(frame.into())).await.expect("send");
    let reply = raw_frame(ws).await;
    let json = generic(&reply).expect("server frame is msgpack");
    (reply, json)
}

fn request_bytes(request: &Request) -> Vec<u8> {
    protocol::encode_request(request).expect("encodes").to_vec()
}

#[tokio::test]
async fn invalid_vectors_get_their_error_from_the_server() {
    let server = TestServer::start().await;
    let vectors = load_vectors();
    let invalid: Vec<&Vector> = vectors
        .iter()
        .filter(|v| v.direction == "client-invalid")
        .collect();
    assert!(!invalid.is_empty());
    let mut ws = raw_ws(server.addr()).await;
    raw_hello(&mut ws, &student("ana", "3B")).await;
    for v in &invalid {
        // Empty binary frames are valid WebSocket messages and must be refused too.
        let (_, reply) = exchange(&mut ws, v.bytes()).await;
        assert_eq!(
            reply.get("type").and_then(J::as_str),
            Some("error"),
            "{}: {reply:?}",
            v.name
        );
        assert_eq!(
            reply.get("code").and_then(J::as_str),
            v.error.as_deref(),
            "{}: {reply:?}",
            v.name
        );
        // The id is echoed when the frame is a map with a valid u32 id.
        let sent_id = match v.json.as_ref().and_then(|j| j.get("id")) {
            Some(J::Uint(n))
                if *n <= u64::from(u32::MAX) && v.error.as_deref() != Some("malformed_frame") =>
            {
                J::Uint(*n)
            }
            _ => J::Null,
        };
        assert_eq!(reply.get("id"), Some(&sent_id), "{}: {reply:?}", v.name);
    }
    // Still authenticated and usable after every bad frame.
    let (reply, _) = exchange(&mut ws, request_bytes(&Request::Ping { id: Some(300) })).await;
    let ok_ping = vectors.iter().find(|v| v.name == "ok.ping").unwrap();
    assert_eq!(
        hex::encode(&reply),
        ok_ping.hex,
        "live ping reply = ok.ping vector"
    );

    // Before hello, the same frame is refused and the connection closed with 4000.
    let unknown = invalid
        .iter()
        .find(|v| v.error.as_deref() == Some("unknown_type"))
        .unwrap();
    let mut fresh = raw_ws(server.addr()).await;
    let (_, reply) = exchange(&mut fresh, unknown.bytes()).await;
    assert_eq!(reply.get("code").and_then(J::as_str), Some("unknown_type"));
    assert_eq!(raw_close_code(&mut fresh).await, Some(4000));
}

/// The frames a real server sends have the keys, in the same order, as the
/// vectors (values differ: tokens, epochs, clocks).
#[tokio::test]
async fn live_frames_have_the_shape_of_the_vectors() {
    let server = TestServer::start_with(|c| {
        c.rate_per_sec = 0.001;
        c.rate_burst = 3;
    })
    .await;
    // Staff opens the room: pupils join only rooms that exist.
    server.open(&[ROOM]).await;
    let vectors = load_vectors();
    let shape_of = |name: &str| {
        vectors
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no vector {name}"))
            .json()
            .shape()
    };
    let room = ROOM.to_owned();

    let mut ana = raw_ws(server.addr()).await;
    let hello = Request::Hello {
        id: Some(1),
        token: student("ana", "3B"),
    };
    let (_, reply) = exchange(&mut ana, request_bytes(&hello)).await;
    assert_eq!(reply.shape(), shape_of("ok.hello"), "{reply:?}");

    let join = Request::Join {
        id: Some(2),
        room: room.clone(),
        since: None,
    };
    let (_, reply) = exchange(&mut ana, request_bytes(&join)).await;
    assert_eq!(reply.shape(), shape_of("ok.join.empty_room"), "{reply:?}");
    let epoch = reply
        .get("data")
        .and_then(|d| d.get("epoch"))
        .and_then(J::as_str)
        .unwrap()
        .to_owned();

    let post = |id: u32, text: &str| Request::Post {
        id: Some(id),
        room: room.clone(),
        text: text.into(),
        title: None,
        thread: None,
        reply_to: None,
        quote: None,
        key: None,
    };
    let (_, ack) = exchange(&mut ana, request_bytes(&post(5, "un"))).await;
    assert_eq!(ack.shape(), shape_of("ok.post"), "{ack:?}");
    assert_eq!(
        ack.get("data").and_then(|d| d.get("offset")),
        Some(&J::Uint(1))
    );
    let event = generic(&raw_frame(&mut ana).await).unwrap();
    assert_eq!(event.shape(), shape_of("event"), "{event:?}");
    assert_eq!(event.get("offset"), Some(&J::Uint(1)));
    exchange(&mut ana, request_bytes(&post(6, "deux"))).await;
    raw_frame(&mut ana).await; // event 2

    // A teacher joins with recovery from offset 0: two spliced events.
    let mut prof = raw_ws(server.addr()).await;
    raw_hello(&mut prof, &teacher("t-durand", "3B")).await;
    let recover = Request::Join {
        id: Some(3),
        room: room.clone(),
        since: Some(Position { epoch, offset: 0 }),
    };
    let (_, reply) = exchange(&mut prof, request_bytes(&recover)).await;
    assert_eq!(reply.shape(), shape_of("ok.join.recovered"), "{reply:?}");
    let presence = generic(&raw_frame(&mut ana).await).unwrap();
    assert_eq!(presence.shape(), shape_of("presence.join"), "{presence:?}");

    let (_, reply) = exchange(
        &mut prof,
        request_bytes(&Request::Join {
            id: Some(3),
            room: "3B/chat/autre".into(),
            since: Some(Position {
                epoch: "0000000000000000".into(),
                offset: 7,
            }),
        }),
    )
    .await;
    assert_eq!(
        reply.shape(),
        shape_of("ok.join.epoch_mismatch"),
        "{reply:?}"
    );

    let (_, reply) = exchange(
        &mut prof,
        request_bytes(&Request::Typing {
            id: None,
            room: room.clone(),
        }),
    )
    .await;
    assert_eq!(reply.shape(), shape_of("ok.typing.no_id"), "{reply:?}");
    assert_eq!(reply.get("id"), Some(&J::Null));
    let typing = generic(&raw_frame(&mut ana).await).unwrap();
    assert_eq!(typing.shape(), shape_of("typing.indicator"), "{typing:?}");

    let history = Request::History {
        id: Some(8),
        room: room.clone(),
        before: Some(3),
        after: None,
        limit: Some(1),
        thread: None,
    };
    let (_, reply) = exchange(&mut prof, request_bytes(&history)).await;
    assert_eq!(reply.shape(), shape_of("ok.history"), "{reply:?}");
    assert_eq!(
        reply.get("data").and_then(|d| d.get("more")),
        Some(&J::Bool(true))
    );

    let (_, reply) = exchange(
        &mut prof,
        request_bytes(&Request::Post {
            id: Some(5),
            room: "3B/chat/nowhere".into(),
            text: "x".into(),
            title: None,
            thread: None,
            reply_to: None,
            quote: None,
            key: None,
        }),
    )
    .await;
    assert_eq!(reply.shape(), shape_of("error.not_joined"), "{reply:?}");
    assert_eq!(reply.get("code").and_then(J::as_str), Some("not_joined"));

    // The burst is 3: the third post goes through, the fourth is refused.
    exchange(&mut ana, request_bytes(&post(7, "trois"))).await;
    raw_frame(&mut ana).await; // event 3
    raw_frame(&mut prof).await; // event 3, a member too
    let (_, reply) = exchange(&mut ana, request_bytes(&post(5, "quatre"))).await;
    assert_eq!(reply.shape(), shape_of("error.rate_limited"), "{reply:?}");
    assert_eq!(reply.get("code").and_then(J::as_str), Some("rate_limited"));

    let (_, reply) = exchange(
        &mut prof,
        request_bytes(&Request::Leave {
            id: Some(4),
            room: room.clone(),
        }),
    )
    .await;
    assert_eq!(reply.shape(), shape_of("ok.leave"), "{reply:?}");
    let presence = generic(&raw_frame(&mut ana).await).unwrap();
    assert_eq!(presence.shape(), shape_of("presence.leave"), "{presence:?}");
    assert_eq!(
        presence.get("action").and_then(J::as_str),
        Some("leave"),
        "{presence:?}"
    );
}

/// The next frame that is not `presence` (presence interleaves with
/// everything and is checked where it matters).
async fn next_non_presence(ws: &mut RawWs) -> (Bytes, J) {
    loop {
        let frame = raw_frame(ws).await;
        let json = generic(&frame).expect("server frame is msgpack");
        if json.get("type").and_then(J::as_str) != Some("presence") {
            return (frame, json);
        }
    }
}

async fn send(ws: &mut RawWs, request: &Request) {
    ws.send(Message::Binary(request_bytes(request).into()))
        .await
        .expect("send");
}

/// Sends `request` and returns its reply, skipping presence frames.
async fn ask(ws: &mut RawWs, request: &Request) -> J {
    send(ws, request).await;
    let (_, reply) = next_non_presence(ws).await;
    assert_eq!(
        reply.get("id"),
        request.id().map(|id| J::Uint(u64::from(id))).as_ref(),
        "reply to {request:?}: {reply:?}"
    );
    reply
}

fn body_of<'a>(event: &'a J, key: &str) -> Option<&'a J> {
    event.get("body").and_then(|b| b.get(key))
}

fn code_of(reply: &J) -> Option<&str> {
    assert_eq!(
        reply.get("type").and_then(J::as_str),
        Some("error"),
        "{reply:?}"
    );
    reply.get("code").and_then(J::as_str)
}

/// Has a moderator (joined to the room and to its audit log, on one node)
/// send `request`: the audit entry arrives first, then the ack, then the
/// room's moderation event, with matching contents. Returns them.
async fn moderate_live(prof: &mut RawWs, request: &Request) -> (J, J, (Bytes, J)) {
    send(prof, request).await;
    let (_, audit) = next_non_presence(prof).await;
    let (_, ack) = next_non_presence(prof).await;
    let (bytes, event) = next_non_presence(prof).await;
    assert_eq!(
        audit.get("type").and_then(J::as_str),
        Some("event"),
        "{audit:?}"
    );
    assert_eq!(
        audit.get("room").and_then(J::as_str),
        Some(AUDIT_ROOM),
        "{audit:?}"
    );
    assert_eq!(ack.get("type").and_then(J::as_str), Some("ok"), "{ack:?}");
    assert_eq!(
        event.get("room").and_then(J::as_str),
        Some(ROOM),
        "{event:?}"
    );
    let Request::Moderate { action, .. } = request else {
        panic!("not a moderate request")
    };
    let action = generic(&protocol::encode(action).unwrap()).unwrap();
    assert_eq!(
        body_of(&event, "kind").and_then(J::as_str),
        Some("moderation")
    );
    assert_eq!(body_of(&event, "action"), Some(&action), "{event:?}");
    assert_eq!(body_of(&audit, "kind").and_then(J::as_str), Some("audit"));
    assert_eq!(body_of(&audit, "action"), Some(&action), "{audit:?}");
    assert_eq!(body_of(&audit, "room").and_then(J::as_str), Some(ROOM));
    assert_eq!(body_of(&audit, "until"), body_of(&event, "until"));
    assert_eq!(audit.get("from"), event.get("from"));
    let data = ack.get("data").unwrap();
    assert_eq!(
        data.get("offset"),
        event.get("offset"),
        "ack is for the event"
    );
    assert_eq!(data.get("ts"), event.get("ts"));
    (audit, ack, (bytes, event))
}

/// Moderation over a real server: the frames have the vectors' shapes, and
/// each effect is the one the README describes (enforcement errors,
/// moderator exemption, tombstones in history, kick and ban).
#[tokio::test]
async fn live_moderation_frames_have_the_shape_of_the_vectors() {
    let server = TestServer::start().await;
    let vectors = load_vectors();
    let shape_of = |name: &str| {
        vectors
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no vector {name}"))
            .json()
            .shape()
    };
    let room = || ROOM.to_owned();
    let join = |id: u32, room: &str| Request::Join {
        id: Some(id),
        room: room.to_owned(),
        since: None,
    };
    let post = |id: u32, text: &str| Request::Post {
        id: Some(id),
        room: room(),
        text: text.into(),
        title: None,
        thread: None,
        reply_to: None,
        quote: None,
        key: None,
    };
    let typing = Request::Typing {
        id: Some(6),
        room: room(),
    };
    let is_ok = |reply: &J| reply.get("type").and_then(J::as_str) == Some("ok");

    let mut prof = raw_ws(server.addr()).await;
    raw_hello(&mut prof, &teacher("t-durand", "3B")).await;
    let mut ana = raw_ws(server.addr()).await;
    raw_hello(&mut ana, &student("ana", "3B")).await;
    let reply = ask(&mut prof, &join(2, AUDIT_ROOM)).await;
    assert!(
        is_ok(&reply),
        "a teacher of the class reads the audit log: {reply:?}"
    );
    assert!(is_ok(&ask(&mut prof, &join(2, ROOM)).await));
    assert!(is_ok(&ask(&mut ana, &join(2, ROOM)).await));
    // Nobody posts to the audit log, not even its readers.
    let reply = ask(
        &mut prof,
        &Request::Post {
            id: Some(5),
            room: AUDIT_ROOM.into(),
            text: "x".into(),
            title: None,
            thread: None,
            reply_to: None,
            quote: None,
            key: None,
        },
    )
    .await;
    assert_eq!(code_of(&reply), Some("forbidden"));

    let reply = ask(&mut ana, &post(5, "Bonjour à tous")).await;
    assert!(is_ok(&reply), "{reply:?}");
    let (_, message) = next_non_presence(&mut ana).await;
    assert_eq!(next_non_presence(&mut prof).await.1, message);
    assert_eq!(message.get("offset"), Some(&J::Uint(1)));

    // Mute: refused posts and typing with retry_after_ms, until unmute.
    let mute = moderate(
        13,
        ModAction::Mute {
            user: "ana".into(),
            seconds: MUTE_SECS,
            reason: Some("Hors sujet".into()),
            announce: false,
        },
    );
    let (audit, ack, (bytes, event)) = moderate_live(&mut prof, &mute).await;
    assert_eq!(audit.shape(), shape_of("event.audit.mute"), "{audit:?}");
    assert_eq!(ack.shape(), shape_of("ok.moderate"), "{ack:?}");
    assert_eq!(
        event.shape(),
        shape_of("event.moderation.mute"),
        "{event:?}"
    );
    let (Some(J::Uint(ts)), Some(J::Uint(until))) = (event.get("ts"), body_of(&event, "until"))
    else {
        panic!("mute event has ts and until: {event:?}")
    };
    assert!(*until > *ts && *until <= ts + MUTE_SECS * 1000, "{event:?}");
    assert_eq!(
        next_non_presence(&mut ana).await.0,
        bytes,
        "ana sees the same event"
    );
    let reply = ask(&mut ana, &post(5, "encore")).await;
    assert_eq!(reply.shape(), shape_of("error.muted"), "{reply:?}");
    assert_eq!(code_of(&reply), Some("muted"));
    assert!(
        matches!(reply.get("retry_after_ms"), Some(J::Uint(ms)) if *ms > 0 && *ms <= MUTE_SECS * 1000),
        "{reply:?}"
    );
    assert_eq!(code_of(&ask(&mut ana, &typing).await), Some("muted"));
    let unmute = moderate(14, ModAction::Unmute { user: "ana".into() });
    let (_, _, (bytes, _)) = moderate_live(&mut prof, &unmute).await;
    assert_eq!(next_non_presence(&mut ana).await.0, bytes);
    let reply = ask(&mut ana, &post(5, "Mon message")).await;
    assert!(is_ok(&reply), "unmuted: {reply:?}");
    let own_offset = reply.get("data").and_then(|d| d.get("offset")).cloned();
    next_non_presence(&mut ana).await;
    next_non_presence(&mut prof).await;

    // Redaction by a moderator: the event, then a tombstone in history.
    let redact = moderate(
        11,
        ModAction::Redact {
            offset: 1,
            reason: Some(REDACT_REASON.into()),
        },
    );
    let (audit, _, (bytes, event)) = moderate_live(&mut prof, &redact).await;
    assert_eq!(audit.shape(), shape_of("event.audit.redact"), "{audit:?}");
    assert_eq!(
        event.shape(),
        shape_of("event.moderation.redact"),
        "{event:?}"
    );
    assert_eq!(body_of(&event, "target_from"), message.get("from"));
    assert_eq!(body_of(&event, "target_ts"), message.get("ts"));
    assert_eq!(next_non_presence(&mut ana).await.0, bytes);
    // A pupil redacts their own message (no reason): acked like a post.
    let Some(J::Uint(own_offset)) = own_offset else {
        panic!("post ack has an offset")
    };
    let own = moderate(
        12,
        ModAction::Redact {
            offset: own_offset,
            reason: None,
        },
    );
    let reply = ask(&mut ana, &own).await;
    assert_eq!(reply.shape(), shape_of("ok.moderate"), "{reply:?}");
    let (_, event) = next_non_presence(&mut ana).await;
    assert_eq!(
        event.shape(),
        shape_of("event.moderation.redact.own"),
        "{event:?}"
    );
    let (_, audit) = next_non_presence(&mut prof).await;
    assert_eq!(
        audit.get("room").and_then(J::as_str),
        Some(AUDIT_ROOM),
        "{audit:?}"
    );
    assert_eq!(
        audit.get("from"),
        event.get("from"),
        "the pupil is in the audit log"
    );
    assert_eq!(next_non_presence(&mut prof).await.1, event);
    let history = Request::History {
        id: Some(8),
        room: room(),
        before: None,
        after: Some(0),
        limit: None,
        thread: None,
    };
    let reply = ask(&mut ana, &history).await;
    let Some(J::Arr(events)) = reply.get("data").and_then(|d| d.get("events")) else {
        panic!("history has events: {reply:?}")
    };
    let at = |offset: u64| {
        events
            .iter()
            .find(|e| e.get("offset") == Some(&J::Uint(offset)))
            .unwrap_or_else(|| panic!("no event {offset} in {events:?}"))
    };
    let tomb = at(1);
    assert_eq!(tomb.shape(), shape_of("event.redacted"), "{tomb:?}");
    for key in ["room", "epoch", "offset", "ts", "from"] {
        assert_eq!(tomb.get(key), message.get(key), "tombstone keeps {key}");
    }
    assert_eq!(
        body_of(tomb, "by").and_then(|b| b.get("id")),
        Some(&J::Str("t-durand".into()))
    );
    assert_eq!(body_of(tomb, "reason"), Some(&J::Str(REDACT_REASON.into())));
    let tomb = at(own_offset);
    assert_eq!(tomb.shape(), shape_of("event.redacted.own"), "{tomb:?}");
    assert_eq!(
        body_of(tomb, "by").and_then(|b| b.get("id")),
        Some(&J::Str("ana".into()))
    );
    // The audit log's history has the entries, in order.
    let audit_history = Request::History {
        id: Some(9),
        room: AUDIT_ROOM.into(),
        before: None,
        after: Some(0),
        limit: None,
        thread: None,
    };
    let reply = ask(&mut prof, &audit_history).await;
    let Some(J::Arr(entries)) = reply.get("data").and_then(|d| d.get("events")) else {
        panic!("audit history has events: {reply:?}")
    };
    let kinds: Vec<Option<&J>> = entries
        .iter()
        .map(|e| body_of(e, "action").and_then(|a| a.get("kind")))
        .collect();
    let s = |k: &str| Some(J::Str(k.into()));
    assert_eq!(
        kinds,
        [s("mute"), s("unmute"), s("redact"), s("redact")]
            .iter()
            .map(Option::as_ref)
            .collect::<Vec<_>>()
    );

    // Slow mode: the next post within the interval is refused; moderators
    // are exempt. An hour: no machine is that slow.
    let slow = moderate(18, ModAction::SlowMode { seconds: 3600 });
    let (_, _, (bytes, event)) = moderate_live(&mut prof, &slow).await;
    assert_eq!(
        event.shape(),
        shape_of("event.moderation.slow_mode"),
        "{event:?}"
    );
    assert_eq!(next_non_presence(&mut ana).await.0, bytes);
    let reply = ask(&mut ana, &post(5, "vite")).await;
    assert_eq!(reply.shape(), shape_of("error.slow_mode"), "{reply:?}");
    assert_eq!(code_of(&reply), Some("slow_mode"));
    assert!(
        matches!(reply.get("retry_after_ms"), Some(J::Uint(ms)) if *ms > 0 && *ms <= 3_600_000),
        "{reply:?}"
    );
    assert!(
        is_ok(&ask(&mut ana, &typing).await),
        "slow mode lets typing through"
    );
    let (_, forwarded) = next_non_presence(&mut prof).await;
    assert_eq!(
        forwarded.shape(),
        shape_of("typing.indicator"),
        "{forwarded:?}"
    );
    for id in [30, 31] {
        assert!(is_ok(&ask(&mut prof, &post(id, "exempt")).await));
        next_non_presence(&mut prof).await;
        next_non_presence(&mut ana).await;
    }
    let (_, _, (bytes, _)) =
        moderate_live(&mut prof, &moderate(19, ModAction::SlowMode { seconds: 0 })).await;
    assert_eq!(next_non_presence(&mut ana).await.0, bytes);

    // Read-only: posts and typing refused, moderators exempt.
    let (_, _, (bytes, _)) = moderate_live(
        &mut prof,
        &moderate(
            20,
            ModAction::ReadOnly {
                on: true,
                thread: None,
            },
        ),
    )
    .await;
    assert_eq!(next_non_presence(&mut ana).await.0, bytes);
    let reply = ask(&mut ana, &post(5, "fermé ?")).await;
    assert_eq!(reply.shape(), shape_of("error.read_only"), "{reply:?}");
    assert_eq!(code_of(&reply), Some("read_only"));
    assert_eq!(code_of(&ask(&mut ana, &typing).await), Some("read_only"));
    assert!(is_ok(&ask(&mut prof, &post(32, "Je ferme.")).await));
    next_non_presence(&mut prof).await;
    next_non_presence(&mut ana).await;
    let (_, _, (bytes, _)) = moderate_live(
        &mut prof,
        &moderate(
            21,
            ModAction::ReadOnly {
                on: false,
                thread: None,
            },
        ),
    )
    .await;
    assert_eq!(next_non_presence(&mut ana).await.0, bytes);

    // Ban: the event is the pupil's last frame of the room, the others see
    // them leave, and joining again is refused until unban.
    let ban = moderate(
        16,
        ModAction::Ban {
            user: "ana".into(),
            reason: Some("Insultes répétées".into()),
            announce: false,
        },
    );
    send(&mut prof, &ban).await;
    let mut seen = Vec::new();
    while seen.len() < 4 {
        seen.push(generic(&raw_frame(&mut prof).await).unwrap());
    }
    let types: Vec<Option<&str>> = seen
        .iter()
        .map(|f| f.get("type").and_then(J::as_str))
        .collect();
    assert_eq!(
        types,
        [Some("event"), Some("ok"), Some("event"), Some("presence")],
        "{seen:?}"
    );
    let event = &seen[2];
    assert_eq!(event.shape(), shape_of("event.moderation.ban"), "{event:?}");
    assert_eq!(seen[3].get("action").and_then(J::as_str), Some("leave"));
    assert_eq!(
        seen[3].get("user").and_then(|u| u.get("id")),
        Some(&J::Str("ana".into()))
    );
    assert_eq!(&next_non_presence(&mut ana).await.1, event);
    let reply = ask(&mut ana, &post(5, "hé")).await;
    assert_eq!(
        code_of(&reply),
        Some("not_joined"),
        "banned: no longer a member"
    );
    let reply = ask(&mut ana, &join(2, ROOM)).await;
    assert_eq!(reply.shape(), shape_of("error.banned"), "{reply:?}");
    assert_eq!(code_of(&reply), Some("banned"));
    moderate_live(
        &mut prof,
        &moderate(17, ModAction::Unban { user: "ana".into() }),
    )
    .await;
    assert!(is_ok(&ask(&mut ana, &join(2, ROOM)).await));

    // Kick: out now, back at once.
    let kick = moderate(
        15,
        ModAction::Kick {
            user: "ana".into(),
            reason: None,
            announce: false,
        },
    );
    let (_, _, (bytes, _)) = moderate_live(&mut prof, &kick).await;
    assert_eq!(next_non_presence(&mut ana).await.0, bytes);
    assert_eq!(
        code_of(&ask(&mut ana, &post(5, "hé")).await),
        Some("not_joined")
    );
    assert!(is_ok(&ask(&mut ana, &join(2, ROOM)).await));
    assert!(is_ok(&ask(&mut ana, &post(5, "Je reviens")).await));
}

fn refused<T: fmt::Debug>(result: Result<T, preau::client::ClientError>) -> String {
    match result {
        Err(preau::client::ClientError::Refused(reply)) => reply.code.as_str().to_owned(),
        other => format!("not refused: {other:?}"),
    }
}

/// The checks of `moderate` in the README's order: room name, permission,
/// bounds, target; and the bounds are inclusive.
#[tokio::test]
async fn moderate_checks_are_as_documented() {
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let (mut prof, _) = server.connect(&teacher("t-durand", "3B")).await;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    let (mut other_teacher, _) = server.connect(&teacher("t-martin", "5A")).await;
    let (mut parent, _) = server.connect(&token("p-ana", Role::Parent, &["3B"])).await;
    let (mut staff, _) = server.connect(&token("cpe", Role::Staff, &[])).await;
    ana.join(ROOM, None).await.unwrap();
    bob.join(ROOM, None).await.unwrap();
    let ana_msg = ana.post(ROOM, "un").await.unwrap().offset;
    let bob_msg = bob.post(ROOM, "deux").await.unwrap().offset;
    let redact = |offset: u64| ModAction::Redact {
        offset,
        reason: None,
    };
    let mute = |user: &str, seconds: u64| ModAction::Mute {
        user: user.into(),
        seconds,
        reason: None,
        announce: false,
    };

    // Room name first, then permission, then bounds, then the target.
    for bad in ["3B/video/x", "3B/audit/journal", "3B/chat"] {
        assert_eq!(
            refused(prof.moderate(bad, redact(1)).await),
            "invalid_room",
            "{bad}"
        );
    }
    assert_eq!(
        refused(ana.moderate(ROOM, mute("bob", 0)).await),
        "forbidden"
    );
    assert_eq!(
        refused(prof.moderate(ROOM, mute("nobody", 0)).await),
        "invalid_field"
    );
    assert_eq!(
        refused(prof.moderate(ROOM, mute("nobody", 60)).await),
        "unknown_target"
    );

    // Only moderators act, except a pupil redacting their own message.
    for action in [
        mute("bob", 60),
        ModAction::Unmute { user: "bob".into() },
        ModAction::Kick {
            user: "bob".into(),
            reason: None,
            announce: false,
        },
        ModAction::Ban {
            user: "bob".into(),
            reason: None,
            announce: false,
        },
        ModAction::Unban { user: "bob".into() },
        ModAction::SlowMode { seconds: 10 },
        ModAction::ReadOnly {
            on: true,
            thread: None,
        },
    ] {
        assert_eq!(
            refused(ana.moderate(ROOM, action.clone()).await),
            "forbidden",
            "{action:?}"
        );
    }
    assert_eq!(
        refused(ana.moderate(ROOM, redact(bob_msg)).await),
        "forbidden"
    );
    for (who, client) in [
        ("teacher of another class", &mut other_teacher),
        ("parent", &mut parent),
    ] {
        assert_eq!(
            refused(client.moderate(ROOM, redact(ana_msg)).await),
            "forbidden",
            "{who}"
        );
    }
    // Nobody moderates the audit log.
    for client in [&mut prof, &mut staff] {
        assert_eq!(
            refused(
                client
                    .moderate(
                        "3B/audit/log",
                        ModAction::ReadOnly {
                            on: true,
                            thread: None
                        }
                    )
                    .await
            ),
            "forbidden"
        );
    }
    let own = ana.moderate(ROOM, redact(ana_msg)).await.unwrap();
    assert_eq!((own.room.as_str(), own.offset), (ROOM, bob_msg + 1));
    // Staff of no class moderates every room.
    staff.moderate(ROOM, mute("bob", 60)).await.unwrap();

    // Bounds, inclusive.
    assert_eq!(
        refused(prof.moderate(ROOM, mute("bob", 2_592_001)).await),
        "invalid_field"
    );
    prof.moderate(ROOM, mute("bob", 2_592_000)).await.unwrap();
    let slow = |seconds| ModAction::SlowMode { seconds };
    assert_eq!(
        refused(prof.moderate(ROOM, slow(21_601)).await),
        "invalid_field"
    );
    prof.moderate(ROOM, slow(21_600)).await.unwrap();
    prof.moderate(ROOM, slow(0)).await.unwrap();
    assert_eq!(
        refused(prof.moderate(ROOM, redact(0)).await),
        "invalid_field"
    );
    for user in [String::new(), "u".repeat(129)] {
        assert_eq!(
            refused(prof.moderate(ROOM, ModAction::Unban { user }).await),
            "invalid_field"
        );
    }
    let with_reason = |reason: String| ModAction::Redact {
        offset: bob_msg,
        reason: Some(reason),
    };
    let long = "é".repeat(250); // 500 bytes, 250 characters
    assert_eq!(
        refused(prof.moderate(ROOM, with_reason(format!("{long}x"))).await),
        "invalid_field"
    );
    prof.moderate(ROOM, with_reason(long)).await.unwrap();

    // Targets: only a stored message can be redacted, once.
    let head = prof.moderate(ROOM, slow(0)).await.unwrap().offset;
    for offset in [ana_msg, bob_msg, head, head + 100] {
        assert_eq!(
            refused(prof.moderate(ROOM, redact(offset)).await),
            "unknown_target",
            "offset {offset}"
        );
    }
    assert_eq!(
        refused(
            prof.moderate(ROOM, ModAction::Unban { user: "bob".into() })
                .await
        ),
        "unknown_target",
        "bob is not banned"
    );
    prof.moderate(ROOM, ModAction::Unmute { user: "bob".into() })
        .await
        .unwrap();
    assert_eq!(
        refused(
            prof.moderate(ROOM, ModAction::Unmute { user: "bob".into() })
                .await
        ),
        "unknown_target",
        "bob is not muted any more"
    );
    // A user who posted here is known after leaving.
    bob.leave(ROOM).await.unwrap();
    prof.moderate(
        ROOM,
        ModAction::Ban {
            user: "bob".into(),
            reason: None,
            announce: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(refused(bob.join(ROOM, None).await), "banned");
}

/// What the README promises a client that follows the `redact` event: from
/// then on, `history` returns the tombstone, never the message. Repeated on
/// raw sockets (the reader asks for history as soon as the event arrives),
/// because the window between delivering the event and rewriting the
/// stored message, if there is one, is short: it shows mostly when other
/// tests run at the same time.
#[tokio::test]
async fn history_after_a_redaction_event_has_the_tombstone() {
    let server = TestServer::start_with(|c| {
        c.rate_per_sec = 1000.0;
        c.rate_burst = 1000;
    })
    .await;
    server.open(&[ROOM]).await;
    let mut prof = raw_ws(server.addr()).await;
    raw_hello(&mut prof, &teacher("t-durand", "3B")).await;
    let mut ana = raw_ws(server.addr()).await;
    raw_hello(&mut ana, &student("ana", "3B")).await;
    let join = Request::Join {
        id: Some(2),
        room: ROOM.into(),
        since: None,
    };
    assert_eq!(
        ask(&mut ana, &join).await.get("type").and_then(J::as_str),
        Some("ok")
    );
    let mut leaked = Vec::new();
    for round in 0..200u32 {
        let post = Request::Post {
            id: Some(round),
            room: ROOM.into(),
            text: format!("message {round}"),
            title: None,
            thread: None,
            reply_to: None,
            quote: None,
            key: None,
        };
        let ack = ask(&mut ana, &post).await;
        let Some(J::Uint(offset)) = ack.get("data").and_then(|d| d.get("offset")).cloned() else {
            panic!("post acked: {ack:?}")
        };
        next_non_presence(&mut ana).await; // the message
        let redact = moderate(
            round,
            ModAction::Redact {
                offset,
                reason: None,
            },
        );
        send(&mut prof, &redact).await;
        let (_, event) = next_non_presence(&mut ana).await;
        assert_eq!(
            body_of(&event, "kind").and_then(J::as_str),
            Some("moderation")
        );
        let history = Request::History {
            id: Some(round),
            room: ROOM.into(),
            before: None,
            after: Some(offset - 1),
            limit: Some(1),
            thread: None,
        };
        let page = ask(&mut ana, &history).await;
        let Some(J::Arr(events)) = page.get("data").and_then(|d| d.get("events")) else {
            panic!("history has events: {page:?}")
        };
        assert_eq!(events.len(), 1, "{page:?}");
        assert_eq!(events[0].get("offset"), Some(&J::Uint(offset)));
        let kind = body_of(&events[0], "kind").and_then(J::as_str);
        if kind != Some("redacted") {
            leaked.push((offset, body_of(&events[0], "text").cloned()));
        }
        let (_, reply) = next_non_presence(&mut prof).await;
        assert_eq!(
            reply.get("type").and_then(J::as_str),
            Some("ok"),
            "{reply:?}"
        );
    }
    assert!(
        leaked.is_empty(),
        "{} of 200 history reads right after a redaction event returned the \
         message, not its tombstone: {leaked:?}",
        leaked.len()
    );
}
