//! The file routes (`protocol/README.md`, "Files"): chunked uploads that
//! resume where the server says, every refusal with its status and code,
//! the type read from the bytes, images stripped of their metadata, an
//! upload stopped halfway leaves nothing anyone can read, the sweep, and
//! a node killed during an upload loses no acknowledged byte.

mod support;

use std::net::SocketAddr;

use preau::kinds::handin::HandinRequest;
use preau::protocol::PostOk;
use serde_json::{json, Value};
use support::*;

async fn create(addr: SocketAddr, token: &str, body: Value) -> (u16, Value) {
    let response = http()
        .post(format!("http://{addr}/files/uploads"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("create");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn append(
    addr: SocketAddr,
    token: &str,
    id: &str,
    offset: u64,
    bytes: &[u8],
) -> (u16, Value, Option<String>) {
    let response = http()
        .patch(format!("http://{addr}/files/uploads/{id}"))
        .bearer_auth(token)
        .header("Upload-Offset", offset.to_string())
        .body(bytes.to_vec())
        .send()
        .await
        .expect("append");
    let status = response.status().as_u16();
    let header = response
        .headers()
        .get("upload-offset")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    (status, response.json().await.unwrap_or(Value::Null), header)
}

async fn status(addr: SocketAddr, token: &str, id: &str) -> (u16, Value) {
    let response = http()
        .get(format!("http://{addr}/files/uploads/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("status");
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or(Value::Null))
}

async fn finish(addr: SocketAddr, token: &str, id: &str) -> (u16, Value) {
    let response = http()
        .post(format!("http://{addr}/files/uploads/{id}/done"))
        .bearer_auth(token)
        .send()
        .await
        .expect("finish");
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or(Value::Null))
}

/// Every file under `dir`, as paths relative to it.
fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(
                    path.strip_prefix(dir)
                        .unwrap_or(&path)
                        .display()
                        .to_string(),
                );
            }
        }
    }
    out.sort();
    out
}

fn holds(dir: &std::path::Path, needle: &[u8]) -> bool {
    files_under(dir).iter().any(|f| {
        std::fs::read(dir.join(f)).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
    })
}

#[tokio::test]
async fn uploads_resume_and_every_refusal_has_its_code() {
    let server = TestServer::start_with(|c| {
        c.files.chunk_bytes = 64 * 1024;
        c.files.max_file_bytes = 1_000_000;
        c.files.max_user_bytes = 1_100_000;
    })
    .await;
    let addr = server.addr();
    let ana = student("ana", "3B");
    let bob = student("bob", "3B");
    let body: Vec<u8> = pdf(&"x".repeat(150_000));

    // No token, a bad one.
    let (code, _) = create(addr, "", json!({"name": "a.pdf", "size": 10})).await;
    assert_eq!(code, 401);
    let (code, err) = create(addr, "not-a-token", json!({"name": "a.pdf", "size": 10})).await;
    assert_eq!((code, err["error"].as_str()), (401, Some("unauthorized")));
    // Bad bodies, sizes.
    let (code, err) = create(addr, &ana, json!({"size": 10})).await;
    assert_eq!((code, err["error"].as_str()), (400, Some("bad_request")));
    let (code, err) = create(addr, &ana, json!({"name": "a.pdf", "size": 0})).await;
    assert_eq!((code, err["error"].as_str()), (400, Some("bad_request")));
    let (code, err) = create(addr, &ana, json!({"name": "a.pdf", "size": 1_000_001})).await;
    assert_eq!((code, err["error"].as_str()), (413, Some("too_large")));
    let (code, err) = create(
        addr,
        &ana,
        json!({"name": "a.pdf", "size": 10, "class": "4A"}),
    )
    .await;
    assert_eq!((code, err["error"].as_str()), (403, Some("forbidden")));

    let (code, created) = create(
        addr,
        &ana,
        json!({"name": "../../exposé.pdf", "size": body.len()}),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let id = created["upload"].as_str().expect("id").to_owned();
    assert_eq!(created["offset"], 0);
    assert_eq!(created["chunk_bytes"], 64 * 1024);

    // Two chunks, then the phone loses its network: the server says where
    // to go on.
    let chunk = 64 * 1024;
    assert_eq!(append(addr, &ana, &id, 0, &body[..chunk]).await.0, 200);
    let (code, _, header) = append(addr, &ana, &id, chunk as u64, &body[chunk..2 * chunk]).await;
    assert_eq!((code, header.as_deref()), (200, Some("131072")));
    let (code, got) = status(addr, &ana, &id).await;
    assert_eq!(
        (code, got["offset"].as_u64()),
        (200, Some(2 * chunk as u64))
    );
    // A chunk sent again (the answer was lost): 409 with where it stands.
    let (code, err, header) = append(addr, &ana, &id, chunk as u64, &body[chunk..2 * chunk]).await;
    assert_eq!(
        (code, err["error"].as_str()),
        (409, Some("offset_mismatch"))
    );
    assert_eq!(header.as_deref(), Some("131072"));
    // Too big a chunk, past the announced size, someone else's upload.
    let (code, err, _) = append(addr, &ana, &id, 2 * chunk as u64, &vec![b'x'; chunk + 1]).await;
    assert_eq!((code, err["error"].as_str()), (413, Some("too_large")));
    // Another user's upload is as good as missing for them.
    let (code, _, _) = append(addr, &bob, &id, 2 * chunk as u64, &body[2 * chunk..]).await;
    assert_eq!(code, 404);
    let (code, _) = status(addr, &bob, &id).await;
    assert_eq!(code, 404);
    // Finishing early: 409 incomplete; nothing staged.
    let (code, err) = finish(addr, &ana, &id).await;
    assert_eq!((code, err["error"].as_str()), (409, Some("incomplete")));
    assert!(!files_under(&server.dir.path().join("files"))
        .iter()
        .any(|f| f.starts_with("staged")));
    let (code, _, _) = append(addr, &ana, &id, 2 * chunk as u64, &body[2 * chunk..]).await;
    assert_eq!(code, 200);
    let (code, done) = finish(addr, &ana, &id).await;
    assert_eq!(code, 201, "{done}");
    assert_eq!(done["file"], id.as_str());
    assert_eq!(
        done["name"], "exposé.pdf",
        "the path is dropped from the name"
    );
    assert_eq!(done["type"], "application/pdf");
    assert_eq!(done["size"], body.len());
    // Finishing again (the answer was lost) gives the same file.
    let (code, again) = finish(addr, &ana, &id).await;
    assert_eq!((code, &again), (201, &done));
    // The chunks are gone.
    assert!(!files_under(&server.dir.path().join("files"))
        .iter()
        .any(|f| f.starts_with("uploads")));

    // A program named like a document: refused at its first chunk.
    let exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00".repeat(4);
    let refused = try_upload(addr, &ana, "devoir.pdf", &exe, None, 1024).await;
    let (code, err) = refused.expect_err("refused");
    assert_eq!(
        (code, err["error"].as_str()),
        (415, Some("unsupported_type"))
    );

    // The quota: Ana has ~150 KB stored of 1.1 MB.
    let (code, err) = create(addr, &ana, json!({"name": "b.pdf", "size": 1_000_000})).await;
    assert_eq!(
        (code, err["error"].as_str()),
        (413, Some("too_large")),
        "{err}"
    );
    assert!(err["message"].as_str().unwrap_or_default().contains("full"));
}

#[tokio::test]
async fn images_lose_their_metadata_and_nothing_half_uploaded_is_visible() {
    let server = TestServer::start().await;
    let addr = server.addr();
    let ana = student("ana", "3B");
    let files = server.dir.path().join("files");
    let photo = jpeg_with_metadata("GPS 48.8566N 2.3522E iPhone de Ana");
    let done = upload(addr, &ana, "IMG_0001.jpg", &photo).await;
    assert_eq!(done["type"], "image/jpeg");
    assert!((done["size"].as_u64().expect("size") as usize) < photo.len());
    assert!(
        !holds(&files, b"GPS 48.8566N"),
        "the EXIF block is gone from the store"
    );
    assert!(!holds(&files, b"iPhone de Ana"), "and the comment");
    assert!(holds(&files, b"JFIF"), "the image itself stays");

    // Half an upload, then nothing more: chunks only, under uploads/.
    let body = pdf(&"y".repeat(10_000));
    let (code, created) = create(addr, &ana, json!({"name": "half.pdf", "size": body.len()})).await;
    assert_eq!(code, 201);
    let id = created["upload"].as_str().expect("id").to_owned();
    // A first chunk too short to read the type from: refused.
    let (code, err, _) = append(addr, &ana, &id, 0, &body[..1]).await;
    assert_eq!(
        (code, err["error"].as_str()),
        (400, Some("bad_request")),
        "{err}"
    );
    assert_eq!(append(addr, &ana, &id, 0, &body[..9_000]).await.0, 200);
    let listed = files_under(&files);
    assert!(
        listed
            .iter()
            .all(|f| f.starts_with("uploads/") || f.starts_with("staged/")),
        "{listed:?}"
    );
    assert!(!listed
        .iter()
        .any(|f| f.contains(&format!("staged/{}", "")) && f.ends_with(&id)));
    // Attaching it is refused: it is not a finished file.
    let mut c = client(&server.url(), &teacher("tb", "3B")).await;
    let handin: PostOk = c
        .request_kind(&HandinRequest::HandinOpen {
            id: None,
            room: "3B/handin/main".into(),
            title: "t".into(),
            instructions: String::new(),
            due: preau::auth::now_secs() * 1000 + 3_600_000,
            pupils: vec!["ana".into()],
            group: None,
            accepts: vec![],
            late: false,
            entry: None,
        })
        .await
        .expect("open");
    let mut pupil = client(&server.url(), &ana).await;
    let result: Result<PostOk, _> = pupil
        .request_kind(&HandinRequest::HandinSubmit {
            id: None,
            room: "3B/handin/main".into(),
            handin: handin.offset,
            file: id.clone(),
        })
        .await;
    assert!(result.is_err(), "a half upload cannot be handed in");
    // At most 10 uploads in progress per user (this one is the first).
    for _ in 0..9 {
        assert_eq!(
            create(addr, &ana, json!({"name": "n.pdf", "size": 10}))
                .await
                .0,
            201
        );
    }
    let (code, err) = create(addr, &ana, json!({"name": "n.pdf", "size": 10})).await;
    assert_eq!(
        (code, err["error"].as_str()),
        (429, Some("too_many_uploads"))
    );
    // Abandoned: the sweep deletes it once expired (not before).
    let hub_files =
        preau::files::Files::open(&preau::config::FilesConfig::default(), server.dir.path())
            .expect("open the same store");
    assert_eq!(
        hub_files
            .sweep(preau::auth::now_secs() * 1000)
            .await
            .expect("sweep"),
        0
    );
    let day_later = (preau::auth::now_secs() + 25 * 3600) * 1000;
    assert!(hub_files.sweep(day_later).await.expect("sweep") >= 11);
    assert!(files_under(&files)
        .iter()
        .all(|f| !f.starts_with("uploads/")));
    // An abort deletes at once.
    let (code, created) = create(addr, &ana, json!({"name": "c.pdf", "size": 10})).await;
    assert_eq!(code, 201);
    let id = created["upload"].as_str().expect("id").to_owned();
    let response = http()
        .delete(format!("http://{addr}/files/uploads/{id}"))
        .bearer_auth(&ana)
        .send()
        .await
        .expect("abort");
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(status(addr, &ana, &id).await.0, 404);
}

/// `preau serve` is killed (SIGKILL) twice: once with an upload half sent,
/// once right after a hand-in was acknowledged. Started again on the same
/// data folder, the upload resumes where the server had said, and every
/// acknowledged file is there, byte for byte.
#[tokio::test]
async fn a_node_killed_during_an_upload_loses_no_acknowledged_file() {
    let data = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let chunk = 64 * 1024;
    let args = ["--files-chunk-bytes", "65536"];
    let node = Proc::serve(data.path(), port, &args).await;
    let addr = node.addr;
    let ana = student("ana", "3B");
    let tb = teacher("tb", "3B");
    let body = pdf(&"z".repeat(200_000));
    let (code, created) = create(addr, &ana, json!({"name": "long.pdf", "size": body.len()})).await;
    assert_eq!(code, 201, "{created}");
    let id = created["upload"].as_str().expect("id").to_owned();
    assert_eq!(append(addr, &ana, &id, 0, &body[..chunk]).await.0, 200);
    assert_eq!(
        append(addr, &ana, &id, chunk as u64, &body[chunk..2 * chunk])
            .await
            .0,
        200
    );
    node.kill9().await;

    let node = Proc::serve(data.path(), port, &args).await;
    let (code, got) = status(addr, &ana, &id).await;
    assert_eq!(code, 200);
    let offset = got["offset"].as_u64().expect("offset") as usize;
    assert_eq!(offset, 2 * chunk, "both acknowledged chunks survived");
    let mut at = offset;
    while at < body.len() {
        let end = (at + chunk).min(body.len());
        assert_eq!(
            append(addr, &ana, &id, at as u64, &body[at..end]).await.0,
            200
        );
        at = end;
    }
    assert_eq!(finish(addr, &ana, &id).await.0, 201);
    let mut teacher_client = client(&node.url(), &tb).await;
    let handin: PostOk = teacher_client
        .request_kind(&HandinRequest::HandinOpen {
            id: None,
            room: "3B/handin/main".into(),
            title: "t".into(),
            instructions: String::new(),
            due: preau::auth::now_secs() * 1000 + 3_600_000,
            pupils: vec!["ana".into()],
            group: None,
            accepts: vec![],
            late: false,
            entry: None,
        })
        .await
        .expect("open");
    let mut pupil = client(&node.url(), &ana).await;
    let _: PostOk = pupil
        .request_kind(&HandinRequest::HandinSubmit {
            id: None,
            room: "3B/handin/main".into(),
            handin: handin.offset,
            file: id.clone(),
        })
        .await
        .expect("handed in: acknowledged");
    node.kill9().await;

    let node = Proc::serve(data.path(), port, &args).await;
    let (code, got, _) =
        download(node.addr, &tb, &format!("/files/{id}?room=3B/handin/main")).await;
    assert_eq!(code, 200);
    assert_eq!(got, body, "the acknowledged file, byte for byte");
    node.kill9().await;
}
