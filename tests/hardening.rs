//! What an outside attacker found with clients written from the spec alone,
//! one test per finding: oversized frames get their 1009 (not a reset),
//! cross-site upgrades are refused, `/metrics` is not on the app listener,
//! an invalid configuration is refused at start, idle TCP connections are
//! closed and cannot exhaust file descriptors, and connections that never
//! authenticate cannot lock token holders out.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use preau::client::Client;
use preau::protocol::{ErrorCode, Request, ServerFrame};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Joined by a teacher of 3B (whose join opens it: rooms exist once a
/// teacher or staff opens them).
const ROOM: &str = "3B/chat/hardening";

type Ws = WebSocketStream<TcpStream>;

/// A TCP connection to `addr` from the loopback address `from`
/// (127.0.0.0/8 is all loopback: distinct client addresses on one host).
async fn tcp_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind source address");
    socket.connect(addr).await.expect("tcp connect")
}

/// Reads raw server frames until a close frame; its code, or `None` if the
/// connection ended (or was reset) without one.
async fn raw_close(stream: &mut TcpStream, mut bytes: Vec<u8>) -> Option<u16> {
    tokio::time::timeout(WAIT, async {
        loop {
            // Server frames are unmasked: opcode, length, payload.
            while bytes.len() >= 2 {
                let (len, header) = match bytes[1] & 0x7f {
                    126 if bytes.len() >= 4 => {
                        (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4)
                    }
                    127 if bytes.len() >= 10 => {
                        let mut n = [0u8; 8];
                        n.copy_from_slice(&bytes[2..10]);
                        (usize::try_from(u64::from_be_bytes(n)).unwrap(), 10)
                    }
                    126 | 127 => break,
                    n => (usize::from(n), 2),
                };
                if bytes.len() < header + len {
                    break;
                }
                if bytes[0] & 0x0f == 0x8 {
                    let payload = &bytes[header..header + len];
                    return (payload.len() >= 2)
                        .then(|| u16::from_be_bytes([payload[0], payload[1]]));
                }
                bytes.drain(..header + len);
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .expect("close or end within WAIT")
}

/// A WebSocket (preau.v1) over a connection from `from`; never says hello.
async fn ws_from(from: [u8; 4], addr: SocketAddr) -> Ws {
    let stream = tcp_from(from, addr).await;
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(preau::protocol::SUBPROTOCOL),
    );
    tokio_tungstenite::client_async(request, stream)
        .await
        .expect("upgrade")
        .0
}

/// Sends `hello` with `token`; the reply.
async fn ws_hello(ws: &mut Ws, token: &str) -> ServerFrame {
    let hello = preau::protocol::encode_request(&Request::Hello {
        id: Some(1),
        token: token.to_owned(),
    })
    .unwrap();
    ws.send(Message::Binary(hello)).await.expect("send hello");
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("reply within WAIT")
            .expect("open")
            .expect("frame");
        if let Message::Binary(bytes) = message {
            return preau::protocol::decode_server_frame(&bytes).unwrap();
        }
    }
}

/// The close code the server sent on `ws`, reading past anything else.
async fn ws_close_code(ws: &mut Ws) -> Option<u16> {
    tokio::time::timeout(WAIT, async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .expect("closed within WAIT")
}

/// Whether the server already ended `ws` (close frame or EOF), without waiting.
async fn ws_is_closed(ws: &mut Ws) -> bool {
    match tokio::time::timeout(Duration::from_millis(50), ws.next()).await {
        Err(_) => false,
        Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => true,
        Ok(Some(Ok(_))) => false,
    }
}

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

/// Finding 1: frames of several MiB got a TCP reset (seen as 1006,
/// "reconnect") instead of the documented 1009.
#[tokio::test]
async fn huge_frames_get_close_1009_not_a_reset() {
    let server = TestServer::start().await;
    for size in [4usize << 20, 16 << 20] {
        let tcp = TcpStream::connect(server.addr()).await.unwrap();
        let (mut stream, status, head, rest) = ws_handshake(tcp, "").await;
        assert_eq!(status, 101, "{head}");
        // A masked binary frame with a 64-bit length, then its payload.
        let mut frame = vec![0x82, 0x80 | 127];
        frame.extend_from_slice(&(size as u64).to_be_bytes());
        frame.extend_from_slice(&[1, 2, 3, 4]);
        frame.resize(frame.len() + size, 0x5a);
        tokio::time::timeout(WAIT, stream.write_all(&frame))
            .await
            .expect("frame written within WAIT")
            .unwrap_or_else(|e| panic!("{size} bytes: the server reset the connection: {e}"));
        assert_eq!(
            raw_close(&mut stream, rest).await,
            Some(1009),
            "close code after a {size}-byte frame"
        );
    }
    // The server is fine.
    let (mut client, _) = server.connect(&teacher("ana", "3B")).await;
    client.join(ROOM, None).await.unwrap();
    assert_eq!(client.post(ROOM, "still here").await.unwrap().offset, 1);
}

/// Finding 2: an upgrade from `https://evil.example` was accepted.
#[tokio::test]
async fn upgrades_from_other_origins_are_403() {
    let server = TestServer::start().await;
    let addr = server.addr();
    let upgrade = |extra: String| async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (_, status, head, _) = ws_handshake(tcp, &extra).await;
        (status, head)
    };
    let (status, head) = upgrade("Origin: https://evil.example\r\n".into()).await;
    assert_eq!(status, 403, "{head}");
    let (status, body) = http_request(
        addr,
        "GET",
        "/ws",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Protocol", "preau.v1"),
            ("Origin", "https://evil.example"),
        ],
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        body.contains("https://evil.example") && body.contains("allowed_origins"),
        "the 403 says why: {body}"
    );
    for origin in ["null", "http://127.0.0.1:1", "https://evil.example"] {
        let (status, head) = upgrade(format!("Origin: {origin}\r\n")).await;
        assert_eq!(status, 403, "{origin}: {head}");
    }
    // The server's own origin (the web app it serves), and clients that
    // send no Origin at all (not browsers).
    let (status, head) = upgrade(format!("Origin: http://{addr}\r\n")).await;
    assert_eq!(status, 101, "same origin: {head}");
    let (status, head) = upgrade(String::new()).await;
    assert_eq!(status, 101, "no origin: {head}");
    assert!(
        metric(addr, "preau_connections_refused_total").await >= 5.0,
        "refusals are counted"
    );

    // A configured list is honoured, on top of the server's own origin.
    let server = TestServer::start_with(|c| {
        c.allowed_origins = vec!["https://ent.example".into(), "http://localhost:5173".into()];
    })
    .await;
    let addr = server.addr();
    for (origin, want) in [
        ("https://ent.example", 101),
        ("http://localhost:5173", 101),
        ("https://ent.example:8443", 403),
        ("http://ent.example", 403),
        ("https://evil.example", 403),
    ] {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (_, status, head) = {
            let (s, status, head, _) = ws_handshake(tcp, &format!("Origin: {origin}\r\n")).await;
            (s, status, head)
        };
        assert_eq!(status, want, "{origin}: {head}");
    }
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (_, status, _, _) = ws_handshake(tcp, &format!("Origin: http://{addr}\r\n")).await;
    assert_eq!(status, 101, "same origin still allowed");
    let any = TestServer::start_with(|c| c.allowed_origins = vec!["*".into()]).await;
    let tcp = TcpStream::connect(any.addr()).await.unwrap();
    let (_, status, _, _) = ws_handshake(tcp, "Origin: https://evil.example\r\n").await;
    assert_eq!(status, 101, "* allows any origin");
}

/// Finding 3: `/metrics` was public on the app's listener.
#[tokio::test]
async fn metrics_are_served_only_on_metrics_listen() {
    let server = TestServer::start().await;
    let (status, _) = http_get(server.addr(), "/metrics").await;
    assert_eq!(status, 404, "no /metrics on the app listener");
    let metrics = server.server.metrics_addr().expect("metrics_listen is set");
    assert_ne!(metrics, server.addr());
    let (status, body) = http_get(metrics, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("preau_connections"), "{body}");
    let (status, _) = http_get(metrics, "/healthz").await;
    assert_eq!(status, 404, "the metrics listener serves metrics only");

    // Unset: served nowhere.
    let server = TestServer::start_with(|c| c.metrics_listen = None).await;
    assert_eq!(server.server.metrics_addr(), None);
    assert_eq!(http_get(server.addr(), "/metrics").await.0, 404);
    assert_eq!(http_get(server.addr(), "/healthz").await.0, 200);
}

/// Finding 4: `start` never validated its configuration, and a rate such
/// as 1e-300 panicked the connection task at the first refill wait.
#[tokio::test]
async fn start_refuses_an_invalid_configuration_naming_the_setting() {
    type Tweak = Box<dyn Fn(&mut preau::config::Config)>;
    let cases: Vec<(&str, Tweak)> = vec![
        ("rate_per_sec", Box::new(|c| c.rate_per_sec = 1e-300)),
        ("rate_per_sec", Box::new(|c| c.rate_per_sec = f64::NAN)),
        (
            "request_rate_per_sec",
            Box::new(|c| c.request_rate_per_sec = 1e300),
        ),
        ("max_frame_bytes", Box::new(|c| c.max_frame_bytes = 10)),
        ("max_connections", Box::new(|c| c.max_connections = 0)),
        (
            "max_unauthenticated_per_address",
            Box::new(|c| {
                c.max_unauthenticated = 10;
                c.max_unauthenticated_per_address = 11;
            }),
        ),
        (
            "header_timeout",
            Box::new(|c| c.header_timeout = Duration::ZERO),
        ),
        (
            "allowed_origins",
            Box::new(|c| c.allowed_origins = vec!["evil.example".into()]),
        ),
        // A web folder that does not exist (or was not built).
        (
            "web_dir",
            Box::new(|c| c.web_dir = Some("/nonexistent/preau-web".into())),
        ),
    ];
    for (setting, tweak) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        tweak(&mut config);
        match preau::start(config).await {
            Ok(server) => panic!(
                "started on {} with an invalid {setting}",
                server.local_addr()
            ),
            Err(err) => {
                let message = err.to_string();
                assert!(message.contains(setting), "{setting}: {message}");
            }
        }
    }
}

/// Finding 5, first half: a TCP connection that never sends a request (or
/// sits idle after one) was never closed.
#[tokio::test]
async fn silent_tcp_connections_are_closed_after_the_header_timeout() {
    let server = TestServer::start_with(|c| c.header_timeout = Duration::from_millis(300)).await;
    let addr = server.addr();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut kept_alive = TcpStream::connect(addr).await.unwrap();
    kept_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    for (what, stream) in [
        ("silent", &mut silent),
        ("partial head", &mut partial),
        ("idle keep-alive", &mut kept_alive),
    ] {
        let mut got = Vec::new();
        let end = tokio::time::timeout(WAIT, async {
            let mut chunk = [0u8; 1024];
            loop {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        assert!(end.is_ok(), "{what} connection still open after WAIT");
        if what == "idle keep-alive" {
            assert!(got.starts_with(b"HTTP/1.1 200"), "its request was answered");
        }
    }
    assert!(metric(addr, "preau_http_header_timeouts_total").await >= 2.0);
    // Real clients are unaffected.
    let (mut client, _) = server.connect(&teacher("ana", "3B")).await;
    client.join(ROOM, None).await.unwrap();
}

/// The `preau` binary under `ulimit -n FILES`, with `args`; waits for
/// `/healthz`.
async fn serve_with_file_limit(files: u32, dir: &std::path::Path, args: &[&str]) -> Proc {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let metrics_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {files} && exec \"$@\""))
        .arg("sh")
        .arg(bin())
        .arg("serve")
        .arg("--data")
        .arg(dir)
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--metrics-listen")
        .arg(metrics_addr.to_string())
        .args(args)
        .env("PREAU_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn preau");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("preau exited: {status}");
        }
        if let Ok(Ok((200, _))) =
            tokio::time::timeout(Duration::from_secs(1), http_get_lenient(addr, "/healthz")).await
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "preau did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Proc {
        child,
        addr,
        metrics_addr,
    }
}

/// A metric's value, or 0 if `/metrics` does not answer within a second.
async fn lenient_metric(addr: SocketAddr, name: &str) -> f64 {
    let Ok(Ok((_, body))) =
        tokio::time::timeout(Duration::from_secs(1), http_get_lenient(addr, "/metrics")).await
    else {
        return 0.0;
    };
    body.lines()
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A GET that reports failure instead of panicking.
async fn http_get_lenient(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Finding 5, second half: 1,100 idle TCP connections under a 1,024 file
/// limit made `accept` fail with "Too many open files" for everyone. Here:
/// 400 idle connections against a 200-file limit and a budget of 48.
#[tokio::test]
async fn idle_tcp_flood_does_not_exhaust_file_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_with_file_limit(
        200,
        dir.path(),
        &[
            "--max-connections",
            "32",
            "--max-unauthenticated",
            "48",
            "--max-unauthenticated-per-address",
            "48",
            // Long: eviction, not the timeout, must keep the server going.
            "--header-timeout",
            "60s",
        ],
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..400 {
        idle.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    // Every connection past the budget pushed an older one out, or was
    // dropped at once while the evicted ones were still closing.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let evicted = lenient_metric(server.metrics_addr, "preau_connections_evicted_total").await;
        let dropped = lenient_metric(server.metrics_addr, "preau_connections_refused_total").await;
        if evicted + dropped >= 400.0 - 48.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{evicted} evicted, {dropped} dropped of 400"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = tokio::time::timeout(WAIT, http_get_lenient(server.addr, "/healthz"))
        .await
        .expect("/healthz answers within WAIT")
        .expect("/healthz answers");
    assert_eq!((status, body.trim()), (200, "ok"));
    let (mut client, _) =
        tokio::time::timeout(WAIT, Client::connect(&server.url(), &teacher("ana", "3B")))
            .await
            .expect("connects within WAIT")
            .expect("a token holder gets in");
    client.join(ROOM, None).await.unwrap();
    assert_eq!(client.post(ROOM, "in").await.unwrap().offset, 1);
    let unauthenticated =
        lenient_metric(server.metrics_addr, "preau_unauthenticated_connections").await;
    assert!(
        unauthenticated <= 96.0,
        "{unauthenticated} unauthenticated connections"
    );
    // Most idle sockets were closed by the server.
    let mut closed = 0;
    for stream in &mut idle {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(5), stream.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    assert!(closed >= 300, "only {closed} of 400 idle sockets closed");
    server.terminate().await;
}

/// Finding 6: hello-less upgrades held `max_connections` slots and locked
/// every token holder out (503) for the whole `auth_timeout`.
#[tokio::test]
async fn hello_less_upgrades_do_not_lock_out_token_holders() {
    let server = TestServer::start_with(|c| {
        c.max_connections = 50;
        c.max_unauthenticated = 40;
        c.max_unauthenticated_per_address = 20;
        c.auth_timeout = Duration::from_secs(60);
    })
    .await;
    let addr = server.addr();
    // 60 upgrades that never say hello, from one address.
    let mut squatters = Vec::new();
    for _ in 0..60 {
        squatters.push(ws_from([127, 0, 0, 1], addr).await);
    }
    // A token holder from the same address (a school behind NAT) gets in.
    let (mut ana, _) = server.connect(&teacher("ana", "3B")).await;
    ana.join(ROOM, None).await.unwrap();
    // The per-address limit held: the oldest were closed with 1013.
    for ws in squatters.iter_mut().take(10) {
        assert_eq!(ws_close_code(ws).await, Some(1013));
    }
    wait_metric(
        addr,
        "preau_unauthenticated_connections",
        "at most 20",
        |v| v <= 20.0,
    )
    .await;
    assert_eq!(metric(addr, "preau_sessions").await, 1.0);
    assert!(metric(addr, "preau_connections_evicted_total").await >= 41.0);
    // The survivors are the newest, and may still authenticate.
    let last = squatters.last_mut().unwrap();
    assert!(matches!(
        ws_hello(last, &student("late", "3B")).await,
        ServerFrame::Ok { id: Some(1), .. }
    ));
    assert!(!ws_is_closed(last).await);
}

/// The unauthenticated budget is shared fairly: when it is full, the
/// address holding the most pays, not a light one.
#[tokio::test]
async fn a_full_budget_evicts_from_the_busiest_address() {
    let server = TestServer::start_with(|c| {
        c.max_unauthenticated = 30;
        c.max_unauthenticated_per_address = 20;
        c.auth_timeout = Duration::from_secs(60);
    })
    .await;
    let addr = server.addr();
    let mut light = Vec::new();
    for _ in 0..5 {
        light.push(ws_from([127, 0, 0, 2], addr).await);
    }
    let mut heavy = Vec::new();
    for _ in 0..25 {
        heavy.push(ws_from([127, 0, 0, 3], addr).await);
    }
    // 5 + 20 held; 5 more from elsewhere fill the budget, then a token
    // holder from a fourth address arrives.
    for _ in 0..5 {
        light.push(ws_from([127, 0, 0, 4], addr).await);
    }
    let mut ws = ws_from([127, 0, 0, 5], addr).await;
    assert!(matches!(
        ws_hello(&mut ws, &student("ana", "3B")).await,
        ServerFrame::Ok { id: Some(1), .. }
    ));
    // The heavy address's 6 oldest went: 5 over its limit, 1 for the
    // newcomer; the light addresses kept theirs.
    for ws in &mut heavy[..6] {
        assert_eq!(ws_close_code(ws).await, Some(1013));
    }
    for (i, ws) in heavy[6..].iter_mut().enumerate() {
        assert!(
            !ws_is_closed(ws).await,
            "heavy connection {} evicted",
            i + 6
        );
    }
    for (i, ws) in light.iter_mut().enumerate() {
        assert!(!ws_is_closed(ws).await, "light connection {i} evicted");
    }
    assert!(matches!(
        ws_hello(&mut light[0], &student("bob", "3B")).await,
        ServerFrame::Ok { id: Some(1), .. }
    ));
}

/// `hello` when every session slot is taken: `overloaded`, then 1013.
#[tokio::test]
async fn hello_when_sessions_are_full_is_overloaded_then_1013() {
    let server = TestServer::start_with(|c| c.max_connections = 1).await;
    let addr = server.addr();
    let mut waiting = ws_from([127, 0, 0, 1], addr).await;
    let (mut ana, _) = server.connect(&teacher("ana", "3B")).await;
    match ws_hello(&mut waiting, &student("bob", "3B")).await {
        ServerFrame::Error(reply) => {
            assert_eq!(reply.code, ErrorCode::Overloaded);
            assert!(reply.retry_after_ms.is_some_and(|ms| ms > 0));
        }
        other => panic!("hello on a full server: {other:?}"),
    }
    assert_eq!(ws_close_code(&mut waiting).await, Some(1013));
    // Upgrades are refused early while full.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (_, status, head, _) = ws_handshake(tcp, "").await;
    assert_eq!(status, 503, "{head}");
    assert!(metric(addr, "preau_connections_refused_total").await >= 2.0);
    // The session is unaffected; when it ends, its slot is free again.
    ana.join(ROOM, None).await.unwrap();
    ana.close();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match Client::connect(&server.url(), &student("bob", "3B")).await {
            Ok(_) => break,
            Err(err) => {
                assert!(tokio::time::Instant::now() < deadline, "still full: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
