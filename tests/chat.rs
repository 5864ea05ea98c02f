mod support;

use std::collections::{HashMap, HashSet};
use std::future::Future;

use preau::client::{Client, ClientError};
use preau::config::Config;
use preau::protocol::{
    Body, ErrorCode, ErrorReply, Event, HistoryOk, PostOk, Presence, PresenceAction, Request, Role,
    ServerFrame, Typing, UserInfo,
};
use support::*;

const ROOM: &str = "3B/chat/revision-bac";

/// Awaits `f` for at most [`WAIT`].
async fn timed<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {WAIT:?}"))
}

fn staff(user: &str) -> String {
    token(user, Role::Staff, &[])
}

fn info(user: &str, role: Role) -> UserInfo {
    UserInfo {
        id: user.to_owned(),
        name: format!("Name of {user}"),
        role,
    }
}

fn text(event: &Event) -> &str {
    match &event.body {
        Body::Message { text, .. } => text,
        other => panic!("not a message: {other:?}"),
    }
}

fn refusal(err: ClientError) -> ErrorReply {
    match err {
        ClientError::Refused(reply) => reply,
        other => panic!("expected an error reply, got {other}"),
    }
}

fn ids(members: &[UserInfo]) -> Vec<&str> {
    members.iter().map(|m| m.id.as_str()).collect()
}

fn offsets(page: &HistoryOk) -> Vec<u64> {
    page.events.iter().map(|e| e.offset).collect()
}

async fn post(client: &mut Client, text: &str) -> PostOk {
    timed("post", client.post(ROOM, text))
        .await
        .unwrap_or_else(|e| panic!("post {text:?} refused: {e}"))
}

async fn history(
    client: &mut Client,
    before: Option<u64>,
    after: Option<u64>,
    limit: Option<u32>,
) -> HistoryOk {
    timed("history", client.history(ROOM, before, after, limit))
        .await
        .unwrap_or_else(|e| panic!("history before={before:?} after={after:?} refused: {e}"))
}

/// 28 pupils, their teacher and a staff member join; 5 of them post 20
/// messages each at the same time. Everyone sees the same 100 events, in
/// offset order 1..=100, each once, and every ack names its own event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_members_see_the_same_hundred_events_in_offset_order() {
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let mut people: Vec<(String, String)> = (0..28)
        .map(|i| {
            let id = format!("s{i:02}");
            let tok = student(&id, "3B");
            (id, tok)
        })
        .collect();
    people.push(("t-prof".to_owned(), teacher("t-prof", "3B")));
    people.push(("z-staff".to_owned(), staff("z-staff")));

    let mut slots: Vec<Option<(String, Client)>> = Vec::new();
    for (n, (id, tok)) in people.iter().enumerate() {
        let (mut client, hello) = server.connect(tok).await;
        assert_eq!(hello.user.id, *id);
        let joined = timed("join", client.join(ROOM, None))
            .await
            .unwrap_or_else(|e| panic!("{id} cannot join: {e}"));
        assert_eq!(joined.head, 0);
        assert_eq!(joined.first, 1);
        assert_eq!(joined.members.len(), n + 1, "members seen by joiner {id}");
        assert!(joined.events.is_empty());
        slots.push(Some((id.clone(), client)));
    }

    let posters = [0usize, 7, 14, 28, 29];
    let mut tasks = Vec::new();
    for &slot in &posters {
        let (id, mut client) = slots[slot].take().expect("poster slot");
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for m in 0..20 {
                let text = format!("{id} message {m}");
                let ack = timed("post ack", client.post(ROOM, &text))
                    .await
                    .unwrap_or_else(|e| panic!("{id} post {m} refused: {e}"));
                acks.push((ack, text));
            }
            (slot, id, client, acks)
        }));
    }
    let mut acks: Vec<(String, PostOk, String)> = Vec::new();
    for task in tasks {
        let (slot, id, client, poster_acks) = timed("poster task", task).await.expect("poster");
        let offsets: Vec<u64> = poster_acks.iter().map(|(a, _)| a.offset).collect();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "acks of {id} not increasing: {offsets:?}"
        );
        for (ack, text) in poster_acks {
            acks.push((id.clone(), ack, text));
        }
        slots[slot] = Some((id, client));
    }
    assert_eq!(acks.len(), 100);
    let distinct: HashSet<u64> = acks.iter().map(|(_, a, _)| a.offset).collect();
    assert_eq!(distinct, (1..=100).collect::<HashSet<u64>>(), "ack offsets");

    // A sentinel after the 100: whatever follows them must be offset 101.
    let mut clients: Vec<(String, Client)> = slots.into_iter().map(|s| s.expect("slot")).collect();
    let sentinel = post(&mut clients[29].1, "sentinel").await;
    assert_eq!(sentinel.offset, 101);

    let mut reference: Option<Vec<(u64, String, String)>> = None;
    for (id, client) in &mut clients {
        let mut sequence = Vec::new();
        for _ in 0..100 {
            let event = next_event(client).await;
            assert_eq!(event.room, ROOM);
            assert_eq!(event.epoch, sentinel.epoch, "epoch seen by {id}");
            sequence.push((event.offset, event.from.id.clone(), text(&event).to_owned()));
        }
        let got: Vec<u64> = sequence.iter().map(|(o, _, _)| *o).collect();
        assert_eq!(got, (1..=100).collect::<Vec<u64>>(), "offsets seen by {id}");
        let after = next_event(client).await;
        assert_eq!(
            (after.offset, text(&after)),
            (101, "sentinel"),
            "{id}: the event after the 100 is not the sentinel (extra or duplicate event)"
        );
        match &reference {
            None => reference = Some(sequence),
            Some(first) => assert_eq!(&sequence, first, "{id} saw a different sequence"),
        }
    }
    let reference = reference.expect("sequence");
    for (id, ack, text) in &acks {
        assert_eq!(ack.room, ROOM);
        assert_eq!(ack.epoch, sentinel.epoch);
        let (offset, from, said) = &reference[(ack.offset - 1) as usize];
        assert_eq!(
            (*offset, from.as_str(), said.as_str()),
            (ack.offset, id.as_str(), text.as_str()),
            "ack {} of {id} does not name its event",
            ack.offset
        );
    }
}

/// Presence: sorted unique members on join, one `join` per user (not per
/// connection), one `leave` when the user's last connection leaves.
#[tokio::test]
async fn presence_counts_users_not_connections() {
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let joined = timed("join", ana.join(ROOM, None)).await.unwrap();
    assert_eq!(joined.members, vec![info("ana", Role::Student)]);

    let (mut bob1, _) = server.connect(&student("bob", "3B")).await;
    let joined = timed("join", bob1.join(ROOM, None)).await.unwrap();
    assert_eq!(
        joined.members,
        vec![info("ana", Role::Student), info("bob", Role::Student)]
    );
    assert_eq!(
        next(&mut ana).await,
        ServerFrame::Presence(Presence {
            room: ROOM.to_owned(),
            action: PresenceAction::Join,
            user: info("bob", Role::Student),
        })
    );

    // Bob's second tab: listed once, no second `join`.
    let (mut bob2, _) = server.connect(&student("bob", "3B")).await;
    let joined = timed("join", bob2.join(ROOM, None)).await.unwrap();
    assert_eq!(ids(&joined.members), vec!["ana", "bob"]);

    // A teacher whose id sorts between: members sorted by id.
    let (mut ben, _) = server.connect(&teacher("ben", "3B")).await;
    let joined = timed("join", ben.join(ROOM, None)).await.unwrap();
    assert_eq!(
        joined.members,
        vec![
            info("ana", Role::Student),
            info("ben", Role::Teacher),
            info("bob", Role::Student)
        ]
    );
    let ben_joined = ServerFrame::Presence(Presence {
        room: ROOM.to_owned(),
        action: PresenceAction::Join,
        user: info("ben", Role::Teacher),
    });
    assert_eq!(
        next(&mut ana).await,
        ben_joined,
        "ana: bob's second connection must not emit a presence join"
    );
    assert_eq!(next(&mut bob1).await, ben_joined);
    assert_eq!(next(&mut bob2).await, ben_joined);

    // Bob's first tab leaves: bob is still there, no `leave`.
    timed("leave", bob1.leave(ROOM)).await.unwrap();
    let ack = post(&mut ben, "bob is still here").await;
    let frame = next(&mut ana).await;
    assert!(
        matches!(&frame, ServerFrame::Event(e) if e.offset == ack.offset),
        "ana: expected ben's event, not {frame:?} (a leave before bob's last connection left?)"
    );

    // Bob's last connection goes away (socket closed): one `leave`.
    bob2.close();
    assert_eq!(
        next(&mut ana).await,
        ServerFrame::Presence(Presence {
            room: ROOM.to_owned(),
            action: PresenceAction::Leave,
            user: info("bob", Role::Student),
        })
    );
    // An explicit leave emits `leave` too.
    timed("leave", ben.leave(ROOM)).await.unwrap();
    assert_eq!(
        next(&mut ana).await,
        ServerFrame::Presence(Presence {
            room: ROOM.to_owned(),
            action: PresenceAction::Leave,
            user: info("ben", Role::Teacher),
        })
    );
    let (mut cleo, _) = server.connect(&student("cleo", "3B")).await;
    let joined = timed("join", cleo.join(ROOM, None)).await.unwrap();
    assert_eq!(ids(&joined.members), vec!["ana", "cleo"]);
    // ben left: no more events for him; he is told not_joined when posting.
    let err = refusal(timed("post", ben.post(ROOM, "x")).await.unwrap_err());
    assert_eq!(err.code, ErrorCode::NotJoined);
    // Bob's first tab, still connected, can come back: `join` again for ana.
    let joined = timed("join", bob1.join(ROOM, None)).await.unwrap();
    assert_eq!(ids(&joined.members), vec!["ana", "bob", "cleo"]);
    let frame = next(&mut ana).await;
    assert!(
        matches!(&frame, ServerFrame::Presence(Presence { action: PresenceAction::Join, user, .. }) if user.id == "cleo"),
        "{frame:?}"
    );
    let frame = next(&mut ana).await;
    assert!(
        matches!(&frame, ServerFrame::Presence(Presence { action: PresenceAction::Join, user, .. }) if user.id == "bob"),
        "{frame:?}"
    );
}

/// Typing reaches the other members, not the sender, is never stored, and a
/// burst of indicators is coalesced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_is_ephemeral_and_coalesced() {
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    timed("join", ana.join(ROOM, None)).await.unwrap();
    timed("join", bob.join(ROOM, None)).await.unwrap();
    assert!(matches!(next(&mut ana).await, ServerFrame::Presence(_)));

    timed("typing", ana.typing(ROOM)).await.unwrap();
    assert_eq!(
        next(&mut bob).await,
        ServerFrame::Typing(Typing {
            room: ROOM.to_owned(),
            user: info("ana", Role::Student),
        })
    );
    let page = history(&mut bob, None, None, None).await;
    assert_eq!((page.head, page.first), (0, 1), "typing must not be stored");
    assert!(page.events.is_empty());
    let ack = post(&mut bob, "after typing").await;
    assert_eq!(ack.offset, 1, "typing must not use an offset");
    let frame = next(&mut ana).await;
    assert!(
        matches!(&frame, ServerFrame::Event(e) if e.offset == 1),
        "ana must not receive her own typing: {frame:?}"
    );
    assert_eq!(next_event(&mut bob).await.offset, 1);

    // A fresh connection sends 10 typing requests back to back.
    let (mut cleo, _) = server.connect(&student("cleo", "3B")).await;
    timed("join", cleo.join(ROOM, None)).await.unwrap();
    for other in [&mut ana, &mut bob] {
        let frame = next(other).await;
        assert!(
            matches!(&frame, ServerFrame::Presence(p) if p.user.id == "cleo"),
            "{frame:?}"
        );
    }
    for id in 1000..1010 {
        let frame = preau::protocol::encode_request(&Request::Typing {
            id: Some(id),
            room: ROOM.to_owned(),
        })
        .unwrap();
        cleo.send_raw(frame).unwrap();
    }
    let ack = post(&mut cleo, "after the burst").await;
    assert_eq!(ack.offset, 2);

    for (name, other) in [("ana", &mut ana), ("bob", &mut bob)] {
        let mut typing = 0;
        loop {
            match next(other).await {
                ServerFrame::Typing(t) => {
                    assert_eq!(t.user, info("cleo", Role::Student));
                    assert_eq!(t.room, ROOM);
                    typing += 1;
                }
                ServerFrame::Event(e) => {
                    assert_eq!(e.offset, 2, "{name}");
                    break;
                }
                other => panic!("{name}: unexpected {other:?}"),
            }
        }
        assert!(
            (1..=2).contains(&typing),
            "{name} saw {typing} typing frames for a burst of 10"
        );
    }
    // Cleo gets her 10 `ok` replies (unknown ids, so routed as frames), no typing.
    let mut oks = Vec::new();
    loop {
        match next(&mut cleo).await {
            ServerFrame::Ok { id: Some(id), .. } => oks.push(id),
            ServerFrame::Event(e) => {
                assert_eq!(e.offset, 2);
                break;
            }
            other => panic!("cleo: unexpected {other:?}"),
        }
    }
    assert_eq!(oks, (1000..1010).collect::<Vec<u32>>());
    let page = history(&mut ana, None, None, None).await;
    assert_eq!(page.head, 2);
    assert_eq!(offsets(&page), vec![1, 2]);
}

/// History pages backwards and forwards, caps the limit at
/// `history_page_max`, reports `head`, `first` and `more`, and needs no join.
#[tokio::test]
async fn history_pages_in_both_directions() {
    let server = TestServer::start_with(|c: &mut Config| c.history_page_max = 12).await;
    server.open(&[ROOM]).await;
    let (mut ana, hello) = server.connect(&student("ana", "3B")).await;
    assert_eq!(hello.limits.history_page_max, 12);
    timed("join", ana.join(ROOM, None)).await.unwrap();
    let mut epoch = String::new();
    for i in 1..=25u64 {
        let ack = post(&mut ana, &format!("m{i}")).await;
        assert_eq!(ack.offset, i);
        epoch = ack.epoch;
    }
    // The teacher never joins: history only needs read permission.
    let (mut prof, _) = server.connect(&teacher("prof", "3B")).await;
    for client in [&mut ana, &mut prof] {
        let check = |page: &HistoryOk, want: Vec<u64>, more: bool, what: &str| {
            assert_eq!(offsets(page), want, "{what}");
            assert_eq!(page.more, more, "{what}: more");
            assert_eq!((page.head, page.first), (25, 1), "{what}: head, first");
            assert_eq!(page.room, ROOM);
            assert_eq!(page.epoch, epoch);
            for e in &page.events {
                assert_eq!(text(e), format!("m{}", e.offset), "{what}");
                assert_eq!(e.from.id, "ana");
                assert_eq!(e.epoch, epoch);
            }
        };
        let page = history(client, None, None, Some(10)).await;
        check(&page, (16..=25).collect(), true, "latest 10");
        let page = history(client, Some(16), None, Some(10)).await;
        check(&page, (6..=15).collect(), true, "before 16");
        let page = history(client, Some(6), None, Some(10)).await;
        check(&page, (1..=5).collect(), false, "before 6");
        let page = history(client, None, Some(20), Some(10)).await;
        check(&page, (21..=25).collect(), false, "after 20");
        let page = history(client, Some(9), Some(5), None).await;
        check(&page, vec![6, 7, 8], false, "after 5 before 9");
        let page = history(client, None, None, Some(1000)).await;
        check(&page, (14..=25).collect(), true, "limit capped at 12");
        let page = history(client, None, None, None).await;
        check(
            &page,
            (14..=25).collect(),
            true,
            "default limit capped at 12",
        );
        let page = history(client, None, Some(0), Some(1000)).await;
        check(&page, (1..=12).collect(), true, "after 0, capped");
        let page = history(client, None, Some(12), Some(1000)).await;
        check(&page, (13..=24).collect(), true, "after 12, capped");
        let page = history(client, None, Some(25), None).await;
        check(&page, vec![], false, "after head");
    }
    let (mut stranger, _) = server.connect(&student("zoe", "4A")).await;
    let err = refusal(
        timed("history", stranger.history(ROOM, None, None, None))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, ErrorCode::Forbidden);
}

/// The token bucket is per user, shared by their connections; a refused post
/// uses no offset and others can still post.
#[tokio::test]
async fn rate_limit_is_per_user_across_connections() {
    let server = TestServer::start_with(|c: &mut Config| {
        c.rate_per_sec = 0.01;
        c.rate_burst = 3;
    })
    .await;
    server.open(&[ROOM]).await;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let (mut ana2, _) = server.connect(&student("ana", "3B")).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    for client in [&mut ana, &mut ana2, &mut bob] {
        timed("join", client.join(ROOM, None)).await.unwrap();
    }
    for i in 1..=3 {
        assert_eq!(post(&mut ana, &format!("m{i}")).await.offset, i);
    }
    let err = refusal(timed("post", ana.post(ROOM, "m4")).await.unwrap_err());
    assert_eq!(err.code, ErrorCode::RateLimited);
    assert!(
        err.retry_after_ms.is_some_and(|ms| ms > 0),
        "retry_after_ms: {:?}",
        err.retry_after_ms
    );
    let err = refusal(
        timed("post", ana2.post(ROOM, "other tab"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        err.code,
        ErrorCode::RateLimited,
        "the bucket is per user, not per connection"
    );
    assert!(err.retry_after_ms.is_some_and(|ms| ms > 0));
    let ack = post(&mut bob, "bob is not limited").await;
    assert_eq!(ack.offset, 4, "refused posts use no offset");
    let seen: Vec<(u64, String)> = {
        let mut seen = Vec::new();
        for _ in 0..4 {
            let e = next_event(&mut bob).await;
            seen.push((e.offset, text(&e).to_owned()));
        }
        seen
    };
    assert_eq!(
        seen,
        vec![
            (1, "m1".to_owned()),
            (2, "m2".to_owned()),
            (3, "m3".to_owned()),
            (4, "bob is not limited".to_owned())
        ]
    );
}

/// Reconnecting does not refill the bucket: it belongs to the user, and
/// outlives their last connection.
#[tokio::test]
async fn rate_limit_survives_reconnecting() {
    let server = TestServer::start_with(|c: &mut Config| {
        c.rate_per_sec = 0.01;
        c.rate_burst = 2;
    })
    .await;
    server.open(&[ROOM]).await;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    timed("join", ana.join(ROOM, None)).await.unwrap();
    post(&mut ana, "m1").await;
    post(&mut ana, "m2").await;
    ana.close();
    // Wait until the server saw the connection go.
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.metric("preau_connections").await > 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "connection not closed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (mut again, _) = server.connect(&student("ana", "3B")).await;
    timed("join", again.join(ROOM, None)).await.unwrap();
    let err = refusal(timed("post", again.post(ROOM, "m3")).await.unwrap_err());
    assert_eq!(err.code, ErrorCode::RateLimited);
}

/// Past the presence limit a room sends no presence and lists no members,
/// only their count; below it, everything is as usual.
#[tokio::test]
async fn presence_stops_past_the_presence_limit() {
    let server = TestServer::start_with(|c: &mut Config| c.presence_limit = 3).await;
    server.open(&[ROOM]).await;
    let mut clients = Vec::new();
    for (i, user) in ["u1", "u2", "u3", "u4"].into_iter().enumerate() {
        let (mut client, _) = server.connect(&student(user, "3B")).await;
        let joined = timed("join", client.join(ROOM, None)).await.unwrap();
        assert_eq!(joined.member_count, i as u64 + 1);
        if i < 3 {
            assert_eq!(joined.members.len(), i + 1, "listed below the limit");
        } else {
            assert!(joined.members.is_empty(), "not listed past the limit");
        }
        clients.push(client);
    }
    // u1 saw u2 and u3 join, not u4: the next frame after those is a post.
    let ack = post(&mut clients[3], "hello").await;
    let mut seen = Vec::new();
    loop {
        match next(&mut clients[0]).await {
            ServerFrame::Presence(p) => seen.push(p.user.id),
            ServerFrame::Event(e) if e.offset == ack.offset => break,
            _ => {}
        }
    }
    assert_eq!(seen, ["u2", "u3"]);
}

/// Joins, history reads and the like have their own per-user bucket, so a
/// script cannot probe rooms or scan history without bound. The rooms are
/// opened first (by other users) so that only the limit can refuse.
#[tokio::test]
async fn room_requests_are_rate_limited_per_user() {
    let server = TestServer::start_with(|c: &mut Config| {
        c.request_rate_per_sec = 0.01;
        c.request_burst = 3;
    })
    .await;
    // One opener per room: each opener's joins count in its own bucket.
    for room in [ROOM, "3B/chat/r0", "3B/chat/r1", "3B/chat/r2", "3B/chat/r9"] {
        open_rooms_as(&server.url(), &staff(&format!("opener {room}")), &[room]).await;
    }
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    for i in 0..3 {
        timed(
            "history",
            ana.history(&format!("3B/chat/r{i}"), None, None, None),
        )
        .await
        .unwrap();
    }
    let err = refusal(
        timed("join", ana.join("3B/chat/r9", None))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, ErrorCode::RateLimited);
    assert!(err.retry_after_ms.is_some_and(|ms| ms > 0));
    // Another user is not affected, and a ping is not limited.
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    timed("join", bob.join(ROOM, None)).await.unwrap();
    timed(
        "ping",
        ana.request::<rmpv::Value>(preau::protocol::Request::Ping { id: None }),
    )
    .await
    .unwrap();
}

/// A graceful stop keeps everything: same epoch, same events, and offsets go on.
#[tokio::test]
async fn restart_keeps_history_epoch_and_offsets() {
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    timed("join", ana.join(ROOM, None)).await.unwrap();
    let mut acks = Vec::new();
    for i in 1..=10u64 {
        let ack = post(&mut ana, &format!("m{i}")).await;
        assert_eq!(ack.offset, i);
        acks.push(ack);
    }
    let epoch = acks[0].epoch.clone();
    let TestServer { server, dir } = server;
    server.shutdown();
    timed("server stop", server.wait())
        .await
        .expect("clean stop");
    for i in 1..=10u64 {
        assert_eq!(next_event(&mut ana).await.offset, i);
    }
    assert!(
        timed("close", ana.next()).await.is_none(),
        "connection ends at shutdown"
    );
    assert_eq!(ana.close_frame().map(|(code, _)| code), Some(1001));

    let server = TestServer {
        server: preau::start(config(dir.path()))
            .await
            .expect("restarts on the same data"),
        dir,
    };
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    let page = history(&mut bob, None, None, None).await;
    assert_eq!(page.epoch, epoch);
    assert_eq!((page.head, page.first, page.more), (10, 1, false));
    assert_eq!(offsets(&page), (1..=10).collect::<Vec<u64>>());
    let by_offset: HashMap<u64, &PostOk> = acks.iter().map(|a| (a.offset, a)).collect();
    for e in &page.events {
        assert_eq!(text(e), format!("m{}", e.offset));
        assert_eq!(e.ts, by_offset[&e.offset].ts);
        assert_eq!(e.epoch, epoch);
    }
    let joined = timed("join", bob.join(ROOM, None)).await.unwrap();
    assert_eq!((joined.epoch.as_str(), joined.head), (epoch.as_str(), 10));
    let ack = post(&mut bob, "after restart").await;
    assert_eq!((ack.offset, ack.epoch.as_str()), (11, epoch.as_str()));
    let e = next_event(&mut bob).await;
    assert_eq!((e.offset, text(&e)), (11, "after restart"));
}
