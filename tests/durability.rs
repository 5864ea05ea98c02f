//! Durability of the real `preau` binary: SIGKILL right after acks and in
//! the middle of a burst, SIGTERM graceful shutdown, and a second server on
//! the same data folder.

mod support;

use std::collections::{HashMap, HashSet, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use preau::client::Client;
use preau::protocol::{self, Event, PostOk, Request, ServerFrame};
use support::*;

const ROOM: &str = "3B/chat/revision";

/// Ids of pipelined posts; far above the ids `Client` gives its own requests.
const FIRST_RAW_ID: u32 = 1_000_000;

fn text_of(event: &Event) -> &str {
    match &event.body {
        protocol::Body::Message { text, .. } => text,
        other => panic!("not a message: {other:?}"),
    }
}

/// Posts `texts` on `client` (already joined to `room`) keeping up to
/// `window` requests in flight; calls `on_ack(text, ack)` for each ack, in
/// order. Returns why it stopped early (an error reply or the connection
/// closing), or `Ok` once every text was acked.
async fn post_pipelined(
    client: &mut Client,
    room: &str,
    texts: impl IntoIterator<Item = String>,
    window: usize,
    mut on_ack: impl FnMut(String, PostOk),
) -> Result<(), String> {
    let mut texts = texts.into_iter();
    let mut inflight: VecDeque<(u32, String)> = VecDeque::new();
    let mut next_id = FIRST_RAW_ID;
    loop {
        while inflight.len() < window {
            let Some(text) = texts.next() else { break };
            let frame = protocol::encode_request(&Request::Post {
                id: Some(next_id),
                room: room.to_owned(),
                text: text.clone(),
                title: None,
                thread: None,
                reply_to: None,
                quote: None,
                key: None,
            })
            .expect("encode post");
            client.send_raw(frame).map_err(|e| e.to_string())?;
            inflight.push_back((next_id, text));
            next_id += 1;
        }
        let Some(&(want, _)) = inflight.front() else {
            return Ok(());
        };
        let frame = match tokio::time::timeout(WAIT, client.next()).await {
            Err(_) => return Err("no reply within WAIT".to_owned()),
            Ok(None) => return Err(format!("connection closed: {:?}", client.close_frame())),
            Ok(Some(frame)) => frame,
        };
        match frame {
            ServerFrame::Ok { id, data } => {
                assert_eq!(id, Some(want), "replies come in request order");
                let (_, text) = inflight.pop_front().expect("in flight");
                let ack: PostOk = rmpv::ext::from_value(data).expect("post ack decodes");
                on_ack(text, ack);
            }
            ServerFrame::Error(reply) => return Err(format!("refused: {reply:?}")),
            _ => {}
        }
    }
}

/// The room's whole history, paging backwards with `before`/`limit` until
/// the first retained offset. Returns (epoch, head, events ascending).
async fn full_history(client: &mut Client, room: &str) -> (String, u64, Vec<Event>) {
    let mut events: Vec<Event> = Vec::new();
    let mut before = None;
    for _ in 0..10_000 {
        let page = client
            .history(room, before, None, Some(100))
            .await
            .expect("history");
        let oldest = page.events.first().map(|e| e.offset);
        let mut all = page.events;
        all.append(&mut events);
        events = all;
        match oldest {
            Some(oldest) if oldest > page.first => {
                assert!(page.more, "more is set while older events remain");
                before = Some(oldest);
            }
            _ => {
                assert!(!page.more, "more is clear on the oldest page");
                return (page.epoch, page.head, events);
            }
        }
    }
    panic!("history paging did not reach the first event");
}

/// Checks that history is exactly offsets 1..=head under `epoch`.
fn assert_contiguous(events: &[Event], head: u64, epoch: &str) {
    let offsets: Vec<u64> = events.iter().map(|e| e.offset).collect();
    assert_eq!(
        offsets,
        (1..=head).collect::<Vec<_>>(),
        "offsets are contiguous from 1 to head"
    );
    for event in events {
        assert_eq!(
            event.epoch, epoch,
            "event {} has the room epoch",
            event.offset
        );
        assert_eq!(event.room, ROOM);
    }
}

async fn connect_joined(url: &str, user: &str) -> (Client, String) {
    let (mut client, _) = Client::connect(url, &student(user, "3B"))
        .await
        .expect("connect");
    let joined = client.join(ROOM, None).await.expect("join");
    (client, joined.epoch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_right_after_acks_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Proc::serve(dir.path(), free_port(), &[]).await;
    let url = server.url();
    // Staff opens the room: pupils join only rooms that exist.
    open_rooms(&url, &[ROOM]).await;

    // 3 clients post 200 messages in total, concurrently, 4 in flight each.
    let mut tasks = Vec::new();
    for c in 0..3usize {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let (mut client, epoch) = connect_joined(&url, &format!("poster{c}")).await;
            let count = if c == 0 { 68 } else { 66 };
            let texts = (0..count).map(move |i| format!("c{c}-m{i}"));
            let mut acks = Vec::new();
            post_pipelined(&mut client, ROOM, texts, 4, |text, ack| {
                acks.push((text, ack))
            })
            .await
            .expect("every post is acked");
            (epoch, acks, client)
        }));
    }
    let mut acked: Vec<(String, PostOk)> = Vec::new();
    let mut epochs = HashSet::new();
    let mut clients = Vec::new();
    for task in tasks {
        let (epoch, acks, client) = task.await.expect("poster task");
        epochs.insert(epoch);
        acked.extend(acks);
        clients.push(client);
    }
    // Immediately after the last ack: no graceful shutdown.
    server.kill9().await;
    drop(clients);

    assert_eq!(acked.len(), 200);
    assert_eq!(epochs.len(), 1, "all clients joined the same epoch");
    let epoch = epochs.into_iter().next().expect("epoch");
    for (_, ack) in &acked {
        assert_eq!(ack.epoch, epoch, "acks carry the room epoch");
    }
    let mut offsets: Vec<u64> = acked.iter().map(|(_, a)| a.offset).collect();
    offsets.sort_unstable();
    assert_eq!(
        offsets,
        (1..=200).collect::<Vec<_>>(),
        "acked offsets 1..=200"
    );

    let server = Proc::serve(dir.path(), free_port(), &[]).await;
    let (mut reader, _) = Client::connect(&server.url(), &student("reader", "3B"))
        .await
        .expect("connect after restart");
    let (history_epoch, head, events) = full_history(&mut reader, ROOM).await;
    assert_eq!(history_epoch, epoch, "the room's epoch survives SIGKILL");
    assert_eq!(head, 200);
    assert_contiguous(&events, head, &epoch);
    for (text, ack) in &acked {
        let event = &events[(ack.offset - 1) as usize];
        assert_eq!(event.offset, ack.offset);
        assert_eq!(
            text_of(event),
            text,
            "offset {} holds its acked text",
            ack.offset
        );
        assert_eq!(event.ts, ack.ts, "offset {} keeps its acked ts", ack.offset);
    }

    let joined = reader.join(ROOM, None).await.expect("join after restart");
    assert_eq!(joined.epoch, epoch);
    assert_eq!(joined.head, 200);
    let next = reader.post(ROOM, "after restart").await.expect("post");
    assert_eq!(
        next.offset, 201,
        "the next post follows the last acked offset"
    );
    assert_eq!(next.epoch, epoch);
    server.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_burst_keeps_every_acked_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Proc::serve(dir.path(), free_port(), &[]).await;
    let url = server.url();
    // Staff opens the room: pupils join only rooms that exist.
    open_rooms(&url, &[ROOM]).await;
    let acked: Arc<Mutex<Vec<(String, PostOk)>>> = Arc::default();

    let mut tasks = Vec::new();
    let mut epochs = HashSet::new();
    for c in 0..3usize {
        let (mut client, epoch) = connect_joined(&url, &format!("poster{c}")).await;
        epochs.insert(epoch);
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            // Keeps posting until the server dies.
            let texts = (0..1_000_000).map(move |i| format!("c{c}-m{i}"));
            let result = post_pipelined(&mut client, ROOM, texts, 8, |text, ack| {
                acked.lock().expect("lock").push((text, ack));
            })
            .await;
            assert!(result.is_err(), "posting only stops when the server dies");
        }));
    }
    assert_eq!(epochs.len(), 1);
    let epoch = epochs.into_iter().next().expect("epoch");

    // Kill once a few hundred messages are acked, while posts are in flight.
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    while acked.lock().expect("lock").len() < 300 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "300 acks did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9().await;
    for task in tasks {
        tokio::time::timeout(WAIT, task)
            .await
            .expect("posters notice the kill")
            .expect("poster task");
    }
    let acked = acked.lock().expect("lock").clone();
    let max_acked = acked.iter().map(|(_, a)| a.offset).max().expect("acks");

    let server = Proc::serve(dir.path(), free_port(), &[]).await;
    let (mut reader, _) = Client::connect(&server.url(), &student("reader", "3B"))
        .await
        .expect("connect after restart");
    let (history_epoch, head, events) = full_history(&mut reader, ROOM).await;
    assert_eq!(history_epoch, epoch, "the room's epoch survives SIGKILL");
    assert!(
        head >= max_acked,
        "head {head} covers every acked offset (max {max_acked})"
    );
    assert_contiguous(&events, head, &epoch);

    // Every acked message is there, at its acked offset.
    for (text, ack) in &acked {
        let event = &events[(ack.offset - 1) as usize];
        assert_eq!(
            text_of(event),
            text,
            "offset {} holds its acked text",
            ack.offset
        );
        assert_eq!(event.ts, ack.ts);
    }
    // Unacked messages may be there, but never twice, and each poster's
    // messages are a prefix of what it sent, in send order.
    let mut seen = HashSet::new();
    let mut next_index: HashMap<String, u64> = HashMap::new();
    for event in &events {
        let text = text_of(event);
        assert!(seen.insert(text.to_owned()), "{text} stored twice");
        let (poster, index) = text.split_once("-m").expect("a text we sent");
        let index: u64 = index.parse().expect("index");
        let expected = next_index.entry(poster.to_owned()).or_insert(0);
        assert_eq!(
            index, *expected,
            "{poster}'s messages are stored in send order without holes"
        );
        *expected += 1;
    }

    let joined = reader.join(ROOM, None).await.expect("join after restart");
    assert_eq!((joined.epoch.as_str(), joined.head), (epoch.as_str(), head));
    let next = reader.post(ROOM, "after restart").await.expect("post");
    assert_eq!(next.offset, head + 1, "offsets are never reused");
    server.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_with_1001_exits_0_and_keeps_everything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Proc::serve(dir.path(), free_port(), &[]).await;
    let url = server.url();
    // Staff opens the room: pupils join only rooms that exist.
    open_rooms(&url, &[ROOM]).await;

    let mut clients = Vec::new();
    let mut acked: Vec<(String, PostOk)> = Vec::new();
    let mut epoch = String::new();
    for c in 0..3usize {
        let (mut client, joined_epoch) = connect_joined(&url, &format!("poster{c}")).await;
        let texts = (0..50).map(|i| format!("c{c}-m{i}"));
        post_pipelined(&mut client, ROOM, texts, 4, |text, ack| {
            acked.push((text, ack))
        })
        .await
        .expect("every post is acked");
        epoch = joined_epoch;
        clients.push(client);
    }
    // An idle member too, that only listens.
    let (idle, _) = connect_joined(&url, "idle").await;
    clients.push(idle);

    let status = server.terminate().await;
    assert!(
        status.success(),
        "SIGTERM exits with status 0, got {status}"
    );
    for (i, client) in clients.iter_mut().enumerate() {
        loop {
            match tokio::time::timeout(WAIT, client.next()).await {
                Err(_) => panic!("client {i}: connection still open after shutdown"),
                Ok(Some(_)) => continue,
                Ok(None) => break,
            }
        }
        let close = client.close_frame();
        assert_eq!(
            close.as_ref().map(|(code, _)| *code),
            Some(1001),
            "client {i} gets close 1001 (going away), got {close:?}"
        );
    }
    drop(clients);

    assert_eq!(acked.len(), 150);
    let server = Proc::serve(dir.path(), free_port(), &[]).await;
    let (mut reader, _) = Client::connect(&server.url(), &student("reader", "3B"))
        .await
        .expect("connect after restart");
    let (history_epoch, head, events) = full_history(&mut reader, ROOM).await;
    assert_eq!(history_epoch, epoch);
    assert_eq!(head, 150);
    assert_contiguous(&events, head, &epoch);
    for (text, ack) in &acked {
        assert_eq!(text_of(&events[(ack.offset - 1) as usize]), text);
    }
    let status = server.terminate().await;
    assert!(
        status.success(),
        "second SIGTERM exits with status 0, got {status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_server_on_same_data_folder_refuses_to_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = Proc::serve(dir.path(), free_port(), &[]).await;
    open_rooms(&first.url(), &[ROOM]).await;
    let (mut client, _) = connect_joined(&first.url(), "ana").await;
    assert_eq!(client.post(ROOM, "before").await.expect("post").offset, 1);

    let port = free_port();
    let second = tokio::process::Command::new(bin())
        .arg("serve")
        .arg("--data")
        .arg(dir.path())
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("PREAU_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn second preau");
    let output = match tokio::time::timeout(WAIT, second.wait_with_output()).await {
        Ok(output) => output.expect("wait"),
        Err(_) => {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let health = if tokio::net::TcpStream::connect(addr).await.is_ok() {
                http_get(addr, "/healthz").await.0
            } else {
                0
            };
            panic!(
                "BUG: a second server on the same data folder kept running \
                 (healthz status {health}) instead of failing"
            );
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "second server must fail, got {} with stderr: {stderr}",
        output.status
    );
    let data = dir.path().to_string_lossy();
    assert!(
        stderr.contains("lock") || stderr.contains(data.as_ref()),
        "the error names the lock or the data folder: {stderr}"
    );

    // The first server is unharmed.
    assert_eq!(client.post(ROOM, "after").await.expect("post").offset, 2);
    let status = first.terminate().await;
    assert!(status.success());
}
