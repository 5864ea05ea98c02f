//! The bare floor: a tokio-tungstenite broadcast server with no auth, no
//! persistence and no presence, speaking just enough of préau's protocol v1
//! (`hello`, `join`, `leave`, `post`, `ping`; `ok` and `event` frames) for
//! the load generator (`benches/loadgen/`) to drive it unchanged.
//!
//!   cargo bench -p preau-benches --bench peer_bare -- --listen 127.0.0.1:9002
//!
//! What it does per post: decode the request (préau's own decoder), assign
//! the room's next offset, encode the event frame once, queue the ack to the
//! poster and one clone of the frame (a refcount, no copy) per member. Each
//! connection's task writes what is queued for it and flushes once per
//! batch, like préau's connection loop. Buffers are sized like préau's
//! (`BARE_READ_BUFFER`, default 4 KiB read buffer, write buffer 0) so that
//! memory per connection compares the servers, not a buffer setting.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use preau::protocol::{
    self, Body, Event, HelloOk, Limits, PostOk, Request, Role, UserInfo, SUBPROTOCOL,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request as HsRequest, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Frames written before one flush at most (préau's `WRITE_BATCH`).
const WRITE_BATCH: usize = 64;

type Tx = mpsc::UnboundedSender<Bytes>;

#[derive(Default)]
struct Room {
    next: u64,
    members: HashMap<u64, Tx>,
}

#[derive(Default)]
struct Hub {
    rooms: Mutex<HashMap<String, Room>>,
    next_conn: AtomicU64,
}

fn main() {
    let mut listen: SocketAddr = "127.0.0.1:9002".parse().expect("default address");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                listen = args
                    .next()
                    .and_then(|a| a.parse().ok())
                    .expect("--listen HOST:PORT")
            }
            // `cargo bench` appends `--bench`.
            "--bench" => {}
            other => panic!("unknown argument {other:?} (expected --listen HOST:PORT)"),
        }
    }
    let read_buffer: usize = std::env::var("BARE_READ_BUFFER")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await.expect("bind");
        eprintln!(
            "peer_bare listening on {} (read buffer {read_buffer} B)",
            listener.local_addr().expect("local addr")
        );
        let hub = Arc::new(Hub::default());
        let config = WebSocketConfig::default()
            .read_buffer_size(read_buffer)
            .write_buffer_size(0)
            .max_message_size(Some(64 * 1024))
            .max_frame_size(Some(64 * 1024));
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    eprintln!("accept failed: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve(hub.clone(), stream, config));
        }
    });
}

async fn serve(hub: Arc<Hub>, stream: TcpStream, config: WebSocketConfig) {
    let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, echo_protocol, Some(config)).await
    else {
        return;
    };
    let conn = hub.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
    let user = UserInfo {
        id: format!("c{conn}"),
        name: format!("c{conn}"),
        role: Role::Student,
    };
    let mut joined: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            Some(first) = rx.recv() => {
                if ws.feed(Message::Binary(first)).await.is_err() {
                    break;
                }
                let mut count = 1;
                while count < WRITE_BATCH {
                    let Ok(frame) = rx.try_recv() else { break };
                    if ws.feed(Message::Binary(frame)).await.is_err() {
                        break;
                    }
                    count += 1;
                }
                if ws.flush().await.is_err() {
                    break;
                }
            }
            message = ws.next() => match message {
                Some(Ok(Message::Binary(frame))) => {
                    handle(&hub, conn, &tx, &user, &mut joined, &frame);
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
    }
    let mut rooms = hub.rooms.lock();
    for name in joined {
        if let Some(room) = rooms.get_mut(&name) {
            room.members.remove(&conn);
            if room.members.is_empty() {
                rooms.remove(&name);
            }
        }
    }
}

/// Answers the handshake with préau's subprotocol when the client offers it
/// (tungstenite's client refuses a reply without the protocol it asked for).
#[allow(clippy::result_large_err)] // the handshake callback's signature
fn echo_protocol(
    request: &HsRequest,
    mut response: Response,
) -> Result<Response, tokio_tungstenite::tungstenite::handshake::server::ErrorResponse> {
    let offered = request
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim() == SUBPROTOCOL));
    if offered {
        response.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    Ok(response)
}

fn handle(hub: &Hub, conn: u64, tx: &Tx, user: &UserInfo, joined: &mut Vec<String>, frame: &[u8]) {
    let Ok(request) = protocol::decode_request(frame) else {
        return;
    };
    let id = request.id();
    match request {
        Request::Hello { .. } => {
            let _ = tx.send(protocol::ok(
                id,
                &HelloOk {
                    user: user.clone(),
                    classes: vec![],
                    children: vec![],
                    node: "bare".to_owned(),
                    version: "0".to_owned(),
                    limits: Limits {
                        max_frame_bytes: 65536,
                        max_message_len: 4000,
                        max_rooms: 32,
                        history_page_max: 200,
                        ping_interval_ms: 25_000,
                    },
                },
            ));
        }
        Request::Join { room, .. } => {
            let head = {
                let mut rooms = hub.rooms.lock();
                let entry = rooms.entry(room.clone()).or_default();
                entry.members.insert(conn, tx.clone());
                entry.next
            };
            #[derive(serde::Serialize)]
            struct JoinData<'a> {
                room: &'a str,
                epoch: &'a str,
                head: u64,
                first: u64,
                members: [UserInfo; 0],
            }
            let reply = protocol::ok_with_events::<_, Bytes>(
                id,
                &JoinData {
                    room: &room,
                    epoch: "bare",
                    head,
                    first: head + 1,
                    members: [],
                },
                &[],
            );
            let _ = tx.send(reply);
            joined.push(room);
        }
        Request::Leave { room, .. } => {
            let mut rooms = hub.rooms.lock();
            if let Some(entry) = rooms.get_mut(&room) {
                entry.members.remove(&conn);
            }
            joined.retain(|r| r != &room);
            let _ = tx.send(protocol::ok_empty(id));
        }
        Request::Post { room, text, .. } => {
            let mut rooms = hub.rooms.lock();
            let Some(entry) = rooms.get_mut(&room) else {
                return;
            };
            entry.next += 1;
            let offset = entry.next;
            let ts = now_ms();
            let frame = protocol::event(&Event {
                room: room.clone(),
                epoch: "bare".to_owned(),
                offset,
                ts,
                from: user.clone(),
                body: Body::message(text),
            });
            let _ = tx.send(protocol::ok(
                id,
                &PostOk {
                    room: room.clone(),
                    epoch: "bare".to_owned(),
                    offset,
                    ts,
                },
            ));
            for member in entry.members.values() {
                let _ = member.send(frame.clone());
            }
        }
        Request::Ping { .. } | Request::Typing { .. } | Request::History { .. } => {
            let _ = tx.send(protocol::ok_empty(id));
        }
        // The floor has no moderation, forums or notes.
        _ => {
            let _ = tx.send(protocol::error(
                id,
                protocol::ErrorCode::UnknownType,
                "not supported",
            ));
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
