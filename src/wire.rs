//! The write side of a client's socket, shared by everything that sends to
//! the connection.
//!
//! A frame is written straight into the socket by whoever sends it: the
//! store's writer thread for the events of a group commit, the connection
//! task for replies. Only when the kernel's send buffer is full (or frames
//! are already waiting) does it go into the connection's queue, which the
//! connection task drains once the socket is writable again.
//!
//! Why: with a queue and a task per connection, every delivery woke a task
//! from outside the runtime (a futex and a context switch on a one-core
//! server), polled its `select!` (zeroing tungstenite's read buffer each
//! time) and copied the frame into tungstenite's write buffer before the
//! one `sendto` that is the delivery's real cost. Written here, a
//! delivery is that `sendto` (a `writev` of the frame's 2–10 byte header
//! and its shared payload), nothing else (`benches/results/profile.md`).
//!
//! Order: everything written to the socket goes through the one mutex,
//! and nothing is written directly while frames wait in the queue, so the
//! connection sees its frames in the order they were sent, and
//! tungstenite's own frames (pongs, pings, the close frame) go through
//! [`WireIo`]'s `AsyncWrite`, in the same order.
//!
//! Budget: the bytes waiting in the queue (not the kernel's buffers) count
//! against the connection's outbound budget; a send that would go over it
//! is refused and marks the connection slow, as `Outbound` always did.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Frames (or parts of frames) written per `writev` when draining.
const DRAIN_SLICES: usize = 64;

/// A connection's socket, write side.
pub struct Wire {
    conn: u64,
    budget: usize,
    state: Mutex<State>,
    /// Wakes the connection task when the queue goes from empty to not.
    queued: Notify,
    /// Checked on every send: an atomic load, where the token takes a lock.
    is_slow: AtomicBool,
    /// Cancelled once the connection is over budget or asked to close.
    slow: CancellationToken,
    /// The close code asked for by [`Wire::close`] (0: none: slow).
    close: AtomicU16,
    frames_out: metrics::Counter,
}

struct State {
    /// `None` once the connection ended: sends are refused.
    half: Option<OwnedWriteHalf>,
    queue: VecDeque<Chunk>,
    /// Bytes of budgeted chunks in the queue.
    budgeted: usize,
}

/// Bytes waiting to be written; `budgeted` ones count against the budget.
struct Chunk {
    bytes: Bytes,
    budgeted: bool,
    /// The start of a frame of which nothing was written yet.
    start: bool,
}

/// What became of a frame sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// In the kernel's send buffer, or queued.
    Accepted,
    /// Over budget (the connection is now slow), or the connection is gone.
    Refused,
}

/// The WebSocket header of an unmasked, final binary frame of `len` bytes
/// (RFC 6455 §5.2): the server's frames are never masked, so one header
/// and one payload shared by every member make the whole frame.
fn binary_header(len: usize) -> ([u8; 10], usize) {
    let mut header = [0u8; 10];
    header[0] = 0x82;
    if len < 126 {
        header[1] = len as u8;
        (header, 2)
    } else if len <= u16::MAX as usize {
        header[1] = 126;
        header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        (header, 4)
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (header, 10)
    }
}

impl Wire {
    /// Splits an upgraded socket: the returned [`WireIo`] is what
    /// tungstenite reads from (and writes its control frames through);
    /// `prefix` holds bytes hyper read past the upgrade request.
    pub fn split(
        conn: u64,
        budget: usize,
        frames_out: metrics::Counter,
        tcp: TcpStream,
        prefix: Bytes,
    ) -> (Arc<Wire>, WireIo) {
        let (read, write) = tcp.into_split();
        let wire = Arc::new(Wire {
            conn,
            budget,
            state: Mutex::new(State {
                half: Some(write),
                queue: VecDeque::new(),
                budgeted: 0,
            }),
            queued: Notify::new(),
            is_slow: AtomicBool::new(false),
            slow: CancellationToken::new(),
            close: AtomicU16::new(0),
            frames_out,
        });
        let io = WireIo {
            prefix,
            read,
            wire: wire.clone(),
        };
        (wire, io)
    }

    pub fn conn(&self) -> u64 {
        self.conn
    }

    /// Sends `payload` as one binary frame. Never blocks: written now if
    /// the socket takes it, else queued (woken task drains it).
    pub fn send(&self, payload: &Bytes, budgeted: bool) -> Sent {
        if self.is_slow.load(Ordering::Relaxed) {
            return Sent::Refused;
        }
        let (header, n) = binary_header(payload.len());
        let mut state = self.state.lock();
        let State {
            half: slot,
            queue,
            budgeted: queued_bytes,
        } = &mut *state;
        let Some(half) = slot.as_mut() else {
            return Sent::Refused;
        };
        let total = n + payload.len();
        let mut written = 0;
        if queue.is_empty() {
            match half.try_write_vectored(&[IoSlice::new(&header[..n]), IoSlice::new(payload)]) {
                Ok(w) if w == total => {
                    self.frames_out.increment(1);
                    return Sent::Accepted;
                }
                Ok(w) => written = w,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                // The socket failed: the reading side sees it and ends the
                // connection; nothing more goes out.
                Err(_) => {
                    *slot = None;
                    return Sent::Refused;
                }
            }
        }
        let left = total - written;
        if budgeted && *queued_bytes + left > self.budget {
            // The frame must not be half written: only a frame not begun
            // can be refused.
            if written == 0 {
                drop(state);
                self.mark_slow();
                return Sent::Refused;
            }
            self.mark_slow();
        }
        let was_empty = queue.is_empty();
        if written < n {
            queue.push_back(Chunk {
                bytes: Bytes::copy_from_slice(&header[written..n]),
                budgeted,
                start: written == 0,
            });
            queue.push_back(Chunk {
                bytes: payload.clone(),
                budgeted,
                start: false,
            });
        } else {
            queue.push_back(Chunk {
                bytes: payload.slice(written - n..),
                budgeted,
                start: false,
            });
        }
        if budgeted {
            *queued_bytes += left;
        }
        drop(state);
        self.frames_out.increment(1);
        if was_empty {
            self.queued.notify_one();
        }
        Sent::Accepted
    }

    /// Bytes already framed (tungstenite's control frames), in order.
    fn send_raw(&self, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.state.lock();
        let State { half, queue, .. } = &mut *state;
        let Some(half) = half else {
            return Err(io::ErrorKind::BrokenPipe.into());
        };
        let mut written = 0;
        if queue.is_empty() {
            match half.try_write(bytes) {
                Ok(w) if w == bytes.len() => return Ok(()),
                Ok(w) => written = w,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(err),
            }
        }
        let was_empty = queue.is_empty();
        queue.push_back(Chunk {
            bytes: Bytes::copy_from_slice(&bytes[written..]),
            budgeted: false,
            start: written == 0,
        });
        drop(state);
        if was_empty {
            self.queued.notify_one();
        }
        Ok(())
    }

    /// Resolves once frames are queued (a permit is kept if that happened
    /// while nobody waited).
    pub async fn queued(&self) {
        self.queued.notified().await;
    }

    /// Writes the queue until it is empty, waiting for the socket to be
    /// writable as needed (`stream` is the socket, for its readiness).
    fn poll_drain(&self, stream: &TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut state = self.state.lock();
            let State {
                half,
                queue,
                budgeted,
            } = &mut *state;
            if queue.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let Some(half) = half else {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            };
            let slices: Vec<IoSlice<'_>> = queue
                .iter()
                .take(DRAIN_SLICES)
                .map(|c| IoSlice::new(&c.bytes))
                .collect();
            match half.try_write_vectored(&slices) {
                Ok(mut w) => {
                    drop(slices);
                    while w > 0 {
                        let Some(front) = queue.front_mut() else {
                            break;
                        };
                        let take = w.min(front.bytes.len());
                        front.bytes.advance(take);
                        front.start = false;
                        if front.budgeted {
                            *budgeted -= take;
                        }
                        w -= take;
                        if front.bytes.is_empty() {
                            queue.pop_front();
                        }
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    drop(slices);
                    drop(state);
                    match stream.poll_write_ready(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                        Poll::Ready(Ok(())) => {}
                    }
                }
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
    }

    /// Shuts down our half of the TCP connection once the queue is written.
    fn poll_shutdown(&self, stream: &TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_drain(stream, cx))?;
        let mut state = self.state.lock();
        match state.half.as_mut() {
            Some(half) => Pin::new(half).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    /// The connection ended: nothing more is written, and the socket is
    /// closed once the reading side is dropped too.
    pub fn end(&self) {
        let mut state = self.state.lock();
        state.half = None;
        state.queue.clear();
        state.budgeted = 0;
    }

    /// Drops what waits in the queue (a slow reader's backlog), keeping
    /// a frame already begun whole, so the close frame can go out next.
    pub fn drop_queued(&self) {
        let mut state = self.state.lock();
        let State {
            queue, budgeted, ..
        } = &mut *state;
        let keep = queue.iter().position(|c| c.start).unwrap_or(queue.len());
        queue.truncate(keep);
        *budgeted = queue
            .iter()
            .filter(|c| c.budgeted)
            .map(|c| c.bytes.len())
            .sum();
    }

    /// Marks the connection slow: its task closes it with `4004`.
    pub fn mark_slow(&self) {
        self.is_slow.store(true, Ordering::Relaxed);
        self.slow.cancel();
    }

    /// Asks the connection's task to close it with `code` (what was sent
    /// before is still written). Never blocks.
    pub fn close(&self, code: u16) {
        self.close.store(code, Ordering::Relaxed);
        self.mark_slow();
    }

    /// Cancelled once the connection went over its budget, or was asked
    /// to close ([`Wire::close_requested`]).
    pub fn slow(&self) -> CancellationToken {
        self.slow.clone()
    }

    /// The close code [`Wire::close`] asked for, if it did.
    pub fn close_requested(&self) -> Option<u16> {
        Some(self.close.load(Ordering::Relaxed)).filter(|&c| c != 0)
    }
}

/// What tungstenite reads from: the socket's read half (after the bytes
/// hyper had already read), and writes to: the [`Wire`], in order with
/// every other frame.
pub struct WireIo {
    prefix: Bytes,
    read: OwnedReadHalf,
    wire: Arc<Wire>,
}

impl WireIo {
    /// Writes what is queued, waiting for the socket as needed.
    pub async fn drain(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.wire.poll_drain(self.read.as_ref(), cx)).await
    }

    /// Reads raw bytes, past the WebSocket framing (the drain after 1009).
    pub async fn read_raw(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        use tokio::io::AsyncReadExt;
        self.read(buffer).await
    }
}

impl AsyncRead for WireIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for WireIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // tungstenite writes whole frames from its buffer: all of it is
        // taken (written or queued), so a frame is never split between
        // this and another sender.
        Poll::Ready(self.wire.send_raw(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.wire.poll_drain(self.read.as_ref(), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.wire.poll_shutdown(self.read.as_ref(), cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_rfc_6455() {
        assert_eq!(binary_header(0).0[..2], [0x82, 0]);
        assert_eq!(binary_header(125).0[..2], [0x82, 125]);
        let (h, n) = binary_header(126);
        assert_eq!((&h[..n], n), (&[0x82, 126, 0, 126][..], 4));
        let (h, n) = binary_header(65_535);
        assert_eq!(&h[..n], &[0x82, 126, 0xff, 0xff]);
        let (h, n) = binary_header(65_536);
        assert_eq!(&h[..n], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }
}
