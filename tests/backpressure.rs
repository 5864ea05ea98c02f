//! Back-pressure: a reader that stops reading is closed (4004) without
//! slowing anyone else down, then recovers by offset; a post flood is
//! throttled per user.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use preau::client::Client;
use preau::protocol::{
    self, ErrorCode, ErrorReply, Event, Position, PostOk, PresenceAction, Request, ServerFrame,
};
use support::*;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

const ROOM: &str = "3B/chat/revision";
/// Ids of pipelined posts; far above the ids `Client` gives its own requests.
const FIRST_RAW_ID: u32 = 1_000_000;

fn text_of(event: &Event) -> &str {
    match &event.body {
        protocol::Body::Message { text, .. } => text,
        other => panic!("not a message: {other:?}"),
    }
}

/// A ~1 KB message text, unique per index.
fn message(index: u64) -> String {
    format!("m{index:06}-{}", "x".repeat(1000))
}

/// Keeps the normal readers' lag bounded so that only the stalled socket
/// can go over its outbound budget: a poster sends only while every reader
/// has consumed up to `acked - window`.
struct Gate {
    progress: Vec<AtomicU64>,
    acked: AtomicU64,
    window: u64,
    notify: Notify,
}

impl Gate {
    fn new(readers: usize, window: u64) -> Gate {
        Gate {
            progress: (0..readers).map(|_| AtomicU64::new(0)).collect(),
            acked: AtomicU64::new(0),
            window,
            notify: Notify::new(),
        }
    }

    fn reader_at(&self, reader: usize, offset: u64) {
        self.progress[reader].store(offset, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn acked(&self, offset: u64) {
        self.acked.fetch_max(offset, Ordering::SeqCst);
    }

    fn slowest(&self) -> u64 {
        self.progress
            .iter()
            .map(|p| p.load(Ordering::SeqCst))
            .min()
            .unwrap_or(u64::MAX)
    }

    async fn wait_for_readers(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.slowest() + self.window >= self.acked.load(Ordering::SeqCst) {
                return;
            }
            tokio::time::timeout(WAIT, notified)
                .await
                .expect("normal readers make progress within WAIT");
        }
    }
}

/// Posts `texts` keeping up to `window` requests in flight (waiting on
/// `gate` before each send, if any). Returns every reply in request order:
/// the ack or the error. Acks come in request order; an error reply may
/// overtake acks still waiting for the disk. Panics if the connection
/// closes or stalls.
async fn post_pipelined(
    client: &mut Client,
    room: &str,
    texts: Vec<String>,
    window: usize,
    gate: Option<&Gate>,
) -> Vec<(String, Result<PostOk, ErrorReply>)> {
    let mut texts = texts.into_iter();
    let mut inflight: BTreeMap<u32, String> = BTreeMap::new();
    let mut replies = BTreeMap::new();
    let mut next_id = FIRST_RAW_ID;
    let mut last_acked_id = 0;
    loop {
        while inflight.len() < window {
            let Some(text) = texts.next() else { break };
            if let Some(gate) = gate {
                gate.wait_for_readers().await;
            }
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
            client.send_raw(frame).expect("poster connection open");
            inflight.insert(next_id, text);
            next_id += 1;
        }
        if inflight.is_empty() {
            return replies.into_values().collect();
        }
        let frame = tokio::time::timeout(WAIT, client.next())
            .await
            .expect("a reply within WAIT")
            .unwrap_or_else(|| panic!("poster closed: {:?}", client.close_frame()));
        let (id, reply) = match frame {
            ServerFrame::Ok { id: Some(id), data } => {
                assert!(id > last_acked_id, "acks come in request order");
                last_acked_id = id;
                let ack: PostOk = rmpv::ext::from_value(data).expect("post ack decodes");
                if let Some(gate) = gate {
                    gate.acked(ack.offset);
                }
                (id, Ok(ack))
            }
            ServerFrame::Error(reply) => {
                let id = reply.id.expect("post errors carry the request id");
                (id, Err(reply))
            }
            _ => continue,
        };
        let text = inflight
            .remove(&id)
            .expect("a reply to a request in flight");
        replies.insert(id, (text, reply));
    }
}

/// Sends a join request by hand on a raw socket (id 2) and reads nothing.
async fn raw_join(ws: &mut RawWs, room: &str) {
    let join = protocol::encode_request(&Request::Join {
        id: Some(2),
        room: room.to_owned(),
        since: None,
    })
    .expect("encode join");
    ws.send(Message::Binary(join)).await.expect("send join");
}

/// What a stalled socket finally reads once the server gave up on it.
struct Drained {
    epoch: Option<String>,
    offsets: Vec<u64>,
    close_code: Option<u16>,
}

/// Reads everything the stalled socket still holds; the connection must
/// end (close frame, EOF or reset) within WAIT.
async fn drain_stalled(ws: &mut RawWs) -> Drained {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut drained = Drained {
        epoch: None,
        offsets: Vec::new(),
        close_code: None,
    };
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the stalled connection ends within WAIT once read");
        match message {
            None | Some(Err(_)) => return drained,
            Some(Ok(Message::Close(frame))) => {
                drained.close_code = frame.map(|f| u16::from(f.code));
                return drained;
            }
            Some(Ok(Message::Binary(bytes))) => {
                match protocol::decode_server_frame(&bytes).expect("decodes") {
                    ServerFrame::Ok { id: Some(2), data } => {
                        let epoch = data
                            .as_map()
                            .and_then(|m| {
                                m.iter()
                                    .find(|(k, _)| k.as_str() == Some("epoch"))
                                    .and_then(|(_, v)| v.as_str())
                            })
                            .expect("join reply has an epoch");
                        drained.epoch = Some(epoch.to_owned());
                    }
                    ServerFrame::Event(event) => drained.offsets.push(event.offset),
                    _ => {}
                }
            }
            Some(Ok(_)) => {}
        }
    }
}

async fn wait_metric(addr: std::net::SocketAddr, name: &str, at_least: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let value = metric(addr, name).await;
        if value >= at_least {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} stayed at {value}, expected at least {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads events until it has seen `target` (set once posting is done);
/// fails if the connection closes or nothing arrives for WAIT.
async fn read_all(
    mut client: Client,
    reader: usize,
    gate: Arc<Gate>,
    target: Arc<AtomicU64>,
) -> (Client, Vec<Event>) {
    let mut events: Vec<Event> = Vec::new();
    let mut last_progress = tokio::time::Instant::now();
    loop {
        let last = events.last().map_or(0, |e| e.offset);
        if last >= target.load(Ordering::SeqCst) {
            return (client, events);
        }
        match tokio::time::timeout(Duration::from_millis(200), client.next()).await {
            Err(_) => assert!(
                last_progress.elapsed() < WAIT,
                "reader {reader} got nothing for WAIT after offset {last}"
            ),
            Ok(None) => panic!(
                "reader {reader} was disconnected after offset {last}: {:?}",
                client.close_frame()
            ),
            Ok(Some(ServerFrame::Event(event))) => {
                gate.reader_at(reader, event.offset);
                last_progress = tokio::time::Instant::now();
                events.push(event);
            }
            Ok(Some(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_reader_is_closed_others_get_everything_then_it_recovers() {
    const READERS: usize = 29;
    const POSTERS: usize = 3;
    const MIN_MESSAGES: u64 = 3000;
    const ROUND: u64 = 300;
    let server = TestServer::start_with(|c| {
        c.max_frame_bytes = 16384;
        c.outbound_budget_bytes = 32768;
        c.recovery_max = 10_000;
    })
    .await;
    // Staff opens the room: pupils join only rooms that exist.
    server.open(&[ROOM]).await;
    let url = server.url();

    // The first reader joins, then the stalled socket; the reader sees its
    // presence, so the stalled socket is a member before anything is posted.
    let (mut first, _) = server.connect(&student("reader0", "3B")).await;
    let joined = first.join(ROOM, None).await.expect("join");
    let epoch = joined.epoch.clone();
    let mut stalled = raw_ws(server.addr()).await;
    raw_hello(&mut stalled, &student("stalled", "3B")).await;
    raw_join(&mut stalled, ROOM).await;
    loop {
        if let ServerFrame::Presence(p) = next(&mut first).await {
            if p.user.id == "stalled" && p.action == PresenceAction::Join {
                break;
            }
        }
    }

    let gate = Arc::new(Gate::new(READERS, 8));
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let mut readers = Vec::new();
    for r in 0..READERS {
        let client = if r == 0 {
            std::mem::replace(
                &mut first,
                Client::connect_unauthenticated(&url).await.expect("spare"),
            )
        } else {
            let (mut client, _) = server.connect(&student(&format!("reader{r}"), "3B")).await;
            client.join(ROOM, None).await.expect("join");
            client
        };
        readers.push(tokio::spawn(read_all(
            client,
            r,
            gate.clone(),
            target.clone(),
        )));
    }
    drop(first);
    let mut posters = Vec::new();
    for p in 0..POSTERS {
        let (mut client, _) = server.connect(&teacher(&format!("poster{p}"), "3B")).await;
        client.join(ROOM, None).await.expect("join");
        posters.push(client);
    }

    // Post in rounds until at least MIN_MESSAGES went out and the stalled
    // socket was found slow (kernel buffers absorb a variable amount first).
    let mut acked: HashMap<u64, String> = HashMap::new();
    let mut posted = 0u64;
    loop {
        let rounds = posters.iter_mut().enumerate().map(|(p, client)| {
            let texts = (0..ROUND / POSTERS as u64)
                .map(|i| message(posted + p as u64 * ROUND + i))
                .collect();
            post_pipelined(client, ROOM, texts, 4, Some(&gate))
        });
        for replies in futures_util::future::join_all(rounds).await {
            for (text, reply) in replies {
                let ack = reply.unwrap_or_else(|e| panic!("a poster got an error: {e:?}"));
                assert_eq!(ack.epoch, epoch);
                assert!(
                    acked.insert(ack.offset, text).is_none(),
                    "offset acked twice"
                );
            }
        }
        posted += ROUND;
        if posted >= MIN_MESSAGES && server.metric("preau_slow_consumers_total").await >= 1.0 {
            break;
        }
        assert!(
            posted < 30 * MIN_MESSAGES,
            "the stalled socket was never closed as a slow consumer"
        );
    }
    let total = acked.len() as u64;
    assert_eq!(total, posted);
    target.store(total, Ordering::SeqCst);

    // Every normal reader got every event, in offset order.
    for (r, reader) in readers.into_iter().enumerate() {
        let (_client, events) = tokio::time::timeout(WAIT * 3, reader)
            .await
            .expect("reader finishes")
            .expect("reader task");
        let offsets: Vec<u64> = events.iter().map(|e| e.offset).collect();
        assert_eq!(
            offsets,
            (1..=total).collect::<Vec<_>>(),
            "reader {r} got every event exactly once, in order"
        );
        if r == 0 {
            for event in &events {
                assert_eq!(
                    text_of(event),
                    acked[&event.offset],
                    "event text matches its ack"
                );
                assert_eq!(event.epoch, epoch);
            }
        }
    }
    assert_eq!(
        server.metric("preau_slow_consumers_total").await,
        1.0,
        "only the stalled socket was a slow consumer"
    );
    assert!(server.metric("preau_queue_drops_total").await >= 1.0);

    // The stalled socket: frames, then the end (4004 or EOF/reset).
    let drained = drain_stalled(&mut stalled).await;
    assert!(
        drained.close_code.is_none() || drained.close_code == Some(4004),
        "the stalled socket is closed with 4004 (or dropped), got {:?}",
        drained.close_code
    );
    let read_epoch = drained.epoch.clone().unwrap_or_else(|| epoch.clone());
    assert_eq!(read_epoch, epoch);
    let last_read = drained.offsets.last().copied().unwrap_or(0);
    assert_eq!(
        drained.offsets,
        (1..=last_read).collect::<Vec<_>>(),
        "what the stalled socket got is a contiguous prefix"
    );
    assert!(
        last_read < total,
        "the stalled socket did not get everything"
    );

    // It comes back and recovers the rest by offset.
    let (mut back, _) = server.connect(&student("stalled", "3B")).await;
    let joined = back
        .join(
            ROOM,
            Some(Position {
                epoch: read_epoch,
                offset: last_read,
            }),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "recovering join of {} events (after {last_read}) failed: {e}",
                total - last_read
            )
        });
    let recovery = joined.recovery.expect("recovery outcome");
    assert!(recovery.recovered, "recovered: {recovery:?}");
    let offsets: Vec<u64> = joined.events.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, (last_read + 1..=total).collect::<Vec<_>>());
    for event in &joined.events {
        assert_eq!(text_of(event), acked[&event.offset]);
    }
    // And it is live again.
    let ack = posters[0].post(ROOM, "welcome back").await.expect("post");
    assert_eq!(ack.offset, total + 1);
    assert_eq!(next_event(&mut back).await.offset, total + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_and_frames_are_dropped() {
    let server = TestServer::start_with(|c| {
        c.max_frame_bytes = 16384;
        c.outbound_budget_bytes = 32768;
    })
    .await;
    let (mut poster, _) = server.connect(&teacher("prof", "3B")).await;
    poster.join(ROOM, None).await.expect("join");
    let mut stalled = raw_ws(server.addr()).await;
    raw_hello(&mut stalled, &student("stalled", "3B")).await;
    raw_join(&mut stalled, ROOM).await;
    loop {
        if let ServerFrame::Presence(p) = next(&mut poster).await {
            if p.user.id == "stalled" && p.action == PresenceAction::Join {
                break;
            }
        }
    }
    assert_eq!(server.metric("preau_queue_drops_total").await, 0.0);
    assert_eq!(server.metric("preau_slow_consumers_total").await, 0.0);

    let mut posted = 0u64;
    while server.metric("preau_slow_consumers_total").await < 1.0 {
        let texts = (posted..posted + 200).map(message).collect();
        for (_, reply) in post_pipelined(&mut poster, ROOM, texts, 8, None).await {
            reply.unwrap_or_else(|e| panic!("the poster got an error: {e:?}"));
        }
        posted += 200;
        assert!(
            posted <= 100_000,
            "100 MB posted and the stalled client is still not closed"
        );
    }
    assert_eq!(server.metric("preau_slow_consumers_total").await, 1.0);
    let drops = wait_metric(server.addr(), "preau_queue_drops_total", 1.0).await;
    assert!(drops >= 1.0);

    let drained = drain_stalled(&mut stalled).await;
    assert!(
        drained.close_code.is_none() || drained.close_code == Some(4004),
        "closed with 4004 (or dropped), got {:?}",
        drained.close_code
    );
    assert!((drained.offsets.len() as u64) < posted);

    // Once it is gone, posting no longer drops anything.
    let before = server.metric("preau_queue_drops_total").await;
    let texts = (posted..posted + 50).map(message).collect();
    for (_, reply) in post_pipelined(&mut poster, ROOM, texts, 8, None).await {
        reply.expect("acked");
    }
    assert_eq!(server.metric("preau_queue_drops_total").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_flood_is_rate_limited_per_user() {
    let server = TestServer::start_with(|c| {
        c.rate_per_sec = 5.0;
        c.rate_burst = 5;
    })
    .await;
    server.open(&[ROOM]).await;
    let (mut flooder, _) = server.connect(&student("flooder", "3B")).await;
    flooder.join(ROOM, None).await.expect("join");
    let (mut other, _) = server.connect(&student("other", "3B")).await;
    other.join(ROOM, None).await.expect("join");

    let started = tokio::time::Instant::now();
    let texts = (0..60).map(|i| format!("flood {i}")).collect();
    let replies = post_pipelined(&mut flooder, ROOM, texts, 60, None).await;
    let elapsed = started.elapsed().as_secs_f64();
    let acks = replies.iter().filter(|(_, r)| r.is_ok()).count();
    for (text, reply) in &replies {
        if let Err(reply) = reply {
            assert_eq!(reply.code, ErrorCode::RateLimited, "{text}: {reply:?}");
            assert!(
                reply.retry_after_ms.is_some_and(|ms| ms >= 1),
                "rate_limited says when to retry: {reply:?}"
            );
        }
    }
    // The burst goes through; beyond it, only what refilled meanwhile.
    let allowed = 5 + (5.0 * elapsed).ceil() as usize;
    assert!(acks >= 5, "the burst of 5 is accepted, got {acks}");
    assert!(
        acks <= allowed,
        "at most {allowed} accepted in {elapsed:.2}s, got {acks}"
    );
    assert!(acks < 60, "most of the flood is refused");
    let refused = 60 - acks;
    assert!(
        server.metric("preau_errors_total").await >= refused as f64,
        "refusals are counted"
    );

    // Another user is not affected by the flooder's bucket.
    for i in 0..3 {
        let ack = other
            .post(ROOM, &format!("still here {i}"))
            .await
            .expect("the other user's posts are accepted");
        assert_eq!(ack.offset, acks as u64 + 1 + i);
    }
}
