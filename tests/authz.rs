//! The authorization matrix of `src/room/policy.rs`, checked cell by cell
//! over real sockets, plus the room-name and membership errors.

mod support;

use futures_util::SinkExt;
use preau::auth::Claims;
use preau::client::{Client, ClientError};
use preau::protocol::{ErrorCode, ErrorReply, Request, Role, ServerFrame};
use support::*;
use tokio_tungstenite::tungstenite::Message;

const ROOM_3B: &str = "3B/chat/revision";
const ROOM_4A: &str = "4A/chat/revision";
const ROOMS: [&str; 2] = [ROOM_3B, ROOM_4A];
const ACTIONS: [&str; 4] = ["history", "join", "post", "typing"];

/// What each cell should give. `history` is asked without joining; `post`
/// and `typing` come after the `join` of the same row, so a user whose join
/// was refused gets `not_joined` (the policy check is never reached, and the
/// refused join must not have made them a member).
const MATRIX: [(&str, &str, [&str; 4]); 12] = [
    // user            room      history      join         post          typing
    ("student-3B", ROOM_3B, ["ok", "ok", "ok", "ok"]),
    (
        "student-3B",
        ROOM_4A,
        ["forbidden", "forbidden", "not_joined", "not_joined"],
    ),
    (
        "student-4A",
        ROOM_3B,
        ["forbidden", "forbidden", "not_joined", "not_joined"],
    ),
    ("student-4A", ROOM_4A, ["ok", "ok", "ok", "ok"]),
    ("teacher-3B", ROOM_3B, ["ok", "ok", "ok", "ok"]),
    (
        "teacher-3B",
        ROOM_4A,
        ["forbidden", "forbidden", "not_joined", "not_joined"],
    ),
    (
        "teacher-4A",
        ROOM_3B,
        ["forbidden", "forbidden", "not_joined", "not_joined"],
    ),
    ("teacher-4A", ROOM_4A, ["ok", "ok", "ok", "ok"]),
    (
        "parent-3B",
        ROOM_3B,
        ["forbidden", "forbidden", "not_joined", "not_joined"],
    ),
    (
        "parent-3B",
        ROOM_4A,
        ["forbidden", "forbidden", "not_joined", "not_joined"],
    ),
    ("staff", ROOM_3B, ["ok", "ok", "ok", "ok"]),
    ("staff", ROOM_4A, ["ok", "ok", "ok", "ok"]),
];

fn parent_token(user: &str, classes: &[&str], children: &[&str]) -> String {
    let mut claims: Claims = claims(user, Role::Parent, classes);
    claims.children = children.iter().map(|c| (*c).into()).collect();
    keyring().mint(&claims).expect("mint parent token")
}

/// The users of the matrix: (label, user id, token).
fn users() -> Vec<(&'static str, &'static str, String)> {
    vec![
        ("student-3B", "stu3b", student("stu3b", "3B")),
        ("student-4A", "stu4a", student("stu4a", "4A")),
        ("teacher-3B", "tea3b", teacher("tea3b", "3B")),
        ("teacher-4A", "tea4a", teacher("tea4a", "4A")),
        (
            "parent-3B",
            "par3b",
            parent_token("par3b", &["3B"], &["s1"]),
        ),
        ("staff", "staff1", token("staff1", Role::Staff, &[])),
    ]
}

/// `ok`, the error code of a refusal, or the client error as text.
fn outcome<T>(result: &Result<T, ClientError>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(ClientError::Refused(reply)) => reply.code.as_str().to_owned(),
        Err(other) => format!("<{other}>"),
    }
}

async fn ping(client: &mut Client) -> Result<rmpv::Value, ClientError> {
    client.request(Request::Ping { id: None }).await
}

/// One observed cell.
struct Cell {
    user: &'static str,
    room: &'static str,
    action: &'static str,
    want: String,
    got: String,
}

fn render(cells: &[Cell]) -> String {
    let mut out = format!(
        "{:<12} {:<18} {:<24} {:<24} {:<24} {:<24}\n",
        "user", "room", ACTIONS[0], ACTIONS[1], ACTIONS[2], ACTIONS[3]
    );
    for row in cells.chunks(ACTIONS.len()) {
        out.push_str(&format!("{:<12} {:<18}", row[0].user, row[0].room));
        for cell in row {
            let text = if cell.got == cell.want {
                cell.got.clone()
            } else {
                format!("!! {} (want {})", cell.got, cell.want)
            };
            out.push_str(&format!(" {text:<24}"));
        }
        out.push('\n');
    }
    out
}

/// What the observer (staff, joined to both rooms) saw that is not presence.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Event {
        room: String,
        from: String,
        text: String,
    },
    Typing {
        room: String,
        from: String,
    },
}

#[tokio::test]
async fn authorization_matrix() {
    let server = TestServer::start().await;
    let (mut observer, _) = server.connect(&token("observer", Role::Staff, &[])).await;
    for room in ROOMS {
        observer.join(room, None).await.expect("observer joins");
    }

    let mut cells = Vec::new();
    let mut offsets = std::collections::HashMap::from([(ROOM_3B, 0u64), (ROOM_4A, 0u64)]);
    let mut expected_seen = Vec::new();
    let users = users();
    for (label, id, token) in &users {
        let (mut client, _) = server.connect(token).await;
        for room in ROOMS {
            let (_, _, want) = MATRIX
                .iter()
                .find(|(u, r, _)| u == label && *r == room)
                .unwrap_or_else(|| panic!("no matrix row for {label} in {room}"));
            let mut got = Vec::new();

            let history = client.history(room, None, None, None).await;
            got.push(match &history {
                Ok(page) if page.room != room => format!("ok but room {}", page.room),
                Ok(page) if page.head != offsets[room] => {
                    format!("ok but head {} (want {})", page.head, offsets[room])
                }
                other => outcome(other),
            });

            let join = client.join(room, None).await;
            got.push(match &join {
                Ok(joined) if joined.room != room => format!("ok but room {}", joined.room),
                Ok(joined) if joined.head != offsets[room] => {
                    format!("ok but head {} (want {})", joined.head, offsets[room])
                }
                other => outcome(other),
            });

            let text = format!("{label} in {room}");
            let post = client.post(room, &text).await;
            got.push(match &post {
                Ok(ack) => {
                    let want_offset = offsets[room] + 1;
                    if ack.offset == want_offset && ack.room == room {
                        offsets.insert(room, want_offset);
                        expected_seen.push(Seen::Event {
                            room: room.to_owned(),
                            from: (*id).to_owned(),
                            text: text.clone(),
                        });
                        "ok".to_owned()
                    } else {
                        format!("ok but offset {} (want {want_offset})", ack.offset)
                    }
                }
                other => outcome(other),
            });

            let typing = client.typing(room).await;
            if typing.is_ok() {
                expected_seen.push(Seen::Typing {
                    room: room.to_owned(),
                    from: (*id).to_owned(),
                });
            }
            got.push(outcome(&typing));

            if join.is_ok() {
                client
                    .leave(room)
                    .await
                    .expect("leave after a successful join");
            }
            for (action, (got, want)) in ACTIONS.iter().zip(got.into_iter().zip(want.iter())) {
                cells.push(Cell {
                    user: label,
                    room,
                    action,
                    want: (*want).to_owned(),
                    got,
                });
            }
        }
        // Refusals never end the connection.
        assert!(
            ping(&mut client).await.is_ok(),
            "{label}: ping after the matrix"
        );
    }

    let wrong: Vec<String> = cells
        .iter()
        .filter(|c| c.got != c.want)
        .map(|c| format!("{} / {} / {}", c.user, c.room, c.action))
        .collect();
    assert!(
        wrong.is_empty(),
        "wrong cells: {wrong:?}\n{}",
        render(&cells)
    );

    // The observer saw exactly the allowed posts and typing, in order: no
    // refused request leaked anything to the room.
    let end = |room: &str| format!("end of {room}");
    for room in ROOMS {
        observer
            .post(room, &end(room))
            .await
            .expect("observer posts");
    }
    let mut seen = Vec::new();
    let mut ends = 0;
    while ends < ROOMS.len() {
        match next(&mut observer).await {
            ServerFrame::Event(event) => {
                let preau::protocol::Body::Message { text, .. } = event.body else {
                    panic!("not a message")
                };
                if event.from.id == "observer" {
                    assert_eq!(text, end(&event.room));
                    ends += 1;
                } else {
                    seen.push(Seen::Event {
                        room: event.room,
                        from: event.from.id,
                        text,
                    });
                }
            }
            ServerFrame::Typing(typing) => seen.push(Seen::Typing {
                room: typing.room,
                from: typing.user.id,
            }),
            ServerFrame::Presence(_) => {}
            other => panic!("observer got {other:?}"),
        }
    }
    assert_eq!(seen, expected_seen, "what the observer saw");

    // History holds exactly the allowed posts, at offsets 1, 2, ...
    for room in ROOMS {
        let page = observer.history(room, None, None, Some(200)).await.unwrap();
        let texts: Vec<(u64, String, String)> = page
            .events
            .iter()
            .map(|e| {
                let preau::protocol::Body::Message { text, .. } = &e.body else {
                    panic!("not a message")
                };
                (e.offset, e.from.id.clone(), text.clone())
            })
            .collect();
        let mut want: Vec<(u64, String, String)> = expected_seen
            .iter()
            .filter_map(|s| match s {
                Seen::Event {
                    room: r,
                    from,
                    text,
                } if r == room => Some((0, from.clone(), text.clone())),
                _ => None,
            })
            .collect();
        want.push((0, "observer".to_owned(), end(room)));
        for (i, w) in want.iter_mut().enumerate() {
            w.0 = i as u64 + 1;
        }
        assert_eq!(texts, want, "history of {room}");
    }
}

#[tokio::test]
async fn forbidden_counts_in_metrics_and_error_has_the_request_id() {
    let server = TestServer::start().await;
    let (mut parent, _) = server.connect(&parent_token("par", &["3B"], &["s1"])).await;
    let before = forbidden_count(&server).await;
    match parent.join(ROOM_3B, None).await {
        Err(ClientError::Refused(ErrorReply { id, code, .. })) => {
            assert_eq!(code, ErrorCode::Forbidden);
            assert!(id.is_some(), "the refusal echoes the request id");
        }
        other => panic!("parent join: {:?}", other.map(|j| j.room)),
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while forbidden_count(&server).await < before + 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "errors_total{{code=\"forbidden\"}} did not increase"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn forbidden_count(server: &TestServer) -> f64 {
    let (_, body) = http_get(server.metrics_addr(), "/metrics").await;
    body.lines()
        .filter(|l| l.starts_with("preau_errors_total{") && l.contains("code=\"forbidden\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn bad_room_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "",
        "3B",
        "3B/chat",
        "3B/chat/",
        "3B/chat/a/b",
        "3B/video/x",
        "3B/Chat/x",
        "../chat/x",
        "/chat/x",
        "3B/chat/a b",
        "3B/chat/..",
        "3B/chat/.",
        "3B/chat/é",
        "3 B/chat/x",
        "3B//x",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    names.push(format!("3B/chat/{}", "a".repeat(65)));
    names.push(format!("{}/chat/x", "C".repeat(33)));
    names.push(format!("3B/chat/{}", "x".repeat(10_000)));
    names
}

#[tokio::test]
async fn malformed_room_names_are_invalid_room_for_join_and_history() {
    let server = TestServer::start().await;
    // Staff may do anything: only the name can be the reason. The parent may
    // do nothing: the name is checked before the policy.
    let (mut staff, _) = server.connect(&token("staff1", Role::Staff, &[])).await;
    let (mut parent, _) = server.connect(&parent_token("par", &["3B"], &["s1"])).await;
    let mut wrong = Vec::new();
    for name in bad_room_names() {
        let shown: String = name.chars().take(30).collect();
        for (who, client) in [("staff", &mut staff), ("parent", &mut parent)] {
            let join = outcome(&client.join(&name, None).await);
            if join != "invalid_room" {
                wrong.push(format!("{who} join {shown:?}: {join}"));
            }
            let history = outcome(&client.history(&name, None, None, None).await);
            if history != "invalid_room" {
                wrong.push(format!("{who} history {shown:?}: {history}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "expected invalid_room:\n{}",
        wrong.join("\n")
    );

    // The longest valid names are accepted (the limits are not off by one).
    let longest = [
        format!("3B/chat/{}", "a".repeat(64)),
        format!("{}/chat/x", "C".repeat(32)),
        "3B/chat/r.e-v_1".to_owned(),
    ];
    for name in &longest {
        staff
            .join(name, None)
            .await
            .unwrap_or_else(|e| panic!("join {name}: {e}"));
        staff.history(name, None, None, None).await.unwrap();
    }
    // Nothing was joined by the bad names: still room for these and a ping.
    assert!(ping(&mut staff).await.is_ok());
    assert!(ping(&mut parent).await.is_ok());
}

#[tokio::test]
async fn join_twice_is_already_joined() {
    let server = TestServer::start().await;
    server.open(&[ROOM_3B]).await;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let first = ana.join(ROOM_3B, None).await.unwrap();
    assert_eq!(first.room, ROOM_3B);
    assert_eq!(outcome(&ana.join(ROOM_3B, None).await), "already_joined");
    // Still joined exactly once: a post is acked and delivered once.
    let ack = ana.post(ROOM_3B, "still here").await.unwrap();
    assert_eq!(ack.offset, 1);
    let event = next_event(&mut ana).await;
    assert_eq!(event.offset, 1);
    // One leave ends the membership.
    ana.leave(ROOM_3B).await.unwrap();
    assert_eq!(outcome(&ana.leave(ROOM_3B).await), "not_joined");
    // After leaving, joining again works.
    let again = ana.join(ROOM_3B, None).await.unwrap();
    assert_eq!(again.head, 1);
}

#[tokio::test]
async fn post_typing_leave_without_join_are_not_joined() {
    let server = TestServer::start().await;
    server.open(&[ROOM_3B, ROOM_4A]).await;
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let (mut staff, _) = server.connect(&token("staff1", Role::Staff, &[])).await;
    // In a room they may join, and in a room they may not, and for staff.
    for room in [ROOM_3B, ROOM_4A] {
        assert_eq!(
            outcome(&ana.post(room, "hi").await),
            "not_joined",
            "post {room}"
        );
        assert_eq!(
            outcome(&ana.typing(room).await),
            "not_joined",
            "typing {room}"
        );
        assert_eq!(
            outcome(&ana.leave(room).await),
            "not_joined",
            "leave {room}"
        );
        assert_eq!(outcome(&staff.post(room, "hi").await), "not_joined");
        assert_eq!(outcome(&staff.typing(room).await), "not_joined");
        assert_eq!(outcome(&staff.leave(room).await), "not_joined");
    }
    // A joined room does not make another one joined.
    ana.join(ROOM_3B, None).await.unwrap();
    assert_eq!(
        outcome(&ana.post("3B/chat/other", "hi").await),
        "not_joined"
    );
    // Nothing was stored by the refused posts.
    let page = staff.history(ROOM_3B, None, None, None).await.unwrap();
    assert_eq!(page.head, 0);
    assert!(page.events.is_empty());
}

#[tokio::test]
async fn more_rooms_than_allowed_is_too_many_rooms() {
    let server = TestServer::start_with(|c| c.max_rooms_per_connection = 2).await;
    server
        .open(&[
            "3B/chat/one",
            "3B/chat/two",
            "3B/chat/three",
            "3B/chat/four",
        ])
        .await;
    let (mut ana, hello) = server.connect(&student("ana", "3B")).await;
    assert_eq!(hello.limits.max_rooms, 2);
    ana.join("3B/chat/one", None).await.unwrap();
    ana.join("3B/chat/two", None).await.unwrap();
    assert_eq!(
        outcome(&ana.join("3B/chat/three", None).await),
        "too_many_rooms"
    );
    // The refused join did not count: leaving one room makes space for it.
    ana.leave("3B/chat/one").await.unwrap();
    ana.join("3B/chat/three", None).await.unwrap();
    assert_eq!(
        outcome(&ana.join("3B/chat/four", None).await),
        "too_many_rooms"
    );
    // The limit is per connection: another connection of the same user may join.
    let (mut tab2, _) = server.connect(&student("ana", "3B")).await;
    tab2.join("3B/chat/four", None).await.unwrap();
    tab2.join("3B/chat/one", None).await.unwrap();
    // The joined rooms work.
    assert_eq!(ana.post("3B/chat/three", "hi").await.unwrap().offset, 1);
}

/// Sends `hello` on a raw socket; returns the error reply and the close code.
async fn hello_refused(server: &TestServer, token: &str) -> (Option<ErrorReply>, Option<u16>) {
    let mut ws = raw_ws(server.addr()).await;
    let hello = preau::protocol::encode_request(&Request::Hello {
        id: Some(1),
        token: token.to_owned(),
    })
    .unwrap();
    ws.send(Message::Binary(hello)).await.unwrap();
    let reply = match raw_next(&mut ws).await {
        Some(ServerFrame::Error(reply)) => Some(reply),
        None => None,
        Some(other) => panic!("hello answered with {other:?}"),
    };
    let code = if reply.is_some() {
        raw_close_code(&mut ws).await
    } else {
        None
    };
    (reply, code)
}

#[tokio::test]
async fn token_with_an_invalid_class_is_refused_at_hello() {
    let server = TestServer::start().await;
    let long = "C".repeat(33);
    for class in ["3 B", "../3B", "3B/chat", "", long.as_str()] {
        let token = keyring()
            .mint(&claims("ana", Role::Student, &[class]))
            .unwrap();
        let (reply, code) = hello_refused(&server, &token).await;
        let reply = reply.unwrap_or_else(|| panic!("class {class:?}: no error before close"));
        assert_eq!(
            (reply.code, reply.id),
            (ErrorCode::Unauthorized, Some(1)),
            "class {class:?}"
        );
        assert_eq!(code, Some(4001), "class {class:?}");
        // The Rust client reports the refusal.
        match Client::connect(&server.url(), &token).await {
            Err(ClientError::Refused(r)) => assert_eq!(r.code, ErrorCode::Unauthorized),
            Err(other) => panic!("class {class:?}: {other}"),
            Ok(_) => panic!("class {class:?}: hello accepted"),
        }
    }
    // A valid token still works on the same server.
    let (_, hello) = server.connect(&student("ana", "3B")).await;
    assert_eq!(hello.classes, vec!["3B".to_owned()]);
}

/// `rooms {class, kind}` as `client` sees it.
async fn listed(client: &mut Client, class: &str, kind: &str) -> Vec<String> {
    client
        .request::<preau::protocol::RoomsOk>(Request::Rooms {
            id: None,
            class: class.to_owned(),
            kind: kind.to_owned(),
        })
        .await
        .unwrap_or_else(|e| panic!("rooms {class}/{kind}: {e}"))
        .rooms
}

/// A room exists only once a teacher of its class (or staff) opens it by
/// joining it: a pupil naming a new room learns that it does not exist
/// (`unknown_room`), users who could not read it anyway are `forbidden`,
/// and neither they nor a read (`history`) create it.
#[tokio::test]
async fn rooms_exist_once_a_teacher_opens_them() {
    let server = TestServer::start().await;
    let store = server.server.hub().store.clone();
    let exists = |room: &str| store.room_meta(room).expect("room meta").is_some();
    let (mut ana, _) = server.connect(&student("ana", "3B")).await;
    let (mut prof, _) = server.connect(&teacher("prof", "3B")).await;
    let (mut other, _) = server.connect(&teacher("tea4a", "4A")).await;
    let (mut parent, _) = server
        .connect(&parent_token("par3b", &["3B"], &["s1"]))
        .await;

    for (room, kind) in [
        ("3B/chat/ouverture", "chat"),
        ("3B/notes/ouverture", "notes"),
    ] {
        // A pupil of the class: the room does not exist yet.
        assert_eq!(
            outcome(&ana.join(room, None).await),
            "unknown_room",
            "pupil joins unopened {room}"
        );
        assert_eq!(
            outcome(&ana.post(room, "hi").await),
            "not_joined",
            "the refused join made no member of {room}"
        );
        // Those who could not read it anyway are not told whether it exists.
        assert_eq!(
            outcome(&other.join(room, None).await),
            "forbidden",
            "teacher of another class joins {room}"
        );
        assert_eq!(
            outcome(&parent.join(room, None).await),
            "forbidden",
            "parent joins {room}"
        );
        assert!(!exists(room), "{room} created by a refused join");
        assert!(
            !listed(&mut ana, "3B", kind)
                .await
                .contains(&room.to_owned()),
            "{room} listed before anyone opened it"
        );

        // A teacher of the class opens it by joining it.
        let opened = prof.join(room, None).await.expect("teacher opens");
        assert_eq!((opened.room.as_str(), opened.head), (room, 0));
        assert!(exists(room), "{room} created by the teacher's join");

        // Now the pupil joins, and the room is listed for everyone who reads it.
        let joined = ana.join(room, None).await.expect("pupil joins opened room");
        assert_eq!((joined.room.as_str(), joined.head), (room, 0));
        for (who, client) in [("pupil", &mut ana), ("teacher", &mut prof)] {
            assert!(
                listed(client, "3B", kind).await.contains(&room.to_owned()),
                "{who}: rooms 3B/{kind} lists {room}"
            );
        }
        // Other classes' users still may not join.
        assert_eq!(outcome(&other.join(room, None).await), "forbidden");
        assert_eq!(outcome(&parent.join(room, None).await), "forbidden");
    }
    // Opening stored nothing: the pupil's first post is offset 1.
    let ack = ana.post("3B/chat/ouverture", "bonjour").await.unwrap();
    assert_eq!(ack.offset, 1);

    // A read never creates a room, even a teacher's.
    let unopened = "3B/chat/jamais";
    assert_eq!(
        outcome(&prof.history(unopened, None, None, None).await),
        "unknown_room",
        "teacher's history of an unopened room"
    );
    assert_eq!(
        outcome(&ana.history(unopened, None, None, None).await),
        "unknown_room",
        "pupil's history of an unopened room"
    );
    assert_eq!(
        outcome(&other.history(unopened, None, None, None).await),
        "forbidden",
        "history of an unopened room by a teacher of another class"
    );
    assert!(!exists(unopened), "history created {unopened}");
    assert!(
        !listed(&mut prof, "3B", "chat")
            .await
            .contains(&unopened.to_owned()),
        "{unopened} listed after a history"
    );

    // The class's audit log can be joined by a teacher of the class.
    let audit = prof
        .join("3B/audit/log", None)
        .await
        .expect("teacher of 3B joins the audit log");
    assert_eq!(audit.room, "3B/audit/log");

    // Refusals never end the connections.
    for client in [&mut ana, &mut prof, &mut other, &mut parent] {
        assert!(ping(client).await.is_ok());
    }
}
