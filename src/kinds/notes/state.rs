//! A loaded note's state: the yrs document, the awareness states of the
//! members on this node, and what compaction and validation need.

use std::collections::HashMap;

use crate::notes::{AwarenessStates, Limits, NoteDoc, NoteError, Plan, Vetted};
use crate::outbound::ConnId;

/// Updates accepted and not applied yet that a note keeps track of; past
/// this, the oldest are forgotten (only a lost write leaves one behind,
/// see [`NoteState::settle`]). The store's write queue bounds how many are
/// really in flight.
const MAX_ACCEPTED: usize = 4_096;

pub struct NoteState {
    pub doc: NoteDoc,
    /// Compact after this many updates since the snapshot
    /// (`note_compact_every`).
    pub compact_every: u64,
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
    /// Updates admitted on this node and not applied yet: (ticket, per
    /// client the clock it brings the note to). A client sends one update
    /// per keystroke, each depending on the one before, which is still
    /// being written: [`NoteState::admit`] checks against the document
    /// plus these.
    accepted: Vec<(u64, Vec<(u64, u32)>)>,
    next_ticket: u64,
}

impl NoteState {
    pub fn new(
        doc: NoteDoc,
        snapshot_through: u64,
        since_snapshot: u64,
        versions: u32,
        compact_every: u64,
    ) -> Self {
        NoteState {
            doc,
            compact_every: compact_every.max(1),
            snapshot_through,
            since_snapshot,
            versions,
            compacting: false,
            awareness: AwarenessStates::new(),
            owners: HashMap::new(),
            accepted: Vec::new(),
            next_ticket: 1,
        }
    }

    /// Admits a vetted update ([`NoteDoc::admit`]) against the document
    /// plus the updates admitted here and not applied yet, and counts it
    /// among them until it is applied: the ticket gives it back
    /// ([`NoteState::release`]) if it is not ordered after all.
    ///
    /// Why this is enough for fast typing: a connection's requests are
    /// handled one at a time, and its update is ordered (sequenced here,
    /// or by Redis in cluster mode, before `Hub::post` returns) before the
    /// connection's next one is admitted; its commit, in offset order, then
    /// comes before the next one's.
    pub fn admit(&mut self, vetted: &Vetted, limits: &Limits) -> Result<(u64, Plan), NoteError> {
        let mut known = self.doc.state_vector();
        for (_, reach) in &self.accepted {
            for &(client, clock) in reach {
                known.set_max(client, clock);
            }
        }
        let plan = self.doc.admit(vetted, &known, limits)?;
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        if !plan.reach.is_empty() {
            if self.accepted.len() >= MAX_ACCEPTED {
                self.accepted.remove(0);
            }
            self.accepted.push((ticket, plan.reach.clone()));
        }
        Ok((ticket, plan))
    }

    /// Forgets an admitted update that was not ordered (refused after
    /// admission, or its ordering failed).
    pub fn release(&mut self, ticket: u64) {
        self.accepted.retain(|(t, _)| *t != ticket);
    }

    /// After an update was applied (or refused) at commit: forgets the
    /// admitted updates the document now covers. When an update was not
    /// written (`Room::skip`) or was refused at commit, what was admitted
    /// after it may depend on it; every pending admission is forgotten
    /// then (`lost`), so that the next updates are judged against the
    /// document alone: at worst a client gets `out_of_sync` once and
    /// resynchronises.
    pub fn settle(&mut self, lost: bool) {
        if lost {
            self.accepted.clear();
            return;
        }
        if self.accepted.is_empty() {
            return;
        }
        let sv = self.doc.state_vector();
        self.accepted
            .retain(|(_, reach)| reach.iter().any(|&(client, clock)| sv.get(&client) < clock));
    }

    /// Admitted updates not applied yet.
    pub fn accepted(&self) -> usize {
        self.accepted.len()
    }
}
