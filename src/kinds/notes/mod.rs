//! Shared notes: one Yjs document per room (collective note-taking that
//! the teacher validates). Members sync and edit it with the standard
//! y-protocols messages (`requests.rs`); its state is the document with
//! what compaction and validation need (`state.rs`); `crate::notes` holds
//! the Yjs rules themselves (vetting, admission, splitting, awareness).
//!
//! Stored as a snapshot plus the updates after it: a note's updates are
//! folded into the snapshot every `note_compact_every` updates, and when
//! its last member leaves.

mod requests;
pub mod state;

use std::any::Any;
use std::sync::Arc;

use crate::auth::Claims;
use crate::effect::Effect;
use crate::metrics::Metrics;
use crate::notes::{NoteDoc, NoteError};
use crate::protocol::{
    self, Body, ErrorCode, ForumSettings, ModAction, NoteVersionInfo, Request, Role,
};
use crate::room::policy::{self, Action};
use crate::room::{
    Chore, Commit, CommitRefusal, KindState, LoadContext, Retention, Room, RoomKind, RoomName,
};
use crate::session::kind::{BoxFuture, Handled, KindHandler, KindRequest};
use crate::session::{Refusal, Session};
use crate::store::{NoteSnapshot, Store, StoreError, StoredVersion};

pub use state::NoteState;

/// The kind's name in room names.
pub const NAME: &str = "notes";

pub struct Notes;

impl RoomKind for Notes {
    fn name(&self) -> &'static str {
        NAME
    }

    /// The pupils' space: pupils and teachers of the class edit, teachers
    /// validate; parents never read it.
    fn allowed(
        &self,
        user: &Claims,
        room: &RoomName,
        _grants: Option<&ForumSettings>,
        action: Action,
    ) -> bool {
        policy::pupils_space(user, room, action)
    }

    /// The snapshot, then the updates stored after it (and versions whose
    /// record a crash lost, written again).
    fn load(
        &self,
        cx: &LoadContext<'_>,
        room: &str,
        last: u64,
    ) -> Result<Box<dyn KindState>, StoreError> {
        let note = load_note(cx.store, room, last, cx.config.note_compact_every)?;
        Ok(Box::new(note))
    }

    /// A note's updates are folded into its snapshot, which holds them
    /// all: deleting old ones would lose the text. Notes are erased as a
    /// whole, not by age.
    fn retention(&self) -> Retention {
        Retention::Whole
    }
}

impl KindState for NoteState {
    /// A note update is applied before anyone hears of it: one that does
    /// not integrate into the note as it is (`NoteDoc::apply`: an update
    /// it depends on was never written) is refused, on every node alike;
    /// the event stays stored, inert (loading skips it the same way) until
    /// compaction removes it.
    fn check_commit(
        &mut self,
        commit: &Commit<'_>,
        chores: &mut Vec<Chore>,
    ) -> Result<(), CommitRefusal> {
        let Some(Effect::NoteUpdate(update)) = commit.effect else {
            return Ok(());
        };
        let applied = self.doc.apply(update);
        self.since_snapshot += 1;
        if self.since_snapshot >= self.compact_every && !self.compacting {
            chores.push(compaction());
        }
        let refused = matches!(
            applied,
            Err(NoteError::OutOfSync { .. } | NoteError::InvalidUpdate)
        );
        self.settle(refused);
        match applied {
            Err(err) if refused => Err(CommitRefusal {
                code: err.code(),
                message: format!("{err}: not applied"),
                waiter_code: ErrorCode::OutOfSync,
                waiter_message: format!("not applied: {err}"),
            }),
            Err(err) => {
                tracing::error!(room = %commit.room, offset = commit.offset, error = %err, "cannot apply a stored note update");
                Ok(())
            }
            Ok(_) => Ok(()),
        }
    }

    /// A validation stores the note as it is now as a version.
    fn apply(&mut self, commit: &Commit<'_>, chores: &mut Vec<Chore>) {
        let Some(Effect::Action {
            action: ModAction::Validate { label, .. },
            ..
        }) = commit.effect
        else {
            return;
        };
        self.versions += 1;
        let state = match self.doc.snapshot() {
            Ok(state) => state,
            Err(err) => {
                tracing::error!(room = %commit.room, offset = commit.offset, error = %err, "cannot snapshot a validated note");
                return;
            }
        };
        let stored = StoredVersion {
            info: NoteVersionInfo {
                version: self.versions,
                label: label.clone(),
                by: protocol::event_from(commit.frame).unwrap_or_else(unknown_user),
                ts: protocol::event_ts(commit.frame).unwrap_or(0),
                offset: commit.offset,
            },
            state,
        };
        chores.push(Chore {
            off_writer: false,
            run: Box::new(move |cx| {
                let number = stored.info.version;
                if let Err(err) = cx.store.save_version(cx.room.name().as_str(), number, &stored) {
                    // Loading the note writes it again from the stored events.
                    tracing::error!(room = %cx.room.name(), error = %err, "cannot store a note version");
                }
            }),
        });
    }

    /// Updates admitted after a lost one may depend on it.
    fn skipped(&mut self) {
        self.settle(true);
    }

    /// Its last member left: updates since the snapshot are folded first.
    fn before_unload(&self) -> Option<Chore> {
        (self.since_snapshot > 0 && !self.compacting).then(compaction)
    }

    fn loaded(&self, metrics: &Metrics) {
        metrics.notes_loaded.increment(1.0);
        metrics
            .note_bytes
            .increment(self.doc.size_estimate() as f64);
    }

    fn unloaded(&self, metrics: &Metrics) {
        metrics.notes_loaded.decrement(1.0);
        metrics
            .note_bytes
            .decrement(self.doc.size_estimate() as f64);
    }
}

fn unknown_user() -> protocol::UserInfo {
    protocol::UserInfo {
        id: String::new(),
        name: String::new(),
        role: protocol::Role::Staff,
    }
}

/// Compacting the note, off the writer thread: encoding a large document
/// takes a while.
fn compaction() -> Chore {
    Chore {
        off_writer: true,
        run: Box::new(|cx| compact_note(cx.store, cx.metrics, cx.room)),
    }
}

/// Folds a note's updates into a snapshot and deletes the events it
/// covers. Blocking: encodes the document (under the room's lock) and
/// writes to sled.
fn compact_note(store: &Store, metrics: &Metrics, room: &Arc<Room>) {
    // Its state now, the offset it covers (every committed update), and
    // how many updates it folds; none if nothing to fold or a compaction
    // already runs.
    let started = room
        .with_state(|note: &mut NoteState, view| {
            if note.compacting || note.since_snapshot == 0 {
                return None;
            }
            let snapshot = note.doc.snapshot().ok()?;
            note.compacting = true;
            Some((view.head, snapshot, note.since_snapshot))
        })
        .flatten();
    let Some((through, state, folded)) = started else {
        return;
    };
    let name = room.name().as_str();
    let size = state.len();
    let snapshot = NoteSnapshot { through, state };
    let result = store.compact_note(name, &snapshot, |last| room.set_floor(last));
    let stored = result.is_ok();
    room.with_state(|note: &mut NoteState, _| {
        note.compacting = false;
        if stored {
            note.snapshot_through = through;
            note.since_snapshot = note.since_snapshot.saturating_sub(folded);
        }
    });
    match result {
        Ok(()) => {
            metrics.note_compactions.increment(1);
            tracing::debug!(room = %name, through, folded, bytes = size, "note compacted");
        }
        Err(err) => tracing::error!(room = %name, error = %err, "note compaction failed"),
    }
}

/// A note as stored: its snapshot, then the updates stored after it (and
/// versions whose record a crash lost, written again). Blocking.
fn load_note(
    store: &Store,
    room: &str,
    last: u64,
    compact_every: u64,
) -> Result<NoteState, StoreError> {
    let snapshot = store.note_snapshot(room)?;
    let through = snapshot.as_ref().map_or(0, |s| s.through);
    let mut doc = match &snapshot {
        Some(s) => NoteDoc::load(Some(&s.state), std::iter::empty::<&[u8]>()),
        None => Ok(NoteDoc::new()),
    }
    .map_err(|e| StoreError::Corrupt {
        room: room.to_owned(),
        message: format!("note snapshot: {e}"),
    })?;
    let mut known: Vec<NoteVersionInfo> = store.versions(room)?;
    let (frames, _) = store.read_after(room, through, last, usize::MAX)?;
    let mut updates = 0;
    for frame in frames {
        let Ok(protocol::ServerFrame::Event(event)) = protocol::decode_server_frame(&frame) else {
            continue;
        };
        match &event.body {
            Body::YjsUpdate { data } => {
                if let Err(err) = doc.apply(data) {
                    tracing::error!(room, offset = event.offset, error = %err, "stored note update skipped");
                }
                updates += 1;
            }
            Body::Moderation {
                action: ModAction::Validate { label, .. },
                ..
            } if !known.iter().any(|v| v.offset == event.offset) => {
                let version = known.iter().filter(|v| v.offset < event.offset).count() as u32 + 1;
                let state = doc.snapshot().map_err(|e| StoreError::Corrupt {
                    room: room.to_owned(),
                    message: format!("note version: {e}"),
                })?;
                let info = NoteVersionInfo {
                    version,
                    label: label.clone(),
                    by: event.from.clone(),
                    ts: event.ts,
                    offset: event.offset,
                };
                store.save_version(
                    room,
                    version,
                    &StoredVersion {
                        info: info.clone(),
                        state,
                    },
                )?;
                known.push(info);
            }
            _ => {}
        }
    }
    Ok(NoteState::new(
        doc,
        through,
        updates,
        known.len() as u32,
        compact_every,
    ))
}

/// What a member keeps per joined note.
#[derive(Default)]
pub(crate) struct Member {
    /// The awareness client ids this connection owns.
    awareness: crate::notes::AwarenessGuard,
    /// A message this connection is sending in parts.
    parts: crate::notes::Parts,
    /// When a sync step 2 larger than the outbound budget allows was last
    /// queued outside it.
    large_step2_at: Option<tokio::time::Instant>,
}

impl KindHandler for Notes {
    fn requests(&self) -> &'static [&'static str] {
        &["yjs", "note_versions", "note_export"]
    }

    /// A validated version tells the class's pupils (from the school
    /// directory), through their feeds: the version they may now revise
    /// from.
    fn moderated(&self, session: &Session, room: &Room, action: &ModAction) {
        let ModAction::Validate { label, .. } = action else {
            return;
        };
        let Ok(by) = session.user() else {
            return;
        };
        let pupils: Vec<(String, Role)> = session
            .hub
            .directory
            .current()
            .pupils_of(room.name().class())
            .map(|p| (p.id.clone(), p.role))
            .collect();
        if pupils.is_empty() {
            return;
        }
        let fields = crate::kinds::inbox::NotifyFields {
            what: "note".to_owned(),
            room: room.name().to_string(),
            at: None,
            title: format!("Note validée : {label}"),
            preview: None,
            by: Some(by.clone()),
            hold_until: None,
            urgent: false,
        };
        let key = format!("note-{}", crate::ids::new_epoch());
        crate::kinds::inbox::notify_many(session.hub.clone(), pupils, fields, key);
    }

    fn handle<'a>(
        &'static self,
        session: &'a mut Session,
        request: KindRequest,
    ) -> BoxFuture<'a, Handled> {
        Box::pin(async move {
            let KindRequest::Decoded(request) = request else {
                return Err(crate::session::kind::not_owned(NAME, request.type_name()));
            };
            let id = request.id();
            match request {
                Request::Yjs {
                    room, data, more, ..
                } => requests::yjs(session, id, &room, data, more.unwrap_or(false)).await,
                Request::NoteVersions { room, .. } => {
                    requests::note_versions(session, id, &room).await
                }
                Request::NoteExport {
                    room,
                    version,
                    format,
                    ..
                } => requests::note_export(session, id, &room, version, format).await,
                other => Err(crate::session::kind::not_owned(NAME, other.type_name())),
            }
        })
    }

    /// `validate` is the notes' own moderation action.
    fn check_action(
        &self,
        _session: &Session,
        room: &Room,
        action: &ModAction,
    ) -> Result<(), Refusal> {
        match action {
            ModAction::Validate { .. } => Ok(()),
            other => crate::session::kind::refuse_kind_actions(room, other),
        }
    }

    fn member_state(&self) -> Option<Box<dyn Any + Send + Sync>> {
        Some(Box::new(Member::default()))
    }

    fn left(&self, session: &Session, room: &Room, state: Box<dyn Any + Send + Sync>) {
        if let Ok(member) = state.downcast::<Member>() {
            requests::drop_awareness(room, session.conn(), &member.awareness);
        }
    }
}
