//! How long a note with many small updates takes to load after
//! compaction, end to end: an in-process server, N one-character updates
//! through the protocol (pipelined), the editor leaves (the note is
//! compacted), the server restarts, and a new editor's sync step 1 is
//! timed until its step 2 arrives. Also prints the server's RSS growth
//! per loaded note for M notes of that kind.
//!
//!   cargo run --release --example note_load -- 100000 50

use std::time::{Duration, Instant};

use preau::auth::{Claims, Keyring};
use preau::client::Client;
use preau::config::Config;
use preau::notes;
use preau::protocol::{self, Request, Role, ServerFrame};
use yrs::{Doc, ReadTxn, Text, Transact};

const SECRET: &str = "k1:0123456789abcdef0123456789abcdef";

fn token(keyring: &Keyring, user: &str, role: Role) -> String {
    let now = preau::auth::now_secs();
    keyring
        .mint(&Claims {
            sub: user.into(),
            name: user.into(),
            role,
            classes: vec!["3B".into()],
            children: vec![],
            exp: now + 3600,
            iat: now,
        })
        .expect("mint")
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

fn config(dir: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data: dir.to_owned(),
        secret: Some(SECRET.into()),
        request_rate_per_sec: 1e9,
        request_burst: u32::MAX,
        ..Config::default()
    }
}

/// Writes `n` one-character updates into `room` and waits for every ack.
async fn fill(url: &str, keyring: &Keyring, room: &str, n: usize, scatter: bool) {
    let (mut client, _) = Client::connect(url, &token(keyring, "ana", Role::Student))
        .await
        .expect("connect");
    client.join(room, None).await.expect("join");
    let doc = Doc::with_client_id(1);
    let text = doc.get_or_insert_text("content");
    for i in 0..n {
        let update = {
            let mut txn = doc.transact_mut();
            let len = text.len(&txn);
            // Typing is mostly appending; `scatter` edits here and there
            // too (every 5th keystroke), which yrs cannot merge into one block.
            let at = if scatter && i % 5 == 0 {
                (i as u32).wrapping_mul(2_654_435_761) % (len + 1)
            } else {
                len
            };
            text.insert(&mut txn, at, if i % 7 == 6 { " " } else { "a" });
            txn.encode_update_v1()
        };
        let frame = protocol::encode_request(&Request::Yjs {
            id: Some(i as u32),
            room: room.into(),
            data: notes::encode_update(&update),
            more: None,
        })
        .expect("encode");
        client.send_raw(frame).expect("send");
        // Keep the pipeline bounded: read what came back every 1,000.
        if i % 1000 == 999 || i + 1 == n {
            drain(&mut client, i as u32).await;
        }
    }
    client.leave(room).await.expect("leave"); // last member: compaction
}

/// Reads frames until the ack of request `last` arrived.
async fn drain(client: &mut Client, last: u32) {
    loop {
        match client.next().await {
            Some(ServerFrame::Ok { id: Some(id), .. }) if id == last => return,
            Some(ServerFrame::Error(e)) => panic!("refused: {e:?}"),
            Some(_) => {}
            None => panic!("closed"),
        }
    }
}

/// Joins and syncs from nothing; returns how long until step 2 arrived.
async fn time_load(url: &str, keyring: &Keyring, room: &str) -> (Duration, usize) {
    let (mut client, _) = Client::connect(url, &token(keyring, "prof", Role::Teacher))
        .await
        .expect("connect");
    let start = Instant::now();
    client.join(room, None).await.expect("join");
    let sv = Doc::new().transact().state_vector();
    let frame = protocol::encode_request(&Request::Yjs {
        id: Some(1),
        room: room.into(),
        data: notes::encode_step1(&sv),
        more: None,
    })
    .expect("encode");
    client.send_raw(frame).expect("send");
    loop {
        if let Some(ServerFrame::Yjs(f)) = client.next().await {
            return (start.elapsed(), f.data.len());
        }
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let notes_count: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(50);
    let keyring = Keyring::parse(SECRET).expect("secret");
    let dir = tempfile::tempdir().expect("dir");

    let server = preau::start(config(dir.path())).await.expect("start");
    let url = format!("ws://{}/ws", server.local_addr());
    let started = Instant::now();
    fill(&url, &keyring, "3B/notes/big", n, false).await;
    let filled = started.elapsed();
    // A second, typical note (2,000 keystrokes), copied for the RSS figure.
    for k in 0..notes_count {
        fill(&url, &keyring, &format!("3B/notes/n{k}"), 2_000, true).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // compactions
    server.shutdown();
    server.wait().await.expect("stop");

    let server = preau::start(config(dir.path())).await.expect("restart");
    let url = format!("ws://{}/ws", server.local_addr());
    // RSS per loaded note: keep each joined (a client per note).
    let before = rss_kib();
    let mut holders = Vec::new();
    for k in 0..notes_count {
        let (mut c, _) = Client::connect(&url, &token(&keyring, "bob", Role::Student))
            .await
            .expect("connect");
        c.join(&format!("3B/notes/n{k}"), None).await.expect("join");
        holders.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_kib();
    println!(
        "{notes_count} notes of 2,000 keystrokes (a fifth of them away from the end) loaded: RSS +{} KiB, {:.0} KiB per note (connection included)",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / notes_count as f64
    );
    let (load, bytes) = time_load(&url, &keyring, "3B/notes/big").await;
    println!(
        "{n} updates written in {:.1} s; after compaction and a restart, join + sync step 1 -> step 2 ({bytes} bytes) took {:.1} ms",
        filled.as_secs_f64(),
        load.as_secs_f64() * 1e3
    );
    let (again, _) = time_load(&url, &keyring, "3B/notes/big").await;
    println!(
        "the same note already loaded: {:.1} ms",
        again.as_secs_f64() * 1e3
    );

    server.shutdown();
}
