//! Messages sent in parts: a `yjs` frame with `more: true` says its data
//! continues in the connection's next `yjs` frame for the same room; the
//! frame without `more` ends the message.
//!
//! Why: a client's offline work (its sync step 2) can be larger than a
//! frame (`max_frame_bytes`, 64 KiB), and before parts it could never sync:
//! the frame was closed with 1009, or the update refused as too large,
//! on every reconnection. A message may now reach [`max_message_bytes`]
//! (512 KiB by default).
//!
//! Bounds: per connection and room, one message at a time, at most that
//! size; node-wide, the bytes held in unfinished messages (and in finished
//! ones being checked) stay under a [`PartsBudget`], so many connections
//! together cannot hold gigabytes: past it a part is refused with
//! `overloaded` (retry later).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// How many notes' worth of bytes a node holds in messages sent in parts,
/// at most (`PARTS_BUDGET_NOTES × note_max_bytes`: 64 MiB by default).
pub const PARTS_BUDGET_NOTES: usize = 16;

/// Bytes of a y-protocols sync message besides its payload: the message
/// and sync types and the payload's varuint length.
pub const MESSAGE_OVERHEAD: usize = 16;

/// The largest message sent in parts: the payload may be as large as the
/// note (`note_max_bytes`), but not larger than half a connection's
/// outbound budget (`outbound_budget_bytes`), 512 KiB by default. Why:
/// its events go back to every member of the note, the sender included,
/// and the sender's connection writes nothing while its request is being
/// handled; past its budget it would be closed with 4004 (as would a
/// member whose queue is not empty). Measured: a 1.7 MB step 2 in parts
/// closed its sender with 4004 before this bound.
pub fn max_message_bytes(note_max_bytes: usize, outbound_budget_bytes: usize) -> usize {
    note_max_bytes.min(outbound_budget_bytes / 2) + MESSAGE_OVERHEAD
}

/// The node-wide bound on bytes held in messages sent in parts.
#[derive(Debug)]
pub struct PartsBudget {
    limit: usize,
    used: AtomicUsize,
}

impl PartsBudget {
    pub fn new(limit: usize) -> Arc<PartsBudget> {
        Arc::new(PartsBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn reserve(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&n| n <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Bytes taken from a [`PartsBudget`], given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<PartsBudget>,
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// Why a part was refused; the message in progress is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PartsError {
    /// The message would be larger than allowed.
    #[error("a message sent in parts may hold at most {max} bytes")]
    TooLarge { max: usize },
    /// The node holds too much in messages sent in parts; retry later.
    #[error("too many messages are being sent in parts on this node; retry later")]
    Busy,
    /// Only sync step 2 and update messages may be sent in parts.
    #[error("only a sync step 2 or update message may be sent in parts")]
    NotAnUpdate,
}

/// One connection's message in progress for one room.
#[derive(Debug, Default)]
pub struct Parts {
    buf: Vec<u8>,
    held: Option<Reservation>,
}

impl Parts {
    /// Whether a message is in progress.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Appends a part (`more: true`). The first part must begin a sync
    /// step 2 or update message (`0, 1` or `0, 2`). The message stays
    /// under `max` bytes and the node's `budget`, or it is dropped.
    pub fn push(
        &mut self,
        data: &[u8],
        max: usize,
        budget: &Arc<PartsBudget>,
    ) -> Result<(), PartsError> {
        if self.buf.is_empty() && !matches!(data, [0, 1 | 2, ..]) {
            self.clear();
            return Err(PartsError::NotAnUpdate);
        }
        if self.buf.len() + data.len() > max {
            self.clear();
            return Err(PartsError::TooLarge { max });
        }
        if !budget.reserve(data.len()) {
            self.clear();
            return Err(PartsError::Busy);
        }
        match &mut self.held {
            Some(held) => held.bytes += data.len(),
            None => {
                self.held = Some(Reservation {
                    budget: budget.clone(),
                    bytes: data.len(),
                })
            }
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// The last part (no `more`): the whole message, and the reservation
    /// of its earlier parts, to hold while the message is checked. Without
    /// a message in progress, `data` is the message.
    pub fn finish(
        &mut self,
        data: Vec<u8>,
        max: usize,
    ) -> Result<(Vec<u8>, Option<Reservation>), PartsError> {
        if self.buf.is_empty() {
            return Ok((data, None));
        }
        if self.buf.len() + data.len() > max {
            self.clear();
            return Err(PartsError::TooLarge { max });
        }
        let mut message = std::mem::take(&mut self.buf);
        message.extend_from_slice(&data);
        Ok((message, self.held.take()))
    }

    /// Drops the message in progress.
    pub fn clear(&mut self) {
        self.buf = Vec::new();
        self.held = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_bounded_per_message_and_per_node() {
        let budget = PartsBudget::new(100);
        let mut a = Parts::default();
        // Only a sync step 2 or update may start a message.
        assert_eq!(
            a.push(&[1, 2, 3], 60, &budget),
            Err(PartsError::NotAnUpdate)
        );
        a.push(&[0, 1, 9], 60, &budget).expect("first part");
        a.push(&[7; 40], 60, &budget).expect("second part");
        assert_eq!(budget.used(), 43);
        // Over the message's bound: dropped, its bytes given back.
        assert_eq!(
            a.push(&[7; 20], 60, &budget),
            Err(PartsError::TooLarge { max: 60 })
        );
        assert!(a.is_empty());
        assert_eq!(budget.used(), 0);
        // The node's budget is shared by every connection's messages.
        let mut b = Parts::default();
        a.push(&[0, 2, 1, 2, 3], 80, &budget).expect("a");
        a.push(&[7; 55], 80, &budget).expect("a");
        b.push(&[0, 2], 80, &budget).expect("b");
        assert_eq!(b.push(&[7; 40], 80, &budget), Err(PartsError::Busy));
        assert!(b.is_empty());
        // A finished message holds its reservation until it is checked.
        let (message, held) = a.finish(vec![9, 9], 80).expect("whole");
        assert_eq!(message.len(), 62);
        assert_eq!(budget.used(), 60);
        drop(held);
        assert_eq!(budget.used(), 0);
        // Without a message in progress, a frame is a whole message.
        let (whole, held) = b.finish(vec![0, 0, 1, 0], 80).expect("whole");
        assert_eq!((whole, held.is_none()), (vec![0, 0, 1, 0], true));
        // A connection that goes away gives its bytes back.
        let mut c = Parts::default();
        c.push(&[0, 1, 5], 80, &budget).expect("c");
        assert_eq!(budget.used(), 3);
        drop(c);
        assert_eq!(budget.used(), 0);
    }
}
