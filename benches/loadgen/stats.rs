//! The load generator's shared stats.

use super::*;

pub(crate) struct Stats {
    /// Delivery latency (µs) of events that arrived inside the open window.
    pub(crate) latency: Mutex<Histogram<u64>>,
    /// Setup time (µs) of each connection (connect + hello + join).
    pub(crate) setup: Mutex<Histogram<u64>>,
    /// cluster: the same deliveries split by whether the poster was on
    /// another node than the receiver.
    pub(crate) latency_cross: Mutex<Histogram<u64>>,
    pub(crate) latency_local: Mutex<Histogram<u64>>,
    pub(crate) window_cross_deliveries: AtomicU64,
    /// notes: per update, time until every other editor had it (µs).
    pub(crate) propagation: Mutex<Histogram<u64>>,
    /// notes: an editor's own update coming back to it (not a delivery).
    pub(crate) echoes: AtomicU64,
    /// notes: awareness messages sent, and the delivery latency (µs) of
    /// other editors' awareness states (also counted as deliveries).
    pub(crate) awareness_sent: AtomicU64,
    pub(crate) awareness: Mutex<Histogram<u64>>,
    pub(crate) window_open: AtomicBool,
    /// When the window opened (`now_ns`), for [`Stats::timelines`].
    pub(crate) window_started_ns: AtomicU64,
    /// Per [`Series`] and per second of the window (by receive time): the
    /// latencies of that second, to tell a steady tail from a few stalls.
    pub(crate) timelines: Mutex<[Vec<Histogram<u64>>; 3]>,
    pub(crate) deliveries: AtomicU64,
    pub(crate) window_deliveries: AtomicU64,
    pub(crate) window_posts: AtomicU64,
    pub(crate) max_latency_ns: AtomicU64,
    pub(crate) posts: AtomicU64,
    pub(crate) acks: AtomicU64,
    pub(crate) others: AtomicU64,
    pub(crate) connected: AtomicU64,
    pub(crate) setup_failed: AtomicU64,
    pub(crate) disconnected: AtomicU64,
    /// Offsets skipped (a member saw offset n+k after n) and seen twice or
    /// out of order, over all members.
    pub(crate) gaps: AtomicU64,
    pub(crate) dups: AtomicU64,
    pub(crate) errors: Mutex<BTreeMap<String, u64>>,
    pub(crate) recovered: AtomicU64,
    pub(crate) not_recovered: AtomicU64,
    pub(crate) replayed: AtomicU64,
    pub(crate) storm_done: AtomicU64,
    pub(crate) last_recovered_ns: AtomicU64,
    /// `--interleave`: which deliveries and seconds are this generator's.
    pub(crate) schedule: Option<Schedule>,
}

impl Stats {
    pub(crate) fn new(schedule: Option<Schedule>) -> Stats {
        let hist = || Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds");
        Stats {
            latency: Mutex::new(hist()),
            setup: Mutex::new(hist()),
            latency_cross: Mutex::new(hist()),
            latency_local: Mutex::new(hist()),
            window_cross_deliveries: AtomicU64::new(0),
            propagation: Mutex::new(hist()),
            echoes: AtomicU64::new(0),
            awareness_sent: AtomicU64::new(0),
            awareness: Mutex::new(hist()),
            window_open: AtomicBool::new(false),
            window_started_ns: AtomicU64::new(0),
            timelines: Mutex::new([Vec::new(), Vec::new(), Vec::new()]),
            deliveries: AtomicU64::new(0),
            window_deliveries: AtomicU64::new(0),
            window_posts: AtomicU64::new(0),
            max_latency_ns: AtomicU64::new(0),
            posts: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            others: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            setup_failed: AtomicU64::new(0),
            disconnected: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            dups: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            recovered: AtomicU64::new(0),
            not_recovered: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            storm_done: AtomicU64::new(0),
            last_recovered_ns: AtomicU64::new(0),
            schedule,
        }
    }

    pub(crate) fn error(&self, what: impl Into<String>) {
        *self.errors.lock().entry(what.into()).or_insert(0) += 1;
    }

    /// When a message sent at `sent_ns` and received `now` counts in the
    /// window, the time its second is filed under: its receive time; or,
    /// with `--interleave`, its send time if it was sent inside the window,
    /// so that a slot's deliveries still in flight when the next
    /// generator's slot starts stay in the seconds of this one.
    pub(crate) fn filed_at(&self, sent_ns: u64, now: u64) -> Option<u64> {
        if !self.window_open.load(Ordering::Relaxed) {
            return None;
        }
        match &self.schedule {
            None => Some(now),
            Some(s) => (s.window_start()..s.window_end())
                .contains(&sent_ns)
                .then_some(sent_ns),
        }
    }

    pub(crate) fn delivered(&self, sent_ns: u64) {
        let now = now_ns();
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        if let Some(at) = self.filed_at(sent_ns, now) {
            let latency = now.saturating_sub(sent_ns);
            self.window_deliveries.fetch_add(1, Ordering::Relaxed);
            self.max_latency_ns.fetch_max(latency, Ordering::Relaxed);
            self.latency
                .lock()
                .saturating_record((latency / 1000).max(1));
            self.record_second(Series::Delivery, at, latency);
        }
    }

    pub(crate) fn record_second(&self, series: Series, now: u64, latency_ns: u64) {
        let second = (now.saturating_sub(self.window_started_ns.load(Ordering::Relaxed))
            / 1_000_000_000) as usize;
        let mut timelines = self.timelines.lock();
        let timeline = &mut timelines[series as usize];
        while timeline.len() <= second.min(3600) {
            timeline.push(Histogram::new_with_bounds(1, 600_000_000, 2).expect("histogram bounds"));
        }
        if let Some(h) = timeline.get_mut(second) {
            h.saturating_record((latency_ns / 1000).max(1));
        }
    }

    /// The window's seconds of `series` (with `--interleave`, only those
    /// of this generator's slots): samples, p99 and max, in µs.
    pub(crate) fn seconds(&self, series: Series) -> Vec<(u64, u64, u64)> {
        self.timelines.lock()[series as usize]
            .iter()
            .enumerate()
            .filter(|(i, _)| self.schedule.as_ref().is_none_or(|s| s.second_active(*i)))
            .map(|(_, h)| (h.len(), h.value_at_quantile(0.99), h.max()))
            .collect()
    }

    /// One entry per second of the window: samples, p99 and max (ms).
    pub(crate) fn timeline_json(&self, series: Series) -> Value {
        let ms = |us: u64| (us as f64 / 1000.0 * 100.0).round() / 100.0;
        Value::Array(
            self.seconds(series)
                .into_iter()
                .map(|(samples, p99, max)| json!([samples, ms(p99), ms(max)]))
                .collect(),
        )
    }

    /// The steady tail of `series`: the median of the p99s of the window's
    /// seconds (see [`steady_p99_ms`]).
    pub(crate) fn steady_p99_ms(&self, series: Series) -> Option<f64> {
        let seconds: Vec<(u64, f64)> = self
            .seconds(series)
            .into_iter()
            .map(|(samples, p99, _)| (samples, p99 as f64 / 1000.0))
            .collect();
        steady_p99_ms(&seconds).map(|v| (v * 1000.0).round() / 1000.0)
    }

    /// cluster: files a delivery already counted by [`Stats::delivered`]
    /// as cross-node or same-node.
    pub(crate) fn delivered_across(&self, sent_ns: u64, cross: bool) {
        let now = now_ns();
        let Some(at) = self.filed_at(sent_ns, now) else {
            return;
        };
        let latency = now.saturating_sub(sent_ns);
        let hist = if cross {
            self.window_cross_deliveries.fetch_add(1, Ordering::Relaxed);
            self.record_second(Series::CrossNode, at, latency);
            &self.latency_cross
        } else {
            &self.latency_local
        };
        hist.lock().saturating_record((latency / 1000).max(1));
    }

    /// notes: another editor's awareness state sent at `sent_ns` arrived.
    pub(crate) fn awareness_delivered(&self, sent_ns: u64) {
        let now = now_ns();
        if self.filed_at(sent_ns, now).is_some() {
            let latency = now.saturating_sub(sent_ns);
            self.awareness
                .lock()
                .saturating_record((latency / 1000).max(1));
        }
    }

    /// notes: the last other editor just received an update sent at `sent_ns`.
    pub(crate) fn propagated(&self, sent_ns: u64) {
        let now = now_ns();
        if let Some(at) = self.filed_at(sent_ns, now) {
            let latency = now.saturating_sub(sent_ns);
            self.propagation
                .lock()
                .saturating_record((latency / 1000).max(1));
            self.record_second(Series::Propagation, at, latency);
        }
    }

    pub(crate) fn open_window(&self) {
        self.latency.lock().reset();
        self.latency_cross.lock().reset();
        self.latency_local.lock().reset();
        self.propagation.lock().reset();
        self.awareness.lock().reset();
        self.window_cross_deliveries.store(0, Ordering::Relaxed);
        self.window_deliveries.store(0, Ordering::Relaxed);
        self.window_posts.store(0, Ordering::Relaxed);
        self.max_latency_ns.store(0, Ordering::Relaxed);
        self.timelines.lock().iter_mut().for_each(Vec::clear);
        let start = self.schedule.map_or_else(now_ns, |s| s.window_start());
        self.window_started_ns.store(start, Ordering::Relaxed);
        self.window_open.store(true, Ordering::Relaxed);
    }

    pub(crate) fn close_window(&self) {
        self.window_open.store(false, Ordering::Relaxed);
    }

    pub(crate) fn latency_json(&self) -> Value {
        hist_json(&self.latency.lock())
    }

    pub(crate) fn errors_json(&self) -> Value {
        json!(self.errors.lock().clone())
    }
}

/// The latencies [`Stats`] keeps a per-second timeline of.
#[derive(Clone, Copy)]
pub(crate) enum Series {
    /// Every delivery (`steps[0].timeline`).
    Delivery = 0,
    /// cluster: deliveries whose poster was on the other node.
    CrossNode = 1,
    /// notes: an update reaching the last other editor.
    Propagation = 2,
}

/// Seconds with fewer samples than this (the window's cut edges) are left
/// out of the steady p99.
pub(crate) const STEADY_MIN_SAMPLES: u64 = 20;

/// The steady tail: the median over the window's seconds of each second's
/// p99, from `(samples, p99_ms)` per second. A p99 over a whole short
/// window moves with how many stalls (a GC pause, a descheduled thread, a
/// slow flush) happen to fall in it, which on this shared machine is
/// luck; a stall moves the median of the per-second p99s by one second
/// at most. Stalls are counted on their own (`compare`'s stall table).
pub(crate) fn steady_p99_ms(seconds: &[(u64, f64)]) -> Option<f64> {
    median(
        seconds
            .iter()
            .filter(|(samples, _)| *samples >= STEADY_MIN_SAMPLES)
            .map(|(_, p99)| *p99)
            .collect(),
    )
}

pub(crate) fn hist_json(h: &Histogram<u64>) -> Value {
    let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
    if h.is_empty() {
        return json!({"count": 0});
    }
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.5)),
        "p90_ms": ms(h.value_at_quantile(0.9)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
        "mean_ms": (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
    })
}
