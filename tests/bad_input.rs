//! Bad input: each gets its documented error or close code, and the server
//! keeps serving everyone else without losing anything.
//!
//! Every test runs its case between two posts of a bystander pair (two
//! clients joined to one room): both must receive both events, and the
//! room's history must hold both.

mod support;

use futures_util::SinkExt;
use preau::auth::{Claims, Keyring};
use preau::client::{Client, ClientError};
use preau::protocol::{Body, ErrorCode, ErrorReply, Request, Role, ServerFrame};
use support::*;
use tokio_tungstenite::tungstenite::Message;

const BY_ROOM: &str = "3B/chat/bystanders";
const OFF_ROOM: &str = "3B/chat/offender";

/// Two clients joined to [`BY_ROOM`]; `a` posts, both must receive.
struct Bystanders {
    a: Client,
    b: Client,
    /// (offset, text) of every message acked so far.
    acked: Vec<(u64, String)>,
}

impl Bystanders {
    /// Connects the pair and posts the "before" message.
    async fn before(server: &TestServer) -> Bystanders {
        Bystanders::before_at(&server.url()).await
    }

    /// Staff opens [`BY_ROOM`] and [`OFF_ROOM`] first: pupils join only
    /// rooms that exist.
    async fn before_at(url: &str) -> Bystanders {
        open_rooms(url, &[BY_ROOM, OFF_ROOM]).await;
        let connect = |user: &'static str| async move {
            Client::connect(url, &student(user, "3B"))
                .await
                .expect("bystander connects")
                .0
        };
        let mut a = connect("by-a").await;
        let mut b = connect("by-b").await;
        a.join(BY_ROOM, None).await.expect("bystander a joins");
        b.join(BY_ROOM, None).await.expect("bystander b joins");
        let mut pair = Bystanders {
            a,
            b,
            acked: Vec::new(),
        };
        pair.post("before the bad input").await;
        pair
    }

    async fn post(&mut self, text: &str) {
        let ack = self
            .a
            .post(BY_ROOM, text)
            .await
            .unwrap_or_else(|e| panic!("bystander post {text:?}: {e}"));
        let want = self.acked.len() as u64 + 1;
        assert_eq!(ack.offset, want, "bystander ack offset for {text:?}");
        for (who, client) in [("a", &mut self.a), ("b", &mut self.b)] {
            let event = next_event(client).await;
            let Body::Message { text: got, .. } = &event.body else {
                panic!("not a message")
            };
            assert_eq!(
                (event.offset, got.as_str()),
                (want, text),
                "bystander {who} receives {text:?}"
            );
        }
        self.acked.push((want, text.to_owned()));
    }

    /// Posts the "after" message and checks history holds everything.
    async fn after(mut self) {
        self.post("after the bad input").await;
        let page = self
            .b
            .history(BY_ROOM, None, None, Some(200))
            .await
            .expect("bystander history");
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
        assert_eq!(got, self.acked, "bystander history");
    }
}

/// An authenticated client that sends the bad input.
async fn offender(server: &TestServer) -> Client {
    server.connect(&student("off", "3B")).await.0
}

fn msgpack(value: serde_json::Value) -> Vec<u8> {
    rmp_serde::to_vec_named(&value).expect("encode test frame")
}

/// The next frame must be an `error` (events and presence are not expected
/// on the offender's connection).
async fn next_error(client: &mut Client) -> ErrorReply {
    match next(client).await {
        ServerFrame::Error(reply) => reply,
        other => panic!("expected an error frame, got {other:?}"),
    }
}

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

fn refused_code<T>(result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Refused(reply)) => reply.code,
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(_) => panic!("expected a refusal, got ok"),
    }
}

/// Sends `frame` on an authenticated client; expects `error` with `code`
/// and `id`, then a working connection.
async fn expect_refused(client: &mut Client, frame: Vec<u8>, code: ErrorCode, id: Option<u32>) {
    let shown = format!("{:02x?}", &frame[..frame.len().min(24)]);
    client.send_raw(frame).expect("send");
    let reply = next_error(client).await;
    assert_eq!((reply.code, reply.id), (code, id), "reply to {shown}");
    assert!(
        ping(client).await.is_ok(),
        "connection usable after {shown}"
    );
}

#[tokio::test]
async fn not_messagepack_is_malformed_frame() {
    let server = TestServer::start().await;
    let pair = Bystanders::before(&server).await;
    let mut off = offender(&server).await;
    for frame in [
        vec![0xc1],             // never used in msgpack
        vec![],                 // empty frame
        vec![0x81],             // map of 1 with nothing in it
        vec![0x81, 0xa4, b't'], // truncated key
        vec![0xdb, 0xff, 0xff, 0xff, 0xff],
    ] {
        expect_refused(&mut off, frame, ErrorCode::MalformedFrame, None).await;
    }
    pair.after().await;
}

#[tokio::test]
async fn non_map_is_malformed_frame() {
    let server = TestServer::start().await;
    let pair = Bystanders::before(&server).await;
    let mut off = offender(&server).await;
    for value in [
        serde_json::json!(5),
        serde_json::json!("ping"),
        serde_json::json!(["type", "ping"]),
        serde_json::json!(null),
        serde_json::json!(true),
    ] {
        expect_refused(&mut off, msgpack(value), ErrorCode::MalformedFrame, None).await;
    }
    pair.after().await;
}

#[tokio::test]
async fn map_without_string_type_is_malformed_frame() {
    let server = TestServer::start().await;
    let pair = Bystanders::before(&server).await;
    let mut off = offender(&server).await;
    for value in [
        serde_json::json!({}),
        serde_json::json!({"room": BY_ROOM, "text": "x"}),
        serde_json::json!({"type": 5}),
        serde_json::json!({"type": null}),
        serde_json::json!({"type": ["ping"]}),
        serde_json::json!({"kind": "ping"}),
    ] {
        expect_refused(&mut off, msgpack(value), ErrorCode::MalformedFrame, None).await;
    }
    pair.after().await;
}

#[tokio::test]
async fn unknown_type_is_unknown_type_with_its_id() {
    let server = TestServer::start().await;
    let pair = Bystanders::before(&server).await;
    let mut off = offender(&server).await;
    expect_refused(
        &mut off,
        msgpack(serde_json::json!({"type": "fly", "id": 7})),
        ErrorCode::UnknownType,
        Some(7),
    )
    .await;
    // Case matters, and no id gives an id-less error.
    expect_refused(
        &mut off,
        msgpack(serde_json::json!({"type": "PING", "id": 70})),
        ErrorCode::UnknownType,
        Some(70),
    )
    .await;
    expect_refused(
        &mut off,
        msgpack(serde_json::json!({"type": "event"})),
        ErrorCode::UnknownType,
        None,
    )
    .await;
    pair.after().await;
}

#[tokio::test]
async fn wrong_field_types_are_invalid_field_with_the_id() {
    let server = TestServer::start().await;
    let pair = Bystanders::before(&server).await;
    let mut off = offender(&server).await;
    off.join(OFF_ROOM, None).await.unwrap();
    let cases = [
        (
            serde_json::json!({"type": "post", "id": 8, "room": 5, "text": "x"}),
            8,
        ),
        (
            serde_json::json!({"type": "post", "id": 9, "room": OFF_ROOM}),
            9,
        ),
        (
            serde_json::json!({"type": "post", "id": 10, "room": OFF_ROOM, "text": 1}),
            10,
        ),
        (serde_json::json!({"type": "join", "id": 11}), 11),
        (
            serde_json::json!({"type": "history", "id": 12, "room": OFF_ROOM, "limit": "x"}),
            12,
        ),
        (
            serde_json::json!({"type": "history", "id": 13, "room": OFF_ROOM, "before": -1}),
            13,
        ),
        (
            serde_json::json!({"type": "join", "id": 14, "room": BY_ROOM, "since": 3}),
            14,
        ),
        (
            serde_json::json!({"type": "typing", "id": 15, "room": [OFF_ROOM]}),
            15,
        ),
    ];
    for (value, id) in cases {
        expect_refused(&mut off, msgpack(value), ErrorCode::InvalidField, Some(id)).await;
    }
    // None of the refused posts was stored.
    let page = off.history(OFF_ROOM, None, None, None).await.unwrap();
    assert_eq!(page.head, 0, "nothing stored in the offender's room");
    pair.after().await;
}

#[tokio::test]
async fn oversized_frame_closes_with_1009() {
    let server = TestServer::start_with(|c| {
        c.max_frame_bytes = 2048;
        c.max_message_len = 1000;
    })
    .await;
    let pair = Bystanders::before(&server).await;
    let mut off = offender(&server).await;
    // Under the frame limit but over the text limit: an error, not a close.
    off.join(OFF_ROOM, None).await.unwrap();
    assert_eq!(
        refused_code(off.post(OFF_ROOM, &"x".repeat(1500)).await),
        ErrorCode::MessageTooLong
    );
    off.send_raw(vec![0x90u8; 4096]).expect("send");
    assert_eq!(closed_with(&mut off).await, Some(1009));
    pair.after().await;
}

#[tokio::test]
async fn text_frame_closes_with_1003() {
    let server = TestServer::start().await;
    let pair = Bystanders::before(&server).await;
    let mut off = offender(&server).await;
    off.send_message(Message::Text(r#"{"type":"ping","id":5}"#.into()))
        .expect("send");
    assert_eq!(closed_with(&mut off).await, Some(1003));
    pair.after().await;
}

/// Sends `frame` on a raw socket; the error it gets, then the close code.
async fn raw_refused(server: &TestServer, frame: Vec<u8>) -> (Option<ErrorReply>, Option<u16>) {
    let mut ws = raw_ws(server.addr()).await;
    ws.send(Message::Binary(frame.into())).await.expect("send");
    let reply = match raw_next(&mut ws).await {
        Some(ServerFrame::Error(reply)) => Some(reply),
        Some(other) => panic!("expected an error frame, got {other:?}"),
        None => return (None, None),
    };
    (reply, raw_close_code(&mut ws).await)
}

fn hello_frame(token: &str) -> Vec<u8> {
    msgpack(serde_json::json!({"type": "hello", "id": 1, "token": token}))
}

#[tokio::test]
async fn requests_before_hello_close_with_4000() {
    let server = TestServer::start().await;
    let pair = Bystanders::before(&server).await;
    let requests = [
        serde_json::json!({"type": "ping", "id": 3}),
        serde_json::json!({"type": "join", "id": 3, "room": BY_ROOM}),
        serde_json::json!({"type": "post", "id": 3, "room": BY_ROOM, "text": "sneaky"}),
        serde_json::json!({"type": "history", "id": 3, "room": BY_ROOM}),
    ];
    for request in requests {
        let shown = request.to_string();
        let (reply, code) = raw_refused(&server, msgpack(request)).await;
        let reply = reply.unwrap_or_else(|| panic!("{shown}: closed without an error"));
        assert_eq!(reply.id, Some(3), "{shown}");
        assert_eq!(reply.code, ErrorCode::Unauthorized, "{shown}");
        assert_eq!(code, Some(4000), "{shown}");
    }
    pair.after().await;
}

#[tokio::test]
async fn garbage_before_hello_closes_with_4000() {
    let server = TestServer::start().await;
    let pair = Bystanders::before(&server).await;
    for (frame, want) in [
        (vec![0xc1], ErrorCode::MalformedFrame),
        (msgpack(serde_json::json!(42)), ErrorCode::MalformedFrame),
        (
            msgpack(serde_json::json!({"type": "fly", "id": 2})),
            ErrorCode::UnknownType,
        ),
    ] {
        let shown = format!("{frame:02x?}");
        let (reply, code) = raw_refused(&server, frame).await;
        let reply = reply.unwrap_or_else(|| panic!("{shown}: closed without an error"));
        assert_eq!(reply.code, want, "{shown}");
        assert_eq!(code, Some(4000), "{shown}");
    }
    // A text frame before hello is also closed (1003: not binary).
    let mut ws = raw_ws(server.addr()).await;
    ws.send(Message::Text("hello".into())).await.unwrap();
    assert_eq!(raw_close_code(&mut ws).await, Some(1003));
    pair.after().await;
}

#[tokio::test]
async fn hello_without_token_is_invalid_field_then_4000() {
    let server = TestServer::start().await;
    let pair = Bystanders::before(&server).await;
    for hello in [
        serde_json::json!({"type": "hello", "id": 1}),
        serde_json::json!({"type": "hello", "id": 1, "token": 12345}),
        serde_json::json!({"type": "hello", "id": 1, "token": null}),
    ] {
        let shown = hello.to_string();
        let (reply, code) = raw_refused(&server, msgpack(hello)).await;
        let reply = reply.unwrap_or_else(|| panic!("{shown}: closed without an error"));
        assert_eq!(
            (reply.code, reply.id),
            (ErrorCode::InvalidField, Some(1)),
            "{shown}"
        );
        assert_eq!(code, Some(4000), "{shown}");
    }
    pair.after().await;
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A JWT with `alg: none` and no signature.
fn alg_none_token(claims: &Claims) -> String {
    let header = base64url(br#"{"alg":"none","typ":"JWT","kid":"test"}"#);
    let body = base64url(&serde_json::to_vec(claims).unwrap());
    format!("{header}.{body}.")
}

/// Signs any JSON claims with the test secret (HS256 or `alg`).
fn sign(alg: jsonwebtoken::Algorithm, claims: &serde_json::Value) -> String {
    let secret = SECRET.split_once(':').unwrap().1;
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = Some("test".to_owned());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn bad_tokens_close_with_4001() {
    let server = TestServer::start().await;
    let pair = Bystanders::before(&server).await;
    let good = claims("ana", Role::Student, &["3B"]);
    let now = preau::auth::now_secs();
    let forged = Keyring::parse("test:ffffffffffffffffffffffffffffffff")
        .unwrap()
        .mint(&good)
        .unwrap();
    let unknown_kid = Keyring::parse("other:0123456789abcdef0123456789abcdef")
        .unwrap()
        .mint(&good)
        .unwrap();
    let valid = keyring().mint(&good).unwrap();
    let (head, rest) = valid.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    // The encoder matches the token's own: re-encoding the same claims
    // gives back the valid token, so only the role differs when tampered.
    assert_eq!(
        format!(
            "{head}.{}.{sig}",
            base64url(&serde_json::to_vec(&good).unwrap())
        ),
        valid
    );
    let mut tampered_claims = good.clone();
    tampered_claims.role = Role::Staff;
    let tampered = format!(
        "{head}.{}.{sig}",
        base64url(&serde_json::to_vec(&tampered_claims).unwrap())
    );
    let mut empty_sub = good.clone();
    empty_sub.sub = String::new();
    let cases = [
        ("empty token", String::new()),
        ("forged", forged),
        ("unknown kid", unknown_kid),
        ("tampered payload", tampered),
        ("alg none", alg_none_token(&good)),
        (
            "HS512",
            sign(
                jsonwebtoken::Algorithm::HS512,
                &serde_json::to_value(&good).unwrap(),
            ),
        ),
        (
            "no exp",
            sign(
                jsonwebtoken::Algorithm::HS256,
                &serde_json::json!({"sub": "ana", "name": "Ana", "role": "student",
                    "classes": ["3B"], "iat": now}),
            ),
        ),
        (
            "unknown role",
            sign(
                jsonwebtoken::Algorithm::HS256,
                &serde_json::json!({"sub": "ana", "name": "Ana", "role": "admin",
                    "classes": ["3B"], "iat": now, "exp": now + 3600}),
            ),
        ),
        ("empty sub", keyring().mint(&empty_sub).unwrap()),
        ("garbage", "garbage".to_owned()),
        ("three garbage parts", "a.b.c".to_owned()),
        (
            "signature dropped",
            format!("{head}.{}", rest.split_once('.').unwrap().0),
        ),
    ];
    let mut wrong = Vec::new();
    for (what, token) in &cases {
        let (reply, code) = raw_refused(&server, hello_frame(token)).await;
        let got = (reply.as_ref().map(|r| (r.code, r.id)), code);
        if got != (Some((ErrorCode::Unauthorized, Some(1))), Some(4001)) {
            wrong.push(format!("{what}: {got:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "expected (unauthorized, id 1) then 4001:\n{}",
        wrong.join("\n")
    );
    // The valid token still works.
    let (_, hello) = server.connect(&valid).await;
    assert_eq!(hello.user.id, "ana");
    pair.after().await;
}

#[tokio::test]
async fn expired_token_closes_with_4002() {
    let server = TestServer::start().await;
    let pair = Bystanders::before(&server).await;
    let now = preau::auth::now_secs();
    for exp in [now - 60, now - 1, 1] {
        let mut expired = claims("ana", Role::Student, &["3B"]);
        expired.exp = exp;
        expired.iat = 0;
        let token = keyring().mint(&expired).unwrap();
        let (reply, code) = raw_refused(&server, hello_frame(&token)).await;
        let reply = reply.unwrap_or_else(|| panic!("exp {exp}: closed without an error"));
        assert_eq!(
            (reply.code, reply.id),
            (ErrorCode::TokenExpired, Some(1)),
            "exp {exp}"
        );
        assert_eq!(code, Some(4002), "exp {exp}");
    }
    pair.after().await;
}

#[tokio::test]
async fn no_hello_in_time_closes_with_4003() {
    let server =
        TestServer::start_with(|c| c.auth_timeout = std::time::Duration::from_millis(300)).await;
    let pair = Bystanders::before(&server).await;
    let mut ws = raw_ws(server.addr()).await;
    assert_eq!(raw_close_code(&mut ws).await, Some(4003));
    // Authenticated connections are not subject to the auth timeout: the
    // pair was connected before the silent socket and still works.
    pair.after().await;
}

#[tokio::test]
async fn second_hello_is_already_authenticated() {
    let server = TestServer::start().await;
    let pair = Bystanders::before(&server).await;
    let mut off = offender(&server).await;
    // Even with a valid token for another user: the identity does not change.
    let other = teacher("prof", "4A");
    let result = off
        .request::<rmpv::Value>(Request::Hello {
            id: None,
            token: other,
        })
        .await;
    assert_eq!(refused_code(result), ErrorCode::AlreadyAuthenticated);
    assert!(ping(&mut off).await.is_ok());
    // Still the student of 3B: may join 3B, not 4A.
    assert_eq!(
        refused_code(off.join("4A/chat/revision", None).await),
        ErrorCode::Forbidden
    );
    off.join(OFF_ROOM, None).await.unwrap();
    off.post(OFF_ROOM, "still me").await.unwrap();
    let event = next_event(&mut off).await;
    assert_eq!(event.from.id, "off");
    pair.after().await;
}

#[tokio::test]
async fn bad_post_text_is_refused_and_not_stored() {
    let server = TestServer::start_with(|c| c.max_message_len = 100).await;
    let pair = Bystanders::before(&server).await;
    let mut off = offender(&server).await;
    off.join(OFF_ROOM, None).await.unwrap();
    assert_eq!(
        refused_code(off.post(OFF_ROOM, "").await),
        ErrorCode::InvalidField,
        "empty text"
    );
    assert_eq!(
        refused_code(off.post(OFF_ROOM, " \n\t ").await),
        ErrorCode::InvalidField,
        "blank text"
    );
    assert_eq!(
        refused_code(off.post(OFF_ROOM, &"x".repeat(101)).await),
        ErrorCode::MessageTooLong,
        "101 bytes"
    );
    // The limit is in bytes: 51 two-byte characters are 102 bytes.
    assert_eq!(
        refused_code(off.post(OFF_ROOM, &"é".repeat(51)).await),
        ErrorCode::MessageTooLong,
        "102 bytes of é"
    );
    // Exactly the limit is accepted, and is the first offset: nothing was
    // stored or sequenced by the refused posts.
    let at_limit = "y".repeat(100);
    let ack = off.post(OFF_ROOM, &at_limit).await.unwrap();
    assert_eq!(ack.offset, 1);
    let page = off.history(OFF_ROOM, None, None, None).await.unwrap();
    assert_eq!(page.events.len(), 1);
    let Body::Message { text, .. } = &page.events[0].body else {
        panic!("not a message")
    };
    assert_eq!(text, &at_limit);
    pair.after().await;
}

#[tokio::test]
async fn history_with_limit_zero_is_invalid_field() {
    let server = TestServer::start().await;
    let pair = Bystanders::before(&server).await;
    let mut off = offender(&server).await;
    assert_eq!(
        refused_code(off.history(BY_ROOM, None, None, Some(0)).await),
        ErrorCode::InvalidField
    );
    // A limit of 1 works and returns the latest message.
    let page = off.history(BY_ROOM, None, None, Some(1)).await.unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].offset, 1);
    pair.after().await;
}

/// `{type: "ping", id, x: [[[...nil...]]]}` with `depth` nested arrays.
fn nested_ping(id: u32, depth: usize) -> Vec<u8> {
    let mut frame = Vec::new();
    rmp::encode::write_map_len(&mut frame, 3).unwrap();
    rmp::encode::write_str(&mut frame, "type").unwrap();
    rmp::encode::write_str(&mut frame, "ping").unwrap();
    rmp::encode::write_str(&mut frame, "id").unwrap();
    rmp::encode::write_uint(&mut frame, u64::from(id)).unwrap();
    rmp::encode::write_str(&mut frame, "x").unwrap();
    frame.extend(std::iter::repeat_n(0x91u8, depth));
    frame.push(0xc0);
    frame
}

/// Deep nesting must be refused (or decoded), never crash the process. Runs
/// against the real binary so that a crash fails this test only.
#[tokio::test]
async fn deeply_nested_frames_do_not_crash_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Proc::serve(dir.path(), free_port(), &[]).await;
    let url = server.url();
    let pair = Bystanders::before_at(&url).await;
    let (mut off, _) = Client::connect(&url, &student("off", "3B")).await.unwrap();
    for (id, depth) in [(21, 10), (22, 700), (23, 2_000), (24, 60_000)] {
        off.send_raw(nested_ping(id, depth)).unwrap();
        let reply = tokio::time::timeout(WAIT, off.next())
            .await
            .expect("reply within WAIT")
            .unwrap_or_else(|| {
                panic!("connection dropped after a ping nested {depth} deep (server crashed?)")
            });
        match reply {
            // An unknown field is ignored, whatever its shape.
            ServerFrame::Ok { id: got, .. } if depth <= 1000 => assert_eq!(got, Some(id)),
            ServerFrame::Error(e) if depth > 100 => {
                assert_eq!(e.code, ErrorCode::MalformedFrame, "depth {depth}")
            }
            other => panic!("depth {depth}: {other:?}"),
        }
        assert!(ping(&mut off).await.is_ok(), "usable after depth {depth}");
    }
    pair.after().await;
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server process is still running"
    );
}
