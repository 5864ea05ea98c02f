//! The school directory (`protocol/directory.openapi.yaml`, `src/directory/`):
//! syncs through the admin API are idempotent, versioned and whole (a
//! refused or interrupted one changes nothing); tokens meet the directory
//! at `hello` as the spec says; a pupil removed or moved loses access at
//! once (their connections close with 4006); the CLI imports a CSV into
//! the real binary.

mod support;

use std::time::Duration;

use preau::client::{Client, ClientError};
use preau::protocol::{ErrorCode, Role};
use serde_json::{json, Value};
use support::*;

async fn server() -> TestServer {
    TestServer::start_with(|c| c.admin_key = Some(ADMIN_KEY.to_owned())).await
}

async fn put(addr: std::net::SocketAddr, body: &Value) -> (u16, Value) {
    let auth = format!("Bearer {ADMIN_KEY}");
    let (status, text) = http_send(
        addr,
        "PUT",
        "/admin/directory",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
    .await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn current(addr: std::net::SocketAddr) -> Value {
    let auth = format!("Bearer {ADMIN_KEY}");
    let (status, text) =
        http_request(addr, "GET", "/admin/directory", &[("Authorization", &auth)]).await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).expect("json")
}

/// Two classes, a group, a teacher of 3B, two pupils, a parent, staff.
fn school(version: u64) -> Value {
    json!({
        "version": version,
        "mode": "full",
        "classes": [
            {"id": "3A", "level": "3e"},
            {"id": "3B", "name": "3e B", "level": "3e"},
            {"id": "ESP", "name": "Espagnol LV2", "group": true}
        ],
        "people": [
            {"id": "lea", "name": "Léa Martin", "role": "student", "classes": ["3B", "ESP"]},
            {"id": "hugo", "name": "Hugo Petit", "role": "student", "classes": ["3A"]},
            {"id": "durand", "name": "Mme Durand", "role": "teacher",
             "teaches": [{"class": "3B", "subject": "Mathématiques"}]},
            {"id": "martin", "name": "M. Martin", "role": "parent", "children": ["lea"]},
            {"id": "proviseur", "name": "M. le proviseur", "role": "staff"}
        ]
    })
}

#[tokio::test]
async fn syncs_are_idempotent_versioned_and_whole() {
    let server = server().await;
    let addr = server.addr();
    assert_eq!(current(addr).await["version"], 0);

    let (status, body) = put(addr, &school(5)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["applied"], true);
    assert_eq!(
        (body["people"].as_u64(), body["classes"].as_u64()),
        (Some(5), Some(3))
    );

    // The ENT retries blindly: the same version and content is a no-op.
    let (status, body) = put(addr, &school(5)).await;
    assert_eq!((status, &body["applied"]), (200, &json!(false)), "{body}");
    // The same version with other content, or an older one: a conflict.
    let mut other = school(5);
    other["people"].as_array_mut().unwrap().pop();
    let (status, body) = put(addr, &other).await;
    assert_eq!(
        (status, &body["error"], &body["current"]),
        (409, &json!("version_conflict"), &json!(5))
    );
    let (status, _) = put(addr, &school(4)).await;
    assert_eq!(status, 409);
    // A delta computed against another version.
    let delta = json!({"version": 6, "mode": "delta", "base": 3, "remove": {"people": ["hugo"]}});
    assert_eq!(put(addr, &delta).await.0, 409);

    // A sync with problems changes nothing, and says where.
    let bad = json!({"version": 6, "mode": "delta", "people": [
        {"id": "new", "name": "Nouveau", "role": "student", "classes": ["5C"]},
        {"id": "p2", "name": "Parent", "role": "parent", "children": ["durand"]}
    ]});
    let (status, body) = put(addr, &bad).await;
    assert_eq!(
        (status, &body["error"]),
        (422, &json!("invalid_sync")),
        "{body}"
    );
    let at: Vec<&str> = body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["at"].as_str().unwrap())
        .collect();
    assert!(at.contains(&"people[id=new].classes[0]"), "{at:?}");
    assert!(at.contains(&"people[id=p2].children[0]"), "{at:?}");
    // Not JSON, or not a sync.
    let auth = format!("Bearer {ADMIN_KEY}");
    let (status, text) = http_send(
        addr,
        "PUT",
        "/admin/directory",
        &[("Authorization", &auth)],
        b"{\"version\":",
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("invalid_json"), "{text}");
    let (status, _) = put(addr, &json!({"version": 6, "mode": "full", "pupils": []})).await;
    assert_eq!(status, 400, "unknown fields are refused, not ignored");
    // Without the key.
    let (status, _) = http_send(addr, "PUT", "/admin/directory", &[], b"{}").await;
    assert_eq!(status, 401);

    let stored = current(addr).await;
    assert_eq!(stored["version"], 5);
    assert_eq!(stored["people"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn an_interrupted_sync_leaves_the_last_version_whole() {
    let server = server().await;
    let addr = server.addr();
    assert_eq!(put(addr, &school(1)).await.0, 200);
    // Version 2 moves everyone out, but its body stops halfway: the
    // connection drops before the server has all of it.
    let mut next = school(2);
    next["people"] = json!([]);
    for i in 0..2000 {
        next["people"].as_array_mut().unwrap().push(json!(
            {"id": format!("e{i}"), "name": format!("Élève {i}"), "role": "student", "classes": ["3A"]}
        ));
    }
    let body = next.to_string();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /admin/directory HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    use tokio::io::AsyncWriteExt;
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
        .write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stored = current(addr).await;
    assert_eq!(stored["version"], 1);
    assert_eq!(stored["people"].as_array().unwrap().len(), 5);
    // Lea still reaches her class; the whole version 2 then applies.
    let (_, hello) = server.connect(&student("lea", "3B")).await;
    assert_eq!(hello.classes, vec!["3B", "ESP"]);
    let (status, applied) = put(addr, &next).await;
    assert_eq!((status, &applied["people"]), (200, &json!(2000)));
}

#[tokio::test]
async fn tokens_meet_the_directory_at_hello() {
    let server = server().await;
    // Before the first sync, the token alone decides.
    let (_, hello) = server.connect(&student("lea", "4C")).await;
    assert_eq!(hello.classes, vec!["4C"]);
    assert_eq!(put(server.addr(), &school(1)).await.0, 200);

    // Its classes are the directory's, whatever the token says.
    let (_, hello) = server.connect(&student("lea", "4C")).await;
    assert_eq!(hello.classes, vec!["3B", "ESP"]);
    let (_, hello) = server.connect(&token("durand", Role::Teacher, &[])).await;
    assert_eq!(hello.classes, vec!["3B"]);
    // A parent's children and classes come from the directory too.
    let (_, hello) = server
        .connect(&token("martin", Role::Parent, &["3A"]))
        .await;
    assert_eq!(hello.classes, vec!["3B", "ESP"]);
    assert_eq!(hello.children.len(), 1);
    assert_eq!(
        (
            hello.children[0].id.as_str(),
            hello.children[0].name.as_str()
        ),
        ("lea", "Léa Martin")
    );

    // Someone the directory does not list, or with another role: refused.
    for (token, why) in [
        (student("intrus", "3B"), "does not list"),
        (
            token("lea", Role::Teacher, &["3B"]),
            "directory says student",
        ),
    ] {
        match Client::connect(&server.url(), &token).await {
            Err(ClientError::Refused(reply)) => {
                assert_eq!(reply.code, ErrorCode::Unauthorized);
                assert!(reply.message.contains(why), "{}", reply.message);
            }
            other => panic!("accepted: {:?}", other.map(|(_, h)| h)),
        }
    }
}

#[tokio::test]
async fn a_pupil_who_left_loses_access_at_once() {
    let server = server().await;
    assert_eq!(put(server.addr(), &school(1)).await.0, 200);
    let staff = token("proviseur", Role::Staff, &[]);
    open_rooms_as(
        &server.url(),
        &staff,
        &["3B/chat/revision", "3A/chat/revision"],
    )
    .await;
    let mut lea = client(&server.url(), &student("lea", "3B")).await;
    lea.join("3B/chat/revision", None).await.unwrap();
    let mut hugo = client(&server.url(), &student("hugo", "3A")).await;

    // Léa leaves the school.
    let delta = json!({"version": 2, "mode": "delta", "base": 1,
                       "people": [{"id": "martin", "name": "M. Martin", "role": "parent"}],
                       "remove": {"people": ["lea"]}});
    let (status, body) = put(server.addr(), &delta).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["access_changed"], 2, "Léa and her parent");
    let closed = tokio::time::timeout(WAIT, async {
        while lea.next().await.is_some() {}
        lea.close_frame()
    })
    .await
    .expect("closed at once");
    assert_eq!(closed.map(|(code, _)| code), Some(4006));
    // She cannot come back; Hugo, unchanged, stayed connected.
    assert!(matches!(
        Client::connect(&server.url(), &student("lea", "3B")).await,
        Err(ClientError::Refused(reply)) if reply.code == ErrorCode::Unauthorized
    ));
    hugo.join("3A/chat/revision", None)
        .await
        .expect("still connected");
}

#[tokio::test]
async fn the_cli_imports_a_csv_into_the_real_binary() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let proc = Proc::serve(dir.path(), port, &["--admin-key", ADMIN_KEY]).await;
    let csv = dir.path().join("annuaire.csv");
    std::fs::write(
        &csv,
        "id;rôle;nom;classes;enseigne;enfants;niveau\n\
         lea;élève;Léa Martin;3B|ESP;;;3e\n\
         durand;enseignant;Mme Durand;;3B:Mathématiques|ESP:Espagnol;;\n\
         martin;parent;M. Martin;;;lea;\n",
    )
    .unwrap();
    let run = |args: Vec<String>| {
        std::process::Command::new(bin())
            .args(args)
            .env("PREAU_ADMIN_KEY", ADMIN_KEY)
            .output()
            .expect("runs")
    };
    let url = format!("http://127.0.0.1:{port}");
    let import = |extra: &[&str]| {
        let mut args = vec![
            "directory".to_owned(),
            "import".to_owned(),
            csv.display().to_string(),
            "--url".to_owned(),
            url.clone(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        run(args)
    };
    let out = import(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("prints JSON");
    assert_eq!(
        (answer["version"].as_u64(), answer["people"].as_u64()),
        (Some(1), Some(3))
    );
    // Again: the next version, the same people.
    let out = import(&[]);
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["version"], 2);
    let (_, hello) = Client::connect(&proc.url(), &token("durand", Role::Teacher, &[]))
        .await
        .unwrap();
    assert_eq!(hello.classes, vec!["3B", "ESP"]);
    // A bad row: the CLI says which line, and nothing is sent.
    std::fs::write(&csv, "id,role,name\nx,pilote,X\n").unwrap();
    let out = import(&[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        current(format!("127.0.0.1:{port}").parse().unwrap()).await["version"],
        2
    );
    proc.terminate().await;
}

/// Two nodes, one Redis: the ENT syncs one node; the other takes the
/// version from Redis, and a removal closes the pupil's connection there
/// too. A node started later takes the directory at start.
#[tokio::test]
async fn a_sync_on_one_node_reaches_the_others() {
    let redis = support::redis::RedisServer::start().await;
    let node = |id: &'static str| {
        let url = redis.url();
        TestServer::start_with(move |c| {
            c.admin_key = Some(ADMIN_KEY.to_owned());
            c.redis = Some(url);
            c.node_id = id.to_owned();
        })
    };
    let a = node("a").await;
    let b = node("b").await;
    assert_eq!(put(a.addr(), &school(1)).await.0, 200);
    let until_b = |version: u64| {
        let addr = b.addr();
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            while current(addr).await["version"] != version {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "b never took version {version}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    until_b(1).await;
    let (mut lea, hello) = b.connect(&student("lea", "4C")).await;
    assert_eq!(hello.classes, vec!["3B", "ESP"]);

    let delta = json!({"version": 2, "mode": "delta",
                       "people": [{"id": "martin", "name": "M. Martin", "role": "parent"}],
                       "remove": {"people": ["lea"]}});
    assert_eq!(put(a.addr(), &delta).await.0, 200);
    let closed = tokio::time::timeout(WAIT, async {
        while lea.next().await.is_some() {}
        lea.close_frame()
    })
    .await
    .expect("closed on b too");
    assert_eq!(closed.map(|(code, _)| code), Some(4006));
    until_b(2).await;
    // A third node, started now, takes version 2 as it subscribes.
    let c = node("c").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while current(c.addr()).await["version"] != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "c never took the directory"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(Client::connect(&c.url(), &student("lea", "3B"))
        .await
        .is_err());
}

/// `_` is the class of rooms that belong to no class: no token lists it,
/// and no class kind's room is named with it.
#[tokio::test]
async fn the_class_of_no_class_is_reserved() {
    let server = server().await;
    assert!(
        Client::connect(&server.url(), &token("t", Role::Teacher, &["_"]))
            .await
            .is_err()
    );
    let mut staff = client(&server.url(), &token("s", Role::Staff, &[])).await;
    for room in ["_/chat/x", "_/forum/x", "_/homework/diary"] {
        match staff.join(room, None).await {
            Err(ClientError::Refused(reply)) => {
                assert_eq!(reply.code, ErrorCode::InvalidRoom, "{room}")
            }
            other => panic!("{room}: {other:?}"),
        }
    }
    match staff
        .join("3B/dm/00000000000000000000000000000000", None)
        .await
    {
        Err(ClientError::Refused(reply)) => assert_eq!(reply.code, ErrorCode::InvalidRoom),
        other => panic!("{other:?}"),
    }
}
