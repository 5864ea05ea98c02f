//! Loading a room from the store: its kind's state (`RoomKind::load`)
//! and its moderation state (checkpoint plus replay).

use super::*;

impl Hub {
    pub(super) async fn load_room(&self, name: &RoomName) -> Result<Arc<Room>, HubError> {
        let key = name.as_str().to_owned();
        let store = self.store.clone();
        let existing = {
            let key = key.clone();
            tokio::task::spawn_blocking(move || store.room_meta(&key)).await??
        };
        let epoch = match existing {
            Some(meta) => Some(meta.epoch),
            None => self.sequencer.epoch_of_new_room(&key).await?,
        };
        let store = self.store.clone();
        let now = (self.clock)();
        let kind = name.kind();
        let (config, metrics) = (self.config.clone(), self.metrics.clone());
        let (meta, bounds, moderation, state) = tokio::task::spawn_blocking(move || {
            let meta = store.load_or_create_room(&key, now, epoch.as_deref())?;
            let bounds = store.bounds(&key)?;
            let last = bounds.map_or(0, |(_, last)| last);
            let cx = crate::room::LoadContext {
                store: &store,
                config: &config,
                metrics: &metrics,
            };
            let state = kind.load(&cx, &key, last)?;
            let moderation = load_moderation(&store, &key, last, state.as_ref())?;
            Ok::<_, StoreError>((meta, bounds, moderation, state))
        })
        .await??;
        let last = bounds.map_or(0, |(_, last)| last).max(meta.trimmed_through);
        let floor = match bounds {
            Some((first, _)) => first - 1,
            None => last,
        };
        self.metrics.rooms_loaded.increment(1.0);
        let room = Room::new(name.clone(), meta.epoch, floor, last, moderation)
            .with_kind(state)
            .with_presence_limit(if kind.shows_presence() {
                self.config.presence_limit
            } else {
                0
            });
        room.loaded(&self.metrics);
        Ok(Arc::new(room))
    }
}

/// The room's moderation state: the checkpoint plus the effects of the
/// events stored after it (a crash may have lost the last checkpoint).
/// Blocking.
pub(super) fn load_moderation(
    store: &Store,
    room: &str,
    last: u64,
    kind: &dyn crate::room::KindState,
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
            let edits = kind.linked(*target);
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
