//! The key file (`<data>/keys`): the keys that seal stored events, one per
//! fixed-size slot, overwritten in place when a key is destroyed.
//!
//! Why a file of its own: sled is log-structured, so a value it overwrites
//! or deletes stays in its segment files until sled happens to reclaim the
//! segment (seen: a redacted message still on disk after several MB of later
//! writes). Every stored event is therefore sealed with a key from here
//! (`seal.rs`), and "deleted" means "its key is destroyed": the slot's bytes
//! are overwritten with zeros and `fdatasync`ed, which on an ordinary
//! filesystem leaves no copy of the key in any file of the data folder. The
//! old ciphertext may linger in sled's segments; without its key it is noise.
//!
//! Layout: a 16-byte header, then slots of [`SLOT_BYTES`]: `id` (u64
//! big-endian, 0 = free), the 32-byte key, 8 reserved bytes. A sealed value
//! names its slot and the key's id, so a slot reused by a new key (new id)
//! never opens an old value.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use rand::RngCore;

use super::StoreError;

const HEADER: &[u8; 16] = b"preau-keys v1\0\0\0";
/// Bytes per slot: id, key, reserved.
pub(crate) const SLOT_BYTES: u64 = 48;
pub(crate) const KEY_BYTES: usize = 32;

/// A key's place and identity, as sealed values name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyRef {
    pub slot: u32,
    pub id: u64,
}

pub(crate) type Key = [u8; KEY_BYTES];

pub(crate) struct KeyFile {
    file: File,
    /// Every live key by slot (the whole file is small: one slot per
    /// 1,024 events of a room, see `seal::BUCKET`).
    live: HashMap<u32, (u64, Key)>,
    free: Vec<u32>,
    /// Slots in the file.
    len: u32,
}

impl KeyFile {
    /// Opens (or creates) the key file and reads every live key. Blocking.
    pub(crate) fn open(path: &Path) -> Result<KeyFile, StoreError> {
        let io = |e: std::io::Error| StoreError::Keys(format!("{}: {e}", path.display()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        if size == 0 {
            file.write_all_at(HEADER, 0).map_err(io)?;
            file.sync_all().map_err(io)?;
            sync_dir(path).map_err(io)?;
        } else {
            let mut header = [0u8; 16];
            file.read_exact_at(&mut header, 0).map_err(io)?;
            if &header != HEADER {
                return Err(StoreError::Keys(format!(
                    "{}: not a préau key file",
                    path.display()
                )));
            }
        }
        // A slot cut short by a crash while the file grew was never used:
        // its key's first use waits for the write and its fsync.
        let len = u32::try_from(size.saturating_sub(16) / SLOT_BYTES)
            .map_err(|_| StoreError::Keys("key file too large".to_owned()))?;
        let mut live = HashMap::new();
        let mut free = Vec::new();
        let mut body = vec![0u8; (u64::from(len) * SLOT_BYTES) as usize];
        file.read_exact_at(&mut body, 16).map_err(io)?;
        for (slot, bytes) in body.chunks_exact(SLOT_BYTES as usize).enumerate() {
            let slot = slot as u32;
            let mut id = [0u8; 8];
            id.copy_from_slice(&bytes[..8]);
            let id = u64::from_be_bytes(id);
            if id == 0 {
                free.push(slot);
            } else {
                let mut key = [0u8; KEY_BYTES];
                key.copy_from_slice(&bytes[8..8 + KEY_BYTES]);
                live.insert(slot, (id, key));
            }
        }
        // Lowest slots first, so the file stays compact.
        free.sort_unstable_by(|a, b| b.cmp(a));
        Ok(KeyFile {
            file,
            live,
            free,
            len,
        })
    }

    pub(crate) fn get(&self, key: KeyRef) -> Option<&Key> {
        match self.live.get(&key.slot) {
            Some((id, k)) if *id == key.id => Some(k),
            _ => None,
        }
    }

    /// Writes a new random key into a free slot and makes it durable before
    /// returning: nothing sealed with it may reach the disk before it does.
    /// Blocking (one `fdatasync`).
    pub(crate) fn create(&mut self) -> Result<KeyRef, StoreError> {
        let mut key = [0u8; KEY_BYTES];
        let mut rng = rand::rngs::OsRng;
        rng.fill_bytes(&mut key);
        let id = loop {
            let id = rng.next_u64();
            if id != 0 {
                break id;
            }
        };
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                let slot = self.len;
                self.len = self
                    .len
                    .checked_add(1)
                    .ok_or_else(|| StoreError::Keys("key file full".to_owned()))?;
                slot
            }
        };
        let mut bytes = [0u8; SLOT_BYTES as usize];
        bytes[..8].copy_from_slice(&id.to_be_bytes());
        bytes[8..8 + KEY_BYTES].copy_from_slice(&key);
        let written = self
            .file
            .write_all_at(&bytes, offset_of(slot))
            .and_then(|()| self.file.sync_data());
        if let Err(err) = written {
            self.free.push(slot);
            return Err(StoreError::Keys(format!("cannot write a key: {err}")));
        }
        self.live.insert(slot, (id, key));
        Ok(KeyRef { slot, id })
    }

    /// Destroys keys: their slots are overwritten with zeros, then one
    /// `fdatasync`. A slot that holds another key by now is left alone.
    /// How many were destroyed. Blocking.
    pub(crate) fn destroy(&mut self, keys: &[KeyRef]) -> Result<usize, StoreError> {
        let zero = [0u8; SLOT_BYTES as usize];
        let mut destroyed = Vec::new();
        for key in keys {
            if self.get(*key).is_none() {
                continue;
            }
            self.file
                .write_all_at(&zero, offset_of(key.slot))
                .map_err(|e| StoreError::Keys(format!("cannot destroy a key: {e}")))?;
            destroyed.push(key.slot);
        }
        if destroyed.is_empty() {
            return Ok(0);
        }
        self.file
            .sync_data()
            .map_err(|e| StoreError::Keys(format!("cannot destroy a key: {e}")))?;
        for slot in &destroyed {
            self.live.remove(slot);
            self.free.push(*slot);
        }
        Ok(destroyed.len())
    }

    pub(crate) fn live_count(&self) -> usize {
        self.live.len()
    }
}

fn offset_of(slot: u32) -> u64 {
    16 + u64::from(slot) * SLOT_BYTES
}

/// Makes a new file's directory entry durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_reopen_and_destroyed_slots_are_zeros_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let mut file = KeyFile::open(&path).unwrap();
        let a = file.create().unwrap();
        let b = file.create().unwrap();
        let key_a = *file.get(a).unwrap();
        drop(file);
        let mut file = KeyFile::open(&path).unwrap();
        assert_eq!(file.get(a), Some(&key_a));
        assert!(file.get(b).is_some());
        assert_eq!(file.destroy(&[a]).unwrap(), 1);
        assert_eq!(file.get(a), None);
        // The key's bytes are gone from the file, not just forgotten.
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.windows(KEY_BYTES).any(|w| w == key_a));
        // Its slot is reused by a new key with another id; the old
        // reference does not open it.
        let c = file.create().unwrap();
        assert_eq!(c.slot, a.slot);
        assert_ne!(c.id, a.id);
        assert_eq!(file.get(a), None);
        assert_eq!(
            file.destroy(&[a]).unwrap(),
            0,
            "another key's slot is left alone"
        );
        assert!(file.get(c).is_some());
        drop(file);
        let file = KeyFile::open(&path).unwrap();
        assert_eq!(file.live_count(), 2);
    }

    #[test]
    fn a_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, b"something else entirely").unwrap();
        assert!(matches!(KeyFile::open(&path), Err(StoreError::Keys(_))));
    }
}
