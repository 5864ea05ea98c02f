//! The load generator's progress.

use super::*;

pub(crate) struct Progress {
    pub(crate) bar: Option<indicatif::ProgressBar>,
    pub(crate) last_line: Mutex<Instant>,
}

impl Progress {
    pub(crate) fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            last_line: Mutex::new(Instant::now()),
        }
    }

    pub(crate) fn show(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.set_message(line),
            None => {
                let mut last = self.last_line.lock();
                if last.elapsed() >= Duration::from_secs(5) {
                    *last = Instant::now();
                    eprintln!("{line}");
                }
            }
        }
    }

    pub(crate) fn println(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Prints a status line every second until dropped.
pub(crate) fn spawn_progress(
    ctx: Arc<Ctx>,
    progress: Arc<Progress>,
    server_pids: Vec<u32>,
    phase: Arc<Mutex<String>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let me = std::process::id();
        let mut last_server = proc_sample_sum(&server_pids);
        let mut last_me = proc_sample(me);
        let mut last_deliveries = ctx.stats.deliveries.load(Ordering::Relaxed);
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let server = proc_sample_sum(&server_pids);
            let mine = proc_sample(me);
            let deliveries = ctx.stats.deliveries.load(Ordering::Relaxed);
            let pct = |a: &Option<ProcSample>, b: &Option<ProcSample>| match (a, b) {
                (Some(a), Some(b)) => {
                    let secs = b.at.duration_since(a.at).as_secs_f64().max(0.001);
                    format!("{:.0}%", cpu_secs(a, b) / secs * 100.0)
                }
                _ => "?".to_owned(),
            };
            let elapsed = last_me
                .map(|s| s.at.elapsed().as_secs_f64())
                .unwrap_or(1.0)
                .max(0.001);
            progress.show(format!(
                "[{:>5.0}s] {} | conns {} (failed {}, dropped {}) | deliveries/s {:.0} | server cpu {} rss {} MiB | generator cpu {}",
                started.elapsed().as_secs_f64(),
                phase.lock(),
                ctx.stats.connected.load(Ordering::Relaxed),
                ctx.stats.setup_failed.load(Ordering::Relaxed),
                ctx.stats.disconnected.load(Ordering::Relaxed),
                (deliveries - last_deliveries) as f64 / elapsed,
                pct(&last_server, &server),
                server.map_or(0, |s| s.rss_kib / 1024),
                pct(&last_me, &mine),
            ));
            last_server = server;
            last_me = mine;
            last_deliveries = deliveries;
        }
    })
}
