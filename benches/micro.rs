//! Criterion micro-benchmarks of préau's hot paths, in-process, no sockets:
//!
//! - `decode_post`: `protocol::decode_request` of a `post` frame (100-byte text);
//! - `encode_event`: `protocol::event` of a message event (100-byte text);
//! - `fanout_30`: `Room::commit` of one event to 30 joined members
//!   (`outbound::channel` queues; receivers drained outside the timing);
//! - `store_append_64`: 64 `store::Job`s submitted to `Store` (sled, temp
//!   folder, group commit with flush) and all 64 callbacks waited for.
//!
//! `cargo bench -p preau-benches --bench micro -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use preau::outbound::{self, OutboundRx};
use preau::protocol::{self, Body, Event, Request, Role, UserInfo};
use preau::room::Room;
use preau::store::{Job, Store, StoreOptions};

const ROOM: &str = "3B/chat/revision-bac";
const EPOCH: &str = "bench-epoch";
const TEXT_LEN: usize = 100;
const MEMBERS: usize = 30;
const BATCH: usize = 64;
/// Outbound budget per member, as préau's default (1 MiB).
const BUDGET: usize = 1 << 20;

fn text() -> String {
    "x".repeat(TEXT_LEN)
}

fn user(i: usize) -> UserInfo {
    UserInfo {
        id: format!("student-{i}"),
        name: format!("Student {i}"),
        role: Role::Student,
    }
}

fn event(offset: u64) -> Event {
    Event {
        room: ROOM.to_owned(),
        epoch: EPOCH.to_owned(),
        offset,
        ts: 1_764_400_000_000 + offset,
        from: user(0),
        body: Body::message(text()),
    }
}

fn codec(c: &mut Criterion) {
    let frame = protocol::encode_request(&Request::Post {
        id: Some(7),
        room: ROOM.to_owned(),
        text: text(),
        title: None,
        thread: None,
        reply_to: None,
        quote: None,
        key: None,
    })
    .expect("encode post");
    // Make sure the benchmark decodes what it means to.
    assert!(matches!(
        protocol::decode_request(&frame),
        Ok(Request::Post { .. })
    ));
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_post", |b| {
        b.iter(|| protocol::decode_request(black_box(&frame)))
    });
    let ev = event(42);
    assert_eq!(
        protocol::event_offset(&protocol::event(&ev)),
        Some(42),
        "event frame round trip"
    );
    group.bench_function("encode_event", |b| {
        b.iter(|| protocol::event(black_box(&ev)))
    });
    group.finish();
}

fn drain(receivers: &mut [OutboundRx]) -> usize {
    let mut n = 0;
    for rx in receivers.iter_mut() {
        while rx.try_recv().is_some() {
            n += 1;
        }
    }
    n
}

fn fanout(c: &mut Criterion) {
    let room = Room::new(
        preau::session::Handlers::new(preau::kinds::ALL)
            .expect("kinds")
            .kinds()
            .parse(ROOM)
            .expect("room name"),
        EPOCH.to_owned(),
        0,
        0,
        Default::default(),
    );
    let mut senders = Vec::with_capacity(MEMBERS);
    let mut receivers = Vec::with_capacity(MEMBERS);
    for i in 0..MEMBERS {
        let (tx, rx) = outbound::channel(i as u64 + 1, BUDGET);
        room.join(
            &user(i),
            std::sync::Arc::from(Vec::new()),
            false,
            &tx,
            false,
            |_| None,
        )
        .expect("room open");
        senders.push(tx);
        receivers.push(rx);
    }
    // Presence frames of the joins.
    drain(&mut receivers);
    let frame = protocol::event(&event(1));
    let mut offset = 0u64;
    let mut group = c.benchmark_group("fanout");
    // One element = one delivery.
    group.throughput(Throughput::Elements(MEMBERS as u64));
    group.bench_function("commit_30_members", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                // At most 64 frames queued per member (≈13 KiB, far below
                // the budget), then drained outside the timing.
                let n = left.min(BATCH as u64);
                let start = Instant::now();
                for _ in 0..n {
                    offset += 1;
                    let delivery = room.commit(offset, black_box(&frame), None, None).delivery;
                    debug_assert_eq!(delivery.delivered, MEMBERS as u64);
                }
                total += start.elapsed();
                let drained = drain(&mut receivers);
                assert_eq!(
                    drained,
                    n as usize * MEMBERS,
                    "every member got every frame"
                );
                left -= n;
            }
            total
        })
    });
    group.finish();
    drop(senders);
}

fn store(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    // Counts group commits, to tell how many jobs one flush carried.
    let commits = Arc::new(AtomicU64::new(0));
    let jobs_committed = Arc::new(AtomicU64::new(0));
    let (c2, j2) = (commits.clone(), jobs_committed.clone());
    let store = Store::open(dir.path(), StoreOptions::default(), move |stats| {
        c2.fetch_add(1, Ordering::Relaxed);
        j2.fetch_add(stats.jobs as u64, Ordering::Relaxed);
    })
    .expect("open store");
    let frames: Vec<Bytes> = (1..=BATCH as u64)
        .map(|o| protocol::event(&event(o)))
        .collect();
    let mut offset = 0u64;
    let mut group = c.benchmark_group("store");
    group.sample_size(20);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("append_64_group_commit", |b| {
        b.iter_batched(
            || {
                let (tx, rx) = mpsc::channel();
                let jobs: Vec<Job> = frames
                    .iter()
                    .map(|frame| {
                        offset += 1;
                        let tx = tx.clone();
                        Job {
                            room: ROOM.to_owned(),
                            offset,
                            frame: frame.clone(),
                            idempotency: None,
                            done: Box::new(move |result| {
                                let _ = tx.send(result.is_ok());
                            }),
                        }
                    })
                    .collect();
                (jobs, rx)
            },
            |(jobs, rx)| {
                for job in jobs {
                    store.submit(job).expect("submit");
                }
                for _ in 0..BATCH {
                    assert!(rx.recv().expect("callback"), "append failed");
                }
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
    store.shutdown().expect("shutdown");
    let commits = commits.load(Ordering::Relaxed).max(1);
    eprintln!(
        "store: {} jobs in {} group commits, {:.1} jobs per commit",
        jobs_committed.load(Ordering::Relaxed),
        commits,
        jobs_committed.load(Ordering::Relaxed) as f64 / commits as f64
    );
}

criterion_group!(benches, codec, fanout, store);
criterion_main!(benches);
