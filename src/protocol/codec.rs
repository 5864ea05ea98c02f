//! Encoding and decoding: `decode_request` with its precise error
//! classification, the frame encoders (replies spliced with stored event
//! frames), and reads of a stored frame's stamp without decoding the rest.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::*;

/// Why an incoming frame could not be turned into a [`Request`].
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("frame is not a messagepack map with a string `type`: {0}")]
    Malformed(String),
    #[error("unknown request type {ty:?}")]
    UnknownType { id: Option<u32>, ty: String },
    #[error("invalid {ty} request: {message}")]
    InvalidField {
        id: Option<u32>,
        ty: String,
        message: String,
    },
}

impl DecodeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::Malformed(_) => ErrorCode::MalformedFrame,
            DecodeError::UnknownType { .. } => ErrorCode::UnknownType,
            DecodeError::InvalidField { .. } => ErrorCode::InvalidField,
        }
    }

    pub fn id(&self) -> Option<u32> {
        match self {
            DecodeError::Malformed(_) => None,
            DecodeError::UnknownType { id, .. } | DecodeError::InvalidField { id, .. } => *id,
        }
    }
}

/// Deepest nesting of arrays and maps a frame may have. Real frames nest
/// about 5 deep; the bound keeps a hostile frame from exhausting the stack
/// of the decoder's recursion (a 730-byte frame nested 700 deep would).
pub const MAX_DEPTH: usize = 16;

pub(super) fn from_slice_bounded<T: serde::de::DeserializeOwned>(
    frame: &[u8],
) -> Result<T, rmp_serde::decode::Error> {
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(frame);
    deserializer.set_max_depth(MAX_DEPTH);
    T::deserialize(&mut deserializer)
}

/// Decodes one client frame. The fast path is a single typed decode; only a
/// failing frame is decoded a second time, loosely, to say precisely what is wrong.
pub fn decode_request(frame: &[u8]) -> Result<Request, DecodeError> {
    // serde would also accept a tagged enum in positional (array) form;
    // the protocol says a frame is a map, so refuse anything else up front.
    if !frame.first().is_some_and(|&b| is_map_marker(b)) {
        return Err(classify_non_map(frame));
    }
    match from_slice_bounded::<Request>(frame) {
        Ok(request) => Ok(request),
        Err(typed_error) => Err(classify(frame, typed_error, REQUEST_TYPES)),
    }
}

/// Decodes a client frame of a type a room kind owns (not one of
/// [`REQUEST_TYPES`]) as the kind's own request type `T`, with the same
/// bounds and the same errors as [`decode_request`]: `types` are the
/// kind's request types.
pub fn decode_kind_request<T: serde::de::DeserializeOwned>(
    frame: &[u8],
    types: &[&str],
) -> Result<T, DecodeError> {
    if !frame.first().is_some_and(|&b| is_map_marker(b)) {
        return Err(classify_non_map(frame));
    }
    from_slice_bounded::<T>(frame).map_err(|typed_error| classify(frame, typed_error, types))
}

/// fixmap, map16, map32.
fn is_map_marker(byte: u8) -> bool {
    (0x80..=0x8f).contains(&byte) || byte == 0xde || byte == 0xdf
}

fn classify_non_map(frame: &[u8]) -> DecodeError {
    let mut reader = frame;
    match rmpv::decode::read_value_with_max_depth(&mut reader, MAX_DEPTH) {
        Ok(_) => DecodeError::Malformed("not a map".to_owned()),
        Err(err) => DecodeError::Malformed(format!("not messagepack: {err}")),
    }
}

/// Says what is wrong with a frame that did not decode as a request of
/// one of `types`.
fn classify(frame: &[u8], typed_error: rmp_serde::decode::Error, types: &[&str]) -> DecodeError {
    let mut reader = frame;
    let value = match rmpv::decode::read_value_with_max_depth(&mut reader, MAX_DEPTH) {
        Ok(value) => value,
        Err(err) => return DecodeError::Malformed(format!("not messagepack: {err}")),
    };
    let rmpv::Value::Map(entries) = value else {
        return DecodeError::Malformed("not a map".to_owned());
    };
    let field = |name: &str| {
        entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v)
    };
    let id = field("id")
        .and_then(|v| v.as_u64())
        .and_then(|v| u32::try_from(v).ok());
    let ty = match field("type") {
        Some(rmpv::Value::String(s)) => match s.as_str() {
            Some(s) => s.to_owned(),
            None => return DecodeError::Malformed("`type` is not valid utf-8".to_owned()),
        },
        Some(_) => return DecodeError::Malformed("`type` is not a string".to_owned()),
        None => return DecodeError::Malformed("missing `type`".to_owned()),
    };
    if !types.contains(&ty.as_str()) {
        return DecodeError::UnknownType { id, ty };
    }
    DecodeError::InvalidField {
        id,
        ty,
        message: typed_error.to_string(),
    }
}

/// Decodes one server frame (client side).
pub fn decode_server_frame(frame: &[u8]) -> Result<ServerFrame, rmp_serde::decode::Error> {
    from_slice_bounded(frame)
}

/// Decodes the `data` of an `ok` frame as `T` (client side; the caller
/// knows which request the reply answers).
pub fn decode_ok_data<T: serde::de::DeserializeOwned>(
    frame: &[u8],
) -> Result<T, rmp_serde::decode::Error> {
    #[derive(Deserialize)]
    struct Data<T> {
        data: T,
    }
    from_slice_bounded::<Data<T>>(frame).map(|d| d.data)
}

/// Encodes any serializable value as a MessagePack map (field names kept).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(value).map(Bytes::from)
}

#[derive(Serialize)]
struct OkFrame<'a, T: Serialize> {
    #[serde(rename = "type")]
    ty: &'static str,
    id: Option<u32>,
    data: &'a T,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum OutFrame<'a> {
    Error(&'a ErrorReply),
    Event(&'a Event),
    Presence(&'a Presence),
    Typing(&'a Typing),
    Yjs(&'a YjsFrame),
}

/// A pre-encoded `internal` error, used if encoding itself ever fails.
fn internal_error_frame(id: Option<u32>) -> Bytes {
    let reply = ErrorReply {
        id,
        code: ErrorCode::Internal,
        message: "internal error".to_owned(),
        retry_after_ms: None,
    };
    encode(&OutFrame::Error(&reply)).unwrap_or_else(|_| Bytes::from_static(&[0x80]))
}

fn or_internal(id: Option<u32>, result: Result<Bytes, rmp_serde::encode::Error>) -> Bytes {
    result.unwrap_or_else(|err| {
        tracing::error!(error = %err, "encoding a server frame failed");
        internal_error_frame(id)
    })
}

/// `{type: "ok", id, data}`.
pub fn ok<T: Serialize>(id: Option<u32>, data: &T) -> Bytes {
    or_internal(id, encode(&OkFrame { ty: "ok", id, data }))
}

/// `{type: "ok", id, data: nil}`.
pub fn ok_empty(id: Option<u32>) -> Bytes {
    ok(id, &())
}

/// `{type: "ok", id, data}` where `data` is `data` plus an `events` array
/// whose items are already-encoded event frames (stored bytes, spliced as is).
/// `data` must serialize to a map without an `events` entry.
pub fn ok_with_events<T: Serialize, E: AsRef<[u8]>>(
    id: Option<u32>,
    data: &T,
    events: &[E],
) -> Bytes {
    or_internal(id, splice_events(id, data, events))
}

fn splice_events<T: Serialize, E: AsRef<[u8]>>(
    id: Option<u32>,
    data: &T,
    events: &[E],
) -> Result<Bytes, rmp_serde::encode::Error> {
    use rmp_serde::encode::Error as E2;
    let map = rmp_serde::to_vec_named(data)?;
    let mut rest = map.as_slice();
    let len = rmp::decode::read_map_len(&mut rest)
        .map_err(|_| E2::Syntax("data is not a map".to_owned()))?;
    let mut out =
        Vec::with_capacity(map.len() + 48 + events.iter().map(|e| e.as_ref().len()).sum::<usize>());
    rmp::encode::write_map_len(&mut out, 3)?;
    rmp::encode::write_str(&mut out, "type")?;
    rmp::encode::write_str(&mut out, "ok")?;
    rmp::encode::write_str(&mut out, "id")?;
    match id {
        Some(id) => rmp::encode::write_uint(&mut out, u64::from(id)).map(|_| ())?,
        None => rmp::encode::write_nil(&mut out).map_err(|e| E2::Syntax(e.to_string()))?,
    }
    rmp::encode::write_str(&mut out, "data")?;
    rmp::encode::write_map_len(&mut out, len + 1)?;
    out.extend_from_slice(rest);
    rmp::encode::write_str(&mut out, "events")?;
    let count =
        u32::try_from(events.len()).map_err(|_| E2::Syntax("too many events".to_owned()))?;
    rmp::encode::write_array_len(&mut out, count)?;
    for event in events {
        out.extend_from_slice(event.as_ref());
    }
    Ok(Bytes::from(out))
}

/// `{type: "error", id, code, message, retry_after_ms?}`.
pub fn error(id: Option<u32>, code: ErrorCode, message: impl Into<String>) -> Bytes {
    error_reply(&ErrorReply {
        id,
        code,
        message: message.into(),
        retry_after_ms: None,
    })
}

pub fn error_reply(reply: &ErrorReply) -> Bytes {
    or_internal(reply.id, encode(&OutFrame::Error(reply)))
}

/// `{type: "event", ...}`: the exact bytes that are stored and delivered.
pub fn event(event: &Event) -> Bytes {
    or_internal(None, encode(&OutFrame::Event(event)))
}

pub fn presence(presence: &Presence) -> Bytes {
    or_internal(None, encode(&OutFrame::Presence(presence)))
}

pub fn typing(typing: &Typing) -> Bytes {
    or_internal(None, encode(&OutFrame::Typing(typing)))
}

/// A `yjs` frame: one y-protocols message of a note.
pub fn yjs(frame: &YjsFrame) -> Bytes {
    or_internal(None, encode(&OutFrame::Yjs(frame)))
}

#[derive(Deserialize)]
struct Stamp {
    offset: u64,
    ts: u64,
}

/// The `ts` of a stored event frame, without keeping the rest.
pub fn event_ts(frame: &[u8]) -> Option<u64> {
    from_slice_bounded::<Stamp>(frame).ok().map(|s| s.ts)
}

/// The `from` of a stored event frame.
pub fn event_from(frame: &[u8]) -> Option<UserInfo> {
    #[derive(Deserialize)]
    struct From {
        from: UserInfo,
    }
    from_slice_bounded::<From>(frame).ok().map(|f| f.from)
}

/// The `offset` of a stored event frame, without keeping the rest.
pub fn event_offset(frame: &[u8]) -> Option<u64> {
    from_slice_bounded::<Stamp>(frame).ok().map(|s| s.offset)
}

/// Encodes a request (client side).
pub fn encode_request(request: &Request) -> Result<Bytes, rmp_serde::encode::Error> {
    encode(request)
}
