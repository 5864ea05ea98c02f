//! Looking for words in a data folder the way someone holding a copy of it
//! would: every byte of every file, in clear, and inside every sealed value
//! whose key is still in the key file. It is how tests (and an IT team that
//! wants to check an erasure, `preau find-text`) hold the promise
//! "redacted and erased words are deleted, not hidden" at the level of the
//! bytes on disk. Blocking, and reads whole files: for checks, not for
//! production paths.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::keys::{Key, KeyRef, KEY_BYTES, SLOT_BYTES};
use super::seal;
use super::StoreError;

/// Where a word was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: PathBuf,
    /// Byte offset in the file (of the word, or of the sealed value).
    pub at: usize,
    pub word: String,
    /// Found inside a sealed value that its live key opens.
    pub sealed: bool,
}

/// Every place under `dir` where one of `words` can be read.
pub fn find_in_data(dir: &Path, words: &[&str]) -> Result<Vec<Finding>, StoreError> {
    let keys = read_keys(&dir.join("keys"))?;
    let mut files = Vec::new();
    walk(dir, &mut files).map_err(|e| StoreError::Sled(format!("{}: {e}", dir.display())))?;
    let mut found = Vec::new();
    for file in files {
        let Ok(bytes) = std::fs::read(&file) else {
            continue; // removed meanwhile (sled rotates segment files)
        };
        for word in words {
            for at in positions(&bytes, word.as_bytes()) {
                found.push(Finding {
                    file: file.clone(),
                    at,
                    word: (*word).to_owned(),
                    sealed: false,
                });
            }
        }
        for at in positions(&bytes, &seal::MAGIC) {
            let rest = &bytes[at..];
            let (Some(key_ref), Some(len)) = (seal::key_of(rest), seal::sealed_len(rest)) else {
                continue;
            };
            let Some(key) = keys.get(&key_ref) else {
                continue;
            };
            let Some(value) = rest.get(..len) else {
                continue;
            };
            let Some(plain) = seal::open(value, key) else {
                continue;
            };
            for word in words {
                if !positions(&plain, word.as_bytes()).is_empty() {
                    found.push(Finding {
                        file: file.clone(),
                        at,
                        word: (*word).to_owned(),
                        sealed: true,
                    });
                }
            }
        }
    }
    Ok(found)
}

/// The live keys of a key file, read without writing to it.
fn read_keys(path: &Path) -> Result<HashMap<KeyRef, Key>, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(err) => return Err(StoreError::Keys(format!("{}: {err}", path.display()))),
    };
    let mut keys = HashMap::new();
    let body = bytes.get(16..).unwrap_or_default();
    for (slot, chunk) in body.chunks_exact(SLOT_BYTES as usize).enumerate() {
        let mut id = [0u8; 8];
        id.copy_from_slice(&chunk[..8]);
        let id = u64::from_be_bytes(id);
        if id != 0 {
            let mut key = [0u8; KEY_BYTES];
            key.copy_from_slice(&chunk[8..8 + KEY_BYTES]);
            keys.insert(
                KeyRef {
                    slot: slot as u32,
                    id,
                },
                key,
            );
        }
    }
    Ok(keys)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), files)?;
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
    Ok(())
}

fn positions(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return Vec::new();
    }
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}
