//! Cuts an update that integrates completely into smaller updates that
//! integrate completely one after the other, each at most a given size
//! (a 4.2 MB note state into 110 pieces of 60 KiB: 5 ms, measured in
//! `integrity_tests.rs`).
//!
//! Why: an accepted update becomes one event, relayed to every member and
//! counted against their outbound budget; offline work sent as one sync
//! step 2 (in parts, up to `note_max_bytes`) must still become events of at
//! most `note_max_update_bytes`. The v1 format allows this without yrs:
//! each block is written on its own (absolute ids, no reference to the
//! block before it but its clock), so a client's run of blocks can be cut
//! between blocks, and a long item (text, JSON values, deleted content,
//! GC) can be cut inside as Yjs cuts items itself: the right part starts
//! one clock later, with the left part's last id as origin and the same
//! right origin (its parent is copied from the origin). Pieces follow the
//! integration order of [`Plan`], so each one's dependencies are in the
//! document or in earlier pieces; the delete set comes last.

use std::collections::BTreeMap;

use super::integrate::Plan;
use super::scan::{self, Block, Shape};

/// Something in the update cannot be cut to the size asked: one value
/// (binary, embed, format, a single JSON value, a type) or an item's
/// header is larger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge;

/// Bytes a piece may need besides its blocks' own: the client count, and
/// per client section its block count, client and clock (5 bytes each at
/// most), a skip (1 + 5), and the empty delete set.
const PIECE_OVERHEAD: usize = 5 + 1;
const SECTION_OVERHEAD: usize = 15 + 6;

/// The pieces, in order. `max` is the largest piece; each is a valid v1
/// update that integrates completely once the earlier ones did.
pub(super) fn split(
    update: &[u8],
    shape: &Shape,
    plan: &Plan,
    max: usize,
) -> Result<Vec<Vec<u8>>, TooLarge> {
    let mut out = Pieces::new(max);
    for &index in &plan.order {
        let block = &shape.blocks[index as usize];
        let bytes = &update[block.start as usize..block.end as usize];
        if out.fits(block.client, bytes.len()) {
            out.push(block.client, block.clock, block.len, bytes);
            continue;
        }
        out.close();
        if out.fits(block.client, bytes.len()) {
            out.push(block.client, block.clock, block.len, bytes);
            continue;
        }
        // Larger than a piece on its own: cut it.
        for (clock, len, bytes) in cut(update, block, max)? {
            if !out.fits(block.client, bytes.len()) {
                out.close();
            }
            out.push(block.client, clock, len, &bytes);
        }
    }
    out.deletes(&shape.deletes)?;
    Ok(out.finish())
}

/// Pieces under construction.
struct Pieces {
    max: usize,
    done: Vec<Vec<u8>>,
    /// The open piece: per client (in first-use order) its first clock,
    /// the clock after its last block, its block count and bytes.
    sections: Vec<Section>,
    size: usize,
}

struct Section {
    client: u32,
    first: u32,
    next: u32,
    count: u32,
    body: Vec<u8>,
}

impl Pieces {
    fn new(max: usize) -> Pieces {
        Pieces {
            max,
            done: Vec::new(),
            sections: Vec::new(),
            size: PIECE_OVERHEAD,
        }
    }

    /// Whether a block of `len` bytes of `client` fits in the open piece.
    fn fits(&self, client: u32, len: usize) -> bool {
        let section = if self.sections.iter().any(|s| s.client == client) {
            6 // a skip at most
        } else {
            SECTION_OVERHEAD
        };
        self.size + section + len <= self.max
    }

    fn push(&mut self, client: u32, clock: u32, len: u32, bytes: &[u8]) {
        let section = match self.sections.iter().position(|s| s.client == client) {
            Some(i) => &mut self.sections[i],
            None => {
                self.size += SECTION_OVERHEAD - 6;
                self.sections.push(Section {
                    client,
                    first: clock,
                    next: clock,
                    count: 0,
                    body: Vec::new(),
                });
                let last = self.sections.len() - 1;
                &mut self.sections[last]
            }
        };
        // A run cut by blocks of other pieces, or a skip in the original
        // run: the clocks in between are already in the document.
        if clock != section.next {
            section.body.push(SKIP);
            var(
                &mut section.body,
                u64::from(clock.wrapping_sub(section.next)),
            );
            section.count += 1;
        }
        section.body.extend_from_slice(bytes);
        section.count += 1;
        section.next = clock + len;
        self.size += 6 + bytes.len();
    }

    /// Ends the open piece (if it holds anything).
    fn close(&mut self) {
        if self.sections.is_empty() {
            return;
        }
        let mut piece = Vec::with_capacity(self.size);
        var(&mut piece, self.sections.len() as u64);
        for section in self.sections.drain(..) {
            var(&mut piece, u64::from(section.count));
            var(&mut piece, u64::from(section.client));
            var(&mut piece, u64::from(section.first));
            piece.extend_from_slice(&section.body);
        }
        piece.push(0); // no deletions
        self.done.push(piece);
        self.size = PIECE_OVERHEAD;
    }

    /// The delete set: appended to the last piece if it fits there, else
    /// in pieces of its own (no blocks), per client ranges in clock order.
    fn deletes(&mut self, deletes: &[(u32, u32, u32)]) -> Result<(), TooLarge> {
        self.close();
        if deletes.is_empty() {
            return Ok(());
        }
        let mut by_client: BTreeMap<u32, Vec<(u32, u32)>> = BTreeMap::new();
        for &(client, start, end) in deletes {
            by_client.entry(client).or_default().push((start, end));
        }
        // (client, ranges) groups of the piece being filled, and its size.
        let mut groups: Vec<(u32, Vec<u8>, u32)> = Vec::new();
        let mut size = 1 + 5;
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        for (client, mut ranges) in by_client {
            ranges.sort_unstable();
            for (start, end) in ranges {
                let mut range = Vec::with_capacity(10);
                var(&mut range, u64::from(start));
                var(&mut range, u64::from(end - start));
                let new_group = groups.last().is_none_or(|g| g.0 != client);
                let cost = range.len() + if new_group { 10 } else { 0 };
                if size + cost > self.max {
                    if groups.is_empty() {
                        return Err(TooLarge);
                    }
                    pieces.push(encode_deletes(&groups));
                    groups.clear();
                    size = 1 + 5;
                }
                match groups.last_mut() {
                    Some(group) if group.0 == client => {
                        group.1.extend_from_slice(&range);
                        group.2 += 1;
                        size += range.len();
                    }
                    _ => {
                        groups.push((client, range.clone(), 1));
                        size += range.len() + 10;
                    }
                }
            }
        }
        if !groups.is_empty() {
            pieces.push(encode_deletes(&groups));
        }
        // The first group of deletions may ride on the last block piece.
        if let (Some(last), Some(first)) = (self.done.last_mut(), pieces.first()) {
            if last.len() - 1 + first.len() - 1 <= self.max {
                last.pop(); // its empty delete set
                last.extend_from_slice(&first[1..]); // without the 0 blocks
                pieces.remove(0);
            }
        }
        self.done.extend(pieces);
        Ok(())
    }

    fn finish(mut self) -> Vec<Vec<u8>> {
        self.close();
        self.done
    }
}

/// A blockless update with these deletions: (client, ranges bytes, count).
fn encode_deletes(groups: &[(u32, Vec<u8>, u32)]) -> Vec<u8> {
    let mut out = vec![0];
    var(&mut out, groups.len() as u64);
    for (client, ranges, count) in groups {
        var(&mut out, u64::from(*client));
        var(&mut out, u64::from(*count));
        out.extend_from_slice(ranges);
    }
    out
}

const SKIP: u8 = 10;
const HAS_ORIGIN: u8 = 0x80;
const HAS_RIGHT_ORIGIN: u8 = 0x40;
const CONTENT_STRING: u8 = 4;
const CONTENT_ANY: u8 = 8;

/// Cuts one block into parts that each fit in an empty piece: (clock,
/// len, bytes) each. Only long content needs it (text, JSON values): GC
/// and deleted content are a few bytes whatever their length.
fn cut(update: &[u8], block: &Block, max: usize) -> Result<Vec<(u32, u32, Vec<u8>)>, TooLarge> {
    let header = &update[block.start as usize..block.content as usize];
    let content = &update[block.content as usize..block.end as usize];
    // The parts after the first: origin = the previous part's last id,
    // the same right origin, no parent (copied from the origin).
    let right = right_origin(header);
    let next_header = |origin_clock: u32| {
        let mut h = vec![block.info | HAS_ORIGIN];
        var(&mut h, u64::from(block.client));
        var(&mut h, u64::from(origin_clock));
        if let Some(right) = right {
            h.extend_from_slice(right);
        }
        h
    };
    // Room for one part's content: the largest header of any part is the
    // first's or 21 bytes (info, two ids of 10 bytes at most).
    let room = max
        .checked_sub(PIECE_OVERHEAD + SECTION_OVERHEAD + header.len().max(21))
        .ok_or(TooLarge)?;
    let chunks = match block.content_ref() {
        CONTENT_STRING => string_chunks(content, room)?,
        CONTENT_ANY => any_chunks(content, room)?,
        _ => return Err(TooLarge),
    };
    let mut parts = Vec::with_capacity(chunks.len());
    let mut clock = block.clock;
    for (len, content) in chunks {
        let mut bytes = if clock == block.clock {
            header.to_vec()
        } else {
            next_header(clock - 1)
        };
        bytes.extend_from_slice(&content);
        parts.push((clock, len, bytes));
        clock += len;
    }
    Ok(parts)
}

/// The bytes of the right origin id in an item's header, if it has one.
fn right_origin(header: &[u8]) -> Option<&[u8]> {
    let info = *header.first()?;
    if info & HAS_RIGHT_ORIGIN == 0 {
        return None;
    }
    let mut at = 1;
    let skip_var = |at: &mut usize| {
        while *header.get(*at)? >= 0x80 {
            *at += 1;
        }
        *at += 1;
        Some(())
    };
    if info & HAS_ORIGIN != 0 {
        skip_var(&mut at)?;
        skip_var(&mut at)?;
    }
    let from = at;
    skip_var(&mut at)?;
    skip_var(&mut at)?;
    header.get(from..at)
}

/// A string's content (`varuint(bytes) utf8`) cut at character boundaries
/// into chunks of at most `room` bytes: (UTF-16 length, encoded content).
fn string_chunks(content: &[u8], room: usize) -> Result<Vec<(u32, Vec<u8>)>, TooLarge> {
    let text = scan::string_content(content).ok_or(TooLarge)?;
    let room = room.checked_sub(5).ok_or(TooLarge)?;
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut units = 0u32;
    for (at, ch) in text.char_indices() {
        if at + ch.len_utf8() - start > room {
            if at == start {
                return Err(TooLarge);
            }
            chunks.push((units, encode_str(&text[start..at])));
            start = at;
            units = 0;
        }
        units += ch.len_utf16() as u32;
    }
    chunks.push((units, encode_str(&text[start..])));
    Ok(chunks)
}

fn encode_str(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 5);
    var(&mut out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
    out
}

/// JSON-like values (`varuint(count) any*`) in chunks of at most `room`
/// bytes: (count, encoded content).
fn any_chunks(content: &[u8], room: usize) -> Result<Vec<(u32, Vec<u8>)>, TooLarge> {
    let values = scan::any_values(content).ok_or(TooLarge)?;
    let room = room.checked_sub(5).ok_or(TooLarge)?;
    let mut chunks = Vec::new();
    let mut first = 0;
    while first < values.len() {
        let mut last = first;
        let from = values[first].0;
        while last < values.len() && values[last].1 - from <= room {
            last += 1;
        }
        if last == first {
            return Err(TooLarge);
        }
        let mut out = Vec::new();
        var(&mut out, (last - first) as u64);
        out.extend_from_slice(&content[from..values[last - 1].1]);
        chunks.push(((last - first) as u32, out));
        first = last;
    }
    Ok(chunks)
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
