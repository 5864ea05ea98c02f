//! Random identifiers: room epochs, process runs, node ids, idempotency
//! keys. A module of its own, below everything, so that config, store and
//! bus need not depend on each other for it.

use rand::RngCore;

/// 8 random bytes, hex: a fresh epoch, run or node suffix (a string, so
/// JavaScript keeps it exact).
pub fn new_epoch() -> String {
    let mut bytes = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// 16 random bytes, hex (32 digits): an upload's or a file's id, which
/// is also what lets its owner reach it before it is attached.
pub fn new_file_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
