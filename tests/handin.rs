//! Hand-ins (`protocol/README.md`, "Hand-ins"): the round trip a class
//! lives — the teacher opens one, three pupils hand in (one replaces, one
//! is late), the teacher downloads the zip and returns corrections, a
//! parent sees their child's — and who may do and see what, over every
//! role, files included. On the local store and on an S3 server.

mod support;

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use preau::client::{Client, ClientError};
use preau::kinds::handin::{HandinRequest, HandinStatusOk, HandinsOk};
use preau::protocol::{ErrorCode, PostOk, Role};
use serde_json::json;
use support::*;

/// Tuesday 2026-12-08, 10:00 in Paris.
const TUESDAY_10H: u64 = 1_796_806_800_000;
const HOUR: u64 = 3_600_000;
const ROOM: &str = "3B/handin/main";

fn manual_clock(start: u64) -> (Arc<AtomicU64>, preau::hub::Clock) {
    let now = Arc::new(AtomicU64::new(start));
    let read = now.clone();
    (now, Arc::new(move || read.load(Ordering::SeqCst)))
}

/// 3B: pupils ana, bob, cleo, dan; parents pa (ana), pb (bob); teacher
/// tb. 4A: pupil zoe, parent pz, teacher ta. Staff: cpe.
fn school() -> serde_json::Value {
    json!({"version": 1, "mode": "full",
    "classes": [{"id": "3B", "level": "3e"}, {"id": "4A", "level": "4e"}],
    "people": [
        {"id": "cpe", "name": "Mme la CPE", "role": "staff"},
        {"id": "tb", "name": "M. Bernard", "role": "teacher", "teaches": [{"class": "3B", "subject": "Histoire"}]},
        {"id": "ta", "name": "Mme Arnaud", "role": "teacher", "teaches": [{"class": "4A", "subject": "Maths"}]},
        {"id": "ana", "name": "Ana Martin", "role": "student", "classes": ["3B"]},
        {"id": "bob", "name": "Bob Petit", "role": "student", "classes": ["3B"]},
        {"id": "cleo", "name": "Cléo Roux", "role": "student", "classes": ["3B"]},
        {"id": "dan", "name": "Dan Leroy", "role": "student", "classes": ["3B"]},
        {"id": "zoe", "name": "Zoé Blanc", "role": "student", "classes": ["4A"]},
        {"id": "pa", "name": "Parent d'Ana", "role": "parent", "children": ["ana"]},
        {"id": "pb", "name": "Parent de Bob", "role": "parent", "children": ["bob"]},
        {"id": "pz", "name": "Parent de Zoé", "role": "parent", "children": ["zoe"]}
    ]})
}

fn who(id: &str) -> String {
    let role = match id {
        "cpe" => Role::Staff,
        "tb" | "ta" => Role::Teacher,
        "pa" | "pb" | "pz" => Role::Parent,
        _ => Role::Student,
    };
    // The ENT's token carries the same name as its directory.
    let name = school()["people"]
        .as_array()
        .and_then(|people| people.iter().find(|p| p["id"] == id))
        .and_then(|p| p["name"].as_str())
        .unwrap_or(id)
        .to_owned();
    let mut claims = claims(id, role, &[]);
    claims.name = name;
    keyring().mint(&claims).expect("mint")
}

async fn server_with(clock: preau::hub::Clock, s3: Option<preau::config::S3Config>) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config(dir.path());
    config.admin_key = Some(ADMIN_KEY.to_owned());
    config.files.s3 = s3;
    let server = preau::start_with_clock(config, clock)
        .await
        .expect("server starts");
    let server = TestServer { server, dir };
    sync_directory(server.addr(), &school()).await;
    server
}

async fn connect(server: &TestServer, user: &str) -> Client {
    client(&server.url(), &who(user)).await
}

fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Refused(reply)) => reply.code,
        other => panic!("not refused: {other:?}"),
    }
}

fn open_request(due: u64, late: bool, pupils: &[&str]) -> HandinRequest {
    HandinRequest::HandinOpen {
        id: None,
        room: ROOM.into(),
        title: "Exposé : la Révolution".into(),
        instructions: "Un PDF ou un enregistrement de 3 minutes.".into(),
        due,
        pupils: pupils.iter().map(|p| p.to_string()).collect(),
        group: None,
        accepts: vec!["document".into(), "audio".into()],
        late,
        entry: None,
    }
}

async fn submit(c: &mut Client, handin: u64, file: &str) -> Result<PostOk, ClientError> {
    c.request_kind(&HandinRequest::HandinSubmit {
        id: None,
        room: ROOM.into(),
        handin,
        file: file.into(),
    })
    .await
}

async fn upload_as(addr: SocketAddr, user: &str, name: &str, bytes: &[u8]) -> String {
    upload(addr, &who(user), name, bytes).await["file"]
        .as_str()
        .expect("file id")
        .to_owned()
}

async fn handins(c: &mut Client) -> HandinsOk {
    c.request_kind(&HandinRequest::Handins {
        id: None,
        room: ROOM.into(),
    })
    .await
    .expect("handins")
}

/// Whether any file under `dir` holds `needle`.
fn disk_holds(dir: &std::path::Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            disk_holds(&path, needle)
        } else {
            std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
        }
    })
}

async fn round_trip(server: &TestServer, now: &AtomicU64, files_dir: &std::path::Path) {
    let addr = server.addr();
    let mut tb = connect(server, "tb").await;
    let opened: PostOk = tb
        .request_kind(&open_request(TUESDAY_10H + 48 * HOUR, true, &[]))
        .await
        .expect("the teacher opens a hand-in for 3B");
    let handin = opened.offset;

    // Ana hands in a PDF; Bob hands in, then replaces his.
    let mut ana = connect(server, "ana").await;
    let ana_file = upload_as(addr, "ana", "exposé ana.pdf", &pdf("ana-exposé")).await;
    submit(&mut ana, handin, &ana_file)
        .await
        .expect("ana hands in");
    let mut bob = connect(server, "bob").await;
    let bob_first = upload_as(addr, "bob", "brouillon.pdf", &pdf("bob-brouillon-v1")).await;
    submit(&mut bob, handin, &bob_first)
        .await
        .expect("bob hands in");
    let bob_second = upload_as(addr, "bob", "exposé bob.pdf", &pdf("bob-final-v2")).await;
    submit(&mut bob, handin, &bob_second)
        .await
        .expect("bob replaces his work");
    assert!(
        !disk_holds(files_dir, b"bob-brouillon-v1"),
        "a replaced submission's bytes are deleted from the store"
    );
    // An image where documents and audio are asked: refused.
    let mut dan = connect(server, "dan").await;
    let photo = upload_as(addr, "dan", "photo.jpg", &jpeg_with_metadata("x")).await;
    assert_eq!(
        refused(submit(&mut dan, handin, &photo).await),
        ErrorCode::InvalidField
    );

    // Past the deadline: Cléo's first hand-in is taken, marked late; Bob
    // can no longer replace his.
    now.store(TUESDAY_10H + 49 * HOUR, Ordering::SeqCst);
    let mut cleo = connect(server, "cleo").await;
    let cleo_file = upload_as(addr, "cleo", "cleo.pdf", &pdf("cleo-en-retard")).await;
    submit(&mut cleo, handin, &cleo_file)
        .await
        .expect("late work is taken");
    let late_bob = upload_as(addr, "bob", "trop tard.pdf", &pdf("bob-v3")).await;
    assert_eq!(
        refused(submit(&mut bob, handin, &late_bob).await),
        ErrorCode::Forbidden
    );

    // The teacher follows the class.
    let status: HandinStatusOk = tb
        .request_kind(&HandinRequest::HandinStatus {
            id: None,
            room: ROOM.into(),
            handin,
        })
        .await
        .expect("status");
    let by: std::collections::BTreeMap<_, _> = status
        .pupils
        .iter()
        .map(|r| (r.pupil.id.as_str(), (r.status.as_str(), r.replaced)))
        .collect();
    assert_eq!(by["ana"], ("handed_in", 0));
    assert_eq!(by["bob"], ("handed_in", 1));
    assert_eq!(by["cleo"], ("late", 0));
    assert_eq!(by["dan"], ("todo", 0));
    assert_eq!(
        status.pupils[0].pupil.name, "Ana Martin",
        "named from the directory"
    );

    // All at once, as a zip.
    let (code, zip_bytes, headers) = download(
        addr,
        &who("tb"),
        &format!("/files/bundle?room={ROOM}&key={handin}"),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(headers["content-type"], "application/zip");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).expect("a zip");
    let mut entries = std::collections::BTreeMap::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).expect("entry");
        let mut content = Vec::new();
        entry.read_to_end(&mut content).expect("read entry");
        entries.insert(entry.name().to_owned(), content);
    }
    assert_eq!(entries.len(), 3, "{:?}", entries.keys());
    assert_eq!(entries["Ana Martin - exposé ana.pdf"], pdf("ana-exposé"));
    assert_eq!(entries["Bob Petit - exposé bob.pdf"], pdf("bob-final-v2"));
    assert_eq!(
        entries["Cléo Roux (en retard) - cleo.pdf"],
        pdf("cleo-en-retard")
    );

    // Corrections, privately.
    let corrected = upload_as(addr, "tb", "corrigé ana.pdf", &pdf("corrigé-ana")).await;
    let _: PostOk = tb
        .request_kind(&HandinRequest::HandinReturn {
            id: None,
            room: ROOM.into(),
            handin,
            pupil: "ana".into(),
            file: Some(corrected.clone()),
            comment: "Très bien, 16/20.".into(),
        })
        .await
        .expect("return to ana");
    let _: PostOk = tb
        .request_kind(&HandinRequest::HandinReturn {
            id: None,
            room: ROOM.into(),
            handin,
            pupil: "bob".into(),
            file: None,
            comment: "Sources manquantes.".into(),
        })
        .await
        .expect("return to bob");

    // Ana's parent sees her correction, and downloads it.
    let mut pa = connect(server, "pa").await;
    let seen = handins(&mut pa).await;
    assert_eq!(seen.handins.len(), 1);
    let mine = &seen.handins[0].mine;
    assert_eq!(mine.len(), 1, "only their child's row");
    assert_eq!(mine[0].pupil.id, "ana");
    assert_eq!(mine[0].status, "returned");
    let returned = mine[0].returned.as_ref().expect("returned");
    assert_eq!(returned.comment, "Très bien, 16/20.");
    let (code, body, headers) =
        download(addr, &who("pa"), &format!("/files/{corrected}?room={ROOM}")).await;
    assert_eq!(code, 200);
    assert_eq!(body, pdf("corrigé-ana"));
    assert_eq!(headers["content-type"], "application/pdf");
    assert!(headers["content-disposition"]
        .to_str()
        .expect("ascii")
        .starts_with("attachment;"));
    // Never another pupil's work, nor another's correction.
    for (user, file) in [
        ("pa", &bob_second),
        ("pb", &ana_file),
        ("pb", &corrected),
        ("bob", &ana_file),
    ] {
        let (code, _, _) = download(addr, &who(user), &format!("/files/{file}?room={ROOM}")).await;
        assert_eq!(code, 404, "{user} must not download {file}");
    }
    // Bob's parent sees Bob's row, with the comment and no file.
    let mut pb = connect(server, "pb").await;
    let seen = handins(&mut pb).await;
    assert_eq!(seen.handins[0].mine[0].pupil.id, "bob");
    assert_eq!(seen.handins[0].mine[0].status, "returned");
    // A pupil's view: their own row only, and nothing of others' in
    // history.
    let seen = handins(&mut cleo).await;
    assert_eq!(seen.handins[0].mine.len(), 1);
    assert_eq!(seen.handins[0].mine[0].status, "late");
    assert!(seen.handins[0].counts.is_none());
    cleo.join(ROOM, None).await.expect("join");
    let page = cleo
        .history(ROOM, None, None, Some(100))
        .await
        .expect("history");
    let mut bodies = String::new();
    for event in &page.events {
        bodies.push_str(&format!("{:?}", event.body));
    }
    assert!(bodies.contains("cleo.pdf"));
    assert!(
        !bodies.contains("exposé ana.pdf") && !bodies.contains("Très bien"),
        "{bodies}"
    );
}

#[tokio::test]
async fn a_hand_in_round_trip_on_the_local_store() {
    let (now, clock) = manual_clock(TUESDAY_10H);
    let server = server_with(clock, None).await;
    let files_dir = server.dir.path().join("files");
    round_trip(&server, &now, &files_dir).await;
}

#[tokio::test]
async fn a_hand_in_round_trip_on_an_s3_store() {
    let s3 = support::s3::S3Server::start();
    let (now, clock) = manual_clock(TUESDAY_10H);
    let server = server_with(clock, Some(s3.config())).await;
    round_trip(&server, &now, s3.bucket_dir()).await;
    // The bytes went to the S3 server, none to the data folder.
    assert!(!server.dir.path().join("files").exists());
    assert!(disk_holds(s3.bucket_dir(), b"corrig"));
}

#[tokio::test]
async fn who_may_do_what_over_every_role() {
    let (_, clock) = manual_clock(TUESDAY_10H);
    let server = server_with(clock, None).await;
    let addr = server.addr();
    let due = TUESDAY_10H + 24 * HOUR;
    // Opening: the class's teacher and staff; nobody else.
    for user in ["ana", "pa", "ta", "zoe", "pz"] {
        let mut c = connect(&server, user).await;
        let code = refused(
            c.request_kind::<PostOk>(&open_request(due, false, &[]))
                .await,
        );
        assert_eq!(code, ErrorCode::Forbidden, "{user} opens a hand-in");
    }
    let mut cpe = connect(&server, "cpe").await;
    let _: PostOk = cpe
        .request_kind(&open_request(due, false, &[]))
        .await
        .expect("staff open one");
    // For Ana and Bob only.
    let mut tb = connect(&server, "tb").await;
    let handin = tb
        .request_kind::<PostOk>(&open_request(due, false, &["ana", "bob"]))
        .await
        .expect("the teacher opens one")
        .offset;
    // A pupil of another class cannot be named.
    assert_eq!(
        refused(
            tb.request_kind::<PostOk>(&open_request(due, false, &["zoe"]))
                .await
        ),
        ErrorCode::UnknownTarget
    );
    // Reading the room: the class, its parents, staff; not 4A's people.
    for (user, sees) in [
        ("tb", 2),
        ("cpe", 2),
        ("ana", 2),
        ("cleo", 1),
        ("pa", 2),
        ("pb", 2),
    ] {
        let mut c = connect(&server, user).await;
        assert_eq!(handins(&mut c).await.handins.len(), sees, "{user}");
    }
    for user in ["ta", "zoe", "pz"] {
        let mut c = connect(&server, user).await;
        let code = refused(
            c.request_kind::<HandinsOk>(&HandinRequest::Handins {
                id: None,
                room: ROOM.into(),
            })
            .await,
        );
        assert_eq!(code, ErrorCode::Forbidden, "{user} reads 3B's hand-ins");
    }
    // Handing in: Ana (named) yes; Cléo (not named) no; parents, teachers,
    // other classes no.
    let mut ana = connect(&server, "ana").await;
    let file = upload_as(addr, "ana", "a.pdf", &pdf("ana")).await;
    submit(&mut ana, handin, &file).await.expect("ana hands in");
    // A file is attached once: naming it again is refused, and the refusal
    // deletes nothing the first hand-in references.
    assert_eq!(
        refused(submit(&mut ana, handin, &file).await),
        ErrorCode::UnknownTarget
    );
    let (got, body, _) = download(addr, &who("tb"), &format!("/files/{file}?room={ROOM}")).await;
    assert_eq!((got, body), (200, pdf("ana")));
    let mut cleo = connect(&server, "cleo").await;
    let other = upload_as(addr, "cleo", "c.pdf", &pdf("cleo")).await;
    assert_eq!(
        refused(submit(&mut cleo, handin, &other).await),
        ErrorCode::UnknownTarget
    );
    for user in ["pa", "tb", "zoe", "pz", "ta"] {
        let mut c = connect(&server, user).await;
        let code = refused(submit(&mut c, handin, &file).await);
        assert!(
            matches!(code, ErrorCode::Forbidden),
            "{user} hands in: {code:?}"
        );
    }
    // Someone else's upload cannot be attached.
    let mut bob = connect(&server, "bob").await;
    assert_eq!(
        refused(submit(&mut bob, handin, &other).await),
        ErrorCode::UnknownTarget
    );
    // Following and returning: teachers of the class and staff.
    for user in ["ana", "pa", "ta", "zoe"] {
        let mut c = connect(&server, user).await;
        let code = refused(
            c.request_kind::<HandinStatusOk>(&HandinRequest::HandinStatus {
                id: None,
                room: ROOM.into(),
                handin,
            })
            .await,
        );
        assert_eq!(code, ErrorCode::Forbidden, "{user} follows the hand-in");
        let code = refused(
            c.request_kind::<PostOk>(&HandinRequest::HandinReturn {
                id: None,
                room: ROOM.into(),
                handin,
                pupil: "ana".into(),
                file: None,
                comment: "bien".into(),
            })
            .await,
        );
        assert_eq!(code, ErrorCode::Forbidden, "{user} returns work");
    }
    // Ana's submission: herself, her parent, the class's teacher, staff.
    for (user, code) in [
        ("ana", 200),
        ("pa", 200),
        ("tb", 200),
        ("cpe", 200),
        ("bob", 404),
        ("pb", 404),
        ("cleo", 404),
        ("ta", 404),
        ("zoe", 404),
        ("pz", 404),
    ] {
        let (got, _, _) = download(addr, &who(user), &format!("/files/{file}?room={ROOM}")).await;
        assert_eq!(got, code, "{user} downloads ana's work");
    }
    // The zip: teachers of the class and staff.
    for (user, code) in [
        ("tb", 200),
        ("cpe", 200),
        ("ana", 404),
        ("pa", 404),
        ("ta", 404),
    ] {
        let (got, _, _) = download(
            addr,
            &who(user),
            &format!("/files/bundle?room={ROOM}&key={handin}"),
        )
        .await;
        assert_eq!(got, code, "{user} downloads the zip");
    }
    // No token, a bad token: 401.
    let (got, _, _) = download(addr, "nope", &format!("/files/{file}?room={ROOM}")).await;
    assert_eq!(got, 401);
}

#[tokio::test]
async fn erasing_a_pupil_deletes_their_files_from_the_store() {
    let (_, clock) = manual_clock(TUESDAY_10H);
    let server = server_with(clock, None).await;
    let addr = server.addr();
    let mut tb = connect(&server, "tb").await;
    let handin = tb
        .request_kind::<PostOk>(&open_request(TUESDAY_10H + 24 * HOUR, false, &[]))
        .await
        .expect("open")
        .offset;
    let mut ana = connect(&server, "ana").await;
    let file = upload_as(addr, "ana", "a.pdf", &pdf("secret-de-ana")).await;
    submit(&mut ana, handin, &file).await.expect("hand in");
    let corrected = upload_as(addr, "tb", "c.pdf", &pdf("correction-pour-ana")).await;
    let _: PostOk = tb
        .request_kind(&HandinRequest::HandinReturn {
            id: None,
            room: ROOM.into(),
            handin,
            pupil: "ana".into(),
            file: Some(corrected),
            comment: String::new(),
        })
        .await
        .expect("return");
    let mut bob = connect(&server, "bob").await;
    let bobs = upload_as(addr, "bob", "b.pdf", &pdf("travail-de-bob")).await;
    submit(&mut bob, handin, &bobs).await.expect("bob hands in");
    // An upload of hers in progress, too.
    let _ = try_upload(addr, &who("ana"), "x.pdf", &pdf("brouillon-ana"), None, 4).await;
    drop(ana);
    let files = server.dir.path().join("files");
    assert!(disk_holds(&files, b"secret-de-ana"));
    // Her export lists the objects kept about her (her work, her
    // correction, her upload in progress).
    let (code, body) = http_request(
        addr,
        "GET",
        "/admin/users/ana/export",
        &[("Authorization", &format!("Bearer {ADMIN_KEY}"))],
    )
    .await;
    assert_eq!(code, 200);
    let export: serde_json::Value = serde_json::from_str(&body).expect("json");
    let listed = export["files"].as_array().expect("files").len();
    assert!(listed >= 3, "{}", export["files"]);
    let erased = admin_erase(addr, "ana").await;
    assert!(
        erased["files_deleted"].as_u64().unwrap_or(0) >= 2,
        "{erased}"
    );
    assert!(
        !disk_holds(&files, b"secret-de-ana"),
        "her work's bytes are gone"
    );
    assert!(
        !disk_holds(&files, b"correction-pour-ana"),
        "and her correction's"
    );
    assert!(!disk_holds(&files, b"brouil"), "and her upload's chunks");
    assert!(disk_holds(&files, b"travail-de-bob"), "Bob's work stays");
    let (_, body) = http_request(
        addr,
        "GET",
        "/admin/users/ana/export",
        &[("Authorization", &format!("Bearer {ADMIN_KEY}"))],
    )
    .await;
    let export: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(export["files"], json!([]), "nothing left about her");
    let status: HandinStatusOk = tb
        .request_kind(&HandinRequest::HandinStatus {
            id: None,
            room: ROOM.into(),
            handin,
        })
        .await
        .expect("status");
    let bob_row = status
        .pupils
        .iter()
        .find(|r| r.pupil.id == "bob")
        .expect("bob");
    assert_eq!(bob_row.status, "handed_in");
}
