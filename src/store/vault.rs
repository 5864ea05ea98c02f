//! The vault: the key file behind a lock, and each room bucket's current
//! key (the one new values of that bucket are sealed with).
//!
//! The *fence* orders sealing against key rotation (`shred.rs`): whoever
//! seals a value holds it for reading until the value is in sled, and a
//! rotation takes it for writing to retire a bucket's current key. So once
//! a rotation has retired a key, every value sealed with it is already in
//! sled, where the rotation's scan finds it; nothing sealed later uses it.

use std::collections::HashMap;

use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use super::keys::{KeyFile, KeyRef};
use super::seal::{self, bucket_of};
use super::StoreError;

/// Buckets per room whose current key is remembered: appends go to the
/// last bucket; older ones are only rewritten (a redaction, erasure), and
/// forgetting their key just means the next rewrite makes a new one.
const BUCKETS_PER_ROOM: usize = 4;

pub(crate) struct Vault {
    keys: RwLock<KeyFile>,
    current: Mutex<HashMap<String, Vec<(u64, KeyRef)>>>,
    fence: RwLock<()>,
}

impl Vault {
    pub(crate) fn new(keys: KeyFile) -> Vault {
        Vault {
            keys: RwLock::new(keys),
            current: Mutex::new(HashMap::new()),
            fence: RwLock::new(()),
        }
    }

    /// Held while sealing and writing values (see the module comment).
    pub(crate) fn sealing(&self) -> RwLockReadGuard<'_, ()> {
        self.fence.read()
    }

    /// Seals `plain` for `room` at `offset` with its bucket's current key,
    /// making one (durably, one `fdatasync`) if the bucket has none. The
    /// caller holds [`Vault::sealing`] until the value is written. Blocking
    /// when a key is made.
    pub(crate) fn seal(
        &self,
        room: &str,
        offset: u64,
        plain: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let bucket = bucket_of(offset);
        let key_ref = {
            let mut current = self.current.lock();
            let known = current
                .get(room)
                .and_then(|keys| keys.iter().find(|(b, _)| *b == bucket))
                .map(|(_, k)| *k);
            match known {
                Some(key) => key,
                None => {
                    let key = self.keys.write().create()?;
                    let keys = current.entry(room.to_owned()).or_default();
                    if keys.len() >= BUCKETS_PER_ROOM {
                        // Forget the oldest bucket's key (lowest bucket).
                        if let Some(oldest) = keys
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, (b, _))| *b)
                            .map(|(i, _)| i)
                        {
                            keys.swap_remove(oldest);
                        }
                    }
                    keys.push((bucket, key));
                    key
                }
            }
        };
        let keys = self.keys.read();
        let key = keys
            .get(key_ref)
            .ok_or_else(|| StoreError::Keys("a current key is missing".to_owned()))?;
        let sealed = seal::seal(key_ref, key, plain);
        if sealed.is_empty() {
            return Err(StoreError::Keys("cannot seal a value".to_owned()));
        }
        Ok(sealed)
    }

    /// The plaintext of a stored value: sealed ones opened with their key,
    /// values stored in clear by earlier versions as they are. `None` if
    /// its key is destroyed (or it does not authenticate).
    pub(crate) fn open(&self, value: &[u8]) -> Option<Vec<u8>> {
        match seal::key_of(value) {
            None => Some(value.to_vec()),
            Some(key_ref) => {
                let keys = self.keys.read();
                seal::open(value, keys.get(key_ref)?)
            }
        }
    }

    /// Stops sealing new values of `room`'s `bucket` with any of `doomed`.
    /// Waits for values being sealed to be written (the fence).
    pub(crate) fn retire(&self, room: &str, bucket: u64, doomed: &[KeyRef]) {
        let _fence = self.fence.write();
        let mut current = self.current.lock();
        if let Some(keys) = current.get_mut(room) {
            keys.retain(|(b, k)| *b != bucket || !doomed.contains(k));
            if keys.is_empty() {
                current.remove(room);
            }
        }
    }

    /// Destroys keys (their slots zeroed and synced); how many. Blocking.
    pub(crate) fn destroy(&self, keys: &[KeyRef]) -> Result<usize, StoreError> {
        self.keys.write().destroy(keys)
    }

    pub(crate) fn live_keys(&self) -> usize {
        self.keys.read().live_count()
    }
}
