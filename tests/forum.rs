//! Forums (issue 4): threads and replies in real time, the thread list with
//! last activity and unread counts, help answers, edits with their history
//! and window, own deletion, locked threads, inter-class grants, the
//! authorization matrix of kind `forum`, and bad input. Real sockets, real
//! sled.

mod support;

use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use preau::client::{Client, ClientError};
use preau::protocol::{
    Body, ErrorCode, Event, Flavour, HistoryOk, ModAction, PostOk, Request, Role, ThreadsOk,
};
use support::*;

const FORUM: &str = "3B/forum/debat-ch3";
const AUDIT: &str = "3B/audit/log";

// ---------------------------------------------------------------- helpers

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {WAIT:?}"))
}

fn outcome<T>(result: &Result<T, ClientError>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(ClientError::Refused(reply)) => reply.code.as_str().to_owned(),
        Err(other) => format!("<{other}>"),
    }
}

fn ok<T: Debug>(what: &str, result: Result<T, ClientError>) -> T {
    result.unwrap_or_else(|err| panic!("{what}: expected ok, got {err:?}"))
}

fn refused<T: Debug>(what: &str, result: Result<T, ClientError>, code: ErrorCode) {
    match result {
        Err(ClientError::Refused(reply)) if reply.code == code => {}
        other => panic!("{what}: expected {code}, got {other:?}"),
    }
}

async fn ask<T: serde::de::DeserializeOwned>(
    client: &mut Client,
    request: Request,
) -> Result<T, ClientError> {
    let what = format!("{request:?}");
    within(&what, client.request(request)).await
}

fn staff(id: &str) -> String {
    token(id, Role::Staff, &[])
}

async fn configure(
    client: &mut Client,
    room: &str,
    flavour: Flavour,
    classes: &[&str],
    moderators: &[&str],
) -> Result<PostOk, ClientError> {
    let action = ModAction::Configure {
        flavour,
        classes: classes.iter().map(|s| s.to_string()).collect(),
        moderators: moderators.iter().map(|s| s.to_string()).collect(),
    };
    within("configure", client.moderate(room, action)).await
}

async fn moderate(
    client: &mut Client,
    room: &str,
    action: ModAction,
) -> Result<PostOk, ClientError> {
    within("moderate", client.moderate(room, action)).await
}

fn post_req(room: &str, text: &str, title: Option<&str>, thread: Option<u64>) -> Request {
    Request::Post {
        id: None,
        room: room.to_owned(),
        text: text.to_owned(),
        title: title.map(str::to_owned),
        thread,
        reply_to: None,
        quote: None,
        key: None,
    }
}

async fn new_thread(
    client: &mut Client,
    room: &str,
    title: &str,
    text: &str,
) -> Result<PostOk, ClientError> {
    ask(client, post_req(room, text, Some(title), None)).await
}

async fn reply(
    client: &mut Client,
    room: &str,
    thread: u64,
    text: &str,
) -> Result<PostOk, ClientError> {
    ask(client, post_req(room, text, None, Some(thread))).await
}

async fn edit(
    client: &mut Client,
    room: &str,
    offset: u64,
    text: &str,
) -> Result<PostOk, ClientError> {
    ask(
        client,
        Request::Edit {
            id: None,
            room: room.to_owned(),
            offset,
            text: text.to_owned(),
            title: None,
        },
    )
    .await
}

async fn threads(client: &mut Client, room: &str) -> Result<ThreadsOk, ClientError> {
    ask(
        client,
        Request::Threads {
            id: None,
            room: room.to_owned(),
            before: None,
            limit: None,
        },
    )
    .await
}

async fn thread_history(
    client: &mut Client,
    room: &str,
    thread: u64,
    before: Option<u64>,
    after: Option<u64>,
    limit: Option<u32>,
) -> Result<HistoryOk, ClientError> {
    ask(
        client,
        Request::History {
            id: None,
            room: room.to_owned(),
            before,
            after,
            limit,
            thread: Some(thread),
        },
    )
    .await
}

async fn join_ok(client: &mut Client, room: &str) {
    ok("join", within("join", client.join(room, None)).await);
}

/// The next event, skipping presence and typing.
async fn event(client: &mut Client) -> Event {
    within("event", next_event(client)).await
}

/// A clock the test moves by hand (ms since the Unix epoch).
fn manual_clock(start: u64) -> (Arc<AtomicU64>, preau::hub::Clock) {
    let now = Arc::new(AtomicU64::new(start));
    let read = now.clone();
    (now, Arc::new(move || read.load(Ordering::SeqCst)))
}

async fn server_with_clock(clock: preau::hub::Clock) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path());
    let server = preau::start_with_clock(config, clock)
        .await
        .expect("server starts");
    TestServer { server, dir }
}

/// Opens `room` as a help forum of 3B; returns its teacher and a pupil,
/// both joined.
async fn help_forum(server: &TestServer, room: &str) -> (Client, Client) {
    let (mut prof, _) = server.connect(&teacher("prof", "3B")).await;
    ok(
        "configure",
        configure(&mut prof, room, Flavour::Help, &[], &[]).await,
    );
    join_ok(&mut prof, room).await;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    join_ok(&mut ana, room).await;
    (prof, ana)
}

// ------------------------------------------------------ 1. the matrix

/// Columns of the forum matrix. A row's user acts in `3B/forum/inter`, an
/// inter-class forum of 3B that grants class 5C and moderator `tea6d`.
const COLS: [&str; 15] = [
    "read",
    "new thread",
    "reply",
    "edit own",
    "edit other",
    "delete own",
    "redact other",
    "mute",
    "kick",
    "ban",
    "slow mode",
    "lock thread",
    "pin",
    "report",
    "read audit",
];
const INTER: &str = "3B/forum/inter";

struct Row {
    label: &'static str,
    token: String,
    want: [&'static str; 15],
}

fn parent_token(user: &str) -> String {
    let mut c = claims(user, Role::Parent, &["3B"]);
    c.children = vec!["zoe".into()];
    keyring().mint(&c).expect("mint parent token")
}

fn forum_rows() -> Vec<Row> {
    const F: &str = "forbidden";
    // A user who cannot join gets `not_joined` for what needs membership
    // (post, edit); their refused join made them no member.
    const NJ: &str = "not_joined";
    const OUTSIDER: [&str; 15] = [F, NJ, NJ, NJ, NJ, F, F, F, F, F, F, F, F, F, F];
    const MODERATOR: [&str; 15] = [
        "ok", "ok", "ok", "ok", F, "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok",
    ];
    const PUPIL: [&str; 15] = [
        "ok", "ok", "ok", "ok", F, "ok", F, F, F, F, F, F, F, "ok", F,
    ];
    // A granted moderator from another class moderates the forum but does
    // not read 3B's audit log.
    const GUEST_MODERATOR: [&str; 15] = [
        "ok", "ok", "ok", "ok", F, "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", F,
    ];
    vec![
        Row {
            label: "student-3B",
            token: student("stu3b", "3B"),
            want: PUPIL,
        },
        Row {
            label: "student-5C (granted class)",
            token: student("stu5c", "5C"),
            want: PUPIL,
        },
        Row {
            label: "student-4A",
            token: student("stu4a", "4A"),
            want: OUTSIDER,
        },
        Row {
            label: "teacher-3B",
            token: teacher("tea3b", "3B"),
            want: MODERATOR,
        },
        Row {
            label: "teacher-6D (granted moderator)",
            token: teacher("tea6d", "6D"),
            want: GUEST_MODERATOR,
        },
        Row {
            label: "teacher-4A",
            token: teacher("tea4a", "4A"),
            want: OUTSIDER,
        },
        Row {
            label: "parent-3B",
            token: parent_token("par3b"),
            want: OUTSIDER,
        },
        Row {
            label: "staff",
            token: staff("staff1"),
            want: MODERATOR,
        },
    ]
}

async fn forum_row(row: &Row) -> Vec<String> {
    let server = TestServer::start().await;
    let (mut admin, _) = server.connect(&staff("admin")).await;
    ok(
        "configure",
        configure(&mut admin, INTER, Flavour::Interclass, &["5C"], &["tea6d"]).await,
    );
    join_ok(&mut admin, INTER).await;
    let (mut zoe, _) = server.connect(&student("zoe", "3B")).await;
    join_ok(&mut zoe, INTER).await;
    let thread = ok(
        "zoe's thread",
        new_thread(&mut zoe, INTER, "Question", "Pourquoi ?").await,
    )
    .offset;
    let zoe_reply = ok(
        "zoe's reply",
        reply(&mut zoe, INTER, thread, "Parce que.").await,
    )
    .offset;

    let (mut actor, _) = server.connect(&row.token).await;
    let mut got = vec![outcome(&within("join", actor.join(INTER, None)).await)];
    got.push(outcome(
        &new_thread(&mut actor, INTER, "Mon sujet", "Bonjour").await,
    ));
    let mine = reply(&mut actor, INTER, thread, "Ma réponse").await;
    got.push(outcome(&mine));
    let own = mine.as_ref().map(|p| p.offset).unwrap_or(u64::MAX);
    got.push(outcome(
        &edit(&mut actor, INTER, own, "Ma réponse, corrigée").await,
    ));
    got.push(outcome(
        &edit(&mut actor, INTER, zoe_reply, "Texte changé").await,
    ));
    let own_delete = if mine.is_ok() {
        moderate(&mut actor, INTER, redact(own)).await
    } else {
        // Nothing of theirs to delete: deleting zoe's first post is
        // moderation, which they are refused anyway.
        moderate(&mut actor, INTER, redact(thread)).await
    };
    got.push(outcome(&own_delete));
    got.push(outcome(
        &moderate(&mut actor, INTER, redact(zoe_reply)).await,
    ));
    got.push(outcome(
        &moderate(
            &mut actor,
            INTER,
            ModAction::Mute {
                user: "zoe".into(),
                seconds: 60,
                reason: None,
                announce: false,
            },
        )
        .await,
    ));
    got.push(outcome(
        &moderate(
            &mut actor,
            INTER,
            ModAction::Kick {
                user: "zoe".into(),
                reason: None,
                announce: false,
            },
        )
        .await,
    ));
    got.push(outcome(
        &moderate(
            &mut actor,
            INTER,
            ModAction::Ban {
                user: "zoe".into(),
                reason: None,
                announce: false,
            },
        )
        .await,
    ));
    got.push(outcome(
        &moderate(&mut actor, INTER, ModAction::SlowMode { seconds: 5 }).await,
    ));
    got.push(outcome(
        &moderate(
            &mut actor,
            INTER,
            ModAction::ReadOnly {
                on: true,
                thread: Some(thread),
            },
        )
        .await,
    ));
    got.push(outcome(
        &moderate(&mut actor, INTER, ModAction::Pin { offset: thread }).await,
    ));
    got.push(outcome(
        &ask::<PostOk>(
            &mut actor,
            Request::Report {
                id: None,
                room: INTER.into(),
                offset: thread,
                reason: Some("hors sujet".into()),
            },
        )
        .await,
    ));
    got.push(outcome(
        &within("audit", actor.history(AUDIT, None, None, None)).await,
    ));
    got
}

#[tokio::test]
async fn authorization_matrix_for_forums() {
    let rows = forum_rows();
    let mut wrong = Vec::new();
    let mut table = format!("{:<32}", "user");
    for col in COLS {
        table.push_str(&format!(" {col:<13}"));
    }
    table.push('\n');
    for row in &rows {
        let got = forum_row(row).await;
        table.push_str(&format!("{:<32}", row.label));
        for ((col, got), want) in COLS.iter().zip(&got).zip(row.want) {
            if got == want {
                table.push_str(&format!(" {got:<13}"));
            } else {
                table.push_str(&format!(" !!{got}(want {want})"));
                wrong.push(format!("{}/{col}", row.label));
            }
        }
        table.push('\n');
    }
    assert!(wrong.is_empty(), "wrong cells: {wrong:?}\n{table}");
}

fn redact(offset: u64) -> ModAction {
    ModAction::Redact {
        offset,
        reason: None,
    }
}

// ------------------------------------------- 2. threads in real time

#[tokio::test]
async fn threads_and_replies_arrive_live_and_bump_the_list() {
    let server = TestServer::start().await;
    let (mut prof, _) = server.connect(&teacher("prof", "3B")).await;
    ok(
        "configure",
        configure(&mut prof, FORUM, Flavour::Debate, &[], &[]).await,
    );
    join_ok(&mut prof, FORUM).await;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    join_ok(&mut ana, FORUM).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    join_ok(&mut bob, FORUM).await;

    // Debate: only moderators open threads.
    refused(
        "pupil opens a debate thread",
        new_thread(&mut ana, FORUM, "Mon sujet", "...").await,
        ErrorCode::Forbidden,
    );
    let first = ok(
        "teacher opens",
        new_thread(
            &mut prof,
            FORUM,
            "La révolution de 1789",
            "Qu'en pensez-vous ?",
        )
        .await,
    );
    let second = ok(
        "teacher opens a second",
        new_thread(&mut prof, FORUM, "Les causes", "Listez-les.").await,
    );
    for client in [&mut ana, &mut bob] {
        let e = event(client).await;
        assert_eq!(e.offset, first.offset);
        assert!(
            matches!(&e.body, Body::Message { title: Some(t), .. } if t == "La révolution de 1789")
        );
        assert_eq!(event(client).await.offset, second.offset);
    }
    // The newest activity comes first; a reply bumps the older thread.
    let list = ok("threads", threads(&mut ana, FORUM).await);
    let order: Vec<u64> = list.threads.iter().map(|t| t.thread).collect();
    assert_eq!(order, vec![second.offset, first.offset]);
    assert_eq!(list.settings.flavour, Flavour::Debate);
    let r1 = ok(
        "ana replies",
        reply(&mut ana, FORUM, first.offset, "Une rupture.").await,
    );
    let live = event(&mut bob).await;
    assert_eq!(live.offset, r1.offset);
    assert!(matches!(live.body, Body::Message { thread: Some(t), .. } if t == first.offset));
    let list = ok("threads", threads(&mut bob, FORUM).await);
    let order: Vec<u64> = list.threads.iter().map(|t| t.thread).collect();
    assert_eq!(order, vec![first.offset, second.offset], "bumped");
    let top = &list.threads[0];
    assert_eq!(
        (top.last_offset, top.replies, top.unread),
        (r1.offset, 1, 2),
        "bob has read nothing: the first post and ana's reply are unread"
    );
    assert_eq!(top.title.as_deref(), Some("La révolution de 1789"));

    // Unread counts follow mark_read; one's own posts count as read.
    let _: rmpv::Value = ok(
        "mark read",
        ask(
            &mut bob,
            Request::MarkRead {
                id: None,
                room: FORUM.into(),
                thread: first.offset,
                offset: r1.offset,
            },
        )
        .await,
    );
    let r2 = ok(
        "ana again",
        reply(&mut ana, FORUM, first.offset, "Et une continuité.").await,
    );
    let list = ok("threads", threads(&mut bob, FORUM).await);
    assert_eq!(list.threads[0].unread, 1, "only r2 is new for bob");
    let list = ok("threads", threads(&mut ana, FORUM).await);
    assert_eq!(
        list.threads[0].unread, 1,
        "ana wrote both replies: only the first post is unread"
    );

    // A reply may answer a post of the same thread and quote it.
    let quoted = ok(
        "quote",
        ask::<PostOk>(
            &mut bob,
            Request::Post {
                id: None,
                room: FORUM.into(),
                text: "Je ne suis pas d'accord.".into(),
                title: None,
                thread: Some(first.offset),
                reply_to: Some(r2.offset),
                quote: Some("continuité".into()),
                key: None,
            },
        )
        .await,
    );
    let live = loop {
        let e = event(&mut prof).await;
        if e.offset == quoted.offset {
            break e;
        }
    };
    assert!(matches!(
        live.body,
        Body::Message { reply_to: Some(r), quote: Some(ref q), .. } if r == r2.offset && q == "continuité"
    ));

    // Thread history pages over that thread only.
    let page = ok(
        "thread history",
        thread_history(&mut ana, FORUM, first.offset, None, None, Some(2)).await,
    );
    let offsets: Vec<u64> = page.events.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, vec![r2.offset, quoted.offset]);
    assert!(page.more);
    let older = ok(
        "older page",
        thread_history(
            &mut ana,
            FORUM,
            first.offset,
            Some(r2.offset),
            None,
            Some(10),
        )
        .await,
    );
    let offsets: Vec<u64> = older.events.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, vec![first.offset, r1.offset]);
    assert!(!older.more);
    let forward = ok(
        "forward page",
        thread_history(
            &mut ana,
            FORUM,
            first.offset,
            None,
            Some(r1.offset),
            Some(10),
        )
        .await,
    );
    let offsets: Vec<u64> = forward.events.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, vec![r2.offset, quoted.offset]);
    let other = ok(
        "other thread",
        thread_history(&mut ana, FORUM, second.offset, None, None, None).await,
    );
    assert_eq!(other.events.len(), 1);

    // The index survives a restart (rebuilt from the stored events).
    drop((prof, ana, bob));
    let TestServer { server, dir } = server;
    server.shutdown();
    server.wait().await.expect("clean stop");
    let server = TestServer {
        server: preau::start(config(dir.path())).await.expect("restart"),
        dir,
    };
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    let list = ok("threads after restart", threads(&mut bob, FORUM).await);
    let top = &list.threads[0];
    assert_eq!(
        (top.thread, top.replies, top.unread, top.last_offset),
        (first.offset, 3, 1, quoted.offset),
        "{list:?}"
    );
}

#[tokio::test]
async fn help_forum_answers_are_marked_by_the_asker_or_a_moderator() {
    let server = TestServer::start().await;
    let room = "3B/forum/aide-maths";
    let (mut prof, _) = server.connect(&teacher("prof", "3B")).await;
    ok(
        "configure",
        configure(&mut prof, room, Flavour::Help, &[], &[]).await,
    );
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    join_ok(&mut ana, room).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    join_ok(&mut bob, room).await;
    let question = ok(
        "ana asks",
        new_thread(
            &mut ana,
            room,
            "Exercice 4",
            "Je ne comprends pas la question b.",
        )
        .await,
    )
    .offset;
    let answer = ok(
        "bob answers",
        reply(&mut bob, room, question, "Il faut factoriser.").await,
    )
    .offset;
    let mark = |offset: Option<u64>| Request::Answer {
        id: None,
        room: room.into(),
        thread: question,
        offset,
    };
    refused(
        "bob marks his own answer",
        ask::<PostOk>(&mut bob, mark(Some(answer))).await,
        ErrorCode::Forbidden,
    );
    refused(
        "the question is not an answer",
        ask::<PostOk>(&mut ana, mark(Some(question))).await,
        ErrorCode::UnknownTarget,
    );
    ok(
        "ana marks",
        ask::<PostOk>(&mut ana, mark(Some(answer))).await,
    );
    let list = ok("threads", threads(&mut bob, room).await);
    assert_eq!(list.threads[0].answer, Some(answer));
    // Everyone sees the mark live.
    let seen = loop {
        let e = event(&mut bob).await;
        if let Body::Answer { thread, offset } = e.body {
            break (thread, offset);
        }
    };
    assert_eq!(seen, (question, Some(answer)));
    join_ok(&mut prof, room).await;
    ok("prof unmarks", ask::<PostOk>(&mut prof, mark(None)).await);
    let list = ok("threads", threads(&mut bob, room).await);
    assert_eq!(list.threads[0].answer, None);
    // Answers are for help forums, not debates.
    ok(
        "debate",
        configure(&mut prof, FORUM, Flavour::Debate, &[], &[]).await,
    );
    join_ok(&mut prof, FORUM).await;
    let debate = ok(
        "debate thread",
        new_thread(&mut prof, FORUM, "Débat", "?").await,
    )
    .offset;
    refused(
        "answer in a debate",
        ask::<PostOk>(
            &mut prof,
            Request::Answer {
                id: None,
                room: FORUM.into(),
                thread: debate,
                offset: None,
            },
        )
        .await,
        ErrorCode::Forbidden,
    );
}

// ------------------------------------------------------------ 3. edits

#[tokio::test]
async fn edits_keep_their_history_within_the_window_and_stop_after_a_reply() {
    let start = 1_800_000_000_000;
    let (now, clock) = manual_clock(start);
    let server = server_with_clock(clock).await;
    let room = "3B/forum/aide";
    let (mut prof, mut ana) = help_forum(&server, room).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    join_ok(&mut bob, room).await;

    let thread = ok(
        "ask",
        new_thread(&mut ana, room, "Titre", "Premier jet").await,
    )
    .offset;
    let e1 = ok("edit", edit(&mut ana, room, thread, "Second jet").await);
    let live = loop {
        let e = event(&mut bob).await;
        if e.offset == e1.offset {
            break e;
        }
    };
    assert!(matches!(
        live.body,
        Body::Edit { target, thread: t, ref text, .. } if target == thread && t == thread && text == "Second jet"
    ));
    // Who saw what: the history holds both versions, in order.
    let page = ok(
        "history",
        thread_history(&mut bob, room, thread, None, None, None).await,
    );
    let texts: Vec<String> = page
        .events
        .iter()
        .map(|e| match &e.body {
            Body::Message { text, .. } | Body::Edit { text, .. } => text.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(texts, vec!["Premier jet", "Second jet"]);
    // A title edit renames the thread.
    ok(
        "retitle",
        ask::<PostOk>(
            &mut ana,
            Request::Edit {
                id: None,
                room: room.into(),
                offset: thread,
                text: "Troisième jet".into(),
                title: Some("Nouveau titre".into()),
            },
        )
        .await,
    );
    let list = ok("threads", threads(&mut bob, room).await);
    assert_eq!(list.threads[0].title.as_deref(), Some("Nouveau titre"));
    // Only the author edits.
    refused(
        "bob edits ana's post",
        edit(&mut bob, room, thread, "pirate").await,
        ErrorCode::Forbidden,
    );
    refused(
        "the teacher edits ana's post",
        edit(&mut prof, room, thread, "corrigé").await,
        ErrorCode::Forbidden,
    );
    // Past the window: not editable (the clock is the server's).
    let late = ok(
        "bob replies",
        reply(&mut bob, room, thread, "Réponse").await,
    )
    .offset;
    now.fetch_add(15 * 60 * 1000 + 1, Ordering::SeqCst);
    refused(
        "edit after the window",
        edit(&mut bob, room, late, "trop tard").await,
        ErrorCode::NotEditable,
    );
    // After a reply by someone else: not editable, even inside the window.
    now.fetch_add(1, Ordering::SeqCst);
    let bob2 = ok("bob again", reply(&mut bob, room, thread, "Autre").await).offset;
    ok(
        "bob edits his fresh reply",
        edit(&mut bob, room, bob2, "Autre, corrigé").await,
    );
    ok(
        "ana answers bob's post",
        ask::<PostOk>(
            &mut ana,
            Request::Post {
                id: None,
                room: room.into(),
                text: "Merci".into(),
                title: None,
                thread: Some(thread),
                reply_to: Some(bob2),
                quote: None,
                key: None,
            },
        )
        .await,
    );
    refused(
        "edit after a reply",
        edit(&mut bob, room, bob2, "changé après coup").await,
        ErrorCode::NotEditable,
    );
    refused(
        "ana's first post has replies",
        edit(&mut ana, room, thread, "changé").await,
        ErrorCode::NotEditable,
    );
    // Moderators edit their own posts whatever the window and replies.
    let prof_post = ok(
        "prof replies",
        reply(&mut prof, room, thread, "Attention").await,
    )
    .offset;
    ok(
        "ana replies to prof",
        reply(&mut ana, room, thread, "D'accord").await,
    );
    now.fetch_add(3_600_000, Ordering::SeqCst);
    ok(
        "moderator edits late",
        edit(&mut prof, room, prof_post, "Attention au signe").await,
    );
    // Editing is for forums (in a chat room staff opened).
    server.open(&["3B/chat/r"]).await;
    let (mut chat, _) = server.connect(&student("ana", "3B")).await;
    join_ok(&mut chat, "3B/chat/r").await;
    let msg = ok(
        "chat post",
        within("post", chat.post("3B/chat/r", "salut")).await,
    )
    .offset;
    refused(
        "edit in chat",
        edit(&mut chat, "3B/chat/r", msg, "bonjour").await,
        ErrorCode::Forbidden,
    );
}

#[tokio::test]
async fn deleting_or_redacting_a_post_removes_it_and_its_edits_from_storage() {
    let server = TestServer::start().await;
    let room = "3B/forum/aide";
    let (mut prof, mut ana) = help_forum(&server, room).await;
    let thread = ok(
        "ask",
        new_thread(&mut ana, room, "Sujet secret", "texte-original").await,
    )
    .offset;
    let edit1 = ok("edit", edit(&mut ana, room, thread, "texte-edite").await).offset;
    let r = ok(
        "reply",
        reply(&mut ana, room, thread, "reponse-a-supprimer").await,
    )
    .offset;

    // Own deletion: a tombstone in the thread.
    ok(
        "ana deletes her reply",
        moderate(&mut ana, room, redact(r)).await,
    );
    // Moderator redaction of the edited first post: its edits go too.
    ok(
        "prof redacts",
        moderate(&mut prof, room, redact(thread)).await,
    );

    let store = &server.server.hub().store;
    for (offset, gone) in [
        (thread, "texte-original"),
        (edit1, "texte-edite"),
        (r, "reponse-a-supprimer"),
    ] {
        let raw = store
            .raw_event(room, offset)
            .expect("read")
            .expect("stored");
        assert!(
            !raw.windows(gone.len()).any(|w| w == gone.as_bytes()),
            "offset {offset} still holds {gone:?}"
        );
    }
    let title = b"Sujet secret";
    let raw = store
        .raw_event(room, thread)
        .expect("read")
        .expect("stored");
    assert!(
        !raw.windows(title.len()).any(|w| w == title),
        "title removed"
    );

    let page = ok(
        "history",
        thread_history(&mut prof, room, thread, None, None, None).await,
    );
    let kinds: Vec<(u64, String)> = page
        .events
        .iter()
        .map(|e| match &e.body {
            Body::Redacted {
                thread: t, edit_of, ..
            } => (
                e.offset,
                format!("redacted thread={t:?} edit_of={edit_of:?}"),
            ),
            other => (e.offset, format!("{other:?}")),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            (
                thread,
                format!("redacted thread=Some({thread}) edit_of=None")
            ),
            (
                edit1,
                format!("redacted thread=Some({thread}) edit_of=Some({thread})")
            ),
            (r, format!("redacted thread=Some({thread}) edit_of=None")),
        ]
    );
    let list = ok("threads", threads(&mut ana, room).await);
    let t = &list.threads[0];
    assert!(t.deleted && t.title.is_none(), "{t:?}");
    refused(
        "edit a deleted post",
        edit(&mut ana, room, r, "revenir").await,
        ErrorCode::UnknownTarget,
    );
}

// ------------------------------------------- 4. locks and inter-class

#[tokio::test]
async fn a_locked_thread_refuses_pupils_posts_but_not_other_threads() {
    let server = TestServer::start().await;
    let room = "3B/forum/aide";
    let (mut prof, mut ana) = help_forum(&server, room).await;
    let locked = ok("t1", new_thread(&mut ana, room, "Un", "...").await).offset;
    let open = ok("t2", new_thread(&mut ana, room, "Deux", "...").await).offset;
    let lock = |on| ModAction::ReadOnly {
        on,
        thread: Some(locked),
    };
    ok("lock", moderate(&mut prof, room, lock(true)).await);
    refused(
        "reply in a locked thread",
        reply(&mut ana, room, locked, "encore").await,
        ErrorCode::ReadOnly,
    );
    ok("other thread", reply(&mut ana, room, open, "ici").await);
    ok(
        "the teacher still posts",
        reply(&mut prof, room, locked, "Clos.").await,
    );
    let list = ok("threads", threads(&mut ana, room).await);
    let flags: Vec<(u64, bool)> = list.threads.iter().map(|t| (t.thread, t.locked)).collect();
    assert!(
        flags.contains(&(locked, true)) && flags.contains(&(open, false)),
        "{flags:?}"
    );
    ok("unlock", moderate(&mut prof, room, lock(false)).await);
    ok("reply again", reply(&mut ana, room, locked, "merci").await);
    refused(
        "lock an unknown thread",
        moderate(
            &mut prof,
            room,
            ModAction::ReadOnly {
                on: true,
                thread: Some(9999),
            },
        )
        .await,
        ErrorCode::UnknownTarget,
    );
}

#[tokio::test]
async fn interclass_grants_open_and_close_access_and_unopened_forums_do_not_exist() {
    let server = TestServer::start().await;
    let room = "3B/forum/inter-3b-5c";
    let (mut pupil_5c, _) = server.connect(&student("eve", "5C")).await;
    let (mut pupil_3b, _) = server.connect(&student("ana", "3B")).await;
    // Not opened yet: the class's pupils are told so, others are forbidden,
    // and neither creates the room.
    refused(
        "join an unopened forum",
        within("join", pupil_3b.join(room, None)).await,
        ErrorCode::UnknownRoom,
    );
    refused(
        "outsider joins",
        within("join", pupil_5c.join(room, None)).await,
        ErrorCode::Forbidden,
    );
    let store = &server.server.hub().store;
    assert!(
        store.room_meta(room).expect("meta").is_none(),
        "not created"
    );

    let (mut prof, _) = server.connect(&teacher("prof", "3B")).await;
    ok(
        "open for 5C",
        configure(&mut prof, room, Flavour::Interclass, &["5C"], &["tea5c"]).await,
    );
    join_ok(&mut pupil_5c, room).await;
    let t = ok(
        "5C opens a thread",
        new_thread(&mut pupil_5c, room, "Salut les 3B", "!").await,
    )
    .offset;
    join_ok(&mut pupil_3b, room).await;
    ok("3B replies", reply(&mut pupil_3b, room, t, "Salut !").await);
    // The granted moderator moderates but cannot change the grants.
    let (mut tea5c, _) = server.connect(&teacher("tea5c", "5C")).await;
    ok(
        "granted moderator pins",
        moderate(&mut tea5c, room, ModAction::Pin { offset: t }).await,
    );
    refused(
        "granted moderator reconfigures",
        configure(&mut tea5c, room, Flavour::Interclass, &["5C", "6D"], &[]).await,
        ErrorCode::Forbidden,
    );
    // Withdrawing the grant closes the forum to 5C.
    ok(
        "withdraw",
        configure(&mut prof, room, Flavour::Interclass, &[], &[]).await,
    );
    let (mut eve2, _) = server.connect(&student("eve", "5C")).await;
    refused(
        "5C after withdrawal",
        within("join", eve2.join(room, None)).await,
        ErrorCode::Forbidden,
    );
    refused(
        "5C posts after withdrawal",
        reply(&mut pupil_5c, room, t, "encore là ?").await,
        ErrorCode::Forbidden,
    );
    // The grants are audit-logged for the home class.
    let audit = ok(
        "audit",
        within("audit", prof.history(AUDIT, None, None, None)).await,
    );
    let configures = audit
        .events
        .iter()
        .filter(|e| {
            matches!(
                &e.body,
                Body::Audit {
                    action: ModAction::Configure { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(configures, 2);
}

// ---------------------------------------------------------- 5. bad input

#[tokio::test]
async fn bad_forum_requests_get_documented_errors() {
    let server = TestServer::start().await;
    let (mut prof, _) = server.connect(&teacher("prof", "3B")).await;
    ok(
        "configure",
        configure(&mut prof, FORUM, Flavour::Help, &[], &[]).await,
    );
    join_ok(&mut prof, FORUM).await;
    let thread = ok(
        "thread",
        new_thread(&mut prof, FORUM, "Sujet", "Texte").await,
    )
    .offset;
    let other = ok(
        "thread 2",
        new_thread(&mut prof, FORUM, "Autre", "Texte").await,
    )
    .offset;
    join_ok(&mut prof, "3B/chat/r").await;
    let long_title = "t".repeat(201);
    let cases: Vec<(&str, Request, ErrorCode)> = vec![
        (
            "no title nor thread",
            post_req(FORUM, "x", None, None),
            ErrorCode::InvalidField,
        ),
        (
            "title and thread",
            post_req(FORUM, "x", Some("t"), Some(thread)),
            ErrorCode::InvalidField,
        ),
        (
            "title too long",
            post_req(FORUM, "x", Some(&long_title), None),
            ErrorCode::InvalidField,
        ),
        (
            "blank title",
            post_req(FORUM, "x", Some("  "), None),
            ErrorCode::InvalidField,
        ),
        (
            "unknown thread",
            post_req(FORUM, "x", None, Some(9999)),
            ErrorCode::UnknownTarget,
        ),
        (
            "reply_to in another thread",
            Request::Post {
                id: None,
                room: FORUM.into(),
                text: "x".into(),
                title: None,
                thread: Some(thread),
                reply_to: Some(other),
                quote: None,
                key: None,
            },
            ErrorCode::UnknownTarget,
        ),
        (
            "quote without reply_to",
            Request::Post {
                id: None,
                room: FORUM.into(),
                text: "x".into(),
                title: None,
                thread: Some(thread),
                reply_to: None,
                quote: Some("q".into()),
                key: None,
            },
            ErrorCode::InvalidField,
        ),
        (
            "quote too long",
            Request::Post {
                id: None,
                room: FORUM.into(),
                text: "x".into(),
                title: None,
                thread: Some(thread),
                reply_to: Some(thread),
                quote: Some("q".repeat(501)),
                key: None,
            },
            ErrorCode::InvalidField,
        ),
        (
            "forum fields in a chat room",
            post_req("3B/chat/r", "x", Some("t"), None),
            ErrorCode::InvalidField,
        ),
        (
            "edit an unknown post",
            Request::Edit {
                id: None,
                room: FORUM.into(),
                offset: 9999,
                text: "x".into(),
                title: None,
            },
            ErrorCode::UnknownTarget,
        ),
        (
            "threads of a chat room",
            Request::Threads {
                id: None,
                room: "3B/chat/r".into(),
                before: None,
                limit: None,
            },
            ErrorCode::InvalidField,
        ),
        (
            "threads limit 0",
            Request::Threads {
                id: None,
                room: FORUM.into(),
                before: None,
                limit: Some(0),
            },
            ErrorCode::InvalidField,
        ),
        (
            "mark_read of an unknown thread",
            Request::MarkRead {
                id: None,
                room: FORUM.into(),
                thread: 9999,
                offset: 1,
            },
            ErrorCode::UnknownTarget,
        ),
        (
            "mark_read past the head",
            Request::MarkRead {
                id: None,
                room: FORUM.into(),
                thread,
                offset: 1_000_000,
            },
            ErrorCode::InvalidField,
        ),
        (
            "history of an unknown thread",
            Request::History {
                id: None,
                room: FORUM.into(),
                before: None,
                after: None,
                limit: None,
                thread: Some(9999),
            },
            ErrorCode::UnknownTarget,
        ),
        (
            "configure a chat room",
            Request::Moderate {
                id: None,
                room: "3B/chat/r".into(),
                action: ModAction::Configure {
                    flavour: Flavour::Debate,
                    classes: vec![],
                    moderators: vec![],
                },
            },
            ErrorCode::InvalidField,
        ),
        (
            "configure a bad class",
            Request::Moderate {
                id: None,
                room: FORUM.into(),
                action: ModAction::Configure {
                    flavour: Flavour::Interclass,
                    classes: vec!["3B/../x".into()],
                    moderators: vec![],
                },
            },
            ErrorCode::InvalidField,
        ),
        (
            "lock a thread of a chat room",
            Request::Moderate {
                id: None,
                room: "3B/chat/r".into(),
                action: ModAction::ReadOnly {
                    on: true,
                    thread: Some(1),
                },
            },
            ErrorCode::InvalidField,
        ),
    ];
    let mut wrong = Vec::new();
    for (what, request, code) in cases {
        let got = outcome(&ask::<rmpv::Value>(&mut prof, request).await);
        if got != code.as_str() {
            wrong.push(format!("{what}: got {got}, want {code}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // Nothing refused reached the forum: two threads, no reply.
    let list = ok("threads", threads(&mut prof, FORUM).await);
    assert_eq!(list.threads.len(), 2);
    assert!(list.threads.iter().all(|t| t.replies == 0));
    // A title belongs to a thread's first post only.
    let r = ok("reply", reply(&mut prof, FORUM, thread, "réponse").await).offset;
    refused(
        "title on a reply's edit",
        ask::<PostOk>(
            &mut prof,
            Request::Edit {
                id: None,
                room: FORUM.into(),
                offset: r,
                text: "x".into(),
                title: Some("t".into()),
            },
        )
        .await,
        ErrorCode::InvalidField,
    );
    // The connection is still usable.
    let pong = within(
        "ping",
        prof.request::<rmpv::Value>(Request::Ping { id: None }),
    )
    .await;
    assert!(pong.is_ok());
}

// ------------------------------------------------------------ two nodes

#[tokio::test]
async fn a_forum_on_two_nodes_has_the_same_threads_edits_and_locks_everywhere() {
    let redis = support::redis::RedisServer::start().await;
    let url = redis.url();
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let node_a = cluster_node(&url, dir_a.path()).await;
    let node_b = cluster_node(&url, dir_b.path()).await;
    let connect = |url: String, token: String| async move {
        Client::connect(&url, &token).await.expect("connect").0
    };
    let room = "3B/forum/entraide";
    let mut prof = connect(node_a.url(), teacher("prof", "3B")).await;
    ok(
        "configure on A",
        configure(&mut prof, room, Flavour::Help, &["5C"], &[]).await,
    );
    // A pupil of the granted class, on the other node, is let in: the
    // grant reached node B.
    let mut eve = connect(node_b.url(), student("eve", "5C")).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while outcome(&within("join", eve.join(room, None)).await) != "ok" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "grant never reached B"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let mut ana = connect(node_a.url(), student("ana", "3B")).await;
    join_ok(&mut ana, room).await;
    let t = ok(
        "eve asks on B",
        new_thread(&mut eve, room, "Aide", "Question ?").await,
    )
    .offset;
    ok(
        "eve edits her question before any reply",
        edit(&mut eve, room, t, "Question précise ?").await,
    );
    let r = loop {
        let e = event(&mut ana).await;
        if e.offset == t {
            break ok(
                "ana replies on A",
                reply(&mut ana, room, t, "Réponse").await,
            )
            .offset;
        }
    };
    ok(
        "prof locks on A",
        moderate(
            &mut prof,
            room,
            ModAction::ReadOnly {
                on: true,
                thread: Some(t),
            },
        )
        .await,
    );
    // Both nodes list the same thread, and B enforces the lock set on A.
    let deadline = tokio::time::Instant::now() + WAIT;
    let (list_a, list_b) = loop {
        let a = ok("threads on A", threads(&mut ana, room).await);
        let b = ok("threads on B", threads(&mut eve, room).await);
        if a.threads.first().is_some_and(|x| x.locked)
            && b.threads.first().is_some_and(|x| x.locked)
        {
            break (a, b);
        }
        assert!(tokio::time::Instant::now() < deadline, "{a:?}\n{b:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let strip = |list: &ThreadsOk| {
        list.threads
            .iter()
            .map(|x| {
                (
                    x.thread,
                    x.title.clone(),
                    x.last_offset,
                    x.replies,
                    x.locked,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&list_a), strip(&list_b));
    assert_eq!(list_a.threads[0].last_offset, r);
    refused(
        "reply in the locked thread on B",
        reply(&mut eve, room, t, "encore").await,
        ErrorCode::ReadOnly,
    );
    let page_a = ok(
        "history A",
        thread_history(&mut ana, room, t, None, None, None).await,
    );
    let page_b = ok(
        "history B",
        thread_history(&mut eve, room, t, None, None, None).await,
    );
    assert_eq!(
        page_a.events, page_b.events,
        "same thread history on both nodes"
    );
}
