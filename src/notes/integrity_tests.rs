//! Unit tests of the integration check (`integrate.rs`) and the splitter
//! (`split.rs`): pure functions of an update's bytes and a state vector,
//! checked against what yrs itself does with the same bytes.

use yrs::types::text::Text;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{
    Any, Array, Doc, GetString, Map, MapPrelim, OffsetKind, Options, ReadTxn, StateVector,
    Transact, Update,
};

use super::integrate::{plan, Dangling};
use super::scan;
use super::split::{split, TooLarge};

// ---------------------------------------------------------------- helpers

fn client(id: u64) -> Doc {
    Doc::with_options(Options {
        client_id: id,
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    })
}

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

fn text_len(doc: &Doc) -> u32 {
    let text = doc.get_or_insert_text("content");
    let txn = doc.transact();
    text.len(&txn)
}

/// A random UTF-16 offset at a character boundary of the text, up to its
/// end (yrs splits an item inside a surrogate pair inconsistently: the
/// left part keeps the whole character, so its encoding no longer matches
/// its clock length; JS replaces both halves with U+FFFD).
fn boundary(doc: &Doc, rng: &mut Rng, room: u32) -> u32 {
    let text = text_of(doc);
    let total = text.encode_utf16().count() as u32;
    let offsets: Vec<u32> = std::iter::once(0)
        .chain(text.chars().scan(0u32, |at, c| {
            *at += c.len_utf16() as u32;
            Some(*at)
        }))
        .filter(|&at| at + room <= total)
        .collect();
    offsets[rng.below(offsets.len() as u64) as usize]
}

/// UTF-16 units of the character at UTF-16 offset `at`.
fn width_at(doc: &Doc, at: u32) -> u32 {
    match text_of(doc).encode_utf16().nth(at as usize) {
        Some(unit) if (0xd800..0xdc00).contains(&unit) => 2,
        _ => 1,
    }
}

fn text_of(doc: &Doc) -> String {
    let text = doc.get_or_insert_text("content");
    let txn = doc.transact();
    text.get_string(&txn)
}

fn apply(doc: &Doc, update: &[u8]) {
    let update = Update::decode_v1(update).expect("decodes");
    doc.transact_mut().apply_update(update).expect("applies");
}

fn state(doc: &Doc) -> Vec<u8> {
    doc.transact()
        .encode_state_as_update_v1(&StateVector::default())
}

/// The integration check of `update` against `doc`'s state vector.
fn judge(doc: &Doc, update: &[u8]) -> Result<super::Plan, Dangling> {
    let shape = scan::update(update).expect("well formed");
    let sv = doc.transact().state_vector();
    plan(&shape, |c| sv.get(&c))
}

/// What yrs does: applied to a copy of `doc`, does anything stay pending?
fn yrs_leaves_pending(doc: &Doc, update: &[u8]) -> bool {
    let copy = Doc::new();
    apply(&copy, &state(doc));
    assert!(!copy.transact().has_missing_updates());
    assert_eq!(
        copy.transact().state_vector(),
        doc.transact().state_vector(),
        "the copy holds what the document holds"
    );
    apply(&copy, update);
    let pending = copy.transact().has_missing_updates();
    pending
}

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

/// A repeatable pseudo-random sequence (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

// ------------------------------------------------------------ the check

#[test]
fn updates_in_order_integrate_and_out_of_order_do_not() {
    let a = client(1);
    let first = insert(&a, 0, "abc");
    let second = insert(&a, 3, "def");
    let server = Doc::new();
    assert_eq!(
        judge(&server, &second),
        Err(Dangling {
            client: 1,
            clock: 0
        })
    );
    let plan = judge(&server, &first).expect("first integrates");
    assert_eq!(plan.reach, [(1, 3)]);
    apply(&server, &first);
    assert_eq!(judge(&server, &second).expect("then").reach, [(1, 6)]);
    // Resending what the document holds integrates (and reaches nothing).
    assert_eq!(judge(&server, &first).expect("again").reach, []);
}

#[test]
fn hostile_delete_sets_are_caught() {
    let a = client(1);
    let server = Doc::new();
    apply(&server, &insert(&a, 0, "Il était une fois"));
    // The review's cases: the victim's future clocks, and clients that do
    // not exist over their whole clock range.
    let future = delete_only(&[(1, 17, 1_000_000_000)]);
    assert_eq!(
        judge(&server, &future),
        Err(Dangling {
            client: 1,
            clock: 17
        })
    );
    assert!(yrs_leaves_pending(&server, &future));
    let ranges: Vec<_> = (0..4_000).map(|i| (1_000 + i, 0, 0xffff_fffe)).collect();
    let ghosts = delete_only(&ranges);
    assert!(judge(&server, &ghosts).is_err());
    assert!(yrs_leaves_pending(&server, &ghosts));
    // Deleting what the document holds is fine, up to its last clock.
    let fine = delete_only(&[(1, 3, 14)]);
    assert!(judge(&server, &fine).is_ok());
    assert!(!yrs_leaves_pending(&server, &fine));
    assert!(judge(&server, &delete_only(&[(1, 3, 15)])).is_err());
    // An update may delete what it inserts itself.
    let b = client(2);
    apply(&b, &state(&server));
    let own = {
        let text = b.get_or_insert_text("content");
        let mut txn = b.transact_mut();
        text.insert(&mut txn, 0, "xyz");
        text.remove_range(&mut txn, 0, 2);
        txn.encode_update_v1()
    };
    assert!(judge(&server, &own).is_ok());
    assert!(!yrs_leaves_pending(&server, &own));
}

/// Items after another client's item (hand-written, one character each).
fn items(list: &[(u64, u64, (u64, u64))]) -> Vec<u8> {
    let mut out = Vec::new();
    var(&mut out, list.len() as u64);
    for &(client, clock, (oc, ok)) in list {
        var(&mut out, 1);
        var(&mut out, client);
        var(&mut out, clock);
        out.push(0x84);
        var(&mut out, oc);
        var(&mut out, ok);
        out.extend([1, b'x']);
    }
    out.push(0);
    out
}

#[test]
fn missing_origins_and_cycles_are_caught() {
    let a = client(1);
    let server = Doc::new();
    apply(&server, &insert(&a, 0, "abc"));
    // Origin of a client nobody sent.
    let dangling = items(&[(7, 0, (8, 5))]);
    assert_eq!(
        judge(&server, &dangling),
        Err(Dangling {
            client: 8,
            clock: 0
        })
    );
    assert!(yrs_leaves_pending(&server, &dangling));
    // Each after the other: a cycle across clients.
    let cycle = items(&[(7, 0, (8, 0)), (8, 0, (7, 0))]);
    assert!(judge(&server, &cycle).is_err());
    assert!(yrs_leaves_pending(&server, &cycle));
    // A chain across three clients in an order that needs the walk to go
    // back and forth: 9 after 8, 8 after 7, 7 after the document.
    let chain = items(&[(9, 0, (8, 0)), (8, 0, (7, 0)), (7, 0, (1, 2))]);
    let plan = judge(&server, &chain).expect("a chain integrates");
    assert_eq!(plan.order.len(), 3);
    assert!(!yrs_leaves_pending(&server, &chain));
    // A client's own gap: it starts past what the document holds.
    let gap = items(&[(1, 4, (1, 2))]);
    assert!(judge(&server, &gap).is_err());
    assert!(yrs_leaves_pending(&server, &gap));
}

#[test]
fn skips_are_fine_only_over_what_the_document_holds() {
    let a = client(1);
    let u1 = insert(&a, 0, "ab");
    let u2 = insert(&a, 2, "cd");
    let u3 = insert(&a, 4, "ef");
    // u1 and u3 merged: a skip over u2's clocks.
    let merged = Update::merge_updates(vec![
        Update::decode_v1(&u1).expect("u1"),
        Update::decode_v1(&u3).expect("u3"),
    ])
    .encode_v1();
    let shape = scan::update(&merged).expect("scans");
    assert!(shape.blocks.iter().any(|b| b.is_skip()), "{shape:?}");
    let server = Doc::new();
    assert!(judge(&server, &merged).is_err());
    assert!(yrs_leaves_pending(&server, &merged));
    apply(&server, &u1);
    apply(&server, &u2);
    assert!(judge(&server, &merged).is_ok());
    assert!(!yrs_leaves_pending(&server, &merged));
}

/// Many clients editing one text, exchanging only some of their updates,
/// so that updates depend on each other across clients; updates, merges of
/// several (with skips), and hostile delete sets are judged against a
/// server document and the verdict compared with yrs's own (pending or
/// not, on a copy). Whatever integrates is applied, so the server's state
/// moves on.
#[test]
fn the_check_agrees_with_yrs_on_random_histories() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut agree = (0, 0);
    let mut malformed = 0;
    for round in 0..12 {
        let clients: Vec<Doc> = (1..=5).map(|id| client(round * 10 + id)).collect();
        let mut made: Vec<Vec<u8>> = Vec::new();
        for _ in 0..120 {
            let who = rng.below(clients.len() as u64) as usize;
            let doc = &clients[who];
            // Hear some of what others wrote (not all: dependencies then
            // reach into updates the server may not have).
            if !made.is_empty() && rng.below(3) == 0 {
                let heard = &made[rng.below(made.len() as u64) as usize];
                apply(doc, heard);
            }
            let len = text_len(doc);
            let update = match rng.below(5) {
                0 if len > 2 => {
                    // One character (one or two UTF-16 units).
                    let at = boundary(doc, &mut rng, 1);
                    remove(doc, at, width_at(doc, at))
                }
                1 => {
                    let meta = doc.get_or_insert_map("meta");
                    let mut txn = doc.transact_mut();
                    meta.insert(&mut txn, "k", rng.below(100) as i64);
                    txn.encode_update_v1()
                }
                _ => {
                    let at = boundary(doc, &mut rng, 0);
                    let words = ["a", "bc", "é", "😀", "déf ", "x"];
                    insert(doc, at, words[rng.below(words.len() as u64) as usize])
                }
            };
            made.push(update);
        }
        let server = client(999);
        for _ in 0..400 {
            let candidate = match rng.below(6) {
                0 => {
                    // Several updates merged into one (skips, many clients).
                    let parts: Vec<Update> = (0..2 + rng.below(4))
                        .map(|_| {
                            Update::decode_v1(&made[rng.below(made.len() as u64) as usize])
                                .expect("decodes")
                        })
                        .collect();
                    Update::merge_updates(parts).encode_v1()
                }
                1 => {
                    // A deletion of all a client's clocks, of one more, or
                    // of clocks past them (whole items: yrs would split an
                    // item inside a surrogate pair inconsistently).
                    let sv = server.transact().state_vector();
                    let c = 1 + round * 10 + rng.below(5);
                    let end = u64::from(sv.get(&c));
                    match rng.below(3) {
                        0 if end > 0 => delete_only(&[(c, 0, end)]),
                        1 => delete_only(&[(c, 0, end + 1)]),
                        _ => delete_only(&[(c, end, 1 + rng.below(3))]),
                    }
                }
                _ => made[rng.below(made.len() as u64) as usize].clone(),
            };
            // yrs itself sometimes writes an empty delete range, which the
            // bounds scan refuses (JS never writes one): not judged.
            if scan::update(&candidate).is_err() {
                malformed += 1;
                continue;
            }
            let predicted = judge(&server, &candidate).is_ok();
            let pending = yrs_leaves_pending(&server, &candidate);
            assert_eq!(
                predicted, !pending,
                "round {round}: check says {predicted}, yrs pending {pending}: {candidate:?}"
            );
            if predicted {
                agree.0 += 1;
                apply(&server, &candidate);
                assert!(!server.transact().has_missing_updates());
            } else {
                agree.1 += 1;
            }
        }
    }
    eprintln!(
        "integrates: {}, refused: {}, malformed: {malformed}",
        agree.0, agree.1
    );
    assert!(agree.0 > 500 && agree.1 > 500, "{agree:?}");
}

// ------------------------------------------------------------- splitting

/// Cuts `update` for `server` into pieces of at most `max` bytes and
/// applies them one by one to a copy: each integrates completely, and the
/// end state is the one the whole update gives.
fn split_and_check(server: &Doc, update: &[u8], max: usize) -> usize {
    let shape = scan::update(update).expect("scans");
    let sv = server.transact().state_vector();
    let order = plan(&shape, |c| sv.get(&c)).expect("integrates");
    let pieces = split(update, &shape, &order, max).expect("splits");
    let whole = Doc::new();
    apply(&whole, &state(server));
    apply(&whole, update);
    let copy = Doc::new();
    apply(&copy, &state(server));
    for (i, piece) in pieces.iter().enumerate() {
        assert!(piece.len() <= max, "piece {i}: {} > {max}", piece.len());
        assert!(judge(&copy, piece).is_ok(), "piece {i} does not integrate");
        apply(&copy, piece);
        assert!(!copy.transact().has_missing_updates(), "piece {i} pending");
    }
    assert_eq!(text_of(&copy), text_of(&whole));
    assert_eq!(
        copy.transact().state_vector(),
        whole.transact().state_vector()
    );
    // Same deletions both ways.
    let (a, b) = (state(&copy), state(&whole));
    let mut check = super::NoteDoc::load(Some(&a), Vec::<Vec<u8>>::new()).expect("loads");
    assert!(check.is_noop(&b).expect("decodes"));
    let other = super::NoteDoc::load(Some(&b), Vec::<Vec<u8>>::new()).expect("loads");
    assert!(other
        .is_noop(&check.snapshot().expect("snapshot"))
        .expect("decodes"));
    pieces.len()
}

/// Offline work: scattered inserts and deletions, a long paste, emoji,
/// another client's edits on top, map values and a long array.
fn offline_work(rng: &mut Rng) -> (Doc, Doc) {
    let server = client(1);
    insert(&server, 0, "Plan du chapitre.\n");
    let a = client(2);
    apply(&a, &state(&server));
    for i in 0..600u32 {
        let len = text_len(&a);
        if i % 7 == 3 && len > 5 {
            let at = boundary(&a, rng, 1);
            remove(&a, at, width_at(&a, at));
        } else {
            let word = ["phrase ", "é", "😀😀", "\n", "mot "][i as usize % 5];
            insert(&a, boundary(&a, rng, 0), word);
        }
    }
    insert(&a, 0, &"Lorem ipsum dolor sit amet, é😀. ".repeat(400));
    let list = a.get_or_insert_array("list");
    let meta = a.get_or_insert_map("meta");
    {
        let mut txn = a.transact_mut();
        for i in 0..3_000 {
            list.push_back(&mut txn, Any::from(format!("valeur {i}")));
        }
        meta.insert(&mut txn, "title", "Notes");
        meta.insert(
            &mut txn,
            "nested",
            MapPrelim::from_iter([("k", Any::from(1))]),
        );
    }
    // Another client builds on it.
    let b = client(3);
    apply(&b, &state(&a));
    for _ in 0..50 {
        insert(&b, boundary(&b, rng, 0), "B");
    }
    apply(&a, &state(&b));
    (server, a)
}

#[test]
fn a_large_update_is_cut_into_pieces_that_integrate_one_by_one() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (server, a) = offline_work(&mut rng);
    let sv = server.transact().state_vector();
    let step2 = a.transact().encode_state_as_update_v1(&sv);
    assert!(step2.len() > 50_000, "{}", step2.len());
    for max in [61_440, 8_000, 600] {
        let pieces = split_and_check(&server, &step2, max);
        assert!(pieces >= step2.len() / max, "{pieces} pieces for {max}");
    }
    // From nothing: the whole state.
    let full = state(&a);
    split_and_check(&Doc::new(), &full, 2_000);
}

#[test]
fn text_is_cut_at_character_boundaries() {
    let a = client(1);
    insert(&a, 0, &"é😀ab".repeat(2_000));
    let update = state(&a);
    // Room for about 40 bytes of text per piece.
    split_and_check(&Doc::new(), &update, 80);
    // An item split right after a surrogate pair's high half, at the end
    // of a client's run: yrs keeps the whole character on the left (now
    // deleted) and writes the right half as an empty string, a block of
    // length 0, which the cut keeps.
    let b = client(2);
    insert(&b, 0, "ab😀");
    let server = Doc::new();
    apply(&server, &state(&b));
    apply(&server, &delete_only(&[(2, 0, 3)]));
    let odd = state(&server);
    let shape = scan::update(&odd).expect("scans");
    assert!(shape.blocks.iter().any(|b| b.len == 0), "{shape:?}");
    split_and_check(&Doc::new(), &odd, 40);
}

#[test]
fn what_cannot_be_cut_is_refused() {
    let a = client(1);
    let list = a.get_or_insert_array("list");
    let update = {
        let mut txn = a.transact_mut();
        list.push_back(&mut txn, Any::from("x".repeat(5_000)));
        txn.encode_update_v1()
    };
    let shape = scan::update(&update).expect("scans");
    let order = plan(&shape, |_| 0).expect("integrates");
    assert_eq!(split(&update, &shape, &order, 2_000), Err(TooLarge));
    assert_eq!(
        split(&update, &shape, &order, 6_000).map(|p| p.len()),
        Ok(1)
    );
}

#[test]
fn a_large_delete_set_gets_pieces_of_its_own() {
    let a = client(1);
    insert(&a, 0, &"ab".repeat(5_000));
    // Every other character deleted: 5,000 ranges.
    for i in 0..5_000u32 {
        remove(&a, 5_000 - i - 1 + (5_000 - i - 1), 1);
    }
    let update = state(&a);
    let shape = scan::update(&update).expect("scans");
    assert!(shape.deletes.len() > 1_000, "{}", shape.deletes.len());
    let pieces = split_and_check(&Doc::new(), &update, 3_000);
    assert!(pieces > 3, "{pieces}");
}

// ------------------------------------------------------------ measurement

/// Time of the integration check (run in release):
/// `cargo test --release --lib notes::integrity_tests::check_figures -- --ignored --nocapture`
#[test]
#[ignore]
fn check_figures() {
    use std::time::Instant;

    let mut rng = Rng(7);
    // A 4 MiB note: clients one after the other, each starting from the
    // last one's state and typing words at scattered places (so items
    // refer to other clients' items), with some deletions and a paste.
    let mut last = client(1);
    insert(&last, 0, &"Lorem ipsum dolor sit amet. ".repeat(2_000));
    let mut id = 2;
    while state(&last).len() < 4 << 20 {
        let doc = client(id);
        apply(&doc, &state(&last));
        // Near the start of the text (yrs walks the text from its start to
        // find a position: anywhere in 4 MiB would take hours to build).
        for _ in 0..4_000 {
            let len = text_len(&doc);
            let at = rng.below(u64::from(len.min(3_000))) as u32;
            insert(&doc, at, "mot ");
            if rng.below(4) == 0 && at > 0 {
                remove(&doc, at - 1, 1);
            }
        }
        last = doc;
        id += 1;
    }
    let docs = [last];
    let big = state(&docs[0]);
    let empty = StateVector::default();
    let t = Instant::now();
    let shape = scan::update(&big).expect("scans");
    let scanned = t.elapsed();
    let t = Instant::now();
    let order = plan(&shape, |c| empty.get(&c)).expect("integrates");
    let planned = t.elapsed();
    let t = Instant::now();
    let pieces = split(&big, &shape, &order, 61_440).expect("splits");
    let cut = t.elapsed();
    let t = Instant::now();
    let limits = super::Limits {
        max_update_bytes: usize::MAX,
        max_doc_bytes: usize::MAX,
    };
    let _ = super::Vetted::new(big.clone(), &limits).expect("vets");
    let vetted = t.elapsed();
    eprintln!(
        "{} bytes, {} blocks, {} deletions: scan {scanned:?}, check {planned:?}, cut into {} pieces {cut:?}; vetting (scan, yrs decode, trial) {vetted:?}",
        big.len(),
        shape.blocks.len(),
        shape.deletes.len(),
        pieces.len()
    );
    // Typing: one character into that note.
    let server = Doc::new();
    apply(&server, &big);
    let sv = server.transact().state_vector();
    let typing = insert(&docs[0], 10, "a");
    let runs = 10_000;
    let t = Instant::now();
    for _ in 0..runs {
        let shape = scan::update(&typing).expect("scans");
        plan(&shape, |c| sv.get(&c)).expect("integrates");
    }
    eprintln!(
        "typing ({} bytes): scan + check {:?} per update",
        typing.len(),
        t.elapsed() / runs
    );
}
