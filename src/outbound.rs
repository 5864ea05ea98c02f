//! Where a connection's frames go: its socket ([`crate::wire::Wire`]), or,
//! for the server's own internal callers, a bounded queue read by a task.
//!
//! Every frame for a connection — replies, events, presence — goes through
//! one `Outbound`, so a connection sees its join reply before the live
//! events that follow it. The bound is in bytes: a send that would take
//! what waits for the connection over its budget is refused and marks the
//! connection slow; its task then closes it with `4004 slow consumer`.
//! Others never wait on it: `send` never blocks.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::wire::{Sent, Wire};

/// Identifies a connection within this process.
pub type ConnId = u64;

struct Shared {
    conn: ConnId,
    queued: AtomicUsize,
    budget: usize,
    /// Checked on every send: an atomic load, where the token takes a lock.
    is_slow: AtomicBool,
    /// Wakes the connection task once the connection is slow, or asked
    /// to close ([`Outbound::close`]).
    slow: CancellationToken,
    /// The close code asked for by [`Outbound::close`] (0: none, the
    /// connection is slow).
    close: AtomicU16,
}

/// A queued frame; `counted` frames take from the byte budget.
struct Item {
    frame: Bytes,
    counted: bool,
}

impl Shared {
    fn mark_slow(&self) {
        self.is_slow.store(true, Ordering::Relaxed);
        self.slow.cancel();
    }
}

/// The sending side, cloned into every room the connection joined.
#[derive(Clone)]
pub struct Outbound(Sink);

#[derive(Clone)]
enum Sink {
    /// A client's socket: written directly, queued only when full.
    Wire(Arc<Wire>),
    /// A queue read by a task ([`channel`]).
    Queue {
        tx: mpsc::UnboundedSender<Item>,
        shared: Arc<Shared>,
    },
}

/// The receiving side, owned by the connection task.
pub struct OutboundRx {
    rx: mpsc::UnboundedReceiver<Item>,
    shared: Arc<Shared>,
}

pub fn channel(conn: ConnId, budget: usize) -> (Outbound, OutboundRx) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        conn,
        queued: AtomicUsize::new(0),
        budget,
        is_slow: AtomicBool::new(false),
        slow: CancellationToken::new(),
        close: AtomicU16::new(0),
    });
    (
        Outbound(Sink::Queue {
            tx,
            shared: shared.clone(),
        }),
        OutboundRx { rx, shared },
    )
}

impl Outbound {
    /// Frames sent to a client's socket.
    pub fn wire(wire: Arc<Wire>) -> Outbound {
        Outbound(Sink::Wire(wire))
    }

    pub fn conn(&self) -> ConnId {
        match &self.0 {
            Sink::Wire(wire) => wire.conn(),
            Sink::Queue { shared, .. } => shared.conn,
        }
    }

    /// Marks the connection slow: its task closes it with `4004`.
    pub fn mark_slow(&self) {
        match &self.0 {
            Sink::Wire(wire) => wire.mark_slow(),
            Sink::Queue { shared, .. } => shared.mark_slow(),
        }
    }

    /// Asks the connection's task to close it with `code` (what the
    /// connection was sent before is still written). Never blocks.
    pub fn close(&self, code: u16) {
        match &self.0 {
            Sink::Wire(wire) => wire.close(code),
            Sink::Queue { shared, .. } => {
                shared.close.store(code, Ordering::Relaxed);
                shared.is_slow.store(true, Ordering::Relaxed);
                shared.slow.cancel();
            }
        }
    }

    /// Sends `frame`; false if the connection is over budget (now marked
    /// slow) or gone. Never blocks.
    pub fn send(&self, frame: Bytes) -> bool {
        match &self.0 {
            Sink::Wire(wire) => wire.send(&frame, true) == Sent::Accepted,
            Sink::Queue { tx, shared } => {
                if shared.is_slow.load(Ordering::Relaxed) {
                    return false;
                }
                let len = frame.len();
                let before = shared.queued.fetch_add(len, Ordering::AcqRel);
                if before + len > shared.budget {
                    shared.queued.fetch_sub(len, Ordering::AcqRel);
                    shared.mark_slow();
                    return false;
                }
                if tx
                    .send(Item {
                        frame,
                        counted: true,
                    })
                    .is_err()
                {
                    shared.queued.fetch_sub(len, Ordering::AcqRel);
                    return false;
                }
                true
            }
        }
    }

    /// Sends `frame` outside the byte budget. Only for a reply whose size
    /// the server bounded itself (a recovering join's replay, capped by
    /// `recovery_max_bytes`), so that catching up never counts as slowness.
    pub fn send_unbudgeted(&self, frame: Bytes) -> bool {
        match &self.0 {
            Sink::Wire(wire) => wire.send(&frame, false) == Sent::Accepted,
            Sink::Queue { tx, shared } => {
                !shared.is_slow.load(Ordering::Relaxed)
                    && tx
                        .send(Item {
                            frame,
                            counted: false,
                        })
                        .is_ok()
            }
        }
    }
}

impl OutboundRx {
    pub async fn recv(&mut self) -> Option<Bytes> {
        let item = self.rx.recv().await?;
        Some(self.take(item))
    }

    pub fn try_recv(&mut self) -> Option<Bytes> {
        let item = self.rx.try_recv().ok()?;
        Some(self.take(item))
    }

    fn take(&self, item: Item) -> Bytes {
        if item.counted {
            self.shared
                .queued
                .fetch_sub(item.frame.len(), Ordering::AcqRel);
        }
        item.frame
    }

    /// Cancelled once the connection went over its budget, or was asked
    /// to close ([`OutboundRx::close_requested`]).
    pub fn slow(&self) -> CancellationToken {
        self.shared.slow.clone()
    }

    /// The close code [`Outbound::close`] asked for, if it did.
    pub fn close_requested(&self) -> Option<u16> {
        Some(self.shared.close.load(Ordering::Relaxed)).filter(|&c| c != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn over_budget_marks_slow_and_refuses() {
        let (tx, mut rx) = channel(1, 10);
        assert!(tx.send(Bytes::from_static(b"123456")));
        assert!(!tx.send(Bytes::from_static(b"123456")), "over budget");
        assert!(rx.slow().is_cancelled());
        assert!(!tx.send(Bytes::from_static(b"1")), "slow stays slow");
        assert_eq!(rx.recv().await.unwrap().len(), 6);
    }

    #[tokio::test]
    async fn unbudgeted_frames_do_not_use_the_budget() {
        let (tx, mut rx) = channel(1, 10);
        assert!(tx.send_unbudgeted(Bytes::from(vec![0; 100])));
        assert!(tx.send(Bytes::from_static(b"12345678")), "budget untouched");
        assert_eq!(rx.recv().await.unwrap().len(), 100);
        assert_eq!(rx.recv().await.unwrap().len(), 8);
        assert!(tx.send(Bytes::from_static(b"12345678")), "budget freed");
    }

    #[tokio::test]
    async fn draining_frees_budget() {
        let (tx, mut rx) = channel(1, 10);
        for _ in 0..5 {
            assert!(tx.send(Bytes::from_static(b"12345678")));
            rx.recv().await.unwrap();
        }
        assert!(!rx.slow().is_cancelled());
    }
}
