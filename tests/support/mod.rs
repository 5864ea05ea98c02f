//! Shared test harness: real servers on real sockets, real sled in temp
//! folders, tokens, raw sockets, and the `preau` binary as a process.
#![allow(dead_code)]

pub mod redis;
pub mod s3;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use preau::auth::{Claims, Keyring};
use preau::client::Client;
use preau::config::Config;
use preau::protocol::{HelloOk, Role, ServerFrame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The secret every test server and token uses.
pub const SECRET: &str = "test:0123456789abcdef0123456789abcdef";
/// How long a test waits for something that should happen promptly.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn keyring() -> Keyring {
    Keyring::parse(SECRET).expect("test secret parses")
}

/// A config for tests: port 0, metrics on another port 0, data in `dir`,
/// the test secret, generous rate limits (tests of the limit set their own).
pub fn config(dir: &Path) -> Config {
    Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        data: dir.to_owned(),
        secret: Some(SECRET.to_owned()),
        rate_per_sec: 10_000.0,
        rate_burst: 10_000,
        request_rate_per_sec: 10_000.0,
        request_burst: 10_000,
        ..Config::default()
    }
}

/// An in-process server (`preau::start`) with its temp data folder.
pub struct TestServer {
    pub server: preau::Server,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = config(dir.path());
        tweak(&mut config);
        let server = preau::start(config).await.expect("server starts");
        if let Some(metrics) = server.metrics_addr() {
            register_metrics_addr(server.local_addr(), metrics);
        }
        TestServer { server, dir }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Where this server serves `/metrics` (`metrics_listen`).
    pub fn metrics_addr(&self) -> SocketAddr {
        metrics_addr(self.addr())
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr())
    }

    pub async fn connect(&self, token: &str) -> (Client, HelloOk) {
        Client::connect(&self.url(), token)
            .await
            .expect("client connects")
    }

    pub async fn metric(&self, name: &str) -> f64 {
        metric(self.addr(), name).await
    }

    /// Opens `rooms` as staff before a test's pupils use them (see
    /// [`open_rooms`]), and returns once the `preau_connections` gauge no
    /// longer counts the opener: tests of connection counts and of
    /// `max_connections` start from what they expect.
    pub async fn open(&self, rooms: &[&str]) {
        let before = self.metric("preau_connections").await;
        open_rooms(&self.url(), rooms).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.metric("preau_connections").await > before {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the opener's connection still counted after {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The token of the staff user who opens rooms in tests ([`open_rooms`]).
pub fn opener() -> String {
    token("opener", Role::Staff, &[])
}

/// Opens `rooms` on the server at `url` the way a school does: a room
/// exists only once a teacher of its class or staff joins it (or acts in
/// it), and a pupil naming a room nobody opened gets `unknown_room`. A staff
/// user joins each room (creating it, with no event in it), leaves it, and
/// disconnects; this returns once the server closed that connection, so it
/// counts in no connection, presence or membership the test then checks.
/// In cluster mode opening on one node opens the room on every node.
pub async fn open_rooms(url: &str, rooms: &[&str]) {
    open_rooms_as(url, &opener(), rooms).await
}

/// [`open_rooms`] as the user of `token` (a teacher of the rooms' class or
/// staff), e.g. one opener per room where the request rate is tight.
pub async fn open_rooms_as(url: &str, token: &str, rooms: &[&str]) {
    let (mut client, _) = Client::connect(url, token).await.expect("opener connects");
    for room in rooms {
        tokio::time::timeout(WAIT, client.join(room, None))
            .await
            .unwrap_or_else(|_| panic!("opener's join of {room} answered"))
            .unwrap_or_else(|e| panic!("opener opens {room}: {e}"));
        tokio::time::timeout(WAIT, client.leave(room))
            .await
            .unwrap_or_else(|_| panic!("opener's leave of {room} answered"))
            .unwrap_or_else(|e| panic!("opener leaves {room}: {e}"));
    }
    client.close();
    // The reader ends (and `next` gives `None`) at the server's close frame.
    while tokio::time::timeout(WAIT, client.next())
        .await
        .expect("opener's connection closes within WAIT")
        .is_some()
    {}
}

pub fn claims(user: &str, role: Role, classes: &[&str]) -> Claims {
    let now = preau::auth::now_secs();
    Claims {
        sub: user.to_owned(),
        name: format!("Name of {user}"),
        role,
        classes: classes.iter().map(|c| (*c).to_owned()).collect(),
        children: Vec::new(),
        exp: now + 3600,
        iat: now,
    }
}

pub fn token(user: &str, role: Role, classes: &[&str]) -> String {
    keyring().mint(&claims(user, role, classes)).expect("mint")
}

pub fn student(user: &str, class: &str) -> String {
    token(user, Role::Student, &[class])
}

pub fn teacher(user: &str, class: &str) -> String {
    token(user, Role::Teacher, &[class])
}

/// A client authenticated with `token` on the server at `url` (a real
/// socket), or a panic that says so.
pub async fn client(url: &str, token: &str) -> Client {
    let (client, _) = tokio::time::timeout(WAIT, Client::connect(url, token))
        .await
        .expect("connects within WAIT")
        .expect("client connects");
    client
}

/// A WebSocket handshake written by hand on `stream` (offering the
/// preau.v1 subprotocol), with `extra` header lines (each ending in
/// `\r\n`); returns the stream, the status, the response head and the
/// bytes read past it.
pub async fn ws_handshake(stream: TcpStream, extra: &str) -> (TcpStream, u16, String, Vec<u8>) {
    ws_handshake_offering(stream, Some(preau::protocol::SUBPROTOCOL), extra).await
}

/// [`ws_handshake`] offering `protocol` as `Sec-WebSocket-Protocol` (none
/// if `None`).
pub async fn ws_handshake_offering(
    mut stream: TcpStream,
    protocol: Option<&str>,
    extra: &str,
) -> (TcpStream, u16, String, Vec<u8>) {
    let host = stream.peer_addr().expect("peer addr");
    let protocol_line = protocol
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         {protocol_line}{extra}\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, stream.read(&mut chunk))
            .await
            .expect("response within WAIT")
            .expect("read");
        assert!(n > 0, "connection closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (stream, status, head, buf[end..].to_vec())
}

/// A raw WebSocket with the preau.v1 subprotocol, for bad-input tests.
pub type RawWs = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn raw_ws(addr: SocketAddr) -> RawWs {
    let mut request = format!("ws://{addr}/ws")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(preau::protocol::SUBPROTOCOL),
    );
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("raw connect");
    ws
}

/// Sends `hello` on a raw socket and waits for its `ok`.
pub async fn raw_hello(ws: &mut RawWs, token: &str) {
    let hello = preau::protocol::encode_request(&preau::protocol::Request::Hello {
        id: Some(1),
        token: token.to_owned(),
    })
    .expect("encode");
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(hello))
        .await
        .expect("send hello");
    match raw_next(ws).await {
        Some(ServerFrame::Ok { id: Some(1), .. }) => {}
        other => panic!("hello not ok: {other:?}"),
    }
}

/// The next decoded binary frame on a raw socket; `None` at close.
pub async fn raw_next(ws: &mut RawWs) -> Option<ServerFrame> {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("frame within WAIT")?;
        match message.ok()? {
            tokio_tungstenite::tungstenite::Message::Binary(bytes) => {
                return Some(preau::protocol::decode_server_frame(&bytes).expect("decodes"))
            }
            tokio_tungstenite::tungstenite::Message::Close(_) => return None,
            _ => continue,
        }
    }
}

/// Reads until the server's close frame; returns its code.
pub async fn raw_close_code(ws: &mut RawWs) -> Option<u16> {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("close within WAIT")?;
        match message {
            Ok(tokio_tungstenite::tungstenite::Message::Close(frame)) => {
                return frame.map(|f| u16::from(f.code))
            }
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// The next frame a client receives, within [`WAIT`].
pub async fn next(client: &mut Client) -> ServerFrame {
    tokio::time::timeout(WAIT, client.next())
        .await
        .expect("event within WAIT")
        .expect("connection open")
}

/// The next `event` frame, skipping presence and typing.
pub async fn next_event(client: &mut Client) -> preau::protocol::Event {
    loop {
        if let ServerFrame::Event(event) = next(client).await {
            return event;
        }
    }
}

/// Whether `/healthz` answers 200 (false while nothing listens yet).
async fn healthy(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    response.starts_with(b"HTTP/1.1 200")
}

/// The `admin_key` test servers are given (at least 32 bytes).
pub const ADMIN_KEY: &str = "admin-key-for-tests-0123456789abcdef";

/// `POST /admin/users/{user}/erase` with [`ADMIN_KEY`]; the erasure's JSON
/// report (panics unless 200).
pub async fn admin_erase(addr: SocketAddr, user: &str) -> serde_json::Value {
    let auth = format!("Bearer {ADMIN_KEY}");
    let (status, body) = http_request(
        addr,
        "POST",
        &format!("/admin/users/{user}/erase"),
        &[("Authorization", &auth)],
    )
    .await;
    assert_eq!(status, 200, "erase: {body}");
    serde_json::from_str(&body).expect("erase answers JSON")
}

/// A plain HTTP GET; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, &[]).await
}

/// An HTTP request without a body, with extra `headers`; returns (status,
/// body).
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    http_send(addr, method, path, headers, &[]).await
}

/// An HTTP request with `body` (`Content-Length` set for any method but
/// GET); returns (status, body).
pub async fn http_send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("tcp connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if method != "GET" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
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
    (status, body)
}

/// The metrics address of each server started here, by app address.
static METRICS_ADDRS: std::sync::Mutex<Vec<(SocketAddr, SocketAddr)>> =
    std::sync::Mutex::new(Vec::new());

fn register_metrics_addr(app: SocketAddr, metrics: SocketAddr) {
    let mut addrs = METRICS_ADDRS.lock().unwrap_or_else(|e| e.into_inner());
    addrs.retain(|(a, _)| *a != app);
    addrs.push((app, metrics));
}

/// Where the server listening at `app` serves `/metrics` (`app` itself if
/// it was not started by this harness).
pub fn metrics_addr(app: SocketAddr) -> SocketAddr {
    let addrs = METRICS_ADDRS.lock().unwrap_or_else(|e| e.into_inner());
    addrs
        .iter()
        .find(|(a, _)| *a == app)
        .map_or(app, |(_, m)| *m)
}

/// A metric's value from the `/metrics` of the server listening at `addr`
/// (sum over its label sets), 0 if absent.
pub async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let (_, body) = http_get(metrics_addr(addr), "/metrics").await;
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split([' ', '{']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A free TCP port on loopback for a child process, from 10000–14999:
/// below the kernel's ephemeral range (so no outgoing connection takes it
/// before the child binds it) and below the Redis harness's band; never one
/// this test binary handed out before (tests run in parallel).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..5000u64 {
        let port = 10_000 + ((seed + i * 7919) % 5000) as u16;
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free port in 10000-14999")
}

/// The `preau` binary run as a child process.
pub struct Proc {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    /// Its `--metrics-listen` address.
    pub metrics_addr: SocketAddr,
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_preau"))
}

impl Proc {
    /// `preau serve --data DIR --listen 127.0.0.1:PORT --metrics-listen
    /// 127.0.0.1:OTHER` plus `args`, with the test secret; waits until
    /// `/healthz` answers.
    pub async fn serve(data: &Path, port: u16, args: &[&str]) -> Proc {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let metrics_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        register_metrics_addr(addr, metrics_addr);
        let child = tokio::process::Command::new(bin())
            .arg("serve")
            .arg("--data")
            .arg(data)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--metrics-listen")
            .arg(metrics_addr.to_string())
            .args(args)
            .env("PREAU_SECRET", SECRET)
            .env("PREAU_RATE_PER_SEC", "10000")
            .env("PREAU_RATE_BURST", "10000")
            .env("PREAU_REQUEST_RATE_PER_SEC", "10000")
            .env("PREAU_REQUEST_BURST", "10000")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn preau");
        let mut child = child;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("preau exited before serving on {addr}: {status}");
            }
            if healthy(addr).await {
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

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// SIGKILL: no shutdown, no flush.
    pub async fn kill9(mut self) {
        self.child.kill().await.expect("kill");
    }

    /// SIGTERM, then wait for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("exits within WAIT")
            .expect("wait")
    }
}

/// Starts `preau serve` in cluster mode on `dir` (heartbeats fast enough
/// for tests) and waits until it takes posts: a node refuses them for
/// `resync_window` after reaching Redis.
pub async fn cluster_node(redis_url: &str, dir: &Path) -> Proc {
    cluster_node_with(redis_url, dir, &[]).await
}

/// [`cluster_node`] with more arguments.
pub async fn cluster_node_with(redis_url: &str, dir: &Path, extra: &[&str]) -> Proc {
    let mut args = vec![
        "--redis",
        redis_url,
        "--heartbeat",
        "100ms",
        "--node-timeout",
        "1s",
        "--resync-window",
        "200ms",
    ];
    args.extend_from_slice(extra);
    let node = Proc::serve(dir, free_port(), &args).await;
    // The probe is a pupil: staff opens its room first (a pupil's join of a
    // room nobody opened is `unknown_room`). The room is in Redis, so this
    // is a no-op on every node after the first.
    open_rooms(&node.url(), &["3B/chat/probe"]).await;
    let (mut probe, _) = Client::connect(&node.url(), &student("probe", "3B"))
        .await
        .expect("probe connects");
    tokio::time::timeout(WAIT, probe.join("3B/chat/probe", None))
        .await
        .expect("probe join answered")
        .expect("probe joins");
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::timeout(WAIT, probe.post("3B/chat/probe", "probe"))
        .await
        .expect("probe post answered")
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node never took posts"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node
}

/// Applies a directory sync (`PUT /admin/directory`) on the server at
/// `addr` (which runs with [`ADMIN_KEY`]); panics unless it is applied.
pub async fn sync_directory(addr: SocketAddr, sync: &serde_json::Value) -> serde_json::Value {
    let auth = format!("Bearer {ADMIN_KEY}");
    let (status, body) = http_send(
        addr,
        "PUT",
        "/admin/directory",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        sync.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "directory sync: {body}");
    serde_json::from_str(&body).expect("sync answers JSON")
}

/// An HTTP client for the file routes (`/files/…`).
pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// Uploads `bytes` as `name` through the chunked upload routes (chunks
/// of `chunk` bytes) with `token`, and returns the finished upload's
/// JSON (`file`, `name`, `type`, `size`, `sha256`). Panics on a refusal:
/// use [`try_upload`] to see one.
pub async fn upload(addr: SocketAddr, token: &str, name: &str, bytes: &[u8]) -> serde_json::Value {
    match try_upload(addr, token, name, bytes, None, 1 << 20).await {
        Ok(done) => done,
        Err((status, body)) => panic!("upload of {name} refused: {status} {body}"),
    }
}

/// [`upload`] with the class named and the chunk size chosen; a refusal
/// at any step is `Err((status, body))`.
pub async fn try_upload(
    addr: SocketAddr,
    token: &str,
    name: &str,
    bytes: &[u8],
    class: Option<&str>,
    chunk: usize,
) -> Result<serde_json::Value, (u16, serde_json::Value)> {
    let http = http();
    let base = format!("http://{addr}/files/uploads");
    let refused = |status: u16, body: String| {
        (
            status,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
        )
    };
    let response = http
        .post(&base)
        .bearer_auth(token)
        .json(&serde_json::json!({"name": name, "size": bytes.len(), "class": class}))
        .send()
        .await
        .expect("create upload");
    let status = response.status().as_u16();
    let body = response.text().await.expect("body");
    if status != 201 {
        return Err(refused(status, body));
    }
    let created: serde_json::Value = serde_json::from_str(&body).expect("json");
    let id = created["upload"].as_str().expect("upload id").to_owned();
    let mut offset = 0;
    for piece in bytes.chunks(chunk) {
        let response = http
            .patch(format!("{base}/{id}"))
            .bearer_auth(token)
            .header("Upload-Offset", offset.to_string())
            .body(piece.to_vec())
            .send()
            .await
            .expect("append");
        let status = response.status().as_u16();
        let body = response.text().await.expect("body");
        if status != 200 {
            return Err(refused(status, body));
        }
        offset += piece.len();
    }
    let response = http
        .post(format!("{base}/{id}/done"))
        .bearer_auth(token)
        .send()
        .await
        .expect("finish");
    let status = response.status().as_u16();
    let body = response.text().await.expect("body");
    if status != 201 {
        return Err(refused(status, body));
    }
    Ok(serde_json::from_str(&body).expect("json"))
}

/// `GET path` with `token`: (status, body bytes, headers).
pub async fn download(
    addr: SocketAddr,
    token: &str,
    path: &str,
) -> (u16, Vec<u8>, reqwest::header::HeaderMap) {
    let response = http()
        .get(format!("http://{addr}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("download");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body").to_vec();
    (status, body, headers)
}

/// A small valid PDF-looking file (the type is read from `%PDF-`).
pub fn pdf(text: &str) -> Vec<u8> {
    format!("%PDF-1.4\n% {text}\n%%EOF\n").into_bytes()
}

/// A JPEG's container (SOI, APP0 JFIF, APP1 EXIF with GPS-ish words,
/// a comment, a minimal frame, EOI): enough for the metadata stripping
/// to be seen.
pub fn jpeg_with_metadata(secret: &str) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    let segment = |out: &mut Vec<u8>, marker: u8, body: &[u8]| {
        out.extend_from_slice(&[0xFF, marker]);
        out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(body);
    };
    segment(&mut out, 0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
    let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\0\0\0\0\0".to_vec();
    exif.extend_from_slice(secret.as_bytes());
    segment(&mut out, 0xE1, &exif);
    segment(&mut out, 0xFE, format!("comment {secret}").as_bytes());
    // SOF0: 8-bit, 1x1, one component.
    segment(&mut out, 0xC0, &[8, 0, 1, 0, 1, 1, 1, 0x11, 0]);
    // SOS, then a few entropy-coded bytes and EOI.
    segment(&mut out, 0xDA, &[1, 1, 0, 0, 0x3F, 0]);
    out.extend_from_slice(&[0x00, 0x3F, 0xFF, 0xD9]);
    out
}
