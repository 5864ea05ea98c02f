//! A user's data on request: export and erasure through `/admin/` (the
//! key, what the export holds, what erasure redacts live, rewrites and
//! keeps). Real sockets, real sled.

mod support;

use preau::client::Client;
use preau::protocol::{Body, Event, ModAction, PostOk, Request};
use serde_json::Value;
use support::*;

const ROOM: &str = "3B/chat/revision";
const AUDIT: &str = "3B/audit/log";
const KEY: &str = ADMIN_KEY;

async fn admin_server() -> TestServer {
    TestServer::start_with(|c| c.admin_key = Some(KEY.to_owned())).await
}

/// An `/admin/` call with the right key; the JSON body of a 200.
async fn admin(server: &TestServer, method: &str, path: &str) -> Value {
    let auth = format!("Bearer {KEY}");
    let (status, body) =
        http_request(server.addr(), method, path, &[("Authorization", &auth)]).await;
    assert_eq!(status, 200, "{method} {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"))
}

async fn joined(server: &TestServer, token: &str, room: &str) -> Client {
    let (mut client, _) = server.connect(token).await;
    client.join(room, None).await.expect("join");
    client
}

async fn history(client: &mut Client, room: &str) -> Vec<Event> {
    let page = client
        .history(room, None, Some(0), Some(200))
        .await
        .expect("history");
    assert!(!page.more);
    page.events
}

/// The next event that is not ana's or bob's post (teachers see those too).
async fn next_moderation(client: &mut Client) -> Event {
    loop {
        let event = next_event(client).await;
        if matches!(event.body, Body::Moderation { .. }) {
            return event;
        }
    }
}

/// ana posts twice and reports bob's post; bob posts once; the teacher
/// mutes ana. Returns the teacher's client (joined to the room) and the
/// offsets of ana's posts.
async fn classroom(server: &TestServer) -> (Client, Vec<u64>) {
    let mut teacher = joined(server, &teacher("prof", "3B"), ROOM).await;
    let mut ana = joined(server, &student("ana", "3B"), ROOM).await;
    let mut bob = joined(server, &student("bob", "3B"), ROOM).await;
    let first = ana.post(ROOM, "bonjour, c'est ana").await.expect("post");
    let second = ana.post(ROOM, "ma question de maths").await.expect("post");
    let bobs = bob.post(ROOM, "salut, c'est bob").await.expect("post");
    ana.request::<PostOk>(Request::Report {
        id: None,
        room: ROOM.to_owned(),
        offset: bobs.offset,
        reason: Some("ana trouve ça méchant".to_owned()),
    })
    .await
    .expect("report");
    teacher
        .moderate(
            ROOM,
            ModAction::Mute {
                user: "ana".to_owned(),
                seconds: 60,
                reason: None,
                announce: false,
            },
        )
        .await
        .expect("mute");
    (teacher, vec![first.offset, second.offset])
}

#[tokio::test]
async fn admin_endpoints_need_an_admin_key() {
    // No key configured: the endpoints do not exist.
    let server = TestServer::start().await;
    let (status, _) = http_get(server.addr(), "/admin/users/ana/export").await;
    assert_eq!(status, 404);

    let server = admin_server().await;
    let path = "/admin/users/ana/export";
    let (status, _) = http_get(server.addr(), path).await;
    assert_eq!(status, 401, "no key");
    let wrong = format!("Bearer {KEY}x");
    for auth in [wrong.as_str(), KEY, "Bearer "] {
        let (status, _) =
            http_request(server.addr(), "GET", path, &[("Authorization", auth)]).await;
        assert_eq!(status, 401, "Authorization: {auth}");
    }
    // A token of the ENT's staff is not the key.
    let staff = format!(
        "Bearer {}",
        token("dpo", preau::protocol::Role::Staff, &["3B"])
    );
    let (status, _) = http_request(
        server.addr(),
        "POST",
        "/admin/users/ana/erase",
        &[("Authorization", &staff)],
    )
    .await;
    assert_eq!(status, 401, "staff token");
    let auth = format!("Bearer {KEY}");
    let long = format!("/admin/users/{}/export", "a".repeat(129));
    let (status, _) = http_request(server.addr(), "GET", &long, &[("Authorization", &auth)]).await;
    assert_eq!(status, 400, "user id too long");
    let export = admin(&server, "GET", path).await;
    assert_eq!(export["user"], "ana");
    assert_eq!(export["written"], Value::Array(Vec::new()));
}

#[tokio::test]
async fn export_holds_what_the_user_wrote_and_what_concerns_them() {
    let server = admin_server().await;
    classroom(&server).await;
    let export = admin(&server, "GET", "/admin/users/ana/export").await;
    let written = export["written"].as_array().expect("written");
    let texts: Vec<&str> = written
        .iter()
        .filter_map(|e| e["body"]["text"].as_str())
        .collect();
    assert_eq!(texts, ["bonjour, c'est ana", "ma question de maths"]);
    let report = written
        .iter()
        .find(|e| e["body"]["kind"] == "report")
        .expect("ana's report");
    assert_eq!(report["room"], AUDIT);
    assert_eq!(report["body"]["reason"], "ana trouve ça méchant");
    assert!(written.iter().all(|e| e["from"]["id"] == "ana"));
    // The mute, in the room and in the audit log.
    let about = export["about"].as_array().expect("about");
    let rooms: Vec<&str> = about.iter().filter_map(|e| e["room"].as_str()).collect();
    assert_eq!(rooms, [AUDIT, ROOM], "{about:?}");
    assert!(about.iter().all(|e| e["from"]["id"] == "prof"));
    // Nothing of bob's.
    assert!(!serde_json::to_string(&export)
        .expect("json")
        .contains("salut, c'est bob"));
}

#[tokio::test]
async fn erasure_redacts_live_and_leaves_no_name_or_words() {
    let server = admin_server().await;
    let (mut prof, offsets) = classroom(&server).await;
    let erasure = admin(&server, "POST", "/admin/users/ana/erase").await;
    assert_eq!(erasure["user"], "ana");
    assert_eq!(erasure["redacted"], 2, "{erasure}");
    assert_eq!(erasure["anonymized"], 1, "the report: {erasure}");
    assert_eq!(
        erasure["kept"], 2,
        "the mute and its audit entry: {erasure}"
    );

    // The room's members see both messages go, as redactions by préau.
    let mut redacted = Vec::new();
    while redacted.len() < 2 {
        let event = next_moderation(&mut prof).await;
        if let Body::Moderation {
            action: ModAction::Redact { offset, reason },
            target_from,
            ..
        } = event.body
        {
            assert_eq!(event.from.id, "preau");
            assert_eq!(reason.as_deref(), Some(preau::privacy::ERASURE_REASON));
            assert_eq!(target_from.map(|t| t.id).as_deref(), Some("erased"));
            redacted.push(offset);
        }
    }
    assert_eq!(redacted, offsets);

    // History names nobody and keeps no words of hers; the mute stays.
    let events = history(&mut prof, ROOM).await;
    for offset in &offsets {
        let tombstone = events.iter().find(|e| e.offset == *offset).expect("kept");
        assert!(matches!(tombstone.body, Body::Redacted { .. }));
        assert_eq!(tombstone.from.id, "erased");
    }
    let audit = history(&mut prof, AUDIT).await;
    let report = audit
        .iter()
        .find(|e| matches!(e.body, Body::Report { .. }))
        .expect("the report stays for the teacher");
    assert_eq!(report.from.id, "erased");
    assert!(matches!(&report.body, Body::Report { reason: None, .. }));
    let everything = format!("{events:?} {audit:?}");
    for gone in ["Name of ana", "bonjour", "maths", "méchant"] {
        assert!(!everything.contains(gone), "{gone:?} still stored");
    }
    assert!(events.iter().any(|e| matches!(
        &e.body,
        Body::Moderation { action: ModAction::Mute { user, .. }, .. } if user == "ana"
    )));

    // A new connection's join sees the same (nothing cached the old bytes).
    let mut late = joined(&server, &teacher("prof2", "3B"), ROOM).await;
    assert_eq!(history(&mut late, ROOM).await, events);

    // Her export is empty but for the kept mute; a second erasure finds
    // nothing more to do.
    let export = admin(&server, "GET", "/admin/users/ana/export").await;
    assert_eq!(export["written"], Value::Array(Vec::new()));
    assert_eq!(export["about"].as_array().map(Vec::len), Some(2));
    let again = admin(&server, "POST", "/admin/users/ana/erase").await;
    assert_eq!(
        (&again["redacted"], &again["anonymized"]),
        (&Value::from(0), &Value::from(0))
    );
    // Nothing of bob's moved.
    assert!(events
        .iter()
        .any(|e| matches!(&e.body, Body::Message { text, .. } if text == "salut, c'est bob")));
}

#[tokio::test]
async fn erasing_a_forum_author_deletes_their_thread_edits_and_read_marks() {
    use preau::protocol::{Flavour, HistoryOk, ThreadsOk};
    const FORUM: &str = "3B/forum/aide";
    let server = admin_server().await;
    let (mut prof, _) = server.connect(&teacher("prof", "3B")).await;
    prof.moderate(
        FORUM,
        ModAction::Configure {
            flavour: Flavour::Help,
            classes: Vec::new(),
            moderators: Vec::new(),
        },
    )
    .await
    .expect("configure");
    let mut ana = joined(&server, &student("ana", "3B"), FORUM).await;
    let mut bob = joined(&server, &student("bob", "3B"), FORUM).await;
    let post = |text: &str, title: Option<&str>, thread: Option<u64>| Request::Post {
        id: None,
        room: FORUM.to_owned(),
        text: text.to_owned(),
        title: title.map(str::to_owned),
        thread,
        reply_to: None,
        quote: None,
        key: None,
    };
    let thread = ana
        .request::<PostOk>(post(
            "je ne comprends pas l'exercice 3",
            Some("Exercice 3 de ana"),
            None,
        ))
        .await
        .expect("new thread")
        .offset;
    let edit = ana
        .request::<PostOk>(Request::Edit {
            id: None,
            room: FORUM.to_owned(),
            offset: thread,
            text: "je ne comprends pas l'exercice 3, question b".to_owned(),
            title: None,
        })
        .await
        .expect("edit")
        .offset;
    let reply = bob
        .request::<PostOk>(post("regarde le cours page 12", None, Some(thread)))
        .await
        .expect("reply")
        .offset;
    ana.request::<rmpv::Value>(Request::MarkRead {
        id: None,
        room: FORUM.to_owned(),
        thread,
        offset: reply,
    })
    .await
    .expect("mark read");
    let export = admin(&server, "GET", "/admin/users/ana/export").await;
    assert_eq!(
        export["written"].as_array().map(Vec::len),
        Some(2),
        "{export}"
    );
    assert_eq!(export["read_marks"][0]["offset"], reply);

    // Bob's reply told her, through her feed: wait for it, so the count
    // below does not depend on when it was stored.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let feed: preau::kinds::inbox::FeedOk = ana
            .request_kind(&preau::kinds::inbox::FeedRequest::Feed {
                id: None,
                before: None,
                limit: None,
            })
            .await
            .expect("feed");
        if feed.items.iter().any(|i| i.fields.what == "reply") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{feed:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let erasure = admin(&server, "POST", "/admin/users/ana/erase").await;
    assert_eq!(
        erasure["redacted"], 2,
        "her post, and the reply's notification in her feed: {erasure}"
    );
    assert_eq!(erasure["anonymized"], 1, "the edit's tombstone: {erasure}");
    assert_eq!(erasure["read_marks_deleted"], 1, "{erasure}");

    // The live thread list no longer names her, nor shows her title.
    let list: ThreadsOk = bob
        .request(Request::Threads {
            id: None,
            room: FORUM.to_owned(),
            before: None,
            limit: None,
        })
        .await
        .expect("threads");
    let info = &list.threads[0];
    assert!(info.deleted);
    assert_eq!(
        (info.from.id.as_str(), info.title.as_deref()),
        ("erased", None)
    );
    // The thread keeps bob's reply; her post and its edit are tombstones.
    let page: HistoryOk = bob
        .request(Request::History {
            id: None,
            room: FORUM.to_owned(),
            before: None,
            after: Some(0),
            limit: None,
            thread: Some(thread),
        })
        .await
        .expect("thread history");
    let by_offset = |offset: u64| page.events.iter().find(|e| e.offset == offset);
    for offset in [thread, edit] {
        let event = by_offset(offset).unwrap_or_else(|| panic!("{offset} kept"));
        assert!(matches!(event.body, Body::Redacted { .. }), "{event:?}");
        assert_eq!(event.from.id, "erased");
    }
    assert!(matches!(
        &by_offset(reply).expect("reply").body,
        Body::Message { text, .. } if text == "regarde le cours page 12"
    ));
    let stored = format!("{:?}", page.events);
    for gone in ["exercice 3", "Name of ana"] {
        assert!(!stored.contains(gone), "{gone:?} still stored");
    }
    let export = admin(&server, "GET", "/admin/users/ana/export").await;
    assert_eq!(export["read_marks"], Value::Array(Vec::new()));
}
