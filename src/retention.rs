//! Retention: events older than `retention` are removed, room by room,
//! every `retention_check`. Minors' chats are not kept forever.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::protocol;

pub async fn run(hub: Arc<Hub>, shutdown: CancellationToken) {
    if hub.config.retention.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(hub.config.retention_check);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let cutoff = (hub.clock)().saturating_sub(hub.config.retention.as_millis() as u64);
        let store = hub.store.clone();
        let trimmed = tokio::task::spawn_blocking(move || {
            let mut trimmed = Vec::new();
            for room in store.rooms()? {
                let removed = store.trim_room(&room, |frame| {
                    protocol::event_ts(frame).is_some_and(|ts| ts < cutoff)
                })?;
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
                    if let Some(loaded) = hub.loaded_room(&room) {
                        loaded.set_floor(offset);
                    }
                }
            }
            Ok(Err(err)) => tracing::error!(error = %err, "retention pass failed"),
            Err(err) => tracing::error!(error = %err, "retention task failed"),
        }
    }
}
