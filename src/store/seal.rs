//! How a stored event is sealed: ChaCha20-Poly1305 with a key of the key
//! file (`keys.rs`), so that destroying the key deletes the event for good
//! even where sled's log still holds its old bytes.
//!
//! A sealed value is `MAGIC (2) ‖ slot (u32) ‖ key id (u64) ‖ length (u32)
//! ‖ nonce (12) ‖ ciphertext and tag (length + 16)`, integers big-endian;
//! the first 18 bytes are authenticated with it. The length lets a forensic
//! scan of raw files find sealed values without sled's help.
//!
//! Keys are per room and *bucket* of [`BUCKET`] consecutive offsets. Erasing
//! one event (a redaction) means re-sealing the other events of its bucket
//! under a fresh key and destroying the old one (`shred.rs`): at most
//! [`BUCKET`] events re-sealed, whatever the room's size. Nonces are random:
//! a key seals at most a few thousand values, far from the 2^32 where
//! 96-bit random nonces start to risk a collision.
//!
//! `MAGIC` starts with 0xa5, a MessagePack `fixstr`: an event frame (a map)
//! never starts so, which tells sealed values from those stored by earlier
//! versions in clear.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use rand::RngCore;

use super::keys::{Key, KeyRef};

pub(crate) const MAGIC: [u8; 2] = [0xa5, 0x01];
/// Bytes before the ciphertext.
pub(crate) const HEADER: usize = 2 + 4 + 8 + 4 + 12;
const AAD: usize = 18;
const TAG: usize = 16;

/// Offsets per key: a redaction re-seals at most this many events.
/// Measured (release build, this 2-core VM): a shredding pass over a full
/// bucket of 300-byte events (1,023 re-sealed, one key destroyed) takes
/// 10-15 ms, off the writer thread; sealing one event ~2 µs (its nonce
/// from the OS included) and opening one ~1.9 µs, against ~800 µs of
/// server CPU per post delivered to 30 pupils (the `revision` benchmark).
/// The key file holds one 48-byte slot (~64 bytes of memory) per bucket.
pub const BUCKET: u64 = 1024;

pub(crate) fn bucket_of(offset: u64) -> u64 {
    offset / BUCKET
}

/// Seals `plain` with `key` (known as `key_ref`).
pub(crate) fn seal(key_ref: KeyRef, key: &Key, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + plain.len() + TAG);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&key_ref.slot.to_be_bytes());
    out.extend_from_slice(&key_ref.id.to_be_bytes());
    // Stored values are bounded far below 4 GiB (frames, snapshots).
    out.extend_from_slice(&(plain.len() as u32).to_be_bytes());
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    out.extend_from_slice(&nonce);
    let cipher = ChaCha20Poly1305::new(key.into());
    let sealed = cipher.encrypt(
        Nonce::from_slice(&nonce),
        Payload {
            msg: plain,
            aad: &out[..AAD],
        },
    );
    match sealed {
        Ok(sealed) => out.extend_from_slice(&sealed),
        // Encryption only fails past 256 GiB of plaintext.
        Err(_) => out.truncate(0),
    }
    out
}

/// The key a stored value is sealed with; `None` for a value stored in
/// clear by an earlier version.
pub(crate) fn key_of(value: &[u8]) -> Option<KeyRef> {
    if value.len() < HEADER + TAG || value[..2] != MAGIC {
        return None;
    }
    let slot = u32::from_be_bytes(value[2..6].try_into().ok()?);
    let id = u64::from_be_bytes(value[6..14].try_into().ok()?);
    Some(KeyRef { slot, id })
}

/// The length of the sealed value starting at `value[0]` according to its
/// header (for scans of raw bytes, where the value's end is unknown).
pub(crate) fn sealed_len(value: &[u8]) -> Option<usize> {
    if value.len() < HEADER || value[..2] != MAGIC {
        return None;
    }
    let len = u32::from_be_bytes(value[14..18].try_into().ok()?) as usize;
    Some(HEADER + len + TAG)
}

/// Opens a sealed value with its key; `None` if it does not authenticate.
pub(crate) fn open(value: &[u8], key: &Key) -> Option<Vec<u8>> {
    let total = sealed_len(value)?;
    if value.len() != total {
        return None;
    }
    let cipher = ChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(
            Nonce::from_slice(&value[AAD..HEADER]),
            Payload {
                msg: &value[HEADER..],
                aad: &value[..AAD],
            },
        )
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_with_their_key_only() {
        let key = [7u8; 32];
        let other = [8u8; 32];
        let at = KeyRef { slot: 3, id: 99 };
        let sealed = seal(at, &key, b"hello TOPSECRET");
        assert_eq!(key_of(&sealed), Some(at));
        assert_eq!(sealed_len(&sealed), Some(sealed.len()));
        assert!(!sealed.windows(9).any(|w| w == b"TOPSECRET"));
        assert_eq!(
            open(&sealed, &key).as_deref(),
            Some(&b"hello TOPSECRET"[..])
        );
        assert_eq!(open(&sealed, &other), None);
        let mut tampered = sealed.clone();
        tampered[7] ^= 1; // the key id is authenticated
        assert_eq!(open(&tampered, &key), None);
        // An event frame stored in clear (a MessagePack map) is not sealed.
        assert_eq!(key_of(&[0x87, 0xa4, b't', b'y', b'p', b'e']), None);
    }
}
