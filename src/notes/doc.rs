//! The server's copy of one note.

use std::panic::{catch_unwind, AssertUnwindSafe};

use yrs::updates::decoder::Decode;
use yrs::{
    BranchID, DeleteSet, Doc, GetString, OffsetKind, Options, ReadTxn, StateVector, Transact,
    Update, ID,
};

use super::scan::{self, Refs};
use super::{Limits, NoteError};

/// Name of the root `Y.Text` holding the note's Markdown source
/// (`doc.getText("content")` in JS).
const CONTENT: &str = "content";

/// One note's Yjs document, as the server keeps it.
///
/// The server never edits it: it only merges client updates, answers sync
/// step 1 and exports. Every client update goes through [`NoteDoc::check`]
/// before [`NoteDoc::apply`]; both refuse without touching the document.
pub struct NoteDoc {
    doc: Doc,
    /// Upper bound of the encoded state size: the last snapshot's length
    /// plus every changing update applied since (updates overlap and GC
    /// shrinks, so the real size is lower). Exact again after
    /// [`NoteDoc::snapshot`]; avoids encoding the whole state per update.
    size_estimate: usize,
    /// Set when yrs failed midway through an update (see
    /// [`NoteError::Poisoned`]).
    poisoned: bool,
}

impl std::fmt::Debug for NoteDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteDoc")
            .field("size_estimate", &self.size_estimate)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl Default for NoteDoc {
    fn default() -> Self {
        Self::new()
    }
}

/// Decodes a client or stored update after the bounds scan: yrs alone could
/// abort the process on hostile lengths (see the `notes` module comment).
fn decode(update: &[u8]) -> Result<(Update, Refs), NoteError> {
    let refs = scan::update(update).map_err(|_| NoteError::InvalidUpdate)?;
    let decoded = Update::decode_v1(update).map_err(|_| NoteError::InvalidUpdate)?;
    Ok((decoded, refs))
}

/// Whether every item the update names as a parent is a shared type (or
/// deleted, which yrs turns into garbage): yrs returns an error midway
/// through an update otherwise, after merging the blocks before it. The
/// document's own item wins over the update's copy of the same id (yrs
/// skips duplicates); ids known to neither just wait as pending.
fn parents_ok<T: ReadTxn>(txn: &T, refs: &mut Refs) -> bool {
    if refs.parents.is_empty() {
        return true;
    }
    let sv = txn.state_vector();
    refs.blocks.sort_unstable();
    let mut deleted: Option<DeleteSet> = None;
    refs.parents.iter().all(|&(client, clock)| {
        let id = ID::new(client, clock);
        if clock < sv.get(&client) {
            if BranchID::get_nested(txn, &id).is_some() {
                return true;
            }
            // Rare (a parent that is not a live type): one walk of the
            // block store, shared by all such parents of this update.
            deleted
                .get_or_insert_with(|| txn.snapshot().delete_set)
                .is_deleted(&id)
        } else {
            // The last block of `client` starting at or before `clock`.
            let after = refs
                .blocks
                .partition_point(|&(c, start, ..)| (c, start) <= (client, clock));
            match after.checked_sub(1).map(|i| refs.blocks[i]) {
                Some((c, _, end, may_be_parent)) if c == client && clock < end => may_be_parent,
                _ => true,
            }
        }
    })
}

/// A yrs document configured like a JS `Y.Doc`: UTF-16 offsets (Yjs's
/// string lengths) and garbage collection of deleted content.
fn new_doc() -> Doc {
    Doc::with_options(Options {
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    })
}

/// Per client, the highest clock an update inserts or deletes up to.
/// Whatever lies beyond the state vector after applying it was parked by
/// yrs until its dependencies arrive: it still counts as a change (it is
/// in the snapshot and in memory, so it must be stored and counted in the
/// size), found without encoding the pending set on every update.
fn reach(update: &Update) -> Vec<(u64, u32)> {
    let inserted = DeleteSet::from(update.insertions(true));
    inserted
        .iter()
        .chain(update.delete_set().iter())
        .filter_map(|(&client, ranges)| Some((client, ranges.iter().map(|r| r.end).max()?)))
        .collect()
}

impl NoteDoc {
    /// An empty note.
    pub fn new() -> Self {
        NoteDoc {
            doc: new_doc(),
            size_estimate: 0,
            poisoned: false,
        }
    }

    /// Rebuilds a note from its stored form: the last snapshot (if any) and
    /// the updates stored after it, in order. One transaction for all, so
    /// yrs merges and garbage-collects once.
    pub fn load<U: AsRef<[u8]>>(
        snapshot: Option<&[u8]>,
        updates: impl IntoIterator<Item = U>,
    ) -> Result<NoteDoc, NoteError> {
        let doc = new_doc();
        let mut size_estimate = 0;
        let mut decoded = Vec::new();
        if let Some(snapshot) = snapshot {
            decoded.push(decode(snapshot)?.0);
            size_estimate += snapshot.len();
        }
        for update in updates {
            let update = update.as_ref();
            decoded.push(decode(update)?.0);
            size_estimate += update.len();
        }
        let applied = catch_unwind(AssertUnwindSafe(|| {
            let mut txn = doc.transact_mut();
            decoded
                .into_iter()
                .try_for_each(|update| txn.apply_update(update))
        }));
        match applied {
            Ok(Ok(())) => Ok(NoteDoc {
                doc,
                size_estimate,
                poisoned: false,
            }),
            _ => Err(NoteError::InvalidUpdate),
        }
    }

    /// Vets a client update without touching the document: size, the
    /// bounds scan, decoding, parents that must be shared types, and a trial
    /// run on a fresh scratch document (under `catch_unwind`) so that an
    /// update yrs errors or panics on is refused here rather than
    /// half-applied to the real one. The trial cannot see conflicts with the
    /// real state (blocks whose dependencies are missing just wait in the
    /// scratch document): the checks against the real state are the parent
    /// check here and the reference rule of the scan, and
    /// [`NoteDoc::apply`] stays guarded for whatever is left.
    pub fn check(&self, update: &[u8], limits: &Limits) -> Result<(), NoteError> {
        if update.len() > limits.max_update_bytes {
            return Err(NoteError::UpdateTooLarge {
                len: update.len(),
                max: limits.max_update_bytes,
            });
        }
        if self.poisoned {
            return Err(NoteError::Poisoned);
        }
        let (decoded, mut refs) = decode(update)?;
        if !self.parents_ok(&mut refs) {
            return Err(NoteError::InvalidUpdate);
        }
        let would_be = self.size_estimate.saturating_add(update.len());
        // A reply that adds nothing (an empty step 2, a resent update) is
        // fine even on a full note: refusing it would only show an error to
        // a client that is merely reconnecting.
        if would_be > limits.max_doc_bytes && !self.is_noop(update)? {
            return Err(NoteError::DocumentTooLarge {
                would_be,
                max: limits.max_doc_bytes,
            });
        }
        let trial = catch_unwind(AssertUnwindSafe(|| {
            let scratch = new_doc();
            let mut txn = scratch.transact_mut();
            txn.apply_update(decoded)
        }));
        match trial {
            Ok(Ok(())) => Ok(()),
            _ => Err(NoteError::InvalidUpdate),
        }
    }

    /// Merges an update (that passed [`NoteDoc::check`]) into the document.
    /// Returns whether it changed anything: new content, new deletions, or
    /// blocks parked until their dependencies arrive; the server stores and
    /// broadcasts only updates that did.
    ///
    /// Why the document stays intact: the scan, decoding and parent check
    /// run again here (cheap) and refuse before the document is touched;
    /// everything else yrs was seen to trip over (hostile lengths, bad
    /// UTF-8, content JS cannot read, clock overflow, references to a
    /// client's own future clocks, which panic in yrs's `find_pivot`, and
    /// whatever panicked in the trial run) was refused by `check`. What is
    /// left, an error or panic while yrs integrates against the real state
    /// that no fuzz run has produced since, is caught here; since yrs may
    /// have merged part of the update by then, the note then reports
    /// [`NoteError::Poisoned`] for good and the caller must reload it from
    /// storage, which never saw this update.
    pub fn apply(&mut self, update: &[u8]) -> Result<bool, NoteError> {
        if self.poisoned {
            return Err(NoteError::Poisoned);
        }
        let (decoded, mut refs) = decode(update)?;
        if !self.parents_ok(&mut refs) {
            return Err(NoteError::InvalidUpdate);
        }
        let doc = &self.doc;
        let applied = catch_unwind(AssertUnwindSafe(|| {
            let reach = reach(&decoded);
            let mut txn = doc.transact_mut();
            let before = txn.state_vector();
            txn.apply_update(decoded)?;
            let after = txn.state_vector();
            // Over-counts an update parked a second time: harmless (stored
            // twice; the size estimate errs on the safe side).
            let parked = reach.iter().any(|&(client, end)| end > after.get(&client));
            Ok::<_, yrs::error::UpdateError>(
                after != before || !txn.delete_set().is_empty() || parked,
            )
        }));
        match applied {
            Ok(Ok(changed)) => {
                if changed {
                    self.size_estimate = self.size_estimate.saturating_add(update.len());
                }
                Ok(changed)
            }
            _ => {
                self.poisoned = true;
                Err(NoteError::Poisoned)
            }
        }
    }

    /// Whether applying `update` would add nothing: every block it carries
    /// is already covered by the state vector and every deletion is already
    /// known. Lets the server skip storing e.g. the step 2 a reconnecting
    /// client sends back (`[0, 0]`, or only the delete set it already has)
    /// before it applies anything.
    pub fn is_noop(&self, update: &[u8]) -> Result<bool, NoteError> {
        let (decoded, _) = decode(update)?;
        let doc = &self.doc;
        catch_unwind(AssertUnwindSafe(|| {
            let txn = doc.transact();
            let sv = txn.state_vector();
            // Block ranges (items and GC, not skips), as an id set that
            // yrs lets us iterate.
            let inserted = DeleteSet::from(decoded.insertions(true));
            for (client, ranges) in inserted.iter() {
                if ranges.iter().any(|range| range.end > sv.get(client)) {
                    return false;
                }
            }
            let deletes = decoded.delete_set();
            if deletes.is_empty() {
                return true;
            }
            // Walks the whole block store: only reached by updates that
            // carry deletions and no new block (a reconnecting client's
            // step 2), not by live typing.
            let known = txn.snapshot().delete_set;
            deletes
                .iter()
                .all(|(client, ranges)| match known.range(client) {
                    Some(known) => ranges.subset_of(known),
                    None => ranges.iter().all(|range| range.is_empty()),
                })
        }))
        .map_err(|_| NoteError::InvalidUpdate)
    }

    /// [`parents_ok`] against this document; reading only, but guarded like
    /// everything that walks yrs structures on behalf of client input.
    fn parents_ok(&self, refs: &mut Refs) -> bool {
        let doc = &self.doc;
        catch_unwind(AssertUnwindSafe(|| parents_ok(&doc.transact(), refs))).unwrap_or(false)
    }

    /// The state vector, for the server's sync step 1.
    pub fn state_vector(&self) -> StateVector {
        self.doc.transact().state_vector()
    }

    /// Everything the client with state vector `remote` lacks, as a v1
    /// update: the payload of sync step 2 (`Y.encodeStateAsUpdate(doc, sv)`,
    /// pending blocks and the whole delete set included, as in JS).
    pub fn diff(&self, remote: &StateVector) -> Result<Vec<u8>, NoteError> {
        if self.poisoned {
            return Err(NoteError::Poisoned);
        }
        let doc = &self.doc;
        // The state vector comes from a client: a panic while encoding for
        // it is its fault, and reading leaves the document as it was.
        catch_unwind(AssertUnwindSafe(|| {
            doc.transact().encode_state_as_update_v1(remote)
        }))
        .map_err(|_| NoteError::InvalidMessage)
    }

    /// The whole state as one v1 update (what `note_export` format `yjs`
    /// returns and what storage keeps as a snapshot). Also makes
    /// [`NoteDoc::size_estimate`] exact again.
    pub fn snapshot(&mut self) -> Result<Vec<u8>, NoteError> {
        if self.poisoned {
            return Err(NoteError::Poisoned);
        }
        let doc = &self.doc;
        let encoded = catch_unwind(AssertUnwindSafe(|| {
            doc.transact()
                .encode_state_as_update_v1(&StateVector::default())
        }))
        .map_err(|_| {
            self.poisoned = true;
            NoteError::Poisoned
        })?;
        self.size_estimate = encoded.len();
        Ok(encoded)
    }

    /// An upper bound of the stored document size, for `note_max_bytes`.
    pub fn size_estimate(&self) -> usize {
        self.size_estimate
    }

    /// Whether [`NoteDoc::apply`] failed midway and the note must be
    /// reloaded.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The note's text: the root `Y.Text` "content" (empty if absent).
    /// Other roots are synced and stored but not exported.
    pub fn text(&self) -> String {
        let txn = self.doc.transact();
        match txn.get_text(CONTENT) {
            Some(text) => text.get_string(&txn),
            None => String::new(),
        }
    }

    /// The Markdown export: a short header, then the note's own Markdown
    /// source. The header of a validated version (`validated_by` is who
    /// validated it, `when_ms` when) says so; the draft's (`None`, `when_ms`
    /// the export time) says it is not validated, so that a copy of the
    /// draft cannot pass for a validated version.
    pub fn markdown(&self, label: &str, validated_by: Option<&str>, when_ms: u64) -> String {
        let line = match validated_by {
            Some(name) => format!("Validated by {} on {}", one_line(name), utc_date(when_ms)),
            None => format!("Draft, not validated, exported on {}", utc_date(when_ms)),
        };
        format!("# {}\n\n*{line}*\n\n---\n\n{}", one_line(label), self.text())
    }
}

/// Labels and names are user input: a line break would let them write
/// arbitrary Markdown into the header.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `YYYY-MM-DD` (UTC) of a Unix time in milliseconds. Plain arithmetic
/// (the days-to-civil algorithm of H. Hinnant) rather than a date crate.
pub(super) fn utc_date(when_ms: u64) -> String {
    let days = (when_ms / 86_400_000) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
