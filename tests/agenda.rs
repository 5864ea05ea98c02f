//! The class agenda (`protocol/README.md`, "Agenda"): the first kind added
//! through the kinds seam. Teachers write items, pupils and their parents
//! read them live and by date range; bounds and refusals; the index
//! survives a restart; an erasure removes a teacher's words from disk; two
//! nodes see the same agenda.

mod support;

use std::time::Duration;

use preau::client::{Client, ClientError};
use preau::kinds::agenda::{AgendaOk, AgendaRequest, NewItem};
use preau::protocol::{Body, ErrorCode, PostOk, Role, ServerFrame};
use preau::store::find_in_data;
use support::redis::RedisServer;
use support::*;

const AGENDA: &str = "3B/agenda/classe";
const KEY: &str = ADMIN_KEY;
/// 2026-12-07 08:00 UTC, and one hour.
const MONDAY: u64 = 1_796_630_400_000;
const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

fn parent(user: &str, classes: &[&str], children: &[&str]) -> String {
    let mut claims = claims(user, Role::Parent, classes);
    claims.children = children.iter().map(|c| (*c).into()).collect();
    keyring().mint(&claims).expect("mint parent token")
}

fn item(title: &str, starts: u64) -> NewItem {
    NewItem {
        title: title.to_owned(),
        starts,
        ends: Some(starts + HOUR),
        all_day: None,
        place: Some("Salle 12".to_owned()),
        details: None,
    }
}

async fn add(client: &mut Client, room: &str, new: NewItem) -> Result<PostOk, ClientError> {
    client
        .request_kind(&AgendaRequest::AgendaAdd {
            id: None,
            room: room.to_owned(),
            item: new,
            key: None,
        })
        .await
}

async fn change(client: &mut Client, item: u64, fields: NewItem) -> Result<PostOk, ClientError> {
    client
        .request_kind(&AgendaRequest::AgendaChange {
            id: None,
            room: AGENDA.to_owned(),
            item,
            fields,
        })
        .await
}

async fn cancel(client: &mut Client, item: u64, reason: &str) -> Result<PostOk, ClientError> {
    client
        .request_kind(&AgendaRequest::AgendaCancel {
            id: None,
            room: AGENDA.to_owned(),
            item,
            reason: Some(reason.to_owned()),
        })
        .await
}

async fn list(
    client: &mut Client,
    room: &str,
    from: u64,
    to: u64,
) -> Result<AgendaOk, ClientError> {
    client
        .request_kind(&AgendaRequest::Agenda {
            id: None,
            room: room.to_owned(),
            from,
            to,
            limit: None,
        })
        .await
}

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Refused(reply)) => reply.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The next event of a room, skipping presence and typing.
async fn next_kind_event(client: &mut Client) -> (String, preau::protocol::Event) {
    loop {
        match next(client).await {
            ServerFrame::Event(event) => match &event.body {
                Body::Kind(body) => return (body.kind.clone(), event),
                other => panic!("not an agenda event: {other:?}"),
            },
            ServerFrame::Presence(_) | ServerFrame::Typing(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[tokio::test]
async fn teachers_write_and_pupils_and_parents_read_live_and_by_range() {
    let server = TestServer::start().await;
    let mut prof = client(&server.url(), &teacher("prof", "3B")).await;
    prof.join(AGENDA, None)
        .await
        .expect("the teacher opens the agenda");
    let mut ana = client(&server.url(), &student("ana", "3B")).await;
    ana.join(AGENDA, None).await.expect("a pupil joins");
    let mut mum = client(&server.url(), &parent("mum", &["3B"], &["ana"])).await;
    mum.join(AGENDA, None).await.expect("her parent joins");

    let test = add(&mut prof, AGENDA, item("Contrôle de maths", MONDAY))
        .await
        .expect("added");
    for reader in [&mut ana, &mut mum] {
        let (kind, event) = next_kind_event(reader).await;
        assert_eq!(kind, "agenda_item");
        assert_eq!(event.offset, test.offset);
        assert_eq!(event.from.id, "prof");
    }
    let trip = add(&mut prof, AGENDA, item("Sortie au musée", MONDAY + 3 * DAY))
        .await
        .expect("added");

    // A parent reads the week without joining.
    let mut dad = client(&server.url(), &parent("dad", &["3B"], &["ana"])).await;
    let week = list(&mut dad, AGENDA, MONDAY, MONDAY + 7 * DAY)
        .await
        .expect("the week");
    let titles: Vec<&str> = week.items.iter().map(|i| i.title.as_str()).collect();
    assert_eq!(titles, ["Contrôle de maths", "Sortie au musée"]);
    assert_eq!(week.items[0].item, test.offset);
    assert_eq!(week.items[0].place.as_deref(), Some("Salle 12"));
    assert!(!week.more);
    // A narrower range, and one before everything.
    let first_day = list(&mut dad, AGENDA, MONDAY, MONDAY + DAY)
        .await
        .expect("day");
    assert_eq!(first_day.items.len(), 1);
    let before = list(&mut dad, AGENDA, MONDAY - 7 * DAY, MONDAY - DAY)
        .await
        .expect("before");
    assert!(before.items.is_empty());

    // A change replaces every field; a cancellation keeps it, marked.
    let moved = change(
        &mut prof,
        test.offset,
        item("Contrôle de maths (ch. 4)", MONDAY + DAY),
    )
    .await
    .expect("changed");
    cancel(&mut prof, trip.offset, "grève des transports")
        .await
        .expect("cancelled");
    let week = list(&mut ana, AGENDA, MONDAY, MONDAY + 7 * DAY)
        .await
        .expect("the week");
    assert_eq!(week.items[0].title, "Contrôle de maths (ch. 4)");
    assert_eq!(week.items[0].starts, MONDAY + DAY);
    assert_eq!(week.items[0].version, moved.offset);
    assert_eq!(week.items[0].item, test.offset);
    assert!(week.items[1].cancelled);
    assert_eq!(
        week.items[1].reason.as_deref(),
        Some("grève des transports")
    );
    // A cancelled item can no longer change.
    assert_eq!(
        code(change(&mut prof, trip.offset, item("Sortie", MONDAY)).await),
        ErrorCode::NotEditable
    );
    assert_eq!(
        code(cancel(&mut prof, trip.offset, "encore").await),
        ErrorCode::NotEditable
    );
    // History gives the events as they were written.
    let page = mum
        .history(AGENDA, None, Some(0), Some(50))
        .await
        .expect("history");
    assert_eq!(page.events.len(), 4);
}

#[tokio::test]
async fn only_the_class_teachers_and_staff_write_and_only_its_families_read() {
    let server = TestServer::start().await;
    let mut prof = client(&server.url(), &teacher("prof", "3B")).await;
    prof.join(AGENDA, None).await.expect("opened");
    add(
        &mut prof,
        AGENDA,
        item("Réunion parents-professeurs", MONDAY),
    )
    .await
    .expect("added");

    let mut ana = client(&server.url(), &student("ana", "3B")).await;
    ana.join(AGENDA, None).await.expect("joins");
    assert_eq!(
        code(add(&mut ana, AGENDA, item("Pas de cours", MONDAY)).await),
        ErrorCode::Forbidden,
        "a pupil does not write the agenda"
    );
    let mut mum = client(&server.url(), &parent("mum", &["3B"], &["ana"])).await;
    mum.join(AGENDA, None).await.expect("joins");
    assert_eq!(
        code(add(&mut mum, AGENDA, item("Anniversaire", MONDAY)).await),
        ErrorCode::Forbidden,
        "a parent does not write it"
    );
    assert_eq!(
        code(mum.post(AGENDA, "bonjour").await),
        ErrorCode::Forbidden,
        "nor posts in it"
    );
    // A teacher may write items, not messages.
    assert_eq!(
        code(prof.post(AGENDA, "bonjour").await),
        ErrorCode::InvalidField
    );
    // Other classes' families and teachers read nothing.
    let mut other_parent = client(&server.url(), &parent("pa", &["4C"], &["zoe"])).await;
    assert_eq!(
        code(list(&mut other_parent, AGENDA, MONDAY, MONDAY + DAY).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(other_parent.join(AGENDA, None).await),
        ErrorCode::Forbidden
    );
    let mut other_teacher = client(&server.url(), &teacher("t4c", "4C")).await;
    assert_eq!(
        code(list(&mut other_teacher, AGENDA, MONDAY, MONDAY + DAY).await),
        ErrorCode::Forbidden
    );
    let mut other_pupil = client(&server.url(), &student("zoe", "4C")).await;
    assert_eq!(
        code(other_pupil.join(AGENDA, None).await),
        ErrorCode::Forbidden
    );
    // Staff writes any class's agenda.
    let mut staff = client(&server.url(), &token("cpe", Role::Staff, &[])).await;
    staff.join(AGENDA, None).await.expect("staff joins");
    add(&mut staff, AGENDA, item("Photo de classe", MONDAY + DAY))
        .await
        .expect("staff adds");
    // Parents still never read pupils' chats.
    prof.join("3B/chat/classe", None).await.expect("opened");
    assert_eq!(
        code(mum.join("3B/chat/classe", None).await),
        ErrorCode::Forbidden
    );
    // Nobody reads an agenda nobody opened; parents learn it does not
    // exist only for their children's classes.
    assert_eq!(
        code(list(&mut mum, "3B/agenda/autre", MONDAY, MONDAY + DAY).await),
        ErrorCode::UnknownRoom
    );
    // Writing needs the room joined.
    let mut prof2 = client(&server.url(), &teacher("prof2", "3B")).await;
    assert_eq!(
        code(add(&mut prof2, AGENDA, item("Oral", MONDAY)).await),
        ErrorCode::NotJoined
    );
}

#[tokio::test]
async fn bad_items_and_ranges_are_refused_with_documented_codes() {
    let server = TestServer::start().await;
    let mut prof = client(&server.url(), &teacher("prof", "3B")).await;
    prof.join(AGENDA, None).await.expect("opened");
    let cases: Vec<(&str, NewItem)> = vec![
        ("empty title", item("  ", MONDAY)),
        ("long title", item(&"x".repeat(201), MONDAY)),
        (
            "ends before starts",
            NewItem {
                ends: Some(MONDAY - 1),
                ..item("a", MONDAY)
            },
        ),
        (
            "longer than 31 days",
            NewItem {
                ends: Some(MONDAY + 32 * DAY),
                ..item("a", MONDAY)
            },
        ),
        ("after year 9999", item("a", 253_402_300_800_000)),
        (
            "long place",
            NewItem {
                place: Some("p".repeat(201)),
                ..item("a", MONDAY)
            },
        ),
    ];
    for (what, new) in cases {
        assert_eq!(
            code(add(&mut prof, AGENDA, new).await),
            ErrorCode::InvalidField,
            "{what}"
        );
    }
    assert_eq!(
        code(
            add(
                &mut prof,
                AGENDA,
                NewItem {
                    details: Some("d".repeat(5000)),
                    ..item("a", MONDAY)
                }
            )
            .await
        ),
        ErrorCode::MessageTooLong
    );
    assert_eq!(
        code(change(&mut prof, 999, item("a", MONDAY)).await),
        ErrorCode::UnknownTarget
    );
    assert_eq!(
        code(cancel(&mut prof, 999, "x").await),
        ErrorCode::UnknownTarget
    );
    assert_eq!(
        code(list(&mut prof, AGENDA, MONDAY, MONDAY).await),
        ErrorCode::InvalidField,
        "an empty range"
    );
    assert_eq!(
        code(list(&mut prof, AGENDA, MONDAY, MONDAY + 401 * DAY).await),
        ErrorCode::InvalidField,
        "a range over 400 days"
    );
    assert_eq!(
        code(list(&mut prof, "3B/chat/x", MONDAY, MONDAY + DAY).await),
        ErrorCode::UnknownRoom
    );
    // A wrongly typed field, sent as a client written from the spec might.
    let mut frame = Vec::new();
    let value = rmpv::Value::Map(vec![
        ("type".into(), "agenda_add".into()),
        ("id".into(), 77.into()),
        ("room".into(), AGENDA.into()),
        ("title".into(), "a".into()),
        ("starts".into(), "lundi".into()),
    ]);
    rmpv::encode::write_value(&mut frame, &value).expect("encode");
    prof.send_raw(frame).expect("sent");
    match next(&mut prof).await {
        ServerFrame::Error(reply) => {
            assert_eq!(reply.code, ErrorCode::InvalidField);
            assert_eq!(reply.id, Some(77));
        }
        other => panic!("expected invalid_field, got {other:?}"),
    }
    // Still usable afterwards, and nothing bad was stored.
    add(&mut prof, AGENDA, item("ok", MONDAY))
        .await
        .expect("added");
    let all = list(&mut prof, AGENDA, MONDAY - DAY, MONDAY + DAY)
        .await
        .expect("list");
    assert_eq!(all.items.len(), 1);
}

#[tokio::test]
async fn the_agenda_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let node = Proc::serve(dir.path(), port, &[]).await;
    let mut prof = client(&node.url(), &teacher("prof", "3B")).await;
    prof.join(AGENDA, None).await.expect("opened");
    let first = add(&mut prof, AGENDA, item("Contrôle", MONDAY))
        .await
        .expect("added");
    change(
        &mut prof,
        first.offset,
        item("Contrôle (reporté)", MONDAY + DAY),
    )
    .await
    .expect("changed");
    let second = add(&mut prof, AGENDA, item("Sortie", MONDAY + 2 * DAY))
        .await
        .expect("added");
    cancel(&mut prof, second.offset, "pluie")
        .await
        .expect("cancelled");
    drop(prof);
    let status = node.terminate().await;
    assert!(status.success(), "{status:?}");

    let node = Proc::serve(dir.path(), port, &[]).await;
    let mut mum = client(&node.url(), &parent("mum", &["3B"], &["ana"])).await;
    let week = list(&mut mum, AGENDA, MONDAY, MONDAY + 7 * DAY)
        .await
        .expect("the week after a restart");
    assert_eq!(week.items.len(), 2);
    assert_eq!(week.items[0].title, "Contrôle (reporté)");
    assert_eq!(week.items[0].item, first.offset);
    assert!(week.items[1].cancelled);
    node.terminate().await;
}

/// A teacher's erasure redacts the agenda events they wrote: their words
/// are unreadable in the data folder when the call returns, a colleague's
/// change of their item stays and is shown.
#[tokio::test]
async fn an_erased_teachers_items_are_gone_from_disk_and_a_colleagues_change_stays() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Proc::serve(dir.path(), free_port(), &["--admin-key", KEY]).await;
    let mut prof = client(&node.url(), &teacher("prof", "3B")).await;
    let mut other = client(&node.url(), &teacher("other", "3B")).await;
    prof.join(AGENDA, None).await.expect("opened");
    other.join(AGENDA, None).await.expect("joined");
    let theirs = add(&mut prof, AGENDA, item("PROF-ONLY-1111", MONDAY))
        .await
        .expect("added");
    let shared = add(&mut prof, AGENDA, item("PROF-FIRST-2222", MONDAY + DAY))
        .await
        .expect("added");
    change(
        &mut other,
        shared.offset,
        item("OTHER-CHANGE-3333", MONDAY + DAY),
    )
    .await
    .expect("changed");
    for word in ["PROF-ONLY-1111", "PROF-FIRST-2222", "OTHER-CHANGE-3333"] {
        assert!(
            !find_in_data(dir.path(), &[word]).expect("scan").is_empty(),
            "{word} is stored first"
        );
    }
    let erased = admin_erase(node.addr, "prof").await;
    assert_eq!(erased["redacted"].as_u64(), Some(2), "{erased}");
    assert_eq!(
        find_in_data(dir.path(), &["PROF-ONLY-1111", "PROF-FIRST-2222"]).expect("scan"),
        []
    );
    assert!(!find_in_data(dir.path(), &["OTHER-CHANGE-3333"])
        .expect("scan")
        .is_empty());
    let mut mum = client(&node.url(), &parent("mum", &["3B"], &["ana"])).await;
    let week = list(&mut mum, AGENDA, MONDAY, MONDAY + 7 * DAY)
        .await
        .expect("week");
    let titles: Vec<&str> = week.items.iter().map(|i| i.title.as_str()).collect();
    assert_eq!(titles, ["OTHER-CHANGE-3333"], "{theirs:?}");
    assert_eq!(week.items[0].by.id, "other");
    node.terminate().await;
}

/// Two nodes and Redis: an item written on one node reaches a parent on
/// the other, live and by range; nothing in the core knows the agenda.
#[tokio::test]
async fn two_nodes_share_the_agenda() {
    let redis = RedisServer::start().await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let a = cluster_node(&redis.url(), dir_a.path()).await;
    let b = cluster_node(&redis.url(), dir_b.path()).await;
    let mut prof = client(&a.url(), &teacher("prof", "3B")).await;
    prof.join(AGENDA, None).await.expect("opened on a");
    let mut mum = client(&b.url(), &parent("mum", &["3B"], &["ana"])).await;
    let mut joined = mum.join(AGENDA, None).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while matches!(&joined, Err(e) if e.is_retryable()) {
        assert!(tokio::time::Instant::now() < deadline, "{joined:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        joined = mum.join(AGENDA, None).await;
    }
    joined.expect("the parent joins on b");
    let added = add(&mut prof, AGENDA, item("Brevet blanc", MONDAY))
        .await
        .expect("added");
    let (kind, event) = next_kind_event(&mut mum).await;
    assert_eq!((kind.as_str(), event.offset), ("agenda_item", added.offset));
    let week = list(&mut mum, AGENDA, MONDAY, MONDAY + 7 * DAY)
        .await
        .expect("week on b");
    assert_eq!(week.items.len(), 1);
    assert_eq!(week.items[0].title, "Brevet blanc");
    a.terminate().await;
    b.terminate().await;
}

/// The agenda's table in `protocol/README.md` ("Rooms and authorization"),
/// read from the spec and checked cell by cell over a socket: read
/// (`history` without joining, `join`, `agenda`), write (`agenda_add`
/// after the join), moderate (`slow_mode`).
#[tokio::test]
async fn the_specs_agenda_policy_table_holds_cell_by_cell() {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/README.md"))
        .expect("read the spec");
    let table = spec
        .split("Kind `agenda` (`C/agenda/NAME`)")
        .nth(1)
        .expect("the agenda's policy section");
    let rows: Vec<Vec<String>> = table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 7, "{rows:?}");
    let server = TestServer::start().await;
    let mut prof = client(&server.url(), &teacher("prof", "3B")).await;
    prof.join(AGENDA, None).await.expect("opened");
    add(&mut prof, AGENDA, item("Réunion", MONDAY))
        .await
        .expect("added");
    let mut wrong = Vec::new();
    for row in rows {
        let who = row[0].as_str();
        let token = match who {
            "student of C" => student("s3b", "3B"),
            "student of another class" => student("s4a", "4A"),
            "parent of a pupil of C" => parent("p3b", &["3B"], &["s3b"]),
            "parent of pupils of other classes only" => parent("p4a", &["4A"], &["s4a"]),
            "teacher of C" => teacher("t3b", "3B"),
            "teacher of another class" => teacher("t4a", "4A"),
            "staff (any class)" => token("staff", Role::Staff, &[]),
            other => panic!("a row the test does not know: {other}"),
        };
        let mut user = client(&server.url(), &token).await;
        let history = user.history(AGENDA, None, None, None).await.is_ok();
        let listed = list(&mut user, AGENDA, MONDAY, MONDAY + DAY).await.is_ok();
        let joined = user.join(AGENDA, None).await.is_ok();
        let read = history && listed && joined;
        if !(history == listed && listed == joined) {
            wrong.push(format!(
                "{who}: history {history}, agenda {listed}, join {joined}"
            ));
        }
        let write = add(&mut user, AGENDA, item("Essai", MONDAY + HOUR))
            .await
            .is_ok();
        let moderate = user
            .moderate(AGENDA, preau::protocol::ModAction::SlowMode { seconds: 0 })
            .await
            .is_ok();
        let yes = |b: bool| if b { "yes" } else { "no" };
        for (column, got) in [(1, read), (2, write), (3, moderate)] {
            if row[column] != yes(got) {
                wrong.push(format!(
                    "{who}, column {column}: spec {}, server {}",
                    row[column],
                    yes(got)
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
