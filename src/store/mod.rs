//! Durable storage in sled: the only module that touches sled.
//!
//! Trees:
//! - `rooms`: room name → [`RoomMeta`] (MessagePack), the room's epoch and
//!   the format of its events ([`EVENT_FORMAT`]).
//! - `events`: `room name ‖ 0x00 ‖ offset (u64 big-endian)` → the event frame
//!   as delivered on the wire, **sealed** (`seal.rs`): history splices the
//!   opened bytes without re-encoding them.
//! - in `events`, beside a note's events: `room ‖ 0x02 note` → its snapshot
//!   ([`NoteSnapshot`]), and `room ‖ 0x03 ‖ version (u32 big-endian)` → each
//!   validated version ([`StoredVersion`]), immutable; `room ‖ 0x01 mod` →
//!   the moderation checkpoint; `room ‖ 0x06 ‖ user length (u8) ‖ user ‖
//!   key` → the offset and time of a post sent with an idempotency key
//!   ([`Store::find_post`]).
//! - `reads`: `room name ‖ 0x00 ‖ user id ‖ 0x00 ‖ thread (u64 big-endian)` →
//!   the last offset the user read in that forum thread (u64 big-endian).
//! - `feeds`: user id → the id of their calendar feed (16 random bytes,
//!   hex): the feed's address is a signed value naming it, and works
//!   while this id is the one stored (`kinds/homework/feed.rs`).
//! - `directory`: `current` → the school directory (`directory::Stored`,
//!   MessagePack), one value so that a sync is written whole or not at all.
//! - `dirty`: `room ‖ 0x00 ‖ bucket (u64) ‖ key slot (u32) ‖ key id (u64)`
//!   → nothing: a key that sealed a value since overwritten or deleted, to
//!   be destroyed (`shred.rs`).
//!
//! Writes go through one writer thread that batches whatever is queued into
//! one sled batch and one flush (group commit), then runs each job's callback
//! in queue order. A callback therefore only ever sees durable data, and
//! callbacks of one room run in the order its jobs were queued.
//!
//! **Deleted means unreadable.** sled keeps overwritten and deleted values
//! in its log until it reclaims their segment, so every event is sealed
//! with a key of the key file (`keys.rs`, one key per room and 1,024
//! offsets) and every overwrite or deletion of an event records the key
//! that sealed the old bytes as *dirty*, in the same atomic sled
//! transaction. The shredder (`shred.rs`, its own thread, woken at once)
//! re-seals the bucket's remaining events under a fresh key, flushes, and
//! destroys the dirty keys by overwriting their slots in the key file.
//! [`Store::settle`] runs it to the end (erasure waits for it).
//!
//! **A failing disk.** After a write fails (a full disk, say), sled refuses
//! every later operation until it is opened again; so the store marks
//! itself failing ([`Store::healthy`] is false, `/healthz` says so) and
//! reopens sled (at the next write, and every second from the shredder's
//! thread) until writes succeed again: it recovers by itself once there is
//! space.

mod forensic;
mod keys;
mod seal;
mod shred;
mod vault;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{MappedRwLockReadGuard, Mutex, RwLock, RwLockReadGuard};
use serde::{Deserialize, Serialize};
use sled::Transactional;

pub use forensic::{find_in_data, Finding};
pub use keys::KeyRef;
pub use seal::BUCKET;

use vault::Vault;

/// Jobs written together at most (one sled batch, one flush).
const MAX_BATCH: usize = 4096;
/// A group commit slower than this is logged: every post waiting on it is
/// that late for everyone (a classroom notices a quarter of a second).
const SLOW_COMMIT: Duration = Duration::from_millis(100);
/// While failing, reopening sled is tried at most this often.
const RECOVER_EVERY: Duration = Duration::from_secs(1);

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
    #[error("key file: {0}")]
    Keys(String),
    #[error("storage unavailable (reopening after a failure): {0}")]
    Unavailable(String),
}

impl From<sled::Error> for StoreError {
    fn from(err: sled::Error) -> Self {
        StoreError::Sled(err.to_string())
    }
}

impl From<sled::transaction::TransactionError<StoreError>> for StoreError {
    fn from(err: sled::transaction::TransactionError<StoreError>) -> Self {
        match err {
            sled::transaction::TransactionError::Abort(err) => err,
            sled::transaction::TransactionError::Storage(err) => err.into(),
        }
    }
}

/// How the store is opened.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Jobs the writer's queue holds (`write_queue`).
    pub queue: usize,
    /// sled's page cache, in bytes (`cache_capacity`).
    pub cache_capacity: u64,
    /// Retry a failed group commit until it succeeds (or the store shuts
    /// down) instead of failing its jobs: in cluster mode the events were
    /// ordered by Redis and exist cluster-wide, so a node that dropped one
    /// would keep a hole in its copy of the room for good.
    pub retry_writes: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            queue: 65_536,
            cache_capacity: 64 << 20,
            retry_writes: false,
        }
    }
}

/// The format of the events a room stores: protocol v1 `event` frames,
/// exactly as delivered (history splices them). A change of the wire
/// format is therefore a data migration: it bumps this number, and a room
/// whose metadata names a newer format is refused rather than misread.
pub const EVENT_FORMAT: u32 = 1;

fn first_format() -> u32 {
    1
}

/// What the store keeps about a room besides its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomMeta {
    pub epoch: String,
    pub created_ms: u64,
    /// [`EVENT_FORMAT`] when the room was created (rooms of earlier
    /// versions, without it, are format 1).
    #[serde(default = "first_format")]
    pub format: u32,
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

/// A validated version of a note, never changed once written: what the
/// caller says of it (`info`: who validated it, when, its label) and the
/// note's state then. The store does not read `info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredVersion<I> {
    pub info: I,
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
}

/// A post's idempotency key: who sent it, the key, and the event's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostKey {
    pub user: String,
    pub key: String,
    pub ts: u64,
}

/// Called on the writer thread once the job's batch is durable (or failed).
pub type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// One event to append.
pub struct Job {
    pub room: String,
    pub offset: u64,
    pub frame: Bytes,
    /// A post's idempotency key, recorded with the event in the same
    /// batch so a retry finds it ([`Store::find_post`]).
    pub idempotency: Option<PostKey>,
    pub done: Done,
}

/// Observations of one group commit, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct CommitStats {
    pub jobs: usize,
    pub seconds: f64,
}

/// A post found by its idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownPost {
    pub offset: u64,
    pub ts: u64,
}

/// The one key of the `directory` tree.
const DIRECTORY_KEY: &[u8] = b"current";

struct Trees {
    db: sled::Db,
    events: sled::Tree,
    rooms: sled::Tree,
    reads: sled::Tree,
    dirty: sled::Tree,
    feeds: sled::Tree,
    directory: sled::Tree,
}

impl Trees {
    /// Blocking.
    fn open(dir: &Path, cache_capacity: u64) -> Result<Trees, StoreError> {
        let db = sled::Config::new()
            .path(dir.join("sled"))
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_capacity)
            .open()?;
        Ok(Trees {
            events: db.open_tree("events")?,
            rooms: db.open_tree("rooms")?,
            reads: db.open_tree("reads")?,
            dirty: db.open_tree("dirty")?,
            feeds: db.open_tree("feeds")?,
            directory: db.open_tree("directory")?,
            db,
        })
    }
}

/// What the store's threads share: sled (reopened after a failure), the
/// vault of keys, and the shredder's wake-up line.
struct Disk {
    dir: PathBuf,
    cache_capacity: u64,
    /// `None` while reopening failed.
    trees: RwLock<Option<Trees>>,
    vault: Vault,
    /// A write failed and sled has not been reopened since.
    failing: AtomicBool,
    /// Bumped each time sled is closed to be reopened. A sequence of
    /// writes then a flush that saw it change may have lost the writes
    /// (they went to the old instance, the flush to the new one): it must
    /// fail, not report success (see [`Disk::flush_since`]).
    generation: AtomicU64,
    /// Set by shutdown: a retried group commit gives up.
    closing: AtomicBool,
    retry_writes: bool,
    last_recovery: Mutex<Option<Instant>>,
    /// One shredding at a time.
    shred_lock: Mutex<()>,
    wake: Mutex<Option<SyncSender<()>>>,
}

pub struct Store {
    disk: Arc<Disk>,
    writer: Mutex<Option<(SyncSender<Job>, JoinHandle<()>)>>,
    shredder: Mutex<Option<JoinHandle<()>>>,
}

impl Disk {
    fn trees(&self) -> Result<MappedRwLockReadGuard<'_, Trees>, StoreError> {
        RwLockReadGuard::try_map(self.trees.read(), Option::as_ref)
            .map_err(|_| StoreError::Unavailable("sled is not open".to_owned()))
    }

    /// Notes a failed write: sled now refuses everything until reopened.
    fn failed(&self, err: &StoreError) {
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::error!(error = %err, "storage write failed; the store will reopen itself until writes succeed");
        }
    }

    fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Reopens sled if a write failed since it was opened (at most once per
    /// [`RECOVER_EVERY`]), flushing to check that it writes again.
    /// Blocking.
    fn recover_if_failing(&self) {
        if !self.is_failing() {
            return;
        }
        {
            let mut last = self.last_recovery.lock();
            if last.is_some_and(|at| at.elapsed() < RECOVER_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let mut trees = self.trees.write();
        // The old handles go first: sled holds a lock on its files.
        *trees = None;
        self.generation.fetch_add(1, Ordering::SeqCst);
        match Trees::open(&self.dir, self.cache_capacity).and_then(|t| {
            t.db.flush()?;
            Ok(t)
        }) {
            Ok(fresh) => {
                *trees = Some(fresh);
                self.failing.store(false, Ordering::Relaxed);
                tracing::warn!("storage reopened after a failure; writes resume");
                drop(trees);
                self.wake_shredder();
            }
            Err(err) => {
                tracing::warn!(error = %err, "storage still failing; retrying");
            }
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Flushes, and fails if sled was reopened since generation `since`:
    /// writes made before the reopen may be lost, so nothing that depends
    /// on them (an ack, a key's destruction) may go ahead. Blocking.
    fn flush_since(&self, since: u64) -> Result<(), StoreError> {
        self.trees()?.db.flush()?;
        if self.generation() != since {
            return Err(StoreError::Unavailable(
                "storage was reopened meanwhile: writes may be lost, try again".to_owned(),
            ));
        }
        Ok(())
    }

    fn wake_shredder(&self) {
        if let Some(wake) = self.wake.lock().as_ref() {
            let _ = wake.try_send(());
        }
    }

    /// Seals and writes one group of appends, then flushes. Blocking.
    fn append(&self, jobs: &[Job]) -> Result<(), StoreError> {
        self.recover_if_failing();
        let trees = self.trees()?;
        let written = (|| {
            {
                let _sealing = self.vault.sealing();
                let mut batch = sled::Batch::default();
                for job in jobs {
                    let sealed = self.vault.seal(&job.room, job.offset, &job.frame)?;
                    batch.insert(event_key(&job.room, job.offset), sealed);
                    if let Some(post) = &job.idempotency {
                        let mut value = job.offset.to_be_bytes().to_vec();
                        value.extend_from_slice(&post.ts.to_be_bytes());
                        batch.insert(idempotency_key(&job.room, &post.user, &post.key), value);
                    }
                }
                trees.events.apply_batch(batch)?;
            }
            trees.db.flush()?;
            Ok(())
        })();
        if let Err(err) = &written {
            self.failed(err);
        }
        written
    }

    /// The plaintext of a stored event, re-reading it once if its key was
    /// destroyed meanwhile (a rotation re-sealed it between our read and
    /// our open).
    fn open_event(&self, tree: &sled::Tree, key: &[u8], value: &[u8]) -> Option<Bytes> {
        if let Some(plain) = self.vault.open(value) {
            return Some(Bytes::from(plain));
        }
        // Re-sealed by a rotation between our read and our open (possibly
        // more than once): read again until the stored bytes stop moving.
        let mut seen = value.to_vec();
        for _ in 0..8 {
            let again = tree.get(key).ok().flatten()?;
            if let Some(plain) = self.vault.open(&again) {
                return Some(Bytes::from(plain));
            }
            if again.as_ref() == seen.as_slice() {
                break;
            }
            seen = again.to_vec();
        }
        tracing::error!(
            key = %String::from_utf8_lossy(key),
            "a stored event cannot be opened (its key is gone); skipped"
        );
        None
    }

    /// Overwrites (`Some`) or deletes (`None`) the event at `offset`,
    /// recording the key that sealed its old bytes as dirty in the same
    /// transaction. With `expect`, only if the event's plaintext is that
    /// (false otherwise, nothing written). Blocking.
    fn overwrite(
        &self,
        room: &str,
        offset: u64,
        new: Option<&[u8]>,
        expect: Option<&[u8]>,
    ) -> Result<bool, StoreError> {
        let trees = self.trees()?;
        let key = event_key(room, offset);
        let bucket = seal::bucket_of(offset);
        let vault = &self.vault;
        let written = {
            let _sealing = vault.sealing();
            let sealed = new.map(|n| vault.seal(room, offset, n)).transpose()?;
            (&trees.events, &trees.dirty).transaction(|(events, dirty)| {
                let old = events.get(&key)?;
                if let Some(expect) = expect {
                    let same = old
                        .as_ref()
                        .and_then(|o| vault.open(o))
                        .is_some_and(|plain| plain == expect);
                    if !same {
                        return Ok(false);
                    }
                }
                // Deleted meanwhile (retention, compaction): a rewrite must
                // not bring back an offset below the room's floor.
                let Some(old) = old else {
                    return Ok(false);
                };
                if let Some(old_key) = seal::key_of(&old) {
                    dirty.insert(dirty_key(room, bucket, old_key), &[][..])?;
                }
                match &sealed {
                    Some(sealed) => events.insert(key.as_slice(), sealed.as_slice())?,
                    None => events.remove(key.as_slice())?,
                };
                Ok(true)
            })
        };
        let written = written.map_err(StoreError::from);
        match &written {
            Ok(true) => self.wake_shredder(),
            Ok(false) => {}
            Err(err) => self.failed(err),
        }
        written
    }
}

impl Store {
    /// Opens (or creates) the store in `dir` (sled in `dir/sled`, keys in
    /// `dir/keys`) and starts the writer and shredder threads. Blocking.
    pub fn open(
        dir: &Path,
        options: StoreOptions,
        on_commit: impl Fn(CommitStats) + Send + 'static,
    ) -> Result<Store, StoreError> {
        let trees = Trees::open(dir, options.cache_capacity)?;
        let keys = keys::KeyFile::open(&dir.join("keys"))?;
        let (wake_tx, wake_rx) = mpsc::sync_channel(1);
        let disk = Arc::new(Disk {
            dir: dir.to_owned(),
            cache_capacity: options.cache_capacity,
            trees: RwLock::new(Some(trees)),
            vault: Vault::new(keys),
            failing: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            retry_writes: options.retry_writes,
            last_recovery: Mutex::new(None),
            shred_lock: Mutex::new(()),
            wake: Mutex::new(Some(wake_tx)),
        });
        let (tx, rx) = mpsc::sync_channel(options.queue.max(1));
        let writer_disk = disk.clone();
        let handle = std::thread::Builder::new()
            .name("preau-store-writer".to_owned())
            .spawn(move || write_loop(&writer_disk, rx, on_commit))
            .map_err(|e| StoreError::Sled(format!("cannot start writer thread: {e}")))?;
        let shred_disk = disk.clone();
        let shredder = std::thread::Builder::new()
            .name("preau-store-shredder".to_owned())
            .spawn(move || shred::run(&shred_disk, &wake_rx))
            .map_err(|e| StoreError::Sled(format!("cannot start shredder thread: {e}")))?;
        // Dirty keys a crash left behind are destroyed first thing.
        disk.wake_shredder();
        Ok(Store {
            disk,
            writer: Mutex::new(Some((tx, handle))),
            shredder: Mutex::new(Some(shredder)),
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

    /// Stops the writer after it wrote everything queued, then the
    /// shredder after it destroyed every dirty key, then flushes. Blocking.
    pub fn shutdown(&self) -> Result<(), StoreError> {
        self.disk.closing.store(true, Ordering::SeqCst);
        let writer = self.writer.lock().take();
        if let Some((tx, handle)) = writer {
            drop(tx);
            if handle.join().is_err() {
                tracing::error!("store writer thread panicked");
            }
        }
        self.disk.wake.lock().take();
        if let Some(handle) = self.shredder.lock().take() {
            if handle.join().is_err() {
                tracing::error!("store shredder thread panicked");
            }
        }
        self.disk.trees()?.db.flush()?;
        Ok(())
    }

    /// Whether storage works: false from a failed write until sled was
    /// reopened (see the module comment).
    pub fn healthy(&self) -> bool {
        !self.disk.is_failing() && self.disk.trees.read().is_some()
    }

    /// Destroys every dirty key now (re-sealing what they still seal), and
    /// returns once done: after it, nothing overwritten or deleted so far
    /// can be read from the data folder. Blocking.
    pub fn settle(&self) -> Result<(), StoreError> {
        shred::shred_pending(&self.disk).map(|_| ())
    }

    /// Live keys in the key file (for tests and metrics).
    pub fn live_keys(&self) -> usize {
        self.disk.vault.live_keys()
    }

    /// The room's metadata, created with `epoch` (or a fresh one) if it has
    /// none. Blocking.
    pub fn load_or_create_room(
        &self,
        room: &str,
        now_ms: u64,
        epoch: Option<&str>,
    ) -> Result<RoomMeta, StoreError> {
        let trees = self.disk.trees()?;
        if let Some(bytes) = trees.rooms.get(room)? {
            return decode_meta(room, &bytes);
        }
        let meta = RoomMeta {
            epoch: epoch.map_or_else(crate::ids::new_epoch, str::to_owned),
            created_ms: now_ms,
            format: EVENT_FORMAT,
            trimmed_through: 0,
        };
        let bytes = rmp_serde::to_vec_named(&meta).map_err(|e| StoreError::Corrupt {
            room: room.to_owned(),
            message: e.to_string(),
        })?;
        // Not flushed here: the room's first event flushes it. Losing an
        // event-less room's epoch in a crash loses nothing a client could hold.
        match trees
            .rooms
            .compare_and_swap(room, None as Option<&[u8]>, Some(bytes))?
        {
            Ok(()) => Ok(meta),
            Err(current) => match current.current {
                Some(bytes) => decode_meta(room, &bytes),
                None => Ok(meta),
            },
        }
    }

    /// `(first, last)` offsets stored for the room, `None` when it has none. Blocking.
    pub fn bounds(&self, room: &str) -> Result<Option<(u64, u64)>, StoreError> {
        let trees = self.disk.trees()?;
        let prefix = room_prefix(room);
        let mut scan = trees.events.scan_prefix(&prefix);
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
        let trees = self.disk.trees()?;
        let range = event_key(room, after.saturating_add(1))..=event_key(room, through);
        let mut out = Vec::new();
        for entry in trees.events.range(range) {
            if out.len() == limit {
                return Ok((out, true));
            }
            let (key, value) = entry?;
            if let Some(frame) = self.disk.open_event(&trees.events, &key, &value) {
                out.push(frame);
            }
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
        let trees = self.disk.trees()?;
        let range = event_key(room, 0)..event_key(room, before);
        let mut out = Vec::new();
        let mut more = false;
        for entry in trees.events.range(range).rev() {
            if out.len() == limit {
                more = true;
                break;
            }
            let (key, value) = entry?;
            if let Some(frame) = self.disk.open_event(&trees.events, &key, &value) {
                out.push(frame);
            }
        }
        out.reverse();
        Ok((out, more))
    }

    /// The room's metadata, if it has any. Blocking.
    pub fn room_meta(&self, room: &str) -> Result<Option<RoomMeta>, StoreError> {
        match self.disk.trees()?.rooms.get(room)? {
            Some(bytes) => decode_meta(room, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Every room with metadata. Blocking.
    pub fn rooms(&self) -> Result<Vec<String>, StoreError> {
        self.disk
            .trees()?
            .rooms
            .iter()
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?).into_owned()))
            .collect()
    }

    /// The names of the rooms with metadata that start with `prefix`.
    /// Blocking.
    pub fn rooms_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.disk
            .trees()?
            .rooms
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
        self.disk.trees()?.reads.fetch_and_update(key, |old| {
            let old = old.map_or(0, offset_of);
            Some(old.max(offset).to_be_bytes().to_vec())
        })?;
        Ok(())
    }

    /// The user's read marks in forum `room`: thread → last offset read.
    /// Blocking.
    pub fn read_marks(&self, room: &str, user: &str) -> Result<HashMap<u64, u64>, StoreError> {
        self.disk
            .trees()?
            .reads
            .scan_prefix(reads_prefix(room, user))
            .map(|entry| {
                let (key, value) = entry?;
                Ok((offset_of(&key), offset_of(&value)))
            })
            .collect()
    }

    /// The id of `user`'s calendar feed, if one is active. Blocking.
    pub fn feed(&self, user: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .disk
            .trees()?
            .feeds
            .get(user.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Makes `feed` `user`'s active calendar feed (the last one stops
    /// working), durably. Blocking.
    pub fn set_feed(&self, user: &str, feed: &str) -> Result<(), StoreError> {
        let trees = self.disk.trees()?;
        trees.feeds.insert(user.as_bytes(), feed.as_bytes())?;
        trees.feeds.flush()?;
        Ok(())
    }

    /// Stops `user`'s calendar feed, durably; false if none was active.
    /// Blocking.
    pub fn delete_feed(&self, user: &str) -> Result<bool, StoreError> {
        let trees = self.disk.trees()?;
        let removed = trees.feeds.remove(user.as_bytes())?.is_some();
        trees.feeds.flush()?;
        Ok(removed)
    }

    /// The stored school directory, if it was ever synced. Blocking.
    pub fn directory(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .disk
            .trees()?
            .directory
            .get(DIRECTORY_KEY)?
            .map(|v| v.to_vec()))
    }

    /// Replaces the school directory with `bytes`, durably: one value, so
    /// a sync is on disk whole or not at all. Blocking.
    pub fn set_directory(&self, bytes: &[u8]) -> Result<(), StoreError> {
        let trees = self.disk.trees()?;
        trees.directory.insert(DIRECTORY_KEY, bytes)?;
        trees.directory.flush()?;
        Ok(())
    }

    /// The note's snapshot, if it was ever compacted. Blocking.
    pub fn note_snapshot(&self, room: &str) -> Result<Option<NoteSnapshot>, StoreError> {
        let Some(bytes) = self.disk.trees()?.events.get(note_key(room))? else {
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
        let since = self.disk.generation();
        self.disk.trees()?.events.insert(note_key(room), bytes)?;
        self.disk.flush_since(since)?;
        let through = snapshot.through;
        self.trim_room(room, |offset, _| offset <= through, announce)?;
        Ok(())
    }

    /// Stores validated version number `number` (not flushed: the event
    /// that made it is durable, and loading the note writes a missing
    /// version again). Blocking.
    pub fn save_version<I: Serialize>(
        &self,
        room: &str,
        number: u32,
        version: &StoredVersion<I>,
    ) -> Result<(), StoreError> {
        let bytes = rmp_serde::to_vec_named(version).map_err(|e| StoreError::Corrupt {
            room: room.to_owned(),
            message: format!("note version: {e}"),
        })?;
        self.disk
            .trees()?
            .events
            .insert(version_key(room, number), bytes)?;
        Ok(())
    }

    /// One validated version. Blocking.
    pub fn version<I: serde::de::DeserializeOwned>(
        &self,
        room: &str,
        version: u32,
    ) -> Result<Option<StoredVersion<I>>, StoreError> {
        let Some(bytes) = self.disk.trees()?.events.get(version_key(room, version))? else {
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
    pub fn versions<I: serde::de::DeserializeOwned>(
        &self,
        room: &str,
    ) -> Result<Vec<I>, StoreError> {
        let mut prefix = room.as_bytes().to_vec();
        prefix.push(3);
        self.disk
            .trees()?
            .events
            .scan_prefix(prefix)
            .values()
            .map(|value| {
                let value = value?;
                rmp_serde::from_slice::<StoredVersion<I>>(&value)
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
        let trees = self.disk.trees()?;
        let mut frames = Vec::with_capacity(offsets.len());
        for offset in offsets {
            let key = event_key(room, *offset);
            if let Some(value) = trees.events.get(&key)? {
                if let Some(frame) = self.disk.open_event(&trees.events, &key, &value) {
                    frames.push(frame);
                }
            }
        }
        Ok(frames)
    }

    /// Removes the room's oldest events while `expired(frame)` says so,
    /// stopping at the first one to keep. Before anything is deleted it
    /// calls `announce(last)` (so readers stop promising those offsets) and
    /// records `last` in the room's metadata (so offsets are never reused).
    /// Their keys are then shredded (see the module comment). Returns
    /// `last`, the last offset removed, if any. Blocking.
    pub fn trim_room(
        &self,
        room: &str,
        mut expired: impl FnMut(u64, &[u8]) -> bool,
        announce: impl FnOnce(u64),
    ) -> Result<Option<u64>, StoreError> {
        let since = self.disk.generation();
        let mut doomed = Vec::new();
        {
            let trees = self.disk.trees()?;
            for entry in trees.events.scan_prefix(room_prefix(room)) {
                let (key, value) = entry?;
                let Some(frame) = self.disk.open_event(&trees.events, &key, &value) else {
                    // Unreadable: nothing left to keep.
                    doomed.push(offset_of(&key));
                    continue;
                };
                if !expired(offset_of(&key), &frame) {
                    break;
                }
                doomed.push(offset_of(&key));
            }
        }
        let Some(&last) = doomed.last() else {
            return Ok(None);
        };
        announce(last);
        let corrupt = |message: String| StoreError::Corrupt {
            room: room.to_owned(),
            message,
        };
        {
            let trees = self.disk.trees()?;
            let mut meta: RoomMeta = match trees.rooms.get(room)? {
                Some(bytes) => decode_meta(room, &bytes)?,
                None => return Err(corrupt("events without metadata".to_owned())),
            };
            meta.trimmed_through = meta.trimmed_through.max(last);
            let bytes = rmp_serde::to_vec_named(&meta).map_err(|e| corrupt(e.to_string()))?;
            trees.rooms.insert(room, bytes)?;
        }
        // One transaction per bucket: each deletion and the dirty record of
        // its key land together.
        for chunk in doomed.chunk_by(|a, b| seal::bucket_of(*a) == seal::bucket_of(*b)) {
            let trees = self.disk.trees()?;
            let keys: Vec<Vec<u8>> = chunk.iter().map(|o| event_key(room, *o)).collect();
            let bucket = seal::bucket_of(chunk[0]);
            let removed = (&trees.events, &trees.dirty).transaction(|(events, dirty)| {
                for key in &keys {
                    if let Some(old) = events.remove(key.as_slice())? {
                        if let Some(old_key) = seal::key_of(&old) {
                            dirty.insert(dirty_key(room, bucket, old_key), &[][..])?;
                        }
                    }
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<StoreError>>(())
            });
            if let Err(err) = removed {
                let err = StoreError::from(err);
                self.disk.failed(&err);
                return Err(err);
            }
        }
        self.disk.flush_since(since)?;
        self.disk.wake_shredder();
        Ok(Some(last))
    }

    /// The room's moderation checkpoint (opaque bytes), if any. Blocking.
    pub fn moderation(&self, room: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(self
            .disk
            .trees()?
            .events
            .get(moderation_key(room))?
            .map(|v| Bytes::copy_from_slice(&v)))
    }

    /// Writes the room's moderation checkpoint. Not flushed: the event that
    /// caused it is, and loading a room replays events after the
    /// checkpoint. Blocking.
    pub fn save_moderation(&self, room: &str, state: &[u8]) -> Result<(), StoreError> {
        self.disk
            .trees()?
            .events
            .insert(moderation_key(room), state)?;
        Ok(())
    }

    /// Overwrites one stored event (a redaction's tombstone) and flushes:
    /// the tombstone and the dirty record of the old text's key are durable
    /// when this returns, and the shredder destroys that key within
    /// moments. Blocking.
    pub fn rewrite_event(&self, room: &str, offset: u64, frame: &[u8]) -> Result<(), StoreError> {
        let since = self.disk.generation();
        self.disk.overwrite(room, offset, Some(frame), None)?;
        self.disk.flush_since(since)
    }

    /// Like [`Store::read_after`], each event with its offset (for scans
    /// that must move on past an event they cannot read). Blocking.
    pub fn read_page(
        &self,
        room: &str,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<(u64, Bytes)>, bool), StoreError> {
        let trees = self.disk.trees()?;
        let range = event_key(room, after.saturating_add(1))..=event_key(room, u64::MAX);
        let mut out = Vec::new();
        for entry in trees.events.range(range) {
            if out.len() == limit {
                return Ok((out, true));
            }
            let (key, value) = entry?;
            if let Some(frame) = self.disk.open_event(&trees.events, &key, &value) {
                out.push((offset_of(&key), frame));
            }
        }
        Ok((out, false))
    }

    /// Overwrites one stored event if it still holds `old` (so an event
    /// deleted or rewritten meanwhile, by retention, a note's compaction or
    /// a redaction, is left alone); whether it did. The old bytes' key is
    /// shredded. Not flushed: [`Store::flush`]. Blocking.
    pub fn replace_event(
        &self,
        room: &str,
        offset: u64,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        self.disk.overwrite(room, offset, Some(new), Some(old))
    }

    /// Every forum read mark of `user`: `(room, thread, last offset read)`.
    /// Scans all read marks. Blocking.
    pub fn read_marks_of(&self, user: &str) -> Result<Vec<(String, u64, u64)>, StoreError> {
        let trees = self.disk.trees()?;
        let mut marks = Vec::new();
        for entry in trees.reads.iter() {
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
        let trees = self.disk.trees()?;
        let mut deleted = 0;
        for entry in trees.reads.iter() {
            let (key, _) = entry?;
            if reads_key_room(&key, user).is_some() {
                trees.reads.remove(&key)?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// The post `user` sent to `room` with idempotency key `key`, if it is
    /// stored and was sent after `since_ms`. Blocking.
    pub fn find_post(
        &self,
        room: &str,
        user: &str,
        key: &str,
        since_ms: u64,
    ) -> Result<Option<KnownPost>, StoreError> {
        let Some(value) = self
            .disk
            .trees()?
            .events
            .get(idempotency_key(room, user, key))?
        else {
            return Ok(None);
        };
        if value.len() != 16 {
            return Ok(None);
        }
        let offset = offset_of(&value[..8]);
        let ts = offset_of(&value[8..]);
        Ok((ts >= since_ms).then_some(KnownPost { offset, ts }))
    }

    /// Deletes the room's idempotency records of posts sent before
    /// `before_ms`; how many. Blocking.
    pub fn prune_posts(&self, room: &str, before_ms: u64) -> Result<u64, StoreError> {
        let trees = self.disk.trees()?;
        let mut prefix = room.as_bytes().to_vec();
        prefix.push(6);
        let mut pruned = 0;
        for entry in trees.events.scan_prefix(&prefix) {
            let (key, value) = entry?;
            if value.len() == 16 && offset_of(&value[8..]) < before_ms {
                trees.events.remove(&key)?;
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    /// Makes every write so far durable. Blocking.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.disk.trees()?.db.flush()?;
        Ok(())
    }

    /// How many times sled was reopened after a failure (see
    /// [`Store::flush_since`]).
    pub fn generation(&self) -> u64 {
        self.disk.generation()
    }

    /// Makes every write so far durable, and fails if sled was reopened
    /// since `generation` (writes before the reopen may be lost: run the
    /// operation again). Blocking.
    pub fn flush_since(&self, generation: u64) -> Result<(), StoreError> {
        self.disk.flush_since(generation)
    }

    /// One stored event, opened (for tests that inspect storage). Blocking.
    pub fn raw_event(&self, room: &str, offset: u64) -> Result<Option<Bytes>, StoreError> {
        let trees = self.disk.trees()?;
        let key = event_key(room, offset);
        Ok(trees
            .events
            .get(&key)?
            .and_then(|v| self.disk.open_event(&trees.events, &key, &v)))
    }
}

fn write_loop(disk: &Disk, rx: Receiver<Job>, on_commit: impl Fn(CommitStats)) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let mut result = disk.append(&jobs);
        if let Err(err) = &result {
            tracing::error!(error = %err, jobs = jobs.len(), "group commit failed");
        }
        // Cluster mode: the same batch again, in order, until it is written
        // (later jobs wait in the queue behind it, so offsets stay in order).
        let mut backoff = Duration::from_millis(100);
        while result.is_err() && disk.retry_writes && !disk.closing.load(Ordering::SeqCst) {
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(2));
            result = disk.append(&jobs);
            if result.is_ok() {
                tracing::warn!(jobs = jobs.len(), "group commit written after retries");
            }
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

fn decode_meta(room: &str, bytes: &[u8]) -> Result<RoomMeta, StoreError> {
    let meta: RoomMeta = rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        room: room.to_owned(),
        message: e.to_string(),
    })?;
    if meta.format > EVENT_FORMAT {
        return Err(StoreError::Corrupt {
            room: room.to_owned(),
            message: format!(
                "events in format {} (this préau reads up to {EVENT_FORMAT}): written by a newer version",
                meta.format
            ),
        });
    }
    Ok(meta)
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

/// `room ‖ 0x06 ‖ len(user) ‖ user ‖ key` (user ids are at most 128 bytes).
fn idempotency_key(room: &str, user: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(room.len() + user.len() + key.len() + 2);
    out.extend_from_slice(room.as_bytes());
    out.push(6);
    out.push(user.len().min(255) as u8);
    out.extend_from_slice(user.as_bytes());
    out.extend_from_slice(key.as_bytes());
    out
}

/// `room ‖ 0x00 ‖ bucket ‖ slot ‖ id` in the `dirty` tree.
fn dirty_key(room: &str, bucket: u64, key: KeyRef) -> Vec<u8> {
    let mut out = room_prefix(room);
    out.extend_from_slice(&bucket.to_be_bytes());
    out.extend_from_slice(&key.slot.to_be_bytes());
    out.extend_from_slice(&key.id.to_be_bytes());
    out
}

/// `(room, bucket, key)` of a `dirty` key.
fn parse_dirty_key(key: &[u8]) -> Option<(String, u64, KeyRef)> {
    let split = key.len().checked_sub(21)?;
    if key[split] != 0 {
        return None;
    }
    let room = std::str::from_utf8(&key[..split]).ok()?.to_owned();
    let bucket = u64::from_be_bytes(key[split + 1..split + 9].try_into().ok()?);
    let slot = u32::from_be_bytes(key[split + 9..split + 13].try_into().ok()?);
    let id = u64::from_be_bytes(key[split + 13..].try_into().ok()?);
    Some((room, bucket, KeyRef { slot, id }))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens the store, waiting for a previous handle's sled threads to
    /// let go of the folder's lock (they exit just after its last handle).
    fn open(dir: &Path) -> Store {
        for _ in 0..100 {
            match Store::open(dir, StoreOptions::default(), |_| {}) {
                Ok(store) => return store,
                Err(StoreError::Sled(e)) if e.contains("could not acquire lock") => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("the folder stayed locked")
    }

    fn append(store: &Store, room: &str, offsets: impl IntoIterator<Item = (u64, Vec<u8>)>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut count = 0;
        for (offset, frame) in offsets {
            let tx = tx.clone();
            store
                .submit(Job {
                    room: room.into(),
                    offset,
                    frame: Bytes::from(frame),
                    idempotency: None,
                    done: Box::new(move |r| tx.send((offset, r.is_ok())).unwrap()),
                })
                .unwrap();
            count += 1;
        }
        for _ in 0..count {
            assert!(rx.recv().unwrap().1, "append failed");
        }
    }

    #[test]
    fn append_read_and_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let meta = store.load_or_create_room("3B/chat/a", 1, None).unwrap();
        assert_eq!(
            store.load_or_create_room("3B/chat/a", 2, None).unwrap(),
            meta
        );
        append(&store, "3B/chat/a", (1..=5u64).map(|o| (o, vec![o as u8])));
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
            .trim_room("3B/chat/a", |_, v| v[0] < 3, |last| announced = Some(last))
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
                idempotency: None,
                done: Box::new(|_| {}),
            }),
            Err(StoreError::Closed)
        ));
    }

    #[test]
    fn read_marks_of_one_user_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
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
        let store = open(dir.path());
        // A rewrite never creates an event (one deleted meanwhile stays so).
        store.rewrite_event("3B/chat/a", 1, b"ghost").unwrap();
        assert_eq!(store.raw_event("3B/chat/a", 1).unwrap(), None);
        append(&store, "3B/chat/a", [(1, b"old".to_vec())]);
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

    fn findings(dir: &Path, word: &str) -> Vec<Finding> {
        find_in_data(dir, &[word]).unwrap()
    }

    /// The promise at the level of the bytes: after an overwrite and the
    /// shredder's pass, the old words can be read nowhere in the data
    /// folder, while every other event of the bucket still opens.
    #[test]
    fn overwritten_and_trimmed_words_are_unreadable_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let room = "3B/chat/x";
        store.load_or_create_room(room, 1, None).unwrap();
        append(
            &store,
            room,
            (1..=40u64).map(|o| (o, format!("message {o} SECRET-{o:03}").into_bytes())),
        );
        store.settle().unwrap();
        // Sealed at rest: not in clear, but readable with the live key.
        let found = findings(dir.path(), "SECRET-007");
        assert!(!found.is_empty(), "the scan must see sealed words");
        assert!(found.iter().all(|f| f.sealed), "{found:?}");
        store.rewrite_event(room, 7, b"tombstone").unwrap();
        let removed = store
            .trim_room(room, |_, frame| frame.starts_with(b"message 1 "), |_| {})
            .unwrap();
        assert_eq!(removed, Some(1));
        store.settle().unwrap();
        assert_eq!(findings(dir.path(), "SECRET-007"), []);
        assert_eq!(findings(dir.path(), "SECRET-001"), []);
        // Everything else still opens, also after a restart.
        store.shutdown().unwrap();
        drop(store);
        let store = open(dir.path());
        let (events, _) = store.read_after(room, 0, 40, 100).unwrap();
        assert_eq!(events.len(), 39);
        assert_eq!(events[5].as_ref(), b"tombstone");
        assert_eq!(events[10].as_ref(), b"message 12 SECRET-012");
        assert!(!findings(dir.path(), "SECRET-012").is_empty());
        store.shutdown().unwrap();
    }

    #[test]
    fn dirty_keys_left_by_a_crash_are_destroyed_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let room = "3B/chat/x";
        {
            let store = open(dir.path());
            store.load_or_create_room(room, 1, None).unwrap();
            append(
                &store,
                room,
                [(1, b"keep".to_vec()), (2, b"GONE-42".to_vec())],
            );
            // Stop the shredder first, as a crash would: the overwrite and
            // its dirty record are durable, the key is not destroyed.
            store.disk.wake.lock().take();
            store.shredder.lock().take().unwrap().join().unwrap();
            store
                .disk
                .overwrite(room, 2, Some(b"tombstone"), None)
                .unwrap();
            store.flush().unwrap();
            assert!(!findings(dir.path(), "GONE-42").is_empty());
            let (tx, writer) = store.writer.lock().take().unwrap();
            drop(tx);
            writer.join().unwrap();
        }
        let store = open(dir.path());
        store.settle().unwrap();
        assert_eq!(findings(dir.path(), "GONE-42"), []);
        assert_eq!(store.raw_event(room, 1).unwrap().unwrap().as_ref(), b"keep");
        store.shutdown().unwrap();
    }

    #[test]
    fn a_room_in_a_newer_format_is_refused_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let meta = store.load_or_create_room("3B/chat/a", 1, None).unwrap();
        assert_eq!(meta.format, EVENT_FORMAT);
        let newer = RoomMeta {
            format: EVENT_FORMAT + 1,
            ..meta
        };
        let bytes = rmp_serde::to_vec_named(&newer).unwrap();
        store
            .disk
            .trees()
            .unwrap()
            .rooms
            .insert("3B/chat/a", bytes)
            .unwrap();
        let err = store.room_meta("3B/chat/a").unwrap_err().to_string();
        assert!(err.contains("newer version"), "{err}");
        // Metadata of earlier versions, without `format`, is format 1.
        #[derive(Serialize)]
        struct Old<'a> {
            epoch: &'a str,
            created_ms: u64,
        }
        let old = rmp_serde::to_vec_named(&Old {
            epoch: "e",
            created_ms: 1,
        })
        .unwrap();
        store
            .disk
            .trees()
            .unwrap()
            .rooms
            .insert("3B/chat/b", old)
            .unwrap();
        assert_eq!(store.room_meta("3B/chat/b").unwrap().unwrap().format, 1);
    }

    #[test]
    fn idempotency_records_are_found_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let (tx, rx) = std::sync::mpsc::channel();
        store
            .submit(Job {
                room: "3B/chat/a".into(),
                offset: 4,
                frame: Bytes::from_static(b"x"),
                idempotency: Some(PostKey {
                    user: "ana".into(),
                    key: "k-1".into(),
                    ts: 5,
                }),
                done: Box::new(move |r| tx.send(r.is_ok()).unwrap()),
            })
            .unwrap();
        assert!(rx.recv().unwrap());
        let found = store.find_post("3B/chat/a", "ana", "k-1", 0).unwrap();
        assert_eq!(found.map(|p| p.offset), Some(4));
        assert_eq!(
            store.find_post("3B/chat/a", "anabel", "k-1", 0).unwrap(),
            None
        );
        assert_eq!(store.find_post("3B/chat/a", "ana", "k-2", 0).unwrap(), None);
        assert_eq!(
            store.prune_posts("3B/chat/a", 5).unwrap(),
            0,
            "not older than 5"
        );
        assert_eq!(store.prune_posts("3B/chat/a", 6).unwrap(), 1);
        assert_eq!(store.find_post("3B/chat/a", "ana", "k-1", 0).unwrap(), None);
    }
}
