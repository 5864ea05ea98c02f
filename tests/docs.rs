//! The class document space (`protocol/README.md`, "Documents (class
//! space)"): who may read, add, remove and configure, every role; the
//! pupils' folder kept from parents, live, in history, in listings and at
//! download; removals and erasures deleting bytes from the file store on
//! disk; the space as it was after a restart.

mod support;

use std::path::Path;

use preau::client::{Client, ClientError};
use preau::kinds::docs::{AddFields, DocsOk, DocsRequest, RemoveFields};
use preau::protocol::{Body, ErrorCode, PostOk, Role, ServerFrame};
use support::*;

const SPACE: &str = "3B/docs/main";

fn parent(user: &str, classes: &[&str], children: &[&str]) -> String {
    let mut claims = claims(user, Role::Parent, classes);
    claims.children = children.iter().map(|c| (*c).into()).collect();
    keyring().mint(&claims).expect("mint parent token")
}

fn staff(user: &str) -> String {
    token(user, Role::Staff, &[])
}

async fn server() -> TestServer {
    TestServer::start_with(|c| c.admin_key = Some(ADMIN_KEY.to_owned())).await
}

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Refused(reply)) => reply.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn docs(client: &mut Client) -> Result<DocsOk, ClientError> {
    client
        .request_kind(&DocsRequest::Docs {
            id: None,
            room: SPACE.to_owned(),
        })
        .await
}

async fn folder(
    client: &mut Client,
    id: &str,
    parent: Option<&str>,
) -> Result<PostOk, ClientError> {
    client
        .request_kind(&DocsRequest::DocFolder {
            id: None,
            room: SPACE.to_owned(),
            folder: id.to_owned(),
            title: format!("Dossier {id}"),
            parent: parent.map(str::to_owned),
        })
        .await
}

async fn add(
    client: &mut Client,
    file: &str,
    folder: &str,
    title: &str,
) -> Result<PostOk, ClientError> {
    client
        .request_kind(&DocsRequest::DocAdd {
            id: None,
            room: SPACE.to_owned(),
            file: file.to_owned(),
            folder: Some(folder.to_owned()),
            title: Some(title.to_owned()),
            entry: Some(7),
            lesson: Some("Chapitre 4".to_owned()),
            key: None,
        })
        .await
}

/// `doc_add` of `file` at the root, its title left to the file's name,
/// with idempotency key `key`.
async fn add_keyed(client: &mut Client, file: &str, key: &str) -> Result<PostOk, ClientError> {
    client
        .request_kind(&DocsRequest::DocAdd {
            id: None,
            room: SPACE.to_owned(),
            file: file.to_owned(),
            folder: None,
            title: None,
            entry: None,
            lesson: None,
            key: Some(key.to_owned()),
        })
        .await
}

async fn remove(client: &mut Client, doc: u64) -> Result<PostOk, ClientError> {
    client
        .request_kind(&DocsRequest::DocRemove {
            id: None,
            room: SPACE.to_owned(),
            doc,
        })
        .await
}

async fn share(client: &mut Client, on: bool) -> Result<PostOk, ClientError> {
    client
        .request_kind(&DocsRequest::DocsConfig {
            id: None,
            room: SPACE.to_owned(),
            pupils_share: on,
        })
        .await
}

/// Uploads a PDF holding `text` as `token`'s; returns its file id and bytes.
async fn upload_pdf(server: &TestServer, token: &str, text: &str) -> (String, Vec<u8>) {
    let bytes = pdf(text);
    let done = upload(server.addr(), token, &format!("{text}.pdf"), &bytes).await;
    let id = done["file"].as_str().expect("file id").to_owned();
    (id, bytes)
}

/// `GET /files/<id>?room=SPACE` as `token`: the status and the bytes.
async fn get(server: &TestServer, token: &str, file: &str) -> (u16, Vec<u8>) {
    let (status, body, _) =
        download(server.addr(), token, &format!("/files/{file}?room={SPACE}")).await;
    (status, body)
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Whether the file store's folder on disk holds an object named `id`
/// (its bytes; the `.json` sidecar aside) or any file containing `words`.
fn on_disk(server: &TestServer, id: &str, words: &str) -> (bool, bool) {
    let files = files_under(&server.dir.path().join("files"));
    let named = files
        .iter()
        .any(|p| p.file_name().and_then(|n| n.to_str()) == Some(id));
    let holding = files.iter().any(|p| {
        std::fs::read(p).is_ok_and(|b| b.windows(words.len()).any(|w| w == words.as_bytes()))
    });
    (named, holding)
}

/// The next event of a kind (`body.kind`, event), skipping presence and
/// typing.
async fn next_kind_event(client: &mut Client) -> (String, preau::protocol::Event) {
    loop {
        match next(client).await {
            ServerFrame::Event(event) => match &event.body {
                Body::Kind(body) => return (body.kind.clone(), event),
                other => panic!("not a docs event: {other:?}"),
            },
            ServerFrame::Presence(_) | ServerFrame::Typing(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[tokio::test]
async fn every_role_reads_adds_removes_and_downloads_what_the_space_allows() {
    let server = server().await;
    let url = server.url();
    let prof_t = teacher("prof", "3B");
    let ana_t = student("ana", "3B");
    let bob_t = student("bob", "3B");
    let mum_t = parent("mum", &["3B"], &["ana"]);
    let staff_t = staff("cpe");
    let zoe_t = student("zoe", "4A");
    let other_prof_t = teacher("autre", "4A");
    let other_parent_t = parent("papa", &["4A"], &["zoe"]);

    // A teacher of the class opens the space; the class's pupils, their
    // parents and staff join it; other classes may not.
    let mut prof = client(&url, &prof_t).await;
    prof.join(SPACE, None).await.expect("the teacher opens it");
    let mut ana = client(&url, &ana_t).await;
    ana.join(SPACE, None).await.expect("a pupil joins");
    let mut bob = client(&url, &bob_t).await;
    bob.join(SPACE, None).await.expect("another pupil joins");
    let mut mum = client(&url, &mum_t).await;
    mum.join(SPACE, None).await.expect("a parent joins");
    let mut cpe = client(&url, &staff_t).await;
    cpe.join(SPACE, None).await.expect("staff joins");
    let mut zoe = client(&url, &zoe_t).await;
    let mut other_prof = client(&url, &other_prof_t).await;
    let mut other_parent = client(&url, &other_parent_t).await;
    for outsider in [&mut zoe, &mut other_prof, &mut other_parent] {
        assert_eq!(code(outsider.join(SPACE, None).await), ErrorCode::Forbidden);
        assert_eq!(code(docs(outsider).await), ErrorCode::Forbidden);
        // Not joined: every write stops there.
        assert_eq!(
            code(folder(outsider, "x", None).await),
            ErrorCode::NotJoined
        );
        assert_eq!(code(share(outsider, true).await), ErrorCode::NotJoined);
        assert_eq!(code(remove(outsider, 1).await), ErrorCode::NotJoined);
    }

    // Folders: teachers and staff.
    folder(&mut prof, "maths", None)
        .await
        .expect("a teacher creates a folder");
    folder(&mut cpe, "vie-scolaire", None)
        .await
        .expect("staff creates one");
    folder(&mut prof, "chap-4", Some("maths"))
        .await
        .expect("a subfolder");
    assert_eq!(
        code(folder(&mut prof, "maths", None).await),
        ErrorCode::InvalidField
    );
    assert_eq!(
        code(folder(&mut prof, "eleves", None).await),
        ErrorCode::InvalidField
    );
    assert_eq!(
        code(folder(&mut prof, "sous", Some("eleves")).await),
        ErrorCode::InvalidField
    );
    assert_eq!(
        code(folder(&mut prof, "x", Some("nope")).await),
        ErrorCode::UnknownTarget
    );
    assert_eq!(
        code(folder(&mut prof, "Pas bien", None).await),
        ErrorCode::InvalidField
    );
    assert_eq!(
        code(folder(&mut ana, "a", None).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(folder(&mut mum, "m", None).await),
        ErrorCode::Forbidden
    );

    // Configuration: teachers and staff.
    assert_eq!(code(share(&mut ana, true).await), ErrorCode::Forbidden);
    assert_eq!(code(share(&mut mum, true).await), ErrorCode::Forbidden);

    // Documents: teachers and staff anywhere.
    let (sheet, sheet_bytes) = upload_pdf(&server, &prof_t, "fiche-exercices").await;
    let sheet_doc = add(&mut prof, &sheet, "", "Fiche d'exercices")
        .await
        .expect("at the root")
        .offset;
    let (slides, _) = upload_pdf(&server, &prof_t, "diapos-chap4").await;
    let slides_doc = add(&mut prof, &slides, "chap-4", "Diapos")
        .await
        .expect("in a folder")
        .offset;
    let (rules, _) = upload_pdf(&server, &staff_t, "reglement").await;
    let rules_doc = add(&mut cpe, &rules, "vie-scolaire", "Règlement")
        .await
        .expect("staff adds")
        .offset;
    let (lost, _) = upload_pdf(&server, &prof_t, "perdu").await;
    assert_eq!(
        code(add(&mut prof, &lost, "nope", "Perdu").await),
        ErrorCode::UnknownTarget
    );
    assert_eq!(
        code(add(&mut prof, "0123456789abcdef0123456789abcdef", "", "Rien").await),
        ErrorCode::UnknownTarget,
        "a file nobody uploaded"
    );

    // Pupils: nothing while sharing is off, then only into `eleves`.
    let (work, work_bytes) = upload_pdf(&server, &ana_t, "travail-ana").await;
    assert_eq!(
        code(add(&mut ana, &work, "eleves", "Mon travail").await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(add(&mut ana, &work, "", "Mon travail").await),
        ErrorCode::Forbidden
    );
    let (mum_file, _) = upload_pdf(&server, &mum_t, "parent").await;
    assert_eq!(
        code(add(&mut mum, &mum_file, "", "Mot").await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(add(&mut mum, &mum_file, "eleves", "Mot").await),
        ErrorCode::Forbidden
    );
    share(&mut prof, true)
        .await
        .expect("a teacher turns sharing on");
    assert_eq!(
        code(add(&mut ana, &work, "", "Mon travail").await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(add(&mut ana, &work, "maths", "Mon travail").await),
        ErrorCode::Forbidden
    );
    // Her upload was refused before it moved: she attaches it now.
    let work_doc = add(&mut ana, &work, "eleves", "Mon travail")
        .await
        .expect("shared")
        .offset;
    let (bob_work, _) = upload_pdf(&server, &bob_t, "travail-bob").await;
    let bob_doc = add(&mut bob, &bob_work, "eleves", "Travail de Bob")
        .await
        .expect("shared")
        .offset;
    assert_eq!(
        code(add(&mut mum, &mum_file, "eleves", "Mot").await),
        ErrorCode::Forbidden
    );
    // Someone else's upload is nobody else's to attach.
    let (bob_other, _) = upload_pdf(&server, &bob_t, "autre-bob").await;
    assert_eq!(
        code(add(&mut ana, &bob_other, "eleves", "Pas à moi").await),
        ErrorCode::UnknownTarget
    );

    // Listings: everyone of the class sees the teachers' resources; the
    // pupils' folder and its work are not shown to parents.
    let everything = |listed: &DocsOk| -> Vec<u64> { listed.docs.iter().map(|d| d.doc).collect() };
    for reader in [&mut prof, &mut ana, &mut bob, &mut cpe] {
        let listed = docs(reader).await.expect("listed");
        assert!(listed.pupils_share);
        assert_eq!(
            everything(&listed),
            vec![sheet_doc, slides_doc, rules_doc, work_doc, bob_doc]
        );
        assert!(listed
            .folders
            .iter()
            .any(|f| f.folder == "eleves" && f.title == "Travaux des élèves"));
        assert_eq!(listed.folders.len(), 4);
    }
    let listed = docs(&mut mum).await.expect("a parent lists");
    assert_eq!(everything(&listed), vec![sheet_doc, slides_doc, rules_doc]);
    assert!(listed.folders.iter().all(|f| f.folder != "eleves"));
    let sheet_listed = &listed.docs[0];
    assert_eq!(sheet_listed.title, "Fiche d'exercices");
    assert_eq!(sheet_listed.by.id, "prof");
    assert_eq!(sheet_listed.entry, Some(7));
    assert_eq!(sheet_listed.lesson.as_deref(), Some("Chapitre 4"));
    assert_eq!(sheet_listed.file.id, sheet);
    assert_eq!(sheet_listed.file.mime, "application/pdf");
    assert_eq!(sheet_listed.file.size, sheet_bytes.len() as u64);

    // History: the parent's has the teachers' events and none of the
    // pupils' folder.
    let page = mum
        .history(SPACE, None, None, Some(100))
        .await
        .expect("history");
    let adds: Vec<u64> = page
        .events
        .iter()
        .filter(|e| matches!(&e.body, Body::Kind(b) if b.kind == "doc_add"))
        .map(|e| e.offset)
        .collect();
    assert_eq!(adds, vec![sheet_doc, slides_doc, rules_doc]);
    let page = bob
        .history(SPACE, None, None, Some(100))
        .await
        .expect("history");
    let adds = page
        .events
        .iter()
        .filter(|e| matches!(&e.body, Body::Kind(b) if b.kind == "doc_add"))
        .count();
    assert_eq!(adds, 5);

    // Downloads: the teacher's resource for the class, its parents and
    // staff; a pupil's work for the class and staff, not for parents;
    // nothing for other classes.
    for reader in [&prof_t, &ana_t, &bob_t, &mum_t, &staff_t] {
        let (status, bytes) = get(&server, reader, &sheet).await;
        assert_eq!(status, 200);
        assert_eq!(bytes, sheet_bytes);
    }
    for reader in [&prof_t, &ana_t, &bob_t, &staff_t] {
        let (status, bytes) = get(&server, reader, &work).await;
        assert_eq!(status, 200);
        assert_eq!(bytes, work_bytes);
    }
    assert_eq!(
        get(&server, &mum_t, &work).await.0,
        404,
        "a parent gets no pupil's work"
    );
    for outsider in [&zoe_t, &other_prof_t, &other_parent_t] {
        assert_eq!(get(&server, outsider, &sheet).await.0, 404);
        assert_eq!(get(&server, outsider, &work).await.0, 404);
    }
    assert_eq!(
        get(&server, &prof_t, &lost).await.0,
        404,
        "a file no document attaches"
    );

    // Removing: a pupil their own only; parents nothing; teachers and
    // staff anything.
    assert_eq!(code(remove(&mut ana, bob_doc).await), ErrorCode::Forbidden);
    assert_eq!(
        code(remove(&mut ana, sheet_doc).await),
        ErrorCode::Forbidden
    );
    assert_eq!(code(remove(&mut mum, work_doc).await), ErrorCode::Forbidden);
    assert_eq!(
        code(remove(&mut mum, sheet_doc).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        code(remove(&mut ana, 9_999).await),
        ErrorCode::UnknownTarget
    );
    remove(&mut ana, work_doc)
        .await
        .expect("a pupil removes her own");
    assert_eq!(
        code(remove(&mut ana, work_doc).await),
        ErrorCode::UnknownTarget
    );
    remove(&mut prof, bob_doc)
        .await
        .expect("a teacher removes a pupil's");
    remove(&mut cpe, slides_doc)
        .await
        .expect("staff removes a teacher's");
    remove(&mut prof, rules_doc)
        .await
        .expect("a teacher removes staff's");
    let listed = docs(&mut ana).await.expect("listed");
    assert_eq!(everything(&listed), vec![sheet_doc]);

    // Sharing off again: pupils add nothing more.
    share(&mut prof, false).await.expect("off");
    let (again, _) = upload_pdf(&server, &ana_t, "encore").await;
    assert_eq!(
        code(add(&mut ana, &again, "eleves", "Encore").await),
        ErrorCode::Forbidden
    );
}

#[tokio::test]
async fn joined_members_receive_documents_live_and_parents_not_the_pupils_folder() {
    let server = server().await;
    let url = server.url();
    let prof_t = teacher("prof", "3B");
    let ana_t = student("ana", "3B");
    let mut prof = client(&url, &prof_t).await;
    prof.join(SPACE, None).await.expect("opened");
    let mut ana = client(&url, &ana_t).await;
    ana.join(SPACE, None).await.expect("joined");
    let mut mum = client(&url, &parent("mum", &["3B"], &["ana"])).await;
    mum.join(SPACE, None).await.expect("joined");

    let (sheet, _) = upload_pdf(&server, &prof_t, "fiche").await;
    let added = add(&mut prof, &sheet, "", "Fiche").await.expect("added");
    for reader in [&mut ana, &mut mum] {
        let (kind, event) = next_kind_event(reader).await;
        assert_eq!(kind, "doc_add");
        assert_eq!(event.offset, added.offset);
        assert_eq!(event.from.id, "prof");
        let Body::Kind(body) = &event.body else {
            unreachable!()
        };
        let fields: AddFields = body.decode().expect("doc_add fields");
        assert_eq!(fields.file.id, sheet);
        assert_eq!(fields.title, "Fiche");
        assert_eq!(fields.folder, "");
    }

    // The pupil's shared work and its removal reach the class, not her
    // parent: the parent's next events are the configuration and the
    // teacher's next resource.
    share(&mut prof, true).await.expect("on");
    let (work, _) = upload_pdf(&server, &ana_t, "travail").await;
    let shared = add(&mut ana, &work, "eleves", "Mon travail")
        .await
        .expect("shared");
    remove(&mut ana, shared.offset).await.expect("removed");
    let (next_sheet, _) = upload_pdf(&server, &prof_t, "fiche-2").await;
    let second = add(&mut prof, &next_sheet, "", "Fiche 2")
        .await
        .expect("added");
    let (kind, _) = next_kind_event(&mut mum).await;
    assert_eq!(kind, "docs_config");
    let (kind, event) = next_kind_event(&mut mum).await;
    assert_eq!((kind.as_str(), event.offset), ("doc_add", second.offset));
    // The teacher is shown his own events too: the first resource, then
    // the configuration, then the pupil's.
    let (kind, event) = next_kind_event(&mut prof).await;
    assert_eq!((kind.as_str(), event.offset), ("doc_add", added.offset));
    let (kind, _) = next_kind_event(&mut prof).await;
    assert_eq!(kind, "docs_config");
    let (kind, event) = next_kind_event(&mut prof).await;
    assert_eq!((kind.as_str(), event.offset), ("doc_add", shared.offset));
    let (kind, event) = next_kind_event(&mut prof).await;
    assert_eq!(kind, "doc_remove");
    let Body::Kind(body) = &event.body else {
        unreachable!()
    };
    let fields: RemoveFields = body.decode().expect("doc_remove fields");
    assert_eq!(
        (fields.doc, fields.folder.as_str()),
        (shared.offset, "eleves")
    );
}

#[tokio::test]
async fn removing_a_document_deletes_its_bytes_from_the_store() {
    let server = server().await;
    let prof_t = teacher("prof", "3B");
    let mut prof = client(&server.url(), &prof_t).await;
    prof.join(SPACE, None).await.expect("opened");
    let (sheet, bytes) = upload_pdf(&server, &prof_t, "fiche-a-supprimer").await;
    let doc = add(&mut prof, &sheet, "", "Fiche")
        .await
        .expect("added")
        .offset;
    assert_eq!(get(&server, &prof_t, &sheet).await, (200, bytes));
    assert_eq!(on_disk(&server, &sheet, "fiche-a-supprimer"), (true, true));

    // One document per file: removing one must not pull the bytes from
    // under another. A retry with the same key gets the first ack.
    assert_eq!(
        code(add(&mut prof, &sheet, "", "Encore").await),
        ErrorCode::UnknownTarget
    );
    let (keyed, _) = upload_pdf(&server, &prof_t, "fiche-avec-cle").await;
    let first = add_keyed(&mut prof, &keyed, "k-1").await.expect("added");
    let again = add_keyed(&mut prof, &keyed, "k-1")
        .await
        .expect("the retry is acked");
    assert_eq!(again.offset, first.offset);
    let listed = docs(&mut prof).await.expect("listed");
    assert_eq!(listed.docs.len(), 2);
    assert_eq!(
        listed.docs[1].title, "fiche-avec-cle.pdf",
        "the file's name by default"
    );

    remove(&mut prof, doc).await.expect("removed");
    assert_eq!(
        on_disk(&server, &sheet, "fiche-a-supprimer"),
        (false, false),
        "neither the object nor its bytes are left under files/"
    );
    assert_eq!(get(&server, &prof_t, &sheet).await.0, 404);
    let listed = docs(&mut prof).await.expect("listed");
    assert_eq!(listed.docs.len(), 1, "the other document stays");
    assert_eq!(listed.docs[0].file.id, keyed);
}

#[tokio::test]
async fn erasing_a_pupil_deletes_her_shared_work_and_keeps_the_teachers_resources() {
    let server = server().await;
    let url = server.url();
    let prof_t = teacher("prof", "3B");
    let ana_t = student("ana", "3B");
    let mut prof = client(&url, &prof_t).await;
    prof.join(SPACE, None).await.expect("opened");
    share(&mut prof, true).await.expect("on");
    let mut ana = client(&url, &ana_t).await;
    ana.join(SPACE, None).await.expect("joined");
    let (sheet, sheet_bytes) = upload_pdf(&server, &prof_t, "ressource-prof").await;
    let sheet_doc = add(&mut prof, &sheet, "", "Ressource")
        .await
        .expect("added")
        .offset;
    let (work, _) = upload_pdf(&server, &ana_t, "travail-de-ana").await;
    add(&mut ana, &work, "eleves", "Mon travail")
        .await
        .expect("shared");
    assert_eq!(on_disk(&server, &work, "travail-de-ana"), (true, true));
    ana.close();

    let erased = admin_erase(server.addr(), "ana").await;
    assert!(
        erased["files_deleted"].as_u64().unwrap_or(0) >= 1,
        "{erased}"
    );
    assert_eq!(
        on_disk(&server, &work, "travail-de-ana"),
        (false, false),
        "her work's bytes left the disk"
    );
    assert_eq!(on_disk(&server, &sheet, "ressource-prof"), (true, true));
    assert_eq!(get(&server, &prof_t, &work).await.0, 404);
    assert_eq!(get(&server, &prof_t, &sheet).await, (200, sheet_bytes));
    let listed = docs(&mut prof).await.expect("listed");
    let ids: Vec<u64> = listed.docs.iter().map(|d| d.doc).collect();
    assert_eq!(
        ids,
        vec![sheet_doc],
        "her document is gone from the listing"
    );

    // And erasing the teacher keeps the class's resource.
    prof.close();
    admin_erase(server.addr(), "prof").await;
    assert_eq!(on_disk(&server, &sheet, "ressource-prof"), (true, true));
    let mut cpe = client(&url, &staff("cpe")).await;
    let listed = docs(&mut cpe).await.expect("listed");
    assert_eq!(listed.docs.len(), 1);
    assert_eq!(
        get(&server, &staff("cpe"), &sheet).await,
        (200, pdf("ressource-prof"))
    );
}

#[tokio::test]
async fn the_space_survives_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let node = Proc::serve(dir.path(), port, &[]).await;
    let prof_t = teacher("prof", "3B");
    let ana_t = student("ana", "3B");
    let mum_t = parent("mum", &["3B"], &["ana"]);
    let mut prof = client(&node.url(), &prof_t).await;
    prof.join(SPACE, None).await.expect("opened");
    folder(&mut prof, "maths", None).await.expect("folder");
    let sheet_bytes = pdf("fiche-apres-redemarrage");
    let sheet = upload(node.addr, &prof_t, "fiche.pdf", &sheet_bytes).await["file"]
        .as_str()
        .expect("file id")
        .to_owned();
    let sheet_doc = add(&mut prof, &sheet, "maths", "Fiche")
        .await
        .expect("added")
        .offset;
    share(&mut prof, true).await.expect("on");
    let mut ana = client(&node.url(), &ana_t).await;
    ana.join(SPACE, None).await.expect("joined");
    let upload_id = |done: serde_json::Value| done["file"].as_str().expect("file id").to_owned();
    let kept = upload_id(upload(node.addr, &ana_t, "a.pdf", &pdf("garde")).await);
    let kept_doc = add(&mut ana, &kept, "eleves", "Gardé")
        .await
        .expect("shared")
        .offset;
    let gone = upload_id(upload(node.addr, &ana_t, "b.pdf", &pdf("retire")).await);
    let gone_doc = add(&mut ana, &gone, "eleves", "Retiré")
        .await
        .expect("shared")
        .offset;
    remove(&mut ana, gone_doc).await.expect("removed");
    drop((prof, ana));
    let status = node.terminate().await;
    assert!(status.success(), "{status:?}");

    let node = Proc::serve(dir.path(), port, &[]).await;
    let mut ana = client(&node.url(), &ana_t).await;
    let listed = docs(&mut ana).await.expect("listed after a restart");
    assert!(listed.pupils_share);
    let ids: Vec<u64> = listed.docs.iter().map(|d| d.doc).collect();
    assert_eq!(ids, vec![sheet_doc, kept_doc]);
    assert!(listed.folders.iter().any(|f| f.folder == "maths"));
    let mut mum = client(&node.url(), &mum_t).await;
    let listed = docs(&mut mum).await.expect("listed");
    let ids: Vec<u64> = listed.docs.iter().map(|d| d.doc).collect();
    assert_eq!(ids, vec![sheet_doc]);
    let path = |id: &str| format!("/files/{id}?room={SPACE}");
    let (status, bytes, _) = download(node.addr, &mum_t, &path(&sheet)).await;
    assert_eq!((status, bytes), (200, sheet_bytes));
    assert_eq!(download(node.addr, &mum_t, &path(&kept)).await.0, 404);
    assert_eq!(download(node.addr, &ana_t, &path(&kept)).await.0, 200);
    assert_eq!(download(node.addr, &ana_t, &path(&gone)).await.0, 404);
    node.terminate().await;
}
