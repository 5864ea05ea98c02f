//! Retention: events older than `retention` are removed, room by room,
//! every `retention_check`. Minors' chats are not kept forever. Kinds kept
//! as a whole are skipped (`RoomKind::retention`: notes). The same pass forgets posts' idempotency records
//! older than `idempotency_window` (one per post sent with a `key`).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::protocol;
use crate::room::Retention;

pub async fn run(hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(hub.config.retention_check);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = (hub.clock)();
        let keep_all = hub.config.retention.is_zero();
        let cutoff = now.saturating_sub(hub.config.retention.as_millis() as u64);
        let keys_before = now.saturating_sub(hub.config.idempotency_window.as_millis() as u64);
        let pass_hub = hub.clone();
        let trimmed = tokio::task::spawn_blocking(move || {
            let store = &pass_hub.store;
            let mut trimmed = Vec::new();
            for room in store.rooms()? {
                store.prune_posts(&room, keys_before)?;
                if keep_all {
                    continue;
                }
                // Some kinds are kept or erased as a whole, never by age
                // (a note's snapshot holds all its updates).
                let whole = pass_hub
                    .kinds
                    .parse(&room)
                    .is_ok_and(|name| name.kind().retention() == Retention::Whole);
                if whole {
                    continue;
                }
                let removed = store.trim_room(
                    &room,
                    |_, frame| protocol::event_ts(frame).is_some_and(|ts| ts < cutoff),
                    // The loaded room learns its new floor before anything
                    // is deleted, so no join promises a deleted offset.
                    |last| {
                        if let Some(loaded) = pass_hub.loaded_room(&room) {
                            loaded.set_floor(last);
                        }
                    },
                )?;
                if let Some(offset) = removed {
                    trimmed.push((room, offset));
                }
            }
            Ok::<_, crate::store::StoreError>(trimmed)
        })
        .await;
        match trimmed {
            Ok(Ok(trimmed)) => {
                for (room, offset) in trimmed {
                    tracing::info!(room = %room, through = offset, "retention removed old events");
                }
            }
            Ok(Err(err)) => tracing::error!(error = %err, "retention pass failed"),
            Err(err) => tracing::error!(error = %err, "retention task failed"),
        }
    }
}
