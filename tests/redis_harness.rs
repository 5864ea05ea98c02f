//! The Redis test harness itself (tests/support/redis.rs): private servers,
//! restart on the same port with empty memory, stop, the RESP helper.

mod support;

use futures_util::StreamExt;
use support::redis::{resp_command, RedisServer, RespValue};
use support::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

fn bulk(s: &str) -> RespValue {
    RespValue::Bulk(s.as_bytes().to_vec())
}

fn process_id(info: &RespValue) -> String {
    info.text()
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .expect("INFO server has process_id")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn start_answers_ping_on_its_own_port() {
    let redis = RedisServer::start().await;
    assert!(!redis.is_shared());
    assert_ne!(redis.port(), 6379);
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
    assert!(redis.is_running().await);
    assert!(redis.ping().await);
    assert_eq!(
        redis.command(&["PING"]).await,
        RespValue::Simple("PONG".into())
    );
    // Nothing kept on disk, whatever the machine's defaults.
    let save = redis.command(&["CONFIG", "GET", "save"]).await.map();
    assert_eq!(save.get("save").map(String::as_str), Some(""));
    let aof = redis.command(&["CONFIG", "GET", "appendonly"]).await.map();
    assert_eq!(aof.get("appendonly").map(String::as_str), Some("no"));
    let dir = redis.command(&["CONFIG", "GET", "dir"]).await.map();
    let expected = redis.dir().unwrap().canonicalize().unwrap();
    assert_eq!(
        std::path::Path::new(&dir["dir"]).canonicalize().unwrap(),
        expected
    );
}

#[tokio::test]
async fn command_round_trips_every_reply_type() {
    let redis = RedisServer::start().await;
    redis.command(&["SET", "k", "v"]).await.assert_ok();
    assert_eq!(redis.command(&["GET", "k"]).await, bulk("v"));
    assert!(redis.command(&["GET", "missing"]).await.is_nil());
    assert_eq!(redis.command(&["INCR", "n"]).await, RespValue::Integer(1));
    assert_eq!(redis.command(&["INCRBY", "n", "41"]).await.int(), 42);
    let err = redis.command(&["NOSUCHCOMMAND"]).await;
    assert!(
        matches!(&err, RespValue::Error(e) if e.starts_with("ERR")),
        "{err:?}"
    );
    // Binary values, CRLF and empty strings survive.
    let payload: &[u8] = b"\x00\xff\r\n$3\r\n*";
    redis
        .command_bytes(&[b"SET", b"bin", payload])
        .await
        .assert_ok();
    assert_eq!(redis.command(&["GET", "bin"]).await.bytes(), payload);
    redis.command(&["SET", "empty", ""]).await.assert_ok();
    assert_eq!(redis.command(&["GET", "empty"]).await, bulk(""));
    // Arrays, maps, streams.
    assert_eq!(redis.command(&["RPUSH", "l", "a", "b", "c"]).await.int(), 3);
    assert_eq!(
        redis.command(&["LRANGE", "l", "0", "-1"]).await,
        RespValue::Array(vec![bulk("a"), bulk("b"), bulk("c")])
    );
    assert_eq!(
        redis
            .command(&["HSET", "h", "f1", "x", "f2", "y"])
            .await
            .int(),
        2
    );
    let h = redis.command(&["HGETALL", "h"]).await.map();
    assert_eq!(
        h.into_iter().collect::<Vec<_>>(),
        vec![("f1".into(), "x".into()), ("f2".into(), "y".into())]
    );
    let id = redis.command(&["XADD", "s", "*", "k", "v"]).await.text();
    assert!(id.contains('-'), "stream id {id}");
    assert_eq!(redis.command(&["XLEN", "s"]).await.int(), 1);
    let range = redis.command(&["XRANGE", "s", "-", "+"]).await;
    assert_eq!(
        range,
        RespValue::Array(vec![RespValue::Array(vec![
            bulk(&id),
            RespValue::Array(vec![bulk("k"), bulk("v")])
        ])])
    );
    assert_eq!(
        redis.command(&["KEYS", "*"]).await.strings(),
        vec!["bin", "empty", "h", "k", "l", "n", "s"]
    );
    assert_eq!(redis.command(&["DBSIZE"]).await.int(), 7);
}

#[tokio::test]
async fn restart_loses_everything_and_answers_on_the_same_port() {
    let redis = RedisServer::start().await;
    let port = redis.port();
    redis.command(&["SET", "k", "v"]).await.assert_ok();
    redis.command(&["XADD", "s", "*", "a", "b"]).await.text();
    let before = process_id(&redis.command(&["INFO", "server"]).await);

    redis.restart().await;
    assert_eq!(redis.port(), port);
    assert!(redis.is_running().await);
    assert_eq!(
        redis.command(&["PING"]).await,
        RespValue::Simple("PONG".into())
    );
    let after = process_id(&redis.command(&["INFO", "server"]).await);
    assert_ne!(before, after, "a new process");
    assert!(redis.command(&["GET", "k"]).await.is_nil());
    assert_eq!(redis.command(&["XLEN", "s"]).await.int(), 0);
    assert_eq!(
        redis.command(&["KEYS", "*"]).await,
        RespValue::Array(vec![])
    );

    // And again, from the stopped state this time.
    redis.command(&["SET", "k2", "v2"]).await.assert_ok();
    redis.stop().await;
    redis.restart().await;
    assert_eq!(redis.port(), port);
    assert_eq!(redis.command(&["DBSIZE"]).await.int(), 0);
}

#[tokio::test]
async fn publish_returns_the_receiver_count_and_delivers_raw_bytes() {
    let redis = RedisServer::start().await;
    assert_eq!(
        redis.command(&["PUBLISH", "nobody", "hi"]).await,
        RespValue::Integer(0)
    );

    // A subscriber, through the redis crate (as the bus subscribes).
    let client = ::redis::Client::open(redis.url()).expect("client");
    let mut sub = client.get_async_pubsub().await.expect("pubsub");
    sub.subscribe("chan").await.expect("subscribe");
    let mut messages = sub.on_message();

    // Not MessagePack, not even UTF-8: a malformed bus message.
    let junk: &[u8] = b"\xc1\xff\x00garbage\r\n";
    assert_eq!(
        redis.command_bytes(&[b"PUBLISH", b"chan", junk]).await,
        RespValue::Integer(1)
    );
    let message = tokio::time::timeout(WAIT, messages.next())
        .await
        .expect("message within WAIT")
        .expect("subscription open");
    assert_eq!(message.get_channel_name(), "chan");
    assert_eq!(message.get_payload_bytes(), junk);
}

#[tokio::test]
async fn stop_makes_connections_fail_until_restart() {
    let redis = RedisServer::start().await;
    redis.command(&["SET", "k", "v"]).await.assert_ok();
    // A connection opened before the stop is cut too.
    let mut old = TcpStream::connect(redis.addr()).await.unwrap();

    redis.stop().await;
    assert!(!redis.is_running().await);
    assert!(!redis.ping().await);
    let err = redis.try_command(&["PING"]).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    assert!(TcpStream::connect(redis.addr()).await.is_err());
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(WAIT, old.read(&mut byte))
        .await
        .expect("old connection ends within WAIT");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Stopping twice is harmless.
    redis.stop().await;
    assert!(!redis.is_running().await);

    redis.restart().await;
    assert!(redis.is_running().await);
    assert!(redis.command(&["GET", "k"]).await.is_nil());
}

#[tokio::test]
async fn concurrent_servers_get_distinct_ports_and_data() {
    let (a, b, c) = tokio::join!(
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start()
    );
    let mut ports = vec![a.port(), b.port(), c.port()];
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 3, "{ports:?}");
    a.command(&["SET", "who", "a"]).await.assert_ok();
    b.command(&["SET", "who", "b"]).await.assert_ok();
    assert_eq!(a.command(&["GET", "who"]).await, bulk("a"));
    assert_eq!(b.command(&["GET", "who"]).await, bulk("b"));
    assert!(c.command(&["GET", "who"]).await.is_nil());
    // Restarting one leaves the others alone.
    b.restart().await;
    assert!(b.command(&["GET", "who"]).await.is_nil());
    assert_eq!(a.command(&["GET", "who"]).await, bulk("a"));
}

#[tokio::test]
async fn drop_kills_the_process_and_removes_its_folder() {
    let redis = RedisServer::start().await;
    let addr = redis.addr();
    let dir = redis.dir().unwrap().to_owned();
    assert!(dir.join("redis.log").exists());
    drop(redis);
    assert!(!dir.exists(), "{} still exists", dir.display());
    let err = resp_command(addr, &[b"PING"]).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}

#[tokio::test]
async fn shared_or_start_answers_and_refuses_restart_when_shared() {
    let redis = RedisServer::shared_or_start().await;
    assert!(redis.ping().await);
    let key = format!("preau-harness-{}", rand_suffix());
    redis
        .command(&["SET", &key, "1", "EX", "60"])
        .await
        .assert_ok();
    assert_eq!(redis.command(&["GET", &key]).await, bulk("1"));
    assert_eq!(redis.command(&["DEL", &key]).await.int(), 1);
    if redis.is_shared() {
        assert_eq!(redis.port(), 6379);
        assert_eq!(redis.url(), "redis://127.0.0.1:6379");
        assert!(redis.dir().is_none());
        let redis = std::sync::Arc::new(redis);
        for what in ["stop", "restart"] {
            let handle = redis.clone();
            let joined = tokio::spawn(async move {
                if what == "stop" {
                    handle.stop().await
                } else {
                    handle.restart().await
                }
            })
            .await;
            let panic = joined.expect_err("must panic").into_panic();
            let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(
                message.contains(&format!("RedisServer::{what}()"))
                    && message.contains("RedisServer::start()"),
                "{message}"
            );
        }
        // Still up: the handle never owned it.
        assert!(redis.ping().await);
    } else {
        assert_ne!(redis.port(), 6379);
        redis.restart().await;
        assert!(redis.ping().await);
    }
}

fn rand_suffix() -> u64 {
    use rand::Rng;
    rand::thread_rng().gen()
}
