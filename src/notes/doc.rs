//! The server's copy of one note.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use yrs::updates::decoder::Decode;
use yrs::{
    BranchID, DeleteSet, Doc, GetString, OffsetKind, Options, ReadTxn, StateVector, Transact,
    Update, WriteTxn, ID,
};

use super::integrate::{self, Plan};
use super::scan::{self, Shape};
use super::split;
use super::{Limits, NoteError};

/// Name of the root `Y.Text` holding the note's Markdown source
/// (`doc.getText("content")` in JS).
const CONTENT: &str = "content";

/// One note's Yjs document, as the server keeps it.
///
/// The server never edits it: it only merges client updates, answers sync
/// step 1 and exports. Every client update is vetted ([`Vetted::new`],
/// [`NoteDoc::admit`]) before [`NoteDoc::apply`]; they refuse without
/// touching the document. The document never holds pending data: an update
/// is applied only if it integrates completely (`integrate.rs`).
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

/// A client update that passed every check that needs no document: size,
/// the bounds scan, decoding, and a trial run on a scratch document. What
/// is left needs the note's state: [`NoteDoc::is_noop_vetted`] and
/// [`NoteDoc::admit`].
#[derive(Debug)]
pub struct Vetted {
    bytes: Vec<u8>,
    shape: Shape,
}

impl Vetted {
    /// Vets `update`: at most `limits.max_doc_bytes` (larger ones arrive in
    /// parts and are cut into events of `max_update_bytes` later, see
    /// [`split_update`]), scanned, decoded, and applied once to a fresh
    /// scratch document under `catch_unwind`, so that an update yrs errors
    /// or panics on is refused here rather than half-applied to the real
    /// one. Linear in the update's size; callers run large ones off the
    /// async workers.
    pub fn new(update: Vec<u8>, limits: &Limits) -> Result<Vetted, NoteError> {
        if update.len() > limits.max_doc_bytes {
            return Err(NoteError::UpdateTooLarge {
                len: update.len(),
                max: limits.max_doc_bytes,
            });
        }
        let (decoded, shape) = decode(&update)?;
        let trial = catch_unwind(AssertUnwindSafe(|| {
            let scratch = new_doc();
            let mut txn = scratch.transact_mut();
            txn.apply_update(decoded)
        }));
        match trial {
            Ok(Ok(())) => Ok(Vetted {
                bytes: update,
                shape,
            }),
            _ => Err(NoteError::InvalidUpdate),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Cuts an admitted update into updates of at most `max` bytes that
/// integrate completely one after the other (`split.rs`). An update no
/// larger than `max` is returned whole. Linear in its size.
pub fn split_update(vetted: Vetted, plan: &Plan, max: usize) -> Result<Vec<Vec<u8>>, NoteError> {
    if vetted.len() <= max {
        return Ok(vec![vetted.bytes]);
    }
    split::split(&vetted.bytes, &vetted.shape, plan, max)
        .map_err(|split::TooLarge| NoteError::ValueTooLarge { max })
}

/// Decodes a client or stored update after the bounds scan: yrs alone could
/// abort the process on hostile lengths (see the `notes` module comment).
fn decode(update: &[u8]) -> Result<(Update, Shape), NoteError> {
    let shape = scan::update(update).map_err(|_| NoteError::InvalidUpdate)?;
    let decoded = Update::decode_v1(update).map_err(|_| NoteError::InvalidUpdate)?;
    Ok((decoded, shape))
}

/// Whether every item the update names as a parent is a shared type (or
/// deleted, which yrs turns into garbage): yrs returns an error midway
/// through an update otherwise, after merging the blocks before it. The
/// document's own item wins over the update's copy of the same id (yrs
/// skips duplicates); an id known to neither is left to the integration
/// check (a missing dependency), or, if it is in an update accepted but not
/// applied yet, to this same check when that update is applied.
fn parents_ok<T: ReadTxn>(txn: &T, shape: &Shape) -> bool {
    if shape.parents.is_empty() {
        return true;
    }
    let sv = txn.state_vector();
    let sections: HashMap<u32, (usize, usize)> = shape
        .sections
        .iter()
        .map(|&(client, first, end)| (client, (first as usize, end as usize)))
        .collect();
    let mut deleted: Option<DeleteSet> = None;
    shape.parents.iter().all(|&(client, clock)| {
        let id = ID::new(client, clock);
        if clock < sv.get(&client) {
            if BranchID::get_nested(txn, &id).is_some() {
                return true;
            }
            // Rare (a parent that is not a live type): one walk of the
            // block store, shared by all such parents of this update.
            return deleted
                .get_or_insert_with(|| txn.snapshot().delete_set)
                .is_deleted(&id);
        }
        let Some(&(first, end)) = u32::try_from(client).ok().and_then(|c| sections.get(&c)) else {
            return true;
        };
        // The last non-skip block of `client` starting at or before `clock`
        // (a section's blocks are in clock order).
        let blocks = &shape.blocks[first..end];
        let after = blocks.partition_point(|b| b.clock <= clock);
        match blocks[..after].iter().rev().find(|b| !b.is_skip()) {
            Some(b) if clock < b.clock + b.len => b.may_be_parent(),
            _ => true,
        }
    })
}

fn out_of_sync(dangling: integrate::Dangling) -> NoteError {
    dangling.into()
}

/// A yrs document configured like a JS `Y.Doc`: UTF-16 offsets (Yjs's
/// string lengths) and garbage collection of deleted content.
fn new_doc() -> Doc {
    Doc::with_options(Options {
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    })
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
    /// yrs merges and garbage-collects once. The rule of
    /// [`NoteDoc::apply`] holds here too, so a note loads to the state its
    /// commits built: an update that does not integrate completely at its
    /// place is skipped. Pending data from before that rule (a snapshot
    /// that carried some) is dropped, with a warning.
    pub fn load<U: AsRef<[u8]>>(
        snapshot: Option<&[u8]>,
        updates: impl IntoIterator<Item = U>,
    ) -> Result<NoteDoc, NoteError> {
        let doc = new_doc();
        let mut size_estimate = 0;
        let mut decoded = Vec::new();
        if let Some(snapshot) = snapshot {
            let (update, _) = decode(snapshot)?;
            decoded.push((update, None));
            size_estimate += snapshot.len();
        }
        for update in updates {
            let update = update.as_ref();
            let (parsed, shape) = decode(update)?;
            decoded.push((parsed, Some(shape)));
            size_estimate += update.len();
        }
        let applied = catch_unwind(AssertUnwindSafe(|| {
            let mut txn = doc.transact_mut();
            let mut skipped = 0;
            for (update, shape) in decoded {
                if let Some(shape) = shape {
                    let sv = txn.state_vector();
                    if !parents_ok(&txn, &shape) || integrate::plan(&shape, |c| sv.get(&c)).is_err()
                    {
                        skipped += 1;
                        continue;
                    }
                }
                txn.apply_update(update)?;
                if txn.has_missing_updates() {
                    // Only a snapshot from before the rule can get here.
                    tracing::warn!("pending data dropped from a stored note snapshot");
                    txn.prune_pending();
                }
            }
            Ok::<_, yrs::error::UpdateError>(skipped)
        }));
        match applied {
            Ok(Ok(skipped)) => {
                if skipped > 0 {
                    tracing::warn!(skipped, "stored note updates that do not integrate skipped");
                }
                Ok(NoteDoc {
                    doc,
                    size_estimate,
                    poisoned: false,
                })
            }
            _ => Err(NoteError::InvalidUpdate),
        }
    }

    /// Vets a client update against this document alone: [`Vetted::new`],
    /// then [`NoteDoc::admit`] with the document's own state vector. The
    /// server itself admits against the note's state *plus* the updates it
    /// accepted and has not applied yet (`NoteState::admit`).
    pub fn check(&self, update: &[u8], limits: &Limits) -> Result<(), NoteError> {
        let vetted = Vetted::new(update.to_vec(), limits)?;
        self.admit(&vetted, &self.state_vector(), limits)
            .map(|_| ())
    }

    /// The checks of a vetted update that need the document, `known` being
    /// the state vector to check against (the document's, and what updates
    /// accepted but not applied yet will add): poisoned, the size the
    /// document may reach, parents that must be shared types, and that the
    /// update integrates completely ([`NoteError::OutOfSync`] otherwise).
    /// Returns how it integrates. Reads only.
    pub fn admit(
        &self,
        vetted: &Vetted,
        known: &StateVector,
        limits: &Limits,
    ) -> Result<Plan, NoteError> {
        if self.poisoned {
            return Err(NoteError::Poisoned);
        }
        let would_be = self.size_estimate.saturating_add(vetted.len());
        // A reply that adds nothing (an empty step 2, a resent update) is
        // fine even on a full note: refusing it would only show an error to
        // a client that is merely reconnecting.
        if would_be > limits.max_doc_bytes && !self.is_noop_vetted(vetted) {
            return Err(NoteError::DocumentTooLarge {
                would_be,
                max: limits.max_doc_bytes,
            });
        }
        let doc = &self.doc;
        let parents = catch_unwind(AssertUnwindSafe(|| {
            parents_ok(&doc.transact(), &vetted.shape)
        }))
        .unwrap_or(false);
        if !parents {
            return Err(NoteError::InvalidUpdate);
        }
        integrate::plan(&vetted.shape, |client| known.get(&client)).map_err(out_of_sync)
    }

    /// Merges an update into the document, in offset order. Returns whether
    /// it changed anything: new content or new deletions.
    ///
    /// The rule every node applies at commit (and [`NoteDoc::load`] again):
    /// an update that does not integrate completely into the document as
    /// it is ([`NoteError::OutOfSync`]) or names a parent that is not a
    /// shared type ([`NoteError::InvalidUpdate`]) is not applied at all.
    /// Admission already refused such updates against the note's state plus
    /// the updates in flight; one gets here only if an update it depends on
    /// was admitted but never committed (its write failed). It is a
    /// function of the events in offset order, so every node, and every
    /// reload, skips the same ones.
    ///
    /// Why the document stays intact otherwise: everything yrs was seen to
    /// trip over (hostile lengths, bad UTF-8, content JS cannot read, clock
    /// overflow, references to a client's own future clocks, which panic in
    /// yrs's `find_pivot`, and whatever panicked in the trial run) was
    /// refused by vetting, and the checks above run again here. What is
    /// left, an error or panic while yrs integrates against the real state
    /// that no fuzz run has produced since, is caught here; since yrs may
    /// have merged part of the update by then, the note then reports
    /// [`NoteError::Poisoned`] for good and the caller must reload it from
    /// storage, which never saw this update. Pending data left despite the
    /// checks (none was ever seen) is logged and dropped, so that no sync
    /// step 2 carries it.
    pub fn apply(&mut self, update: &[u8]) -> Result<bool, NoteError> {
        if self.poisoned {
            return Err(NoteError::Poisoned);
        }
        let (decoded, shape) = decode(update)?;
        let doc = &self.doc;
        let judged = catch_unwind(AssertUnwindSafe(|| {
            let txn = doc.transact();
            if !parents_ok(&txn, &shape) {
                return Err(NoteError::InvalidUpdate);
            }
            let sv = txn.state_vector();
            integrate::plan(&shape, |client| sv.get(&client)).map_err(out_of_sync)
        }))
        .unwrap_or(Err(NoteError::InvalidUpdate));
        judged?;
        let applied = catch_unwind(AssertUnwindSafe(|| {
            let mut txn = doc.transact_mut();
            let before = txn.state_vector();
            txn.apply_update(decoded)?;
            let pending = txn.has_missing_updates();
            if pending {
                txn.prune_pending();
            }
            let after = txn.state_vector();
            Ok::<_, yrs::error::UpdateError>((
                after != before || !txn.delete_set().is_empty(),
                pending,
            ))
        }));
        match applied {
            Ok(Ok((changed, pending))) => {
                if pending {
                    tracing::error!(
                        bytes = update.len(),
                        "an update that passed the integration check left pending data (dropped)"
                    );
                }
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
        let shape = scan::update(update).map_err(|_| NoteError::InvalidUpdate)?;
        Ok(self.is_noop_shape(&shape))
    }

    /// [`NoteDoc::is_noop`] of a vetted update.
    pub fn is_noop_vetted(&self, vetted: &Vetted) -> bool {
        self.is_noop_shape(&vetted.shape)
    }

    fn is_noop_shape(&self, shape: &Shape) -> bool {
        let doc = &self.doc;
        catch_unwind(AssertUnwindSafe(|| {
            let txn = doc.transact();
            let sv = txn.state_vector();
            let news = shape
                .blocks
                .iter()
                .any(|b| !b.is_skip() && b.clock + b.len > sv.get(&u64::from(b.client)));
            if news {
                return false;
            }
            if shape.deletes.is_empty() {
                return true;
            }
            // Walks the whole block store: only reached by updates that
            // carry deletions and no new block (a reconnecting client's
            // step 2), not by live typing.
            let known = txn.snapshot().delete_set;
            let mut deletes = DeleteSet::new();
            for &(client, start, end) in &shape.deletes {
                deletes.insert(ID::new(u64::from(client), start), end - start);
            }
            deletes.squash();
            deletes
                .iter()
                .all(|(client, ranges)| match known.range(client) {
                    Some(known) => ranges.subset_of(known),
                    None => false,
                })
        }))
        .unwrap_or(false)
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

    /// Whether yrs holds pending data (never, by the rule of
    /// [`NoteDoc::apply`]; for tests and assertions).
    pub fn has_pending(&self) -> bool {
        self.doc.transact().has_missing_updates()
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
        format!(
            "# {}\n\n*{line}*\n\n---\n\n{}",
            one_line(label),
            self.text()
        )
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
