//! The homework diary (`protocol/README.md`, "Homework diary"): who may do
//! what (a matrix over every role, parents with children in two classes
//! included), entries and their versions live, private done marks,
//! scheduled publication on an injected clock (one node and two), queries
//! across classes over a semester, the load of a week, the calendar feed
//! parsed back by an independent iCalendar parser, export and erasure,
//! and a restart.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use preau::client::{Client, ClientError};
use preau::kinds::agenda::{AgendaRequest, NewItem};
use preau::kinds::homework::{DayLoad, HomeworkOk, HomeworkRequest, LoadOk, What};
use preau::protocol::{Body, ErrorCode, PostOk, Role, ServerFrame};
use serde::Deserialize;
use support::redis::RedisServer;
use support::*;

const DIARY_3B: &str = "3B/homework/diary";
const DIARY_4A: &str = "4A/homework/diary";
/// Monday 2026-12-07, 08:00 UTC.
const MONDAY_8H: u64 = 1_796_630_400_000;
const MINUTE: u64 = 60_000;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
const WAIT: Duration = Duration::from_secs(10);

fn child(id: &str, name: &str, classes: &[&str]) -> preau::auth::Child {
    preau::auth::Child {
        id: id.to_owned(),
        name: Some(name.to_owned()),
        classes: classes.iter().map(|c| (*c).to_owned()).collect(),
    }
}

fn parent(user: &str, children: &[preau::auth::Child]) -> String {
    let mut classes: Vec<&str> = children
        .iter()
        .flat_map(|c| c.classes.iter().map(String::as_str))
        .collect();
    classes.sort_unstable();
    classes.dedup();
    let mut c = claims(user, Role::Parent, &classes);
    c.children = children.to_vec();
    keyring().mint(&c).expect("mint parent token")
}

fn staff(user: &str) -> String {
    token(user, Role::Staff, &[])
}

/// A clock the test moves by hand (ms since the Unix epoch).
fn manual_clock(start: u64) -> (Arc<AtomicU64>, preau::hub::Clock) {
    let now = Arc::new(AtomicU64::new(start));
    let read = now.clone();
    (now, Arc::new(move || read.load(Ordering::SeqCst)))
}

async fn server_with_clock(
    clock: preau::hub::Clock,
    tweak: impl FnOnce(&mut preau::config::Config),
) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config(dir.path());
    tweak(&mut config);
    let server = preau::start_with_clock(config, clock)
        .await
        .expect("server starts");
    TestServer { server, dir }
}

/// A homework item of `subject` given on `date`, due on `due`.
fn homework(
    room: &str,
    subject: &str,
    text: &str,
    date: &str,
    due: &str,
    minutes: Option<u32>,
) -> HomeworkRequest {
    HomeworkRequest::HomeworkWrite {
        id: None,
        room: room.to_owned(),
        entry: None,
        what: What::Homework,
        subject: subject.to_owned(),
        text: text.to_owned(),
        date: date.to_owned(),
        due: Some(due.to_owned()),
        minutes,
        links: Vec::new(),
        publish_at: None,
        key: None,
    }
}

fn lesson(room: &str, subject: &str, text: &str, date: &str) -> HomeworkRequest {
    HomeworkRequest::HomeworkWrite {
        id: None,
        room: room.to_owned(),
        entry: None,
        what: What::Lesson,
        subject: subject.to_owned(),
        text: text.to_owned(),
        date: date.to_owned(),
        due: None,
        minutes: None,
        links: Vec::new(),
        publish_at: None,
        key: None,
    }
}

fn with(
    mut request: HomeworkRequest,
    f: impl FnOnce(&mut Option<u64>, &mut Option<u64>, &mut Vec<String>),
) -> HomeworkRequest {
    if let HomeworkRequest::HomeworkWrite {
        entry,
        publish_at,
        links,
        ..
    } = &mut request
    {
        f(entry, publish_at, links);
    }
    request
}

async fn write(client: &mut Client, request: HomeworkRequest) -> Result<PostOk, ClientError> {
    client.request_kind(&request).await
}

/// [`write`] with an idempotency key, retried while the cluster says to
/// (a node that just started).
async fn write_retrying(client: &mut Client, mut request: HomeworkRequest) -> PostOk {
    if let HomeworkRequest::HomeworkWrite { key, .. } = &mut request {
        *key = Some("k1".to_owned());
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match client.request_kind(&request).await {
            Ok(ok) => return ok,
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("write: {e}"),
        }
    }
}

async fn done(
    client: &mut Client,
    room: &str,
    entry: u64,
    done: bool,
) -> Result<PostOk, ClientError> {
    client
        .request_kind(&HomeworkRequest::HomeworkDone {
            id: None,
            room: room.to_owned(),
            entry,
            done,
        })
        .await
}

async fn list(
    client: &mut Client,
    room: &str,
    from: &str,
    to: &str,
) -> Result<HomeworkOk, ClientError> {
    client
        .request_kind(&HomeworkRequest::Homework {
            id: None,
            room: room.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            limit: None,
        })
        .await
}

#[derive(Debug, Deserialize)]
struct DueOk {
    items: Vec<DueItem>,
    more: bool,
}

#[derive(Debug, Deserialize)]
struct DueItem {
    class: String,
    entry: u64,
    subject: String,
    due: String,
    #[serde(default)]
    done: Option<bool>,
    #[serde(default)]
    done_by: Option<Vec<String>>,
    #[serde(default)]
    children: Vec<ChildLabel>,
}

#[derive(Debug, Deserialize, PartialEq)]
struct ChildLabel {
    id: String,
    name: String,
}

async fn due(client: &mut Client, from: &str, to: &str) -> Result<DueOk, ClientError> {
    client
        .request_kind(&HomeworkRequest::HomeworkDue {
            id: None,
            from: from.to_owned(),
            to: to.to_owned(),
            limit: Some(500),
        })
        .await
}

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Refused(reply)) => reply.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn outcome<T>(result: &Result<T, ClientError>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(ClientError::Refused(reply)) => reply.code.as_str().to_owned(),
        Err(other) => format!("{other}"),
    }
}

/// The next event of a kind of the diary (skipping presence and typing),
/// or `None` if none comes within `wait`.
async fn next_kind(
    client: &mut Client,
    wait: Duration,
) -> Option<(String, preau::protocol::Event)> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let frame = tokio::time::timeout_at(deadline, next(client)).await.ok()?;
        match frame {
            ServerFrame::Event(event) => match &event.body {
                Body::Kind(body) => return Some((body.kind.clone(), event)),
                _ => continue,
            },
            _ => continue,
        }
    }
}

async fn join_retrying(client: &mut Client, room: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match client.join(room, None).await {
            Ok(_) => return,
            Err(e) if e.is_retryable() && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("join {room}: {e}"),
        }
    }
}

// ------------------------------------------------------------ the matrix

/// Every role against the diary and the agenda of 3B: read (`join`, and
/// the kind's query without joining), write an entry or item, mark done.
/// The parent of two children in 3B and 4A reads both classes; the parent
/// of a 4A child reads nothing of 3B; pupils never write.
#[tokio::test]
async fn who_may_read_write_and_mark_in_the_diary_and_the_agenda() {
    let server = TestServer::start().await;
    let url = server.url();
    // The class's teacher opens both rooms, and writes one homework item.
    let mut prof = client(&url, &teacher("prof", "3B")).await;
    prof.join(DIARY_3B, None)
        .await
        .expect("the teacher opens the diary");
    prof.join("3B/agenda/classe", None)
        .await
        .expect("and the agenda");
    let item = write(
        &mut prof,
        homework(
            DIARY_3B,
            "Maths",
            "Exercices 4 et 5",
            "2026-12-07",
            "2026-12-10",
            Some(30),
        ),
    )
    .await
    .expect("written");

    let two = [child("ana", "Ana", &["3B"]), child("leo", "Léo", &["4A"])];
    let one = [child("zoe", "Zoé", &["4A"])];
    let users: Vec<(&str, String)> = vec![
        ("student-3B", student("ana", "3B")),
        ("student-4A", student("leo", "4A")),
        ("teacher-3B", teacher("prof2", "3B")),
        ("teacher-4A", teacher("prof4", "4A")),
        ("parent-3B+4A", parent("mum", &two)),
        ("parent-4A", parent("dad", &one)),
        ("staff", staff("cpe")),
    ];
    let mut table = Vec::new();
    for (label, tok) in &users {
        let mut c = client(&url, tok).await;
        let listed = outcome(&list(&mut c, DIARY_3B, "2026-12-07", "2026-12-13").await);
        let agenda = outcome(
            &c.request_kind::<serde_json::Value>(&AgendaRequest::Agenda {
                id: None,
                room: "3B/agenda/classe".to_owned(),
                from: MONDAY_8H - DAY,
                to: MONDAY_8H + 7 * DAY,
                limit: None,
            })
            .await,
        );
        let joined = outcome(&c.join(DIARY_3B, None).await);
        let wrote = outcome(
            &write(
                &mut c,
                lesson(DIARY_3B, "Français", "Lecture", "2026-12-07"),
            )
            .await,
        );
        let marked = outcome(&done(&mut c, DIARY_3B, item.offset, true).await);
        let agenda_joined = outcome(&c.join("3B/agenda/classe", None).await);
        let agenda_added = outcome(
            &c.request_kind::<PostOk>(&AgendaRequest::AgendaAdd {
                id: None,
                room: "3B/agenda/classe".to_owned(),
                item: NewItem {
                    title: "Sortie".to_owned(),
                    starts: MONDAY_8H + DAY,
                    ends: None,
                    all_day: None,
                    place: None,
                    details: None,
                },
                key: None,
            })
            .await,
        );
        table.push(format!(
            "{label:13} diary: list={listed} join={joined} write={wrote} done={marked} | agenda: list={agenda} join={agenda_joined} add={agenda_added}"
        ));
    }
    let expected = [
        "student-3B    diary: list=ok join=ok write=forbidden done=ok | agenda: list=ok join=ok add=forbidden",
        "student-4A    diary: list=forbidden join=forbidden write=not_joined done=not_joined | agenda: list=forbidden join=forbidden add=not_joined",
        "teacher-3B    diary: list=ok join=ok write=ok done=forbidden | agenda: list=ok join=ok add=ok",
        "teacher-4A    diary: list=forbidden join=forbidden write=not_joined done=not_joined | agenda: list=forbidden join=forbidden add=not_joined",
        "parent-3B+4A  diary: list=ok join=ok write=forbidden done=forbidden | agenda: list=ok join=ok add=forbidden",
        "parent-4A     diary: list=forbidden join=forbidden write=not_joined done=not_joined | agenda: list=forbidden join=forbidden add=not_joined",
        "staff         diary: list=ok join=ok write=ok done=forbidden | agenda: list=ok join=ok add=ok",
    ];
    assert_eq!(
        table.join("\n"),
        expected.join("\n"),
        "\n{}",
        table.join("\n")
    );
    // A plain post in a diary is refused: it takes entries.
    assert_eq!(
        code(prof.post(DIARY_3B, "bonjour").await),
        ErrorCode::InvalidField
    );
    // One diary per class: any other name is not a room.
    assert_eq!(
        code(prof.join("3B/homework/maths", None).await),
        ErrorCode::InvalidRoom
    );
    // The directory lists it.
    let rooms: preau::protocol::RoomsOk = prof
        .request(preau::protocol::Request::Rooms {
            id: None,
            class: "3B".to_owned(),
            kind: "homework".to_owned(),
        })
        .await
        .expect("rooms");
    assert_eq!(rooms.rooms, [DIARY_3B]);
}

// --------------------------------------------------- entries and marks

#[tokio::test]
async fn entries_reach_the_class_live_and_marks_stay_with_the_pupil_and_parents() {
    let server = TestServer::start().await;
    let url = server.url();
    let mut prof = client(&url, &teacher("prof", "3B")).await;
    prof.join(DIARY_3B, None).await.expect("opened");
    let mut ana = client(&url, &student("ana", "3B")).await;
    let mut bob = client(&url, &student("bob", "3B")).await;
    let mut mum = client(&url, &parent("mum", &[child("ana", "Ana Martin", &["3B"])])).await;
    for c in [&mut ana, &mut bob, &mut mum] {
        c.join(DIARY_3B, None).await.expect("joined");
    }

    let taught = write(
        &mut prof,
        with(
            lesson(DIARY_3B, "Maths", "Fractions : définition", "2026-12-07"),
            |_, _, links| links.push("https://fr.khanacademy.org/math/fractions".to_owned()),
        ),
    )
    .await
    .expect("lesson");
    let item = write(
        &mut prof,
        homework(
            DIARY_3B,
            "Maths",
            "Exercices 4 et 5 p. 32",
            "2026-12-07",
            "2026-12-10",
            Some(30),
        ),
    )
    .await
    .expect("homework");
    for (who, c) in [("ana", &mut ana), ("bob", &mut bob), ("mum", &mut mum)] {
        let (kind, event) = next_kind(c, WAIT)
            .await
            .unwrap_or_else(|| panic!("{who}: the lesson"));
        assert_eq!(
            (kind.as_str(), event.offset),
            ("homework_entry", taught.offset),
            "{who}"
        );
        let (_, event) = next_kind(c, WAIT)
            .await
            .unwrap_or_else(|| panic!("{who}: the homework"));
        assert_eq!(event.offset, item.offset, "{who}");
    }

    // A new version, by its author.
    let changed = write(
        &mut prof,
        with(
            homework(
                DIARY_3B,
                "Maths",
                "Exercices 4, 5 et 6 p. 32",
                "2026-12-07",
                "2026-12-11",
                Some(45),
            ),
            |entry, _, _| *entry = Some(item.offset),
        ),
    )
    .await
    .expect("changed");
    let (_, event) = next_kind(&mut ana, WAIT).await.expect("the change");
    assert_eq!(event.offset, changed.offset);

    // Ana marks it done: she and her mother are told, Bob and the teacher are not.
    done(&mut ana, DIARY_3B, item.offset, true)
        .await
        .expect("done");
    let (kind, mark) = next_kind(&mut ana, WAIT).await.expect("ana's mark");
    assert_eq!(
        (kind.as_str(), mark.from.id.as_str()),
        ("homework_done", "ana")
    );
    let (kind, _) = next_kind(&mut mum, WAIT).await.expect("mum: the change");
    assert_eq!(kind, "homework_entry");
    let (kind, seen) = next_kind(&mut mum, WAIT).await.expect("her mother sees it");
    assert_eq!((kind.as_str(), seen.offset), ("homework_done", mark.offset));
    let (_, bob_next) = next_kind(&mut bob, WAIT).await.expect("bob: the change");
    assert_eq!(bob_next.offset, changed.offset);
    let after = write(
        &mut prof,
        lesson(DIARY_3B, "Histoire", "La Révolution", "2026-12-08"),
    )
    .await
    .expect("lesson");
    let (_, bob_next) = next_kind(&mut bob, WAIT)
        .await
        .expect("bob: the next lesson");
    assert_eq!(
        bob_next.offset, after.offset,
        "bob was not shown ana's mark"
    );
    let (_, prof_next) = next_kind(&mut prof, WAIT).await.expect("prof: own lesson");
    assert_ne!(prof_next.from.id, "ana");
    // Nor in history.
    for (who, c, sees) in [
        ("bob", &mut bob, false),
        ("prof", &mut prof, false),
        ("mum", &mut mum, true),
        ("ana", &mut ana, true),
    ] {
        let page = c
            .history(DIARY_3B, None, Some(0), Some(100))
            .await
            .expect("history");
        let has = page.events.iter().any(|e| e.offset == mark.offset);
        assert_eq!(has, sees, "{who}: the mark in history");
    }

    // Listings: the pupil her mark, the parent which child, the teacher a count.
    let week = list(&mut ana, DIARY_3B, "2026-12-07", "2026-12-13")
        .await
        .expect("ana's week");
    let subjects: Vec<(&str, &str)> = week
        .entries
        .iter()
        .map(|e| (e.subject.as_str(), e.text.as_str()))
        .collect();
    assert_eq!(
        subjects,
        [
            ("Maths", "Fractions : définition"),
            ("Histoire", "La Révolution"),
            ("Maths", "Exercices 4, 5 et 6 p. 32")
        ],
        "by day: the lessons of Monday and Tuesday, the homework due Friday"
    );
    let hw = &week.entries[2];
    assert_eq!(
        (hw.entry, hw.version, hw.versions),
        (item.offset, changed.offset, 2)
    );
    assert_eq!(hw.author.id, "prof", "the first version's author");
    assert_eq!(
        (hw.done, hw.done_count.is_none(), hw.done_names.is_none()),
        (Some(true), true, true)
    );
    assert_eq!(
        week.entries[0].links,
        ["https://fr.khanacademy.org/math/fractions"]
    );
    let week = list(&mut mum, DIARY_3B, "2026-12-07", "2026-12-13")
        .await
        .expect("mum's week");
    assert_eq!(
        week.entries[2].done_by.as_deref(),
        Some(&["ana".to_owned()][..])
    );
    let week = list(&mut prof, DIARY_3B, "2026-12-07", "2026-12-13")
        .await
        .expect("prof's week");
    assert_eq!(
        (week.entries[2].done_count, week.entries[2].done.is_none()),
        (Some(1), true)
    );
    assert!(
        week.entries[2].done_names.is_none(),
        "names only where the school shows them"
    );
    // Unmarking.
    done(&mut ana, DIARY_3B, item.offset, false)
        .await
        .expect("not done");
    let week = list(&mut prof, DIARY_3B, "2026-12-07", "2026-12-13")
        .await
        .expect("prof's week");
    assert_eq!(week.entries[2].done_count, Some(0));

    // Only the author changes an entry; a colleague of the class may not.
    let mut colleague = client(&url, &teacher("prof2", "3B")).await;
    colleague.join(DIARY_3B, None).await.expect("joined");
    let theirs = with(
        lesson(DIARY_3B, "Maths", "Autre", "2026-12-07"),
        |entry, _, _| *entry = Some(taught.offset),
    );
    assert_eq!(
        code(write(&mut colleague, theirs).await),
        ErrorCode::Forbidden
    );
    // A lesson is not marked done; an unknown entry is unknown.
    assert_eq!(
        code(done(&mut ana, DIARY_3B, taught.offset, true).await),
        ErrorCode::InvalidField
    );
    assert_eq!(
        code(done(&mut ana, DIARY_3B, 9_999, true).await),
        ErrorCode::UnknownTarget
    );

    // Deleting an entry is redacting its first event: every version goes, the listing forgets it.
    prof.moderate(
        DIARY_3B,
        preau::protocol::ModAction::Redact {
            offset: item.offset,
            reason: Some("erreur".to_owned()),
        },
    )
    .await
    .expect("deleted");
    let week = list(&mut ana, DIARY_3B, "2026-12-07", "2026-12-13")
        .await
        .expect("week");
    assert_eq!(
        week.entries.len(),
        2,
        "the homework is gone: {:?}",
        week.entries
    );
    let page = ana
        .history(DIARY_3B, None, Some(0), Some(100))
        .await
        .expect("history");
    for offset in [item.offset, changed.offset] {
        let tomb = page
            .events
            .iter()
            .find(|e| e.offset == offset)
            .expect("a tombstone in its place");
        assert!(
            matches!(tomb.body, Body::Redacted { .. }),
            "{:?}",
            tomb.body
        );
    }
    // Deleted, not hidden: both versions' words leave the disk within
    // seconds (README.md, "Deleted means unreadable").
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let found = preau::store::find_in_data(
            server.dir.path(),
            &["Exercices 4 et 5 p. 32", "Exercices 4, 5 et 6 p. 32"],
        )
        .expect("scan");
        if found.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still on disk: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !preau::store::find_in_data(server.dir.path(), &["La Révolution"])
            .expect("scan")
            .is_empty(),
        "the other entries stay"
    );
}

#[tokio::test]
async fn teachers_see_names_only_where_the_school_chose_so() {
    let server = TestServer::start_with(|c| c.homework_done_names = true).await;
    let url = server.url();
    let mut prof = client(&url, &teacher("prof", "3B")).await;
    prof.join(DIARY_3B, None).await.expect("opened");
    let item = write(
        &mut prof,
        homework(DIARY_3B, "SVT", "Schéma", "2026-12-07", "2026-12-09", None),
    )
    .await
    .expect("written");
    let mut ana = client(&url, &student("ana", "3B")).await;
    ana.join(DIARY_3B, None).await.expect("joined");
    done(&mut ana, DIARY_3B, item.offset, true)
        .await
        .expect("done");
    let week = list(&mut prof, DIARY_3B, "2026-12-07", "2026-12-13")
        .await
        .expect("week");
    let names: Vec<&str> = week.entries[0]
        .done_names
        .as_ref()
        .expect("names")
        .iter()
        .map(|u| u.id.as_str())
        .collect();
    assert_eq!(names, ["ana"]);
}

#[tokio::test]
async fn bad_entries_are_refused_with_the_field_at_fault() {
    let server = TestServer::start().await;
    let mut prof = client(&server.url(), &teacher("prof", "3B")).await;
    prof.join(DIARY_3B, None).await.expect("opened");
    let no_due = {
        let mut h = homework(DIARY_3B, "Maths", "x", "2026-12-07", "2026-12-08", None);
        if let HomeworkRequest::HomeworkWrite { due, .. } = &mut h {
            *due = None;
        }
        h
    };
    let lesson_with_minutes = {
        let mut l = lesson(DIARY_3B, "Maths", "x", "2026-12-07");
        if let HomeworkRequest::HomeworkWrite { minutes, .. } = &mut l {
            *minutes = Some(10);
        }
        l
    };
    let cases: Vec<(&str, HomeworkRequest, ErrorCode)> = vec![
        (
            "homework without its due day",
            no_due,
            ErrorCode::InvalidField,
        ),
        (
            "due before given",
            homework(DIARY_3B, "Maths", "x", "2026-12-07", "2026-12-06", None),
            ErrorCode::InvalidField,
        ),
        (
            "due in two years",
            homework(DIARY_3B, "Maths", "x", "2026-12-07", "2028-12-07", None),
            ErrorCode::InvalidField,
        ),
        (
            "not a day",
            homework(DIARY_3B, "Maths", "x", "07/12/2026", "2026-12-08", None),
            ErrorCode::InvalidField,
        ),
        (
            "no such day",
            homework(DIARY_3B, "Maths", "x", "2026-02-30", "2026-12-08", None),
            ErrorCode::InvalidField,
        ),
        (
            "blank subject",
            homework(DIARY_3B, " ", "x", "2026-12-07", "2026-12-08", None),
            ErrorCode::InvalidField,
        ),
        (
            "long subject",
            homework(
                DIARY_3B,
                &"m".repeat(101),
                "x",
                "2026-12-07",
                "2026-12-08",
                None,
            ),
            ErrorCode::InvalidField,
        ),
        (
            "blank text",
            homework(DIARY_3B, "Maths", "  ", "2026-12-07", "2026-12-08", None),
            ErrorCode::InvalidField,
        ),
        (
            "long text",
            homework(
                DIARY_3B,
                "Maths",
                &"x".repeat(5000),
                "2026-12-07",
                "2026-12-08",
                None,
            ),
            ErrorCode::MessageTooLong,
        ),
        (
            "zero minutes",
            homework(DIARY_3B, "Maths", "x", "2026-12-07", "2026-12-08", Some(0)),
            ErrorCode::InvalidField,
        ),
        (
            "eleven hours",
            homework(
                DIARY_3B,
                "Maths",
                "x",
                "2026-12-07",
                "2026-12-08",
                Some(660),
            ),
            ErrorCode::InvalidField,
        ),
        (
            "a lesson with minutes",
            lesson_with_minutes,
            ErrorCode::InvalidField,
        ),
        (
            "a javascript link",
            with(lesson(DIARY_3B, "Maths", "x", "2026-12-07"), |_, _, l| {
                l.push("javascript:alert(1)".to_owned())
            }),
            ErrorCode::InvalidField,
        ),
        (
            "eleven links",
            with(lesson(DIARY_3B, "Maths", "x", "2026-12-07"), |_, _, l| {
                l.extend((0..11).map(|i| format!("https://ex.fr/{i}")))
            }),
            ErrorCode::InvalidField,
        ),
        (
            "scheduled in two years",
            with(lesson(DIARY_3B, "Maths", "x", "2026-12-07"), |_, p, _| {
                *p = Some(u64::MAX / 2)
            }),
            ErrorCode::InvalidField,
        ),
        (
            "unknown entry",
            with(lesson(DIARY_3B, "Maths", "x", "2026-12-07"), |e, _, _| {
                *e = Some(424_242)
            }),
            ErrorCode::UnknownTarget,
        ),
    ];
    for (what, request, expected) in cases {
        assert_eq!(code(write(&mut prof, request).await), expected, "{what}");
    }
    write(
        &mut prof,
        homework(DIARY_3B, "Maths", "x", "2026-12-07", "2026-12-08", None),
    )
    .await
    .expect("a good one");
    // Ranges: backwards, too wide, not days.
    assert_eq!(
        code(list(&mut prof, DIARY_3B, "2026-12-13", "2026-12-07").await),
        ErrorCode::InvalidField
    );
    assert_eq!(
        code(list(&mut prof, DIARY_3B, "2026-01-01", "2027-06-01").await),
        ErrorCode::InvalidField
    );
    assert_eq!(
        code(list(&mut prof, DIARY_3B, "lundi", "2026-12-07").await),
        ErrorCode::InvalidField
    );
    assert_eq!(
        code(due(&mut prof, "2026-12-07", "+10000-01-01").await),
        ErrorCode::InvalidField
    );
    // Nothing refused was stored.
    let page = prof
        .history(DIARY_3B, None, Some(0), Some(100))
        .await
        .expect("history");
    assert_eq!(page.events.len(), 1);
}

// ------------------------------------------------ scheduled publication

/// An entry scheduled for 10:00 is shown to its author and staff at once,
/// to the class and parents at 10:00 on the server's clock (injected
/// here), live and in history, and in listings; never before.
#[tokio::test]
async fn a_scheduled_entry_reaches_the_class_at_its_time_and_not_before() {
    let (now, clock) = manual_clock(MONDAY_8H);
    let server = server_with_clock(clock, |_| {}).await;
    let url = server.url();
    let mut prof = client(&url, &teacher("prof", "3B")).await;
    prof.join(DIARY_3B, None).await.expect("opened");
    let mut ana = client(&url, &student("ana", "3B")).await;
    ana.join(DIARY_3B, None).await.expect("joined");
    let mut cpe = client(&url, &staff("cpe")).await;
    cpe.join(DIARY_3B, None).await.expect("staff joined");
    let mut colleague = client(&url, &teacher("prof2", "3B")).await;
    colleague.join(DIARY_3B, None).await.expect("joined");

    let at = MONDAY_8H + 2 * HOUR;
    let planned = write(
        &mut prof,
        with(
            homework(
                DIARY_3B,
                "Anglais",
                "Apprendre le vocabulaire",
                "2026-12-07",
                "2026-12-09",
                Some(20),
            ),
            |_, p, _| *p = Some(at),
        ),
    )
    .await
    .expect("scheduled");
    let (_, seen) = next_kind(&mut cpe, WAIT)
        .await
        .expect("staff see it at once");
    assert_eq!(seen.offset, planned.offset);
    assert!(
        next_kind(&mut ana, Duration::from_millis(1500))
            .await
            .is_none(),
        "not before its time"
    );
    assert!(
        next_kind(&mut colleague, Duration::from_millis(200))
            .await
            .is_none(),
        "nor to a colleague"
    );
    let before = list(&mut ana, DIARY_3B, "2026-12-07", "2026-12-13")
        .await
        .expect("week");
    assert!(before.entries.is_empty(), "{:?}", before.entries);
    let mine = list(&mut prof, DIARY_3B, "2026-12-07", "2026-12-13")
        .await
        .expect("week");
    assert_eq!(mine.entries[0].publish_at, Some(at));
    // A late pupil's recovery does not replay it either.
    let page = ana
        .history(DIARY_3B, None, Some(0), Some(100))
        .await
        .expect("history");
    assert!(page.events.iter().all(|e| e.offset != planned.offset));
    // Its author changes it before its time (still scheduled).
    let changed = write(
        &mut prof,
        with(
            homework(
                DIARY_3B,
                "Anglais",
                "Apprendre le vocabulaire (unité 3)",
                "2026-12-07",
                "2026-12-09",
                Some(20),
            ),
            |e, p, _| {
                *e = Some(planned.offset);
                *p = Some(at);
            },
        ),
    )
    .await
    .expect("changed");
    assert!(
        next_kind(&mut ana, Duration::from_millis(1200))
            .await
            .is_none(),
        "the change is not shown either"
    );

    // 09:59:59: still nothing; 10:00: published within a second or two.
    now.store(at - 1_000, Ordering::SeqCst);
    assert!(
        next_kind(&mut ana, Duration::from_millis(1500))
            .await
            .is_none(),
        "one second early"
    );
    now.store(at, Ordering::SeqCst);
    let (kind, published) = next_kind(&mut ana, WAIT)
        .await
        .expect("published at its time");
    assert_eq!(kind, "homework_publish");
    let Body::Kind(body) = &published.body else {
        unreachable!()
    };
    let fields: preau::kinds::homework::EntryFields = body.decode().expect("fields");
    assert_eq!(fields.entry, Some(planned.offset));
    assert_eq!(fields.version, Some(changed.offset));
    assert_eq!(fields.text, "Apprendre le vocabulaire (unité 3)");
    assert_eq!(published.from.id, "prof", "published as its author's");
    let (kind, _) = next_kind(&mut colleague, WAIT)
        .await
        .expect("the colleague too");
    assert_eq!(kind, "homework_publish");
    let week = list(&mut ana, DIARY_3B, "2026-12-07", "2026-12-13")
        .await
        .expect("week");
    assert_eq!(week.entries.len(), 1);
    assert_eq!(
        (week.entries[0].entry, week.entries[0].publish_at),
        (planned.offset, None)
    );
    // Published once, and then no more scheduling for it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let page = prof
        .history(DIARY_3B, None, Some(0), Some(100))
        .await
        .expect("history");
    let publications = page
        .events
        .iter()
        .filter(|e| matches!(&e.body, Body::Kind(b) if b.kind == "homework_publish"))
        .count();
    assert_eq!(publications, 1);
    let again = with(
        homework(DIARY_3B, "Anglais", "x", "2026-12-07", "2026-12-09", None),
        |e, p, _| {
            *e = Some(planned.offset);
            *p = Some(at + DAY);
        },
    );
    assert_eq!(code(write(&mut prof, again).await), ErrorCode::InvalidField);
    // Marking it done works now.
    done(&mut ana, DIARY_3B, planned.offset, true)
        .await
        .expect("done");
}

/// Two nodes, one Redis, one clock: the teacher schedules on a, the pupil
/// waits on b; both nodes find it due, the room stores one publication.
#[tokio::test]
async fn scheduled_publication_across_two_nodes_is_stored_once() {
    let redis = RedisServer::start().await;
    let (now, clock) = manual_clock(MONDAY_8H);
    let node = |id: &'static str| {
        let (url, clock) = (redis.url(), clock.clone());
        async move {
            server_with_clock(clock, |c| {
                c.redis = Some(url);
                c.node_id = id.to_owned();
            })
            .await
        }
    };
    let a = node("a").await;
    let b = node("b").await;
    let mut prof = client(&a.url(), &teacher("prof", "3B")).await;
    prof.join(DIARY_3B, None).await.expect("opened on a");
    let mut ana = client(&b.url(), &student("ana", "3B")).await;
    join_retrying(&mut ana, DIARY_3B).await;
    let at = MONDAY_8H + HOUR;
    let planned = write_retrying(
        &mut prof,
        with(
            homework(
                DIARY_3B,
                "Physique",
                "Lire le chapitre 2",
                "2026-12-07",
                "2026-12-08",
                None,
            ),
            |_, p, _| *p = Some(at),
        ),
    )
    .await;
    assert!(
        next_kind(&mut ana, Duration::from_millis(1500))
            .await
            .is_none(),
        "not before its time, on b"
    );
    now.store(at, Ordering::SeqCst);
    let (kind, published) = next_kind(&mut ana, WAIT).await.expect("published, on b");
    assert_eq!(kind, "homework_publish");
    // Both nodes asked; one is stored, on each node.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for (which, url) in [("a", a.url()), ("b", b.url())] {
        let mut reader = client(&url, &teacher("prof", "3B")).await;
        let page = reader
            .history(DIARY_3B, None, Some(0), Some(100))
            .await
            .expect("history");
        let publications: Vec<u64> = page
            .events
            .iter()
            .filter(|e| matches!(&e.body, Body::Kind(b) if b.kind == "homework_publish"))
            .map(|e| e.offset)
            .collect();
        assert_eq!(publications, [published.offset], "node {which}");
    }
    let mut on_a = client(&a.url(), &student("ana", "3B")).await;
    let week = list(&mut on_a, DIARY_3B, "2026-12-07", "2026-12-13")
        .await
        .expect("week on a");
    assert_eq!(
        week.entries.iter().map(|e| e.entry).collect::<Vec<_>>(),
        [planned.offset]
    );
}

// --------------------------------------------------- queries and load

/// A semester of entries in two classes; "due between A and B" for a
/// pupil and for a parent of children in both, checked against what was
/// written, week by week.
#[tokio::test]
async fn due_this_week_across_classes_over_a_semester() {
    let (_, clock) = manual_clock(MONDAY_8H + 200 * DAY);
    let server = server_with_clock(clock, |_| {}).await;
    let url = server.url();
    let start = chrono::NaiveDate::from_ymd_opt(2026, 9, 1).expect("day");
    let mut written: Vec<(String, String, chrono::NaiveDate, u64)> = Vec::new();
    for (class, room, subjects) in [
        ("3B", DIARY_3B, ["Maths", "Français", "Anglais"]),
        ("4A", DIARY_4A, ["SVT", "Histoire", "Musique"]),
    ] {
        let mut prof = client(&url, &teacher(&format!("prof{class}"), class)).await;
        prof.join(room, None).await.expect("opened");
        for day in 0..120u64 {
            let given = start + chrono::Days::new(day);
            if matches!(
                chrono::Datelike::weekday(&given),
                chrono::Weekday::Sat | chrono::Weekday::Sun
            ) {
                continue;
            }
            let subject = subjects[(day % 3) as usize];
            let due_day = given + chrono::Days::new(1 + day % 6);
            let ok = write(
                &mut prof,
                homework(
                    room,
                    subject,
                    &format!("{subject} {day}"),
                    &given.to_string(),
                    &due_day.to_string(),
                    Some(15),
                ),
            )
            .await
            .expect("written");
            written.push((class.to_owned(), subject.to_owned(), due_day, ok.offset));
            write(
                &mut prof,
                lesson(room, subject, "cours", &given.to_string()),
            )
            .await
            .expect("lesson");
        }
    }
    let mut ana = client(&url, &student("ana", "3B")).await;
    let mut mum = client(
        &url,
        &parent(
            "mum",
            &[child("ana", "Ana", &["3B"]), child("leo", "Léo", &["4A"])],
        ),
    )
    .await;
    // Ana marks every Maths item done.
    ana.join(DIARY_3B, None).await.expect("joined");
    let maths: Vec<u64> = written
        .iter()
        .filter(|w| w.1 == "Maths")
        .map(|w| w.3)
        .collect();
    for entry in &maths {
        done(&mut ana, DIARY_3B, *entry, true).await.expect("done");
    }
    let mut week = start;
    while week < start + chrono::Days::new(126) {
        let end = week + chrono::Days::new(6);
        let expected = |classes: &[&str]| -> BTreeSet<u64> {
            written
                .iter()
                .filter(|w| classes.contains(&w.0.as_str()) && w.2 >= week && w.2 <= end)
                .map(|w| w.3)
                .collect()
        };
        let got = due(&mut ana, &week.to_string(), &end.to_string())
            .await
            .expect("ana's week");
        assert!(!got.more);
        assert_eq!(
            got.items.iter().map(|i| i.entry).collect::<BTreeSet<_>>(),
            expected(&["3B"]),
            "ana, week of {week}"
        );
        assert!(
            got.items.windows(2).all(|w| w[0].due <= w[1].due),
            "sorted by due day"
        );
        for item in &got.items {
            assert_eq!(
                item.done,
                Some(maths.contains(&item.entry)),
                "ana's mark on {}",
                item.entry
            );
        }
        let got = due(&mut mum, &week.to_string(), &end.to_string())
            .await
            .expect("mum's week");
        assert_eq!(
            got.items
                .iter()
                .map(|i| i.entry)
                .collect::<BTreeSet<_>>()
                .len(),
            expected(&["3B", "4A"]).len(),
            "mum, week of {week}"
        );
        for item in &got.items {
            let (id, name) = if item.class == "3B" {
                ("ana", "Ana")
            } else {
                ("leo", "Léo")
            };
            assert_eq!(
                item.children,
                [ChildLabel {
                    id: id.to_owned(),
                    name: name.to_owned()
                }],
                "{item:?}"
            );
            let done_by = item.done_by.clone().unwrap_or_default();
            assert_eq!(
                done_by.contains(&"ana".to_owned()),
                item.subject == "Maths",
                "{item:?}"
            );
        }
        week = week + chrono::Days::new(7);
    }
    // A parent whose child is in 4A only reads nothing of 3B.
    let mut dad = client(&url, &parent("dad", &[child("zoe", "Zoé", &["4A"])])).await;
    let got = due(&mut dad, "2026-09-01", "2026-12-31")
        .await
        .expect("dad");
    assert!(got.items.iter().all(|i| i.class == "4A"));
    assert!(!got.items.is_empty());
}

#[tokio::test]
async fn the_load_of_a_week_counts_items_and_minutes_per_day() {
    let server = TestServer::start().await;
    let mut prof = client(&server.url(), &teacher("prof", "3B")).await;
    prof.join(DIARY_3B, None).await.expect("opened");
    for (subject, due_day, minutes) in [
        ("Maths", "2026-12-08", Some(30)),
        ("Français", "2026-12-08", Some(45)),
        ("Anglais", "2026-12-08", None),
        ("SVT", "2026-12-10", Some(20)),
    ] {
        write(
            &mut prof,
            homework(DIARY_3B, subject, "x", "2026-12-07", due_day, minutes),
        )
        .await
        .expect("written");
    }
    write(&mut prof, lesson(DIARY_3B, "Maths", "cours", "2026-12-08"))
        .await
        .expect("a lesson is no load");
    let load: LoadOk = prof
        .request_kind(&HomeworkRequest::HomeworkLoad {
            id: None,
            room: DIARY_3B.to_owned(),
            from: "2026-12-07".to_owned(),
            to: "2026-12-13".to_owned(),
        })
        .await
        .expect("load");
    let day = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").expect("day");
    assert_eq!(
        load.days,
        [
            DayLoad {
                date: day("2026-12-08"),
                items: 3,
                minutes: 75,
                unestimated: 1
            },
            DayLoad {
                date: day("2026-12-10"),
                items: 1,
                minutes: 20,
                unestimated: 0
            },
        ]
    );
}

// ---------------------------------------------------- calendar feed

#[derive(Debug, Deserialize)]
struct FeedOk {
    path: String,
}

/// The feed of a parent with children in two classes: their agendas and
/// the homework due, labelled, parsed back with the `ical` crate (an
/// independent parser); revoking it, or asking a new one, stops it.
#[tokio::test]
async fn the_calendar_feed_parses_back_and_stops_when_revoked() {
    let (_, clock) = manual_clock(MONDAY_8H);
    let server = server_with_clock(clock, |_| {}).await;
    let url = server.url();
    let mut prof = client(&url, &teacher("prof", "3B")).await;
    prof.join(DIARY_3B, None).await.expect("opened");
    prof.join("3B/agenda/classe", None).await.expect("agenda");
    write(
        &mut prof,
        homework(
            DIARY_3B,
            "Maths",
            "Exercices 4 et 5, p. 32 ; relire le cours",
            "2026-12-07",
            "2026-12-10",
            Some(30),
        ),
    )
    .await
    .expect("written");
    write(
        &mut prof,
        with(
            homework(
                DIARY_3B,
                "Maths",
                "Pas encore publié",
                "2026-12-07",
                "2026-12-11",
                None,
            ),
            |_, p, _| *p = Some(MONDAY_8H + DAY),
        ),
    )
    .await
    .expect("scheduled");
    prof.request_kind::<PostOk>(&AgendaRequest::AgendaAdd {
        id: None,
        room: "3B/agenda/classe".to_owned(),
        item: NewItem {
            title: "Réunion parents-professeurs".to_owned(),
            starts: MONDAY_8H + 3 * DAY + 9 * HOUR,
            ends: Some(MONDAY_8H + 3 * DAY + 11 * HOUR),
            all_day: None,
            place: Some("Salle 12".to_owned()),
            details: None,
        },
        key: None,
    })
    .await
    .expect("agenda item");
    prof.request_kind::<PostOk>(&AgendaRequest::AgendaAdd {
        id: None,
        room: "3B/agenda/classe".to_owned(),
        // 2026-12-14 00:00 in Paris is 2026-12-13 23:00 UTC: an all-day item on the 14th.
        item: NewItem {
            title: "Sortie au musée".to_owned(),
            starts: MONDAY_8H + 7 * DAY - 9 * HOUR,
            ends: None,
            all_day: Some(true),
            place: None,
            details: None,
        },
        key: None,
    })
    .await
    .expect("all-day item");
    let mut p4 = client(&url, &teacher("prof4", "4A")).await;
    p4.join(DIARY_4A, None).await.expect("opened");
    write(
        &mut p4,
        homework(
            DIARY_4A,
            "Histoire",
            "Frise chronologique",
            "2026-12-07",
            "2026-12-09",
            None,
        ),
    )
    .await
    .expect("written");

    let mut mum = client(
        &url,
        &parent(
            "mum",
            &[child("ana", "Ana", &["3B"]), child("leo", "Léo", &["4A"])],
        ),
    )
    .await;
    let feed: FeedOk = mum
        .request_kind(&HomeworkRequest::CalendarFeed {
            id: None,
            new: false,
        })
        .await
        .expect("feed");
    assert!(
        feed.path.starts_with("/cal/") && feed.path.ends_with(".ics"),
        "{}",
        feed.path
    );
    let (status, text) = http_get(server.addr(), &feed.path).await;
    assert_eq!(status, 200, "{text}");

    let mut parser = ical::IcalParser::new(std::io::BufReader::new(text.as_bytes()));
    let calendar = parser.next().expect("one calendar").expect("it parses");
    assert!(parser.next().is_none());
    let prop = |e: &ical::parser::ical::component::IcalEvent, name: &str| {
        e.properties
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.value.clone())
            .unwrap_or_default()
    };
    let mut summaries: Vec<String> = calendar.events.iter().map(|e| prop(e, "SUMMARY")).collect();
    summaries.sort();
    assert_eq!(
        summaries,
        [
            "Ana · À faire : Maths (3B)",
            "Léo · À faire : Histoire (4A)",
            "Réunion parents-professeurs",
            "Sortie au musée",
        ],
        "the scheduled item is not in it yet"
    );
    for event in &calendar.events {
        let uid = prop(event, "UID");
        assert!(uid.ends_with("@preau"), "{uid}");
        match prop(event, "SUMMARY").as_str() {
            "Ana · À faire : Maths (3B)" => {
                assert_eq!(prop(event, "DTSTART"), "20261210");
                assert_eq!(prop(event, "DTEND"), "20261211");
                assert!(prop(event, "DESCRIPTION").contains("Exercices 4 et 5"));
            }
            "Réunion parents-professeurs" => {
                assert_eq!(prop(event, "DTSTART"), "20261210T170000Z");
                assert_eq!(prop(event, "LOCATION"), "Salle 12");
            }
            "Sortie au musée" => {
                assert_eq!(
                    prop(event, "DTSTART"),
                    "20261214",
                    "the day in the school's time zone"
                );
            }
            _ => {}
        }
    }
    // A pupil's feed has her class only, unlabelled.
    let mut ana = client(&url, &student("ana", "3B")).await;
    let hers: FeedOk = ana
        .request_kind(&HomeworkRequest::CalendarFeed {
            id: None,
            new: false,
        })
        .await
        .expect("feed");
    let (_, text) = http_get(server.addr(), &hers.path).await;
    assert!(
        text.contains("SUMMARY:À faire : Maths (3B)") && !text.contains("Histoire"),
        "{text}"
    );

    // Revoked: 404. A new address stops the old one. A forged one is 404.
    let revoked: serde_json::Value = mum
        .request_kind(&HomeworkRequest::CalendarFeedRevoke { id: None })
        .await
        .expect("revoked");
    assert_eq!(revoked["revoked"], true);
    assert_eq!(http_get(server.addr(), &feed.path).await.0, 404);
    let second: FeedOk = mum
        .request_kind(&HomeworkRequest::CalendarFeed {
            id: None,
            new: false,
        })
        .await
        .expect("again");
    // Asked again: an address of the same feed; both work.
    let same: FeedOk = mum
        .request_kind(&HomeworkRequest::CalendarFeed {
            id: None,
            new: false,
        })
        .await
        .expect("the active one");
    assert_eq!(http_get(server.addr(), &second.path).await.0, 200);
    assert_eq!(http_get(server.addr(), &same.path).await.0, 200);
    // A new one stops both.
    let third: FeedOk = mum
        .request_kind(&HomeworkRequest::CalendarFeed {
            id: None,
            new: true,
        })
        .await
        .expect("a new one");
    for old in [&second.path, &same.path] {
        assert_eq!(http_get(server.addr(), old).await.0, 404, "replaced");
    }
    assert_eq!(http_get(server.addr(), &third.path).await.0, 200);
    let forged = third.path.replacen("/cal/e", "/cal/f", 1);
    assert_eq!(http_get(server.addr(), &forged).await.0, 404);
    assert_eq!(http_get(server.addr(), "/cal/nothing.ics").await.0, 404);
}

// ------------------------------------------ export, erasure, restart

#[tokio::test]
async fn export_has_the_marks_erasure_removes_them_and_keeps_the_record() {
    let data = tempfile::tempdir().expect("dir");
    let port = free_port();
    let node = Proc::serve(data.path(), port, &["--admin-key", ADMIN_KEY]).await;
    let url = node.url();
    let mut prof = client(&url, &teacher("prof", "3B")).await;
    prof.join(DIARY_3B, None).await.expect("opened");
    let item = write(
        &mut prof,
        homework(
            DIARY_3B,
            "Maths",
            "Exercice unique",
            "2026-12-07",
            "2026-12-10",
            None,
        ),
    )
    .await
    .expect("written");
    let mut ana = client(&url, &student("ana", "3B")).await;
    ana.join(DIARY_3B, None).await.expect("joined");
    let mark = done(&mut ana, DIARY_3B, item.offset, true)
        .await
        .expect("done");
    let _: serde_json::Value = ana
        .request_kind(&HomeworkRequest::CalendarFeed {
            id: None,
            new: false,
        })
        .await
        .expect("feed");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let auth = format!("Bearer {ADMIN_KEY}");
    let (status, body) = http_request(
        addr,
        "GET",
        "/admin/users/ana/export",
        &[("Authorization", auth.as_str())],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let export: serde_json::Value = serde_json::from_str(&body).expect("json");
    let written: Vec<u64> = export["written"]
        .as_array()
        .expect("written")
        .iter()
        .filter_map(|e| e["offset"].as_u64())
        .collect();
    assert!(
        written.contains(&mark.offset),
        "the mark is exported: {written:?}"
    );
    assert_eq!(export["calendar_feed"], true);

    let erased = admin_erase(addr, "ana").await;
    assert_eq!(erased["calendar_feed_deleted"], true, "{erased}");
    let week = list(&mut prof, DIARY_3B, "2026-12-07", "2026-12-13")
        .await
        .expect("week");
    assert_eq!(
        week.entries[0].done_count,
        Some(0),
        "her mark went with her"
    );
    // The teacher's erasure keeps the diary: the school's record.
    let erased = admin_erase(addr, "prof").await;
    assert!(erased["kept"].as_u64().unwrap_or(0) >= 1, "{erased}");
    let mut cpe = client(&url, &staff("cpe")).await;
    let week = list(&mut cpe, DIARY_3B, "2026-12-07", "2026-12-13")
        .await
        .expect("week");
    assert_eq!(week.entries.len(), 1);
    assert_eq!(week.entries[0].text, "Exercice unique");
    node.terminate().await;
}

#[tokio::test]
async fn the_diary_survives_a_restart_with_its_marks_and_schedules() {
    let data = tempfile::tempdir().expect("dir");
    let port = free_port();
    let node = Proc::serve(data.path(), port, &[]).await;
    let mut prof = client(&node.url(), &teacher("prof", "3B")).await;
    prof.join(DIARY_3B, None).await.expect("opened");
    let item = write(
        &mut prof,
        homework(
            DIARY_3B,
            "Maths",
            "Exercice",
            "2026-12-07",
            "2026-12-10",
            Some(10),
        ),
    )
    .await
    .expect("written");
    let far = write(
        &mut prof,
        with(
            homework(
                DIARY_3B,
                "Maths",
                "Plus tard",
                "2026-12-07",
                "2026-12-11",
                None,
            ),
            |_, p, _| *p = Some(preau::auth::now_secs() * 1000 + 300 * DAY),
        ),
    )
    .await
    .expect("scheduled far ahead");
    let mut ana = client(&node.url(), &student("ana", "3B")).await;
    ana.join(DIARY_3B, None).await.expect("joined");
    done(&mut ana, DIARY_3B, item.offset, true)
        .await
        .expect("done");
    node.terminate().await;

    let node = Proc::serve(data.path(), port, &[]).await;
    let mut ana = client(&node.url(), &student("ana", "3B")).await;
    let week = list(&mut ana, DIARY_3B, "2026-12-07", "2026-12-13")
        .await
        .expect("week");
    assert_eq!(
        week.entries
            .iter()
            .map(|e| (e.entry, e.done))
            .collect::<Vec<_>>(),
        [(item.offset, Some(true))]
    );
    let mut prof = client(&node.url(), &teacher("prof", "3B")).await;
    let week = list(&mut prof, DIARY_3B, "2026-12-07", "2026-12-13")
        .await
        .expect("week");
    assert_eq!(week.entries.len(), 2);
    assert!(week
        .entries
        .iter()
        .any(|e| e.entry == far.offset && e.publish_at.is_some()));
    node.terminate().await;
}
