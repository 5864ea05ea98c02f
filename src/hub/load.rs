//! Loading a room from the store, and its derived state: moderation
//! (checkpoint plus replay), a forum's index, a note (snapshot plus tail,
//! versions a crash lost) and note compaction.

use super::*;

impl Hub {
    pub(super) async fn load_room(&self, name: &RoomName) -> Result<Arc<Room>, HubError> {
        let key = name.as_str().to_owned();
        let store = self.store.clone();
        let existing = {
            let key = key.clone();
            tokio::task::spawn_blocking(move || store.room_meta(&key)).await??
        };
        let epoch = match (existing, self.bus()) {
            (Some(meta), _) => Some(meta.epoch),
            (None, Some(bus)) => Some(bus.ensure_room(&key, &crate::ids::new_epoch()).await?.0),
            (None, None) => None,
        };
        let store = self.store.clone();
        let now = (self.clock)();
        let kind = name.kind();
        let (meta, bounds, moderation, forum, note) = tokio::task::spawn_blocking(move || {
            let meta = store.load_or_create_room(&key, now, epoch.as_deref())?;
            let bounds = store.bounds(&key)?;
            let last = bounds.map_or(0, |(_, last)| last);
            let forum = if kind == Kind::Forum {
                rebuild_forum(&store, &key, last)?
            } else {
                Forum::default()
            };
            let moderation = load_moderation(&store, &key, last, &forum)?;
            let note = if kind == Kind::Notes {
                Some(load_note(&store, &key, last)?)
            } else {
                None
            };
            Ok::<_, StoreError>((meta, bounds, moderation, forum, note))
        })
        .await??;
        let last = bounds.map_or(0, |(_, last)| last).max(meta.trimmed_through);
        let floor = match bounds {
            Some((first, _)) => first - 1,
            None => last,
        };
        self.metrics.rooms_loaded.increment(1.0);
        let mut room = Room::new(name.clone(), meta.epoch, floor, last, moderation)
            .with_forum(forum)
            .with_presence_limit(self.config.presence_limit);
        if let Some(note) = note {
            self.metrics.notes_loaded.increment(1.0);
            self.metrics
                .note_bytes
                .increment(note.doc.size_estimate() as f64);
            room = room.with_note_state(note, self.config.note_compact_every);
        }
        Ok(Arc::new(room))
    }
}

/// Folds a note's updates into a snapshot and deletes the events it
/// covers. Blocking: encodes the document (under the room's lock) and
/// writes to sled.
pub(super) fn compact_note(store: &Store, metrics: &Metrics, room: &Arc<Room>) {
    let Some((through, state, folded)) = room.start_compaction() else {
        return;
    };
    let name = room.name().as_str();
    let size = state.len();
    let snapshot = NoteSnapshot { through, state };
    let result = store.compact_note(name, &snapshot, |last| room.set_floor(last));
    room.end_compaction(through, folded, result.is_ok());
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
pub(super) fn load_note(store: &Store, room: &str, last: u64) -> Result<NoteState, StoreError> {
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
        let Ok(crate::protocol::ServerFrame::Event(event)) = protocol::decode_server_frame(&frame)
        else {
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
    Ok(NoteState::new(doc, through, updates, known.len() as u32))
}
/// The room's moderation state: the checkpoint plus the effects of the
/// events stored after it (a crash may have lost the last checkpoint).
/// Blocking.
pub(super) fn load_moderation(
    store: &Store,
    room: &str,
    last: u64,
    forum: &Forum,
) -> Result<Moderation, StoreError> {
    let mut state = store
        .moderation(room)?
        .and_then(|bytes| Moderation::decode(&bytes))
        .unwrap_or_default();
    if state.through >= last {
        return Ok(state);
    }
    let (frames, _) = store.read_after(room, state.through, last, usize::MAX)?;
    for frame in frames {
        let Ok(crate::protocol::ServerFrame::Event(event)) = protocol::decode_server_frame(&frame)
        else {
            continue;
        };
        let Some(effect) = Effect::of(&event).filter(Effect::is_moderation) else {
            continue;
        };
        if let Effect::Redact {
            target,
            tombstone,
            by,
            reason,
            ..
        } = &effect
        {
            let edits = forum
                .post(*target)
                .map(|p| p.edits.clone())
                .unwrap_or_default();
            redact_stored(
                store,
                room,
                (*target, tombstone),
                &edits,
                by,
                reason.as_deref(),
            )?;
        }
        state.apply(event.offset, &effect);
    }
    state.through = last;
    store.save_moderation(room, &state.encode())?;
    Ok(state)
}
/// Writes a redaction's tombstones: the message's, and one for each of its
/// edits (their text goes too). Blocking.
pub(super) fn redact_stored(
    store: &Store,
    room: &str,
    (target, tombstone): (u64, &Bytes),
    edits: &[u64],
    by: &UserInfo,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    store.rewrite_event(room, target, tombstone)?;
    for edit in edits {
        let Some(frame) = store.raw_event(room, *edit)? else {
            continue;
        };
        if let Some(tombstone) = edit_tombstone(&frame, by, reason) {
            store.rewrite_event(room, *edit, &tombstone)?;
        }
    }
    Ok(())
}
/// A forum's thread index, from every stored event. Blocking.
pub(super) fn rebuild_forum(store: &Store, room: &str, last: u64) -> Result<Forum, StoreError> {
    let (frames, _) = store.read_after(room, 0, last, usize::MAX)?;
    let events: Vec<Event> = frames
        .iter()
        .filter_map(|frame| match protocol::decode_server_frame(frame) {
            Ok(crate::protocol::ServerFrame::Event(event)) => Some(event),
            _ => None,
        })
        .collect();
    Ok(Forum::rebuild(&events))
}
