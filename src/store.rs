//! Durable storage in sled: the only module that touches sled.
//!
//! Trees:
//! - `rooms`: room name → [`RoomMeta`] (MessagePack), the room's epoch.
//! - `events`: `room name ‖ 0x00 ‖ offset (u64 big-endian)` → the event frame
//!   exactly as delivered on the wire, so history is served without re-encoding.
//! - in `events`, beside a note's events: `room ‖ 0x02 note` → its snapshot
//!   ([`NoteSnapshot`]), and `room ‖ 0x03 ‖ version (u32 big-endian)` → each
//!   validated version ([`StoredVersion`]), immutable.
//! - `reads`: `room name ‖ 0x00 ‖ user id ‖ 0x00 ‖ thread (u64 big-endian)` →
//!   the last offset the user read in that forum thread (u64 big-endian).
//!
//! Writes go through one writer thread that batches whatever is queued into
//! one sled batch and one flush (group commit), then runs each job's callback
//! in queue order. A callback therefore only ever sees durable data, and
//! callbacks of one room run in the order its jobs were queued.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Jobs written together at most (one sled batch, one flush).
const MAX_BATCH: usize = 4096;
/// A group commit slower than this is logged: every post waiting on it is
/// that late for everyone (a classroom notices a quarter of a second).
const SLOW_COMMIT: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("storage failure: {0}")]
    Sled(String),
    #[error("write queue is full")]
    Full,
    #[error("store is shut down")]
    Closed,
    #[error("corrupt room metadata for {room}: {message}")]
    Corrupt { room: String, message: String },
}

impl From<sled::Error> for StoreError {
    fn from(err: sled::Error) -> Self {
        StoreError::Sled(err.to_string())
    }
}

/// What the store keeps about a room besides its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMeta {
    pub epoch: String,
    pub created_ms: u64,
    /// The last offset retention removed, so offsets are never reused even
    /// when every event of the room has expired.
    #[serde(default)]
    pub trimmed_through: u64,
}

/// A note's compacted state: every update through `through`, as one Yjs
/// v1 update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteSnapshot {
    pub through: u64,
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
}

/// A validated version of a note, never changed once written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredVersion {
    pub info: crate::protocol::NoteVersionInfo,
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
}

/// Called on the writer thread once the job's batch is durable (or failed).
pub type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// One event to append.
pub struct Job {
    pub room: String,
    pub offset: u64,
    pub frame: Bytes,
    pub done: Done,
}

/// Observations of one group commit, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct CommitStats {
    pub jobs: usize,
    pub seconds: f64,
}

pub struct Store {
    db: sled::Db,
    events: sled::Tree,
    rooms: sled::Tree,
    reads: sled::Tree,
    writer: Mutex<Option<(SyncSender<Job>, JoinHandle<()>)>>,
}

impl Store {
    /// Opens (or creates) the store in `dir` and starts the writer thread.
    /// Blocking.
    pub fn open(
        dir: &Path,
        queue: usize,
        on_commit: impl Fn(CommitStats) + Send + 'static,
    ) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir.join("sled"))
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let events = db.open_tree("events")?;
        let rooms = db.open_tree("rooms")?;
        let reads = db.open_tree("reads")?;
        let (tx, rx) = mpsc::sync_channel(queue);
        let writer_db = db.clone();
        let writer_events = events.clone();
        let handle = std::thread::Builder::new()
            .name("preau-store-writer".to_owned())
            .spawn(move || write_loop(&writer_db, &writer_events, rx, on_commit))
            .map_err(|e| StoreError::Sled(format!("cannot start writer thread: {e}")))?;
        Ok(Store {
            db,
            events,
            rooms,
            reads,
            writer: Mutex::new(Some((tx, handle))),
        })
    }

    /// Queues an append without blocking. On error the job is not queued and
    /// its callback is dropped uncalled.
    pub fn submit(&self, job: Job) -> Result<(), StoreError> {
        let guard = self.writer.lock();
        let Some((tx, _)) = guard.as_ref() else {
            return Err(StoreError::Closed);
        };
        tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => StoreError::Full,
            TrySendError::Disconnected(_) => StoreError::Closed,
        })
    }

    /// Stops the writer after it wrote everything queued, then flushes. Blocking.
    pub fn shutdown(&self) -> Result<(), StoreError> {
        let writer = self.writer.lock().take();
        if let Some((tx, handle)) = writer {
            drop(tx);
            if handle.join().is_err() {
                tracing::error!("store writer thread panicked");
            }
        }
        self.db.flush()?;
        Ok(())
    }

    /// The room's metadata, created with `epoch` (or a fresh one) if it has
    /// none. Blocking.
    pub fn load_or_create_room(
        &self,
        room: &str,
        now_ms: u64,
        epoch: Option<&str>,
    ) -> Result<RoomMeta, StoreError> {
        if let Some(bytes) = self.rooms.get(room)? {
            return rmp_serde::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                room: room.to_owned(),
                message: e.to_string(),
            });
        }
        let meta = RoomMeta {
            epoch: epoch.map_or_else(new_epoch, str::to_owned),
            created_ms: now_ms,
            trimmed_through: 0,
        };
        let bytes = rmp_serde::to_vec_named(&meta).map_err(|e| StoreError::Corrupt {
            room: room.to_owned(),
            message: e.to_string(),
        })?;
        // Not flushed here: the room's first event flushes it. Losing an
        // event-less room's epoch in a crash loses nothing a client could hold.
        match self
            .rooms
            .compare_and_swap(room, None as Option<&[u8]>, Some(bytes))?
        {
            Ok(()) => Ok(meta),
            Err(current) => match current.current {
                Some(bytes) => rmp_serde::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                    room: room.to_owned(),
                    message: e.to_string(),
                }),
                None => Ok(meta),
            },
        }
    }

    /// `(first, last)` offsets stored for the room, `None` when it has none. Blocking.
    pub fn bounds(&self, room: &str) -> Result<Option<(u64, u64)>, StoreError> {
        let prefix = room_prefix(room);
        let mut scan = self.events.scan_prefix(&prefix);
        let first = match scan.next() {
            Some(entry) => offset_of(&entry?.0),
            None => return Ok(None),
        };
        let last = match scan.next_back() {
            Some(entry) => offset_of(&entry?.0),
            None => first,
        };
        Ok(Some((first, last)))
    }

    /// Events with `after < offset <= through`, ascending, at most `limit`;
    /// the flag says whether more events remain in that range. Blocking.
    pub fn read_after(
        &self,
        room: &str,
        after: u64,
        through: u64,
        limit: usize,
    ) -> Result<(Vec<Bytes>, bool), StoreError> {
        if after >= through {
            return Ok((Vec::new(), false));
        }
        let range = event_key(room, after.saturating_add(1))..=event_key(room, through);
        let mut out = Vec::new();
        for entry in self.events.range(range) {
            if out.len() == limit {
                return Ok((out, true));
            }
            out.push(Bytes::copy_from_slice(&entry?.1));
        }
        Ok((out, false))
    }

    /// Events with `offset < before`, the newest `limit` of them, ascending;
    /// the flag says whether older events remain. Blocking.
    pub fn read_before(
        &self,
        room: &str,
        before: u64,
        limit: usize,
    ) -> Result<(Vec<Bytes>, bool), StoreError> {
        let range = event_key(room, 0)..event_key(room, before);
        let mut out = Vec::new();
        let mut more = false;
        for entry in self.events.range(range).rev() {
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(Bytes::copy_from_slice(&entry?.1));
        }
        out.reverse();
        Ok((out, more))
    }

    /// The room's metadata, if it has any. Blocking.
    pub fn room_meta(&self, room: &str) -> Result<Option<RoomMeta>, StoreError> {
        match self.rooms.get(room)? {
            Some(bytes) => {
                rmp_serde::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt {
                        room: room.to_owned(),
                        message: e.to_string(),
                    })
            }
            None => Ok(None),
        }
    }

    /// Every room with metadata. Blocking.
    pub fn rooms(&self) -> Result<Vec<String>, StoreError> {
        self.rooms
            .iter()
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?).into_owned()))
            .collect()
    }

    /// The names of the rooms with metadata that start with `prefix`.
    /// Blocking.
    pub fn rooms_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.rooms
            .scan_prefix(prefix.as_bytes())
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?).into_owned()))
            .collect()
    }

    /// Records that `user` read `thread` of forum `room` up to `offset`
    /// (never moving back). Not flushed: a lost read mark only shows a
    /// post as unread again. Blocking.
    pub fn mark_read(
        &self,
        room: &str,
        user: &str,
        thread: u64,
        offset: u64,
    ) -> Result<(), StoreError> {
        let mut key = reads_prefix(room, user);
        key.extend_from_slice(&thread.to_be_bytes());
        self.reads.fetch_and_update(key, |old| {
            let old = old.map_or(0, offset_of);
            Some(old.max(offset).to_be_bytes().to_vec())
        })?;
        Ok(())
    }

    /// The user's read marks in forum `room`: thread → last offset read.
    /// Blocking.
    pub fn read_marks(
        &self,
        room: &str,
        user: &str,
    ) -> Result<std::collections::HashMap<u64, u64>, StoreError> {
        self.reads
            .scan_prefix(reads_prefix(room, user))
            .map(|entry| {
                let (key, value) = entry?;
                Ok((offset_of(&key), offset_of(&value)))
            })
            .collect()
    }

    /// The note's snapshot, if it was ever compacted. Blocking.
    pub fn note_snapshot(&self, room: &str) -> Result<Option<NoteSnapshot>, StoreError> {
        let Some(bytes) = self.events.get(note_key(room))? else {
            return Ok(None);
        };
        rmp_serde::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                room: room.to_owned(),
                message: format!("note snapshot: {e}"),
            })
    }

    /// Compacts a note: writes the snapshot (flushed), then deletes the
    /// events it covers (through `trim_room`, so offsets are never reused
    /// and `announce` learns the new floor first). A crash in between
    /// leaves events the snapshot already holds: loading skips them.
    /// Blocking.
    pub fn compact_note(
        &self,
        room: &str,
        snapshot: &NoteSnapshot,
        announce: impl FnOnce(u64),
    ) -> Result<(), StoreError> {
        let bytes = rmp_serde::to_vec_named(snapshot).map_err(|e| StoreError::Corrupt {
            room: room.to_owned(),
            message: format!("note snapshot: {e}"),
        })?;
        self.events.insert(note_key(room), bytes)?;
        self.db.flush()?;
        let through = snapshot.through;
        self.trim_room(
            room,
            |frame| crate::protocol::event_offset(frame).is_some_and(|o| o <= through),
            announce,
        )?;
        Ok(())
    }

    /// Stores a validated version (not flushed: the event that made it is
    /// durable, and loading the note writes a missing version again).
    /// Blocking.
    pub fn save_version(&self, room: &str, version: &StoredVersion) -> Result<(), StoreError> {
        let bytes = rmp_serde::to_vec_named(version).map_err(|e| StoreError::Corrupt {
            room: room.to_owned(),
            message: format!("note version: {e}"),
        })?;
        self.events
            .insert(version_key(room, version.info.version), bytes)?;
        Ok(())
    }

    /// One validated version. Blocking.
    pub fn version(&self, room: &str, version: u32) -> Result<Option<StoredVersion>, StoreError> {
        let Some(bytes) = self.events.get(version_key(room, version))? else {
            return Ok(None);
        };
        rmp_serde::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                room: room.to_owned(),
                message: format!("note version: {e}"),
            })
    }

    /// Every validated version's description, oldest first. Blocking.
    pub fn versions(
        &self,
        room: &str,
    ) -> Result<Vec<crate::protocol::NoteVersionInfo>, StoreError> {
        let mut prefix = room.as_bytes().to_vec();
        prefix.push(3);
        self.events
            .scan_prefix(prefix)
            .values()
            .map(|value| {
                let value = value?;
                rmp_serde::from_slice::<StoredVersion>(&value)
                    .map(|v| v.info)
                    .map_err(|e| StoreError::Corrupt {
                        room: room.to_owned(),
                        message: format!("note version: {e}"),
                    })
            })
            .collect()
    }

    /// The stored events at `offsets` (missing ones skipped). Blocking.
    pub fn read_offsets(&self, room: &str, offsets: &[u64]) -> Result<Vec<Bytes>, StoreError> {
        let mut frames = Vec::with_capacity(offsets.len());
        for offset in offsets {
            if let Some(frame) = self.events.get(event_key(room, *offset))? {
                frames.push(Bytes::copy_from_slice(&frame));
            }
        }
        Ok(frames)
    }

    /// Removes the room's oldest events while `expired(frame)` says so,
    /// stopping at the first one to keep. Before anything is deleted it
    /// calls `announce(last)` (so readers stop promising those offsets) and
    /// records `last` in the room's metadata (so offsets are never reused).
    /// Returns `last`, the last offset removed, if any. Blocking.
    pub fn trim_room(
        &self,
        room: &str,
        mut expired: impl FnMut(&[u8]) -> bool,
        announce: impl FnOnce(u64),
    ) -> Result<Option<u64>, StoreError> {
        let mut last = None;
        for entry in self.events.scan_prefix(room_prefix(room)) {
            let (key, value) = entry?;
            if !expired(&value) {
                break;
            }
            last = Some(offset_of(&key));
        }
        let Some(last) = last else {
            return Ok(None);
        };
        announce(last);
        let corrupt = |message: String| StoreError::Corrupt {
            room: room.to_owned(),
            message,
        };
        let mut meta: RoomMeta = match self.rooms.get(room)? {
            Some(bytes) => rmp_serde::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?,
            None => return Err(corrupt("events without metadata".to_owned())),
        };
        meta.trimmed_through = meta.trimmed_through.max(last);
        let bytes = rmp_serde::to_vec_named(&meta).map_err(|e| corrupt(e.to_string()))?;
        self.rooms.insert(room, bytes)?;
        let mut batch = sled::Batch::default();
        for key in self
            .events
            .range(event_key(room, 0)..=event_key(room, last))
            .keys()
        {
            batch.remove(key?);
        }
        self.events.apply_batch(batch)?;
        self.db.flush()?;
        Ok(Some(last))
    }

    /// The room's moderation checkpoint (opaque bytes), if any. Blocking.
    pub fn moderation(&self, room: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .events
            .get(moderation_key(room))?
            .map(|v| Bytes::copy_from_slice(&v)))
    }

    /// Writes the room's moderation checkpoint and, for a redaction, the
    /// tombstone over the redacted event, in one batch. Not flushed: the
    /// event that caused it is, and loading a room replays events after the
    /// checkpoint. Blocking.
    pub fn save_moderation(
        &self,
        room: &str,
        state: &[u8],
        rewrite: Option<(u64, &[u8])>,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        batch.insert(moderation_key(room), state);
        if let Some((offset, frame)) = rewrite {
            batch.insert(event_key(room, offset), frame);
        }
        self.events.apply_batch(batch)?;
        Ok(())
    }

    /// Overwrites one stored event (a redaction's tombstone). Not flushed:
    /// see [`Store::save_moderation`]. Blocking.
    pub fn rewrite_event(&self, room: &str, offset: u64, frame: &[u8]) -> Result<(), StoreError> {
        self.events.insert(event_key(room, offset), frame)?;
        Ok(())
    }

    /// Like [`Store::read_after`], each event with its offset (for scans
    /// that must move on past an event they cannot read). Blocking.
    pub fn read_page(
        &self,
        room: &str,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<(u64, Bytes)>, bool), StoreError> {
        let range = event_key(room, after.saturating_add(1))..=event_key(room, u64::MAX);
        let mut out = Vec::new();
        for entry in self.events.range(range) {
            if out.len() == limit {
                return Ok((out, true));
            }
            let (key, value) = entry?;
            out.push((offset_of(&key), Bytes::copy_from_slice(&value)));
        }
        Ok((out, false))
    }

    /// Overwrites one stored event if it still holds `old` (so an event
    /// deleted or rewritten meanwhile, by retention, a note's compaction or
    /// a redaction, is left alone); whether it did. Not flushed:
    /// [`Store::flush`]. Blocking.
    pub fn replace_event(
        &self,
        room: &str,
        offset: u64,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        Ok(self
            .events
            .compare_and_swap(event_key(room, offset), Some(old), Some(new))?
            .is_ok())
    }

    /// Every forum read mark of `user`: `(room, thread, last offset read)`.
    /// Scans all read marks. Blocking.
    pub fn read_marks_of(&self, user: &str) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let mut marks = Vec::new();
        for entry in self.reads.iter() {
            let (key, value) = entry?;
            if let Some(room) = reads_key_room(&key, user) {
                marks.push((room, offset_of(&key), offset_of(&value)));
            }
        }
        Ok(marks)
    }

    /// Deletes every forum read mark of `user`; how many. Not flushed:
    /// [`Store::flush`]. Blocking.
    pub fn delete_read_marks_of(&self, user: &str) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for entry in self.reads.iter() {
            let (key, _) = entry?;
            if reads_key_room(&key, user).is_some() {
                self.reads.remove(&key)?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Makes every write so far durable. Blocking.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// The raw stored bytes of one event, for tests that inspect storage. Blocking.
    pub fn raw_event(&self, room: &str, offset: u64) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .events
            .get(event_key(room, offset))?
            .map(|v| Bytes::copy_from_slice(&v)))
    }
}

fn write_loop(
    db: &sled::Db,
    events: &sled::Tree,
    rx: Receiver<Job>,
    on_commit: impl Fn(CommitStats),
) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let mut batch = sled::Batch::default();
        for job in &jobs {
            batch.insert(event_key(&job.room, job.offset), job.frame.as_ref());
        }
        let result = events
            .apply_batch(batch)
            .and_then(|()| db.flush().map(|_| ()))
            .map_err(StoreError::from);
        if let Err(err) = &result {
            tracing::error!(error = %err, jobs = jobs.len(), "group commit failed");
        }
        let elapsed = started.elapsed();
        if elapsed >= SLOW_COMMIT {
            // Every room's acks and deliveries waited on this one.
            tracing::warn!(
                ms = elapsed.as_millis() as u64,
                jobs = jobs.len(),
                "slow group commit: the disk took this long to flush"
            );
        }
        on_commit(CommitStats {
            jobs: jobs.len(),
            seconds: elapsed.as_secs_f64(),
        });
        for job in jobs {
            (job.done)(result.clone());
        }
    }
}

fn room_prefix(room: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(room.len() + 1);
    key.extend_from_slice(room.as_bytes());
    key.push(0);
    key
}

fn note_key(room: &str) -> Vec<u8> {
    let mut key = room.as_bytes().to_vec();
    key.extend_from_slice(b"\x02note");
    key
}

fn version_key(room: &str, version: u32) -> Vec<u8> {
    let mut key = room.as_bytes().to_vec();
    key.push(3);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

fn reads_prefix(room: &str, user: &str) -> Vec<u8> {
    let mut key = room_prefix(room);
    key.extend_from_slice(user.as_bytes());
    key.push(0);
    key
}

/// The room of a `reads` key if the key is one of `user`'s read marks
/// (`room ‖ 0x00 ‖ user ‖ 0x00 ‖ thread`; a room name holds no 0x00).
fn reads_key_room(key: &[u8], user: &str) -> Option<String> {
    let head = key.len().checked_sub(8)?;
    let head = key[..head].strip_suffix(&[0])?;
    let split = head.iter().position(|b| *b == 0)?;
    (&head[split + 1..] == user.as_bytes())
        .then(|| String::from_utf8_lossy(&head[..split]).into_owned())
}

/// Beside the room's events (`room ‖ 0x00 ‖ …`), never inside their range.
fn moderation_key(room: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(room.len() + 4);
    key.extend_from_slice(room.as_bytes());
    key.extend_from_slice(b"\x01mod");
    key
}

fn event_key(room: &str, offset: u64) -> Vec<u8> {
    let mut key = room_prefix(room);
    key.extend_from_slice(&offset.to_be_bytes());
    key
}

fn offset_of(key: &[u8]) -> u64 {
    let mut be = [0u8; 8];
    if key.len() >= 8 {
        be.copy_from_slice(&key[key.len() - 8..]);
    }
    u64::from_be_bytes(be)
}

/// A fresh epoch: 8 random bytes, hex (a string, so JavaScript keeps it exact).
pub fn new_epoch() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_read_and_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 16, |_| {}).unwrap();
        let meta = store.load_or_create_room("3B/chat/a", 1, None).unwrap();
        assert_eq!(
            store.load_or_create_room("3B/chat/a", 2, None).unwrap(),
            meta
        );
        let (tx, rx) = std::sync::mpsc::channel();
        for offset in 1..=5u64 {
            let tx = tx.clone();
            store
                .submit(Job {
                    room: "3B/chat/a".into(),
                    offset,
                    frame: Bytes::from(vec![offset as u8]),
                    done: Box::new(move |r| tx.send((offset, r.is_ok())).unwrap()),
                })
                .unwrap();
        }
        let done: Vec<_> = (0..5).map(|_| rx.recv().unwrap()).collect();
        assert_eq!(done, (1..=5).map(|o| (o, true)).collect::<Vec<_>>());
        // A room whose name is a prefix of another must not see its events.
        assert_eq!(store.bounds("3B/chat/a").unwrap(), Some((1, 5)));
        assert_eq!(store.bounds("3B/chat/").unwrap(), None);
        let (page, more) = store.read_after("3B/chat/a", 1, 5, 2).unwrap();
        assert_eq!((page.len(), more), (2, true));
        assert_eq!(page[0].as_ref(), &[2]);
        let (page, more) = store.read_before("3B/chat/a", 5, 2).unwrap();
        assert_eq!(page.iter().map(|b| b[0]).collect::<Vec<_>>(), vec![3, 4]);
        assert!(more);
        let mut announced = None;
        let removed = store
            .trim_room("3B/chat/a", |v| v[0] < 3, |last| announced = Some(last))
            .unwrap();
        assert_eq!(removed, Some(2));
        assert_eq!(announced, Some(2));
        assert_eq!(
            store
                .load_or_create_room("3B/chat/a", 3, None)
                .unwrap()
                .trimmed_through,
            2
        );
        assert_eq!(store.bounds("3B/chat/a").unwrap(), Some((3, 5)));
        store.shutdown().unwrap();
        assert!(matches!(
            store.submit(Job {
                room: "x".into(),
                offset: 1,
                frame: Bytes::new(),
                done: Box::new(|_| {}),
            }),
            Err(StoreError::Closed)
        ));
    }
    #[test]
    fn read_marks_of_one_user_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 16, |_| {}).unwrap();
        store.mark_read("3B/forum/aide", "ana", 1, 7).unwrap();
        store.mark_read("3B/forum/aide", "ana", 4, 9).unwrap();
        store.mark_read("4A/forum/debat", "ana", 2, 3).unwrap();
        // Same prefix, other users: never ana's.
        store.mark_read("3B/forum/aide", "anabel", 1, 8).unwrap();
        store.mark_read("3B/forum/aide", "an", 1, 8).unwrap();
        let mut marks = store.read_marks_of("ana").unwrap();
        marks.sort();
        assert_eq!(
            marks,
            [
                ("3B/forum/aide".to_owned(), 1, 7),
                ("3B/forum/aide".to_owned(), 4, 9),
                ("4A/forum/debat".to_owned(), 2, 3),
            ]
        );
        assert_eq!(store.delete_read_marks_of("ana").unwrap(), 3);
        assert!(store.read_marks_of("ana").unwrap().is_empty());
        assert_eq!(
            store.read_marks("3B/forum/aide", "anabel").unwrap().len(),
            1
        );
        assert_eq!(store.read_marks("3B/forum/aide", "an").unwrap().len(), 1);
    }

    #[test]
    fn replace_event_only_over_what_was_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 16, |_| {}).unwrap();
        store.rewrite_event("3B/chat/a", 1, b"old").unwrap();
        assert!(!store
            .replace_event("3B/chat/a", 1, b"other", b"new")
            .unwrap());
        assert!(store.replace_event("3B/chat/a", 1, b"old", b"new").unwrap());
        assert_eq!(
            store.raw_event("3B/chat/a", 1).unwrap().unwrap(),
            &b"new"[..]
        );
        // Deleted meanwhile (retention, compaction): not written back.
        assert!(!store.replace_event("3B/chat/a", 2, b"old", b"new").unwrap());
        assert_eq!(store.raw_event("3B/chat/a", 2).unwrap(), None);
        let (page, more) = store.read_page("3B/chat/a", 0, 10).unwrap();
        assert_eq!((page.len(), page[0].0, more), (1, 1, false));
    }
}
