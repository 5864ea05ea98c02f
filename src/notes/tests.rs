//! Unit tests of the notes module. Expected bytes were worked out by hand
//! from the y-protocols / lib0 formats and confirmed against JS `yjs`
//! 13 + `y-protocols` 1 output.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::{Arc, Once};

use serde_json::{json, Value};
use yrs::types::text::Text;
use yrs::updates::decoder::Decode;
use yrs::{
    Any, Array, Doc, GetString, Map, MapPrelim, OffsetKind, Options, ReadTxn, StateVector,
    Transact, Update,
};

use super::doc::utc_date;
use super::*;

// ---------------------------------------------------------------- helpers

/// A client document configured like a JS `Y.Doc` (UTF-16 offsets).
fn client(id: u64) -> Doc {
    Doc::with_options(Options {
        client_id: id,
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    })
}

/// Inserts into the client's "content" text and returns the update event.
fn insert(doc: &Doc, index: u32, chunk: &str) -> Vec<u8> {
    let text = doc.get_or_insert_text("content");
    let mut txn = doc.transact_mut();
    text.insert(&mut txn, index, chunk);
    txn.encode_update_v1()
}

fn remove(doc: &Doc, index: u32, len: u32) -> Vec<u8> {
    let text = doc.get_or_insert_text("content");
    let mut txn = doc.transact_mut();
    text.remove_range(&mut txn, index, len);
    txn.encode_update_v1()
}

fn text_of(doc: &Doc) -> String {
    let text = doc.get_or_insert_text("content");
    let txn = doc.transact();
    text.get_string(&txn)
}

fn sv_of(doc: &Doc) -> StateVector {
    doc.transact().state_vector()
}

fn apply_to(doc: &Doc, update: &[u8]) {
    let update = Update::decode_v1(update).expect("decodable");
    doc.transact_mut().apply_update(update).expect("applies");
}

/// What the server does with a client's update or step 2: vet, apply,
/// report whether it must be stored and broadcast.
fn server_accepts(server: &mut NoteDoc, update: &[u8]) -> bool {
    server
        .check(update, &Limits::default())
        .expect("update accepted");
    server.apply(update).expect("update applied")
}

/// The sync handshake through the wire format, as the server runs it:
/// client step 1 -> server step 2 + server step 1 -> client step 2.
/// Returns the client's step 2 payload and whether it changed the server.
fn handshake(server: &mut NoteDoc, doc: &Doc) -> (Vec<u8>, bool) {
    let step1 = encode_step1(&sv_of(doc));
    let Incoming::SyncStep1(remote) = decode_message(&step1).expect("step 1") else {
        panic!("not a step 1")
    };
    let reply = encode_step2(&server.diff(&remote).expect("diff"));
    let Incoming::SyncStep2(missing) = decode_message(&reply).expect("step 2") else {
        panic!("not a step 2")
    };
    apply_to(doc, &missing);
    let server_step1 = encode_step1(&server.state_vector());
    let Incoming::SyncStep1(server_sv) = decode_message(&server_step1).expect("step 1") else {
        panic!("not a step 1")
    };
    let answer = doc.transact().encode_state_as_update_v1(&server_sv);
    let Incoming::SyncStep2(answer) = decode_message(&encode_step2(&answer)).expect("step 2")
    else {
        panic!("not a step 2")
    };
    let noop = server.is_noop(&answer).expect("decodable");
    let changed = server_accepts(server, &answer);
    assert_eq!(noop, !changed, "is_noop must predict apply");
    (answer, changed)
}

/// A document using most content kinds: text with formatting and a
/// deleted emoji, a map with plain values and a nested map, an array.
fn rich_client(id: u64) -> Doc {
    let doc = client(id);
    let text = doc.get_or_insert_text("content");
    let meta = doc.get_or_insert_map("meta");
    let list = doc.get_or_insert_array("list");
    {
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "# Titre\n\nHello wörld 😀 préau");
        let bold: yrs::types::Attrs = HashMap::from([(Arc::from("bold"), Any::Bool(true))]);
        text.format(&mut txn, 2, 5, bold);
        meta.insert(&mut txn, "title", "Notes");
        meta.insert(&mut txn, "n", 42.5);
        meta.insert(
            &mut txn,
            "nested",
            // One key: several would come out in hash-map order, and the
            // fuzz inputs below should be the same on every run.
            MapPrelim::from_iter([("a", Any::from(1))]),
        );
        list.push_back(&mut txn, 1);
        list.push_back(&mut txn, "two");
        list.push_back(&mut txn, Any::from(vec![Any::Null, Any::Bool(false)]));
    }
    {
        let mut txn = doc.transact_mut();
        text.remove_range(&mut txn, 21, 2); // the emoji (2 UTF-16 units)
        list.remove(&mut txn, 0);
        meta.insert(&mut txn, "title", "Notes 2");
    }
    doc
}

/// Records panics of the current thread instead of printing them, so the
/// fuzz loops can count what yrs panicked on; other threads' panics go to
/// the previous hook untouched.
fn count_panics<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
    thread_local! {
        static ACTIVE: Cell<bool> = const { Cell::new(false) };
        static SEEN: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if ACTIVE.with(Cell::get) {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                SEEN.with(|seen| seen.borrow_mut().push(at));
            } else {
                previous(info);
            }
        }));
    });
    ACTIVE.with(|a| a.set(true));
    let result = f();
    ACTIVE.with(|a| a.set(false));
    (
        result,
        SEEN.with(|seen| std::mem::take(&mut *seen.borrow_mut())),
    )
}

// ------------------------------------------------------------- wire bytes

#[test]
fn step1_of_an_empty_doc_matches_js() {
    // 0 sync, 0 step 1, varbytes([0]) (a state vector with no client)
    assert_eq!(encode_step1(&NoteDoc::new().state_vector()), [0, 0, 1, 0]);
    assert_eq!(
        decode_message(&[0, 0, 1, 0]),
        Ok(Incoming::SyncStep1(StateVector::default()))
    );
}

/// `doc.clientID = 1; doc.getText("content").insert(0, "a")` in JS.
const JS_UPDATE_A: [u8; 17] = [
    1, // one client
    1, // one block
    1, // client 1
    0, // from clock 0
    4, // info: string content, no origins -> parent written
    1, // parent is a root named
    7, b'c', b'o', b'n', b't', b'e', b'n', b't', // "content"
    1, b'a', // the string "a"
    0,    // empty delete set
];

#[test]
fn small_update_matches_js() {
    let doc = client(1);
    let update = insert(&doc, 0, "a");
    assert_eq!(update, JS_UPDATE_A);
    let mut message = vec![0, 2, 17];
    message.extend_from_slice(&JS_UPDATE_A);
    assert_eq!(encode_update(&update), message);
    assert_eq!(
        decode_message(&message),
        Ok(Incoming::Update(JS_UPDATE_A.to_vec()))
    );

    let mut server = NoteDoc::new();
    assert!(server_accepts(&mut server, &update));
    assert_eq!(server.text(), "a");
    // JS: writeSyncStep1 of that doc, and writeSyncStep2 for an empty peer.
    assert_eq!(encode_step1(&server.state_vector()), [0, 0, 3, 1, 1, 1]);
    let mut step2 = vec![0, 1, 17];
    step2.extend_from_slice(&JS_UPDATE_A);
    let diff = server.diff(&StateVector::default()).expect("diff");
    assert_eq!(encode_step2(&diff), step2);
    // An empty doc answering a step 1: the empty update [0, 0].
    let empty = NoteDoc::new().diff(&server.state_vector()).expect("diff");
    assert_eq!(encode_step2(&empty), [0, 1, 2, 0, 0]);
}

#[test]
fn awareness_bytes_match_js() {
    // JS: awareness of client 1 with state {user: {name: "x"}}, clock 1.
    let js: &[u8] = &[
        1, 25, 1, 1, 1, 21, 123, 34, 117, 115, 101, 114, 34, 58, 123, 34, 110, 97, 109, 101, 34,
        58, 34, 120, 34, 125, 125,
    ];
    let Ok(Incoming::Awareness(update)) = decode_message(js) else {
        panic!("not awareness")
    };
    assert_eq!(update.clients.len(), 1);
    assert_eq!(update.clients[&1].clock, 1);
    assert_eq!(&*update.clients[&1].json, r#"{"user":{"name":"x"}}"#);
    assert_eq!(encode_awareness(&update), js);
    // JS: the same client removed (removeAwarenessStates): clock 2, "null".
    let removed: &[u8] = &[1, 8, 1, 1, 2, 4, b'n', b'u', b'l', b'l'];
    let Ok(Incoming::Awareness(update)) = decode_message(removed) else {
        panic!("not awareness")
    };
    assert_eq!(update.clients[&1].clock, 2);
    assert_eq!(&*update.clients[&1].json, "null");
    assert_eq!(encode_awareness(&update), removed);
    assert_eq!(decode_message(&[3]), Ok(Incoming::QueryAwareness));
}

#[test]
fn a_js_state_with_a_deleted_emoji_loads() {
    // JS: clientID 7, insert(0, "h😀é"), delete(1, 2); Y.encodeStateAsUpdate.
    let js: &[u8] = &[
        1, 3, 7, 0, 4, 1, 7, 99, 111, 110, 116, 101, 110, 116, 1, 104, 129, 7, 0, 2, 132, 7, 2, 2,
        195, 169, 1, 7, 1, 1, 2,
    ];
    let mut doc = NoteDoc::load(Some(js), Vec::<Vec<u8>>::new()).expect("loads");
    assert_eq!(doc.text(), "hé");
    let again = NoteDoc::load(Some(&doc.snapshot().expect("snapshot")), [js]).expect("loads");
    assert_eq!(again.text(), "hé");
    assert_eq!(again.state_vector(), doc.state_vector());
}

#[test]
fn unsupported_or_malformed_messages_are_refused() {
    let refused: &[&[u8]] = &[
        &[],
        &[2, 0, 1, b'x'],          // auth: permission denied "x"
        &[2, 1],                   // auth: granted
        &[4, 1, 0],                // custom type 4
        &[0, 3, 1, 0],             // unknown sync message
        &[0, 0, 1, 0, 0],          // trailing byte
        &[0, 0, 2, 0],             // truncated payload
        &[0, 0, 1, 1],             // state vector announcing a client, none follows
        &[0, 1],                   // step 2 without payload
        &[1, 2, 1, 1],             // awareness: one entry, truncated
        &[1, 5, 1, 1, 1, 1, 0xff], // awareness: state is not UTF-8
        &[3, 0],                   // query awareness with a trailing byte
        &[
            0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
        ], // endless varint
    ];
    for data in refused {
        assert_eq!(
            decode_message(data),
            Err(NoteError::InvalidMessage),
            "{data:?}"
        );
    }
}

/// Payloads with which yrs 0.25 alone aborts the process (allocation
/// failure, not a panic: see the module comment) are refused cheaply.
#[test]
fn allocation_bombs_are_refused() {
    // Sync step 1 whose state vector announces 2^32-1 clients (yrs: ~146 GB).
    let sv_bomb = [0, 0, 6, 0xff, 0xff, 0xff, 0xff, 0x0f, 0];
    assert_eq!(decode_message(&sv_bomb), Err(NoteError::InvalidMessage));
    // Awareness update announcing 2^40 entries (yrs: a 72 TB hash map).
    let aw_bomb = [1, 7, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0];
    assert_eq!(decode_message(&aw_bomb), Err(NoteError::InvalidMessage));

    let doc = NoteDoc::new();
    let limits = Limits::default();
    // Delete set with 2^32-1 ranges for one client (yrs: 32 GB vector).
    let ds_bomb = [0, 1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f];
    // One item holding an Any array of 2^40 values (yrs: 26 TB vector).
    let any_bomb = [
        1, 1, 1, 0, 8, 1, 1, b't', 1, 117, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20,
    ];
    // ... and an Any map of 2^40 entries.
    let map_bomb = [
        1, 1, 1, 0, 8, 1, 1, b't', 1, 118, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20,
    ];
    // 2^32-1 clients (yrs reserves with try_reserve: fails or succeeds big).
    let clients_bomb = [0xff, 0xff, 0xff, 0xff, 0x0f];
    // Any nested 10 000 levels deep (yrs recurses: stack overflow).
    let mut deep = vec![1, 1, 1, 0, 8, 1, 1, b't', 1];
    deep.extend(std::iter::repeat_n([117, 1], 10_000).flatten());
    deep.extend([126, 0]);
    for bomb in [&ds_bomb[..], &any_bomb, &map_bomb, &clients_bomb, &deep] {
        assert_eq!(doc.check(bomb, &limits), Err(NoteError::InvalidUpdate));
    }
    let mut doc = doc;
    assert_eq!(doc.apply(&ds_bomb), Err(NoteError::InvalidUpdate));
    assert!(!doc.is_poisoned());
}

/// Content that yrs would decode differently from JS Yjs, or that JS
/// clients cannot decode at all, is refused.
#[test]
fn content_js_cannot_share_is_refused() {
    let doc = NoteDoc::new();
    let limits = Limits::default();
    let item = |info: u8, content: &[u8]| {
        let mut u = vec![1, 1, 1, 0, info, 1, 1, b't'];
        u.extend_from_slice(content);
        u.push(0);
        u
    };
    // Sanity: the same frame with string content is accepted.
    assert_eq!(doc.check(&item(4, &[1, b'a']), &limits), Ok(()));
    let refused = [
        item(2, &[1, 1, b'1']),      // legacy JSON content
        item(9, &[1, b'g', 118, 0]), // sub-document
        item(11, &[0, 1, 0]),        // yrs-only move
        item(7, &[5]),               // XmlHook type
        item(7, &[9]),               // yrs sub-doc type ref
        item(4 | 0x10, &[1, b'a']),  // content ref 20
        item(4, &[2, 0xc3, 0x28]),   // invalid UTF-8
        item(0x20 | 4, &[1, b'a']),  // parent key missing
    ];
    for update in refused {
        assert_eq!(
            doc.check(&update, &limits),
            Err(NoteError::InvalidUpdate),
            "{update:?}"
        );
    }
}

// ------------------------------------------------------------ convergence

#[test]
fn concurrent_and_offline_edits_converge_through_the_server() {
    let mut server = NoteDoc::new();
    let a = client(100);
    let b = client(200);
    handshake(&mut server, &a);
    handshake(&mut server, &b);

    // Concurrent edits: each applies its own, the server relays.
    let ua = insert(&a, 0, "Hello");
    let ub = insert(&b, 0, "World");
    assert!(server_accepts(&mut server, &ua));
    assert!(server_accepts(&mut server, &ub));
    apply_to(&b, &ua);
    apply_to(&a, &ub);
    assert_eq!(text_of(&a), text_of(&b));
    assert_eq!(server.text(), text_of(&a));

    // B goes offline and writes; A keeps writing online.
    let offline = [insert(&b, 0, "é😀 "), remove(&b, 3, 2), insert(&b, 3, "!")];
    assert_eq!(offline.len(), 3);
    let online = [insert(&a, 5, ", "), remove(&a, 0, 1), insert(&a, 0, "h")];
    for update in &online {
        assert!(server_accepts(&mut server, update));
    }
    // B reconnects: its step 2 carries the offline edits.
    let (answer, changed) = handshake(&mut server, &b);
    assert!(changed);
    apply_to(&a, &answer); // relayed as an event
    assert_eq!(text_of(&a), text_of(&b));
    assert_eq!(server.text(), text_of(&a));
    assert_eq!(server.state_vector(), sv_of(&a));
    assert_eq!(sv_of(&a), sv_of(&b));

    // A second reconnection changes nothing and is recognised as such,
    // although the reply carries the whole delete set.
    let (answer, changed) = handshake(&mut server, &b);
    assert!(!changed);
    assert_ne!(answer, Update::EMPTY_V1);
    assert!(server.is_noop(&answer).expect("decodable"));
    assert!(server.is_noop(Update::EMPTY_V1).expect("decodable"));
    // Resending an applied update is a no-op too.
    assert!(server.is_noop(&online[0]).expect("decodable"));
    assert!(!server.apply(&online[0]).expect("applies"));
}

#[test]
fn updates_with_missing_dependencies_are_refused_and_never_pending() {
    let a = client(1);
    let first = insert(&a, 0, "abc");
    let second = insert(&a, 3, "def");
    let mut server = NoteDoc::new();
    // The second update alone cannot be integrated: yrs would park it as
    // pending (and every step 2 would carry it). Refused, not applied.
    assert!(!server.is_noop(&second).expect("decodable"));
    assert_eq!(
        server.check(&second, &Limits::default()),
        Err(NoteError::OutOfSync {
            client: 1,
            clock: 0
        })
    );
    assert_eq!(
        server.apply(&second),
        Err(NoteError::OutOfSync {
            client: 1,
            clock: 0
        })
    );
    assert_eq!(server.size_estimate(), 0);
    assert!(!server.has_pending());
    // In order, both integrate.
    assert!(server_accepts(&mut server, &first));
    assert!(server_accepts(&mut server, &second));
    assert_eq!(server.text(), "abcdef");
    // Loading skips what does not integrate at its place, as commits do.
    let loaded = NoteDoc::load(None, [&second, &first]).expect("loads");
    assert_eq!(loaded.text(), "abc");
    assert!(!loaded.has_pending());
}

/// A snapshot stored before the rule, with pending data in it, loads
/// without it: no step 2 carries it any more.
#[test]
fn pending_data_of_an_old_snapshot_is_dropped_at_load() {
    let a = client(1);
    let _first = insert(&a, 0, "abc");
    let second = insert(&a, 3, "def");
    let old = Doc::new();
    apply_to(&old, &second);
    let hostile = {
        let mut u = vec![0, 1, 42, 1, 0];
        u.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
        u
    };
    apply_to(&old, &hostile);
    assert!(old.transact().has_missing_updates());
    let snapshot = old
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    let mut loaded = NoteDoc::load(Some(&snapshot), Vec::<Vec<u8>>::new()).expect("loads");
    assert!(!loaded.has_pending());
    let state = loaded.snapshot().expect("snapshot");
    assert!(state.len() < 10, "{state:?}");
}

#[test]
fn snapshot_plus_tail_loads_to_the_same_state() {
    let a = rich_client(5);
    let b = client(6);
    let mut server = NoteDoc::new();
    handshake(&mut server, &a);
    handshake(&mut server, &b);
    let snapshot = server.snapshot().expect("snapshot");
    let mut tail = Vec::new();
    for i in 0..50u32 {
        let update = if i % 3 == 2 {
            remove(&b, i % 7, 1)
        } else {
            insert(&b, i % 11, &format!("{i}"))
        };
        assert!(server_accepts(&mut server, &update));
        tail.push(update);
    }
    let mut loaded = NoteDoc::load(Some(&snapshot), &tail).expect("loads");
    assert_eq!(loaded.text(), server.text());
    assert_eq!(loaded.text(), text_of(&b));
    assert_eq!(loaded.state_vector(), server.state_vector());
    // Same content and deletions both ways.
    let (mine, theirs) = (
        loaded.snapshot().expect("snapshot"),
        server.snapshot().expect("snapshot"),
    );
    assert!(server.is_noop(&mine).expect("decodable"));
    assert!(loaded.is_noop(&theirs).expect("decodable"));
    assert_eq!(mine.len(), theirs.len());
    // Loading with no snapshot, from updates only, works as well.
    let from_updates = NoteDoc::load(None, std::iter::once(&snapshot).chain(&tail)).expect("loads");
    assert_eq!(from_updates.text(), server.text());
    // A corrupt stored update fails the load instead of loading half.
    let mut bad = tail.clone();
    bad[10].truncate(3);
    assert_eq!(
        NoteDoc::load(Some(&snapshot), &bad).map(|_| ()),
        Err(NoteError::InvalidUpdate)
    );
}

// -------------------------------------------------------- hostile updates

/// Outcome counts of a fuzz loop.
#[derive(Debug, Default)]
struct Tally {
    refused_by_check: usize,
    accepted: usize,
    poisoned: usize,
    /// yrs panic locations (caught) -> (count, first input that hit it).
    panics: std::collections::BTreeMap<String, (usize, Vec<u8>)>,
}

/// Feeds `inputs` to a fresh copy of the document `base` (a snapshot):
/// each is checked, and applied if the check passes. A refusal must leave
/// the document byte for byte as it was; an accepted update must leave a
/// document that still encodes and reloads.
fn hammer(base: &[u8], inputs: impl IntoIterator<Item = Vec<u8>>) -> Tally {
    let limits = Limits::default();
    let mut tally = Tally::default();
    let mut record = |seen: Vec<String>, input: &[u8], prefix: &str| {
        for at in seen {
            let at = at.rsplit("/src/").next().unwrap_or_default();
            let entry = tally.panics.entry(format!("{prefix}{at}"));
            entry.or_insert((0, input.to_vec())).0 += 1;
        }
    };
    let mut outcomes = (0, 0, 0);
    for input in inputs {
        // Which inputs yrs panics on in the scratch trial (caught there).
        let (_, seen) = count_panics(|| doc_trial(base, &input));
        record(seen, &input, "");
        // The server path; panics here (caught too) would be more worrying.
        let (_, seen) = count_panics(|| {
            let mut doc = NoteDoc::load(Some(base), Vec::<Vec<u8>>::new()).expect("base loads");
            let before = doc.snapshot().expect("snapshot");
            let refused = match doc.check(&input, &limits) {
                Err(_) => true,
                Ok(()) => match doc.apply(&input) {
                    Ok(_) => {
                        outcomes.1 += 1;
                        let _ = doc.text();
                        let snapshot = doc.snapshot().expect("snapshot after apply");
                        let reloaded =
                            NoteDoc::load(Some(&snapshot), Vec::<Vec<u8>>::new()).expect("reloads");
                        assert_eq!(reloaded.text(), doc.text());
                        assert!(doc.diff(&StateVector::default()).is_ok());
                        false
                    }
                    Err(NoteError::Poisoned) => {
                        outcomes.2 += 1;
                        eprintln!("poisoned by {input:?}");
                        false
                    }
                    // Refused before touching the document.
                    Err(_) => true,
                },
            };
            if refused {
                outcomes.0 += 1;
                // A refused update is not applied anywhere.
                assert_eq!(doc.snapshot().expect("snapshot"), before);
            }
        });
        record(seen, &input, "server path: ");
    }
    tally.refused_by_check = outcomes.0;
    tally.accepted = outcomes.1;
    tally.poisoned = outcomes.2;
    tally
}

/// Runs only the scratch trial of `check` (to attribute panics to inputs).
fn doc_trial(base: &[u8], input: &[u8]) {
    let doc = NoteDoc::load(Some(base), Vec::<Vec<u8>>::new()).expect("base loads");
    let _ = doc.check(input, &Limits::default());
}

/// Truncations at every length and byte flips at every position of `update`.
fn mutations(update: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for len in 0..update.len() {
        out.push(update[..len].to_vec());
    }
    for i in 0..update.len() {
        for mask in [0x01u8, 0x02, 0x10, 0x40, 0x7f, 0x80, 0xff] {
            let mut m = update.to_vec();
            m[i] ^= mask;
            out.push(m);
        }
        // Small and large values where a varint may sit.
        for value in [0u8, 1, 2, 0x7f, 0x80] {
            let mut m = update.to_vec();
            m[i] = value;
            out.push(m);
        }
        // A byte dropped, a byte repeated (shifts everything after).
        let mut m = update.to_vec();
        m.remove(i);
        out.push(m);
        let mut m = update.to_vec();
        m.insert(i, update[i]);
        out.push(m);
    }
    // 3 000 mutants with 2 to 5 random byte changes (a fixed xorshift
    // sequence, so runs are repeatable).
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ update.len() as u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3_000 {
        let mut m = update.to_vec();
        for _ in 0..2 + next() % 4 {
            let i = (next() % m.len() as u64) as usize;
            m[i] = next() as u8;
        }
        out.push(m);
    }
    out
}

#[test]
fn corrupted_full_states_never_panic_out_or_damage_the_doc() {
    let doc = rich_client(9);
    let state = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    let empty = NoteDoc::new().diff(&StateVector::default()).expect("diff");
    let tally = hammer(&empty, mutations(&state));
    eprintln!("full state ({} bytes): {tally:?}", state.len());
    assert_eq!(tally.poisoned, 0, "{tally:?}");
    assert!(tally.accepted > 0 && tally.refused_by_check > 0);
}

#[test]
fn corrupted_incremental_updates_never_panic_out_or_damage_the_doc() {
    // The base every client shares; the update is B's edit on top of it,
    // so mutations integrate against real state (origins, deletions).
    let a = rich_client(9);
    let mut server = NoteDoc::new();
    handshake(&mut server, &a);
    let b = client(10);
    handshake(&mut server, &b);
    let base = server.snapshot().expect("snapshot");
    let update = {
        let text = b.get_or_insert_text("content");
        let meta = b.get_or_insert_map("meta");
        let mut txn = b.transact_mut();
        text.insert(&mut txn, 4, "ab😀");
        text.remove_range(&mut txn, 10, 3);
        meta.insert(&mut txn, "title", "B");
        meta.remove(&mut txn, "n");
        txn.encode_update_v1()
    };
    assert!(server_accepts(&mut server, &update));
    let tally = hammer(&base, mutations(&update));
    eprintln!("incremental ({} bytes): {tally:?}", update.len());
    assert_eq!(tally.poisoned, 0, "{tally:?}");
    assert!(tally.accepted > 0 && tally.refused_by_check > 0);

    // Two clients' offline work merged in one step 2 (B's edits above and
    // C's edits of a nested map and the list, with deletions).
    let c = client(11);
    handshake(&mut server, &c);
    let base = server.snapshot().expect("snapshot");
    let sv = server.state_vector();
    {
        let meta = c.get_or_insert_map("meta");
        let list = c.get_or_insert_array("list");
        let text = c.get_or_insert_text("content");
        let mut txn = c.transact_mut();
        let Some(yrs::Out::YMap(nested)) = meta.get(&txn, "nested") else {
            panic!("nested map")
        };
        nested.insert(
            &mut txn,
            "c",
            Any::from(vec![Any::from(1.5), Any::from("é")]),
        );
        nested.remove(&mut txn, "a");
        list.insert(&mut txn, 0, Any::BigInt(-7));
        list.remove(&mut txn, 1);
        text.insert(&mut txn, 0, "C:");
        text.remove_range(&mut txn, 5, 4);
    }
    let step2 = c.transact().encode_state_as_update_v1(&sv);
    assert!(server_accepts(&mut server, &step2));
    let tally = hammer(&base, mutations(&step2));
    eprintln!("merged step 2 ({} bytes): {tally:?}", step2.len());
    assert_eq!(tally.poisoned, 0, "{tally:?}");
}

/// A parent id pointing at a text item makes yrs fail midway; it is
/// refused before the document is touched, whether the parent is in the
/// document or in the update itself.
#[test]
fn a_parent_that_is_not_a_type_is_refused() {
    let a = client(1);
    let base = insert(&a, 0, "ab"); // item (1, 0), a string
    let mut server = NoteDoc::new();
    assert!(server_accepts(&mut server, &base));
    // Client 2 inserts "x" whose parent is item (1, 0).
    let hostile = [1, 1, 2, 0, 4, 0, 1, 0, 1, b'x', 0];
    assert_eq!(
        server.check(&hostile, &Limits::default()),
        Err(NoteError::InvalidUpdate)
    );
    assert_eq!(server.apply(&hostile), Err(NoteError::InvalidUpdate));
    assert!(!server.is_poisoned());
    // The parent string is in the update itself, after an item that needs
    // the document (so the scratch trial parks both and sees nothing).
    let hostile = [
        2, // two clients
        1, 3, 0, // client 3: one block from clock 0
        0x84, 1, 1, 1, b'y', // string "y" after (1, 1)
        1, 2, 0, // client 2: one block
        4, 0, 3, 0, 1, b'x', // "x" whose parent is (3, 0)
        0,
    ];
    assert_eq!(
        server.check(&hostile, &Limits::default()),
        Err(NoteError::InvalidUpdate)
    );
    assert_eq!(server.text(), "ab");
    // A legitimate nested parent (a map inside a map) is fine.
    let c = client(4);
    let meta = c.get_or_insert_map("meta");
    let nested = {
        let mut txn = c.transact_mut();
        meta.insert(
            &mut txn,
            "inner",
            MapPrelim::from_iter([("k", Any::from(1))]),
        );
        txn.encode_update_v1()
    };
    assert!(server_accepts(&mut server, &nested));
    let inner = {
        let mut txn = c.transact_mut();
        let Some(yrs::Out::YMap(inner)) = meta.get(&txn, "inner") else {
            panic!("nested map")
        };
        inner.insert(&mut txn, "k2", 2);
        txn.encode_update_v1()
    };
    assert!(server_accepts(&mut server, &inner));
}

// ----------------------------------------------------------------- limits

#[test]
fn size_limits() {
    let limits = Limits {
        max_update_bytes: 100,
        max_doc_bytes: 300,
    };
    let a = client(1);
    let mut server = NoteDoc::new();
    // One message may be as large as the note: an update over
    // `max_update_bytes` is cut into events later.
    let big = insert(&client(2), 0, &"x".repeat(200));
    assert_eq!(server.check(&big, &limits), Ok(()));
    let huge = insert(&client(2), 200, &"x".repeat(300));
    assert_eq!(
        server.check(&huge, &limits),
        Err(NoteError::UpdateTooLarge {
            len: huge.len(),
            max: 300
        })
    );
    let mut total = 0;
    let mut refused = None;
    let mut applied = Vec::new();
    for i in 0..20 {
        let update = insert(&a, 0, &"y".repeat(40));
        match server.check(&update, &limits) {
            Ok(()) => {
                applied.push(update.clone());
                assert!(server.apply(&update).expect("applies"));
                assert_eq!(server.text().len(), 40 * applied.len());
                total += update.len();
                assert_eq!(server.size_estimate(), total);
            }
            Err(err) => {
                refused = Some((i, err, update));
                break;
            }
        }
    }
    let Some((_, err, update)) = refused else {
        panic!("never refused")
    };
    assert_eq!(
        err,
        NoteError::DocumentTooLarge {
            would_be: total + update.len(),
            max: 300
        }
    );
    // Nothing new is still fine on a full document.
    assert!(total + applied[0].len() > 300);
    assert_eq!(server.check(&applied[0], &limits), Ok(()));
    assert_eq!(server.check(Update::EMPTY_V1, &limits), Ok(()));
    // The snapshot makes the estimate exact: consecutive inserts by one
    // client merge into fewer bytes than the updates took.
    let snapshot = server.snapshot().expect("snapshot");
    assert_eq!(server.size_estimate(), snapshot.len());
    assert!(snapshot.len() < total);
    // The estimate of a loaded document counts what it was loaded from.
    let loaded = NoteDoc::load(Some(&snapshot), [&update]).expect("loads");
    assert_eq!(loaded.size_estimate(), snapshot.len() + update.len());
}

// -------------------------------------------------------------- awareness

fn aw(entries: &[(u64, u32, &str)]) -> AwarenessUpdate {
    AwarenessUpdate {
        clients: entries
            .iter()
            .map(|&(id, clock, json)| {
                let entry = yrs::sync::awareness::AwarenessUpdateEntry {
                    clock,
                    json: Arc::from(json),
                };
                (id, entry)
            })
            .collect(),
    }
}

fn state_of(update: &AwarenessUpdate, id: u64) -> Value {
    serde_json::from_str(&update.clients[&id].json).expect("json")
}

#[test]
fn awareness_user_is_rewritten_and_ids_are_bound() {
    let user = json!({"id": "u1", "name": "Alice", "role": "student"});
    let mut guard = AwarenessGuard::new();
    let nobody = |_| false;
    let bound = guard
        .bind(
            &aw(&[
                (
                    11,
                    1,
                    r#"{"user":{"name":"Mallory"},"cursor":{"anchor":3}}"#,
                ),
                (12, 4, "5"),
            ]),
            &user,
            nobody,
        )
        .expect("bound");
    assert_eq!(
        state_of(&bound.update, 11),
        json!({"user": user, "cursor": {"anchor": 3}})
    );
    assert_eq!(state_of(&bound.update, 12), json!({"user": user}));
    let mut claimed = bound.claimed.clone();
    claimed.sort_unstable();
    assert_eq!(claimed, [11, 12]);
    assert!(guard.owns(11) && guard.owns(12));

    // Another connection owns 13: its entries are dropped (an echo, or
    // someone speaking for it), the rest is bound.
    let owned_by_other = |id| id == 13;
    let bound = guard
        .bind(&aw(&[(14, 1, "{}"), (13, 1, "{}")]), &user, owned_by_other)
        .expect("bound");
    assert_eq!(bound.claimed, [14]);
    assert!(bound.update.clients.contains_key(&14) && !bound.update.clients.contains_key(&13));
    assert!(!guard.owns(13));
    // Even its removal.
    let bound = guard
        .bind(&aw(&[(13, 2, "null")]), &user, owned_by_other)
        .expect("bound");
    assert!(bound.update.clients.is_empty());
    // Removals of ids nobody owns are dropped; own removals are kept.
    let bound = guard
        .bind(&aw(&[(99, 7, "null"), (12, 5, "null")]), &user, nobody)
        .expect("bound");
    assert_eq!(bound.update, aw(&[(12, 5, "null")]));
    assert!(bound.claimed.is_empty());
    // Invalid JSON is refused.
    assert_eq!(
        guard.bind(&aw(&[(11, 2, "{nope")]), &user, nobody),
        Err(NoteError::InvalidMessage)
    );
    // At most 4 present states per connection (11 and 14 are present, 12
    // was removed and stays owned).
    guard
        .bind(&aw(&[(15, 1, "{}"), (16, 1, "{}")]), &user, nobody)
        .expect("4 present");
    assert_eq!(
        guard.bind(&aw(&[(17, 1, "{}")]), &user, nobody),
        Err(NoteError::TooManyClients { max: 4 })
    );
    // Bringing 12 back is a fifth present state too.
    assert_eq!(
        guard.bind(&aw(&[(12, 6, "{}")]), &user, nobody),
        Err(NoteError::TooManyClients { max: 4 })
    );
    // Removing one makes room (the removal and the claim in one update).
    let bound = guard
        .bind(&aw(&[(16, 2, "null"), (17, 1, "{}")]), &user, nobody)
        .expect("swap");
    assert_eq!(bound.claimed, [17]);
    let mut owned: Vec<_> = guard.owned().collect();
    owned.sort_unstable();
    assert_eq!(owned, [11, 12, 14, 15, 16, 17]);
    // Ids owned in all are bounded too, removed or not.
    let mut guard = AwarenessGuard::new();
    for id in 0..MAX_AWARENESS_IDS as u64 {
        guard
            .bind(&aw(&[(id, 1, "{}")]), &user, nobody)
            .expect("claim");
        guard
            .bind(&aw(&[(id, 2, "null")]), &user, nobody)
            .expect("remove");
    }
    assert_eq!(
        guard.bind(&aw(&[(1_000, 1, "{}")]), &user, nobody),
        Err(NoteError::TooManyClients { max: 4 })
    );
}

#[test]
fn awareness_keeps_the_clients_user_fields_up_to_a_bound() {
    let user = json!({"id": "u1", "name": "Alice", "role": "student"});
    let mut guard = AwarenessGuard::new();
    let claimed = r##"{"user":{"id":"prof","name":"Mme Prof","role":"teacher","color":"#30bced","colorLight":"#30bced33"},"cursor":1}"##;
    let bound = guard
        .bind(&aw(&[(1, 1, claimed)]), &user, |_| false)
        .expect("bound");
    assert_eq!(
        state_of(&bound.update, 1),
        json!({"user": {"id": "u1", "name": "Alice", "role": "student",
                        "color": "#30bced", "colorLight": "#30bced33"},
               "cursor": 1})
    );
    // A field too large is dropped, the small ones stay; a `user` that is
    // not an object is replaced.
    let avatar = "A".repeat(MAX_USER_EXTRA_BYTES);
    let state = format!(r##"{{"user":{{"avatar":"{avatar}","color":"#fff"}}}}"##);
    let bound = guard
        .bind(&aw(&[(1, 2, &state)]), &user, |_| false)
        .expect("bound");
    assert_eq!(
        state_of(&bound.update, 1),
        json!({"user": {"id": "u1", "name": "Alice", "role": "student", "color": "#fff"}})
    );
    let bound = guard
        .bind(&aw(&[(1, 3, r#"{"user":"prof"}"#)]), &user, |_| false)
        .expect("bound");
    assert_eq!(state_of(&bound.update, 1), json!({"user": user}));
}

#[test]
fn closing_removes_states_with_a_newer_clock() {
    let user = json!({"id": "u1", "name": "Alice", "role": "teacher"});
    let mut guard = AwarenessGuard::new();
    assert!(guard.removal().is_none());
    let mut room = AwarenessStates::new();
    let bound = guard
        .bind(&aw(&[(21, 3, r#"{"c":1}"#), (22, 1, "{}")]), &user, |_| {
            false
        })
        .expect("bound");
    assert!(room.apply(&bound.update));
    // An echo changes nothing.
    assert!(!room.apply(&bound.update));
    let bound = guard
        .bind(&aw(&[(21, 8, r#"{"c":2}"#)]), &user, |_| false)
        .expect("bound");
    assert!(room.apply(&bound.update));

    // The answer to query awareness holds both states, users rewritten.
    let Ok(Incoming::Awareness(all)) = decode_message(&room.encode_all()) else {
        panic!("awareness")
    };
    assert_eq!(all.clients.len(), 2);
    assert_eq!(all.clients[&21].clock, 8);
    assert_eq!(state_of(&all, 21), json!({"c": 2, "user": user}));

    // Closing: null states, clock + 1, through the wire format.
    let removal = guard.removal().expect("owns ids");
    let Ok(Incoming::Awareness(removal)) = decode_message(&encode_awareness(&removal)) else {
        panic!("awareness")
    };
    assert_eq!(removal, aw(&[(21, 9, "null"), (22, 2, "null")]));
    // Peers (and the room) apply it: a newer clock.
    assert!(room.apply(&removal));
    let Ok(Incoming::Awareness(all)) = decode_message(&room.encode_all()) else {
        panic!("awareness")
    };
    assert!(all.clients.is_empty());
    assert_eq!(room.len(), 2);
    room.remove(guard.owned());
    assert!(room.is_empty());
    // y-protocols rule: an older or equal clock does not resurrect a state.
    room.apply(&aw(&[(30, 5, "{}")]));
    room.apply(&aw(&[(30, 6, "null")]));
    assert!(!room.apply(&aw(&[(30, 6, "{}")])));
    assert!(room.apply(&aw(&[(30, 7, "{}")])));
    // Removal with the same clock removes a present state.
    assert!(room.apply(&aw(&[(30, 7, "null")])));
    // Removals of unknown ids leave nothing behind.
    assert!(!room.apply(&aw(&[(31, 1, "null")])));
    assert_eq!(room.len(), 1);
}

// ----------------------------------------------------------------- export

#[test]
fn markdown_export_has_a_header() {
    let a = client(1);
    let mut server = NoteDoc::new();
    assert!(server_accepts(
        &mut server,
        &insert(&a, 0, "## Plan\n\n- lire\n")
    ));
    assert_eq!(
        server.markdown("Version\nfinale", Some(" Mme  Durand "), 1_735_689_599_999),
        "# Version finale\n\n*Validated by Mme Durand on 2024-12-31*\n\n---\n\n## Plan\n\n- lire\n"
    );
    // The draft's header claims no validation.
    assert_eq!(
        server.markdown("Brouillon", None, 1_735_689_600_000),
        "# Brouillon\n\n*Draft, not validated, exported on 2025-01-01*\n\n---\n\n## Plan\n\n- lire\n"
    );
    assert_eq!(utc_date(0), "1970-01-01");
    assert_eq!(utc_date(951_782_400_000), "2000-02-29");
    assert_eq!(utc_date(1_735_689_600_000), "2025-01-01");
    assert_eq!(utc_date(u64::MAX), utc_date(u64::MAX)); // no overflow panic
                                                        // Roots other than "content" are not exported.
    let b = client(2);
    let map = b.get_or_insert_map("other");
    let update = {
        let mut txn = b.transact_mut();
        map.insert(&mut txn, "k", "v");
        txn.encode_update_v1()
    };
    assert!(server_accepts(&mut server, &update));
    assert_eq!(server.text(), "## Plan\n\n- lire\n");
    assert_eq!(NoteDoc::new().text(), "");
}

#[test]
fn note_doc_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<NoteDoc>();
    send_sync::<AwarenessGuard>();
    send_sync::<AwarenessStates>();
}

// ------------------------------------------------------------ measurement

/// Load-time figures (run in release):
/// `cargo test --release --lib notes::tests::load_figures -- --ignored --nocapture`
#[test]
#[ignore]
fn load_figures() {
    use std::time::Instant;

    // 100 000 single-character inserts, typed at moving positions.
    let a = client(1);
    let t = Instant::now();
    let mut updates = Vec::with_capacity(100_000);
    let mut len = 0u32;
    for i in 0..100_000u32 {
        let at = if i % 50 == 0 { len / 2 } else { len };
        let c = char::from(b'a' + (i % 26) as u8);
        updates.push(insert(&a, at, &c.to_string()));
        len += 1;
    }
    eprintln!(
        "client: 100k single-char updates built in {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    let mut server = NoteDoc::new();
    for u in &updates {
        server.apply(u).expect("applies");
    }
    eprintln!(
        "server: applied 100k updates one by one in {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    let snapshot = server.snapshot().expect("snapshot");
    eprintln!(
        "snapshot: {} bytes in {:?} (sum of updates {} bytes)",
        snapshot.len(),
        t.elapsed(),
        updates.iter().map(Vec::len).sum::<usize>()
    );
    let t = Instant::now();
    let check_n = 1000;
    let limits = Limits {
        max_update_bytes: 61_440,
        max_doc_bytes: usize::MAX,
    };
    for u in &updates[..check_n] {
        server.check(u, &limits).expect("ok");
    }
    eprintln!(
        "check (scan+decode+trial): {:?} per update",
        t.elapsed() / check_n as u32
    );
    let t = Instant::now();
    for u in &updates[..check_n] {
        server.is_noop(u).expect("ok");
    }
    eprintln!(
        "is_noop (no deletions): {:?} per update",
        t.elapsed() / check_n as u32
    );

    let mut tail = Vec::new();
    for i in 0..500u32 {
        tail.push(insert(&a, (i * 7) % len, "z"));
        len += 1;
    }
    for (label, tail) in [
        ("0 tail updates", &tail[..0]),
        ("500 tail updates", &tail[..]),
    ] {
        let runs = 10;
        let t = Instant::now();
        for _ in 0..runs {
            let doc = NoteDoc::load(Some(&snapshot), tail).expect("loads");
            assert!(doc.text().len() >= 100_000);
        }
        eprintln!("load(snapshot, {label}): {:?} per load", t.elapsed() / runs);
    }
}

fn rss_kib() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4
}

/// Resident memory per loaded note (run alone, in release):
/// `cargo test --release --lib notes::tests::memory_figures -- --ignored --nocapture`
/// Loaded documents are all kept alive, and there are many of them, so
/// that memory freed earlier in the process hardly skews the figures.
#[test]
#[ignore]
fn memory_figures() {
    // A note of 20 000 characters typed key by key (one update each),
    // with the cursor jumping now and then; then the same note after
    // 200 deletions of 25 characters.
    let b = client(2);
    let mut note = NoteDoc::new();
    for i in 0..20_000u32 {
        let at = if i % 40 == 0 { i / 3 } else { i };
        note.apply(&insert(&b, at, "x")).expect("applies");
    }
    let typed = note.snapshot().expect("snapshot");
    for i in 0..200u32 {
        note.apply(&remove(&b, i * 70, 25)).expect("applies");
    }
    let edited = note.snapshot().expect("snapshot");
    // The same 20 000 characters pasted at once (one block).
    let pasted = {
        let c = client(3);
        let update = insert(&c, 0, &"x".repeat(20_000));
        NoteDoc::load(Some(&update), Vec::<Vec<u8>>::new())
            .expect("loads")
            .snapshot()
            .expect("snapshot")
    };
    drop(note);
    let mut keep = Vec::new();
    for (label, snap) in [
        ("pasted 20 KB", &pasted),
        ("typed 20 KB", &typed),
        ("typed 20 KB, then 5 000 chars deleted", &edited),
    ] {
        let n = 300;
        let before = rss_kib();
        let docs: Vec<NoteDoc> = (0..n)
            .map(|_| NoteDoc::load(Some(snap), Vec::<Vec<u8>>::new()).expect("loads"))
            .collect();
        let grown = rss_kib().saturating_sub(before);
        eprintln!(
            "{label}: snapshot {} bytes; {n} docs: RSS +{grown} KiB, {} KiB per doc",
            snap.len(),
            grown / n
        );
        keep.push(docs);
    }
}
