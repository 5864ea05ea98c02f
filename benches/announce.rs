//! An announcement to the parents of 10 classes, over two nodes (issue
//! 17's figure): about 600 recipients, half of them connected, spread over
//! both nodes. Measures the time from `announce` until every connected
//! recipient has its notification live, and checks that the read count
//! the sender sees (on either node) matches the recipients who opened it.
//!
//!     cargo bench -p preau-benches --bench announce [-- ROUNDS]
//!
//! Starts its own `redis-server` on a free port and two préau nodes in
//! this process (sled in temp folders); the ENT's sync goes to node a
//! only. Timings are wall clock over loopback WebSockets, clients in the
//! same process (2 cores shared by both nodes, Redis and 300 clients).
//! Results go to stdout; the last run's are in
//! `benches/results/announce.md`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use preau::auth::{Claims, Keyring};
use preau::client::Client;
use preau::config::Config;
use preau::kinds::announce::{AnnounceOk, AnnounceRequest, StatusOk};
use preau::kinds::inbox::{FeedOk, FeedRequest};
use preau::protocol::{Body, PostOk, Role, ServerFrame};
use serde_json::json;

const SECRET: &str = "bench:0123456789abcdef0123456789abcdef";
const ADMIN_KEY: &str = "bench-admin-key-0123456789abcdef0123";
const CLASSES: usize = 10;
const PUPILS: usize = 30;

fn config(dir: &std::path::Path, redis: &str, node: &str) -> Config {
    Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        metrics_listen: None,
        data: dir.to_owned(),
        secret: Some(SECRET.to_owned()),
        admin_key: Some(ADMIN_KEY.to_owned()),
        redis: Some(redis.to_owned()),
        node_id: node.to_owned(),
        rate_per_sec: 1_000_000.0,
        rate_burst: 1_000_000,
        request_rate_per_sec: 1_000_000.0,
        request_burst: 1_000_000,
        max_connections: 10_000,
        ..Config::default()
    }
}

fn token(sub: &str, role: Role) -> String {
    let now = preau::auth::now_secs();
    let claims = Claims {
        sub: sub.to_owned(),
        name: sub.to_owned(),
        role,
        classes: Vec::new(),
        children: Vec::new(),
        exp: now + 3600,
        iat: now,
    };
    Keyring::parse(SECRET)
        .and_then(|k| k.mint(&claims))
        .unwrap_or_default()
}

/// 10 classes of 30 pupils, two parents each: 600 parents.
fn school() -> serde_json::Value {
    let mut people = vec![json!({"id": "proviseur", "name": "M. le proviseur", "role": "staff"})];
    let mut classes = Vec::new();
    for c in 0..CLASSES {
        classes.push(json!({"id": format!("C{c}"), "level": "3e"}));
        for p in 0..PUPILS {
            let pupil = format!("e{c}-{p}");
            people.push(json!({"id": pupil, "name": pupil, "role": "student", "classes": [format!("C{c}")]}));
            for k in 0..2 {
                people.push(json!({"id": format!("p{k}-{c}-{p}"), "name": format!("Parent {k} {c}-{p}"), "role": "parent", "children": [pupil]}));
            }
        }
    }
    json!({"version": 1, "mode": "full", "classes": classes, "people": people})
}

async fn put_directory(addr: SocketAddr, body: &serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.to_string();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "PUT /admin/directory HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

async fn directory_version(addr: SocketAddr) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return 0;
    };
    let head = format!(
        "GET /admin/directory HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN_KEY}\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return 0;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["version"].as_u64())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    // Redis on a free port, its data in a temp folder.
    let redis_dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let mut redis = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .current_dir(redis_dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let redis_url = format!("redis://127.0.0.1:{port}");
    let (da, db) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let a = preau::start(config(da.path(), &redis_url, "a"))
        .await
        .expect("node a");
    let b = preau::start(config(db.path(), &redis_url, "b"))
        .await
        .expect("node b");
    let urls = [
        format!("ws://{}/ws", a.local_addr()),
        format!("ws://{}/ws", b.local_addr()),
    ];
    let started = Instant::now();
    put_directory(a.local_addr(), &school()).await;
    println!(
        "directory: {} people synced on a in {} ms",
        1 + CLASSES * PUPILS * 3,
        started.elapsed().as_millis()
    );
    // b takes it through Redis (until then, b lets any token in: watch
    // its version, not a connection).
    let waited = Instant::now();
    while directory_version(b.local_addr()).await != 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("directory: on b after {} ms", waited.elapsed().as_millis());

    // Half the parents connected (the first parent of each pupil), spread
    // over both nodes, each watching its feed.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, String, Instant)>();
    let connected: Vec<String> = (0..CLASSES)
        .flat_map(|c| (0..PUPILS).map(move |p| format!("p0-{c}-{p}")))
        .collect();
    for (i, parent) in connected.iter().enumerate() {
        let (mut client, _) = Client::connect(&urls[i % 2], &token(parent, Role::Parent))
            .await
            .expect("parent connects");
        let feed: FeedOk = client
            .request_kind(&FeedRequest::Feed {
                id: None,
                before: None,
                limit: Some(1),
            })
            .await
            .expect("feed");
        client.join(&feed.room, None).await.expect("joins its feed");
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(frame) = client.next().await {
                if let ServerFrame::Event(event) = frame {
                    if let Body::Kind(body) = &event.body {
                        if body.kind == "notify" {
                            let room = body
                                .fields
                                .get("room")
                                .and_then(|r| r.as_str())
                                .unwrap_or("")
                                .to_owned();
                            let _ = tx.send((i, room, Instant::now()));
                        }
                    }
                }
            }
        });
    }
    println!(
        "{} parents connected (of {}), {} per node",
        connected.len(),
        connected.len() * 2,
        connected.len() / 2
    );
    let (mut staff, _) = Client::connect(&urls[0], &token("proviseur", Role::Staff))
        .await
        .expect("staff");
    let targets: Vec<String> = (0..CLASSES).map(|c| format!("parents:C{c}")).collect();
    println!();
    println!("| round | recipients | reply (ms) | all connected notified (ms) | p50 (ms) | p99 (ms) | read by | status on a | status on b |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut pending: HashMap<String, Vec<(usize, Instant)>> = HashMap::new();
    for round in 0..rounds {
        let request = AnnounceRequest::Announce {
            id: None,
            targets: targets.clone(),
            title: format!("Réunion parents-professeurs ({round})"),
            text: "Jeudi à 18 h, en salle polyvalente.".into(),
            ack: false,
            urgent: false,
            key: None,
        };
        // Right after start, the cluster may still be resynchronising.
        let (sent_at, sent): (Instant, AnnounceOk) = loop {
            let sent_at = Instant::now();
            match staff.request_kind(&request).await {
                Ok(sent) => break (sent_at, sent),
                Err(preau::client::ClientError::Refused(reply))
                    if reply.code == preau::protocol::ErrorCode::Unavailable =>
                {
                    tokio::time::sleep(Duration::from_millis(reply.retry_after_ms.unwrap_or(100)))
                        .await
                }
                Err(err) => panic!("announce: {err}"),
            }
        };
        let reply = sent_at.elapsed();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if pending.get(&sent.room).map_or(0, Vec::len) >= connected.len() {
                break;
            }
            let timeout = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(timeout, rx.recv()).await {
                Ok(Some((i, room, at))) => pending.entry(room).or_default().push((i, at)),
                _ => break,
            }
        }
        let arrivals = pending.remove(&sent.room).unwrap_or_default();
        let mut latencies: Vec<Duration> = arrivals
            .iter()
            .map(|(_, at)| at.duration_since(sent_at))
            .collect();
        latencies.sort();
        // A third of the connected parents open it, on either node.
        let readers: Vec<&String> = connected.iter().step_by(3).collect();
        for (k, parent) in readers.iter().enumerate() {
            let (mut client, _) = Client::connect(&urls[k % 2], &token(parent, Role::Parent))
                .await
                .expect("reader");
            let _: PostOk = client
                .request_kind(&AnnounceRequest::AnnounceRead {
                    id: None,
                    room: sent.room.clone(),
                })
                .await
                .expect("read");
            client.close();
        }
        let mut statuses = Vec::new();
        for url in &urls {
            let (mut client, _) = Client::connect(url, &token("proviseur", Role::Staff))
                .await
                .expect("staff");
            let waited = Instant::now();
            let read = loop {
                let status: StatusOk = client
                    .request_kind(&AnnounceRequest::AnnounceStatus {
                        id: None,
                        room: sent.room.clone(),
                    })
                    .await
                    .expect("status");
                if status.read as usize == readers.len()
                    || waited.elapsed() > Duration::from_secs(30)
                {
                    break status.read;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            statuses.push(format!("{read} after {} ms", waited.elapsed().as_millis()));
        }
        println!(
            "| {round} | {} | {} | {} ({} of {}) | {} | {} | {} | {} | {} |",
            sent.recipients,
            ms(reply),
            ms(latencies.last().copied().unwrap_or_default()),
            latencies.len(),
            connected.len(),
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
            readers.len(),
            statuses[0],
            statuses[1],
        );
    }
    a.shutdown();
    b.shutdown();
    let _ = redis.kill();
    let _ = redis.wait();
}
