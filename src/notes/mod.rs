//! Shared notes: the Yjs mechanics the server needs, kept synchronous and
//! free of any server state so they can be tested alone (see
//! `protocol/` "Notes" for the wire contract).
//!
//! * [`decode_message`] and the `encode_*` functions speak the y-protocols
//!   messages exactly as `y-websocket` frames them (a lib0 `varuint` type,
//!   then the payload), through yrs's own encoders and decoders.
//! * [`NoteDoc`] is the server's copy of one note: it vets client updates
//!   ([`NoteDoc::check`]) before applying them, answers sync step 1 and
//!   exports text.
//! * [`AwarenessGuard`] binds one connection's awareness entries to its
//!   authenticated user; [`AwarenessStates`] keeps a room's states to answer
//!   query awareness.
//!
//! Why a pre-scan exists (`scan.rs`): yrs 0.25 trusts the counts and strings
//! it decodes. A 6-byte sync step 1 announcing 2^32-1 clients makes its
//! `StateVector` decoder allocate ~146 GB up front, an awareness update or an
//! `Any` value announcing 2^40 entries does the same, and a delete set
//! announcing 2^32-1 ranges asks for 32 GB: the allocation fails and Rust
//! *aborts the process* (no unwinding, so `catch_unwind` cannot help). yrs
//! also builds `&str` from unchecked bytes (`from_utf8_unchecked`). So every
//! client payload is walked first by a small bounds checker that refuses
//! counts larger than the bytes left, invalid UTF-8, deep nesting and
//! content that JS Yjs could not read; only then is it handed to yrs.

mod awareness;
mod doc;
mod integrate;
mod parts;
mod scan;
mod split;

use yrs::encoding::read::Cursor;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::updates::encoder::Encode;

pub use awareness::{
    AwarenessGuard, AwarenessStates, Bound, MAX_AWARENESS_CLIENTS, MAX_AWARENESS_IDS,
    MAX_USER_EXTRA_BYTES,
};
pub use doc::{split_update, NoteDoc, Vetted};
pub use integrate::{Dangling, Plan};
pub use parts::{
    max_message_bytes, Parts, PartsBudget, PartsError, Reservation, MESSAGE_OVERHEAD,
    PARTS_BUDGET_NOTES,
};
// The payload types of [`Incoming`], so callers need not name yrs paths.
pub use yrs::sync::AwarenessUpdate;
pub use yrs::StateVector;

/// Why a notes operation was refused. Every variant leaves the document
/// unchanged, except [`NoteError::Poisoned`] which says it must be reloaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Not a y-protocols message we accept: unknown or unsupported type
    /// (auth, custom), bad framing, trailing bytes, invalid awareness JSON.
    #[error("not a supported y-protocols message")]
    InvalidMessage,
    /// An update that is not a Yjs v1 update yrs can decode and apply, or
    /// that JS Yjs clients could not read back.
    #[error("invalid yjs update")]
    InvalidUpdate,
    /// One message (whole, or reassembled from parts) over `note_max_bytes`.
    #[error("update too large: {len} bytes (max {max})")]
    UpdateTooLarge { len: usize, max: usize },
    /// An update larger than `note_max_update_bytes` holds one value (or
    /// item header) that cannot be cut to that size.
    #[error("one value of the update is larger than {max} bytes")]
    ValueTooLarge { max: usize },
    /// The update does not integrate completely into the note: it depends
    /// on something the note does not hold (an update that was refused,
    /// or never sent), or deletes beyond what it holds. Nothing of it is
    /// applied; the client must resynchronise.
    #[error(
        "the update depends on what the note does not hold (client {client} from clock {clock}): resynchronise"
    )]
    OutOfSync { client: u64, clock: u32 },
    /// Applying the update could grow the stored document over `note_max_bytes`.
    #[error("document too large: would be {would_be} bytes (max {max})")]
    DocumentTooLarge { would_be: usize, max: usize },
    /// A connection announcing more awareness client ids than allowed.
    #[error("too many awareness clients for one connection (max {max})")]
    TooManyClients { max: usize },
    /// yrs failed (error or panic) in the middle of applying an update that
    /// passed [`NoteDoc::check`]: the in-memory document may hold part of it,
    /// so it refuses everything until the caller reloads it from storage
    /// (which never saw the failed update).
    #[error("note document must be reloaded from storage")]
    Poisoned,
}

impl From<Dangling> for NoteError {
    fn from(d: Dangling) -> Self {
        NoteError::OutOfSync {
            client: d.client,
            clock: d.clock,
        }
    }
}

impl NoteError {
    /// The protocol's error code for this refusal.
    pub fn code(&self) -> crate::protocol::ErrorCode {
        use crate::protocol::ErrorCode;
        match self {
            NoteError::InvalidMessage | NoteError::InvalidUpdate | NoteError::Poisoned => {
                ErrorCode::InvalidUpdate
            }
            NoteError::UpdateTooLarge { .. } | NoteError::ValueTooLarge { .. } => {
                ErrorCode::UpdateTooLarge
            }
            NoteError::DocumentTooLarge { .. } => ErrorCode::DocumentTooLarge,
            NoteError::TooManyClients { .. } => ErrorCode::Forbidden,
            NoteError::OutOfSync { .. } => ErrorCode::OutOfSync,
        }
    }
}

/// Size limits for client updates (config `note_max_update_bytes` and
/// `note_max_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest update stored as one event; larger ones are cut.
    pub max_update_bytes: usize,
    /// The largest note, and so the largest message.
    pub max_doc_bytes: usize,
}

impl Default for Limits {
    /// The defaults of the protocol: 60 KiB per update, 4 MiB per document.
    fn default() -> Self {
        Limits {
            max_update_bytes: 61_440,
            max_doc_bytes: 4 * 1024 * 1024,
        }
    }
}

/// A decoded client message. Payloads stay in yrs's types so they are
/// decoded once; updates stay raw bytes because they are stored and relayed
/// as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// The client's state vector: answer with [`NoteDoc::diff`] as step 2,
    /// then the server's own step 1.
    SyncStep1(StateVector),
    /// What the client has that the server lacks (maybe empty: `[0, 0]`).
    SyncStep2(Vec<u8>),
    /// A local change of the client.
    Update(Vec<u8>),
    /// Awareness states, to bind with [`AwarenessGuard::bind`].
    Awareness(AwarenessUpdate),
    /// The client asks for every awareness state the server knows.
    QueryAwareness,
}

/// Decodes one y-protocols message as `y-websocket` sends it in a WebSocket
/// message (here: the `data` of a `yjs` frame). Exactly one message, no
/// trailing bytes: y-websocket never packs several.
pub fn decode_message(data: &[u8]) -> Result<Incoming, NoteError> {
    // Bounds first (see the module comment: yrs would abort the process on
    // some hostile lengths), then yrs's own decoder.
    scan::message(data).map_err(|_| NoteError::InvalidMessage)?;
    let mut decoder = DecoderV1::new(Cursor::new(data));
    let message = Message::decode(&mut decoder).map_err(|_| NoteError::InvalidMessage)?;
    Ok(match message {
        Message::Sync(SyncMessage::SyncStep1(sv)) => Incoming::SyncStep1(sv),
        Message::Sync(SyncMessage::SyncStep2(update)) => Incoming::SyncStep2(update),
        Message::Sync(SyncMessage::Update(update)) => Incoming::Update(update),
        Message::Awareness(update) => Incoming::Awareness(update),
        Message::AwarenessQuery => Incoming::QueryAwareness,
        // The scan already refuses these; kept so a yrs change cannot slip
        // an auth or custom message through.
        Message::Auth(_) | Message::Custom(..) => return Err(NoteError::InvalidMessage),
    })
}

/// Sync step 1 (`0, 0, varbytes(sv)`), sent by the server after its step 2.
pub fn encode_step1(sv: &StateVector) -> Vec<u8> {
    Message::Sync(SyncMessage::SyncStep1(sv.clone())).encode_v1()
}

/// Sync step 2 (`0, 1, varbytes(update)`): the answer to a client's step 1.
pub fn encode_step2(update: &[u8]) -> Vec<u8> {
    Message::Sync(SyncMessage::SyncStep2(update.to_vec())).encode_v1()
}

/// Update message (`0, 2, varbytes(update)`), for peers that want the
/// y-websocket form of an update (events carry the bare update instead).
pub fn encode_update(update: &[u8]) -> Vec<u8> {
    Message::Sync(SyncMessage::Update(update.to_vec())).encode_v1()
}

/// Awareness message (`1, varbytes(awareness update)`). Entries come out in
/// yrs's hash-map order, which readers do not care about.
pub fn encode_awareness(update: &AwarenessUpdate) -> Vec<u8> {
    Message::Awareness(update.clone()).encode_v1()
}

#[cfg(test)]
mod integrity_tests;
#[cfg(test)]
mod tests;
