//! Announcements through diffusion lists (`protocol/README.md`,
//! "Announcements"): who may write to which list, over every role; the
//! recipients and only them read it; read receipts and acknowledgements
//! counted for the sender (and the families who have not read it), never
//! shown to other recipients; no reply-all; quiet hours hold it unless
//! staff make it urgent, which the audit log records; read counts right
//! with recipients on two nodes.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use preau::client::{Client, ClientError};
use preau::kinds::announce::{AnnounceOk, AnnounceRequest, StatusOk};
use preau::kinds::inbox::{FeedOk, FeedRequest};
use preau::protocol::{Body, ErrorCode, PostOk, Role};
use serde_json::json;
use support::redis::RedisServer;
use support::*;

/// Tuesday 2026-12-08, 10:00 in Paris.
const TUESDAY_10H: u64 = 1_796_806_800_000;
const HOUR: u64 = 3_600_000;

fn manual_clock(start: u64) -> (Arc<AtomicU64>, preau::hub::Clock) {
    let now = Arc::new(AtomicU64::new(start));
    let read = now.clone();
    (now, Arc::new(move || read.load(Ordering::SeqCst)))
}

/// `classes` classes of `pupils` pupils, each with one parent (two for
/// the first pupil of each class), a teacher per class, staff.
fn school(classes: usize, pupils: usize) -> serde_json::Value {
    let mut people = vec![
        json!({"id": "proviseur", "name": "M. le proviseur", "role": "staff"}),
        json!({"id": "cpe", "name": "Mme la CPE", "role": "staff"}),
    ];
    let mut list = Vec::new();
    for c in 0..classes {
        let class = format!("C{c}");
        list.push(json!({"id": class, "level": if c % 2 == 0 { "3e" } else { "4e" }}));
        people.push(
            json!({"id": format!("t{c}"), "name": format!("Prof {c}"), "role": "teacher",
                           "teaches": [{"class": class, "subject": "Français"}]}),
        );
        for p in 0..pupils {
            let pupil = format!("e{c}-{p}");
            people.push(json!({"id": pupil, "name": format!("Élève {c}-{p}"), "role": "student", "classes": [class]}));
            people.push(json!({"id": format!("p{c}-{p}"), "name": format!("Parent {c}-{p}"), "role": "parent", "children": [pupil]}));
            if p == 0 {
                people.push(json!({"id": format!("q{c}-{p}"), "name": format!("Autre parent {c}-{p}"), "role": "parent", "children": [pupil]}));
            }
        }
    }
    json!({"version": 1, "mode": "full", "classes": list, "people": people})
}

fn who(id: &str) -> String {
    let role = match id.chars().next() {
        Some('t') => Role::Teacher,
        Some('e') => Role::Student,
        Some('p' | 'q') if id != "proviseur" => Role::Parent,
        _ => Role::Staff,
    };
    token(id, role, &[])
}

async fn server(clock: preau::hub::Clock, school: &serde_json::Value) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config(dir.path());
    config.admin_key = Some(ADMIN_KEY.to_owned());
    let server = preau::start_with_clock(config, clock)
        .await
        .expect("server starts");
    let server = TestServer { server, dir };
    sync_directory(server.addr(), school).await;
    server
}

fn announce(targets: &[&str], ack: bool, urgent: bool) -> AnnounceRequest {
    AnnounceRequest::Announce {
        id: None,
        targets: targets.iter().map(|t| t.to_string()).collect(),
        title: "Sortie au musée".into(),
        text: "Le jeudi 17, prévoir un pique-nique.".into(),
        ack,
        urgent,
        key: None,
    }
}

fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Refused(reply)) => reply.code,
        other => panic!("not refused: {other:?}"),
    }
}

async fn status(client: &mut Client, room: &str) -> StatusOk {
    client
        .request_kind(&AnnounceRequest::AnnounceStatus {
            id: None,
            room: room.to_owned(),
        })
        .await
        .expect("status")
}

async fn read(client: &mut Client, room: &str) -> PostOk {
    client
        .request_kind(&AnnounceRequest::AnnounceRead {
            id: None,
            room: room.to_owned(),
        })
        .await
        .expect("read")
}

/// The announcement rooms in `client`'s feed.
async fn announced(client: &mut Client) -> Vec<String> {
    let feed: FeedOk = client
        .request_kind(&FeedRequest::Feed {
            id: None,
            before: None,
            limit: None,
        })
        .await
        .expect("feed");
    feed.items
        .into_iter()
        .filter(|i| i.fields.what == "announcement")
        .map(|i| i.fields.room)
        .collect()
}

#[tokio::test]
async fn who_may_write_to_which_list() {
    let (_, clock) = manual_clock(TUESDAY_10H);
    let server = server(clock, &school(2, 2)).await;
    // (user, target, allowed)
    let matrix: &[(&str, &str, bool)] = &[
        ("proviseur", "school", true),
        ("proviseur", "staff", true),
        ("proviseur", "teachers", true),
        ("proviseur", "level:3e", true),
        ("proviseur", "class:C1", true),
        ("proviseur", "parents:C1", true),
        ("t0", "class:C0", true),
        ("t0", "parents:C0", true),
        ("t0", "teachers:C0", false), // only t0 teaches C0: nobody else in it
        ("t0", "class:C1", false),
        ("t0", "parents:C1", false),
        ("t0", "teachers", false),
        ("t0", "school", false),
        ("t0", "level:3e", false),
        ("e0-0", "class:C0", false),
        ("p0-0", "parents:C0", false),
        ("proviseur", "class:NOPE", false),
    ];
    for &(user, target, allowed) in matrix {
        let mut client = client(&server.url(), &who(user)).await;
        let result: Result<AnnounceOk, _> = client
            .request_kind(&announce(&[target], false, false))
            .await;
        match (allowed, result) {
            (true, Ok(ok)) => assert!(ok.recipients > 0, "{user} → {target}"),
            (false, Err(ClientError::Refused(reply))) => {
                assert_eq!(
                    reply.code,
                    ErrorCode::Forbidden,
                    "{user} → {target}: {}",
                    reply.message
                )
            }
            (allowed, other) => panic!("{user} → {target}: expected {allowed}, got {other:?}"),
        }
    }
    // Only staff make an announcement urgent; a bad target is named.
    let mut t0 = client(&server.url(), &who("t0")).await;
    assert_eq!(
        refused(
            t0.request_kind::<AnnounceOk>(&announce(&["class:C0"], false, true))
                .await
        ),
        ErrorCode::Forbidden
    );
    assert_eq!(
        refused(
            t0.request_kind::<AnnounceOk>(&announce(&["everyone"], false, false))
                .await
        ),
        ErrorCode::InvalidField
    );
}

/// A double click, or a retry after a lost answer: the same key from the
/// same sender is one announcement, one notification each; another key,
/// or another sender's same key, is another announcement.
#[tokio::test]
async fn an_announcement_sent_twice_with_its_key_is_sent_once() {
    let (_, clock) = manual_clock(TUESDAY_10H);
    let server = server(clock, &school(2, 2)).await;
    let mut t0 = client(&server.url(), &who("t0")).await;
    let keyed = |key: &str| match announce(&["parents:C0"], false, false) {
        AnnounceRequest::Announce {
            id,
            targets,
            title,
            text,
            ack,
            urgent,
            ..
        } => AnnounceRequest::Announce {
            id,
            targets,
            title,
            text,
            ack,
            urgent,
            key: Some(key.to_owned()),
        },
        other => other,
    };
    let first: AnnounceOk = t0.request_kind(&keyed("sortie-musee")).await.unwrap();
    let again: AnnounceOk = t0.request_kind(&keyed("sortie-musee")).await.unwrap();
    assert_eq!(first, again, "the same announcement");
    let other: AnnounceOk = t0.request_kind(&keyed("autre")).await.unwrap();
    assert_ne!(other.room, first.room);
    // One notification of it per parent.
    let mut p00 = client(&server.url(), &who("p0-0")).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while announced(&mut p00).await.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "not in the feed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rooms = announced(&mut p00).await;
    assert_eq!(
        rooms.iter().filter(|r| **r == first.room).count(),
        1,
        "{rooms:?}"
    );
    // Its history holds one announcement.
    t0.join(&first.room, None).await.unwrap();
    let page = t0.history(&first.room, None, None, Some(50)).await.unwrap();
    let announcements = page
        .events
        .iter()
        .filter(|e| matches!(&e.body, Body::Kind(k) if k.kind == "announce"))
        .count();
    assert_eq!(announcements, 1);
    // Staff's same key is their own announcement.
    let mut cpe = client(&server.url(), &who("cpe")).await;
    let theirs: AnnounceOk = cpe.request_kind(&keyed("sortie-musee")).await.unwrap();
    assert_ne!(theirs.room, first.room);
    // Bounds.
    assert_eq!(
        refused(t0.request_kind::<AnnounceOk>(&keyed(&"k".repeat(65))).await),
        ErrorCode::InvalidField
    );
}

#[tokio::test]
async fn receipts_are_counted_for_the_sender_only() {
    let (_, clock) = manual_clock(TUESDAY_10H);
    let server = server(clock, &school(2, 3)).await;
    let mut t0 = client(&server.url(), &who("t0")).await;
    let sent: AnnounceOk = t0
        .request_kind(&announce(&["parents:C0"], true, false))
        .await
        .unwrap();
    // C0's 3 pupils: 4 parents (the first pupil has two).
    assert_eq!(sent.recipients, 4);
    let room = sent.room.clone();
    // Each recipient finds it in their feed.
    let mut p00 = client(&server.url(), &who("p0-0")).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !announced(&mut p00).await.contains(&room) {
        assert!(tokio::time::Instant::now() < deadline, "not in the feed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nobody else reads it; nobody replies to it.
    let mut p10 = client(&server.url(), &who("p1-0")).await;
    assert_eq!(refused(p10.join(&room, None).await), ErrorCode::Forbidden);
    let mut e00 = client(&server.url(), &who("e0-0")).await;
    assert_eq!(refused(e00.join(&room, None).await), ErrorCode::Forbidden);
    p00.join(&room, None).await.unwrap();
    assert_eq!(
        refused(p00.post(&room, "Merci !").await),
        ErrorCode::Forbidden
    );
    // Recipients do not learn of each other: no members, no typing.
    let mut p02 = client(&server.url(), &who("p0-2")).await;
    let joined = p02.join(&room, None).await.unwrap();
    assert!(joined.members.is_empty(), "{:?}", joined.members);
    assert_eq!(refused(p02.typing(&room).await), ErrorCode::Forbidden);
    // Nobody configures it or moderates it.
    let mut staff = client(&server.url(), &who("proviseur")).await;
    let configure = preau::protocol::ModAction::Configure {
        flavour: preau::protocol::Flavour::Help,
        classes: Vec::new(),
        moderators: Vec::new(),
    };
    assert!(staff.moderate(&room, configure).await.is_err());

    let before = status(&mut t0, &room).await;
    assert_eq!((before.recipients, before.read, before.acked), (4, 0, 0));
    assert_eq!(before.families_not_read.len(), 3);
    // One parent of the first family reads, and acknowledges.
    read(&mut p00, &room).await;
    read(&mut p00, &room).await; // twice: counted once
    let _: PostOk = p00
        .request_kind(&AnnounceRequest::AnnounceAck {
            id: None,
            room: room.clone(),
        })
        .await
        .unwrap();
    let mut p01 = client(&server.url(), &who("p0-1")).await;
    read(&mut p01, &room).await;
    let after = status(&mut t0, &room).await;
    assert_eq!((after.read, after.acked), (2, 1));
    // The first family read it (one of its two parents did); the third did not.
    assert_eq!(after.families_not_read.len(), 1);
    assert_eq!(after.families_not_read[0].child, "Élève 0-2");
    assert_eq!(after.families_not_read[0].class.as_deref(), Some("C0"));
    let names: Vec<&str> = after.not_read.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, vec!["Autre parent 0-0", "Parent 0-2"]);
    assert_eq!(after.not_acked.len(), 3);
    // A recipient sees the announcement and their own receipts, never
    // the list of recipients nor anyone else's receipt.
    let seen = p01.history(&room, None, None, None).await.unwrap();
    for event in &seen.events {
        if let Body::Kind(body) = &event.body {
            assert!(
                body.kind != "announce_to",
                "recipients shown to a recipient"
            );
            if body.kind == "announce_read" || body.kind == "announce_ack" {
                assert_eq!(event.from.id, "p0-1", "another's receipt shown");
            }
        }
    }
    assert!(seen
        .events
        .iter()
        .any(|e| matches!(&e.body, Body::Kind(b) if b.kind == "announce")));
    assert_eq!(
        refused(
            p01.request_kind::<StatusOk>(&AnnounceRequest::AnnounceStatus {
                id: None,
                room: room.clone()
            })
            .await
        ),
        ErrorCode::Forbidden
    );
    // Staff see the counts too; the sender finds it in their list.
    assert_eq!(status(&mut staff, &room).await.read, 2);
    let list: preau::kinds::announce::SentList = t0
        .request_kind(&AnnounceRequest::Announcements { id: None })
        .await
        .unwrap();
    assert_eq!(list.sent.len(), 1);
    assert_eq!(
        (list.sent[0].room.as_str(), list.sent[0].recipients),
        (room.as_str(), 4)
    );
}

#[tokio::test]
async fn quiet_hours_hold_it_unless_staff_make_it_urgent() {
    let (_, clock) = manual_clock(TUESDAY_10H + 12 * HOUR); // 22:00 Paris
    let server = server(clock, &school(1, 1)).await;
    let mut staff = client(&server.url(), &who("proviseur")).await;
    let mut t0 = client(&server.url(), &who("t0")).await;
    // The teacher's default: quiet after 20:00.
    let normal: AnnounceOk = staff
        .request_kind(&announce(&["teachers"], false, false))
        .await
        .unwrap();
    let urgent: AnnounceOk = staff
        .request_kind(&announce(&["teachers"], false, true))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let items = loop {
        let feed: FeedOk = t0
            .request_kind(&FeedRequest::Feed {
                id: None,
                before: None,
                limit: None,
            })
            .await
            .unwrap();
        if feed.items.len() == 2 {
            break feed.items;
        }
        assert!(tokio::time::Instant::now() < deadline, "{feed:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let held = |room: &str| {
        items
            .iter()
            .find(|i| i.fields.room == room)
            .unwrap()
            .fields
            .hold_until
    };
    assert_eq!(held(&normal.room), Some(TUESDAY_10H + 21 * HOUR));
    assert_eq!(held(&urgent.room), None);
    // The override is in the audit log, which staff read.
    open_rooms_as(&server.url(), &who("proviseur"), &["_/audit/log"]).await;
    let log = staff
        .history("_/audit/log", None, None, None)
        .await
        .unwrap();
    assert!(
        log.events
            .iter()
            .any(|e| matches!(&e.body, Body::Kind(b) if b.kind == "announce_urgent")),
        "{:?}",
        log.events
    );
}

/// Recipients on two nodes: each one's receipt is counted once, whichever
/// node the sender asks.
#[tokio::test]
async fn read_counts_are_right_across_two_nodes() {
    let redis = RedisServer::start().await;
    let (_, clock) = manual_clock(TUESDAY_10H);
    let school = school(2, 4);
    let node = |id: &'static str| {
        let (url, clock, school) = (redis.url(), clock.clone(), school.clone());
        async move {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut config = config(dir.path());
            config.admin_key = Some(ADMIN_KEY.to_owned());
            config.redis = Some(url);
            config.node_id = id.to_owned();
            let server = preau::start_with_clock(config, clock)
                .await
                .expect("starts");
            let server = TestServer { server, dir };
            if id == "a" {
                // The ENT syncs one node; b takes it through Redis.
                sync_directory(server.addr(), &school).await;
            }
            server
        }
    };
    let a = node("a").await;
    let b = node("b").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while Client::connect(&b.url(), &who("p0-0")).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b never took the directory"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut staff = client(&a.url(), &who("proviseur")).await;
    // Right after start, the cluster may still be resynchronising.
    let deadline = tokio::time::Instant::now() + WAIT;
    let sent: AnnounceOk = loop {
        match staff
            .request_kind(&announce(&["parents:C0", "parents:C1"], false, false))
            .await
        {
            Ok(sent) => break sent,
            Err(ClientError::Refused(reply))
                if reply.code == ErrorCode::Unavailable
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(reply.retry_after_ms.unwrap_or(100))).await
            }
            Err(err) => panic!("{err}"),
        }
    };
    assert_eq!(sent.recipients, 10);
    // Half the parents read it on a, half on b.
    let parents = [
        "p0-0", "q0-0", "p0-1", "p0-2", "p0-3", "p1-0", "q1-0", "p1-1", "p1-2", "p1-3",
    ];
    for (i, parent) in parents.iter().enumerate().take(6) {
        let url = if i % 2 == 0 { a.url() } else { b.url() };
        let mut client = client(&url, &who(parent)).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match client
                .request_kind::<PostOk>(&AnnounceRequest::AnnounceRead {
                    id: None,
                    room: sent.room.clone(),
                })
                .await
            {
                Ok(_) => break,
                // b may not have the announcement yet.
                Err(err) if tokio::time::Instant::now() < deadline => {
                    let _ = err;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => panic!(
                    "{parent} on node {}: {err}",
                    if i % 2 == 0 { "a" } else { "b" }
                ),
            }
        }
    }
    for node in [&a, &b] {
        let mut staff = client(&node.url(), &who("proviseur")).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match staff
                .request_kind::<StatusOk>(&AnnounceRequest::AnnounceStatus {
                    id: None,
                    room: sent.room.clone(),
                })
                .await
            {
                Ok(status) if status.read == 6 => {
                    assert_eq!(status.not_read.len(), 4);
                    break;
                }
                other => {
                    assert!(tokio::time::Instant::now() < deadline, "{other:?}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}
