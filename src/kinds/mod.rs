//! The room kinds, one folder (or file) each, and the one list that
//! registers them. A kind implements `session::KindHandler` (its requests)
//! and `room::RoomKind` (its policy, derived state, retention, erasure);
//! the core reaches kinds only through those traits and this list, which
//! `lib::run` hands to the hub and the gateway.
//!
//! Adding a kind: a folder here, one line below, its section in
//! `protocol/README.md`, its vectors, its tests and its TS client methods.

pub mod agenda;
pub mod announce;
pub mod audit;
pub mod blog;
pub mod chat;
pub mod common;
pub mod dm;
pub mod docs;
pub mod forum;
pub mod handin;
pub mod homework;
pub mod inbox;
pub mod notes;

use crate::session::KindHandler;

/// Every kind this server runs. The audit log is required (moderation
/// writes to it).
pub const ALL: &[&'static dyn KindHandler] = &[
    &chat::Chat,
    &audit::Audit,
    &forum::Forum,
    &notes::Notes,
    &agenda::Agenda,
    &homework::Homework,
    &docs::DocsKind,
    &inbox::Inbox,
    &dm::Dm,
    &announce::Announce,
    &handin::Handin,
    &blog::Blog,
];

/// Every request type the server takes: the protocol module's v1 types
/// and the kinds' own (`KindHandler::requests`), each once.
pub fn request_types() -> Vec<&'static str> {
    let mut types: Vec<&'static str> = crate::protocol::REQUEST_TYPES.to_vec();
    for kind in ALL {
        for request in kind.requests() {
            if !types.contains(request) {
                types.push(request);
            }
        }
    }
    types
}

/// The error codes a request of type `request` may get besides
/// `protocol::ANY_REQUEST`: the protocol module's table for its types,
/// the owning kind's for a kind's own. The spec's tables say the same
/// (`tests/spec.rs`).
pub fn returned_by(request: &str) -> &'static [crate::protocol::ErrorCode] {
    if crate::protocol::REQUEST_TYPES.contains(&request) {
        return crate::protocol::returned_by(request);
    }
    ALL.iter()
        .find(|k| k.requests().contains(&request))
        .map_or(&[], |k| k.returned_by(request))
}
