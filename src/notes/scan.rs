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

/// What [`update`] learned of an update's structure: enough to judge it
/// against a document's state (the parent-type check in `doc.rs`, the
/// integration check in `integrate.rs`) and to cut it into smaller updates
/// (`split.rs`), without decoding it again.
///
/// Kept compact (a block is 28 bytes) because a note-sized update (4 MiB,
/// sent in parts) can hold hundreds of thousands of blocks.
#[derive(Debug, Default)]
pub(super) struct Shape {
    /// Every block, client section after client section in wire order.
    pub blocks: Vec<Block>,
    /// Client sections: (client, index of the first block, index past the
    /// last), in wire order.
    pub sections: Vec<(u32, u32, u32)>,
    /// Items of *other* clients the blocks refer to (origin, right origin,
    /// parent): a block's are `deps[block.deps..next block's deps]`.
    pub deps: Vec<(u32, u32)>,
    /// Ids of the items named as parents (`TypePtr::ID` in yrs): yrs
    /// fails midway through an update whose parent item is not a shared
    /// type, after merging the blocks before it.
    pub parents: Vec<(u64, u32)>,
    /// The delete set: (client, first clock, end clock), in wire order.
    pub deletes: Vec<(u32, u32, u32)>,
}

/// One block of an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Block {
    pub client: u32,
    pub clock: u32,
    /// Clock ticks covered (0 only for an empty item).
    pub len: u32,
    /// Byte offsets in the update: where the block starts, where its
    /// content starts (after the info byte, origins and parent; `end` for
    /// GC and skips), where it ends.
    pub start: u32,
    pub content: u32,
    pub end: u32,
    /// [`BLOCK_GC`], [`BLOCK_SKIP`], or an item's info byte.
    pub info: u8,
    /// Index of its first entry in [`Shape::deps`].
    pub deps: u32,
}

impl Block {
    pub fn is_skip(&self) -> bool {
        self.info == BLOCK_SKIP
    }

    pub fn is_gc(&self) -> bool {
        self.info == BLOCK_GC
    }

    /// The item's content ref (`CONTENT_*`); 0 for GC and skips.
    pub fn content_ref(&self) -> u8 {
        if self.is_gc() || self.is_skip() {
            0
        } else {
            self.info & 0x0f
        }
    }

    /// Whether it may be a parent: a shared type, deleted content or GC
    /// (which yrs turns into garbage).
    pub fn may_be_parent(&self) -> bool {
        self.is_gc() || matches!(self.content_ref(), CONTENT_TYPE | CONTENT_DELETED)
    }
}

impl Shape {
    /// The entries of `deps` that block `index` needs.
    pub fn deps_of(&self, index: usize) -> &[(u32, u32)] {
        let from = self.blocks[index].deps as usize;
        let to = self
            .blocks
            .get(index + 1)
            .map_or(self.deps.len(), |b| b.deps as usize);
        &self.deps[from..to]
    }
}

/// A Yjs v1 update as `Update::decode_v1` reads it: per client a run of
/// blocks, then the delete set. Also refuses what yrs would accept but
/// mishandle: a client listed twice, clocks past u32, zero-length GC, skip
/// and delete ranges (none of which Yjs writes), updates of 4 GiB or more,
/// and trailing bytes.
///
/// Empty items are kept, as blocks of length 0: yrs writes them itself
/// (when it splits a string inside a surrogate pair, the right part's text
/// is empty) and drops them when reading, while JS keeps them; their
/// references must hold like any block's.
pub(super) fn update(data: &[u8]) -> Scan<Shape> {
    u32::try_from(data.len()).map_err(|_| Malformed)?;
    let mut r = Reader::new(data);
    let mut shape = Shape::default();
    // Each client section is at least 3 bytes (count, client, clock).
    let clients = r.count(3)?;
    // Bounded by the count checks: at most len/3 sections, len/2 blocks.
    shape.sections.reserve(clients);
    for _ in 0..clients {
        // Every block is at least 2 bytes (info and one more).
        let blocks = r.count(2)?;
        let client = r.u32()?;
        let first = shape.blocks.len() as u32;
        let mut clock = r.u32()?;
        shape.blocks.reserve(blocks);
        for _ in 0..blocks {
            let block = block(&mut r, &mut shape, client, clock)?;
            clock = clock.checked_add(block.len).ok_or(Malformed)?;
            shape.blocks.push(block);
        }
        shape
            .sections
            .push((client, first, shape.blocks.len() as u32));
    }
    // A client listed twice (sorting: a hostile update may list thousands).
    let mut seen: Vec<u32> = shape.sections.iter().map(|&(c, ..)| c).collect();
    seen.sort_unstable();
    if seen.windows(2).any(|w| w[0] == w[1]) {
        return Err(Malformed);
    }
    delete_set(&mut r, &mut shape.deletes)?;
    r.end()?;
    Ok(shape)
}

/// One block of `client` at `clock`.
fn block(r: &mut Reader, shape: &mut Shape, client: u32, clock: u32) -> Scan<Block> {
    let start = r.position()?;
    let deps = u32::try_from(shape.deps.len()).map_err(|_| Malformed)?;
    let info = r.u8()?;
    let at = (u64::from(client), clock);
    let foreign = |id: (u64, u32), shape: &mut Shape| -> Scan {
        earlier(id, at)?;
        if id.0 != at.0 {
            // Ids in updates are read as u32 (`Reader::id`).
            shape
                .deps
                .push((u32::try_from(id.0).map_err(|_| Malformed)?, id.1));
        }
        Ok(())
    };
    let (len, content) = match info {
        BLOCK_GC | BLOCK_SKIP => (nonzero(r.u32()?)?, None),
        _ => {
            if info & HAS_ORIGIN != 0 {
                foreign(r.id()?, shape)?;
            }
            if info & HAS_RIGHT_ORIGIN != 0 {
                foreign(r.id()?, shape)?;
            }
            if info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN) == 0 {
                // No origin to copy the parent from: the parent is written.
                if r.u32()? == 1 {
                    r.str()?; // a root type's name
                } else {
                    // The id of the item holding the parent type.
                    let parent = r.id()?;
                    foreign(parent, shape)?;
                    shape.parents.push(parent);
                }
                if info & HAS_PARENT_SUB != 0 {
                    r.str()?; // the map key
                }
            }
            if info & CONTENT_REF_HIGH_BIT != 0 {
                return Err(Malformed);
            }
            let at = r.position()?;
            (self::content(r, info & 0x0f)?, Some(at))
        }
    };
    let end = r.position()?;
    Ok(Block {
        client,
        clock,
        len,
        start,
        content: content.unwrap_or(end),
        end,
        info,
        deps,
    })
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

/// The text of a string item's content (`varuint(bytes) utf8`), for
/// cutting it; `None` if it is not one.
pub(super) fn string_content(content: &[u8]) -> Option<&str> {
    let mut r = Reader::new(content);
    let text = r.str().ok()?;
    r.end().ok()?;
    Some(text)
}

/// The byte ranges of each value of a JSON-like item's content
/// (`varuint(count) any*`), for cutting it; `None` if it is not one.
pub(super) fn any_values(content: &[u8]) -> Option<Vec<(usize, usize)>> {
    let mut r = Reader::new(content);
    let len = r.count(1).ok()?;
    let mut values = Vec::with_capacity(len);
    for _ in 0..len {
        let start = r.cursor.next;
        any(&mut r, 0).ok()?;
        values.push((start, r.cursor.next));
    }
    r.end().ok()?;
    Some(values)
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
/// A client listed twice is refused: yrs keeps only its last list where
/// JS Yjs applies both (Yjs never writes one twice).
fn delete_set(r: &mut Reader, deletes: &mut Vec<(u32, u32, u32)>) -> Scan {
    let clients = r.count(2)?;
    let mut seen = Vec::with_capacity(clients);
    for _ in 0..clients {
        let client = r.u32()?;
        seen.push(client);
        let ranges = r.count(2)?;
        deletes.reserve(ranges);
        for _ in 0..ranges {
            let clock = r.u32()?;
            let len = nonzero(r.u32()?)?;
            deletes.push((client, clock, clock.checked_add(len).ok_or(Malformed)?));
        }
    }
    seen.sort_unstable();
    if seen.windows(2).any(|w| w[0] == w[1]) {
        return Err(Malformed);
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

    /// The reader's byte offset (updates are below 4 GiB: checked first).
    fn position(&self) -> Scan<u32> {
        u32::try_from(self.cursor.next).map_err(|_| Malformed)
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
