//! Moderation of chat rooms (issue 4): who may moderate, what each action
//! does in real time (mute, redact, kick, ban, slow mode, read-only), the
//! class's audit log, persistence across a SIGKILL, and bad input. Real
//! sockets, real sled.

mod support;

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use preau::client::{Client, ClientError};
use preau::protocol::{
    Body, ErrorCode, ErrorReply, Event, ModAction, Position, PostOk, PresenceAction, Request, Role,
    ServerFrame, UserInfo,
};
use support::*;
use tokio::time::Instant;

const ROOM: &str = "3B/chat/revision";
const AUDIT: &str = "3B/audit/log";

// ---------------------------------------------------------------- helpers

/// Awaits `fut` for at most [`WAIT`] (a hung server fails the test).
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {WAIT:?}"))
}

/// `ok`, the error code of a refusal, or the client error as text.
fn outcome<T>(result: &Result<T, ClientError>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(ClientError::Refused(reply)) => reply.code.as_str().to_owned(),
        Err(other) => format!("<{other}>"),
    }
}

/// The refusal of `result`, which must have code `code`.
fn refused<T: Debug>(what: &str, result: Result<T, ClientError>, code: ErrorCode) -> ErrorReply {
    match result {
        Err(ClientError::Refused(reply)) if reply.code == code => reply,
        other => panic!("{what}: expected {code}, got {other:?}"),
    }
}

fn ok<T: Debug>(what: &str, result: Result<T, ClientError>) -> T {
    result.unwrap_or_else(|err| panic!("{what}: expected ok, got {err:?}"))
}

async fn moderate(
    client: &mut Client,
    room: &str,
    action: ModAction,
) -> Result<PostOk, ClientError> {
    let what = format!("moderate {room} {action:?}");
    within(&what, client.moderate(room, action)).await
}

async fn moderate_ok(client: &mut Client, room: &str, action: ModAction) -> PostOk {
    let what = format!("moderate {room} {action:?}");
    ok(&what, moderate(client, room, action).await)
}

async fn post(client: &mut Client, room: &str, text: &str) -> Result<PostOk, ClientError> {
    within("post", client.post(room, text)).await
}

async fn post_ok(client: &mut Client, room: &str, text: &str) -> PostOk {
    ok(
        &format!("post {text:?} to {room}"),
        post(client, room, text).await,
    )
}

async fn join_ok(client: &mut Client, room: &str) -> preau::protocol::JoinOk {
    ok(
        &format!("join {room}"),
        within("join", client.join(room, None)).await,
    )
}

async fn ping(client: &mut Client) -> Result<rmpv::Value, ClientError> {
    within("ping", client.request(Request::Ping { id: None })).await
}

async fn history_all(client: &mut Client, room: &str) -> Vec<Event> {
    let page = ok(
        &format!("history {room}"),
        within("history", client.history(room, None, Some(0), Some(200))).await,
    );
    assert!(!page.more, "{room}: more than one page of history");
    page.events
}

fn mute(user: &str, seconds: u64) -> ModAction {
    ModAction::Mute {
        user: user.into(),
        seconds,
        reason: None,
        announce: false,
    }
}

fn unmute(user: &str) -> ModAction {
    ModAction::Unmute { user: user.into() }
}

fn kick(user: &str) -> ModAction {
    ModAction::Kick {
        user: user.into(),
        reason: None,
        announce: false,
    }
}

fn ban(user: &str) -> ModAction {
    ModAction::Ban {
        user: user.into(),
        reason: None,
        announce: false,
    }
}

fn unban(user: &str) -> ModAction {
    ModAction::Unban { user: user.into() }
}

fn redact(offset: u64) -> ModAction {
    ModAction::Redact {
        offset,
        reason: None,
    }
}

fn info(id: &str, role: Role) -> UserInfo {
    UserInfo {
        id: id.to_owned(),
        name: format!("Name of {id}"),
        role,
    }
}

fn staff(id: &str) -> String {
    token(id, Role::Staff, &[])
}

/// The next frame for which `pick` returns `Some`, skipping the others.
async fn next_where<T>(
    client: &mut Client,
    what: &str,
    mut pick: impl FnMut(&ServerFrame) -> Option<T>,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let frame = tokio::time::timeout_at(deadline, client.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: not received within {WAIT:?}"))
            .unwrap_or_else(|| panic!("{what}: connection closed"));
        if let Some(found) = pick(&frame) {
            return found;
        }
    }
}

/// The next event whose body is a moderation action.
async fn next_moderation(client: &mut Client, what: &str) -> (Event, ModAction, Option<u64>) {
    next_where(client, what, |frame| match frame {
        ServerFrame::Event(event) => match &event.body {
            Body::Moderation { action, until, .. } => Some((event.clone(), action.clone(), *until)),
            _ => None,
        },
        _ => None,
    })
    .await
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn text_of(event: &Event) -> Option<&str> {
    match &event.body {
        Body::Message { text, .. } => Some(text),
        _ => None,
    }
}

/// Posts until the post is accepted, allowing only `code` refusals meanwhile
/// (waiting as the refusal says, at most 200 ms at a time). Returns the ack
/// and the instant just before the accepted post was sent.
async fn post_when_allowed(
    client: &mut Client,
    room: &str,
    text: &str,
    code: ErrorCode,
) -> (PostOk, Instant) {
    let deadline = Instant::now() + WAIT;
    loop {
        let sent = Instant::now();
        match post(client, room, text).await {
            Ok(ack) => return (ack, sent),
            Err(ClientError::Refused(reply)) if reply.code == code => {
                let wait = reply
                    .retry_after_ms
                    .unwrap_or_else(|| panic!("{code} without retry_after_ms: {reply:?}"));
                assert!(wait > 0, "{code}: retry_after_ms is 0");
                assert!(
                    Instant::now() < deadline,
                    "{text:?} still refused with {code} after {WAIT:?}"
                );
                tokio::time::sleep(Duration::from_millis(wait.min(200))).await;
            }
            Err(other) => panic!("post {text:?}: expected ok or {code}, got {other:?}"),
        }
    }
}

// ------------------------------------------------- 1. authorization matrix

const COLS: [&str; 13] = [
    "redact-other",
    "redact-own",
    "mute",
    "unmute",
    "kick",
    "ban",
    "unban",
    "slow_mode",
    "read_only",
    "audit-history",
    "audit-join",
    "audit-post",
    "audit-typing",
];

/// How many of [`COLS`] are moderation requests in [`ROOM`].
const MOD_COLS: usize = 9;

struct Row {
    label: &'static str,
    id: &'static str,
    token: String,
    /// Token used to write the row's "own" message: the user's own token
    /// when they may post in 3B; otherwise a 3B token with the same `sub`
    /// (the user was in 3B when they wrote it, e.g. a pupil who changed
    /// class), so "redact own" is really about a message they authored.
    author: String,
    want: [&'static str; 13],
}

fn parent_token(user: &str) -> String {
    let mut c = claims(user, Role::Parent, &["3B"]);
    c.children = vec!["zoe".into()];
    keyring().mint(&c).expect("mint parent token")
}

fn matrix_rows() -> Vec<Row> {
    // A post to the audit log comes after the row's join of it: a user whose
    // join was refused is not a member, so `post` says `not_joined` before
    // the policy is even asked (as in tests/authz.rs); a member (teacher of
    // 3B, staff) is refused by the policy itself.
    const F: &str = "forbidden";
    const NOBODY: [&str; 13] = [F, F, F, F, F, F, F, F, F, F, F, "not_joined", "not_joined"];
    const MODERATOR: [&str; 13] = [
        "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", F, F,
    ];
    vec![
        Row {
            label: "student-3B",
            id: "stu3b",
            token: student("stu3b", "3B"),
            author: student("stu3b", "3B"),
            want: [
                F,
                "ok",
                F,
                F,
                F,
                F,
                F,
                F,
                F,
                F,
                F,
                "not_joined",
                "not_joined",
            ],
        },
        Row {
            label: "student-4A",
            id: "stu4a",
            token: student("stu4a", "4A"),
            author: student("stu4a", "3B"),
            want: NOBODY,
        },
        Row {
            label: "teacher-3B",
            id: "tea3b",
            token: teacher("tea3b", "3B"),
            author: teacher("tea3b", "3B"),
            want: MODERATOR,
        },
        Row {
            label: "teacher-4A",
            id: "tea4a",
            token: teacher("tea4a", "4A"),
            author: teacher("tea4a", "3B"),
            want: NOBODY,
        },
        Row {
            label: "parent-3B",
            id: "par3b",
            token: parent_token("par3b"),
            author: student("par3b", "3B"),
            want: NOBODY,
        },
        Row {
            label: "staff",
            id: "staff1",
            token: staff("staff1"),
            author: staff("staff1"),
            want: MODERATOR,
        },
    ]
}

fn render_matrix(rows: &[(&str, Vec<String>, [&str; 13])]) -> String {
    let mut out = format!("{:<11}", "user");
    for col in COLS {
        out.push_str(&format!(" {col:<14}"));
    }
    out.push('\n');
    for (label, got, want) in rows {
        out.push_str(&format!("{label:<11}"));
        for (got, want) in got.iter().zip(want.iter()) {
            let cell = if got == want {
                got.clone()
            } else {
                format!("!!{got}(want {want})")
            };
            out.push_str(&format!(" {cell:<14}"));
        }
        out.push('\n');
    }
    out
}

/// Runs one row on a fresh server; returns the observed cells and any
/// side effect a refused action should not have had.
async fn matrix_row(row: &Row) -> (Vec<String>, Vec<String>) {
    let server = TestServer::start().await;
    let mut problems = Vec::new();
    // `admin` sets up preconditions and watches the room (keeps it loaded).
    let (mut admin, _) = server.connect(&staff("admin")).await;
    join_ok(&mut admin, ROOM).await;
    let (mut zoe, _) = server.connect(&student("zoe", "3B")).await;
    join_ok(&mut zoe, ROOM).await;
    let zoe_msg = post_ok(&mut zoe, ROOM, "zoe's message").await.offset;
    let own_msg = {
        let (mut author, _) = server.connect(&row.author).await;
        join_ok(&mut author, ROOM).await;
        let offset = post_ok(&mut author, ROOM, "my own message").await.offset;
        ok("author leaves", within("leave", author.leave(ROOM)).await);
        author.close();
        offset
    };

    let (mut actor, hello) = server.connect(&row.token).await;
    assert_eq!(hello.user.id, row.id);
    let mut got = Vec::new();
    got.push(outcome(&moderate(&mut actor, ROOM, redact(zoe_msg)).await));
    got.push(outcome(&moderate(&mut actor, ROOM, redact(own_msg)).await));
    got.push(outcome(&moderate(&mut actor, ROOM, mute("zoe", 60)).await));
    if got[2] != "ok" {
        // Unmute must be refused for lack of rights, not of a mute.
        moderate_ok(&mut admin, ROOM, mute("zoe", 60)).await;
    }
    got.push(outcome(&moderate(&mut actor, ROOM, unmute("zoe")).await));
    got.push(outcome(&moderate(&mut actor, ROOM, kick("zoe")).await));
    got.push(outcome(&moderate(&mut actor, ROOM, ban("zoe")).await));
    if got[5] != "ok" {
        moderate_ok(&mut admin, ROOM, ban("zoe")).await;
    }
    got.push(outcome(&moderate(&mut actor, ROOM, unban("zoe")).await));
    got.push(outcome(
        &moderate(&mut actor, ROOM, ModAction::SlowMode { seconds: 5 }).await,
    ));
    got.push(outcome(
        &moderate(
            &mut actor,
            ROOM,
            ModAction::ReadOnly {
                on: true,
                thread: None,
            },
        )
        .await,
    ));
    let audit_history = within("history", actor.history(AUDIT, None, None, None)).await;
    got.push(outcome(&audit_history));
    got.push(outcome(&within("join", actor.join(AUDIT, None)).await));
    got.push(outcome(&post(&mut actor, AUDIT, "written by hand").await));
    got.push(outcome(&within("typing", actor.typing(AUDIT)).await));

    // Refused requests left no trace; allowed ones did, once each.
    let allowed = got[..MOD_COLS].iter().filter(|g| *g == "ok").count();
    let in_room = history_all(&mut admin, ROOM)
        .await
        .iter()
        .filter(|e| e.from.id == row.id && matches!(e.body, Body::Moderation { .. }))
        .count();
    if in_room != allowed {
        problems.push(format!(
            "{}: {in_room} moderation events in the room, want {allowed}",
            row.label
        ));
    }
    let audit = history_all(&mut admin, AUDIT).await;
    let in_audit = audit.iter().filter(|e| e.from.id == row.id).count();
    if in_audit != allowed {
        problems.push(format!(
            "{}: {in_audit} audit entries, want {allowed}",
            row.label
        ));
    }
    if audit.iter().any(|e| !matches!(e.body, Body::Audit { .. })) {
        problems.push(format!("{}: a non-audit event in the audit log", row.label));
    }
    let state = server
        .server
        .hub()
        .loaded_room(ROOM)
        .expect("room loaded (admin is a member)")
        .moderation();
    let want_slow = if got[7] == "ok" { 5 } else { 0 };
    let want_read_only = got[8] == "ok";
    if (state.slow_mode_secs, state.read_only) != (want_slow, want_read_only) {
        problems.push(format!(
            "{}: state slow_mode {} read_only {}, want {want_slow} {want_read_only}",
            row.label, state.slow_mode_secs, state.read_only
        ));
    }
    if let Ok(page) = &audit_history {
        if page.events.len() != audit.len() {
            problems.push(format!("{}: audit history page differs", row.label));
        }
    }
    // Refusals never end the connection.
    if ping(&mut actor).await.is_err() {
        problems.push(format!("{}: ping after the row failed", row.label));
    }
    (got, problems)
}

#[tokio::test]
async fn authorization_matrix_for_moderation() {
    let rows = matrix_rows();
    let mut table = Vec::new();
    let mut problems = Vec::new();
    for row in &rows {
        let (got, mut row_problems) = matrix_row(row).await;
        problems.append(&mut row_problems);
        table.push((row.label, got, row.want));
    }
    let wrong: Vec<String> = table
        .iter()
        .flat_map(|(label, got, want)| {
            COLS.iter()
                .zip(got.iter().zip(want.iter()))
                .filter(|(_, (g, w))| g != *w)
                .map(move |(col, _)| format!("{label}/{col}"))
        })
        .collect();
    assert!(
        wrong.is_empty() && problems.is_empty(),
        "wrong cells: {wrong:?}\nproblems: {problems:#?}\n{}",
        render_matrix(&table)
    );
}

// ------------------------------------------------------------- 2. mute

#[tokio::test]
async fn muted_pupil_is_refused_while_others_post_until_unmuted_or_expired() {
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    let (mut prof, _) = server.connect(&teacher("prof", "3B")).await;
    for c in [&mut ana, &mut bob, &mut prof] {
        join_ok(c, ROOM).await;
    }
    post_ok(&mut ana, ROOM, "avant").await;

    let reason = Some("bavardage".to_owned());
    let ack = moderate_ok(
        &mut prof,
        ROOM,
        ModAction::Mute {
            user: "ana".into(),
            seconds: 60,
            reason: reason.clone(),
            announce: false,
        },
    )
    .await;
    // The muted pupil and the teachers are told until when; the rest of
    // the class is not told (the spec: actions about one person).
    let mut until = 0;
    for (who, c) in [("ana", &mut ana), ("prof", &mut prof)] {
        let (event, action, u) = next_moderation(c, &format!("{who}: mute event")).await;
        assert_eq!(event.offset, ack.offset, "{who}");
        assert_eq!(event.from, info("prof", Role::Teacher), "{who}");
        assert_eq!(
            action,
            ModAction::Mute {
                user: "ana".into(),
                seconds: 60,
                reason: reason.clone(),
                announce: false,
            },
            "{who}"
        );
        let u = u.unwrap_or_else(|| panic!("{who}: mute event without until"));
        assert!(
            u <= event.ts + 60_000 && u > event.ts + 30_000,
            "{who}: until {u} vs ts {}",
            event.ts
        );
        until = u;
    }

    let refusal = refused(
        "muted post",
        post(&mut ana, ROOM, "je parle quand même").await,
        ErrorCode::Muted,
    );
    let retry = refusal.retry_after_ms.expect("muted: retry_after_ms");
    assert!(retry > 0 && retry <= 60_000, "retry_after_ms {retry}");
    assert!(
        refusal.message.contains(&until.to_string()),
        "the refusal says until when: {:?} (until {until})",
        refusal.message
    );
    refused(
        "muted typing",
        within("typing", ana.typing(ROOM)).await,
        ErrorCode::Muted,
    );

    // Others keep posting, and the muted pupil still reads.
    let bob_ack = post_ok(&mut bob, ROOM, "moi je peux").await;
    let first = next_where(&mut bob, "bob's next event", |f| match f {
        ServerFrame::Event(e) if e.room == ROOM && e.offset >= ack.offset => Some(e.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        first.offset, bob_ack.offset,
        "bob got {first:?} before his post: the mute is not his to see"
    );
    let seen = next_where(&mut ana, "ana sees bob's post", |f| match f {
        ServerFrame::Event(e) if text_of(e).is_some() => Some(e.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (seen.offset, text_of(&seen)),
        (bob_ack.offset, Some("moi je peux"))
    );
    let teacher_ack = post_ok(&mut prof, ROOM, "le prof aussi").await;
    assert_eq!(teacher_ack.offset, bob_ack.offset + 1);
    // Nor in history; the teacher's history has it.
    assert!(history_all(&mut bob, ROOM)
        .await
        .iter()
        .all(|e| e.offset != ack.offset));
    assert!(history_all(&mut prof, ROOM)
        .await
        .iter()
        .any(|e| e.offset == ack.offset));
    // Nor in a recovering join from before it.
    let (mut bob2, _) = server.connect(&student("bob", "3B")).await;
    let since = preau::protocol::Position {
        epoch: first.epoch.clone(),
        offset: ack.offset - 1,
    };
    let recovered = ok(
        "bob recovers",
        within("join", bob2.join(ROOM, Some(since))).await,
    );
    assert_eq!(recovered.recovery.map(|r| r.recovered), Some(true));
    let offsets: Vec<u64> = recovered.events.iter().map(|e| e.offset).collect();
    assert_eq!(
        offsets,
        [bob_ack.offset, teacher_ack.offset],
        "the mute is not replayed to bob"
    );
    // Nothing of the refused post was stored.
    let events = history_all(&mut prof, ROOM).await;
    assert!(
        events
            .iter()
            .all(|e| text_of(e) != Some("je parle quand même")),
        "a refused post was stored"
    );
    assert_eq!(events.last().map(|e| e.offset), Some(teacher_ack.offset));

    // Unmute: ana posts again.
    let unmute_ack = moderate_ok(&mut prof, ROOM, unmute("ana")).await;
    let (event, action, _) = next_moderation(&mut ana, "ana: unmute event").await;
    assert_eq!((event.offset, action), (unmute_ack.offset, unmute("ana")));
    let back = post_ok(&mut ana, ROOM, "merci").await;
    assert_eq!(back.offset, unmute_ack.offset + 1);

    // A 1 s mute expires by itself: the post is refused with `muted` until
    // then, and accepted at or after `until` on the server's clock.
    // A new mute replaces the previous one, even a longer one.
    moderate_ok(&mut prof, ROOM, mute("ana", 3600)).await;
    moderate_ok(&mut prof, ROOM, mute("ana", 1)).await;
    let (_, _, long) = next_moderation(&mut ana, "ana: 1 h mute event").await;
    let (_, _, until) = next_moderation(&mut ana, "ana: 1 s mute event").await;
    assert!(long > until, "1 h mute {long:?}, 1 s mute {until:?}");
    let until = until.expect("1 s mute has until");
    let (accepted, _) = post_when_allowed(&mut ana, ROOM, "de retour", ErrorCode::Muted).await;
    assert!(
        accepted.ts >= until,
        "post accepted at {} before the mute ended at {until}",
        accepted.ts
    );
    assert!(ping(&mut ana).await.is_ok());
}

/// A teacher may choose to tell the class (`announce`): the mute then
/// reaches every member, live, in history and in a recovering join, as the
/// room's other events do; without it (the test above) a classmate sees
/// nothing.
#[tokio::test]
async fn an_announced_mute_reaches_the_whole_class() {
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    let (mut prof, _) = server.connect(&teacher("prof", "3B")).await;
    for c in [&mut ana, &mut bob, &mut prof] {
        join_ok(c, ROOM).await;
    }
    let before = post_ok(&mut ana, ROOM, "avant").await;
    let announced = ModAction::Mute {
        user: "ana".into(),
        seconds: 60,
        reason: Some("bavardage".into()),
        announce: true,
    };
    let ack = moderate_ok(&mut prof, ROOM, announced.clone()).await;
    for (who, c) in [("ana", &mut ana), ("bob", &mut bob), ("prof", &mut prof)] {
        let (event, action, until) = next_moderation(c, &format!("{who}: announced mute")).await;
        assert_eq!((event.offset, &action), (ack.offset, &announced), "{who}");
        assert!(until.is_some(), "{who}: until");
    }
    assert!(history_all(&mut bob, ROOM)
        .await
        .iter()
        .any(|e| e.offset == ack.offset));
    let (mut bob2, _) = server.connect(&student("bob", "3B")).await;
    let since = preau::protocol::Position {
        epoch: before.epoch.clone(),
        offset: before.offset,
    };
    let recovered = ok(
        "bob recovers",
        within("join", bob2.join(ROOM, Some(since))).await,
    );
    let offsets: Vec<u64> = recovered.events.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, [ack.offset], "the announced mute is replayed");
    // The mute itself works as any other.
    refused(
        "muted post",
        post(&mut ana, ROOM, "je parle quand même").await,
        ErrorCode::Muted,
    );
}

// ------------------------------------------------------------ 3. redact

#[tokio::test]
async fn redaction_leaves_a_tombstone_and_removes_the_text_from_storage() {
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let store = server.server.hub().store.clone();
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    let (mut prof, _) = server.connect(&teacher("prof", "3B")).await;
    let joined = join_ok(&mut ana, ROOM).await;
    join_ok(&mut bob, ROOM).await;
    join_ok(&mut prof, ROOM).await;

    let secret = "SECRET-insult-7f3a9c";
    let target = post_ok(&mut ana, ROOM, secret).await;
    let raw = store.raw_event(ROOM, target.offset).unwrap().unwrap();
    assert!(contains(&raw, secret.as_bytes()), "the message was stored");
    let other = post_ok(&mut bob, ROOM, "a normal message").await;

    let reason = Some("insulte".to_owned());
    let ack = moderate_ok(
        &mut prof,
        ROOM,
        ModAction::Redact {
            offset: target.offset,
            reason: reason.clone(),
        },
    )
    .await;
    // Acked: the text is gone from storage, and nothing else stored has it.
    let raw = store.raw_event(ROOM, target.offset).unwrap().unwrap();
    assert!(
        !contains(&raw, secret.as_bytes()),
        "redacted text still stored at offset {}",
        target.offset
    );
    for room in [ROOM, AUDIT] {
        for offset in 1..=ack.offset {
            if let Some(raw) = store.raw_event(room, offset).unwrap() {
                assert!(
                    !contains(&raw, secret.as_bytes()),
                    "{room}@{offset} holds the redacted text"
                );
            }
        }
    }

    // Every member hears of it.
    for (who, c) in [("ana", &mut ana), ("bob", &mut bob), ("prof", &mut prof)] {
        let event = next_where(c, &format!("{who}: redaction event"), |f| match f {
            ServerFrame::Event(e) if matches!(e.body, Body::Moderation { .. }) => Some(e.clone()),
            _ => None,
        })
        .await;
        assert_eq!(event.offset, ack.offset, "{who}");
        assert_eq!(event.from, info("prof", Role::Teacher), "{who}");
        assert_eq!(
            event.body,
            Body::Moderation {
                action: ModAction::Redact {
                    offset: target.offset,
                    reason: reason.clone()
                },
                until: None,
                target_from: Some(info("ana", Role::Student)),
                target_ts: Some(target.ts),
                target_thread: None,
            },
            "{who}"
        );
    }

    // History holds the tombstone in place of the message.
    let tombstone = Body::Redacted {
        by: info("prof", Role::Teacher),
        reason: reason.clone(),
        thread: None,
        edit_of: None,
    };
    let page = ok(
        "history at the offset",
        within(
            "history",
            bob.history(ROOM, None, Some(target.offset - 1), Some(1)),
        )
        .await,
    );
    assert_eq!(page.events.len(), 1);
    let stone = &page.events[0];
    assert_eq!(
        (stone.offset, stone.ts, &stone.from, &stone.epoch),
        (
            target.offset,
            target.ts,
            &info("ana", Role::Student),
            &target.epoch
        )
    );
    assert_eq!(stone.body, tombstone);
    let all = history_all(&mut bob, ROOM).await;
    assert_eq!(
        all.iter().map(|e| e.offset).collect::<Vec<_>>(),
        (1..=ack.offset).collect::<Vec<_>>()
    );
    assert_eq!(
        text_of(&all[other.offset as usize - 1]),
        Some("a normal message")
    );

    // A recovering join replays the tombstone, not the text.
    let (mut carl, _) = server.connect(&student("carl", "3B")).await;
    let rejoined = ok(
        "recovering join",
        within(
            "join",
            carl.join(
                ROOM,
                Some(Position {
                    epoch: joined.epoch.clone(),
                    offset: 0,
                }),
            ),
        )
        .await,
    );
    assert_eq!(rejoined.recovery.as_ref().map(|r| r.recovered), Some(true));
    let replayed = rejoined
        .events
        .iter()
        .find(|e| e.offset == target.offset)
        .expect("the redacted offset is replayed");
    assert_eq!(replayed.body, tombstone);
    assert!(rejoined.events.iter().all(|e| text_of(e) != Some(secret)));

    // Redacting again, an unknown offset, or a moderation event: unknown_target.
    for (what, offset) in [
        ("the same offset", target.offset),
        ("an unknown offset", ack.offset + 100),
        ("the redaction event itself", ack.offset),
    ] {
        refused(
            what,
            moderate(&mut prof, ROOM, redact(offset)).await,
            ErrorCode::UnknownTarget,
        );
    }
    let head = history_all(&mut prof, ROOM).await.last().unwrap().offset;
    assert_eq!(head, ack.offset, "refused redactions added events");

    // A pupil redacts their own message: the tombstone names them.
    let own = post_ok(&mut ana, ROOM, "oops, wrong room").await;
    let own_ack = moderate_ok(&mut ana, ROOM, redact(own.offset)).await;
    assert!(!contains(
        &store.raw_event(ROOM, own.offset).unwrap().unwrap(),
        b"oops, wrong room"
    ));
    let all = history_all(&mut bob, ROOM).await;
    assert_eq!(
        all[own.offset as usize - 1].body,
        Body::Redacted {
            by: info("ana", Role::Student),
            reason: None,
            thread: None,
            edit_of: None,
        }
    );
    assert_eq!(all.last().map(|e| e.offset), Some(own_ack.offset));

    // Redaction right after the ack, many times: the stored bytes never
    // hold the text once the moderator has been told it is done.
    for i in 0..20 {
        let text = format!("burst-secret-{i}-d41d8cd9");
        let msg = post_ok(&mut ana, ROOM, &text).await;
        moderate_ok(&mut prof, ROOM, redact(msg.offset)).await;
        let raw = store.raw_event(ROOM, msg.offset).unwrap().unwrap();
        assert!(
            !contains(&raw, text.as_bytes()),
            "redaction {i} acked before the text left storage"
        );
    }
}

/// Two redactions of the same message, sent before the first took effect
/// (pipelined on one connection, or by two moderators at once): one is
/// done, the other finds the message already redacted (`unknown_target`),
/// and the room and the audit log hold one redaction each.
#[tokio::test]
async fn the_same_message_is_redacted_once_even_by_concurrent_requests() {
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let (mut prof, _) = server.connect(&teacher("prof", "3B")).await;
    let (mut boss, _) = server.connect(&staff("boss")).await;
    join_ok(&mut ana, ROOM).await;
    let mut outcomes = Vec::new();
    for round in 0..5u32 {
        // Pipelined on one connection.
        let msg = post_ok(&mut ana, ROOM, &format!("pipelined {round}")).await;
        let ids = [8000 + 2 * round, 8001 + 2 * round];
        for id in ids {
            let frame = serde_json::json!({"type": "moderate", "id": id, "room": ROOM,
                "action": {"kind": "redact", "offset": msg.offset}});
            prof.send_raw(rmp_serde::to_vec_named(&frame).unwrap())
                .unwrap();
        }
        // The refusal may come first: it does not wait for storage.
        let mut got = Vec::new();
        while got.len() < ids.len() {
            got.push(
                next_where(&mut prof, "pipelined redaction reply", |f| match f {
                    ServerFrame::Error(e) if e.id.is_some_and(|i| ids.contains(&i)) => {
                        Some(e.code.as_str().to_owned())
                    }
                    ServerFrame::Ok { id: Some(g), .. } if ids.contains(g) => Some("ok".to_owned()),
                    _ => None,
                })
                .await,
            );
        }
        got.sort();
        outcomes.push((format!("pipelined {}", msg.offset), got));

        // Two moderators at once.
        let msg = post_ok(&mut ana, ROOM, &format!("concurrent {round}")).await;
        let (a, b) = tokio::join!(
            moderate(&mut prof, ROOM, redact(msg.offset)),
            moderate(&mut boss, ROOM, redact(msg.offset)),
        );
        let mut got = vec![outcome(&a), outcome(&b)];
        got.sort();
        outcomes.push((format!("concurrent {}", msg.offset), got));
    }
    let events = history_all(&mut boss, ROOM).await;
    let audit = history_all(&mut boss, AUDIT).await;
    let mut wrong = Vec::new();
    for (what, got) in &outcomes {
        if got != &["ok", "unknown_target"] {
            wrong.push(format!("{what}: {got:?}"));
        }
    }
    let redactions = events
        .iter()
        .filter(|e| {
            matches!(
                &e.body,
                Body::Moderation {
                    action: ModAction::Redact { .. },
                    ..
                }
            )
        })
        .count();
    assert!(
        wrong.is_empty() && redactions == outcomes.len() && audit.len() == outcomes.len(),
        "want one redaction per message: outcomes {wrong:?}; {redactions} redaction events \
         and {} audit entries for {} messages",
        audit.len(),
        outcomes.len()
    );
}

// ------------------------------------------------------- 4. kick and ban

fn presence_of(frame: &ServerFrame, user: &str) -> Option<PresenceAction> {
    match frame {
        ServerFrame::Presence(p) if p.user.id == user && p.room == ROOM => Some(p.action),
        _ => None,
    }
}

#[tokio::test]
async fn kick_removes_now_and_ban_refuses_later_until_unban() {
    let server = TestServer::start().await;
    server.open(&[ROOM, "3B/chat/autre"]).await;
    // ana has two tabs open.
    let (mut ana1, _) = server.connect(&student("ana", "3B")).await;
    let (mut ana2, _) = server.connect(&student("ana", "3B")).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    let (mut prof, _) = server.connect(&teacher("prof", "3B")).await;
    join_ok(&mut bob, ROOM).await;
    join_ok(&mut prof, ROOM).await;
    join_ok(&mut ana1, ROOM).await;
    join_ok(&mut ana2, ROOM).await;
    post_ok(&mut ana1, ROOM, "salut").await;

    let ack = moderate_ok(
        &mut prof,
        ROOM,
        ModAction::Kick {
            user: "ana".into(),
            reason: Some("calme-toi".into()),
            announce: false,
        },
    )
    .await;
    for (who, c) in [("ana1", &mut ana1), ("ana2", &mut ana2)] {
        let (event, action, _) = next_moderation(c, &format!("{who}: kick event")).await;
        assert_eq!(event.offset, ack.offset, "{who}");
        assert!(
            matches!(&action, ModAction::Kick { user, .. } if user == "ana"),
            "{who}: {action:?}"
        );
        refused(
            &format!("{who} posts after the kick"),
            post(c, ROOM, "je suis encore là ?").await,
            ErrorCode::NotJoined,
        );
        refused(
            &format!("{who} types after the kick"),
            within("typing", c.typing(ROOM)).await,
            ErrorCode::NotJoined,
        );
    }
    // Others see ana leave (once, though she had two tabs), not why: the
    // kick is hers and the teachers' to know.
    let seen = next_where(&mut bob, "bob: ana leaves", |f| match f {
        ServerFrame::Event(e) if e.room == ROOM && e.offset >= ack.offset => Some(Err(e.offset)),
        f => presence_of(f, "ana")
            .filter(|a| *a == PresenceAction::Leave)
            .map(Ok),
    })
    .await;
    assert_eq!(seen, Ok(PresenceAction::Leave), "bob saw the kick event");

    // While ana is out, bob posts; she must not receive it.
    let missed = post_ok(&mut bob, ROOM, "pendant ton absence").await;
    // She may rejoin (a kick is not a ban).
    let rejoined = join_ok(&mut ana1, ROOM).await;
    assert_eq!(rejoined.head, missed.offset);
    assert!(rejoined.members.iter().any(|m| m.id == "ana"));
    let action = next_where(&mut bob, "bob: ana's presence", |f| presence_of(f, "ana")).await;
    assert_eq!(action, PresenceAction::Join, "one leave then one join");
    let back = post_ok(&mut ana1, ROOM, "re").await;
    let first = next_where(&mut ana1, "ana1: next message", |f| match f {
        ServerFrame::Event(e) if e.room == ROOM => Some(e.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        first.offset, back.offset,
        "a kicked connection received {first:?}"
    );

    // Ban: kicked now...
    let ban_ack = moderate_ok(&mut prof, ROOM, ban("ana")).await;
    let (event, action, _) = next_moderation(&mut ana1, "ana1: ban event").await;
    assert_eq!((event.offset, action), (ban_ack.offset, ban("ana")));
    let action = next_where(&mut bob, "bob: ana's presence", |f| presence_of(f, "ana")).await;
    assert_eq!(action, PresenceAction::Leave);
    refused(
        "post after ban",
        post(&mut ana1, ROOM, "hé").await,
        ErrorCode::NotJoined,
    );
    // ...and refused later, on any connection.
    refused(
        "join after ban",
        within("join", ana1.join(ROOM, None)).await,
        ErrorCode::Banned,
    );
    refused(
        "join after ban, other tab",
        within("join", ana2.join(ROOM, None)).await,
        ErrorCode::Banned,
    );
    let (mut ana3, _) = server.connect(&student("ana", "3B")).await;
    refused(
        "join after ban, new connection",
        within("join", ana3.join(ROOM, None)).await,
        ErrorCode::Banned,
    );
    refused(
        "post after refused join",
        post(&mut ana3, ROOM, "hé").await,
        ErrorCode::NotJoined,
    );
    refused(
        "history after ban",
        within("history", ana3.history(ROOM, None, None, None)).await,
        ErrorCode::Banned,
    );
    // The ban is per room.
    join_ok(&mut ana3, "3B/chat/autre").await;
    // A known user who is not present can be banned too.
    let (mut carl, _) = server.connect(&student("carl", "3B")).await;
    join_ok(&mut carl, ROOM).await;
    post_ok(&mut carl, ROOM, "bye").await;
    ok("carl leaves", within("leave", carl.leave(ROOM)).await);
    moderate_ok(&mut prof, ROOM, ban("carl")).await;
    refused(
        "carl joins after ban",
        within("join", carl.join(ROOM, None)).await,
        ErrorCode::Banned,
    );

    // Unban: joins work again.
    moderate_ok(&mut prof, ROOM, unban("ana")).await;
    join_ok(&mut ana1, ROOM).await;
    let action = next_where(&mut bob, "bob: ana's presence", |f| presence_of(f, "ana")).await;
    assert_eq!(action, PresenceAction::Join);
    post_ok(&mut ana1, ROOM, "merci").await;
    join_ok(&mut ana2, ROOM).await;
    ok(
        "history after unban",
        within("history", ana3.history(ROOM, None, None, None)).await,
    );
    refused(
        "carl still banned",
        within("join", carl.join(ROOM, None)).await,
        ErrorCode::Banned,
    );
    assert!(ping(&mut ana3).await.is_ok());

    // A moderator is removed once by a kick or ban, but exempt from the ban.
    let (mut boss, _) = server.connect(&staff("boss")).await;
    let ack = moderate_ok(&mut boss, ROOM, ban("prof")).await;
    let action = next_where(&mut prof, "prof: ban event", |f| match f {
        ServerFrame::Event(e) if e.offset == ack.offset => Some(e.body.clone()),
        _ => None,
    })
    .await;
    assert!(
        matches!(&action, Body::Moderation { action, .. } if *action == ban("prof")),
        "{action:?}"
    );
    refused(
        "banned moderator posts before rejoining",
        post(&mut prof, ROOM, "hm").await,
        ErrorCode::NotJoined,
    );
    join_ok(&mut prof, ROOM).await;
    post_ok(&mut prof, ROOM, "toujours modérateur").await;
    moderate_ok(&mut boss, ROOM, unban("prof")).await;
}

// -------------------------------------------------------- 5. slow mode

#[tokio::test]
async fn slow_mode_spaces_a_pupils_posts_but_not_a_teachers() {
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    let (mut prof, _) = server.connect(&teacher("prof", "3B")).await;
    for c in [&mut ana, &mut bob, &mut prof] {
        join_ok(c, ROOM).await;
    }
    let ack = moderate_ok(&mut prof, ROOM, ModAction::SlowMode { seconds: 2 }).await;
    let (event, action, _) = next_moderation(&mut ana, "ana: slow mode event").await;
    assert_eq!(
        (event.offset, action),
        (ack.offset, ModAction::SlowMode { seconds: 2 })
    );

    // A second post within 2 s is refused. On a very slow machine the second
    // post may legitimately come after 2 s: then it must be accepted and we
    // try again.
    let mut refusal = None;
    for _ in 0..5 {
        let (_, first_sent) = post_when_allowed(&mut ana, ROOM, "un", ErrorCode::SlowMode).await;
        match post(&mut ana, ROOM, "deux").await {
            Err(ClientError::Refused(reply)) if reply.code == ErrorCode::SlowMode => {
                refusal = Some(reply);
                break;
            }
            Ok(_) => assert!(
                first_sent.elapsed() >= Duration::from_secs(2),
                "second post accepted {:?} after the first was sent",
                first_sent.elapsed()
            ),
            Err(other) => panic!("second post: expected slow_mode, got {other:?}"),
        }
    }
    let refusal = refusal.expect("a second post within 2 s was refused at least once");
    let retry = refusal.retry_after_ms.expect("slow_mode: retry_after_ms");
    assert!(retry > 0 && retry <= 2_000, "retry_after_ms {retry}");

    // Slow mode is per pupil: bob is not slowed by ana.
    post_ok(&mut bob, ROOM, "moi je n'ai rien dit").await;
    // The teacher is exempt.
    for i in 0..3 {
        post_ok(&mut prof, ROOM, &format!("prof {i}")).await;
    }
    // After the wait, ana posts again.
    post_when_allowed(&mut ana, ROOM, "trois", ErrorCode::SlowMode).await;

    // slow_mode 0 turns it off.
    moderate_ok(&mut prof, ROOM, ModAction::SlowMode { seconds: 0 }).await;
    for i in 0..3 {
        post_ok(&mut ana, ROOM, &format!("vite {i}")).await;
    }
    assert_eq!(
        server
            .server
            .hub()
            .loaded_room(ROOM)
            .unwrap()
            .moderation()
            .slow_mode_secs,
        0
    );
}

// -------------------------------------------------------- 6. read-only

#[tokio::test]
async fn read_only_room_takes_posts_from_moderators_only() {
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    let (mut prof, _) = server.connect(&teacher("prof", "3B")).await;
    let (mut boss, _) = server.connect(&staff("boss")).await;
    for c in [&mut ana, &mut bob, &mut prof, &mut boss] {
        join_ok(c, ROOM).await;
    }
    let ack = moderate_ok(
        &mut prof,
        ROOM,
        ModAction::ReadOnly {
            on: true,
            thread: None,
        },
    )
    .await;
    let (event, action, _) = next_moderation(&mut bob, "bob: read-only event").await;
    assert_eq!(
        (event.offset, action),
        (
            ack.offset,
            ModAction::ReadOnly {
                on: true,
                thread: None
            }
        )
    );
    for (who, c) in [("ana", &mut ana), ("bob", &mut bob)] {
        refused(
            &format!("{who} posts"),
            post(c, ROOM, "on peut parler ?").await,
            ErrorCode::ReadOnly,
        );
        refused(
            &format!("{who} types"),
            within("typing", c.typing(ROOM)).await,
            ErrorCode::ReadOnly,
        );
    }
    let closing = post_ok(&mut prof, ROOM, "séance terminée").await;
    assert_eq!(
        closing.offset,
        ack.offset + 1,
        "refused posts took no offset"
    );
    let by_staff = post_ok(&mut boss, ROOM, "bonne soirée").await;
    ok("teacher types", within("typing", prof.typing(ROOM)).await);
    // Someone joining now is told by the join reply, before any refusal.
    let (mut late, _) = server.connect(&student("cleo", "3B")).await;
    assert!(
        join_ok(&mut late, ROOM).await.read_only,
        "join says read-only"
    );
    let seen = next_where(&mut ana, "ana reads the teacher", |f| match f {
        ServerFrame::Event(e) if text_of(e).is_some() => Some(e.clone()),
        _ => None,
    })
    .await;
    assert_eq!(seen.offset, closing.offset);

    moderate_ok(
        &mut prof,
        ROOM,
        ModAction::ReadOnly {
            on: false,
            thread: None,
        },
    )
    .await;
    let reopened = post_ok(&mut ana, ROOM, "merci").await;
    assert_eq!(reopened.offset, by_staff.offset + 2);
    let (mut later, _) = server.connect(&student("dan", "3B")).await;
    assert!(
        !join_ok(&mut later, ROOM).await.read_only,
        "join says open again"
    );
    ok("pupil types", within("typing", bob.typing(ROOM)).await);
    post_ok(&mut bob, ROOM, "à demain").await;
}

// -------------------------------------------------------- 7. audit log

#[tokio::test]
async fn every_action_is_appended_to_the_class_audit_log_in_order() {
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    let (mut prof, _) = server.connect(&teacher("prof", "3B")).await;
    let (mut watcher, _) = server.connect(&teacher("watcher", "3B")).await;
    let (mut boss, _) = server.connect(&staff("boss")).await;
    let audit_joined = join_ok(&mut watcher, AUDIT).await;
    assert_eq!(audit_joined.head, 0);
    for c in [&mut ana, &mut bob, &mut prof] {
        join_ok(c, ROOM).await;
    }
    let msg = post_ok(&mut ana, ROOM, "à effacer").await;
    post_ok(&mut bob, ROOM, "présent").await;

    // Pupils cannot read it.
    refused(
        "pupil history of audit",
        within("history", ana.history(AUDIT, None, None, None)).await,
        ErrorCode::Forbidden,
    );
    refused(
        "pupil join of audit",
        within("join", ana.join(AUDIT, None)).await,
        ErrorCode::Forbidden,
    );

    let actions: Vec<(&str, ModAction)> = vec![
        (
            ROOM,
            ModAction::Mute {
                user: "ana".into(),
                seconds: 60,
                reason: Some("bavardage".into()),
                announce: false,
            },
        ),
        (ROOM, unmute("ana")),
        (
            ROOM,
            ModAction::Kick {
                user: "bob".into(),
                reason: Some("dehors".into()),
                announce: false,
            },
        ),
        (ROOM, ban("bob")),
        (ROOM, unban("bob")),
        (ROOM, ModAction::SlowMode { seconds: 2 }),
        (ROOM, ModAction::SlowMode { seconds: 0 }),
        (
            ROOM,
            ModAction::ReadOnly {
                on: true,
                thread: None,
            },
        ),
        (
            ROOM,
            ModAction::ReadOnly {
                on: false,
                thread: None,
            },
        ),
        (
            ROOM,
            ModAction::Redact {
                offset: msg.offset,
                reason: Some("hors sujet".into()),
            },
        ),
        (
            "3B/chat/autre",
            ModAction::ReadOnly {
                on: true,
                thread: None,
            },
        ),
    ];
    let mut expected = Vec::new();
    for (room, action) in &actions {
        let ack = moderate_ok(&mut prof, room, action.clone()).await;
        // `until` as the room's event says (mute only).
        let until = if *room == ROOM {
            let (event, got, until) = next_moderation(&mut prof, "prof: own action").await;
            assert_eq!((event.offset, &got), (ack.offset, action));
            until
        } else {
            None
        };
        assert_eq!(
            until.is_some(),
            matches!(action, ModAction::Mute { .. }),
            "{action:?}: until"
        );
        expected.push(((*room).to_owned(), action.clone(), until));
    }
    // Refused actions are not logged.
    refused(
        "unmute of a user not muted",
        moderate(&mut prof, ROOM, unmute("ana")).await,
        ErrorCode::UnknownTarget,
    );
    refused(
        "a pupil mutes",
        moderate(&mut ana, ROOM, mute("bob", 60)).await,
        ErrorCode::Forbidden,
    );
    // Another class's actions go to that class's log.
    moderate_ok(
        &mut boss,
        "4A/chat/revision",
        ModAction::ReadOnly {
            on: true,
            thread: None,
        },
    )
    .await;

    let check = |who: &str, i: usize, event: &Event| {
        let (room, action, until) = &expected[i];
        assert_eq!(event.room, AUDIT, "{who} #{i}");
        assert_eq!(event.offset, i as u64 + 1, "{who} #{i}: offsets 1, 2, 3...");
        assert_eq!(event.from, info("prof", Role::Teacher), "{who} #{i}");
        assert_eq!(
            event.body,
            Body::Audit {
                room: room.clone(),
                action: action.clone(),
                until: *until,
            },
            "{who} #{i}"
        );
    };
    // Live, in order, to the teacher joined to the log.
    for i in 0..expected.len() {
        let event = next_where(&mut watcher, "watcher: audit entry", |f| match f {
            ServerFrame::Event(e) => Some(e.clone()),
            _ => None,
        })
        .await;
        check("live", i, &event);
    }
    // The same in history, for teachers of the class and staff.
    for (who, c) in [("watcher", &mut watcher), ("boss", &mut boss)] {
        let events = history_all(c, AUDIT).await;
        assert_eq!(events.len(), expected.len(), "{who}: entries in the log");
        for (i, event) in events.iter().enumerate() {
            check(who, i, event);
        }
    }
    let other_log = history_all(&mut boss, "4A/audit/log").await;
    assert_eq!(other_log.len(), 1);
    assert_eq!(
        other_log[0].body,
        Body::Audit {
            room: "4A/chat/revision".into(),
            action: ModAction::ReadOnly {
                on: true,
                thread: None
            },
            until: None
        }
    );
    // A teacher of another class cannot read 3B's log.
    let (mut other, _) = server.connect(&teacher("other", "4A")).await;
    refused(
        "teacher of 4A reads 3B audit",
        within("history", other.history(AUDIT, None, None, None)).await,
        ErrorCode::Forbidden,
    );
}

// ------------------------------------------------------ 8. persistence

#[tokio::test]
async fn moderation_state_and_tombstone_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "PERSISTED-SECRET-5e8b";
    let epoch;
    {
        let proc = Proc::serve(dir.path(), free_port(), &[]).await;
        let url = proc.url();
        let connect = |t: String| {
            let url = url.clone();
            async move { Client::connect(&url, &t).await.expect("connects").0 }
        };
        let mut ana = connect(student("ana", "3B")).await;
        let mut bob = connect(student("bob", "3B")).await;
        let mut carl = connect(student("carl", "3B")).await;
        let mut prof = connect(teacher("prof", "3B")).await;
        // The teacher opens the room: pupils join only rooms that exist.
        for c in [&mut prof, &mut ana, &mut bob, &mut carl] {
            join_ok(c, ROOM).await;
        }
        let target = post_ok(&mut ana, ROOM, secret).await;
        epoch = target.epoch.clone();
        post_ok(&mut bob, ROOM, "deux").await;
        post_ok(&mut carl, ROOM, "trois").await;
        moderate_ok(&mut prof, ROOM, mute("ana", 3600)).await;
        moderate_ok(&mut prof, ROOM, ban("bob")).await;
        moderate_ok(
            &mut prof,
            ROOM,
            ModAction::ReadOnly {
                on: true,
                thread: None,
            },
        )
        .await;
        moderate_ok(
            &mut prof,
            ROOM,
            ModAction::Redact {
                offset: target.offset,
                reason: Some("gros mot".into()),
            },
        )
        .await;
        proc.kill9().await;
    }

    let proc = Proc::serve(dir.path(), free_port(), &[]).await;
    let url = proc.url();
    let connect = |t: String| {
        let url = url.clone();
        async move {
            Client::connect(&url, &t)
                .await
                .expect("connects after restart")
                .0
        }
    };
    // The mute holds (ana may read, not post).
    let mut ana = connect(student("ana", "3B")).await;
    let joined = join_ok(&mut ana, ROOM).await;
    assert_eq!(joined.epoch, epoch);
    assert_eq!(joined.head, 7, "3 messages + 4 moderation events");
    let refusal = refused(
        "muted after restart",
        post(&mut ana, ROOM, "libre ?").await,
        ErrorCode::Muted,
    );
    assert!(
        refusal.retry_after_ms.is_some_and(|r| r > 3_000_000),
        "{refusal:?}"
    );
    // The ban holds.
    let mut bob = connect(student("bob", "3B")).await;
    refused(
        "banned after restart",
        within("join", bob.join(ROOM, None)).await,
        ErrorCode::Banned,
    );
    // Read-only holds.
    let mut carl = connect(student("carl", "3B")).await;
    join_ok(&mut carl, ROOM).await;
    refused(
        "read-only after restart",
        post(&mut carl, ROOM, "on peut ?").await,
        ErrorCode::ReadOnly,
    );
    refused(
        "typing in read-only after restart",
        within("typing", carl.typing(ROOM)).await,
        ErrorCode::ReadOnly,
    );
    let mut prof = connect(teacher("prof", "3B")).await;
    join_ok(&mut prof, ROOM).await;
    assert_eq!(post_ok(&mut prof, ROOM, "le prof parle").await.offset, 8);
    // The tombstone holds: in history, in a recovering join, in storage.
    let stone = Body::Redacted {
        by: info("prof", Role::Teacher),
        reason: Some("gros mot".into()),
        thread: None,
        edit_of: None,
    };
    let events = history_all(&mut carl, ROOM).await;
    assert_eq!(events[0].body, stone);
    assert!(events.iter().all(|e| text_of(e) != Some(secret)));
    let mut dave = connect(student("dave", "3B")).await;
    let recovered = ok(
        "recovering join after restart",
        within(
            "join",
            dave.join(
                ROOM,
                Some(Position {
                    epoch: epoch.clone(),
                    offset: 0,
                }),
            ),
        )
        .await,
    );
    assert_eq!(recovered.recovery.map(|r| r.recovered), Some(true));
    assert_eq!(recovered.events[0].body, stone);
    let status = proc.terminate().await;
    assert!(status.success(), "{status:?}");

    let store =
        preau::store::Store::open(dir.path(), preau::store::StoreOptions::default(), |_| {})
            .expect("open the store");
    for offset in 1..=8 {
        let raw = store.raw_event(ROOM, offset).unwrap().expect("stored");
        assert!(
            !contains(&raw, secret.as_bytes()),
            "offset {offset} holds the redacted text"
        );
    }
    store.shutdown().unwrap();
}

// --------------------------------------------------------- 9. bad input

/// Sends a hand-built `moderate` frame and returns the reply to `id`.
async fn raw_moderate(client: &mut Client, id: u32, frame: serde_json::Value) -> ServerFrame {
    let bytes = rmp_serde::to_vec_named(&frame).expect("encode raw frame");
    client.send_raw(bytes).expect("send raw");
    next_where(client, &format!("reply to raw frame {id}"), |f| match f {
        ServerFrame::Error(e) if e.id == Some(id) => Some(f.clone()),
        ServerFrame::Ok { id: Some(got), .. } if *got == id => Some(f.clone()),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn bad_moderation_requests_get_documented_errors() {
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let (mut prof, _) = server.connect(&teacher("prof", "3B")).await;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    join_ok(&mut ana, ROOM).await;
    let msg = post_ok(&mut ana, ROOM, "coucou").await;

    let too_long = "r".repeat(501);
    let multibyte_too_long = "é".repeat(251); // 502 bytes, 251 characters
    let cases: Vec<(&str, &str, ModAction, ErrorCode)> = vec![
        (
            "unknown room shape",
            "nope",
            ModAction::ReadOnly {
                on: true,
                thread: None,
            },
            ErrorCode::InvalidRoom,
        ),
        (
            "unknown room kind",
            "3B/wiki/debat",
            ModAction::ReadOnly {
                on: true,
                thread: None,
            },
            ErrorCode::InvalidRoom,
        ),
        (
            "audit room with another name",
            "3B/audit/other",
            ModAction::ReadOnly {
                on: true,
                thread: None,
            },
            ErrorCode::InvalidRoom,
        ),
        (
            "room of another class",
            "4A/chat/revision",
            ModAction::ReadOnly {
                on: true,
                thread: None,
            },
            ErrorCode::Forbidden,
        ),
        (
            "the audit log itself",
            AUDIT,
            ModAction::ReadOnly {
                on: true,
                thread: None,
            },
            ErrorCode::Forbidden,
        ),
        (
            "mute an unknown user",
            ROOM,
            mute("ghost", 60),
            ErrorCode::UnknownTarget,
        ),
        (
            "kick an unknown user",
            ROOM,
            kick("ghost"),
            ErrorCode::UnknownTarget,
        ),
        (
            "ban an unknown user",
            ROOM,
            ban("ghost"),
            ErrorCode::UnknownTarget,
        ),
        (
            "unmute a user not muted",
            ROOM,
            unmute("ana"),
            ErrorCode::UnknownTarget,
        ),
        (
            "unban a user not banned",
            ROOM,
            unban("ana"),
            ErrorCode::UnknownTarget,
        ),
        ("mute 0 s", ROOM, mute("ana", 0), ErrorCode::InvalidField),
        (
            "mute 10^9 s",
            ROOM,
            mute("ana", 1_000_000_000),
            ErrorCode::InvalidField,
        ),
        (
            "mute 30 days + 1 s",
            ROOM,
            mute("ana", 30 * 24 * 3600 + 1),
            ErrorCode::InvalidField,
        ),
        (
            "mute u64::MAX s",
            ROOM,
            mute("ana", u64::MAX),
            ErrorCode::InvalidField,
        ),
        (
            "slow mode 21601 s",
            ROOM,
            ModAction::SlowMode { seconds: 21_601 },
            ErrorCode::InvalidField,
        ),
        (
            "reason of 501 bytes",
            ROOM,
            ModAction::Kick {
                user: "ana".into(),
                reason: Some(too_long.clone()),
                announce: false,
            },
            ErrorCode::InvalidField,
        ),
        (
            "reason of 502 bytes in 251 characters",
            ROOM,
            ModAction::Mute {
                user: "ana".into(),
                seconds: 60,
                reason: Some(multibyte_too_long),
                announce: false,
            },
            ErrorCode::InvalidField,
        ),
        ("redact offset 0", ROOM, redact(0), ErrorCode::InvalidField),
        (
            "mute an empty user id",
            ROOM,
            mute("", 60),
            ErrorCode::InvalidField,
        ),
    ];
    let mut wrong = Vec::new();
    for (what, room, action, code) in cases {
        let got = outcome(&moderate(&mut prof, room, action).await);
        if got != code.as_str() {
            wrong.push(format!("{what}: got {got}, want {code}"));
        }
        if ping(&mut prof).await.is_err() {
            wrong.push(format!("{what}: ping after it failed"));
        }
    }

    // Frames the typed request cannot even describe.
    let raw_cases: Vec<(&str, serde_json::Value)> = vec![
        (
            "negative seconds",
            serde_json::json!({"type": "moderate", "id": 9001, "room": ROOM,
                "action": {"kind": "mute", "user": "ana", "seconds": -5}}),
        ),
        (
            "negative slow mode",
            serde_json::json!({"type": "moderate", "id": 9002, "room": ROOM,
                "action": {"kind": "slow_mode", "seconds": -1}}),
        ),
        (
            "unknown action kind",
            serde_json::json!({"type": "moderate", "id": 9003, "room": ROOM,
                "action": {"kind": "frobnicate", "offset": 1}}),
        ),
        (
            "action without kind",
            serde_json::json!({"type": "moderate", "id": 9004, "room": ROOM,
                "action": {"user": "ana", "seconds": 60}}),
        ),
        (
            "action not a map",
            serde_json::json!({"type": "moderate", "id": 9005, "room": ROOM,
                "action": "mute"}),
        ),
        (
            "no action",
            serde_json::json!({"type": "moderate", "id": 9006, "room": ROOM}),
        ),
    ];
    for (i, (what, frame)) in raw_cases.into_iter().enumerate() {
        let id = 9001 + i as u32;
        match raw_moderate(&mut prof, id, frame).await {
            ServerFrame::Error(e) if e.code == ErrorCode::InvalidField => {}
            other => wrong.push(format!("{what}: got {other:?}, want invalid_field")),
        }
        if ping(&mut prof).await.is_err() {
            wrong.push(format!("{what}: ping after it failed"));
        }
    }

    // Nothing refused was logged or took effect; the bounds themselves pass.
    let audit = history_all(&mut prof, AUDIT).await;
    if !audit.is_empty() {
        wrong.push(format!("refused requests were logged: {audit:?}"));
    }
    let state = server.server.hub().loaded_room(ROOM).unwrap().moderation();
    if state.muted.contains_key("ana") || state.read_only || state.slow_mode_secs != 0 {
        wrong.push(format!("refused requests changed the room: {state:?}"));
    }
    post_ok(&mut ana, ROOM, "toujours là").await;
    let boundary: Vec<(&str, ModAction)> = vec![
        ("mute 30 days", mute("ana", 30 * 24 * 3600)),
        ("unmute", unmute("ana")),
        ("slow mode 21600 s", ModAction::SlowMode { seconds: 21_600 }),
        ("slow mode off", ModAction::SlowMode { seconds: 0 }),
        (
            "reason of 500 bytes",
            ModAction::Mute {
                user: "ana".into(),
                seconds: 60,
                reason: Some("é".repeat(250)),
                announce: false,
            },
        ),
        ("unmute again", unmute("ana")),
        (
            "redact with a 500-byte reason",
            ModAction::Redact {
                offset: msg.offset,
                reason: Some(too_long[..500].to_owned()),
            },
        ),
    ];
    for (what, action) in boundary {
        let got = outcome(&moderate(&mut prof, ROOM, action).await);
        if got != "ok" {
            wrong.push(format!("{what}: got {got}, want ok"));
        }
    }
    let audit = history_all(&mut prof, AUDIT).await;
    if audit.len() != 7 {
        wrong.push(format!("{} audit entries, want 7", audit.len()));
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

// ------------------------------------------------------------- pin and unpin

/// Pins are listed in join replies, in offset order, survive a restart, go
/// with a redaction, and only moderators may set them.
#[tokio::test]
async fn pinned_messages_are_listed_on_join_and_survive_a_restart() {
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let (mut prof, _) = server.connect(&teacher("prof", "3B")).await;
    join_ok(&mut ana, ROOM).await;
    let first = post_ok(&mut ana, ROOM, "à retenir").await;
    let second = post_ok(&mut ana, ROOM, "aussi").await;
    let third = post_ok(&mut ana, ROOM, "et ceci").await;
    refused(
        "pupil pins",
        ana.moderate(
            ROOM,
            ModAction::Pin {
                offset: first.offset,
            },
        )
        .await,
        ErrorCode::Forbidden,
    );
    for offset in [third.offset, first.offset, second.offset] {
        moderate_ok(&mut prof, ROOM, ModAction::Pin { offset }).await;
    }
    refused(
        "pin of an unknown offset",
        prof.moderate(ROOM, ModAction::Pin { offset: 999 }).await,
        ErrorCode::UnknownTarget,
    );
    moderate_ok(
        &mut prof,
        ROOM,
        ModAction::Unpin {
            offset: second.offset,
        },
    )
    .await;
    refused(
        "unpin of a message that is not pinned",
        prof.moderate(
            ROOM,
            ModAction::Unpin {
                offset: second.offset,
            },
        )
        .await,
        ErrorCode::UnknownTarget,
    );
    moderate_ok(&mut prof, ROOM, redact(third.offset)).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    assert_eq!(join_ok(&mut bob, ROOM).await.pinned, vec![first.offset]);

    // A graceful restart on the same data folder keeps the pin.
    let dir = server.dir.path().to_owned();
    drop((ana, prof, bob));
    server.server.shutdown();
    let TestServer {
        server: stopped,
        dir: kept,
    } = server;
    stopped.wait().await.expect("clean stop");
    let restarted = preau::start(support::config(&dir)).await.expect("restart");
    let (mut cleo, _) = Client::connect(
        &format!("ws://{}/ws", restarted.local_addr()),
        &student("cleo", "3B"),
    )
    .await
    .expect("connect");
    assert_eq!(join_ok(&mut cleo, ROOM).await.pinned, vec![first.offset]);
    drop(kept);
}

// ------------------------------------------------- reports and the room view

/// A pupil's report reaches two connected moderators live, shows in the
/// room view until a moderator resolves it; the room view shows who is
/// muted or banned and what is pinned, and only moderators may see it.
#[tokio::test]
async fn reports_reach_moderators_and_the_room_view_until_resolved() {
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let (mut bob, _) = server.connect(&student("bob", "3B")).await;
    let (mut prof, _) = server.connect(&teacher("prof", "3B")).await;
    let (mut boss, _) = server.connect(&staff("boss")).await;
    join_ok(&mut ana, ROOM).await;
    join_ok(&mut bob, ROOM).await;
    join_ok(&mut prof, AUDIT).await;
    join_ok(&mut boss, AUDIT).await;
    let rude = post_ok(&mut bob, ROOM, "message déplacé").await;

    let ack = ok(
        "report",
        ana.request::<PostOk>(preau::protocol::Request::Report {
            id: None,
            room: ROOM.into(),
            offset: rude.offset,
            reason: Some("moquerie".into()),
        })
        .await,
    );
    assert_eq!(ack.room, AUDIT, "a report is an entry of the audit log");
    for moderator in [&mut prof, &mut boss] {
        let report = next_where(moderator, "live report", |f| match f {
            ServerFrame::Event(e) if matches!(e.body, Body::Report { .. }) => Some(e.clone()),
            _ => None,
        })
        .await;
        assert_eq!(report.offset, ack.offset);
        assert_eq!(report.from.id, "ana");
        assert!(
            matches!(&report.body, Body::Report { room, offset, .. } if room == ROOM && *offset == rude.offset)
        );
    }
    refused(
        "report of an unknown message",
        ana.request::<PostOk>(preau::protocol::Request::Report {
            id: None,
            room: ROOM.into(),
            offset: 999,
            reason: None,
        })
        .await,
        ErrorCode::UnknownTarget,
    );

    moderate_ok(&mut prof, ROOM, mute("bob", 600)).await;
    moderate_ok(
        &mut prof,
        ROOM,
        ModAction::Pin {
            offset: rude.offset,
        },
    )
    .await;
    let seen = ok("room view", room_view(&mut prof).await);
    assert_eq!(seen.open_reports.len(), 1);
    assert_eq!(seen.open_reports[0].offset, ack.offset);
    assert!(seen.muted.contains_key("bob"));
    assert_eq!(seen.pinned, vec![rude.offset]);
    assert_eq!(seen.recent_messages, 1);
    let bob_state = seen
        .members
        .iter()
        .find(|m| m.user.id == "bob")
        .expect("bob listed");
    assert!(bob_state.muted_until.is_some() && !bob_state.banned);
    refused(
        "pupil room view",
        room_view(&mut ana).await,
        ErrorCode::Forbidden,
    );

    refused(
        "resolve of an unknown report",
        prof.moderate(
            ROOM,
            ModAction::Resolve {
                report: 999,
                dismissed: true,
            },
        )
        .await,
        ErrorCode::UnknownTarget,
    );
    moderate_ok(
        &mut boss,
        ROOM,
        ModAction::Resolve {
            report: ack.offset,
            dismissed: false,
        },
    )
    .await;
    assert!(ok("room view", room_view(&mut prof).await)
        .open_reports
        .is_empty());
    refused(
        "resolving twice",
        prof.moderate(
            ROOM,
            ModAction::Resolve {
                report: ack.offset,
                dismissed: true,
            },
        )
        .await,
        ErrorCode::UnknownTarget,
    );
}

async fn room_view(client: &mut Client) -> Result<preau::protocol::RoomView, ClientError> {
    client
        .request(preau::protocol::Request::RoomView {
            id: None,
            room: ROOM.into(),
        })
        .await
}
