//! Cluster mode (issue 3): several `preau serve --redis` processes, each with
//! its own data folder, one private Redis per test.
//!
//! Every test starts its OWN Redis (`RedisServer::start()`): all nodes
//! subscribe to one global channel, so tests sharing a Redis would see each
//! other's rooms. Nodes run with short timings (heartbeat 200 ms, node
//! timeout 800 ms, resync window 600 ms) and each node is probed (a post in a
//! separate room, retried while `unavailable`) before a test starts. Staff
//! opens the rooms on the first node (rooms exist once a teacher or staff
//! opens them; Redis makes them known to every node) before pupils join.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use preau::client::{Client, ClientError};
use preau::protocol::{
    Body, ErrorCode, ErrorReply, Event, JoinOk, Position, PostOk, PresenceAction, Recovery, Role,
    ServerFrame, UserInfo,
};
use support::redis::RedisServer;
use support::*;
use tokio::time::{sleep, timeout, Instant};

const ROOM: &str = "3B/chat/revision";
/// Readiness probes post here, so they never take an offset of `ROOM`.
const PROBE_ROOM: &str = "3B/chat/probe";
const HEARTBEAT: &str = "200ms";
const NODE_TIMEOUT: &str = "800ms";
const RESYNC_WINDOW: &str = "600ms";

// ---------------------------------------------------------------- helpers

/// Awaits `f` for at most [`WAIT`].
async fn timed<T>(what: &str, f: impl Future<Output = T>) -> T {
    timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {WAIT:?}"))
}

fn text(event: &Event) -> &str {
    match &event.body {
        Body::Message { text, .. } => text,
        other => panic!("not a message: {other:?}"),
    }
}

fn offsets(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.offset).collect()
}

fn auditor() -> String {
    token("auditor", Role::Staff, &[])
}

/// Starts `preau serve --redis ... --node-id ID` on `dir` (plus `extra`)
/// and waits until it accepts posts.
async fn start_node(redis: &RedisServer, id: &str, dir: &Path, extra: &[&str]) -> Proc {
    let url = redis.url();
    let mut args = vec![
        "--redis",
        url.as_str(),
        "--node-id",
        id,
        "--heartbeat",
        HEARTBEAT,
        "--node-timeout",
        NODE_TIMEOUT,
        "--resync-window",
        RESYNC_WINDOW,
    ];
    args.extend_from_slice(extra);
    let node = Proc::serve(dir, free_port(), &args).await;
    wait_ready(&node.url(), id).await;
    node
}

/// Posts in [`PROBE_ROOM`] until the node accepts (it refuses posts with
/// `unavailable` for `resync_window` after connecting to Redis).
async fn wait_ready(url: &str, id: &str) {
    // The probe is a pupil: staff opens its room first (a no-op once open).
    open_rooms(url, &[PROBE_ROOM]).await;
    let mut probe = connect(url, &student(&format!("probe-{id}"), "3B")).await;
    timed("probe join", probe.join(PROBE_ROOM, None))
        .await
        .expect("probe joins");
    let deadline = Instant::now() + WAIT;
    loop {
        match timed("probe post", probe.post(PROBE_ROOM, "probe")).await {
            Ok(_) => break,
            Err(ClientError::Refused(ErrorReply {
                code: ErrorCode::Unavailable,
                ..
            })) => {}
            Err(other) => panic!("probe post on node {id}: unexpected {other}"),
        }
        assert!(
            Instant::now() < deadline,
            "node {id} still refuses posts after {WAIT:?}"
        );
        sleep(Duration::from_millis(50)).await;
    }
    probe.close();
}

async fn connect(url: &str, token: &str) -> Client {
    timed("connect", Client::connect(url, token))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
        .0
}

/// Connects as `user` (a 3B student) and joins [`ROOM`].
async fn joined(url: &str, user: &str) -> (Client, JoinOk) {
    let mut client = connect(url, &student(user, "3B")).await;
    let reply = timed("join", client.join(ROOM, None))
        .await
        .unwrap_or_else(|e| panic!("{user} cannot join {ROOM}: {e}"));
    (client, reply)
}

async fn post(client: &mut Client, text: &str) -> PostOk {
    timed("post", client.post(ROOM, text))
        .await
        .unwrap_or_else(|e| panic!("post {text:?} refused: {e}"))
}

/// Posts until accepted, retrying while refused with `unavailable`
/// (every other outcome fails the test). Returns the ack and the refusals.
async fn post_until_ok(client: &mut Client, text: &str) -> (PostOk, Vec<ErrorReply>) {
    let deadline = Instant::now() + WAIT;
    let mut refusals = Vec::new();
    loop {
        match timed("post", client.post(ROOM, text)).await {
            Ok(ack) => return (ack, refusals),
            Err(ClientError::Refused(reply)) if reply.code == ErrorCode::Unavailable => {
                refusals.push(reply)
            }
            Err(other) => panic!("post {text:?}: expected ok or unavailable, got {other}"),
        }
        assert!(
            Instant::now() < deadline,
            "post {text:?} still refused after {WAIT:?}: {refusals:?}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// The next event frame, skipping presence and typing; `None` once the
/// connection is closed.
async fn next_event_or_end(client: &mut Client) -> Option<Event> {
    loop {
        match timed("next frame", client.next()).await? {
            ServerFrame::Event(event) => return Some(event),
            _ => continue,
        }
    }
}

/// The whole history of `room` on the node at `url`: (epoch, head, events),
/// paged with `after` from 0, 200 per page.
async fn history_all(url: &str, room: &str) -> (String, u64, Vec<Event>) {
    let mut client = connect(url, &auditor()).await;
    let mut events: Vec<Event> = Vec::new();
    let mut after = 0;
    loop {
        let page = timed(
            "history",
            client.history(room, None, Some(after), Some(200)),
        )
        .await
        .unwrap_or_else(|e| panic!("history of {room} on {url} refused: {e}"));
        if let Some(last) = page.events.last() {
            after = last.offset;
        }
        let done = !page.more || page.events.is_empty();
        events.extend(page.events);
        if done {
            client.close();
            return (page.epoch, page.head, events);
        }
    }
}

/// Polls the node's history of `room` until its head reaches `head`.
async fn wait_head(url: &str, room: &str, head: u64) -> (String, u64, Vec<Event>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let history = history_all(url, room).await;
        if history.1 >= head {
            return history;
        }
        assert!(
            Instant::now() < deadline,
            "node {url}: history head of {room} is {} after {WAIT:?}, expected {head}",
            history.1
        );
        sleep(Duration::from_millis(100)).await;
    }
}

/// Checks a history is exactly offsets 1..=head, each once, in order.
fn assert_contiguous(what: &str, head: u64, events: &[Event]) {
    assert_eq!(
        offsets(events),
        (1..=head).collect::<Vec<_>>(),
        "{what}: history is not exactly 1..={head}"
    );
}

/// Waits for a `presence` frame with `action` about `user`, skipping other
/// frames; returns how long it took.
async fn wait_presence(client: &mut Client, action: PresenceAction, user: &str) -> Duration {
    let start = Instant::now();
    loop {
        let frame = timeout(WAIT, client.next())
            .await
            .unwrap_or_else(|_| panic!("no presence {action:?} for {user} within {WAIT:?}"))
            .unwrap_or_else(|| panic!("connection closed waiting for presence {action:?} {user}"));
        if let ServerFrame::Presence(p) = frame {
            if p.room == ROOM && p.action == action && p.user.id == user {
                return start.elapsed();
            }
        }
    }
}

/// Whether `user` is in a join reply's members, else waits for the
/// presence `join` that says so.
async fn wait_sees(client: &mut Client, members: &[UserInfo], user: &str) {
    if !members.iter().any(|m| m.id == user) {
        wait_presence(client, PresenceAction::Join, user).await;
    }
}

/// Drops frames already received (without waiting for more).
async fn drain(client: &mut Client) {
    while let Ok(Some(_)) = timeout(Duration::from_millis(20), client.next()).await {}
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn describe_latencies(what: &str, latencies: &mut [Duration]) {
    latencies.sort();
    eprintln!(
        "{what}: n={} p50={:?} p99={:?} max={:?}",
        latencies.len(),
        percentile(latencies, 0.50),
        percentile(latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
}

fn alive(node: &mut Proc) -> bool {
    matches!(node.child.try_wait(), Ok(None))
}

// ------------------------------------------------------------------ tests

/// Three nodes, a poster on each posting concurrently: all six readers (two
/// per node) see offsets 1..=120 once each, in order, with the same content
/// and timestamps; acks match; every node's history is identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_order_and_offsets_on_every_node() {
    const PER_POSTER: usize = 40;
    const TOTAL: u64 = 3 * PER_POSTER as u64;
    let redis = RedisServer::start().await;
    let ids = ["a", "b", "c"];
    let dirs: Vec<tempfile::TempDir> = ids.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    for (id, dir) in ids.iter().zip(&dirs) {
        nodes.push(start_node(&redis, id, dir.path(), &[]).await);
    }
    open_rooms(&nodes[0].url(), &[ROOM]).await;

    // Two readers per node, joined before anything is posted.
    let mut readers = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for k in 0..2 {
            let (mut client, reply) = joined(&node.url(), &format!("reader-{}{k}", ids[n])).await;
            assert_eq!(reply.head, 0, "the room is new");
            readers.push((
                n,
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    while got.len() < TOTAL as usize {
                        let event = next_event_or_end(&mut client)
                            .await
                            .expect("reader connection stays open");
                        got.push((event, Instant::now()));
                    }
                    // Nothing beyond the 120 posted events.
                    let extra = timeout(Duration::from_millis(300), next_event_or_end(&mut client));
                    if let Ok(Some(event)) = extra.await {
                        panic!("unexpected extra event {event:?}");
                    }
                    got
                }),
            ));
        }
    }
    let mut posters = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let user = format!("poster-{}", ids[n]);
        let (mut client, _) = joined(&node.url(), &user).await;
        posters.push((
            n,
            user.clone(),
            tokio::spawn(async move {
                let mut acks = Vec::new();
                for i in 0..PER_POSTER {
                    let body = format!("{user} #{i}");
                    let sent = Instant::now();
                    let ack = post(&mut client, &body).await;
                    acks.push((body, sent, ack));
                }
                acks
            }),
        ));
    }

    let mut sent_at: HashMap<String, (usize, Instant)> = HashMap::new();
    let mut all_acks = Vec::new();
    for (n, user, task) in posters {
        let acks = task.await.expect("poster task");
        let offs: Vec<u64> = acks.iter().map(|(_, _, a)| a.offset).collect();
        assert!(
            offs.windows(2).all(|w| w[0] < w[1]),
            "{user}'s sequential posts got non-increasing offsets {offs:?}"
        );
        for (body, sent, ack) in acks {
            sent_at.insert(body.clone(), (n, sent));
            all_acks.push((user.clone(), body, ack));
        }
    }
    let mut reader_results = Vec::new();
    for (n, task) in readers {
        reader_results.push((n, task.await.expect("reader task")));
    }

    // Every reader: exactly 1..=120, in order; all readers identical.
    let reference: Vec<Event> = reader_results[0].1.iter().map(|(e, _)| e.clone()).collect();
    assert_eq!(offsets(&reference), (1..=TOTAL).collect::<Vec<_>>());
    let epoch = reference[0].epoch.clone();
    for (n, got) in &reader_results {
        let events: Vec<Event> = got.iter().map(|(e, _)| e.clone()).collect();
        assert_eq!(
            offsets(&events),
            (1..=TOTAL).collect::<Vec<_>>(),
            "a reader on node {} did not get 1..={TOTAL} once each in order",
            ids[*n]
        );
        let key = |e: &Event| (e.offset, e.from.id.clone(), text(e).to_owned(), e.ts);
        assert_eq!(
            events.iter().map(key).collect::<Vec<_>>(),
            reference.iter().map(key).collect::<Vec<_>>(),
            "a reader on node {} saw different (offset, from, text, ts)",
            ids[*n]
        );
        assert_eq!(events, reference, "full events differ on node {}", ids[*n]);
    }
    assert!(reference.iter().all(|e| e.epoch == epoch && e.room == ROOM));
    // Every ack matches the event at its offset.
    assert_eq!(all_acks.len(), TOTAL as usize);
    let acked: BTreeSet<u64> = all_acks.iter().map(|(_, _, a)| a.offset).collect();
    assert_eq!(
        acked,
        (1..=TOTAL).collect::<BTreeSet<_>>(),
        "acks cover 1..=120 once each"
    );
    for (user, body, ack) in &all_acks {
        let event = &reference[ack.offset as usize - 1];
        assert_eq!(
            text(event),
            body,
            "ack of {body:?} names offset {}",
            ack.offset
        );
        assert_eq!(&event.from.id, user);
        assert_eq!(ack.ts, event.ts, "ack ts of {body:?}");
        assert_eq!(ack.epoch, epoch);
        assert_eq!(ack.room, ROOM);
    }
    // Timestamps never go down along the room's order.
    assert!(reference.windows(2).all(|w| w[0].ts <= w[1].ts));

    // Every node answers history identically.
    for (n, node) in nodes.iter().enumerate() {
        let (h_epoch, head, events) = history_all(&node.url(), ROOM).await;
        assert_eq!(
            (h_epoch.as_str(), head),
            (epoch.as_str(), TOTAL),
            "node {}",
            ids[n]
        );
        assert_eq!(events, reference, "history on node {} differs", ids[n]);
    }

    // Cross-node delivery latency under this concurrent load.
    let mut cross = Vec::new();
    let mut local = Vec::new();
    for (n, got) in &reader_results {
        for (event, received) in got {
            let (poster_node, sent) = sent_at[text(event)];
            let latency = received.saturating_duration_since(sent);
            if poster_node == *n {
                local.push(latency);
            } else {
                cross.push(latency);
            }
        }
    }
    describe_latencies(
        "same_order: send -> receive on ANOTHER node (3 concurrent posters)",
        &mut cross,
    );
    describe_latencies(
        "same_order: send -> receive on the SAME node (3 concurrent posters)",
        &mut local,
    );
}

/// Unloaded cross-node latency: one post at a time on A, each awaited on a
/// reader on B before the next. Correctness asserted, timing only printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_node_delivery_latency() {
    const N: u64 = 200;
    let redis = RedisServer::start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_node(&redis, "a", dir_a.path(), &[]).await;
    let b = start_node(&redis, "b", dir_b.path(), &[]).await;
    open_rooms(&a.url(), &[ROOM]).await;
    let (mut reader, _) = joined(&b.url(), "reader").await;
    let (mut poster, _) = joined(&a.url(), "poster").await;
    let mut latencies = Vec::new();
    for i in 1..=N {
        let body = format!("m{i}");
        let sent = Instant::now();
        let request = poster.post(ROOM, &body);
        let (ack, event) = tokio::join!(
            timed("post", request),
            timed("event on B", next_event_or_end(&mut reader))
        );
        let event = event.expect("reader on B stays connected");
        latencies.push(sent.elapsed());
        let ack = ack.unwrap_or_else(|e| panic!("post {body:?} refused: {e}"));
        assert_eq!((ack.offset, event.offset), (i, i));
        assert_eq!(text(&event), body);
        assert_eq!(event.ts, ack.ts);
    }
    describe_latencies(
        "latency: post on A -> event on B, one at a time",
        &mut latencies,
    );
}

/// A client of a SIGKILLed node reconnects to another node, recovers with
/// `since`, and ends up with exactly 1..=N; the killed node, restarted on its
/// data folder, catches up to the same history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_clients_recover_on_another_node() {
    const MIN_POSTS: usize = 300;
    const KILL_AT: u64 = 100;
    const LIVE_AFTER_REJOIN: usize = 50;
    let redis = RedisServer::start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_node(&redis, "a", dir_a.path(), &[]).await;
    let b = start_node(&redis, "b", dir_b.path(), &[]).await;
    open_rooms(&a.url(), &[ROOM]).await;

    let (mut c, reply) = joined(&a.url(), "cleo").await;
    assert_eq!(reply.head, 0);
    let epoch = reply.epoch.clone();

    let rejoined = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let (mut poster, _) = joined(&b.url(), "paul").await;
    let poster_task = {
        let rejoined = rejoined.clone();
        let acked = acked.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + WAIT * 6;
            let mut acks: Vec<PostOk> = Vec::new();
            let mut after_rejoin = 0;
            loop {
                let i = acks.len() as u64 + 1;
                let ack = post(&mut poster, &format!("m{i}")).await;
                assert_eq!(ack.offset, i, "the only poster's acks are 1, 2, 3, ...");
                acks.push(ack);
                acked.store(i, Ordering::SeqCst);
                if rejoined.load(Ordering::SeqCst) {
                    after_rejoin += 1;
                }
                if acks.len() >= MIN_POSTS && after_rejoin >= LIVE_AFTER_REJOIN {
                    return acks;
                }
                assert!(Instant::now() < deadline, "poster ran out of time");
                sleep(Duration::from_millis(2)).await;
            }
        })
    };

    // C reads on A until offset KILL_AT, then A is killed mid-burst.
    let mut seq: Vec<Event> = Vec::new();
    while seq.last().map_or(0, |e| e.offset) < KILL_AT {
        let event = next_event_or_end(&mut c)
            .await
            .expect("A is alive: C's connection is open");
        seq.push(event);
    }
    a.kill9().await;
    let killed_at = seq.last().unwrap().offset;
    // C notices the end of its connection (events already received first).
    while let Some(event) = next_event_or_end(&mut c).await {
        seq.push(event);
    }
    let last = seq.last().unwrap().offset;
    eprintln!("killed A after C read {killed_at}; C had read {last} when the connection ended");
    // C is away a little while B keeps acking (a reconnect delay), so the
    // recovering join has events to replay.
    const AWAY: u64 = 20;
    let deadline = Instant::now() + WAIT;
    while acked.load(Ordering::SeqCst) < last + AWAY {
        assert!(
            Instant::now() < deadline,
            "poster on B stalled after A died"
        );
        sleep(Duration::from_millis(5)).await;
    }

    // C reconnects to B and recovers from its last offset.
    let mut c = connect(&b.url(), &student("cleo", "3B")).await;
    let rejoin = timed(
        "recovering join on B",
        c.join(
            ROOM,
            Some(Position {
                epoch: epoch.clone(),
                offset: last,
            }),
        ),
    )
    .await
    .expect("recovering join on B");
    rejoined.store(true, Ordering::SeqCst);
    assert_eq!(
        rejoin.recovery,
        Some(Recovery {
            recovered: true,
            reason: None
        }),
        "recovery on B from ({epoch}, {last})"
    );
    assert_eq!(rejoin.epoch, epoch, "B has the same epoch");
    assert!(
        rejoin.head >= last + AWAY,
        "B acked {} already, its head is {}",
        last + AWAY,
        rejoin.head
    );
    assert_eq!(
        offsets(&rejoin.events),
        (last + 1..=rejoin.head).collect::<Vec<_>>(),
        "the join replays exactly what C missed"
    );
    seq.extend(rejoin.events.iter().cloned());
    let acks = poster_task.await.expect("poster task");
    let n = acks.len() as u64;
    let mut live = 0;
    while seq.last().map_or(0, |e| e.offset) < n {
        let event = next_event_or_end(&mut c)
            .await
            .expect("C's connection to B stays open");
        seq.push(event);
        live += 1;
    }
    assert_eq!(
        offsets(&seq),
        (1..=n).collect::<Vec<_>>(),
        "C's combined sequence (A, then recovery on B, then live on B)"
    );
    assert!(
        live >= LIVE_AFTER_REJOIN - 1,
        "live events after the rejoin: {live}"
    );
    for event in &seq {
        assert_eq!(text(event), format!("m{}", event.offset));
        assert_eq!(event.from.id, "paul");
        assert_eq!(event.epoch, epoch);
    }
    for ack in &acks {
        assert_eq!(ack.ts, seq[ack.offset as usize - 1].ts);
    }
    eprintln!(
        "killed_node: N={n}, replayed on join {}, live after {live}",
        rejoin.events.len()
    );
    if let Ok(Some(extra)) = timeout(Duration::from_millis(300), next_event_or_end(&mut c)).await {
        panic!("event beyond N: {extra:?}");
    }

    // A restarts on its data folder and catches up with B.
    let (b_epoch, b_head, b_events) = wait_head(&b.url(), ROOM, n).await;
    assert_eq!((b_epoch.as_str(), b_head), (epoch.as_str(), n));
    assert_eq!(b_events, seq, "B's history is what C saw");
    let a = start_node(&redis, "a", dir_a.path(), &[]).await;
    let (a_epoch, a_head, a_events) = wait_head(&a.url(), ROOM, n).await;
    assert_eq!((a_epoch.as_str(), a_head), (epoch.as_str(), n));
    assert_eq!(a_events, b_events, "restarted A's history equals B's");
}

/// What one poster of the Redis-restart burst saw.
struct Burst {
    acks: Vec<(PostOk, String)>,
    refusals: Vec<ErrorReply>,
}

/// Redis restarts empty mid-burst: refusals are all `unavailable`, every
/// acked message is on both nodes at its acked offset, no offset is reused,
/// the epoch stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_burst_loses_nothing_acked() {
    const MIN_ATTEMPTS: usize = 200;
    const ACKS_AFTER_RESTART: usize = 20;
    let redis = RedisServer::start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_node(&redis, "a", dir_a.path(), &[]).await;
    let b = start_node(&redis, "b", dir_b.path(), &[]).await;
    open_rooms(&a.url(), &[ROOM]).await;
    let (_watcher, reply) = joined(&a.url(), "watcher").await;
    let epoch = reply.epoch.clone();

    let restarted = Arc::new(AtomicBool::new(false));
    let acked_total = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (node, user) in [(&a, "pa"), (&b, "pb")] {
        let (mut client, _) = joined(&node.url(), user).await;
        let restarted = restarted.clone();
        let acked_total = acked_total.clone();
        tasks.push(tokio::spawn(async move {
            let deadline = Instant::now() + WAIT * 6;
            let mut burst = Burst {
                acks: Vec::new(),
                refusals: Vec::new(),
            };
            let mut after = 0;
            for i in 1.. {
                let body = format!("{user}-{i}");
                let outcome = timeout(WAIT, client.post(ROOM, &body))
                    .await
                    .unwrap_or_else(|_| panic!("post {body:?} hung for {WAIT:?}"));
                match outcome {
                    Ok(ack) => {
                        burst.acks.push((ack, body));
                        acked_total.fetch_add(1, Ordering::SeqCst);
                        if restarted.load(Ordering::SeqCst) {
                            after += 1;
                        }
                    }
                    Err(ClientError::Refused(reply)) => burst.refusals.push(reply),
                    Err(other) => panic!("post {body:?}: {other}"),
                }
                if i >= MIN_ATTEMPTS && after >= ACKS_AFTER_RESTART {
                    break;
                }
                assert!(Instant::now() < deadline, "{user} ran out of time");
                sleep(Duration::from_millis(5)).await;
            }
            burst
        }));
    }
    let deadline = Instant::now() + WAIT;
    while acked_total.load(Ordering::SeqCst) < 60 {
        assert!(Instant::now() < deadline, "posters did not get 60 acks");
        sleep(Duration::from_millis(10)).await;
    }
    let before = acked_total.load(Ordering::SeqCst);
    redis.restart().await;
    restarted.store(true, Ordering::SeqCst);
    eprintln!("redis restarted after {before} acks");

    let mut acks: Vec<(PostOk, String)> = Vec::new();
    let mut refusals = Vec::new();
    for task in tasks {
        let burst = task.await.expect("poster task");
        acks.extend(burst.acks);
        refusals.extend(burst.refusals);
    }
    eprintln!(
        "redis_restart: {} acks, {} refusals ({:?})",
        acks.len(),
        refusals.len(),
        refusals
            .iter()
            .map(|r| r.code.to_string())
            .collect::<BTreeSet<_>>()
    );
    for refusal in &refusals {
        assert_eq!(refusal.code, ErrorCode::Unavailable, "refusal {refusal:?}");
        assert!(
            refusal.retry_after_ms.is_some(),
            "no retry_after_ms in {refusal:?}"
        );
    }
    assert!(
        !refusals.is_empty(),
        "posters posting through a Redis restart were never told `unavailable`"
    );
    let mut by_offset: HashMap<u64, &str> = HashMap::new();
    for (ack, body) in &acks {
        assert_eq!(ack.epoch, epoch, "epoch changed for {body:?}");
        if let Some(other) = by_offset.insert(ack.offset, body) {
            panic!("offset {} acked twice: {other:?} and {body:?}", ack.offset);
        }
    }
    let max_acked = acks.iter().map(|(a, _)| a.offset).max().unwrap();

    // Every acked message is on both nodes, at its offset.
    let (a_epoch, a_head, a_events) = wait_head(&a.url(), ROOM, max_acked).await;
    let (b_epoch, b_head, b_events) = wait_head(&b.url(), ROOM, max_acked).await;
    assert_eq!(
        (a_epoch.as_str(), b_epoch.as_str()),
        (epoch.as_str(), epoch.as_str())
    );
    assert_contiguous("node a", a_head, &a_events);
    assert_contiguous("node b", b_head, &b_events);
    for (ack, body) in &acks {
        for (node, events) in [("a", &a_events), ("b", &b_events)] {
            let event = &events[ack.offset as usize - 1];
            assert_eq!(
                (text(event), event.ts),
                (body.as_str(), ack.ts),
                "node {node}, offset {}",
                ack.offset
            );
        }
    }

    // After recovery a post gets an offset above every acked one, and both
    // nodes end up with the same history.
    let (mut late, _) = joined(&b.url(), "late").await;
    let (ack, _) = post_until_ok(&mut late, "after the burst").await;
    assert!(
        ack.offset > max_acked,
        "offset {} reused (max acked {max_acked})",
        ack.offset
    );
    assert_eq!(ack.epoch, epoch);
    let (_, a_head, a_events) = wait_head(&a.url(), ROOM, ack.offset).await;
    let (_, b_head, b_events) = wait_head(&b.url(), ROOM, ack.offset).await;
    assert_eq!((a_head, b_head), (ack.offset, ack.offset));
    assert_contiguous("node a", a_head, &a_events);
    assert_eq!(a_events, b_events, "both nodes answer history identically");
    assert_eq!(text(&a_events[ack.offset as usize - 1]), "after the burst");
}

/// Redis down: posts fail fast with `unavailable` and `retry_after_ms`;
/// history and recovery keep working from sled; after Redis is back,
/// posting resumes and offsets continue on both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_posts_fail_fast_and_reads_keep_working() {
    let redis = RedisServer::start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_node(&redis, "a", dir_a.path(), &[]).await;
    let b = start_node(&redis, "b", dir_b.path(), &[]).await;
    open_rooms(&a.url(), &[ROOM]).await;
    let (mut pa, reply) = joined(&a.url(), "pa").await;
    let epoch = reply.epoch.clone();
    let (mut pb, _) = joined(&b.url(), "pb").await;
    assert_eq!(post(&mut pa, "one").await.offset, 1);
    assert_eq!(post(&mut pb, "two").await.offset, 2);
    assert_eq!(post(&mut pa, "three").await.offset, 3);
    wait_head(&a.url(), ROOM, 3).await;
    wait_head(&b.url(), ROOM, 3).await;

    redis.stop().await;
    for (node, client) in [("a", &mut pa), ("b", &mut pb)] {
        for attempt in 0..3 {
            let start = Instant::now();
            let outcome = timeout(WAIT, client.post(ROOM, "during the outage"))
                .await
                .unwrap_or_else(|_| panic!("post on {node} hung with Redis down"));
            let took = start.elapsed();
            eprintln!("redis_down: post on {node} (attempt {attempt}) refused after {took:?}");
            match outcome {
                Err(ClientError::Refused(reply)) => {
                    assert_eq!(reply.code, ErrorCode::Unavailable, "{reply:?}");
                    assert!(
                        reply.retry_after_ms.is_some(),
                        "no retry_after_ms: {reply:?}"
                    );
                }
                other => {
                    panic!("post on {node} with Redis down: expected unavailable, got {other:?}")
                }
            }
        }
    }

    // Reads keep working from sled, on both nodes.
    for node in [&a, &b] {
        let (h_epoch, head, events) = history_all(&node.url(), ROOM).await;
        assert_eq!((h_epoch.as_str(), head), (epoch.as_str(), 3));
        assert_eq!(
            events.iter().map(text).collect::<Vec<_>>(),
            ["one", "two", "three"]
        );
    }
    let mut reader = connect(&b.url(), &student("rita", "3B")).await;
    let rejoin = timed(
        "recovering join with Redis down",
        reader.join(
            ROOM,
            Some(Position {
                epoch: epoch.clone(),
                offset: 1,
            }),
        ),
    )
    .await
    .expect("recovering join with Redis down");
    assert_eq!(
        rejoin.recovery,
        Some(Recovery {
            recovered: true,
            reason: None
        })
    );
    assert_eq!(rejoin.head, 3);
    assert_eq!(offsets(&rejoin.events), [2, 3]);
    assert_eq!(
        rejoin.events.iter().map(text).collect::<Vec<_>>(),
        ["two", "three"]
    );

    // Redis comes back (empty): posting resumes, offsets continue.
    redis.restart().await;
    let (ack_a, refused_a) = post_until_ok(&mut pa, "four").await;
    let (ack_b, refused_b) = post_until_ok(&mut pb, "five").await;
    eprintln!(
        "redis_down: after restart, {} + {} refusals before posts went through",
        refused_a.len(),
        refused_b.len()
    );
    for refusal in refused_a.iter().chain(&refused_b) {
        assert!(
            refusal.retry_after_ms.is_some(),
            "no retry_after_ms: {refusal:?}"
        );
    }
    assert_eq!(
        (ack_a.offset, ack_b.offset),
        (4, 5),
        "offsets continue, none reused"
    );
    assert_eq!(
        (ack_a.epoch.as_str(), ack_b.epoch.as_str()),
        (epoch.as_str(), epoch.as_str())
    );
    let (_, _, a_events) = wait_head(&a.url(), ROOM, 5).await;
    let (_, b_head, b_events) = wait_head(&b.url(), ROOM, 5).await;
    assert_eq!(b_head, 5);
    assert_contiguous("node a", 5, &a_events);
    assert_eq!(a_events, b_events);
    assert_eq!(
        a_events.iter().map(text).collect::<Vec<_>>(),
        ["one", "two", "three", "four", "five"]
    );
    // The recovered reader on B gets the new events live.
    let four = next_event_or_end(&mut reader).await.expect("reader open");
    let five = next_event_or_end(&mut reader).await.expect("reader open");
    assert_eq!((four.offset, five.offset), (4, 5));
}

/// Presence spans nodes; a clean leave on A reaches B; a SIGKILLed node's
/// members leave B's presence within node_timeout + heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_spans_nodes_and_a_killed_nodes_members_vanish() {
    let redis = RedisServer::start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_node(&redis, "a", dir_a.path(), &[]).await;
    let b = start_node(&redis, "b", dir_b.path(), &[]).await;
    open_rooms(&a.url(), &[ROOM]).await;

    let (mut x, x_reply) = joined(&a.url(), "xavier").await;
    assert!(x_reply.members.iter().any(|m| m.id == "xavier"));
    let (mut y, y_reply) = joined(&b.url(), "yann").await;
    // Y (on B) sees X (on A), in its join reply or right after.
    wait_sees(&mut y, &y_reply.members, "xavier").await;
    // X sees Y.
    wait_sees(&mut x, &x_reply.members, "yann").await;

    // A clean leave on A is seen on B.
    let (mut xena, xena_reply) = joined(&a.url(), "xena").await;
    wait_sees(&mut xena, &xena_reply.members, "yann").await;
    wait_presence(&mut y, PresenceAction::Join, "xena").await;
    timed("leave", xena.leave(ROOM)).await.expect("leave");
    wait_presence(&mut y, PresenceAction::Leave, "xena").await;
    // A fresh join on B lists xavier (still there) and not xena.
    let (_zoe, z_reply) = joined(&b.url(), "zoe").await;
    let ids: Vec<&str> = z_reply.members.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["xavier", "yann", "zoe"], "members seen from B");

    // A is killed: its member leaves B's presence.
    drain(&mut y).await;
    let killed = Instant::now();
    a.kill9().await;
    wait_presence(&mut y, PresenceAction::Leave, "xavier").await;
    let took = killed.elapsed();
    eprintln!(
        "presence: xavier (on SIGKILLed A) left B's presence after {took:?} \
         (documented bound node_timeout {NODE_TIMEOUT} + heartbeat {HEARTBEAT})"
    );
    let (_, w_reply) = joined(&b.url(), "wendy").await;
    let ids: Vec<&str> = w_reply.members.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        ["wendy", "yann", "zoe"],
        "members seen from B after A died"
    );
}

/// Garbage on the bus channels is skipped: nodes keep serving and stay alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bus_messages_are_skipped() {
    let redis = RedisServer::start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = start_node(&redis, "a", dir_a.path(), &[]).await;
    let mut b = start_node(&redis, "b", dir_b.path(), &[]).await;
    open_rooms(&a.url(), &[ROOM]).await;
    let (mut reader, reply) = joined(&b.url(), "rita").await;
    let epoch = reply.epoch.clone();
    let (mut poster, _) = joined(&a.url(), "paul").await;
    assert_eq!(post(&mut poster, "one").await.offset, 1);
    let first = next_event_or_end(&mut reader).await.expect("open");
    assert_eq!((first.offset, text(&first)), (1, "one"));

    let pack = |value: rmpv::Value| {
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &value).unwrap();
        bytes
    };
    let s = |t: &str| rmpv::Value::from(t);
    let map = |pairs: Vec<(&str, rmpv::Value)>| {
        rmpv::Value::Map(pairs.into_iter().map(|(k, v)| (s(k), v)).collect())
    };
    let draft = pack(map(vec![
        (
            "from",
            map(vec![
                ("id", s("mallory")),
                ("name", s("M")),
                ("role", s("student")),
            ]),
        ),
        (
            "body",
            map(vec![("kind", s("message")), ("text", s("forged"))]),
        ),
    ]));
    let envelope = |room: &str, offset: u64, p: Vec<u8>| {
        pack(map(vec![
            ("room", s(room)),
            ("epoch", s(&epoch)),
            ("offset", rmpv::Value::from(offset)),
            ("ts", rmpv::Value::from(1u64)),
            ("node", s("mallory")),
            ("pid", rmpv::Value::from(1u64)),
            ("p", rmpv::Value::Binary(p)),
        ]))
    };
    let events_garbage: Vec<Vec<u8>> = vec![
        b"\x00\xff not msgpack \xc1\xc1".to_vec(),
        Vec::new(),
        pack(map(vec![("hello", s("world")), ("offset", s("two"))])),
        pack(rmpv::Value::Array(vec![s(ROOM), rmpv::Value::from(2u64)])),
        // Envelope-shaped, but its payload is not a draft.
        envelope(ROOM, 2, b"\xc1garbage".to_vec()),
        // A valid draft, but offset 0 / a bad room name.
        envelope(ROOM, 0, draft.clone()),
        envelope("not a room", 2, draft.clone()),
    ];
    for payload in &events_garbage {
        let receivers = redis
            .command_bytes(&[b"PUBLISH", b"preau:events", payload])
            .await;
        assert_eq!(receivers.int(), 2, "both nodes subscribe to preau:events");
    }
    let nodes_garbage: Vec<Vec<u8>> = vec![
        b"\x00\xff not msgpack \xc1".to_vec(),
        pack(map(vec![("t", s("heartbeat"))])),
        pack(map(vec![("t", s("no_such_control")), ("node", s("x"))])),
        pack(map(vec![
            ("t", s("bye")),
            ("node", rmpv::Value::from(5u64)),
        ])),
        pack(map(vec![
            ("t", s("presence")),
            ("node", s("ghost")),
            ("room", s("not a room")),
            ("user", map(vec![("id", s("g"))])),
            ("present", rmpv::Value::from(true)),
        ])),
    ];
    for payload in &nodes_garbage {
        let receivers = redis
            .command_bytes(&[b"PUBLISH", b"preau:nodes", payload])
            .await;
        assert_eq!(receivers.int(), 2, "both nodes subscribe to preau:nodes");
    }

    // Still serving: the next post on A reaches B with the next offset.
    let ack = post(&mut poster, "two").await;
    assert_eq!(ack.offset, 2);
    let second = next_event_or_end(&mut reader).await.expect("open");
    assert_eq!(
        (second.offset, text(&second), second.from.id.as_str()),
        (2, "two", "paul")
    );
    assert!(alive(&mut a), "node a exited after malformed bus messages");
    assert!(alive(&mut b), "node b exited after malformed bus messages");
    for node in [&a, &b] {
        let (h_epoch, head, events) = history_all(&node.url(), ROOM).await;
        assert_eq!((h_epoch.as_str(), head), (epoch.as_str(), 2));
        assert_eq!(events.iter().map(text).collect::<Vec<_>>(), ["one", "two"]);
    }
}

/// B is down while A posts 50 messages; restarted on its folder, B catches
/// up from the Redis stream to the same history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gap_is_repaired_from_the_stream() {
    let redis = RedisServer::start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_node(&redis, "a", dir_a.path(), &[]).await;
    let b = start_node(&redis, "b", dir_b.path(), &[]).await;
    open_rooms(&a.url(), &[ROOM]).await;
    let (mut poster, _) = joined(&a.url(), "paul").await;
    for i in 1..=5 {
        assert_eq!(post(&mut poster, &format!("m{i}")).await.offset, i);
    }
    wait_head(&b.url(), ROOM, 5).await;
    b.kill9().await;
    for i in 6..=55 {
        assert_eq!(post(&mut poster, &format!("m{i}")).await.offset, i);
    }
    let b = start_node(&redis, "b", dir_b.path(), &[]).await;
    let (_, b_head, b_events) = wait_head(&b.url(), ROOM, 55).await;
    let (_, _, a_events) = history_all(&a.url(), ROOM).await;
    assert_eq!(b_head, 55);
    assert_contiguous("restarted b", 55, &b_events);
    assert_eq!(b_events, a_events, "B caught up to A's exact history");
}

/// B is down while A posts far more than `stream_max` (100): the stream no
/// longer reaches back to B's head, so B, restarted, must fetch the missing
/// events from its live peer A. No post happens after B's restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gap_beyond_the_stream_is_repaired_from_a_peer() {
    let redis = RedisServer::start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let small = ["--stream-max", "100"];
    let a = start_node(&redis, "a", dir_a.path(), &small).await;
    let b = start_node(&redis, "b", dir_b.path(), &small).await;
    open_rooms(&a.url(), &[ROOM]).await;
    let (mut poster, _) = joined(&a.url(), "paul").await;
    for i in 1..=5 {
        assert_eq!(post(&mut poster, &format!("m{i}")).await.offset, i);
    }
    wait_head(&b.url(), ROOM, 5).await;
    b.kill9().await;
    const N: u64 = 405;
    for i in 6..=N {
        assert_eq!(post(&mut poster, &format!("m{i}")).await.offset, i);
    }
    // The stream was trimmed: it no longer holds offset 6.
    let first = redis
        .command(&[
            "XRANGE",
            "preau:{3B}/chat/revision:s",
            "-",
            "+",
            "COUNT",
            "1",
        ])
        .await;
    let first_id = first.array()[0].array()[0].text();
    let first_offset: u64 = first_id.split('-').next().unwrap().parse().unwrap();
    assert!(first_offset > 6, "stream still starts at {first_id}");
    eprintln!("peer repair: stream starts at offset {first_offset}");

    let b = start_node(&redis, "b", dir_b.path(), &small).await;
    let (_, b_head, b_events) = wait_head(&b.url(), ROOM, N).await;
    let (_, _, a_events) = history_all(&a.url(), ROOM).await;
    assert_eq!(b_head, N);
    assert_contiguous("restarted b", N, &b_events);
    assert_eq!(b_events, a_events, "B caught up to A's exact history");
}
