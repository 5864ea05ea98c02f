mod support;

use std::future::Future;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use preau::client::Client;
use preau::config::Config;
use preau::protocol::ServerFrame;
use preau::protocol::{
    Body, Event, HistoryOk, JoinOk, Position, PostOk, Recovery, RecoveryFailure,
};
use support::*;
use tokio_tungstenite::tungstenite::Message;

const ROOM: &str = "3B/chat/revision-bac";

/// Awaits `f` for at most [`WAIT`].
async fn timed<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {WAIT:?}"))
}

fn text(event: &Event) -> &str {
    match &event.body {
        Body::Message { text, .. } => text,
        other => panic!("not a message: {other:?}"),
    }
}

fn at(epoch: &str, offset: u64) -> Option<Position> {
    Some(Position {
        epoch: epoch.to_owned(),
        offset,
    })
}

fn recovered() -> Option<Recovery> {
    Some(Recovery {
        recovered: true,
        reason: None,
    })
}

fn failed(reason: RecoveryFailure) -> Option<Recovery> {
    Some(Recovery {
        recovered: false,
        reason: Some(reason),
    })
}

fn offsets(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.offset).collect()
}

async fn join(client: &mut Client, since: Option<Position>) -> JoinOk {
    timed("join", client.join(ROOM, since.clone()))
        .await
        .unwrap_or_else(|e| panic!("join since {since:?} refused: {e}"))
}

async fn post(client: &mut Client, text: &str) -> PostOk {
    timed("post", client.post(ROOM, text))
        .await
        .unwrap_or_else(|e| panic!("post {text:?} refused: {e}"))
}

async fn history(client: &mut Client, after: Option<u64>, limit: Option<u32>) -> HistoryOk {
    timed("history", client.history(ROOM, None, after, limit))
        .await
        .unwrap_or_else(|e| panic!("history after={after:?} refused: {e}"))
}

/// Posts `m{offset}` messages until the room's head is `through`.
async fn post_through(client: &mut Client, from: u64, through: u64) {
    for offset in from..=through {
        let ack = post(client, &format!("m{offset}")).await;
        assert_eq!(ack.offset, offset);
    }
}

/// Polls history until `first` is above `offset` (retention removed it).
async fn wait_expired(client: &mut Client, offset: u64) -> HistoryOk {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let page = history(client, None, None).await;
        if page.first > offset {
            return page;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention did not remove offset {offset} within {WAIT:?}: first = {}",
            page.first
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops the server gracefully and starts a new one on the same data folder.
async fn restart(server: TestServer, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let TestServer { server, dir } = server;
    server.shutdown();
    timed("server stop", server.wait())
        .await
        .expect("clean stop");
    let mut config = config(dir.path());
    tweak(&mut config);
    let server = preau::start(config)
        .await
        .expect("restarts on the same data");
    TestServer { server, dir }
}

/// What one reader saw, checked as it grows: every offset once, in order.
struct Seen {
    offsets: Vec<u64>,
    /// Told the last offset seen, for the poster's pacing.
    report: tokio::sync::watch::Sender<u64>,
}

impl Seen {
    fn last(&self) -> u64 {
        self.offsets.last().copied().unwrap_or(0)
    }

    fn push(&mut self, event: &Event, epoch: &str, seam: &str) {
        assert_eq!(
            event.offset,
            self.last() + 1,
            "gap or duplicate {seam}: after {} came {}",
            self.last(),
            event.offset
        );
        assert_eq!(event.epoch, epoch);
        assert_eq!(text(event), format!("m{}", event.offset));
        self.offsets.push(event.offset);
        let _ = self.report.send(event.offset);
    }
}

/// A reader disconnects and comes back with `since` several times while
/// another user posts without pause: across every seam (live → gone →
/// replayed → live) it sees offsets 1..=N, each once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_seams_have_no_gap_and_no_duplicate() {
    const N: u64 = 300;
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let ana_token = student("ana", "3B");
    let (mut ana, _) = server.connect(&ana_token).await;
    let joined = join(&mut ana, None).await;
    assert_eq!(joined.head, 0);
    assert_eq!(joined.recovery, None, "no since, no recovery");
    let epoch = joined.epoch.clone();

    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    join(&mut bob, None).await;
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u64);
    let (report, mut reader) = tokio::sync::watch::channel(0u64);
    // The poster never gets more than LEAD events ahead of the reader, so
    // the burst lasts through every rejoin however fast posting is.
    const LEAD: u64 = 20;
    let poster = tokio::spawn(async move {
        for offset in 1..=N {
            timed(
                "reader progress",
                reader.wait_for(|&read| offset <= read + LEAD),
            )
            .await
            .expect("reader alive");
            let ack = timed("post", bob.post(ROOM, &format!("m{offset}")))
                .await
                .unwrap_or_else(|e| panic!("post {offset} refused: {e}"));
            assert_eq!(ack.offset, offset);
            let _ = progress_tx.send(offset);
        }
        bob
    });

    let mut seen = Seen {
        offsets: Vec::new(),
        report,
    };
    let mut rejoins = 0;
    let mut replayed_total = 0;
    for round in 0..30u64 {
        // Read a few live events, then go away.
        for _ in 0..(3 + round % 4) {
            if seen.last() == N {
                break;
            }
            let event = next_event(&mut ana).await;
            seen.push(&event, &epoch, &format!("live, round {round}"));
        }
        if seen.last() == N {
            break;
        }
        let position = seen.last();
        ana.close();
        drop(ana);
        // Every other round, let the poster get ahead so the rejoin replays
        // something; otherwise rejoin at once, racing the live posts.
        if round % 2 == 0 {
            let target = (position + 5).min(N);
            timed(
                "poster progress",
                progress.wait_for(|&posted| posted >= target),
            )
            .await
            .expect("poster alive");
        }
        let (client, _) = server.connect(&ana_token).await;
        ana = client;
        let joined = join(&mut ana, at(&epoch, position)).await;
        rejoins += 1;
        assert_eq!(joined.recovery, recovered(), "round {round}");
        assert_eq!(joined.epoch, epoch);
        assert!(joined.head >= position);
        assert_eq!(
            offsets(&joined.events),
            (position + 1..=joined.head).collect::<Vec<u64>>(),
            "round {round}: the replay is everything after the position through head"
        );
        for event in &joined.events {
            seen.push(event, &epoch, &format!("in the replay, round {round}"));
        }
        replayed_total += joined.events.len();
    }
    while seen.last() < N {
        let event = next_event(&mut ana).await;
        seen.push(&event, &epoch, "live, after the last rejoin");
    }
    let mut bob = timed("poster", poster).await.expect("poster finished");
    assert_eq!(seen.offsets, (1..=N).collect::<Vec<u64>>());
    eprintln!("rejoins {rejoins}, replayed {replayed_total}");
    assert!(rejoins >= 10, "only {rejoins} rejoins happened");
    assert!(replayed_total > 0, "no rejoin replayed anything");
    // Nothing extra is queued behind N: the next event is the next post.
    let ack = post(&mut bob, "after").await;
    let event = next_event(&mut ana).await;
    assert_eq!((event.offset, text(&event)), (ack.offset, "after"));
    assert_eq!(ack.offset, N + 1);
}

/// On the wire, a recovering join's reply (with its replay through `head`)
/// comes before any live event, and the live events start at `head + 1`:
/// checked on a raw socket, where the order of frames is visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovering_join_reply_precedes_live_events_on_the_wire() {
    const N: u64 = 200;
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    let epoch = join(&mut bob, None).await.epoch;
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0u64);
    let poster = tokio::spawn(async move {
        for offset in 1..=N {
            let ack = timed("post", bob.post(ROOM, &format!("m{offset}")))
                .await
                .unwrap_or_else(|e| panic!("post {offset} refused: {e}"));
            assert_eq!(ack.offset, offset);
            let _ = progress_tx.send(offset);
        }
    });
    let token = student("ana", "3B");
    for round in 0..12u64 {
        let posted = *timed(
            "poster progress",
            progress.wait_for(|&posted| posted >= (round * 15 + 5).min(N)),
        )
        .await
        .expect("poster alive");
        let position = posted.saturating_sub(3);
        let mut ws = raw_ws(server.addr()).await;
        raw_hello(&mut ws, &token).await;
        let join = preau::protocol::encode_request(&preau::protocol::Request::Join {
            id: Some(2),
            room: ROOM.to_owned(),
            since: at(&epoch, position),
        })
        .unwrap();
        ws.send(Message::Binary(join)).await.unwrap();
        let mut expected: Option<u64> = None;
        let mut live = 0;
        loop {
            if expected.is_some_and(|next| next > N || live == 3) {
                break;
            }
            let message = timed("frame", ws.next())
                .await
                .expect("socket open")
                .expect("frame");
            let Message::Binary(bytes) = message else {
                continue;
            };
            match preau::protocol::decode_server_frame(&bytes).expect("decodes") {
                ServerFrame::Ok { id: Some(2), .. } => {
                    let joined: JoinOk = preau::protocol::decode_ok_data(&bytes).unwrap();
                    assert_eq!(joined.recovery, recovered(), "round {round}");
                    assert_eq!(
                        offsets(&joined.events),
                        (position + 1..=joined.head).collect::<Vec<u64>>(),
                        "round {round}: replay"
                    );
                    expected = Some(joined.head + 1);
                }
                ServerFrame::Event(event) => {
                    let Some(next) = expected else {
                        panic!(
                            "round {round}: live event {} before the join reply",
                            event.offset
                        );
                    };
                    assert_eq!(event.offset, next, "round {round}: first live events");
                    expected = Some(next + 1);
                    live += 1;
                }
                other => panic!("round {round}: unexpected {other:?}"),
            }
        }
        let _ = ws.close(None).await;
    }
    timed("poster", poster).await.expect("poster finished");
}

/// Rejoining at the head recovers nothing, successfully; live events follow.
#[tokio::test]
async fn recovery_with_nothing_missed_is_empty_and_successful() {
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    let epoch = join(&mut ana, None).await.epoch;
    join(&mut bob, None).await;
    post_through(&mut bob, 1, 3).await;
    for offset in 1..=3 {
        assert_eq!(next_event(&mut ana).await.offset, offset);
    }
    timed("leave", ana.leave(ROOM)).await.unwrap();
    let joined = join(&mut ana, at(&epoch, 3)).await;
    assert_eq!(joined.recovery, recovered());
    assert!(joined.events.is_empty(), "{:?}", offsets(&joined.events));
    assert_eq!((joined.head, joined.first), (3, 1));
    post_through(&mut bob, 4, 4).await;
    assert_eq!(next_event(&mut ana).await.offset, 4);
}

/// A position under another epoch cannot be recovered, but the join works.
#[tokio::test]
async fn recovery_under_another_epoch_fails_with_epoch_mismatch() {
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    let epoch = join(&mut bob, None).await.epoch;
    post_through(&mut bob, 1, 3).await;
    let wrong = if epoch == "0000000000000000" {
        "1111111111111111"
    } else {
        "0000000000000000"
    };
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let joined = join(&mut ana, at(wrong, 2)).await;
    assert_eq!(joined.recovery, failed(RecoveryFailure::EpochMismatch));
    assert!(joined.events.is_empty());
    assert_eq!(joined.epoch, epoch, "the reply names the real epoch");
    assert_eq!((joined.head, joined.first), (3, 1));
    assert_eq!(
        joined
            .members
            .iter()
            .map(|m| m.id.as_str())
            .collect::<Vec<_>>(),
        vec!["ana", "bob"]
    );
    post_through(&mut bob, 4, 4).await;
    let event = next_event(&mut ana).await;
    assert_eq!((event.offset, text(&event)), (4, "m4"));
}

/// A position past the head cannot be recovered, but the join works.
#[tokio::test]
async fn recovery_past_the_head_fails_with_offset_ahead() {
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    let epoch = join(&mut bob, None).await.epoch;
    post_through(&mut bob, 1, 3).await;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let joined = join(&mut ana, at(&epoch, 4)).await;
    assert_eq!(joined.recovery, failed(RecoveryFailure::OffsetAhead));
    assert!(joined.events.is_empty());
    assert_eq!(joined.head, 3);
    post_through(&mut bob, 4, 4).await;
    assert_eq!(next_event(&mut ana).await.offset, 4);
}

/// More missed than `recovery_max`: no replay, but history from the
/// position returns everything; exactly `recovery_max` missed still recovers.
#[tokio::test]
async fn recovery_beyond_recovery_max_fails_and_history_fills_the_gap() {
    let server = TestServer::start_with(|c: &mut Config| c.recovery_max = 5).await;
    server.open(&[ROOM]).await;
    let ana_token = student("ana", "3B");
    let (mut ana, _) = server.connect(&ana_token).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    let epoch = join(&mut ana, None).await.epoch;
    join(&mut bob, None).await;
    post_through(&mut bob, 1, 2).await;
    for offset in 1..=2 {
        assert_eq!(next_event(&mut ana).await.offset, offset);
    }
    ana.close();
    drop(ana);
    post_through(&mut bob, 3, 12).await;

    let (mut ana, _) = server.connect(&ana_token).await;
    let joined = join(&mut ana, at(&epoch, 2)).await;
    assert_eq!(joined.recovery, failed(RecoveryFailure::TooFarBehind));
    assert!(joined.events.is_empty());
    assert_eq!((joined.head, joined.first), (12, 1));
    // Page forward from the position, 4 at a time.
    let mut got = Vec::new();
    let mut after = 2;
    loop {
        let page = history(&mut ana, Some(after), Some(4)).await;
        for event in &page.events {
            assert_eq!(text(event), format!("m{}", event.offset));
            got.push(event.offset);
        }
        after = got.last().copied().unwrap_or(after);
        if !page.more {
            break;
        }
        assert!(got.len() < 100, "history never ends");
    }
    assert_eq!(got, (3..=12).collect::<Vec<u64>>());
    post_through(&mut bob, 13, 13).await;
    assert_eq!(next_event(&mut ana).await.offset, 13);

    // Boundary: 5 missed (= recovery_max) recovers, 6 does not.
    let (mut cleo, _) = server.connect(&student("cleo", "3B")).await;
    let joined = join(&mut cleo, at(&epoch, 8)).await;
    assert_eq!(joined.recovery, recovered(), "5 missed with recovery_max 5");
    assert_eq!(offsets(&joined.events), (9..=13).collect::<Vec<u64>>());
    let (mut dan, _) = server.connect(&student("dan", "3B")).await;
    let joined = join(&mut dan, at(&epoch, 7)).await;
    assert_eq!(joined.recovery, failed(RecoveryFailure::TooFarBehind));
    assert!(joined.events.is_empty());
}

/// Events removed by retention cannot be recovered; offsets are never
/// reused, even once everything expired and the server restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_of_expired_events_fails_and_offsets_are_not_reused() {
    let tweak = |c: &mut Config| {
        c.retention = Duration::from_millis(1);
        c.retention_check = Duration::from_millis(100);
    };
    let server = TestServer::start_with(tweak).await;
    server.open(&[ROOM]).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    let epoch = join(&mut bob, None).await.epoch;
    post_through(&mut bob, 1, 5).await;
    let page = wait_expired(&mut bob, 5).await;
    assert_eq!((page.head, page.first), (5, 6));
    assert!(page.events.is_empty());
    assert_eq!(page.epoch, epoch);

    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let joined = join(&mut ana, at(&epoch, 2)).await;
    assert_eq!(joined.recovery, failed(RecoveryFailure::OutOfRetention));
    assert!(joined.events.is_empty());
    assert_eq!((joined.head, joined.first), (5, 6));
    // A position at the floor lost nothing: that still recovers.
    let (mut cleo, _) = server.connect(&student("cleo", "3B")).await;
    let joined = join(&mut cleo, at(&epoch, 5)).await;
    assert_eq!(
        joined.recovery,
        recovered(),
        "nothing after offset 5 expired"
    );
    assert!(joined.events.is_empty());
    let ack = post(&mut bob, "m6").await;
    assert_eq!(
        ack.offset, 6,
        "offsets are not reused after everything expired"
    );
    assert_eq!(next_event(&mut ana).await.offset, 6);
    assert_eq!(next_event(&mut cleo).await.offset, 6);
    wait_expired(&mut bob, 6).await;

    // Restart with every event expired: the room remembers where it was.
    drop((ana, bob, cleo));
    let server = restart(server, tweak).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    let page = history(&mut bob, None, None).await;
    assert_eq!(page.epoch, epoch);
    assert_eq!((page.head, page.first), (6, 7));
    assert!(page.events.is_empty());
    let joined = join(&mut bob, at(&epoch, 2)).await;
    assert_eq!(joined.recovery, failed(RecoveryFailure::OutOfRetention));
    assert_eq!((joined.head, joined.first), (6, 7));
    let ack = post(&mut bob, "m7").await;
    assert_eq!(
        (ack.offset, ack.epoch.as_str()),
        (7, epoch.as_str()),
        "offsets are not reused after a restart"
    );
}

/// What `preau listen --epoch E --from K` does, through the Client API:
/// the replay and the live events carry exactly the posters' ack offsets.
#[tokio::test]
async fn resume_from_an_ack_yields_events_with_the_ack_offsets() {
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    join(&mut bob, None).await;
    let mut acks = Vec::new();
    for i in 1..=5 {
        acks.push((post(&mut bob, &format!("m{i}")).await, format!("m{i}")));
    }
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let from = &acks[1].0;
    let joined = join(&mut ana, at(&from.epoch, from.offset)).await;
    assert_eq!(joined.recovery, recovered());
    let replay: Vec<(u64, u64, &str, &str)> = joined
        .events
        .iter()
        .map(|e| (e.offset, e.ts, e.epoch.as_str(), text(e)))
        .collect();
    let expected: Vec<(u64, u64, &str, &str)> = acks[2..]
        .iter()
        .map(|(a, t)| (a.offset, a.ts, a.epoch.as_str(), t.as_str()))
        .collect();
    assert_eq!(replay, expected);
    for i in 6..=8 {
        let text_sent = format!("m{i}");
        let ack = post(&mut bob, &text_sent).await;
        let event = next_event(&mut ana).await;
        assert_eq!(
            (event.offset, event.ts, event.epoch.as_str(), text(&event)),
            (ack.offset, ack.ts, ack.epoch.as_str(), text_sent.as_str())
        );
    }
}

/// Retention racing recovering joins: a join that says `recovered` must
/// replay every event after the position (no silent gap); once retention
/// removed that event, the answer must be `out_of_retention`. The reader
/// rejoins without pause until retention took the event, sampling the whole
/// time the removal takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_never_claims_success_over_a_retention_gap() {
    let server = TestServer::start_with(|c: &mut Config| {
        c.retention = Duration::from_millis(1);
        c.retention_check = Duration::from_millis(20);
    })
    .await;
    server.open(&[ROOM]).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    let epoch = join(&mut bob, None).await.epoch;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let mut joins = 0;
    for round in 1..=30u64 {
        let ack = post(&mut bob, &format!("m{round}")).await;
        assert_eq!(ack.offset, round);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let joined = join(&mut ana, at(&epoch, round - 1)).await;
            timed("leave", ana.leave(ROOM)).await.unwrap();
            joins += 1;
            match joined.recovery {
                Some(Recovery {
                    recovered: true, ..
                }) => assert_eq!(
                    offsets(&joined.events),
                    (round..=joined.head).collect::<Vec<u64>>(),
                    "round {round}, join {joins}: recovered, but the replay misses events \
                     (head {}, first {})",
                    joined.head,
                    joined.first
                ),
                Some(Recovery {
                    reason: Some(RecoveryFailure::OutOfRetention),
                    ..
                }) => break,
                other => panic!("round {round}: unexpected recovery {other:?}"),
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: retention did not remove offset {round} within {WAIT:?}"
            );
        }
    }
}

/// On the wire, nothing about the room reaches a recovering member before its
/// join reply: a presence frame that overtook the reply would be undone by
/// the reply's (older) member list. Another user joins and leaves without
/// pause while the reader rejoins with a long replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovering_join_reply_precedes_presence_on_the_wire() {
    const EVENTS: u64 = 400;
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    let epoch = join(&mut bob, None).await.epoch;
    for i in 1..EVENTS {
        let frame = preau::protocol::encode_request(&preau::protocol::Request::Post {
            id: Some(100_000 + i as u32),
            room: ROOM.to_owned(),
            text: format!("m{i}"),
            title: None,
            thread: None,
            reply_to: None,
            quote: None,
            key: None,
        })
        .unwrap();
        bob.send_raw(frame).unwrap();
    }
    assert_eq!(post(&mut bob, &format!("m{EVENTS}")).await.offset, EVENTS);

    let stop = tokio_util::sync::CancellationToken::new();
    let (mut cleo, _) = server.connect(&student("cleo", "3B")).await;
    let churn = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut cycles = 0u64;
            while !stop.is_cancelled() {
                join(&mut cleo, None).await;
                timed("leave", cleo.leave(ROOM)).await.unwrap();
                cycles += 1;
            }
            cycles
        })
    };
    let token = student("ana", "3B");
    for round in 0..150 {
        let mut ws = raw_ws(server.addr()).await;
        raw_hello(&mut ws, &token).await;
        let join = preau::protocol::encode_request(&preau::protocol::Request::Join {
            id: Some(2),
            room: ROOM.to_owned(),
            since: at(&epoch, 0),
        })
        .unwrap();
        ws.send(Message::Binary(join)).await.unwrap();
        loop {
            let message = timed("frame", ws.next())
                .await
                .expect("socket open")
                .expect("frame");
            let Message::Binary(bytes) = message else {
                continue;
            };
            match preau::protocol::decode_server_frame(&bytes).expect("decodes") {
                ServerFrame::Ok { id: Some(2), .. } => {
                    let joined: JoinOk = preau::protocol::decode_ok_data(&bytes).unwrap();
                    assert_eq!(joined.recovery, recovered());
                    assert_eq!(joined.events.len() as u64, EVENTS);
                    break;
                }
                other => panic!("round {round}: {other:?} arrived before the join reply"),
            }
        }
        let _ = ws.close(None).await;
    }
    stop.cancel();
    let cycles = timed("churn", churn).await.expect("churn task");
    assert!(cycles > 0);
}
