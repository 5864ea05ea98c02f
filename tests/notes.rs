//! Shared notes (issue 5): independent yrs documents edit one note through
//! préau over real sockets (the Yjs sync protocol inside préau frames) and
//! end byte-identical, offline edits included; validation, read-only
//! members, bad updates, compaction, restarts after SIGKILL, and two nodes
//! through Redis. Real sled, real Redis.

mod support;

use std::future::Future;
use std::time::Duration;

use preau::client::{Client, ClientError};
use preau::notes;
use preau::protocol::{
    Body, ExportFormat, ModAction, NoteExport, NoteVersions, PostOk, Request, ServerFrame,
};
use support::*;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

const NOTE: &str = "3B/notes/chapitre-3";

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {WAIT:?}"))
}

/// A Yjs editor: a yrs document synced through a préau connection, the
/// way the JS provider does it.
struct Editor {
    client: Client,
    doc: Doc,
    room: String,
    /// Size of the last sync step 2 payload the server sent.
    step2_len: usize,
}

impl Editor {
    fn new(client: Client, id: u64, room: &str) -> Editor {
        Editor {
            client,
            doc: Doc::with_client_id(id),
            room: room.to_owned(),
            step2_len: 0,
        }
    }

    async fn join(&mut self) {
        within("join", self.client.join(&self.room, None))
            .await
            .expect("join the note");
    }

    /// Sends one y-protocols message and collects what comes back until
    /// the reply: `yjs` frames are handled (step 2 applied, step 1
    /// answered with our step 2), events applied.
    async fn send(&mut self, data: Vec<u8>) -> Result<rmpv::Value, ClientError> {
        let request = Request::Yjs {
            id: None,
            room: self.room.clone(),
            data,
            more: None,
        };
        let result = within("yjs", self.client.request::<rmpv::Value>(request)).await;
        self.drain().await;
        result
    }

    /// Sync step 1, then our step 2 in answer to the server's step 1.
    async fn sync(&mut self) {
        let sv = self.doc.transact().state_vector();
        self.send(notes::encode_step1(&sv))
            .await
            .expect("step 1 accepted");
    }

    /// Applies every frame already received (events and `yjs` frames).
    async fn drain(&mut self) {
        while let Ok(Some(frame)) =
            tokio::time::timeout(Duration::from_millis(30), self.client.next()).await
        {
            self.handle(frame).await;
        }
    }

    async fn handle(&mut self, frame: ServerFrame) {
        match frame {
            ServerFrame::Event(event) => {
                if let Body::YjsUpdate { data } = event.body {
                    self.apply(&data);
                }
            }
            ServerFrame::Yjs(frame) => match notes::decode_message(&frame.data) {
                Ok(notes::Incoming::SyncStep2(update)) => {
                    self.step2_len = update.len();
                    self.apply(&update)
                }
                Ok(notes::Incoming::Update(update)) => self.apply(&update),
                Ok(notes::Incoming::SyncStep1(remote)) => {
                    let diff = self.doc.transact().encode_state_as_update_v1(&remote);
                    let request = Request::Yjs {
                        id: None,
                        room: self.room.clone(),
                        data: notes::encode_step2(&diff),
                        more: None,
                    };
                    let reply = within("step 2", self.client.request::<rmpv::Value>(request)).await;
                    reply.expect("our step 2 accepted");
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn apply(&mut self, update: &[u8]) {
        let update = Update::decode_v1(update).expect("server sends valid updates");
        self.doc
            .transact_mut()
            .apply_update(update)
            .expect("update applies");
    }

    /// Inserts `text` at `index` locally and returns the v1 update.
    fn insert_local(&mut self, index: u32, text: &str) -> Vec<u8> {
        let content = self.doc.get_or_insert_text("content");
        let mut txn = self.doc.transact_mut();
        content.insert(&mut txn, index, text);
        txn.encode_update_v1()
    }

    /// Inserts and sends; the reply is the durable ack.
    async fn insert(&mut self, index: u32, text: &str) -> Result<rmpv::Value, ClientError> {
        let update = self.insert_local(index, text);
        self.send(notes::encode_update(&update)).await
    }

    fn text(&self) -> String {
        let content = self.doc.get_or_insert_text("content");
        content.get_string(&self.doc.transact())
    }

    fn state(&self) -> (Vec<u8>, Vec<u8>) {
        let txn = self.doc.transact();
        (
            txn.state_vector().encode_v1(),
            txn.encode_state_as_update_v1(&StateVector::default()),
        )
    }
}

async fn export(
    client: &mut Client,
    version: Option<u32>,
    format: ExportFormat,
) -> Result<NoteExport, ClientError> {
    within(
        "export",
        client.request(Request::NoteExport {
            id: None,
            room: NOTE.into(),
            version,
            format,
        }),
    )
    .await
}

fn text_of(export: &NoteExport) -> String {
    export.content.as_str().unwrap_or_default().to_owned()
}

fn code<T: std::fmt::Debug>(result: &Result<T, ClientError>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(ClientError::Refused(r)) => r.code.as_str().into(),
        Err(e) => format!("<{e}>"),
    }
}

// ------------------------------------------------------------ converge

#[tokio::test]
async fn concurrent_and_offline_edits_converge_byte_identical() {
    let server = TestServer::start().await;
    // Staff opens the note: pupils join only rooms that exist.
    server.open(&[NOTE]).await;
    let (ana_c, _) = server.connect(&student("ana", "3B")).await;
    let (bob_c, _) = server.connect(&student("bob", "3B")).await;
    let mut ana = Editor::new(ana_c, 1, NOTE);
    let mut bob = Editor::new(bob_c, 2, NOTE);
    ana.join().await;
    bob.join().await;
    ana.sync().await;
    bob.sync().await;

    // Concurrent: both type at the same position before hearing each other.
    let a = ana.insert_local(0, "Les causes de la Révolution. ");
    let b = bob.insert_local(0, "Chapitre 3 : ");
    ana.send(notes::encode_update(&a))
        .await
        .expect("ana's update");
    bob.send(notes::encode_update(&b))
        .await
        .expect("bob's update");
    for _ in 0..3 {
        ana.drain().await;
        bob.drain().await;
    }
    assert_eq!(ana.text(), bob.text());
    assert_eq!(
        ana.state(),
        bob.state(),
        "state vectors and content identical"
    );
    assert!(ana.text().contains("Chapitre 3 : ") && ana.text().contains("Les causes"));

    // Offline: bob's connection drops; both keep writing; bob comes back.
    let bob_doc = bob.doc;
    drop(bob.client);
    for i in 0..5 {
        ana.insert(0, &format!("[ana {i}] "))
            .await
            .expect("ana online");
    }
    let mut bob = Editor {
        client: server.connect(&student("bob", "3B")).await.0,
        doc: bob_doc,
        room: NOTE.into(),
        step2_len: 0,
    };
    for i in 0..5 {
        let len = bob.text().chars().count() as u32;
        bob.insert_local(len, &format!(" [bob hors ligne {i}]"));
    }
    bob.join().await;
    bob.sync().await; // step 1 fetches ana's edits; our step 2 sends bob's
    for _ in 0..3 {
        ana.drain().await;
        bob.drain().await;
    }
    assert_eq!(ana.text(), bob.text());
    assert_eq!(ana.state(), bob.state());
    assert!(ana.text().contains("[bob hors ligne 4]") && bob.text().contains("[ana 4]"));

    // A third, fresh document syncs to the same bytes, and so does the
    // server's own copy (its export).
    let (carl_c, _) = server.connect(&teacher("prof", "3B")).await;
    let mut carl = Editor::new(carl_c, 3, NOTE);
    carl.join().await;
    carl.sync().await;
    assert_eq!(carl.state(), ana.state());
    let server_copy = export(&mut carl.client, None, ExportFormat::Yjs)
        .await
        .expect("export");
    let rmpv::Value::Binary(state) = server_copy.content else {
        panic!("yjs export is bin")
    };
    let fresh = Doc::new();
    fresh
        .transact_mut()
        .apply_update(Update::decode_v1(&state).expect("decodes"))
        .expect("applies");
    assert_eq!(
        fresh.transact().state_vector(),
        ana.doc.transact().state_vector()
    );
}

// ------------------------------------------------------------ validation

#[tokio::test]
async fn a_validated_version_stays_while_the_draft_changes_and_locking_refuses_pupils() {
    let server = TestServer::start().await;
    let (prof_c, _) = server.connect(&teacher("prof", "3B")).await;
    let (ana_c, _) = server.connect(&student("ana", "3B")).await;
    let mut prof = Editor::new(prof_c, 10, NOTE);
    let mut ana = Editor::new(ana_c, 11, NOTE);
    prof.join().await;
    ana.join().await;
    prof.sync().await;
    ana.sync().await;
    ana.insert(0, "La prise de la Bastille : 14 juillet 1789.")
        .await
        .expect("ana writes");
    prof.drain().await;

    let ack: PostOk = within(
        "validate",
        prof.client.moderate(
            NOTE,
            ModAction::Validate {
                label: "Chapitre 3 — validé le 12/03".into(),
                lock: false,
            },
        ),
    )
    .await
    .expect("teacher validates");
    // The draft goes on.
    ana.drain().await;
    let len = ana.text().chars().count() as u32;
    ana.insert(len, " Puis la nuit du 4 août.")
        .await
        .expect("draft goes on");
    let v1 = export(&mut ana.client, Some(1), ExportFormat::Text)
        .await
        .expect("pupils export versions");
    assert_eq!(text_of(&v1), "La prise de la Bastille : 14 juillet 1789.");
    let draft = export(&mut ana.client, None, ExportFormat::Text)
        .await
        .expect("draft");
    assert!(text_of(&draft).ends_with("4 août."));
    let md = export(&mut ana.client, Some(1), ExportFormat::Markdown)
        .await
        .expect("markdown");
    assert!(
        text_of(&md).contains("Chapitre 3 — validé le 12/03")
            && text_of(&md).contains("14 juillet 1789"),
        "{}",
        text_of(&md)
    );
    let versions: NoteVersions = within(
        "versions",
        ana.client.request(Request::NoteVersions {
            id: None,
            room: NOTE.into(),
        }),
    )
    .await
    .expect("versions");
    assert_eq!(versions.versions.len(), 1);
    let v = &versions.versions[0];
    assert_eq!(
        (v.version, v.by.id.as_str(), v.offset),
        (1, "prof", ack.offset)
    );

    // Pupils cannot validate.
    let refused = within(
        "pupil validates",
        ana.client.moderate(
            NOTE,
            ModAction::Validate {
                label: "moi".into(),
                lock: false,
            },
        ),
    )
    .await;
    assert_eq!(code(&refused), "forbidden");

    // Validate and lock: a pupil's update is refused, the note unchanged.
    within(
        "validate and lock",
        prof.client.moderate(
            NOTE,
            ModAction::Validate {
                label: "Version finale".into(),
                lock: true,
            },
        ),
    )
    .await
    .expect("lock");
    ana.drain().await;
    let before = export(&mut ana.client, None, ExportFormat::Text)
        .await
        .expect("draft");
    let refused = ana.insert(0, "GRAFFITI ").await;
    assert_eq!(code(&refused), "read_only");
    // Reconnecting readers still sync: an empty step 2 changes nothing and
    // is acked; awareness is not an edit.
    ana.send(notes::encode_step2(&[0, 0]))
        .await
        .expect("empty step 2 in a locked note");
    let mut clients = std::collections::HashMap::new();
    clients.insert(
        11,
        yrs::sync::awareness::AwarenessUpdateEntry {
            clock: 1,
            json: "{}".into(),
        },
    );
    ana.send(notes::encode_awareness(&notes::AwarenessUpdate { clients }))
        .await
        .expect("awareness in a locked note");
    let after = export(&mut ana.client, None, ExportFormat::Text)
        .await
        .expect("draft");
    assert_eq!(
        text_of(&before),
        text_of(&after),
        "refused update not applied"
    );
    // The teacher still edits, and the pupil still receives.
    prof.drain().await;
    prof.insert(0, "Corrigé : ").await.expect("teacher edits");
    ana.drain().await;
    assert!(ana.text().starts_with("Corrigé : "), "{}", ana.text());
    let v2 = export(&mut ana.client, Some(2), ExportFormat::Text)
        .await
        .expect("v2");
    assert!(!text_of(&v2).contains("Corrigé"), "version 2 unchanged");
    let missing = export(&mut ana.client, Some(9), ExportFormat::Text).await;
    assert_eq!(code(&missing), "unknown_target");
}

// ------------------------------------------------------------ bad input

#[tokio::test]
async fn bad_updates_are_refused_and_the_note_stays_intact() {
    let server = TestServer::start_with(|c| {
        c.note_max_update_bytes = 2_000;
        c.note_max_bytes = 6_000;
    })
    .await;
    server.open(&[NOTE, "3B/chat/r"]).await;
    let (ana_c, _) = server.connect(&student("ana", "3B")).await;
    let mut ana = Editor::new(ana_c, 21, NOTE);
    ana.join().await;
    ana.sync().await;
    ana.insert(0, "Texte initial.").await.expect("first edit");
    let baseline = export(&mut ana.client, None, ExportFormat::Yjs)
        .await
        .expect("export");

    // A real update, corrupted and truncated in many ways.
    let mut other = Editor::new(server.connect(&student("bob", "3B")).await.0, 22, NOTE);
    let update = other.insert_local(0, "Une phrase de plus, avec des accents é à ü.");
    let mut outcomes = std::collections::BTreeMap::new();
    for cut in 1..update.len() {
        let result = ana.send(notes::encode_update(&update[..cut])).await;
        *outcomes.entry(code(&result)).or_insert(0) += 1;
    }
    for (i, flip) in [
        (3usize, 0xffu8),
        (5, 0x80),
        (8, 0x7f),
        (update.len() - 1, 0x55),
    ] {
        let mut bad = update.clone();
        bad[i] ^= flip;
        let result = ana.send(notes::encode_update(&bad)).await;
        *outcomes.entry(code(&result)).or_insert(0) += 1;
    }
    for garbage in [
        vec![],
        vec![0],
        vec![0, 9, 1, 2],
        vec![2, 0],
        vec![0, 2, 200, 1],
    ] {
        let result = ana.send(garbage).await;
        *outcomes.entry(code(&result)).or_insert(0) += 1;
    }
    // Whatever was not refused (a prefix yrs reads as a smaller valid
    // update) must still leave the server's note loadable and consistent.
    assert!(
        outcomes.keys().all(|k| k == "invalid_update" || k == "ok"),
        "{outcomes:?}"
    );
    assert!(
        outcomes.get("invalid_update").copied().unwrap_or(0) > 10,
        "{outcomes:?}"
    );
    let after = export(&mut ana.client, None, ExportFormat::Text)
        .await
        .expect("still exports");
    assert!(text_of(&after).contains("Texte initial."));
    if !outcomes.contains_key("ok") {
        let now = export(&mut ana.client, None, ExportFormat::Yjs)
            .await
            .expect("export");
        assert_eq!(
            now.content, baseline.content,
            "byte-identical after refusals"
        );
    }

    // Size limits: one message may not be larger than the note may be.
    let result = ana.insert(0, &"z".repeat(7_000)).await;
    assert_eq!(code(&result), "update_too_large");
    // Ana's document now holds the refused insert, which the server never
    // saw: her later updates depend on it and are refused (`out_of_sync`;
    // a Yjs document cannot take a change back). The provider starts a
    // fresh document then; so does this test.
    let result = ana.insert(0, "encore").await;
    assert_eq!(code(&result), "out_of_sync");
    let mut ana = Editor::new(server.connect(&student("ana", "3B")).await.0, 23, NOTE);
    ana.join().await;
    ana.sync().await;
    // Larger than `note_max_update_bytes` (2,000) but within the note:
    // accepted, stored as several events.
    ana.insert(0, &"q".repeat(3_000))
        .await
        .expect("cut into events");
    let mut grew = 0;
    let mut last = String::new();
    for _ in 0..10 {
        let result = ana.insert(0, &"y".repeat(1_500)).await;
        last = code(&result);
        if last != "ok" {
            break;
        }
        grew += 1;
    }
    assert_eq!(last, "document_too_large", "after {grew} updates");
    // The connection still works, and the note has what was accepted.
    let text = text_of(
        &export(&mut ana.client, None, ExportFormat::Text)
            .await
            .expect("export"),
    );
    assert_eq!(
        text.matches('y').count(),
        1_500 * grew,
        "{outcomes:?} {text:?}"
    );
    assert_eq!(text.matches('q').count(), 3_000);
    assert!(!text.contains('z'));

    // yjs outside notes rooms, and before joining.
    let mut chat = server.connect(&student("ana", "3B")).await.0;
    within("join chat", chat.join("3B/chat/r", None))
        .await
        .expect("join");
    let result = within(
        "yjs in chat",
        chat.request::<rmpv::Value>(Request::Yjs {
            id: None,
            room: "3B/chat/r".into(),
            data: vec![0, 0, 1, 0],
            more: None,
        }),
    )
    .await;
    assert_eq!(code(&result), "invalid_field");
    let result = within(
        "yjs before join",
        chat.request::<rmpv::Value>(Request::Yjs {
            id: None,
            room: NOTE.into(),
            data: vec![0, 0, 1, 0],
            more: None,
        }),
    )
    .await;
    assert_eq!(code(&result), "not_joined");
}

// ------------------------------------------------------------ awareness

/// The next awareness message `client` receives (other frames skipped).
async fn next_awareness(client: &mut Client, what: &str) -> notes::AwarenessUpdate {
    loop {
        let frame = within(what, client.next()).await.expect("open");
        if let ServerFrame::Yjs(frame) = frame {
            match notes::decode_message(&frame.data) {
                Ok(notes::Incoming::Awareness(update)) => return update,
                other => panic!("{what}: not an awareness message: {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn awareness_is_bound_to_the_authenticated_user() {
    let server = TestServer::start().await;
    server.open(&[NOTE]).await;
    let (ana_c, _) = server.connect(&student("ana", "3B")).await;
    let (bob_c, _) = server.connect(&student("bob", "3B")).await;
    let mut ana = Editor::new(ana_c, 31, NOTE);
    let mut bob = Editor::new(bob_c, 32, NOTE);
    ana.join().await;
    bob.join().await;
    // Ana claims to be the teacher; the server rewrites `user`.
    let awareness = |client: u64, clock: u32, json: &str| {
        let mut clients = std::collections::HashMap::new();
        clients.insert(
            client,
            yrs::sync::awareness::AwarenessUpdateEntry {
                clock,
                json: json.into(),
            },
        );
        notes::encode_awareness(&notes::AwarenessUpdate { clients })
    };
    ana.send(awareness(
        31,
        1,
        r#"{"user":{"id":"prof","name":"Mme Prof","role":"teacher"},"cursor":3}"#,
    ))
    .await
    .expect("awareness accepted");
    let update = next_awareness(&mut bob.client, "awareness").await;
    let state: serde_json::Value =
        serde_json::from_str(&update.clients[&31].json).expect("json state");
    assert_eq!(state["user"]["id"], "ana");
    assert_eq!(state["user"]["role"], "student");
    assert_eq!(state["cursor"], 3);
    // Bob cannot speak for ana's client id: his entry for it is dropped
    // (y-protocols providers echo what they receive), his own is relayed.
    bob.send(awareness(31, 2, r#"{"cursor":9}"#))
        .await
        .expect("echo accepted");
    bob.send(awareness(32, 1, r#"{"cursor":1}"#))
        .await
        .expect("own state");
    let update = next_awareness(&mut ana.client, "bob's awareness").await;
    assert!(
        update.clients.contains_key(&32) && !update.clients.contains_key(&31),
        "only bob's own state is relayed: {update:?}"
    );
    // A fifth client id on one connection is refused.
    for id in 33..36 {
        bob.send(awareness(id, 1, "{}")).await.expect("up to 4 ids");
    }
    let result = bob.send(awareness(36, 1, "{}")).await;
    assert_eq!(code(&result), "forbidden");
    // Ana's second connection (a reconnect before the first one timed
    // out) takes her client id over: relayed, with her name.
    let mut ana2 = Editor::new(server.connect(&student("ana", "3B")).await.0, 31, NOTE);
    ana2.join().await;
    ana2.send(awareness(31, 5, r#"{"cursor":4}"#))
        .await
        .expect("takeover");
    let update = next_awareness(&mut bob.client, "takeover relayed").await;
    let state: serde_json::Value =
        serde_json::from_str(&update.clients[&31].json).expect("json state");
    assert_eq!(
        (state["user"]["id"].clone(), state["cursor"].clone()),
        ("ana".into(), 4.into())
    );
    within("leave", ana2.client.leave(NOTE))
        .await
        .expect("leave");
    // When ana leaves, her state is removed for bob.
    within("leave", ana.client.leave(NOTE))
        .await
        .expect("leave");
    let update = next_awareness(&mut bob.client, "removal").await;
    assert_eq!(&*update.clients[&31].json, "null");
    // Parents never see notes.
    let mut parent = server
        .connect(&token("par", preau::protocol::Role::Parent, &["3B"]))
        .await
        .0;
    let result = within("parent joins", parent.join(NOTE, None)).await;
    assert_eq!(code(&result), "forbidden");
}

// ------------------------------------------------- compaction and restart

#[tokio::test]
async fn compaction_folds_updates_and_a_sigkill_loses_no_acknowledged_update() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let server = Proc::serve(dir.path(), port, &["--note-compact-every", "20"]).await;
    open_rooms(&server.url(), &[NOTE]).await;
    let (client, _) = Client::connect(&server.url(), &student("ana", "3B"))
        .await
        .expect("connect");
    let mut ana = Editor::new(client, 41, NOTE);
    ana.join().await;
    ana.sync().await;
    for i in 0..55 {
        let len = ana.text().chars().count() as u32;
        ana.insert(len, &format!("mot{i} "))
            .await
            .unwrap_or_else(|e| panic!("update {i}: {e:?}"));
    }
    let want = ana.text();
    // Every update above was acknowledged: durable. No graceful stop.
    server.kill9().await;
    let server = Proc::serve(dir.path(), port, &["--note-compact-every", "20"]).await;
    let (client, _) = Client::connect(&server.url(), &teacher("prof", "3B"))
        .await
        .expect("reconnect");
    let mut prof = Editor::new(client, 42, NOTE);
    prof.join().await;
    prof.sync().await;
    assert_eq!(prof.text(), want);
    // Compaction ran (every 20 updates): the oldest events are gone.
    let joined = within("history", prof.client.history(NOTE, None, None, Some(1)))
        .await
        .expect("history");
    assert!(joined.first > 20, "first retained offset {}", joined.first);
    // The loaded note is counted in /metrics.
    assert_eq!(metric(server.addr, "preau_notes_loaded").await, 1.0);
    server.terminate().await;
}

// ------------------------------------------------------------ two nodes

#[tokio::test]
async fn editors_on_two_nodes_converge_and_both_nodes_store_the_same_note() {
    let redis = support::redis::RedisServer::start().await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let url = redis.url();
    let node_a = cluster_node(&url, dir_a.path()).await;
    let node_b = cluster_node(&url, dir_b.path()).await;
    // Staff opens the note on A; Redis makes it known to B.
    open_rooms(&node_a.url(), &[NOTE]).await;
    let connect = |url: String, token: String| async move {
        Client::connect(&url, &token).await.expect("connect").0
    };
    let mut ana = Editor::new(connect(node_a.url(), student("ana", "3B")).await, 51, NOTE);
    let mut bob = Editor::new(connect(node_b.url(), student("bob", "3B")).await, 52, NOTE);
    ana.join().await;
    bob.join().await;
    ana.sync().await;
    bob.sync().await;
    for i in 0..10 {
        let a = ana.insert_local(0, &format!("a{i} "));
        let b = bob.insert_local(0, &format!("b{i} "));
        ana.send(notes::encode_update(&a)).await.expect("a");
        bob.send(notes::encode_update(&b)).await.expect("b");
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while ana.state() != bob.state() && tokio::time::Instant::now() < deadline {
        ana.drain().await;
        bob.drain().await;
    }
    assert_eq!(ana.state(), bob.state(), "editors converge across nodes");
    assert_eq!(ana.text().matches('a').count(), 10);
    // Each node's own copy is the same document.
    let mut exports = Vec::new();
    for url in [node_a.url(), node_b.url()] {
        let mut reader = connect(url, teacher("prof", "3B")).await;
        exports.push(
            export(&mut reader, None, ExportFormat::Text)
                .await
                .expect("export")
                .content,
        );
    }
    assert_eq!(exports[0], exports[1]);
    assert_eq!(exports[0].as_str(), Some(ana.text().as_str()));
}

// ------------------------------------------------------------ the matrix

/// Who may do what in a note, cell by cell (the spec's "Kind `notes`").
#[tokio::test]
async fn authorization_matrix_for_notes() {
    const COLS: [&str; 8] = [
        "join",
        "step 1",
        "update",
        "awareness",
        "versions",
        "export",
        "validate",
        "lock",
    ];
    const F: &str = "forbidden";
    const NJ: &str = "not_joined";
    const MEMBER: [&str; 8] = ["ok", "ok", "ok", "ok", "ok", "ok", F, F];
    const MODERATOR: [&str; 8] = ["ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok"];
    const OUTSIDER: [&str; 8] = [F, NJ, NJ, NJ, F, F, F, F];
    let parent = {
        let mut c = claims("par3b", preau::protocol::Role::Parent, &["3B"]);
        c.children = vec!["ana".into()];
        keyring().mint(&c).expect("mint")
    };
    let rows: Vec<(&str, String, [&str; 8])> = vec![
        ("student-3B", student("stu3b", "3B"), MEMBER),
        ("student-4A", student("stu4a", "4A"), OUTSIDER),
        ("teacher-3B", teacher("tea3b", "3B"), MODERATOR),
        ("teacher-4A", teacher("tea4a", "4A"), OUTSIDER),
        ("parent-3B", parent, OUTSIDER),
        (
            "staff",
            token("staff1", preau::protocol::Role::Staff, &[]),
            MODERATOR,
        ),
    ];
    let mut wrong = Vec::new();
    for (label, token, want) in rows {
        let server = TestServer::start().await;
        let (mut prof, _) = server.connect(&teacher("prof", "3B")).await;
        within("prof joins", prof.join(NOTE, None))
            .await
            .expect("join");
        let (client, _) = server.connect(&token).await;
        let mut actor = Editor::new(client, 7, NOTE);
        let mut got = vec![code(&within("join", actor.client.join(NOTE, None)).await)];
        let sv = actor.doc.transact().state_vector();
        got.push(code(&actor.send(notes::encode_step1(&sv)).await));
        got.push(code(&actor.insert(0, "x").await));
        let mut clients = std::collections::HashMap::new();
        clients.insert(
            7,
            yrs::sync::awareness::AwarenessUpdateEntry {
                clock: 1,
                json: "{}".into(),
            },
        );
        let awareness = notes::encode_awareness(&notes::AwarenessUpdate { clients });
        got.push(code(&actor.send(awareness).await));
        got.push(code(
            &within(
                "versions",
                actor.client.request::<NoteVersions>(Request::NoteVersions {
                    id: None,
                    room: NOTE.into(),
                }),
            )
            .await,
        ));
        got.push(code(
            &export(&mut actor.client, None, ExportFormat::Text).await,
        ));
        got.push(code(
            &within(
                "validate",
                actor.client.moderate(
                    NOTE,
                    ModAction::Validate {
                        label: "v".into(),
                        lock: false,
                    },
                ),
            )
            .await,
        ));
        got.push(code(
            &within(
                "lock",
                actor.client.moderate(
                    NOTE,
                    ModAction::ReadOnly {
                        on: true,
                        thread: None,
                    },
                ),
            )
            .await,
        ));
        for ((col, got), want) in COLS.iter().zip(&got).zip(want) {
            if got != want {
                wrong.push(format!("{label}/{col}: got {got}, want {want}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

// ------------------------------------------------------------ integrity
//
// Found by an outside review with stock JS clients: updates that do not
// integrate completely into the note (pending structs, deletions beyond
// what the note holds) were acked, stored, relayed, and kept pending by
// the server and every peer.

/// lib0 varuint.
fn var(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A delete-only v1 update: no blocks, one range per client.
fn delete_only(ranges: &[(u64, u64, u64)]) -> Vec<u8> {
    let mut out = vec![0];
    var(&mut out, ranges.len() as u64);
    for &(client, clock, len) in ranges {
        var(&mut out, client);
        var(&mut out, 1);
        var(&mut out, clock);
        var(&mut out, len);
    }
    out
}

/// One-character string items `(client, char, origin)` at clock 0, one
/// client each, and an empty delete set.
fn items_with_origins(items: &[(u64, u8, (u64, u64))]) -> Vec<u8> {
    let mut out = Vec::new();
    var(&mut out, items.len() as u64);
    for &(client, ch, (oc, ok)) in items {
        var(&mut out, 1);
        var(&mut out, client);
        var(&mut out, 0);
        out.push(0x84); // has an origin; string content
        var(&mut out, oc);
        var(&mut out, ok);
        out.extend([1, ch]);
    }
    out.push(0);
    out
}

/// A teacher joins first (only a class's teacher creates a room), and
/// syncs; `id` is their Yjs client id.
async fn teacher_editor(server: &TestServer, id: u64) -> Editor {
    let mut prof = Editor::new(server.connect(&teacher("prof", "3B")).await.0, id, NOTE);
    prof.join().await;
    prof.sync().await;
    prof
}

async fn pupil_editor(server: &TestServer, user: &str, id: u64) -> Editor {
    let mut editor = Editor::new(server.connect(&student(user, "3B")).await.0, id, NOTE);
    editor.join().await;
    editor.sync().await;
    editor
}

fn missing_updates(editor: &Editor) -> bool {
    editor.doc.transact().has_missing_updates()
}

async fn draft_text(client: &mut Client) -> String {
    text_of(
        &export(client, None, ExportFormat::Text)
            .await
            .expect("export"),
    )
}

#[tokio::test]
async fn delete_sets_beyond_the_note_are_refused_and_joiners_still_sync() {
    let server = TestServer::start().await;
    let mut prof = teacher_editor(&server, 100).await;
    prof.insert(0, "Bonjour à tous.")
        .await
        .expect("prof writes");
    let mut mallory = pupil_editor(&server, "mallory", 101).await;
    // Two ~45 KB delete-only updates, each over 4,000 client ids nobody
    // has, from clock 0 to 2^32-1: nothing the note holds.
    for batch in 0..2u64 {
        let ranges: Vec<_> = (0..4_000u64)
            .map(|i| (1_000_000 + batch * 4_000 + i, 0, u64::from(u32::MAX)))
            .collect();
        let update = delete_only(&ranges);
        assert!(update.len() > 40_000, "{}", update.len());
        let result = mallory.send(notes::encode_update(&update)).await;
        assert_eq!(code(&result), "out_of_sync", "batch {batch}");
    }
    // A fresh joiner gets a small step 2, holds nothing pending, and its
    // own step 2 in answer is accepted (it was closed with 1009 before).
    let mut ana = pupil_editor(&server, "ana", 102).await;
    assert!(ana.step2_len < 200, "step 2 of {} bytes", ana.step2_len);
    assert!(!missing_updates(&ana));
    assert_eq!(ana.text(), "Bonjour à tous.");
    ana.insert(0, "Oui. ").await.expect("ana still edits");
    prof.drain().await;
    assert_eq!(prof.text(), "Oui. Bonjour à tous.");
    assert!(!missing_updates(&prof));
}

#[tokio::test]
async fn a_delete_of_a_classmates_future_typing_is_refused() {
    let server = TestServer::start().await;
    let mut prof = teacher_editor(&server, 110).await;
    let mut victim = pupil_editor(&server, "ana", 111).await;
    let mut bob = pupil_editor(&server, "bob", 112).await;
    victim
        .insert(0, "Il était une fois")
        .await
        .expect("victim writes");
    let next_clock = victim.doc.transact().state_vector().get(&111);
    assert_eq!(next_clock, 17);
    // 14 bytes: delete the victim's next 10^9 clocks.
    let hostile = delete_only(&[(111, u64::from(next_clock), 1_000_000_000)]);
    assert!(hostile.len() <= 14, "{}", hostile.len());
    let result = bob.send(notes::encode_update(&hostile)).await;
    assert_eq!(code(&result), "out_of_sync");
    // What the victim types afterwards survives everywhere.
    let end = victim.text().len() as u32; // byte offsets in these yrs docs
    victim
        .insert(end, " un roi.")
        .await
        .expect("victim writes on");
    prof.drain().await;
    bob.drain().await;
    victim.drain().await;
    let want = "Il était une fois un roi.";
    assert_eq!(victim.text(), want);
    assert_eq!(bob.text(), want);
    assert_eq!(prof.text(), want);
    let fresh = pupil_editor(&server, "carl", 113).await;
    assert_eq!(fresh.text(), want);
    assert_eq!(draft_text(&mut prof.client).await, want);
}

#[tokio::test]
async fn an_update_that_depends_on_a_refused_one_is_refused_everywhere() {
    let server = TestServer::start().await;
    let mut prof = teacher_editor(&server, 120).await;
    let mut ana = pupil_editor(&server, "ana", 121).await;
    let mut bob = pupil_editor(&server, "bob", 122).await;
    ana.insert(0, "Début.").await.expect("ana writes");
    within(
        "lock",
        prof.client.moderate(
            NOTE,
            ModAction::ReadOnly {
                on: true,
                thread: None,
            },
        ),
    )
    .await
    .expect("lock");
    let refused = ana.insert(6, " VANDALE").await;
    assert_eq!(code(&refused), "read_only");
    within(
        "unlock",
        prof.client.moderate(
            NOTE,
            ModAction::ReadOnly {
                on: false,
                thread: None,
            },
        ),
    )
    .await
    .expect("unlock");
    // Ana's document holds the refused insert: her next update depends
    // on it, and the server cannot apply it. Refused, not acked.
    let dependent = ana.insert(14, " SUITE").await;
    assert_eq!(code(&dependent), "out_of_sync");
    prof.drain().await;
    bob.drain().await;
    assert_eq!(bob.text(), "Début.");
    assert_eq!(prof.text(), "Début.");
    assert!(!missing_updates(&bob) && !missing_updates(&prof));
    let fresh = pupil_editor(&server, "carl", 123).await;
    assert_eq!(fresh.text(), "Début.");
    assert!(!missing_updates(&fresh));
    assert_eq!(draft_text(&mut prof.client).await, "Début.");
    // Nothing was stored for either: the note's history is ana's first
    // update and the two moderation events.
    let page = within("history", prof.client.history(NOTE, None, None, Some(50)))
        .await
        .expect("history");
    let updates = page
        .events
        .iter()
        .filter(|e| matches!(e.body, Body::YjsUpdate { .. }))
        .count();
    assert_eq!(updates, 1, "{:?}", page.events);
}

#[tokio::test]
async fn after_a_rate_limited_update_the_next_one_is_out_of_sync() {
    let server = TestServer::start_with(|c| {
        // The join and two updates; then the bucket is empty for good.
        c.request_burst = 3;
        c.request_rate_per_sec = 0.001;
    })
    .await;
    let mut prof = teacher_editor(&server, 130).await;
    let mut ana = pupil_editor(&server, "ana", 131).await;
    ana.insert(0, "Un.").await.expect("first");
    ana.insert(3, " Deux.").await.expect("second");
    let limited = ana.insert(9, " Trois.").await;
    assert_eq!(code(&limited), "rate_limited");
    let dependent = ana.insert(16, " Quatre.").await;
    assert_eq!(code(&dependent), "out_of_sync");
    prof.drain().await;
    assert_eq!(prof.text(), "Un. Deux.");
    assert!(!missing_updates(&prof));
    assert_eq!(draft_text(&mut prof.client).await, "Un. Deux.");
}

#[tokio::test]
async fn dangling_and_cyclic_updates_are_refused() {
    let server = TestServer::start().await;
    let mut prof = teacher_editor(&server, 140).await;
    prof.insert(0, "Texte.").await.expect("prof writes");
    let mut mallory = pupil_editor(&server, "mallory", 141).await;
    // "x" right after an item of client 888, which never sent anything.
    let dangling = items_with_origins(&[(777, b'x', (888, 5))]);
    let result = mallory.send(notes::encode_update(&dangling)).await;
    assert_eq!(code(&result), "out_of_sync");
    // Two clients each after the other's item: neither can come first.
    let cycle = items_with_origins(&[(700, b'a', (701, 0)), (701, b'b', (700, 0))]);
    let result = mallory.send(notes::encode_update(&cycle)).await;
    assert_eq!(code(&result), "out_of_sync");
    // The same shapes with their dependencies present are fine.
    let fine = items_with_origins(&[(700, b'a', (140, 0)), (701, b'b', (700, 0))]);
    mallory
        .send(notes::encode_update(&fine))
        .await
        .expect("dependencies present");
    prof.drain().await;
    assert!(!missing_updates(&prof));
    let fresh = pupil_editor(&server, "carl", 142).await;
    assert!(!missing_updates(&fresh));
    assert_eq!(fresh.text(), prof.text());
    assert_eq!(fresh.text().len(), "Texte.".len() + 2);
}

/// A `yjs` request frame built by hand, so that `more` is on the wire
/// whatever the Rust request type holds.
fn yjs_part(id: u32, room: &str, data: &[u8], more: bool) -> Vec<u8> {
    use rmpv::Value;
    let mut entries = vec![
        (Value::from("type"), Value::from("yjs")),
        (Value::from("id"), Value::from(id)),
        (Value::from("room"), Value::from(room)),
        (Value::from("data"), Value::Binary(data.to_vec())),
    ];
    if more {
        entries.push((Value::from("more"), Value::from(true)));
    }
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &Value::Map(entries)).expect("encode");
    out
}

/// Sends `message` in parts of at most `part` bytes; returns the replies
/// (by id order) and the other frames received meanwhile.
async fn send_in_parts(
    client: &mut Client,
    message: &[u8],
    part: usize,
) -> (Vec<ServerFrame>, Vec<ServerFrame>) {
    let chunks: Vec<&[u8]> = message.chunks(part).collect();
    let first_id = 1_000_000u32;
    for (i, chunk) in chunks.iter().enumerate() {
        let more = i + 1 < chunks.len();
        client
            .send_raw(yjs_part(first_id + i as u32, NOTE, chunk, more))
            .expect("send");
    }
    let mut replies = Vec::new();
    let mut others = Vec::new();
    while replies.len() < chunks.len() {
        match next(client).await {
            frame @ (ServerFrame::Ok { id: Some(_), .. } | ServerFrame::Error(_)) => {
                replies.push(frame)
            }
            other => others.push(other),
        }
    }
    (replies, others)
}

#[tokio::test]
async fn offline_work_larger_than_one_frame_syncs_in_parts() {
    let server = TestServer::start().await;
    let mut prof = teacher_editor(&server, 150).await;
    prof.insert(0, "Plan du chapitre.\n")
        .await
        .expect("prof writes");
    let mut ana = pupil_editor(&server, "ana", 151).await;
    // Offline: many small edits at scattered places, and one long paste
    // (a single Yjs item of 120 KB).
    for i in 0..1_500u32 {
        let len = ana.text().len() as u32;
        ana.insert_local((i * 7_919) % (len + 1), &format!("phrase {i}. "));
    }
    let paste = "Lorem ipsum dolor sit amet. ".repeat(4_500);
    ana.insert_local(0, &paste);
    let server_sv = prof.doc.transact().state_vector();
    let step2 = ana.doc.transact().encode_state_as_update_v1(&server_sv);
    let message = notes::encode_step2(&step2);
    assert!(message.len() > 150_000, "{}", message.len());
    let (replies, _) = send_in_parts(&mut ana.client, &message, 60_000).await;
    let (last, parts) = replies.split_last().expect("replies");
    for reply in parts {
        assert!(
            matches!(
                reply,
                ServerFrame::Ok {
                    data: rmpv::Value::Nil,
                    ..
                }
            ),
            "{reply:?}"
        );
    }
    let ServerFrame::Ok { data, .. } = last else {
        panic!("last part refused: {last:?}")
    };
    assert!(data.as_map().is_some(), "a PostOk: {data:?}");
    // The server stored it as events no larger than note_max_update_bytes.
    let mut largest = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while prof.text() != ana.text() && tokio::time::Instant::now() < deadline {
        let frame = within("events", prof.client.next()).await.expect("open");
        if let ServerFrame::Event(event) = &frame {
            if let Body::YjsUpdate { data } = &event.body {
                largest = largest.max(data.len());
            }
        }
        prof.handle(frame).await;
    }
    assert_eq!(prof.text(), ana.text());
    assert!(largest > 0 && largest <= 61_440, "{largest}");
    assert!(!missing_updates(&prof));
    let fresh = pupil_editor(&server, "carl", 152).await;
    assert_eq!(fresh.text(), ana.text());
    assert_eq!(draft_text(&mut prof.client).await, ana.text());
}

#[tokio::test]
async fn parts_are_bounded_per_connection() {
    let server = TestServer::start_with(|c| {
        c.note_max_update_bytes = 2_000;
        c.note_max_bytes = 20_000;
    })
    .await;
    let _prof = teacher_editor(&server, 160).await;
    let mut ana = pupil_editor(&server, "ana", 161).await;
    let big = ana.insert_local(0, &"x".repeat(30_000));
    let message = notes::encode_update(&big);
    let (replies, _) = send_in_parts(&mut ana.client, &message, 8_000).await;
    let refused: Vec<_> = replies
        .iter()
        .filter_map(|r| match r {
            ServerFrame::Error(e) => Some(e.code.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(refused.first(), Some(&"update_too_large"), "{replies:?}");
}

#[tokio::test]
async fn a_note_larger_than_an_outbound_budget_can_be_joined() {
    let server = TestServer::start().await;
    let mut prof = teacher_editor(&server, 190).await;
    // Three pupils' offline work of 450 KB each: a 1.35 MB note (the
    // outbound budget is 1 MiB).
    for i in 0..3u64 {
        let mut w = pupil_editor(&server, &format!("w{i}"), 200 + i).await;
        let sv = w.doc.transact().state_vector();
        w.insert_local(0, &"Lorem ipsum dolor sit amet. ".repeat(16_000));
        let step2 = w.doc.transact().encode_state_as_update_v1(&sv);
        let (replies, _) = send_in_parts(&mut w.client, &notes::encode_step2(&step2), 60_000).await;
        assert!(
            matches!(replies.last(), Some(ServerFrame::Ok { .. })),
            "{:?}",
            replies.last()
        );
    }
    prof.drain().await;
    let size = prof
        .doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default())
        .len();
    assert!(size > 1 << 20, "{size}");
    // A fresh joiner gets all of it (it was closed with 4004 before).
    let fresh = pupil_editor(&server, "carl", 210).await;
    assert!(fresh.step2_len > 1 << 20, "{}", fresh.step2_len);
    assert_eq!(fresh.text(), prof.text());
}

#[tokio::test]
async fn awareness_keeps_the_clients_user_fields_but_not_its_identity() {
    let server = TestServer::start().await;
    let _prof = teacher_editor(&server, 170).await;
    let mut ana = Editor::new(server.connect(&student("ana", "3B")).await.0, 171, NOTE);
    let mut bob = Editor::new(server.connect(&student("bob", "3B")).await.0, 172, NOTE);
    ana.join().await;
    bob.join().await;
    let mut clients = std::collections::HashMap::new();
    clients.insert(
        171,
        yrs::sync::awareness::AwarenessUpdateEntry {
            clock: 1,
            json: r##"{"user":{"id":"prof","name":"Mme Prof","role":"teacher","color":"#30bced","colorLight":"#30bced33"},"cursor":2}"##.into(),
        },
    );
    ana.send(notes::encode_awareness(&notes::AwarenessUpdate { clients }))
        .await
        .expect("awareness");
    let update = next_awareness(&mut bob.client, "awareness").await;
    let state: serde_json::Value =
        serde_json::from_str(&update.clients[&171].json).expect("json state");
    let user = &state["user"];
    assert_eq!(
        (&user["id"], &user["name"], &user["role"]),
        (
            &serde_json::json!("ana"),
            &serde_json::json!("Name of ana"),
            &serde_json::json!("student")
        )
    );
    assert_eq!(user["color"], "#30bced");
    assert_eq!(user["colorLight"], "#30bced33");
}

#[tokio::test]
async fn the_drafts_markdown_does_not_claim_a_validation() {
    let server = TestServer::start().await;
    let mut prof = teacher_editor(&server, 180).await;
    prof.insert(0, "# Chapitre 3").await.expect("write");
    let md = text_of(
        &export(&mut prof.client, None, ExportFormat::Markdown)
            .await
            .expect("draft markdown"),
    );
    assert!(!md.contains("Validated"), "{md}");
    assert!(md.starts_with("# Brouillon\n"), "{md}");
    assert!(md.ends_with("# Chapitre 3"), "{md}");
}
