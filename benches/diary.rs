//! The homework diary's figures (issue: "due this week" for a parent of
//! three children over a year of entries, and memory per loaded diary).
//!
//!     cargo bench -p preau-benches --bench diary [-- CLASSES ENTRIES_PER_DAY]
//!
//! Starts préau in this process (sled in a temp folder), has a teacher per
//! class write a school year of entries (180 days × ENTRIES_PER_DAY
//! homework items and as many lessons, in CLASSES classes), then:
//! - a parent of three children (in three of the classes) asks
//!   `homework_due` for a week, 1,000 times over the year's weeks, with
//!   the diaries loaded by someone else (the usual case in a school day)
//!   and with nobody else holding them (each answer loads and releases
//!   three diaries);
//! - RSS after a restart, before and after a staff connection joins every
//!   diary: the memory of a loaded diary of a year.
//!
//! Timings are wall-clock round trips over a loopback WebSocket, client
//! included. Results go to stdout; the last run's are in
//! `benches/results/diary.md`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use preau::auth::{Child, Claims, Keyring};
use preau::client::Client;
use preau::config::Config;
use preau::kinds::homework::{HomeworkRequest, What};
use preau::protocol::{PostOk, Role};

const SECRET: &str = "bench:0123456789abcdef0123456789abcdef";

/// The binary's allocator, so heap figures are the server's own: its
/// statistics give a loaded diary's cost exactly (RSS keeps pages the
/// allocator already has, and sled's cache).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn live_kib() -> i64 {
    // The statistics are refreshed by advancing the epoch; a failure only
    // leaves them as they were.
    let _ = tikv_jemalloc_ctl::epoch::advance();
    tikv_jemalloc_ctl::stats::allocated::read().map_or(0, |b| b as i64 / 1024)
}
const SCHOOL_DAYS: u64 = 180;

fn config(dir: &std::path::Path) -> Config {
    Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        metrics_listen: None,
        data: dir.to_owned(),
        secret: Some(SECRET.to_owned()),
        rate_per_sec: 1_000_000.0,
        rate_burst: 1_000_000,
        request_rate_per_sec: 1_000_000.0,
        request_burst: 1_000_000,
        ..Config::default()
    }
}

fn token(sub: &str, role: Role, classes: &[String], children: Vec<Child>) -> String {
    let now = preau::auth::now_secs();
    let claims = Claims {
        sub: sub.to_owned(),
        name: sub.to_owned(),
        role,
        classes: classes.to_vec(),
        children,
        exp: now + 24 * 3600,
        iat: now,
    };
    Keyring::parse(SECRET)
        .and_then(|k| k.mint(&claims))
        .unwrap_or_else(|e| panic!("token: {e}"))
}

async fn client(url: &str, token: &str) -> Client {
    Client::connect(url, token)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
        .0
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn day(n: u64) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2025, 9, 1).unwrap_or_default() + chrono::Days::new(n)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn due_weeks(parent: &mut Client, rounds: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let monday = day((i as u64 % 25) * 7);
        let request = HomeworkRequest::HomeworkDue {
            id: None,
            from: monday.to_string(),
            to: (monday + chrono::Days::new(6)).to_string(),
            limit: Some(500),
        };
        let start = Instant::now();
        let reply: serde_json::Value = parent
            .request_kind(&request)
            .await
            .unwrap_or_else(|e| panic!("homework_due: {e}"));
        times.push(start.elapsed());
        assert!(
            reply["items"].as_array().is_some_and(|a| !a.is_empty()),
            "{i}: {reply}"
        );
    }
    times.sort();
    times
}

fn report(what: &str, times: &[Duration]) {
    println!(
        "{what}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        times.len(),
        percentile(times, 0.5).as_secs_f64() * 1e3,
        percentile(times, 0.99).as_secs_f64() * 1e3,
        times.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let classes_n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(20);
    let per_day: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let classes: Vec<String> = (0..classes_n).map(|i| format!("C{i:02}")).collect();

    // A year of entries per class.
    let server = preau::start(config(dir.path()))
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let url = format!("ws://{}/ws", server.local_addr());
    let seeded = Instant::now();
    let mut written = 0u64;
    for class in &classes {
        let mut prof = client(
            &url,
            &token(
                &format!("t-{class}"),
                Role::Teacher,
                std::slice::from_ref(class),
                vec![],
            ),
        )
        .await;
        let room = format!("{class}/homework/diary");
        prof.join(&room, None)
            .await
            .unwrap_or_else(|e| panic!("join: {e}"));
        for d in 0..SCHOOL_DAYS {
            for k in 0..per_day {
                for what in [What::Lesson, What::Homework] {
                    let request = HomeworkRequest::HomeworkWrite {
                        id: None,
                        room: room.clone(),
                        entry: None,
                        what,
                        subject: ["Maths", "Français", "Anglais", "Histoire"][(k % 4) as usize].to_owned(),
                        text: format!("Exercices {d}-{k} : lire le chapitre et faire les exercices de la page {d}"),
                        date: day(d).to_string(),
                        due: (what == What::Homework).then(|| day(d + 1 + k % 5).to_string()),
                        minutes: (what == What::Homework).then_some(20),
                        links: vec![],
                        publish_at: None,
                        key: None,
                    };
                    let _: PostOk = prof
                        .request_kind(&request)
                        .await
                        .unwrap_or_else(|e| panic!("write: {e}"));
                    written += 1;
                }
            }
        }
    }
    println!(
        "seeded {written} entries in {} diaries in {:.1} s",
        classes.len(),
        seeded.elapsed().as_secs_f64()
    );

    // The parent of three children in three classes.
    let children: Vec<Child> = classes
        .iter()
        .take(3)
        .enumerate()
        .map(|(i, c)| Child {
            id: format!("kid{i}"),
            name: Some(format!("Enfant {i}")),
            classes: vec![c.clone()],
        })
        .collect();
    let family: Vec<String> = classes.iter().take(3).cloned().collect();
    let parent_token = token("parent", Role::Parent, &family, children);

    // Restart: nothing loaded.
    server.shutdown();
    server.wait().await.unwrap_or_else(|e| panic!("stop: {e}"));
    let server = preau::start(config(dir.path()))
        .await
        .unwrap_or_else(|e| panic!("restart: {e}"));
    let url = format!("ws://{}/ws", server.local_addr());
    let mut parent = client(&url, &parent_token).await;

    // RSS before and after a staff connection holds every diary. A first
    // pass warms sled's cache (read once, kept by sled whoever holds the
    // rooms); the second measures what holding the diaries costs.
    let rooms: Vec<String> = classes
        .iter()
        .map(|c| format!("{c}/homework/diary"))
        .collect();
    let staff_token = token("cpe", Role::Staff, &[], vec![]);
    {
        let mut staff = client(&url, &staff_token).await;
        for room in &rooms {
            staff
                .join(room, None)
                .await
                .unwrap_or_else(|e| panic!("join: {e}"));
        }
    }
    // The connection closed: the rooms unload (nobody else holds them).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let before = rss_kib();
    let heap_before = live_kib();
    let mut staff = client(&url, &staff_token).await;
    for room in &rooms {
        staff
            .join(room, None)
            .await
            .unwrap_or_else(|e| panic!("join: {e}"));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib();
    let heap_after = live_kib();
    println!(
        "holding {} diaries of {} entries each: heap {heap_before} KiB -> {heap_after} KiB, {:.0} KiB per loaded diary (RSS {before} -> {after} KiB)",
        classes.len(),
        written / classes.len() as u64,
        (heap_after - heap_before) as f64 / classes.len() as f64
    );

    // The state alone, from the first diary's events (read before the
    // staff connection leaves).
    let mut events: Vec<preau::protocol::Event> = Vec::new();
    let mut after_offset = 0;
    loop {
        let page = staff
            .history(&rooms[0], None, Some(after_offset), Some(200))
            .await
            .unwrap_or_else(|e| panic!("history: {e}"));
        let Some(last) = page.events.last().map(|e| e.offset) else {
            break;
        };
        after_offset = last;
        events.extend(page.events);
    }
    drop(staff);
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // Nobody holds the diaries: the first answer loads three; they stay
    // loaded until the hub's sweep finds them idle.
    let first = due_weeks(&mut parent, 1).await;
    println!(
        "homework_due, 3 children, first answer (loads 3 diaries of a year from disk): {:.2} ms",
        first[0].as_secs_f64() * 1e3
    );

    let heap = live_kib();
    let diary = preau::kinds::homework::State::rebuild(&events);
    println!(
        "the state alone: {} entries, {} KiB",
        diary.len(),
        live_kib() - heap
    );
    drop(diary);

    // The diaries are loaded (a school day): the usual answer.
    let warm = due_weeks(&mut parent, 1000).await;
    report("homework_due, 3 children, diaries loaded", &warm);
    server.shutdown();
    drop(server.wait().await);
}
