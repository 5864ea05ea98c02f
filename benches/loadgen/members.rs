//! The load generator's members.

use super::*;

pub(crate) enum Cmd {
    /// Post one message now (announce).
    Post(u64),
    /// Drop the connection and reconnect with recovery (reconnect-storm).
    Reconnect,
    /// Close and finish; the reply carries what the member saw last.
    Close(oneshot::Sender<(String, u64)>),
}

pub(crate) struct Ctx {
    pub(crate) endpoint: Endpoint,
    pub(crate) stats: Stats,
    pub(crate) size: usize,
    /// Posts per second per member (revision); 0 = silent.
    pub(crate) rate: watch::Receiver<f64>,
    pub(crate) connect_slots: Semaphore,
    pub(crate) storm_slots: Semaphore,
    pub(crate) storm_started_ns: AtomicU64,
}

impl Ctx {
    /// Whether members post now: always, or with `--interleave` only in
    /// this generator's slots (a tick outside them is skipped, so the rate
    /// inside them is the rate asked for).
    pub(crate) fn posting_now(&self) -> bool {
        self.stats
            .schedule
            .as_ref()
            .is_none_or(|s| s.active(now_ns()))
    }
}

/// Tracks a member's position in its room: gaps and duplicates.
pub(crate) struct Position_ {
    pub(crate) epoch: String,
    pub(crate) last: u64,
}

impl Position_ {
    pub(crate) fn see(&mut self, offset: u64, stats: &Stats) {
        if offset == 0 {
            return; // a server without offsets
        }
        if offset > self.last + 1 {
            stats
                .gaps
                .fetch_add(offset - self.last - 1, Ordering::Relaxed);
        } else if offset <= self.last {
            stats.dups.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.last = offset;
    }
}

pub(crate) async fn setup(
    ctx: &Ctx,
    user: &str,
    room: &str,
    node: usize,
) -> anyhow::Result<(Conn, JoinInfo)> {
    let started = now_ns();
    let mut conn = ctx.endpoint.connect(user, node).await?;
    let joined = conn.join(room, None).await?;
    ctx.stats
        .setup
        .lock()
        .saturating_record(((now_ns() - started) / 1000).max(1));
    Ok((conn, joined))
}

/// One member: connects to `node`, joins, then receives (recording every
/// delivery), posts at the current rate and obeys commands until closed.
pub(crate) async fn member(
    ctx: Arc<Ctx>,
    user: String,
    room: String,
    node: usize,
    mut commands: mpsc::UnboundedReceiver<Cmd>,
) {
    let slot = ctx.connect_slots.acquire().await;
    let setup = setup(&ctx, &user, &room, node).await;
    drop(slot);
    let (mut conn, joined) = match setup {
        Ok(ok) => ok,
        Err(err) => {
            ctx.stats.setup_failed.fetch_add(1, Ordering::Relaxed);
            ctx.stats.error(format!("setup: {err}"));
            return;
        }
    };
    ctx.stats.connected.fetch_add(1, Ordering::Relaxed);
    let mut position = Position_ {
        epoch: joined.epoch,
        last: joined.head,
    };
    let mut rate_rx = ctx.rate.clone();
    let mut rate = *rate_rx.borrow_and_update();
    let mut ticker = post_ticker(rate);
    let mut seq = 0u64;
    let mut alive = true;
    loop {
        tokio::select! {
            incoming = conn.next(), if alive => match incoming {
                Some(Incoming::Event { offset, text }) => {
                    position.see(offset, &ctx.stats);
                    match parse_text(&text) {
                        Some((sent, _, from)) => {
                            ctx.stats.delivered(sent);
                            if ctx.endpoint.urls.len() > 1 {
                                ctx.stats.delivered_across(sent, from != node);
                            }
                        }
                        None => ctx.stats.error("unparsable event text"),
                    }
                }
                Some(Incoming::Ack) => {
                    ctx.stats.acks.fetch_add(1, Ordering::Relaxed);
                }
                Some(Incoming::Error(code)) => ctx.stats.error(code),
                Some(Incoming::Other) => {
                    ctx.stats.others.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    ctx.stats.disconnected.fetch_add(1, Ordering::Relaxed);
                    if let Conn::Preau(client) = &conn {
                        if let Some((code, reason)) = client.close_frame() {
                            ctx.stats.error(format!("closed by server: {code} {reason}"));
                        }
                    }
                    alive = false;
                }
            },
            _ = ticker.tick(), if alive && rate > 0.0 => {
                if !ctx.posting_now() {
                    continue;
                }
                seq += 1;
                if conn.post(&room, make_text(seq, node, ctx.size)).is_ok() {
                    ctx.stats.posts.fetch_add(1, Ordering::Relaxed);
                    ctx.stats.window_posts.fetch_add(1, Ordering::Relaxed);
                }
            }
            changed = rate_rx.changed() => {
                if changed.is_err() {
                    // The scenario is over; keep the connection until closed.
                    rate = 0.0;
                    rate_rx = watch::channel(0.0).1;
                } else {
                    rate = *rate_rx.borrow_and_update();
                    ticker = post_ticker(rate);
                }
            }
            command = commands.recv() => match command {
                Some(Cmd::Post(seq)) => {
                    if conn.post(&room, make_text(seq, node, ctx.size)).is_ok() {
                        ctx.stats.posts.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Cmd::Reconnect) => {
                    conn.close();
                    match reconnect(&ctx, &user, &room, node, &mut position).await {
                        Some(new) => {
                            conn = new;
                            alive = true;
                        }
                        None => alive = false,
                    }
                }
                Some(Cmd::Close(reply)) => {
                    conn.close();
                    let _ = reply.send((room.clone(), position.last));
                    return;
                }
                None => {
                    conn.close();
                    return;
                }
            }
        }
    }
}

/// A ticker at `rate` per second, starting at a random phase so that
/// members do not post in lockstep.
pub(crate) fn post_ticker(rate: f64) -> tokio::time::Interval {
    let period = if rate > 0.0 {
        Duration::from_secs_f64(1.0 / rate)
    } else {
        Duration::from_secs(3600)
    };
    let phase = period.mul_f64(rand::thread_rng().gen_range(0.0..1.0));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    ticker
}

/// Connects again and joins with `since` = what the member saw last.
pub(crate) async fn reconnect(
    ctx: &Ctx,
    user: &str,
    room: &str,
    node: usize,
    position: &mut Position_,
) -> Option<Conn> {
    let _slot = ctx.storm_slots.acquire().await;
    for attempt in 0..20 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
        }
        let since = (position.epoch.clone(), position.last);
        let mut conn = match ctx.endpoint.connect(user, node).await {
            Ok(conn) => conn,
            Err(err) => {
                ctx.stats.error(format!("reconnect: {err}"));
                continue;
            }
        };
        let joined = match conn.join(room, Some(since)).await {
            Ok(joined) => joined,
            Err(err) => {
                ctx.stats.error(format!("rejoin: {err}"));
                continue;
            }
        };
        if joined.recovered == Some(true) {
            ctx.stats.recovered.fetch_add(1, Ordering::Relaxed);
            for (offset, _) in &joined.replay {
                position.see(*offset, &ctx.stats);
            }
            ctx.stats
                .replayed
                .fetch_add(joined.replay.len() as u64, Ordering::Relaxed);
            // The replay must reach the head the join reply gives; events
            // after it arrive live.
            if joined.head > position.last {
                ctx.stats
                    .gaps
                    .fetch_add(joined.head - position.last, Ordering::Relaxed);
                position.last = joined.head;
            }
        } else {
            ctx.stats.not_recovered.fetch_add(1, Ordering::Relaxed);
            ctx.stats
                .gaps
                .fetch_add(joined.head.saturating_sub(position.last), Ordering::Relaxed);
            position.epoch = joined.epoch;
            position.last = joined.head;
        }
        ctx.stats
            .last_recovered_ns
            .fetch_max(now_ns(), Ordering::Relaxed);
        ctx.stats.storm_done.fetch_add(1, Ordering::Relaxed);
        return Some(conn);
    }
    ctx.stats.storm_done.fetch_add(1, Ordering::Relaxed);
    None
}
