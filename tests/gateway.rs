//! The HTTP side and connection lifecycle: /healthz, /metrics (on
//! `metrics_listen`), the upgrade
//! checks (subprotocol, max_connections), idle timeout, graceful shutdown
//! and token expiry while connected.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use preau::client::{Client, ClientError};
use preau::protocol::{Body, ErrorCode, Request, Role};
use support::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const ROOM: &str = "3B/chat/gateway";

async fn ping(client: &mut Client) -> Result<rmpv::Value, ClientError> {
    client.request(Request::Ping { id: None }).await
}

/// Waits until the server ended the connection; its close code.
async fn closed_with(client: &mut Client) -> Option<u16> {
    tokio::time::timeout(WAIT, async { while client.next().await.is_some() {} })
        .await
        .expect("connection closed within WAIT");
    client.close_frame().map(|(code, _)| code)
}

/// Sum of a metric's values whose labels contain `label` (e.g. `code="forbidden"`).
async fn labeled(addr: SocketAddr, name: &str, label: &str) -> f64 {
    let (_, body) = http_get(metrics_addr(addr), "/metrics").await;
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `/metrics` until `name` satisfies `ok`; panics with the last value.
async fn wait_metric(addr: SocketAddr, name: &str, what: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let value = metric(addr, name).await;
        if ok(value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never became {what} (last {value})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A WebSocket upgrade through tungstenite with the given subprotocol
/// header; the HTTP response on refusal.
async fn upgrade(
    addr: SocketAddr,
    protocol: Option<&'static str>,
) -> Result<RawWs, tungstenite::http::Response<Option<Vec<u8>>>> {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    if let Some(protocol) = protocol {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) => Err(*response),
        Err(other) => panic!("upgrade failed without an HTTP response: {other}"),
    }
}

/// A WebSocket handshake written by hand, offering `protocol` (or no
/// subprotocol); returns the stream, the status, the response head and any
/// bytes read past it.
async fn hand_handshake(
    addr: SocketAddr,
    protocol: Option<&str>,
) -> (TcpStream, u16, String, Vec<u8>) {
    let stream = TcpStream::connect(addr).await.expect("tcp connect");
    ws_handshake_offering(stream, protocol, "").await
}

/// Server-to-client frames parsed from raw bytes: (opcode, payload).
/// Returns the frames complete so far and the bytes consumed.
fn parse_frames(bytes: &[u8]) -> (Vec<(u8, Vec<u8>)>, usize) {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        let rest = &bytes[at..];
        if rest.len() < 2 {
            break;
        }
        let opcode = rest[0] & 0x0f;
        assert_eq!(rest[1] & 0x80, 0, "server frames are not masked");
        let (len, header) = match rest[1] & 0x7f {
            126 if rest.len() >= 4 => (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            127 if rest.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&rest[2..10]);
                (usize::try_from(u64::from_be_bytes(n)).unwrap(), 10)
            }
            126 | 127 => break,
            n => (usize::from(n), 2),
        };
        if rest.len() < header + len {
            break;
        }
        frames.push((opcode, rest[header..header + len].to_vec()));
        at += header + len;
    }
    (frames, at)
}

#[tokio::test]
async fn healthz_and_metrics_reflect_traffic() {
    let server = TestServer::start().await;
    let addr = server.addr();
    // Staff opens the room and leaves it: nothing stays connected or loaded.
    server.open(&[ROOM]).await;
    let (status, body) = http_get(addr, "/healthz").await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = http_get(server.metrics_addr(), "/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "preau_connections",
        "preau_messages_in_total",
        "preau_messages_out_total",
        "preau_errors_total",
        "preau_queue_drops_total",
        "preau_slow_consumers_total",
        "preau_rooms",
    ] {
        assert!(
            body.lines()
                .any(|l| !l.starts_with('#') && l.split([' ', '{']).next() == Some(name)),
            "/metrics has no sample of {name}:\n{body}"
        );
    }
    assert_eq!(metric(addr, "preau_connections").await, 0.0);
    assert_eq!(metric(addr, "preau_rooms").await, 0.0);
    let in_before = metric(addr, "preau_messages_in_total").await;
    let out_before = metric(addr, "preau_messages_out_total").await;

    // N connected clients: the gauge says N.
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(server.connect(&student(&format!("s{i}"), "3B")).await.0);
    }
    wait_metric(addr, "preau_connections", "3", |v| v == 3.0).await;

    // Joining loads one room; a post is stored and delivered.
    for client in &mut clients {
        client.join(ROOM, None).await.unwrap();
    }
    wait_metric(addr, "preau_rooms", "1", |v| v == 1.0).await;
    let ack = clients[0].post(ROOM, "hello").await.unwrap();
    assert_eq!(ack.offset, 1);
    for client in &mut clients {
        assert_eq!(next_event(client).await.offset, 1);
    }
    // 3 hellos + 3 joins + 1 post in; at least their replies and 3 events out.
    wait_metric(addr, "preau_messages_in_total", "up by 7", |v| {
        v >= in_before + 7.0
    })
    .await;
    wait_metric(addr, "preau_messages_out_total", "up by 10", |v| {
        v >= out_before + 10.0
    })
    .await;
    wait_metric(addr, "preau_messages_stored_total", "1", |v| v == 1.0).await;

    // A forbidden join counts under its code.
    let forbidden_before = labeled(addr, "preau_errors_total", "code=\"forbidden\"").await;
    let other_before = metric(addr, "preau_errors_total").await;
    match clients[0].join("4A/chat/x", None).await {
        Err(ClientError::Refused(reply)) => assert_eq!(reply.code, ErrorCode::Forbidden),
        other => panic!("join 4A as a 3B student: {:?}", other.map(|j| j.room)),
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let forbidden = labeled(addr, "preau_errors_total", "code=\"forbidden\"").await;
        if forbidden == forbidden_before + 1.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "errors_total{{code=\"forbidden\"}} is {forbidden}, want {}",
            forbidden_before + 1.0
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        metric(addr, "preau_errors_total").await,
        other_before + 1.0,
        "only the forbidden counter moved"
    );

    // Closing one client: the gauge goes down; leaving the room unloads it.
    let last = clients.pop().unwrap();
    last.close();
    wait_metric(addr, "preau_connections", "2", |v| v == 2.0).await;
    for client in &mut clients {
        client.leave(ROOM).await.unwrap();
    }
    wait_metric(addr, "preau_rooms", "0", |v| v == 0.0).await;
    assert_eq!(metric(addr, "preau_slow_consumers_total").await, 0.0);
}

#[tokio::test]
async fn upgrade_without_the_subprotocol_is_400() {
    let server = TestServer::start().await;
    let addr = server.addr();
    for protocol in [None, Some("preau.v2"), Some("chat")] {
        match upgrade(addr, protocol).await {
            Ok(_) => panic!("upgrade with {protocol:?} accepted"),
            Err(response) => assert_eq!(response.status(), 400, "with {protocol:?}"),
        }
    }
    let (_, status, head, _) = hand_handshake(addr, None).await;
    assert_eq!(status, 400, "{head}");
    // Offering several, one of them preau.v1, is accepted and answered with it.
    let (_, status, head, _) = hand_handshake(addr, Some("chat, preau.v1")).await;
    assert_eq!(status, 101, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-protocol: preau.v1"),
        "{head}"
    );
    // None of the refused upgrades counted as a connection.
    assert!(upgrade(addr, Some("preau.v1")).await.is_ok());
    assert_eq!(metric(addr, "preau_connections_refused_total").await, 0.0);
}

#[tokio::test]
async fn max_connections_refuses_with_503_and_retry_after() {
    let server = TestServer::start_with(|c| c.max_connections = 2).await;
    server.open(&[ROOM]).await;
    let addr = server.addr();
    let (mut a, _) = server.connect(&student("a", "3B")).await;
    let (mut b, _) = server.connect(&student("b", "3B")).await;
    a.join(ROOM, None).await.unwrap();
    b.join(ROOM, None).await.unwrap();
    wait_metric(addr, "preau_connections", "2", |v| v == 2.0).await;

    let response = upgrade(addr, Some("preau.v1"))
        .await
        .expect_err("a third connection is refused");
    assert_eq!(response.status(), 503);
    let retry = response
        .headers()
        .get("retry-after")
        .expect("Retry-After header")
        .to_str()
        .unwrap()
        .parse::<u64>()
        .expect("Retry-After is a number of seconds");
    assert!(retry > 0);
    assert!(metric(addr, "preau_connections_refused_total").await >= 1.0);
    // /healthz and /metrics are not connections: still served.
    assert_eq!(http_get(addr, "/healthz").await.0, 200);

    // The two connected clients are unaffected.
    assert!(ping(&mut a).await.is_ok());
    assert_eq!(b.post(ROOM, "from b").await.unwrap().offset, 1);
    assert_eq!(next_event(&mut a).await.offset, 1);

    // b leaves: a slot frees up and a new client is accepted.
    b.close();
    wait_metric(addr, "preau_connections", "1", |v| v == 1.0).await;
    // The gauge drops just before the slot is released, so allow a refusal
    // or two right at that moment, but not for long.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut c = loop {
        match Client::connect(&server.url(), &student("c", "3B")).await {
            Ok((c, _)) => break c,
            Err(ClientError::WebSocket(tungstenite::Error::Http(r))) if r.status() == 503 => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "still 503 after a client left"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(other) => panic!("new client after one left: {other}"),
        }
    };
    c.join(ROOM, None).await.unwrap();
    assert_eq!(a.post(ROOM, "from a").await.unwrap().offset, 2);
    assert_eq!(next_event(&mut c).await.offset, 2);
    // Full again.
    let response = upgrade(addr, Some("preau.v1")).await.expect_err("full");
    assert_eq!(response.status(), 503);
}

#[tokio::test]
async fn silent_peer_is_closed_with_4005_and_live_clients_stay() {
    let server = TestServer::start_with(|c| {
        c.ping_interval = Duration::from_millis(100);
        c.idle_timeout = Duration::from_millis(400);
        c.auth_timeout = Duration::from_secs(60);
    })
    .await;
    server.open(&[ROOM]).await;
    let (mut live, _) = server.connect(&student("live", "3B")).await;
    live.join(ROOM, None).await.unwrap();
    let started = tokio::time::Instant::now();

    let (mut silent, status, head, mut bytes) =
        hand_handshake(server.addr(), Some("preau.v1")).await;
    assert_eq!(status, 101, "{head}");
    // Never write; read only to see what the server sends.
    let mut pings = 0;
    let close_code = tokio::time::timeout(WAIT, async {
        loop {
            let (frames, used) = parse_frames(&bytes);
            bytes.drain(..used);
            for (opcode, payload) in frames {
                match opcode {
                    0x9 => pings += 1,
                    0x8 => {
                        assert!(payload.len() >= 2, "close frame without a code");
                        return Some(u16::from_be_bytes([payload[0], payload[1]]));
                    }
                    other => panic!("unexpected frame opcode {other:#x}"),
                }
            }
            let mut chunk = [0u8; 1024];
            match silent.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("the server closed the silent peer within WAIT");
    assert_eq!(close_code, Some(4005), "close code for a silent peer");
    assert!(pings >= 1, "the server pinged before giving up");

    // The live client answered the pings: still connected well past the
    // idle timeout.
    tokio::time::sleep_until(started + Duration::from_millis(1500)).await;
    assert!(ping(&mut live).await.is_ok(), "live client still connected");
    assert_eq!(live.post(ROOM, "still here").await.unwrap().offset, 1);
    assert_eq!(live.close_frame(), None);
    wait_metric(server.addr(), "preau_connections", "1", |v| v == 1.0).await;
}

#[tokio::test]
async fn graceful_shutdown_closes_with_1001_and_keeps_acked_messages() {
    let TestServer { server, dir } = TestServer::start().await;
    let url = format!("ws://{}/ws", server.local_addr());
    // Staff opens the room: pupils join only rooms that exist.
    open_rooms(&url, &[ROOM]).await;
    let (mut a, _) = Client::connect(&url, &student("a", "3B")).await.unwrap();
    let (mut b, _) = Client::connect(&url, &teacher("prof", "3B")).await.unwrap();
    let joined = a.join(ROOM, None).await.unwrap();
    b.join(ROOM, None).await.unwrap();
    let mut acked = Vec::new();
    for i in 1..=5 {
        let text = format!("message {i}");
        let ack = a.post(ROOM, &text).await.unwrap();
        assert_eq!(ack.offset, i);
        acked.push((ack.offset, text));
    }
    let mut unauthenticated = raw_ws(server.local_addr()).await;

    server.shutdown();
    assert_eq!(closed_with(&mut a).await, Some(1001));
    assert_eq!(closed_with(&mut b).await, Some(1001));
    assert_eq!(raw_close_code(&mut unauthenticated).await, Some(1001));
    tokio::time::timeout(WAIT, server.wait())
        .await
        .expect("server stops within WAIT")
        .expect("server stops cleanly");

    // A new server on the same data folder has every acked message.
    let server = preau::start(config(dir.path())).await.expect("restart");
    let url = format!("ws://{}/ws", server.local_addr());
    let (mut c, _) = Client::connect(&url, &student("c", "3B")).await.unwrap();
    let page = c.history(ROOM, None, None, Some(100)).await.unwrap();
    let got: Vec<(u64, String)> = page
        .events
        .iter()
        .map(|e| {
            let Body::Message { text, .. } = &e.body else {
                panic!("not a message")
            };
            (e.offset, text.clone())
        })
        .collect();
    assert_eq!(got, acked);
    assert_eq!(page.epoch, joined.epoch, "same epoch after a clean restart");
    c.join(ROOM, None).await.unwrap();
    assert_eq!(c.post(ROOM, "after restart").await.unwrap().offset, 6);
    server.shutdown();
    tokio::time::timeout(WAIT, server.wait())
        .await
        .expect("second server stops within WAIT")
        .expect("second server stops cleanly");
}

#[tokio::test]
async fn token_expiring_while_connected_closes_with_4002() {
    let server = TestServer::start().await;
    server.open(&[ROOM]).await;
    let (mut other, _) = server.connect(&student("other", "3B")).await;
    let mut short = claims("short", Role::Student, &["3B"]);
    short.exp = preau::auth::now_secs() + 2;
    let token = keyring().mint(&short).unwrap();
    let (mut client, hello) = server.connect(&token).await;
    assert_eq!(hello.user.id, "short");
    client.join(ROOM, None).await.unwrap();
    assert_eq!(closed_with(&mut client).await, Some(4002));
    // It no longer counts as a member; others are unaffected.
    let joined = other.join(ROOM, None).await.unwrap();
    let members: Vec<&str> = joined.members.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(members, ["other"]);
    assert!(ping(&mut other).await.is_ok());
    wait_metric(server.addr(), "preau_connections", "1", |v| v == 1.0).await;
}

#[tokio::test]
async fn web_dir_is_served_at_the_root_and_demo_tokens_only_in_demo_mode() {
    let web = tempfile::tempdir().expect("web dir");
    std::fs::create_dir(web.path().join("console")).expect("console dir");
    std::fs::write(web.path().join("index.html"), "<h1>préau</h1>").expect("index");
    std::fs::write(web.path().join("console/index.html"), "<h1>console</h1>").expect("console");
    // The build writes a gzipped copy beside each file (not checked as
    // gzip by the server: a marker tells which one was sent).
    std::fs::write(web.path().join("app.js"), "plain").expect("app.js");
    std::fs::write(web.path().join("app.js.gz"), "gzipped copy").expect("app.js.gz");
    let dir = web.path().to_owned();
    let server = TestServer::start_with(move |c| c.web_dir = Some(dir)).await;
    let (status, body) = http_get(server.addr(), "/").await;
    assert_eq!((status, body.contains("préau")), (200, true), "{body}");
    let (status, body) = http_get(server.addr(), "/console/").await;
    assert_eq!((status, body.contains("console")), (200, true), "{body}");
    let (status, _) = http_get(server.addr(), "/../Cargo.toml").await;
    assert_ne!(status, 200, "no escape from web_dir");
    let (status, body) = http_request(
        server.addr(),
        "GET",
        "/app.js",
        &[("Accept-Encoding", "gzip")],
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "gzipped copy"));
    assert_eq!(http_get(server.addr(), "/app.js").await.1, "plain");
    // The API routes still win over the files.
    assert_eq!(http_get(server.addr(), "/healthz").await.0, 200);
    // No ENT configured: the app is told so, and there is no login route.
    let (status, body) = http_get(server.addr(), "/auth/config").await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"label":null,"oidc":false}"#)
    );
    assert_eq!(http_get(server.addr(), "/auth/login").await.0, 404);
    let (status, _) = http_get(server.addr(), "/dev/token?user=ana&role=student&class=3B").await;
    assert_eq!(status, 404, "no demo tokens unless demo mode");

    let demo = TestServer::start_with(|c| c.demo = true).await;
    let (status, body) = http_get(
        demo.addr(),
        "/dev/token?user=ana&name=Ana&role=student&class=3B",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    let token = json["token"].as_str().expect("token");
    let (_, hello) = demo.connect(token).await;
    assert_eq!(
        (hello.user.id.as_str(), hello.classes.clone()),
        ("ana", vec!["3B".to_owned()])
    );
    let (status, _) = http_get(demo.addr(), "/dev/token?user=ana&role=pirate").await;
    assert_eq!(status, 400);
}
