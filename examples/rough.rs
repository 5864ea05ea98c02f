//! Rough figures by hand (the real load generator comes with the benchmark
//! issue). Run a release server with the same `PREAU_SECRET`, then:
//!
//!   cargo run --release --example rough -- idle  ws://127.0.0.1:8080/ws 1000
//!   cargo run --release --example rough -- room  ws://127.0.0.1:8080/ws 30 5 2000
//!
//! `idle N`: N authenticated connections, each joined to one of N/30 rooms;
//! holds them 5 s so the server's RSS can be read.
//! `room M P K`: M members in one room, P of them post K messages each
//! (each poster waits for its ack before the next post); prints deliveries/s.
//! `latency URL2 N`: posts N messages one at a time on the first URL and
//! prints how long each took to reach a reader on URL2 (another node), and
//! how long the poster waited for its ack.
//! `redact N`: a teacher posts N messages in a fresh room, then redacts
//! the first (run the server with `PREAU_LOG=preau::store=debug` to read
//! the shredding pass's time in its log).
//! `fill MB`: stores about MB megabytes of 4,000-byte messages in 8 rooms
//! (to read the server's RSS as its history grows).
//!
//! Rooms exist once a teacher or staff opens them: each mode opens its
//! rooms first with a staff token.

use std::time::{Duration, Instant};

use preau::auth::{Claims, Keyring};
use preau::client::Client;
use preau::protocol::{Role, ServerFrame};

fn token(keyring: &Keyring, user: &str) -> String {
    token_as(keyring, user, Role::Student)
}

fn token_as(keyring: &Keyring, user: &str, role: Role) -> String {
    let now = preau::auth::now_secs();
    keyring
        .mint(&Claims {
            sub: user.to_owned(),
            name: user.to_owned(),
            role,
            classes: vec!["3B".to_owned()],
            children: vec![],
            exp: now + 3600,
            iat: now,
        })
        .expect("mint")
}

/// Opens rooms the way a school does: staff joins them.
async fn open(url: &str, keyring: &Keyring, rooms: &[String]) {
    let (mut staff, _) = Client::connect(url, &token_as(keyring, "opener", Role::Staff))
        .await
        .expect("connect staff");
    for room in rooms {
        staff.join(room, None).await.expect("open room");
        staff.leave(room).await.expect("leave room");
    }
    staff.close();
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secret = std::env::var("PREAU_SECRET").expect("set PREAU_SECRET like the server");
    let keyring = Keyring::parse(&secret).expect("secret");
    let url = args[1].clone();
    match args[0].as_str() {
        "idle" => {
            let n: usize = args[2].parse().expect("N");
            let rooms: Vec<String> = (0..n.div_ceil(30))
                .map(|r| format!("3B/chat/room{r}"))
                .collect();
            open(&url, &keyring, &rooms).await;
            let started = Instant::now();
            let mut clients = Vec::with_capacity(n);
            for i in 0..n {
                let (mut client, _) = Client::connect(&url, &token(&keyring, &format!("u{i}")))
                    .await
                    .expect("connect");
                client
                    .join(&format!("3B/chat/room{}", i / 30), None)
                    .await
                    .expect("join");
                clients.push(client);
            }
            println!(
                "{n} connections joined in {:.2?} ({:.0}/s); holding 5 s",
                started.elapsed(),
                n as f64 / started.elapsed().as_secs_f64()
            );
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        "room" => {
            let members: usize = args[2].parse().expect("M");
            let posters: usize = args[3].parse().expect("P");
            let per_poster: usize = args[4].parse().expect("K");
            let room = format!("3B/chat/bench{}", std::process::id());
            open(&url, &keyring, std::slice::from_ref(&room)).await;
            let mut readers = Vec::new();
            let mut poster_clients = Vec::new();
            for i in 0..members {
                let (mut client, _) = Client::connect(&url, &token(&keyring, &format!("m{i}")))
                    .await
                    .expect("connect");
                client.join(&room, None).await.expect("join");
                if i < posters {
                    poster_clients.push(client);
                } else {
                    readers.push(client);
                }
            }
            let expected = posters * per_poster;
            let started = Instant::now();
            let reader_tasks: Vec<_> = readers
                .into_iter()
                .map(|mut client| {
                    tokio::spawn(async move {
                        let mut seen = 0;
                        while seen < expected {
                            match client.next().await {
                                Some(ServerFrame::Event(_)) => seen += 1,
                                Some(_) => {}
                                None => break,
                            }
                        }
                        seen
                    })
                })
                .collect();
            let poster_tasks: Vec<_> = poster_clients
                .into_iter()
                .map(|mut client| {
                    let room = room.clone();
                    tokio::spawn(async move {
                        for k in 0..per_poster {
                            client
                                .post(&room, &format!("message {k} {}", "x".repeat(80)))
                                .await
                                .expect("post");
                        }
                    })
                })
                .collect();
            for task in poster_tasks {
                task.await.expect("poster");
            }
            let mut delivered = 0;
            for task in reader_tasks {
                delivered += task.await.expect("reader");
            }
            // Posters receive their own events too.
            delivered += posters * expected;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{expected} messages, {delivered} deliveries in {secs:.2} s: {:.0} msg/s stored, {:.0} deliveries/s",
                expected as f64 / secs,
                delivered as f64 / secs
            );
        }
        "latency" => {
            let other_url = args[2].clone();
            let n: usize = args[3].parse().expect("N");
            let room = format!("3B/chat/latency{}", std::process::id());
            open(&url, &keyring, std::slice::from_ref(&room)).await;
            let (mut poster, _) = Client::connect(&url, &token(&keyring, "poster"))
                .await
                .expect("connect poster");
            let (mut reader, _) = Client::connect(&other_url, &token(&keyring, "reader"))
                .await
                .expect("connect reader");
            reader.join(&room, None).await.expect("join");
            poster.join(&room, None).await.expect("join");
            // The reader stamps each event as it arrives, in its own task.
            let arrivals = tokio::spawn(async move {
                let mut arrived = std::collections::HashMap::new();
                while arrived.len() < n {
                    match reader.next().await {
                        Some(ServerFrame::Event(event)) => {
                            arrived.insert(event.offset, Instant::now());
                        }
                        Some(_) => {}
                        None => break,
                    }
                }
                arrived
            });
            let mut sent_at = Vec::with_capacity(n);
            let mut acks = Vec::with_capacity(n);
            for i in 0..n {
                let sent = Instant::now();
                let ack = loop {
                    match poster.post(&room, &format!("m{i}")).await {
                        Ok(ack) => break ack,
                        Err(err) => {
                            eprintln!("post refused ({err}), retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                };
                acks.push(sent.elapsed());
                sent_at.push((ack.offset, sent));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let arrived = arrivals.await.expect("reader");
            let mut cross: Vec<Duration> = sent_at
                .iter()
                .filter_map(|(offset, sent)| arrived.get(offset).map(|at| at.duration_since(*sent)))
                .collect();
            let pct = |v: &mut Vec<Duration>, p: f64| {
                v.sort();
                v[((v.len() as f64 - 1.0) * p).round() as usize]
            };
            println!(
                "{n} posts: cross-node delivery p50 {:.2?} p99 {:.2?} max {:.2?}; ack p50 {:.2?} p99 {:.2?}",
                pct(&mut cross, 0.5),
                pct(&mut cross, 0.99),
                pct(&mut cross, 1.0),
                pct(&mut acks, 0.5),
                pct(&mut acks, 0.99)
            );
        }
        "redact" => {
            let n: usize = args[2].parse().expect("N");
            let room = format!("3B/chat/redact{}", std::process::id());
            let (mut prof, _) = Client::connect(&url, &token_as(&keyring, "prof", Role::Teacher))
                .await
                .expect("connect");
            prof.join(&room, None).await.expect("join");
            for k in 0..n {
                prof.post(&room, &format!("message {k} {}", "x".repeat(280)))
                    .await
                    .expect("post");
            }
            let started = Instant::now();
            prof.moderate(
                &room,
                preau::protocol::ModAction::Redact {
                    offset: 1,
                    reason: None,
                },
            )
            .await
            .expect("redact");
            println!("redaction acked in {:.2?}", started.elapsed());
        }
        "fill" => {
            let megabytes: usize = args[2].parse().expect("MB");
            let rooms: Vec<String> = (0..8).map(|r| format!("3B/chat/fill{r}")).collect();
            open(&url, &keyring, &rooms).await;
            let per_room = megabytes * 1_000_000 / 4_000 / rooms.len();
            let started = Instant::now();
            let tasks: Vec<_> = rooms
                .iter()
                .enumerate()
                .map(|(i, room)| {
                    let (url, room) = (url.clone(), room.clone());
                    let token = token(&keyring, &format!("filler{i}"));
                    tokio::spawn(async move {
                        let (mut client, _) = Client::connect(&url, &token).await.expect("connect");
                        client.join(&room, None).await.expect("join");
                        let text = "x".repeat(3_990);
                        for k in 0..per_room {
                            client
                                .post(&room, &format!("{k:09} {text}"))
                                .await
                                .expect("post");
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("filler");
            }
            println!(
                "{} messages of 4,000 bytes in {:.1?}",
                per_room * rooms.len(),
                started.elapsed()
            );
        }
        other => panic!("unknown mode {other}"),
    }
}
