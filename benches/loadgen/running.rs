//! The load generator's running.

use super::*;

/// CPU time (s) and run-queue wait (ms) of a process over a window.
#[derive(Clone, Copy, Default)]
pub(crate) struct Use {
    pub(crate) cpu: f64,
    pub(crate) wait_ms: f64,
}

/// What one measured window saw.
pub(crate) struct Measured {
    /// Seconds the load was on (with `--interleave`: this generator's slots).
    pub(crate) secs: f64,
    /// Seconds the processes were sampled over (the slots and their drains).
    pub(crate) sampled_secs: f64,
    pub(crate) posts: u64,
    pub(crate) acks: u64,
    pub(crate) delivered: u64,
    /// The server (all nodes), this generator and Redis; None where `/proc`
    /// could not be read (or, for Redis, there is none).
    pub(crate) use_of: [Option<Use>; 3],
    pub(crate) server_after: Option<ProcSample>,
    pub(crate) redis_after: Option<ProcSample>,
}

impl Measured {
    /// Adds the CPU and wait between two [`Run::sample_all`]s.
    pub(crate) fn add(
        &mut self,
        before: &[Option<ProcSample>; 3],
        after: &[Option<ProcSample>; 3],
    ) {
        for (i, total) in self.use_of.iter_mut().enumerate() {
            *total = match (*total, &before[i], &after[i]) {
                (Some(t), Some(a), Some(b)) => Some(Use {
                    cpu: t.cpu + cpu_secs(a, b),
                    wait_ms: t.wait_ms + wait_ms(a, b),
                }),
                _ => None,
            };
        }
    }
}

pub(crate) struct Run {
    pub(crate) args: Args,
    pub(crate) target: Target,
    pub(crate) ctx: Arc<Ctx>,
    pub(crate) rate_tx: watch::Sender<f64>,
    /// Every server process (one per node); sampled as one.
    pub(crate) server_pids: Vec<u32>,
    pub(crate) redis_pid: Option<u32>,
    pub(crate) progress: Arc<Progress>,
    pub(crate) phase: Arc<Mutex<String>>,
    /// A unique prefix for room names, so reruns against one server never
    /// share rooms.
    pub(crate) run_id: String,
    pub(crate) members: Vec<mpsc::UnboundedSender<Cmd>>,
}

impl Run {
    pub(crate) fn set_phase(&self, phase: impl Into<String>) {
        let phase = phase.into();
        self.progress.println(format!("-- {phase}"));
        *self.phase.lock() = phase;
    }

    /// With `--interleave`: fails when setup ran past `--start-at` (the
    /// generators taking turns would no longer share the schedule's start).
    pub(crate) fn check_schedule(&self) -> anyhow::Result<()> {
        if let Some(s) = &self.ctx.stats.schedule {
            let late = now_ns().saturating_sub(s.origin_ns);
            if late > 0 {
                bail!(
                    "setup ended {:.1} s after --start-at: start the schedule later",
                    late as f64 / 1e9
                );
            }
        }
        Ok(())
    }

    pub(crate) fn sample_server(&self) -> Option<ProcSample> {
        proc_sample_sum(&self.server_pids)
    }

    pub(crate) fn sample_redis(&self) -> Option<ProcSample> {
        self.redis_pid.and_then(proc_sample)
    }

    /// Starts `count` members over rooms of `room_size`, `room_of(i)`
    /// naming member i's room; waits until every setup finished.
    pub(crate) async fn connect_members(
        &mut self,
        count: usize,
        room_of: impl Fn(usize) -> String,
    ) -> Value {
        let rooms: Vec<String> = (0..count)
            .map(&room_of)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if self.target == Target::Preau {
            self.set_phase(format!("opening {} rooms", rooms.len()));
            if let Err(err) = self.ctx.endpoint.open_rooms(&self.run_id, &rooms).await {
                // The members' joins then fail with `unknown_room`, counted
                // as setup failures.
                self.ctx.stats.error(format!("opening rooms: {err:#}"));
            }
        }
        self.set_phase(format!("connecting {count}"));
        let started = Instant::now();
        let before = (self.ctx.stats.connected.load(Ordering::Relaxed))
            + self.ctx.stats.setup_failed.load(Ordering::Relaxed);
        for i in 0..count {
            let (tx, rx) = mpsc::unbounded_channel();
            self.members.push(tx);
            let user = format!("{}-m{i}", self.run_id);
            let node = i % self.ctx.endpoint.urls.len().max(1);
            tokio::spawn(member(self.ctx.clone(), user, room_of(i), node, rx));
        }
        loop {
            let done = self.ctx.stats.connected.load(Ordering::Relaxed)
                + self.ctx.stats.setup_failed.load(Ordering::Relaxed)
                - before;
            if done >= count as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        let connected = self.ctx.stats.connected.load(Ordering::Relaxed);
        let failed = self.ctx.stats.setup_failed.load(Ordering::Relaxed);
        self.progress.println(format!(
            "   {connected} connected, {failed} failed in {secs:.2} s ({:.0}/s)",
            count as f64 / secs
        ));
        json!({
            "connections": count,
            "connected": connected,
            "failed": failed,
            "seconds": round3(secs),
            "per_second": round1(count as f64 / secs),
            "concurrency": self.args.connect_concurrency,
            "setup_latency": hist_json(&self.ctx.stats.setup.lock()),
        })
    }

    /// Waits until the generator has received nothing new for `quiet`
    /// (at most `max`): presence frames and events in flight drained.
    pub(crate) async fn settle(&self, quiet: Duration, max: Duration) -> f64 {
        let started = Instant::now();
        let count = || {
            self.ctx.stats.deliveries.load(Ordering::Relaxed)
                + self.ctx.stats.others.load(Ordering::Relaxed)
                + self.ctx.stats.acks.load(Ordering::Relaxed)
        };
        let mut last = count();
        let mut still_since = Instant::now();
        while started.elapsed() < max {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = count();
            if now != last {
                last = now;
                still_since = Instant::now();
            } else if still_since.elapsed() >= quiet {
                break;
            }
        }
        started.elapsed().as_secs_f64()
    }

    /// Measures one window of `duration` after `warmup` at the current rate
    /// (with `--interleave`: the schedule's window, over this generator's
    /// slots).
    pub(crate) async fn window(&self, warmup: f64, duration: f64) -> Value {
        let m = match self.ctx.stats.schedule {
            Some(schedule) => self.measure_slots(&schedule).await,
            None => self.measure(warmup, duration).await,
        };
        self.window_json(&m)
    }

    /// One window of `duration` after `warmup`, CPU sampled at both ends.
    pub(crate) async fn measure(&self, warmup: f64, duration: f64) -> Measured {
        tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
        let stats = &self.ctx.stats;
        let before = self.sample_all();
        let delivered_before = stats.deliveries.load(Ordering::Relaxed);
        let posts_before = stats.posts.load(Ordering::Relaxed);
        let acks_before = stats.acks.load(Ordering::Relaxed);
        stats.open_window();
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(duration)).await;
        stats.close_window();
        let secs = started.elapsed().as_secs_f64();
        let after = self.sample_all();
        let mut m = Measured {
            secs,
            sampled_secs: secs,
            posts: stats.posts.load(Ordering::Relaxed) - posts_before,
            acks: stats.acks.load(Ordering::Relaxed) - acks_before,
            delivered: stats.deliveries.load(Ordering::Relaxed) - delivered_before,
            use_of: [Some(Use::default()); 3],
            server_after: after[0],
            redis_after: after[2],
        };
        m.add(&before, &after);
        m
    }

    /// `--interleave`: the schedule's window; CPU and run-queue wait summed
    /// over this generator's slots, each read until [`SLOT_DRAIN_NS`] after
    /// it ends; the deliveries of what was sent in them.
    pub(crate) async fn measure_slots(&self, schedule: &Schedule) -> Measured {
        let stats = &self.ctx.stats;
        sleep_until_ns(schedule.window_start()).await;
        let acks_before = stats.acks.load(Ordering::Relaxed);
        stats.open_window();
        let mut m = Measured {
            secs: 0.0,
            sampled_secs: 0.0,
            posts: 0,
            acks: 0,
            delivered: 0,
            use_of: [Some(Use::default()); 3],
            server_after: None,
            redis_after: None,
        };
        for (start, end) in schedule.own_slots() {
            sleep_until_ns(start).await;
            let before = self.sample_all();
            sleep_until_ns(end + SLOT_DRAIN_NS).await;
            let after = self.sample_all();
            m.add(&before, &after);
            m.secs += (end - start) as f64 / 1e9;
            m.sampled_secs += (end + SLOT_DRAIN_NS - start) as f64 / 1e9;
        }
        // What the last slots sent is still arriving.
        sleep_until_ns(schedule.window_end() + 1_000_000_000).await;
        stats.close_window();
        let after = self.sample_all();
        m.server_after = after[0];
        m.redis_after = after[2];
        m.posts = stats.window_posts.load(Ordering::Relaxed);
        m.acks = stats.acks.load(Ordering::Relaxed) - acks_before;
        m.delivered = stats.window_deliveries.load(Ordering::Relaxed);
        m
    }

    /// The server (all nodes), this generator and Redis, in [`Measured`]'s order.
    pub(crate) fn sample_all(&self) -> [Option<ProcSample>; 3] {
        [
            self.sample_server(),
            proc_sample(std::process::id()),
            self.sample_redis(),
        ]
    }

    pub(crate) fn window_json(&self, m: &Measured) -> Value {
        let stats = &self.ctx.stats;
        let [server, generator, redis] = m.use_of;
        let secs = m.secs;
        let delivered = m.delivered;
        let percent = |u: Option<Use>| u.map(|u| round1(u.cpu / m.sampled_secs * 100.0));
        let per =
            |u: Option<Use>, n: u64| u.filter(|_| n > 0).map(|u| round3(u.cpu * 1e6 / n as f64));
        let cross = stats.window_cross_deliveries.load(Ordering::Relaxed);
        let mut window = json!({
            "seconds": round3(secs),
            "posts_per_s": round1(m.posts as f64 / secs),
            "acks_per_s": round1(m.acks as f64 / secs),
            "deliveries_per_s": round1(delivered as f64 / secs),
            "latency": stats.latency_json(),
            "timeline": stats.timeline_json(Series::Delivery),
            "server_cpu_percent": percent(server),
            "server_cpu_us_per_delivery": per(server, delivered),
            "server_rss_mib": m.server_after.map(|s| round1(s.rss_kib as f64 / 1024.0)),
            "generator_cpu_percent": percent(generator),
            "server_runqueue_wait_ms": server.map(|u| round1(u.wait_ms)),
            "generator_runqueue_wait_ms": generator.map(|u| round1(u.wait_ms)),
            "generator_cpu_us_per_delivery": per(generator, delivered),
            "server_cpu_us_per_post": per(server, m.posts),
        });
        window["latency"]["steady_p99_ms"] = json!(stats.steady_p99_ms(Series::Delivery));
        if let Some(s) = &stats.schedule {
            window["interleave"] = json!({
                "slot": s.index,
                "of": s.count,
                "slot_seconds": s.slot_ns as f64 / 1e9,
                "cpu_sampled_seconds": round3(m.sampled_secs),
            });
        }
        if self.server_pids.len() > 1 {
            window["server_processes"] = json!(self.server_pids.len());
            window["server_rss_mib_per_process"] = json!(self
                .server_pids
                .iter()
                .map(|&pid| proc_sample(pid).map(|s| round1(s.rss_kib as f64 / 1024.0)))
                .collect::<Vec<_>>());
        }
        if self.ctx.endpoint.urls.len() > 1 {
            window["cross_node_deliveries_per_s"] = json!(round1(cross as f64 / secs));
            window["latency_cross_node"] = hist_json(&stats.latency_cross.lock());
            window["latency_cross_node"]["steady_p99_ms"] =
                json!(stats.steady_p99_ms(Series::CrossNode));
            window["timeline_cross_node"] = stats.timeline_json(Series::CrossNode);
            window["latency_same_node"] = hist_json(&stats.latency_local.lock());
        }
        if self.redis_pid.is_some() {
            window["redis_cpu_percent"] = json!(percent(redis));
            window["redis_rss_mib"] =
                json!(m.redis_after.map(|s| round1(s.rss_kib as f64 / 1024.0)));
            if let (Some(server), Some(redis)) = (server, redis) {
                if delivered > 0 {
                    window["server_and_redis_cpu_us_per_delivery"] =
                        json!(round3((server.cpu + redis.cpu) * 1e6 / delivered as f64));
                }
            }
        }
        if self.args.scenario == "notes" {
            window["propagation_to_all_others"] = hist_json(&stats.propagation.lock());
            window["propagation_to_all_others"]["steady_p99_ms"] =
                json!(stats.steady_p99_ms(Series::Propagation));
            window["timeline_propagation"] = stats.timeline_json(Series::Propagation);
            window["awareness_latency"] = hist_json(&stats.awareness.lock());
        }
        window
    }

    /// Closes every member; returns what each saw last, by room.
    pub(crate) async fn close_all(&mut self) -> Vec<(String, u64)> {
        let mut replies = Vec::new();
        for tx in self.members.drain(..) {
            let (reply_tx, reply_rx) = oneshot::channel();
            if tx.send(Cmd::Close(reply_tx)).is_ok() {
                replies.push(reply_rx);
            }
        }
        let mut seen = Vec::new();
        for reply in replies {
            if let Ok(Ok(last)) = tokio::time::timeout(Duration::from_secs(10), reply).await {
                seen.push(last);
            }
        }
        seen
    }

    pub(crate) fn common(&self) -> Value {
        let stats = &self.ctx.stats;
        json!({
            "gaps": stats.gaps.load(Ordering::Relaxed),
            "duplicates": stats.dups.load(Ordering::Relaxed),
            "dropped_connections": stats.disconnected.load(Ordering::Relaxed),
            "errors": stats.errors_json(),
        })
    }
}

pub(crate) async fn idle(run: &mut Run) -> anyhow::Result<Value> {
    let baseline = run.sample_server();
    // The generator's own run-queue wait over the whole run (setup to end
    // of hold): idle has no measured window, and a starved generator
    // inflates setup and settling, so `compare` can flag a noisy run.
    let me_before = proc_sample(std::process::id());
    let n = run.args.connections;
    let size = run.args.room_size;
    let id = run.run_id.clone();
    let setup = run
        .connect_members(n, |i| format!("3B/chat/{id}-i{}", i / size))
        .await;
    run.set_phase("settling");
    let settle = run
        .settle(Duration::from_secs(1), Duration::from_secs(30))
        .await;
    run.set_phase(format!("holding {:.0} s", run.args.hold));
    let hold_start = run.sample_server();
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < run.args.hold {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(s) = run.sample_server() {
            samples.push(s.rss_kib);
        }
    }
    let hold_end = run.sample_server();
    samples.sort_unstable();
    let rss = samples.get(samples.len() / 2).copied();
    let connected = run.ctx.stats.connected.load(Ordering::Relaxed);
    let per_conn = match (baseline, rss) {
        (Some(b), Some(rss)) if connected > 0 => {
            Some(round3((rss as f64 - b.rss_kib as f64) / connected as f64))
        }
        _ => None,
    };
    let idle_cpu = match (hold_start, hold_end) {
        (Some(a), Some(b)) => Some(round1(
            cpu_secs(&a, &b) / b.at.duration_since(a.at).as_secs_f64() * 100.0,
        )),
        _ => None,
    };
    let me = proc_sample(std::process::id());
    let (gen_wait, gen_wait_secs) = match (&me_before, &me) {
        (Some(a), Some(b)) => (
            Some(round1(wait_ms(a, b))),
            Some(round3(b.at.duration_since(a.at).as_secs_f64())),
        ),
        _ => (None, None),
    };
    let result = json!({
        "setup": setup,
        "settle_seconds": round3(settle),
        "generator_runqueue_wait_ms": gen_wait,
        "generator_runqueue_wait_over_seconds": gen_wait_secs,
        "rooms": n.div_ceil(size),
        "server_rss_baseline_mib": baseline.map(|s| round1(s.rss_kib as f64 / 1024.0)),
        "server_rss_mib": rss.map(|r| round1(r as f64 / 1024.0)),
        "server_rss_kib_per_connection": per_conn,
        "server_cpu_percent_while_idle": idle_cpu,
        "generator_rss_kib_per_connection": me.filter(|_| connected > 0)
            .map(|m| round3(m.rss_kib as f64 / connected as f64)),
        "presence_and_other_frames": run.ctx.stats.others.load(Ordering::Relaxed),
    });
    run.close_all().await;
    Ok(result)
}

pub(crate) async fn revision(run: &mut Run) -> anyhow::Result<Value> {
    let size = run.args.room_size;
    let n = run.args.rooms * size;
    let id = run.run_id.clone();
    let setup = run
        .connect_members(n, |i| format!("3B/chat/{id}-r{}", i / size))
        .await;
    run.set_phase("settling");
    run.settle(Duration::from_secs(1), Duration::from_secs(30))
        .await;
    run.check_schedule()?;
    let posting_from = run.ctx.stats.deliveries.load(Ordering::Relaxed);
    let acks_from = run.ctx.stats.acks.load(Ordering::Relaxed);
    let mut steps = Vec::new();
    let mut rate = run.args.rate;
    let mut best: Option<Value> = None;
    let max_steps = if run.args.sweep {
        run.args.sweep_steps
    } else {
        1
    };
    for step in 0..max_steps {
        let expected = rate * n as f64 * size as f64;
        run.set_phase(format!(
            "step {}: {rate:.3} posts/s per member, ~{expected:.0} deliveries/s",
            step + 1
        ));
        run.rate_tx.send_replace(rate);
        let mut window = run.window(run.args.warmup, run.args.duration).await;
        window["rate_per_member"] = json!(round3(rate));
        window["offered_deliveries_per_s"] = json!(round1(expected));
        let p99 = window["latency"]["p99_ms"]
            .as_f64()
            .unwrap_or(f64::INFINITY);
        let disconnected = run.ctx.stats.disconnected.load(Ordering::Relaxed);
        let ok = p99 < run.args.p99_limit_ms && disconnected == 0;
        window["p99_under_limit"] = json!(ok);
        run.progress.println(format!(
            "   {:.0} deliveries/s, p50 {} ms, p99 {} ms, max {} ms, server {} µs/delivery, server cpu {}%, generator cpu {}%, run-queue wait server {} ms generator {} ms",
            window["deliveries_per_s"].as_f64().unwrap_or(0.0),
            window["latency"]["p50_ms"],
            window["latency"]["p99_ms"],
            window["latency"]["max_ms"],
            window["server_cpu_us_per_delivery"],
            window["server_cpu_percent"],
            window["generator_cpu_percent"],
            window["server_runqueue_wait_ms"],
            window["generator_runqueue_wait_ms"],
        ));
        steps.push(window.clone());
        if !ok {
            break;
        }
        best = Some(window);
        rate *= run.args.sweep_factor;
    }
    run.rate_tx.send_replace(0.0);
    run.set_phase("draining");
    run.settle(Duration::from_secs(1), Duration::from_secs(20))
        .await;
    let delivered = run.ctx.stats.deliveries.load(Ordering::Relaxed) - posting_from;
    let acks = run.ctx.stats.acks.load(Ordering::Relaxed) - acks_from;
    let mut result = json!({
        "setup": setup,
        "rooms": run.args.rooms,
        "room_size": size,
        "message_bytes": run.args.size,
        "steps": steps,
        "sweep": run.args.sweep,
        "p99_limit_ms": run.args.p99_limit_ms,
        "posts_acked": acks,
        "deliveries_expected_from_acks": acks * size as u64,
        "deliveries": delivered,
    });
    if run.args.sweep {
        result["best"] = best.unwrap_or(Value::Null);
    }
    run.close_all().await;
    Ok(result)
}

pub(crate) async fn announce(run: &mut Run) -> anyhow::Result<Value> {
    let k = run.args.members;
    let room = format!("3B/chat/{}-a", run.run_id);
    let setup = run.connect_members(k, |_| room.clone()).await;
    run.set_phase("settling (presence)");
    let settle = run
        .settle(Duration::from_secs(1), Duration::from_secs(120))
        .await;
    let presence = run.ctx.stats.others.load(Ordering::Relaxed);
    let connected = run.ctx.stats.connected.load(Ordering::Relaxed);
    let mut lasts = Vec::new();
    let server_before = run.sample_server();
    run.ctx.stats.open_window();
    let mut complete = 0;
    for r in 0..run.args.repeat {
        run.set_phase(format!("announce {}/{}", r + 1, run.args.repeat));
        let before = run.ctx.stats.deliveries.load(Ordering::Relaxed);
        run.ctx.stats.max_latency_ns.store(0, Ordering::Relaxed);
        let Some(poster) = run.members.first() else {
            bail!("no member");
        };
        poster
            .send(Cmd::Post(r as u64 + 1))
            .map_err(|_| anyhow::anyhow!("poster gone"))?;
        let started = Instant::now();
        while run.ctx.stats.deliveries.load(Ordering::Relaxed) - before < connected
            && started.elapsed() < Duration::from_secs(30)
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let got = run.ctx.stats.deliveries.load(Ordering::Relaxed) - before;
        if got >= connected {
            complete += 1;
        }
        let last_ms = run.ctx.stats.max_latency_ns.load(Ordering::Relaxed) as f64 / 1e6;
        run.progress.println(format!(
            "   {got}/{connected} members have it; the last after {last_ms:.2} ms"
        ));
        lasts.push(json!({"received": got, "last_member_ms": round3(last_ms)}));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    run.ctx.stats.close_window();
    let server_after = run.sample_server();
    let mut last_ms: Vec<f64> = lasts
        .iter()
        .filter_map(|l| l["last_member_ms"].as_f64())
        .collect();
    last_ms.sort_by(f64::total_cmp);
    let result = json!({
        "setup": setup,
        "members": k,
        "settle_seconds": round3(settle),
        "presence_and_other_frames_during_setup": presence,
        "server_rss_mib": server_after.map(|s| round1(s.rss_kib as f64 / 1024.0)),
        "server_cpu_seconds_during_announces": match (server_before, server_after) {
            (Some(a), Some(b)) => Some(round3(cpu_secs(&a, &b))),
            _ => None,
        },
        "server_runqueue_wait_ms_during_announces": match (server_before, server_after) {
            (Some(a), Some(b)) => Some(round1(wait_ms(&a, &b))),
            _ => None,
        },
        "repeats": lasts,
        "complete_repeats": complete,
        "last_member_ms_median": last_ms.get(last_ms.len() / 2).copied(),
        "last_member_ms_max": last_ms.last().copied(),
        "last_member_ms_min": last_ms.first().copied(),
        "per_member_latency": run.ctx.stats.latency_json(),
    });
    run.close_all().await;
    Ok(result)
}

/// A room's writer in reconnect-storm: posts at `rate` with acks, keeps
/// the last acked offset.
pub(crate) async fn writer(
    ctx: Arc<Ctx>,
    user: String,
    room: String,
    rate: f64,
    stop: watch::Receiver<bool>,
    head: Arc<AtomicU64>,
) {
    let Ok((mut conn, _)) = setup(&ctx, &user, &room, 0).await else {
        ctx.stats.error("writer setup failed");
        return;
    };
    let mut ticker = post_ticker(rate);
    let mut seq = 0;
    loop {
        ticker.tick().await;
        if *stop.borrow() {
            break;
        }
        // Drain its own events (it is a member too).
        while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, conn.next()).await {}
        seq += 1;
        match conn.post_acked(&room, &make_text(seq, 0, ctx.size)).await {
            Ok(offset) => {
                head.fetch_max(offset, Ordering::Relaxed);
                ctx.stats.posts.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => ctx.stats.error(format!("writer post: {err}")),
        }
    }
    conn.close();
}

pub(crate) async fn reconnect_storm(run: &mut Run) -> anyhow::Result<Value> {
    if run.target != Target::Preau {
        bail!(
            "reconnect-storm needs recovery (join with since): only préau has it here \
             (the bare peer has no history; the Socket.IO peer runs without connection state recovery)"
        );
    }
    let size = run.args.room_size;
    let k = run.args.members;
    let rooms = k.div_ceil(size);
    let id = run.run_id.clone();
    let room_name = move |r: usize| format!("3B/chat/{id}-s{r}");
    let setup = run.connect_members(k, |i| room_name(i / size)).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut heads = Vec::new();
    for r in 0..rooms {
        let head = Arc::new(AtomicU64::new(0));
        heads.push(head.clone());
        tokio::spawn(writer(
            run.ctx.clone(),
            format!("{}-w{r}", run.run_id),
            room_name(r),
            run.args.rate,
            stop_rx.clone(),
            head,
        ));
    }
    run.set_phase(format!(
        "writers posting {:.2}/s in each of {rooms} rooms",
        run.args.rate
    ));
    tokio::time::sleep(Duration::from_secs_f64(run.args.warmup.max(2.0))).await;
    run.set_phase(format!("storm: {k} clients drop and reconnect"));
    let server_before = run.sample_server();
    let storm_start = now_ns();
    run.ctx
        .storm_started_ns
        .store(storm_start, Ordering::Relaxed);
    for tx in &run.members {
        let _ = tx.send(Cmd::Reconnect);
    }
    let started = Instant::now();
    while run.ctx.stats.storm_done.load(Ordering::Relaxed) < run.members.len() as u64
        && started.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let last = run.ctx.stats.last_recovered_ns.load(Ordering::Relaxed);
    let all_secs = last.saturating_sub(storm_start) as f64 / 1e9;
    let server_after = run.sample_server();
    run.progress.println(format!(
        "   {} recovered, {} not recovered, in {all_secs:.3} s",
        run.ctx.stats.recovered.load(Ordering::Relaxed),
        run.ctx.stats.not_recovered.load(Ordering::Relaxed)
    ));
    run.set_phase("after the storm");
    tokio::time::sleep(Duration::from_secs_f64(run.args.warmup.max(2.0))).await;
    stop_tx.send_replace(true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    run.settle(Duration::from_secs(1), Duration::from_secs(20))
        .await;
    // What every member saw last against the room's last acked offset.
    let seen = run.close_all().await;
    let mut tail_missing = 0u64;
    for (room, last) in &seen {
        let Some(r) = room
            .rsplit("-s")
            .next()
            .and_then(|r| r.parse::<usize>().ok())
        else {
            continue;
        };
        let head = heads[r].load(Ordering::Relaxed);
        tail_missing += head.saturating_sub(*last);
    }
    let stats = &run.ctx.stats;
    let gaps = stats.gaps.load(Ordering::Relaxed);
    Ok(json!({
        "setup": setup,
        "members": k,
        "rooms": rooms,
        "writer_rate_per_room": run.args.rate,
        "storm_concurrency": run.args.storm_concurrency,
        "seconds_until_all_recovered": round3(all_secs),
        "recovered": stats.recovered.load(Ordering::Relaxed),
        "not_recovered": stats.not_recovered.load(Ordering::Relaxed),
        "events_replayed": stats.replayed.load(Ordering::Relaxed),
        "messages_missed": gaps + tail_missing,
        "missed_as_gaps": gaps,
        "missed_at_tail": tail_missing,
        "members_checked": seen.len(),
        "server_cpu_seconds_during_storm": match (server_before, server_after) {
            (Some(a), Some(b)) => Some(round3(cpu_secs(&a, &b))),
            _ => None,
        },
        "server_rss_mib": server_after.map(|s| round1(s.rss_kib as f64 / 1024.0)),
    }))
}

/// `revision` over several nodes (`--url A,B`, one URL per node): member i
/// connects to node i mod N, so a room of 30 has 15 members on each of two
/// nodes and most deliveries cross nodes. The window also splits latency
/// into cross-node and same-node deliveries (the poster's node travels in
/// the text), and samples the Redis process when `--redis-pid` is given.
pub(crate) async fn cluster(run: &mut Run) -> anyhow::Result<Value> {
    let nodes = run.ctx.endpoint.urls.len();
    if nodes < 2 {
        bail!("cluster needs one URL per node in --url (comma-separated), at least two");
    }
    if run.target == Target::Hocuspocus {
        bail!("cluster runs against preau, bare or socketio");
    }
    let mut result = revision(run).await?;
    result["nodes"] = json!(nodes);
    result["urls"] = json!(run.ctx.endpoint.urls);
    Ok(result)
}
