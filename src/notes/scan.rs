//! A bounds checker that walks client payloads the way yrs's v1 decoders
//! will, before yrs sees them (why: see the module comment of `notes`).
//!
//! It decodes nothing into memory: it only proves that every count fits in
//! the bytes that follow (so yrs's up-front `with_capacity` stays small),
//! that strings are UTF-8 (yrs uses `from_utf8_unchecked`), that nesting is
//! shallow (yrs recurses), that integers fit the type yrs reads them into
//! (yrs wraps silently where JS would not) and that the content is something
//! JS Yjs reads the same way (the server relays it to JS clients). Being
//! stricter than yrs is the point: a refused update is not applied anywhere.

use yrs::encoding::read::{Cursor, Read};

/// The payload is malformed; callers turn it into their own error.
#[derive(Debug)]
pub(super) struct Malformed;

type Scan<T = ()> = Result<T, Malformed>;

/// y-protocols message types (lib0 varuint tags) we accept.
const MSG_SYNC: u32 = 0;
const MSG_AWARENESS: u32 = 1;
const MSG_QUERY_AWARENESS: u32 = 3;
const SYNC_STEP1: u32 = 0;
const SYNC_STEP2: u32 = 1;
const SYNC_UPDATE: u32 = 2;

/// Nesting allowed inside `Any` values (arrays and maps). JSON-like values
/// of real editors are a few levels deep; yrs decodes them recursively.
const MAX_ANY_DEPTH: usize = 64;

/// One message as y-websocket frames it; the update payloads of step 2 and
/// update are checked later, by [`update`], when they are vetted.
pub(super) fn message(data: &[u8]) -> Scan {
    let mut r = Reader::new(data);
    match r.u32()? {
        MSG_SYNC => {
            let kind = r.u32()?;
            let payload = r.bytes()?;
            r.end()?;
            match kind {
                SYNC_STEP1 => state_vector(payload),
                SYNC_STEP2 | SYNC_UPDATE => Ok(()),
                _ => Err(Malformed),
            }
        }
        MSG_AWARENESS => {
            let payload = r.bytes()?;
            r.end()?;
            awareness(payload)
        }
        MSG_QUERY_AWARENESS => r.end(),
        // 2 (auth) is refused: préau authenticates its own way.
        _ => Err(Malformed),
    }
}

/// A state vector as `StateVector::decode_v1` reads it: a u32 count, then
/// (client, clock) pairs.
fn state_vector(data: &[u8]) -> Scan {
    let mut r = Reader::new(data);
    let len = r.count(2)?;
    for _ in 0..len {
        r.u64()?;
        r.u32()?;
    }
    r.end()
}

/// An awareness update as `AwarenessUpdate::decode_v1` reads it: a count,
/// then (client, clock, JSON string) triples.
pub(super) fn awareness(data: &[u8]) -> Scan {
    let mut r = Reader::new(data);
    let len = r.count(3)?;
    for _ in 0..len {
        r.u64()?;
        r.u32()?;
        r.str()?;
    }
    r.end()
}

// Block info bits and content refs of the v1 update format (Yjs
// `structs/Item.js`, yrs `block.rs`).
const BLOCK_GC: u8 = 0;
const BLOCK_SKIP: u8 = 10;
const HAS_ORIGIN: u8 = 0x80;
const HAS_RIGHT_ORIGIN: u8 = 0x40;
const HAS_PARENT_SUB: u8 = 0x20;
/// Content refs are 5 bits in Yjs but yrs reads 4: refs 16-31 (which do not
/// exist) would be misread by yrs, so the bit must be clear.
const CONTENT_REF_HIGH_BIT: u8 = 0x10;
const CONTENT_DELETED: u8 = 1;
const CONTENT_BINARY: u8 = 3;
const CONTENT_STRING: u8 = 4;
const CONTENT_EMBED: u8 = 5;
const CONTENT_FORMAT: u8 = 6;
const CONTENT_TYPE: u8 = 7;
const CONTENT_ANY: u8 = 8;
// Refused on purpose: 2 (legacy JSON: yrs 0.25 reads one string more than
// Yjs writes, so the two would disagree), 9 (sub-documents: not used by
// notes, and each would become a yrs `Doc`), 11 (yrs-only "move", which JS
// clients cannot decode).

// Shared type refs inside `CONTENT_TYPE` that both Yjs and yrs read the
// same way. 5 (XmlHook) is refused: Yjs writes a key after it, yrs reads none.
const TYPE_ARRAY: u8 = 0;
const TYPE_MAP: u8 = 1;
const TYPE_TEXT: u8 = 2;
const TYPE_XML_ELEMENT: u8 = 3;
const TYPE_XML_FRAGMENT: u8 = 4;
const TYPE_XML_TEXT: u8 = 6;

/// What [`update`] learned that needs the real document to judge.
#[derive(Debug, Default)]
pub(super) struct Refs {
    /// Ids of the items named as parents (`TypePtr::ID` in yrs): yrs
    /// fails midway through an update whose parent item is not a shared
    /// type, after merging the blocks before it.
    pub parents: Vec<(u64, u32)>,
    /// The update's own blocks: (client, first clock, end clock, whether
    /// it may be a parent: a shared type, deleted content or GC).
    pub blocks: Vec<(u64, u32, u32, bool)>,
}

/// A Yjs v1 update as `Update::decode_v1` reads it: per client a run of
/// blocks, then the delete set. Also refuses what yrs would accept but
/// mishandle: a client listed twice, clocks past u32, zero-length GC, skip
/// and delete ranges (none of which Yjs writes), and trailing bytes.
pub(super) fn update(data: &[u8]) -> Scan<Refs> {
    let mut r = Reader::new(data);
    let mut refs = Refs::default();
    // Each client section is at least 3 bytes (count, client, clock).
    let clients = r.count(3)?;
    // Bounded by the count check: at most len/3 entries.
    let mut seen = Vec::with_capacity(clients);
    for _ in 0..clients {
        // Every block is at least 2 bytes (info and one more).
        let blocks = r.count(2)?;
        let client = u64::from(r.u32()?);
        if seen.contains(&client) {
            return Err(Malformed);
        }
        seen.push(client);
        let mut clock = r.u32()?;
        for _ in 0..blocks {
            let (len, kind) = block(&mut r, &mut refs, (client, clock))?;
            let end = clock.checked_add(len).ok_or(Malformed)?;
            if let Some(may_be_parent) = kind {
                refs.blocks.push((client, clock, end, may_be_parent));
            }
            clock = end;
        }
    }
    delete_set(&mut r)?;
    r.end()?;
    Ok(refs)
}

/// One block with id `at`; returns how many clock ticks it covers (0 for
/// items yrs drops because their content is empty) and, unless it is a
/// skip, whether it may be a parent.
fn block(r: &mut Reader, refs: &mut Refs, at: (u64, u32)) -> Scan<(u32, Option<bool>)> {
    let info = r.u8()?;
    match info {
        BLOCK_GC => Ok((nonzero(r.u32()?)?, Some(true))),
        BLOCK_SKIP => Ok((nonzero(r.u32()?)?, None)),
        _ => {
            if info & HAS_ORIGIN != 0 {
                earlier(r.id()?, at)?;
            }
            if info & HAS_RIGHT_ORIGIN != 0 {
                earlier(r.id()?, at)?;
            }
            if info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN) == 0 {
                // No origin to copy the parent from: the parent is written.
                if r.u32()? == 1 {
                    r.str()?; // a root type's name
                } else {
                    // The id of the item holding the parent type.
                    let parent = r.id()?;
                    earlier(parent, at)?;
                    refs.parents.push(parent);
                }
                if info & HAS_PARENT_SUB != 0 {
                    r.str()?; // the map key
                }
            }
            if info & CONTENT_REF_HIGH_BIT != 0 {
                return Err(Malformed);
            }
            let kind = info & 0x0f;
            let len = content(r, kind)?;
            Ok((len, Some(matches!(kind, CONTENT_TYPE | CONTENT_DELETED))))
        }
    }
}

/// Item content; returns its length in clock ticks (UTF-16 units for text).
fn content(r: &mut Reader, kind: u8) -> Scan<u32> {
    match kind {
        CONTENT_DELETED => r.u32(),
        CONTENT_BINARY => {
            r.bytes()?;
            Ok(1)
        }
        CONTENT_STRING => {
            let text = r.str()?;
            u32::try_from(text.encode_utf16().count()).map_err(|_| Malformed)
        }
        CONTENT_EMBED => {
            r.str()?; // JSON, parsed (depth-limited) by serde_json in yrs
            Ok(1)
        }
        CONTENT_FORMAT => {
            r.str()?; // key
            r.str()?; // JSON value
            Ok(1)
        }
        CONTENT_TYPE => {
            // yrs reads the type ref as one byte, Yjs as a varuint: the
            // same for the values allowed here.
            match r.u8()? {
                TYPE_ARRAY | TYPE_MAP | TYPE_TEXT | TYPE_XML_FRAGMENT | TYPE_XML_TEXT => {}
                TYPE_XML_ELEMENT => {
                    r.str()?; // node name
                }
                _ => return Err(Malformed),
            }
            Ok(1)
        }
        CONTENT_ANY => {
            let len = r.count(1)?;
            for _ in 0..len {
                any(r, 0)?;
            }
            u32::try_from(len).map_err(|_| Malformed)
        }
        _ => Err(Malformed),
    }
}

/// One lib0 `Any` value (`Any::decode`).
fn any(r: &mut Reader, depth: usize) -> Scan {
    if depth > MAX_ANY_DEPTH {
        return Err(Malformed);
    }
    match r.u8()? {
        // undefined, null, false, true
        127 | 126 | 121 | 120 => Ok(()),
        125 => r.skip_signed(),
        124 => r.skip(4),
        123 | 122 => r.skip(8),
        119 => r.str().map(|_| ()),
        118 => {
            // Each entry is at least a 1-byte key and a 1-byte value.
            let len = r.count_u64(2)?;
            for _ in 0..len {
                r.str()?;
                any(r, depth + 1)?;
            }
            Ok(())
        }
        117 => {
            let len = r.count_u64(1)?;
            for _ in 0..len {
                any(r, depth + 1)?;
            }
            Ok(())
        }
        116 => r.bytes().map(|_| ()),
        _ => Err(Malformed),
    }
}

/// The delete set (`IdSet::decode`): per client, ranges of (clock, len).
fn delete_set(r: &mut Reader) -> Scan {
    let clients = r.count(2)?;
    for _ in 0..clients {
        r.u32()?;
        let ranges = r.count(2)?;
        for _ in 0..ranges {
            let clock = r.u32()?;
            let len = nonzero(r.u32()?)?;
            clock.checked_add(len).ok_or(Malformed)?;
        }
    }
    Ok(())
}

/// An item can only refer (origin, right origin, parent) to an item that
/// existed when it was created: of its own client, an earlier clock. yrs
/// checks that the referred item is present only for other clients, and
/// panics (division by zero, index underflow in `find_pivot`) on a
/// reference to its own client's future.
fn earlier(id: (u64, u32), at: (u64, u32)) -> Scan {
    if id.0 == at.0 && id.1 >= at.1 {
        Err(Malformed)
    } else {
        Ok(())
    }
}

fn nonzero(len: u32) -> Scan<u32> {
    if len == 0 {
        Err(Malformed)
    } else {
        Ok(len)
    }
}

/// lib0 reading on yrs's own cursor, with range checks on top.
struct Reader<'a> {
    cursor: Cursor<'a>,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader {
            cursor: Cursor::new(data),
        }
    }

    fn remaining(&self) -> usize {
        self.cursor.buf.len().saturating_sub(self.cursor.next)
    }

    fn end(&self) -> Scan {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    fn u8(&mut self) -> Scan<u8> {
        self.cursor.read_u8().map_err(|_| Malformed)
    }

    fn skip(&mut self, len: usize) -> Scan {
        self.cursor
            .read_exact(len)
            .map(|_| ())
            .map_err(|_| Malformed)
    }

    /// A varuint read with at most `max_bytes` bytes. yrs's readers accept
    /// up to 10 bytes and wrap the excess bits into the value, so a longer
    /// encoding would make yrs and JS disagree on the number.
    fn varuint(&mut self, max_bytes: usize) -> Scan<u64> {
        let start = self.cursor.next;
        let value: u64 = self.cursor.read_var().map_err(|_| Malformed)?;
        if self.cursor.next - start > max_bytes {
            return Err(Malformed);
        }
        Ok(value)
    }

    /// An item id in an update: (client, clock), both read as u32 by yrs.
    fn id(&mut self) -> Scan<(u64, u32)> {
        Ok((u64::from(self.u32()?), self.u32()?))
    }

    /// A field yrs reads as u32 (counts, client ids in updates, clocks).
    fn u32(&mut self) -> Scan<u32> {
        u32::try_from(self.varuint(5)?).map_err(|_| Malformed)
    }

    /// A field yrs reads as u64 (client ids in state vectors and awareness).
    /// JS client ids are below 2^53: 8 bytes suffice, 9 leave no wrapping.
    fn u64(&mut self) -> Scan<u64> {
        self.varuint(9)
    }

    /// A u32 count of items each at least `min_bytes` long: more than the
    /// bytes left is a lie that would make yrs reserve memory for nothing.
    fn count(&mut self, min_bytes: usize) -> Scan<usize> {
        let len = self.u32()? as usize;
        self.bounded(len, min_bytes)
    }

    /// Same for counts yrs reads as usize (`Any` maps and arrays).
    fn count_u64(&mut self, min_bytes: usize) -> Scan<usize> {
        let len = usize::try_from(self.u64()?).map_err(|_| Malformed)?;
        self.bounded(len, min_bytes)
    }

    fn bounded(&self, len: usize, min_bytes: usize) -> Scan<usize> {
        if len
            .checked_mul(min_bytes)
            .is_some_and(|n| n <= self.remaining())
        {
            Ok(len)
        } else {
            Err(Malformed)
        }
    }

    /// A signed varint (lib0 `writeVarInt`); yrs's reader overflows its
    /// shift past 10 bytes, and JS numbers need at most 9.
    fn skip_signed(&mut self) -> Scan {
        for _ in 0..10 {
            if self.u8()? < 0x80 {
                return Ok(());
            }
        }
        Err(Malformed)
    }

    fn bytes(&mut self) -> Scan<&'a [u8]> {
        let len = self.u32()? as usize;
        let start = self.cursor.next;
        let end = start.checked_add(len).ok_or(Malformed)?;
        let buf: &'a [u8] = self.cursor.buf;
        let slice = buf.get(start..end).ok_or(Malformed)?;
        self.cursor.next = end;
        Ok(slice)
    }

    fn str(&mut self) -> Scan<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Malformed)
    }
}
