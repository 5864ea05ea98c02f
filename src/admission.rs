//! Connection budgets. Every accepted TCP connection holds a [`Slot`].
//! Connections without a session (HTTP before or without an upgrade,
//! WebSockets before `hello`) share `max_unauthenticated` slots, at most
//! `max_unauthenticated_per_address` per client address; a successful
//! `hello` moves its connection to one of `max_connections` session slots.
//!
//! A full unauthenticated budget never refuses a newcomer: it evicts the
//! oldest unauthenticated connection of the newcomer's own address when
//! that address is at its limit, else of the address holding the most.
//! So idle or hello-less sockets cannot lock token holders out; they only
//! push each other out. Evicted connections count until their socket is
//! closed, up to a second `max_unauthenticated` (then newcomers are
//! dropped at once), so file descriptors stay bounded.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::metrics::{Evicted, Metrics, Refused};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("every session slot is taken (max_connections)")]
    SessionsFull,
    #[error("too many unauthenticated connections still closing")]
    Saturated,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Authenticated sessions (`max_connections`).
    pub sessions: usize,
    /// Connections without a session (`max_unauthenticated`).
    pub unauthenticated: usize,
    /// Of those, per client address (`max_unauthenticated_per_address`).
    pub per_address: usize,
}

pub struct Admission {
    limits: Limits,
    /// `None` for listeners whose connections are not the app's (metrics).
    metrics: Option<Arc<Metrics>>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    pending: HashMap<u64, Pending>,
    /// Live (not evicted) pending connections per address key, oldest first.
    by_address: HashMap<IpAddr, BTreeSet<u64>>,
    live: usize,
    /// Evicted, socket not closed yet.
    closing: usize,
    sessions: usize,
}

struct Pending {
    address: IpAddr,
    evict: CancellationToken,
    evicted: bool,
}

impl Admission {
    pub fn new(limits: Limits, metrics: Option<Arc<Metrics>>) -> Admission {
        Admission {
            limits,
            metrics,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// A slot for a new connection from `ip`, evicting an older
    /// unauthenticated connection if the budget requires it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, AdmissionError> {
        let address = address_key(ip);
        let mut inner = self.inner.lock();
        if inner.live + inner.closing >= self.limits.unauthenticated.saturating_mul(2) {
            drop(inner);
            self.refused(Refused::Saturated);
            return Err(AdmissionError::Saturated);
        }
        let own = inner.by_address.get(&address).map_or(0, BTreeSet::len);
        let victim = if own >= self.limits.per_address {
            inner
                .oldest_of(&address)
                .map(|id| (id, Evicted::PerAddress))
        } else if inner.live >= self.limits.unauthenticated {
            inner.oldest_of_heaviest().map(|id| (id, Evicted::Budget))
        } else {
            None
        };
        if let Some((id, reason)) = victim {
            inner.evict(id);
            if let Some(metrics) = &self.metrics {
                metrics.evicted(reason);
            }
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let evict = CancellationToken::new();
        inner.pending.insert(
            id,
            Pending {
                address,
                evict: evict.clone(),
                evicted: false,
            },
        );
        inner.by_address.entry(address).or_default().insert(id);
        inner.live += 1;
        self.gauges(&inner);
        drop(inner);
        Ok(Slot {
            admission: self.clone(),
            state: State::Pending(id),
            evict,
        })
    }

    /// Whether every session slot is taken (an upgrade then gets 503).
    pub fn sessions_full(&self) -> bool {
        self.inner.lock().sessions >= self.limits.sessions
    }

    /// Counts a refusal (metrics only; the caller answers).
    pub fn refused(&self, reason: Refused) {
        if let Some(metrics) = &self.metrics {
            metrics.refused(reason);
        }
    }

    fn promote(&self, id: u64) -> Result<(), AdmissionError> {
        let mut inner = self.inner.lock();
        if inner.sessions >= self.limits.sessions {
            return Err(AdmissionError::SessionsFull);
        }
        inner.remove(id);
        inner.sessions += 1;
        self.gauges(&inner);
        Ok(())
    }

    fn release(&self, state: State) {
        let mut inner = self.inner.lock();
        match state {
            State::Pending(id) => inner.remove(id),
            State::Session => inner.sessions = inner.sessions.saturating_sub(1),
        }
        self.gauges(&inner);
    }

    fn gauges(&self, inner: &Inner) {
        if let Some(metrics) = &self.metrics {
            metrics.sessions.set(inner.sessions as f64);
            metrics
                .unauthenticated
                .set((inner.live + inner.closing) as f64);
        }
    }
}

impl Inner {
    fn oldest_of(&self, address: &IpAddr) -> Option<u64> {
        self.by_address.get(address)?.first().copied()
    }

    /// The oldest connection of the address holding the most (ties: the
    /// address whose oldest is oldest).
    fn oldest_of_heaviest(&self) -> Option<u64> {
        self.by_address
            .values()
            .filter_map(|ids| Some((ids.len(), *ids.first()?)))
            .max_by_key(|&(len, oldest)| (len, Reverse(oldest)))
            .map(|(_, oldest)| oldest)
    }

    fn evict(&mut self, id: u64) {
        let Some(pending) = self.pending.get_mut(&id) else {
            return;
        };
        if pending.evicted {
            return;
        }
        pending.evicted = true;
        pending.evict.cancel();
        let address = pending.address;
        self.unlink(&address, id);
        self.live -= 1;
        self.closing += 1;
    }

    fn remove(&mut self, id: u64) {
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        if pending.evicted {
            self.closing -= 1;
        } else {
            self.unlink(&pending.address, id);
            self.live -= 1;
        }
    }

    fn unlink(&mut self, address: &IpAddr, id: u64) {
        if let Some(ids) = self.by_address.get_mut(address) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_address.remove(address);
            }
        }
    }
}

/// One connection's place in the budgets; released on drop.
pub struct Slot {
    admission: Arc<Admission>,
    state: State,
    evict: CancellationToken,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Pending(u64),
    Session,
}

impl Slot {
    /// Cancelled when this connection is evicted (only while unauthenticated).
    pub fn evicted(&self) -> CancellationToken {
        self.evict.clone()
    }

    /// Moves the connection to a session slot (at `hello`); refused when
    /// `max_connections` sessions are open.
    pub fn promote(&mut self) -> Result<(), AdmissionError> {
        if let State::Pending(id) = self.state {
            self.admission.promote(id)?;
            self.state = State::Session;
        }
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission.release(self.state);
    }
}

/// The per-address key: IPv4 addresses as they are, IPv6 by /64 (one
/// subscriber's usual allocation), IPv4-mapped IPv6 as IPv4.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(sessions: usize, unauthenticated: usize, per_address: usize) -> Arc<Admission> {
        Arc::new(Admission::new(
            Limits {
                sessions,
                unauthenticated,
                per_address,
            },
            None,
        ))
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn per_address_limit_evicts_that_address_oldest() {
        let admission = admission(10, 10, 2);
        let a1 = admission.admit(ip(1)).unwrap();
        let a2 = admission.admit(ip(1)).unwrap();
        let b1 = admission.admit(ip(2)).unwrap();
        let a3 = admission.admit(ip(1)).unwrap();
        assert!(a1.evicted().is_cancelled(), "oldest of the address");
        assert!(!a2.evicted().is_cancelled());
        assert!(!b1.evicted().is_cancelled(), "other addresses untouched");
        assert!(!a3.evicted().is_cancelled());
    }

    #[test]
    fn full_budget_evicts_from_the_heaviest_address() {
        let admission = admission(10, 4, 4);
        let b1 = admission.admit(ip(2)).unwrap();
        let a: Vec<Slot> = (0..3).map(|_| admission.admit(ip(1)).unwrap()).collect();
        let c1 = admission.admit(ip(3)).unwrap();
        assert!(a[0].evicted().is_cancelled(), "heaviest address pays");
        assert!(!b1.evicted().is_cancelled(), "older, but a light address");
        assert!(!c1.evicted().is_cancelled());
    }

    #[test]
    fn hello_moves_to_a_session_slot_and_sessions_are_bounded() {
        let admission = admission(1, 2, 2);
        let mut first = admission.admit(ip(1)).unwrap();
        let mut second = admission.admit(ip(1)).unwrap();
        first.promote().unwrap();
        assert!(matches!(first.state, State::Session));
        assert!(admission.sessions_full());
        assert_eq!(second.promote(), Err(AdmissionError::SessionsFull));
        // A session does not count against the unauthenticated budget.
        let third = admission.admit(ip(1)).unwrap();
        assert!(!second.evicted().is_cancelled());
        assert!(!third.evicted().is_cancelled());
        drop(first);
        assert!(!admission.sessions_full());
        second.promote().unwrap();
    }

    #[test]
    fn evicted_connections_count_until_closed_then_newcomers_are_dropped() {
        let admission = admission(10, 2, 2);
        let mut kept = Vec::new();
        for _ in 0..4 {
            kept.push(admission.admit(ip(1)).unwrap());
        }
        // 2 live + 2 evicted and not closed yet: the hard cap.
        assert_eq!(
            admission.admit(ip(1)).err(),
            Some(AdmissionError::Saturated)
        );
        kept.remove(0);
        assert!(admission.admit(ip(1)).is_ok());
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(address_key(mapped), ip(1));
    }
}
