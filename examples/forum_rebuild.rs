//! How long loading a forum spends rebuilding its thread index: decoding
//! N stored event frames and folding them (what `Hub::load_room` does for
//! a forum, minus the sled read).
//!
//!   cargo run --release --example forum_rebuild -- 10000

use std::time::Instant;

use preau::kinds::forum::index::Forum;
use preau::protocol::{self, Body, Event, Role, ServerFrame, UserInfo};

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let user = |i: u64| UserInfo {
        id: format!("u{}", i % 30),
        name: format!("Élève {}", i % 30),
        role: Role::Student,
    };
    // One thread per 20 posts; replies of ~200 bytes.
    let frames: Vec<_> = (1..=n)
        .map(|offset| {
            let thread = offset - (offset - 1) % 20;
            let body = if offset == thread {
                Body::Message {
                    text: "Une question sur le chapitre ?".into(),
                    title: Some(format!("Sujet {offset}")),
                    thread: None,
                    reply_to: None,
                    quote: None,
                }
            } else {
                Body::Message {
                    text: "x".repeat(200),
                    title: None,
                    thread: Some(thread),
                    reply_to: Some(offset - 1),
                    quote: None,
                }
            };
            protocol::event(&Event {
                room: "3B/forum/aide".into(),
                epoch: "e".into(),
                offset,
                ts: 1_800_000_000_000 + offset,
                from: user(offset),
                body,
            })
        })
        .collect();
    let start = Instant::now();
    let events: Vec<Event> = frames
        .iter()
        .filter_map(|f| match protocol::decode_server_frame(f) {
            Ok(ServerFrame::Event(e)) => Some(e),
            _ => None,
        })
        .collect();
    let decoded = start.elapsed();
    let forum = Forum::rebuild(&events);
    let total = start.elapsed();
    let (list, _) = forum.list(&Default::default(), &Default::default(), "u1", None, 30);
    println!(
        "{n} events: decode {:.1} ms, rebuild {:.1} ms, total {:.1} ms ({} threads listed)",
        decoded.as_secs_f64() * 1e3,
        (total - decoded).as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3,
        list.len()
    );
}
