//! The load generator's clock.

use super::*;

pub(crate) static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since this process started (one monotonic clock for send and
/// receive, both in this process).
pub(crate) fn now_ns() -> u64 {
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// `"<send ns> <seq> <node> xxxx…"`, `size` bytes long (at least the three
/// numbers); `node` is the poster's node (cluster), 0 otherwise.
/// Sleeps until `at` on the [`now_ns`] clock.
pub(crate) async fn sleep_until_ns(at: u64) {
    tokio::time::sleep(Duration::from_nanos(at.saturating_sub(now_ns()))).await;
}

/// `--interleave K/N`: when this generator's load is on, on the [`now_ns`]
/// clock. Slots are whole seconds and the window starts on a cycle, so each
/// second of the window belongs to exactly one generator.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schedule {
    /// `--start-at` on this process's clock.
    pub(crate) origin_ns: u64,
    pub(crate) slot_ns: u64,
    pub(crate) index: u64,
    pub(crate) count: u64,
    /// The measured window, from `origin_ns`: after the warm-up, for
    /// `--duration`.
    pub(crate) window_from_ns: u64,
    pub(crate) window_to_ns: u64,
}

impl Schedule {
    pub(crate) fn from_args(args: &Args) -> anyhow::Result<Option<Schedule>> {
        let Some(spec) = &args.interleave else {
            return Ok(None);
        };
        let parsed = spec
            .split_once('/')
            .and_then(|(k, n)| Some((k.parse::<u64>().ok()?, n.parse::<u64>().ok()?)));
        let Some((index, count)) = parsed.filter(|(k, n)| k < n) else {
            bail!("--interleave {spec:?}: K/N with K < N, e.g. 0/2");
        };
        let start_at = args
            .start_at
            .context("--interleave needs --start-at (Unix time in ms)")?;
        if args.slot_ms == 0 || args.slot_ms % 1000 != 0 {
            bail!("--slot-ms must be whole seconds (1000, 2000…)");
        }
        if args.sweep {
            bail!("--interleave measures one window: no --sweep");
        }
        let cycle_ms = args.slot_ms * count;
        let whole_cycles = |secs: f64| {
            let ms = (secs * 1000.0).round() as u64;
            (ms > 0 && ms % cycle_ms == 0).then_some(ms)
        };
        let (Some(warmup_ms), Some(duration_ms)) =
            (whole_cycles(args.warmup), whole_cycles(args.duration))
        else {
            bail!(
                "with --interleave {spec}, --warmup and --duration must be whole cycles of {} s",
                cycle_ms / 1000
            );
        };
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if start_at <= unix_ms {
            bail!("--start-at is {} ms in the past", unix_ms - start_at);
        }
        Ok(Some(Schedule {
            origin_ns: now_ns() + (start_at - unix_ms) * 1_000_000,
            slot_ns: args.slot_ms * 1_000_000,
            index,
            count,
            window_from_ns: warmup_ms * 1_000_000,
            window_to_ns: (warmup_ms + duration_ms) * 1_000_000,
        }))
    }

    /// Whether this generator posts at `t`.
    pub(crate) fn active(&self, t: u64) -> bool {
        t.checked_sub(self.origin_ns).is_some_and(|since| {
            since < self.window_to_ns && (since / self.slot_ns) % self.count == self.index
        })
    }

    pub(crate) fn window_start(&self) -> u64 {
        self.origin_ns + self.window_from_ns
    }

    pub(crate) fn window_end(&self) -> u64 {
        self.origin_ns + self.window_to_ns
    }

    /// Whether second `i` of the window is one of this generator's.
    pub(crate) fn second_active(&self, i: usize) -> bool {
        self.active(self.window_start() + i as u64 * 1_000_000_000)
    }

    /// This generator's slots inside the window, as (start, end).
    pub(crate) fn own_slots(&self) -> Vec<(u64, u64)> {
        (self.window_from_ns / self.slot_ns..self.window_to_ns / self.slot_ns)
            .filter(|slot| slot % self.count == self.index)
            .map(|slot| {
                let start = self.origin_ns + slot * self.slot_ns;
                (start, start + self.slot_ns)
            })
            .collect()
    }
}

/// With --interleave, a slot's server CPU is read until this long after
/// the slot ends, so that the work on deliveries still in flight counts for
/// the server that does it.
pub(crate) const SLOT_DRAIN_NS: u64 = 300_000_000;

pub(crate) fn make_text(seq: u64, node: usize, size: usize) -> String {
    let mut text = format!("{} {} {} ", now_ns(), seq, node);
    while text.len() < size {
        text.push('x');
    }
    text
}

/// The send time, sequence number and poster's node at the start of a text.
pub(crate) fn parse_text(text: &str) -> Option<(u64, u64, usize)> {
    let mut parts = text.splitn(4, ' ');
    let sent = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let node = parts.next()?.parse().ok()?;
    Some((sent, seq, node))
}
