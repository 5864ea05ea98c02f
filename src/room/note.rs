//! A loaded note's state: the yrs document, the awareness states of the
//! members on this node, and what compaction and validation need.

use std::collections::HashMap;

use crate::notes::{AwarenessStates, NoteDoc};
use crate::outbound::ConnId;

pub struct NoteState {
    pub doc: NoteDoc,
    /// The offset the stored snapshot covers (updates after it are events).
    pub snapshot_through: u64,
    /// Updates applied since that snapshot.
    pub since_snapshot: u64,
    /// Versions validated so far: the next validation is `versions + 1`.
    pub versions: u32,
    /// A compaction is running (at most one per note).
    pub compacting: bool,
    pub awareness: AwarenessStates,
    /// Awareness client id → the connection (and its user) that owns it
    /// on this node.
    pub owners: HashMap<u64, (ConnId, String)>,
}

impl NoteState {
    pub fn new(doc: NoteDoc, snapshot_through: u64, since_snapshot: u64, versions: u32) -> Self {
        NoteState {
            doc,
            snapshot_through,
            since_snapshot,
            versions,
            compacting: false,
            awareness: AwarenessStates::new(),
            owners: HashMap::new(),
        }
    }
}

/// A version validated by a committed event, to store.
pub struct NewVersion {
    pub version: u32,
    pub label: String,
    pub offset: u64,
    pub ts: u64,
    pub by: crate::protocol::UserInfo,
    /// The whole document as one v1 update.
    pub state: Vec<u8>,
}
