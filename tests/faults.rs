//! Faults injected from outside, and what a client can rely on after
//! them: a post's idempotency key (a retry is stored once), a Redis frozen
//! in the middle of a post, a node restarted with the same id over a
//! stream that still holds its previous run's posts, a disk that fills up
//! and frees again, and a peer that accepts connections but never answers.
//! Real binary, real sled, real Redis.

mod support;

use std::path::Path;
use std::time::Duration;

use preau::client::{Client, ClientError};
use preau::protocol::{Body, ErrorCode, ModAction, ServerFrame};
use support::redis::RedisServer;
use support::*;

const ROOM: &str = "3B/chat/x";

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {WAIT:?}"))
}

fn text_of(body: &Body) -> Option<&str> {
    match body {
        Body::Message { text, .. } => Some(text),
        _ => None,
    }
}

/// Every message text of the room, by offset.
async fn messages(client: &mut Client, room: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = within(
            "history",
            client.history(room, None, Some(after), Some(200)),
        )
        .await
        .expect("history");
        for event in &page.events {
            if let Some(text) = text_of(&event.body) {
                out.push((event.offset, text.to_owned()));
            }
        }
        match page.events.last() {
            Some(last) if page.more => after = last.offset,
            _ => return out,
        }
    }
}

#[tokio::test]
async fn a_post_retried_with_its_key_is_stored_once_even_after_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let node = Proc::serve(dir.path(), port, &[]).await;
    let mut prof = client(&node.url(), &teacher("prof", "3B")).await;
    let mut ana = client(&node.url(), &student("ana", "3B")).await;
    let mut bob = client(&node.url(), &student("bob", "3B")).await;
    prof.join(ROOM, None).await.expect("join");
    ana.join(ROOM, None).await.expect("join");
    bob.join(ROOM, None).await.expect("join");
    let first = ana
        .post_keyed(ROOM, "une fois", Some("k-1"))
        .await
        .expect("post");
    let again = ana
        .post_keyed(ROOM, "une fois", Some("k-1"))
        .await
        .expect("retry");
    assert_eq!(again, first, "the retry gets the first post's ack");
    // Keys are per user: bob's k-1 is another post.
    let bobs = bob
        .post_keyed(ROOM, "bob", Some("k-1"))
        .await
        .expect("post");
    assert_ne!(bobs.offset, first.offset);
    // Slow mode would refuse a second post; a retry is not one.
    prof.moderate(ROOM, ModAction::SlowMode { seconds: 600 })
        .await
        .expect("slow mode");
    let mut carl = client(&node.url(), &student("carl", "3B")).await;
    carl.join(ROOM, None).await.expect("join");
    let slow = carl
        .post_keyed(ROOM, "lent", Some("k-2"))
        .await
        .expect("post");
    let slow_again = carl
        .post_keyed(ROOM, "lent", Some("k-2"))
        .await
        .expect("retry");
    assert_eq!(slow_again, slow);
    match carl.post_keyed(ROOM, "encore", Some("k-3")).await {
        Err(ClientError::Refused(e)) => assert_eq!(e.code, ErrorCode::SlowMode),
        other => panic!("a new post in slow mode: {other:?}"),
    }
    // A bad key is refused, with the documented code.
    match ana.post_keyed(ROOM, "x", Some(&"k".repeat(65))).await {
        Err(ClientError::Refused(e)) => assert_eq!(e.code, ErrorCode::InvalidField),
        other => panic!("a 65-byte key: {other:?}"),
    }
    drop((prof, ana, bob, carl));
    node.terminate().await;
    // After a restart the room loads anew: the store remembers the key.
    let node = Proc::serve(dir.path(), port, &[]).await;
    let mut ana = client(&node.url(), &student("ana", "3B")).await;
    ana.join(ROOM, None).await.expect("join");
    let after_restart = ana
        .post_keyed(ROOM, "une fois", Some("k-1"))
        .await
        .expect("retry");
    assert_eq!(after_restart, first);
    let texts = messages(&mut ana, ROOM).await;
    assert_eq!(
        texts.iter().filter(|(_, t)| t == "une fois").count(),
        1,
        "{texts:?}"
    );
    assert_eq!(
        texts.iter().filter(|(_, t)| t == "lent").count(),
        1,
        "{texts:?}"
    );
    node.terminate().await;
}

/// Two nodes and Redis; Redis is frozen (SIGSTOP) while a post is in
/// flight: the poster gets `unavailable` though Redis may run the script
/// once it thaws. The retry with the same key gets the stored post's ack:
/// exactly one copy in history.
#[tokio::test]
async fn a_post_answered_unavailable_while_redis_is_frozen_is_stored_once_when_retried() {
    let redis = RedisServer::start().await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let a = cluster_node(&redis.url(), dir_a.path()).await;
    let b = cluster_node(&redis.url(), dir_b.path()).await;
    let mut prof = client(&b.url(), &teacher("prof", "3B")).await;
    prof.join(ROOM, None).await.expect("join");
    let mut ana = client(&a.url(), &student("ana", "3B")).await;
    ana.join(ROOM, None).await.expect("join");
    ana.post(ROOM, "avant").await.expect("post");
    for attempt in 0..4 {
        let key = format!("gel-{attempt}");
        let text = format!("pendant le gel {attempt}");
        redis.signal("STOP").await;
        let sent = {
            let (text, key) = (text.clone(), key.clone());
            let url = a.url();
            tokio::spawn(async move {
                let mut c = client(&url, &student("ana", "3B")).await;
                c.join(ROOM, None).await.expect("join");
                c.post_keyed(ROOM, &text, Some(&key)).await
            })
        };
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        redis.signal("CONT").await;
        let first = within("the frozen post", sent).await.expect("task");
        // Whatever the first answer, a retry with the key settles it.
        let mut retry = None;
        for _ in 0..50 {
            match ana.post_keyed(ROOM, &text, Some(&key)).await {
                Ok(ack) => {
                    retry = Some(ack);
                    break;
                }
                Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => panic!("retry refused: {e}"),
            }
        }
        let retry = retry.expect("the retry is acked");
        if let Ok(first) = first {
            assert_eq!(first, retry);
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let on_b = messages(&mut prof, ROOM).await;
            let copies: Vec<u64> = on_b
                .iter()
                .filter(|(_, t)| *t == text)
                .map(|(o, _)| *o)
                .collect();
            if copies == [retry.offset] {
                break;
            }
            assert!(
                copies.len() <= 1 && tokio::time::Instant::now() < deadline,
                "attempt {attempt}: copies at {copies:?}, ack names {}",
                retry.offset
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let on_a = messages(&mut ana, ROOM).await;
        assert_eq!(on_a.iter().filter(|(_, t)| *t == text).count(), 1);
    }
    a.terminate().await;
    b.terminate().await;
}

/// Node a posts, dies, loses its data folder and comes back with the same
/// node id while the Redis stream still holds its previous run's posts
/// (with the same post ids its new run hands out): every ack must name the
/// poster's own message.
#[tokio::test]
async fn a_node_restarted_with_the_same_id_never_acks_with_another_posts_offset() {
    let redis = RedisServer::start().await;
    let dir_b = tempfile::tempdir().expect("dir");
    let args = ["--node-id", "a", "--stream-max", "100"];
    let dir_a = tempfile::tempdir().expect("dir");
    let a = cluster_node_with(&redis.url(), dir_a.path(), &args).await;
    let b = cluster_node_with(
        &redis.url(),
        dir_b.path(),
        &["--node-id", "b", "--stream-max", "100"],
    )
    .await;
    let mut prof = client(&b.url(), &teacher("prof", "3B")).await;
    prof.join(ROOM, None).await.expect("join");
    // Enough history before that the new a must page it from b.
    let mut writers = Vec::new();
    for w in 0..4 {
        let url = b.url();
        writers.push(tokio::spawn(async move {
            let (mut c, _) = Client::connect(&url, &student(&format!("w{w}"), "3B"))
                .await
                .expect("w");
            c.join(ROOM, None).await.expect("join");
            for i in 0..300 {
                c.post(ROOM, &format!("w{w}-{i}")).await.expect("post");
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let mut ana = client(&a.url(), &student("ana", "3B")).await;
    ana.join(ROOM, None).await.expect("join");
    for i in 0..100 {
        ana.post(ROOM, &format!("old-{i}")).await.expect("post");
    }
    drop(ana);
    a.kill9().await;
    drop(dir_a);
    let dir_a = tempfile::tempdir().expect("dir");
    let a = cluster_node_with(&redis.url(), dir_a.path(), &args).await;
    let mut posters = Vec::new();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(30));
    for i in 0..30 {
        let (url, start) = (a.url(), start.clone());
        posters.push(tokio::spawn(async move {
            let (mut c, _) = Client::connect(&url, &student(&format!("p{i}"), "3B"))
                .await
                .expect("p");
            c.join(ROOM, None).await.expect("join");
            start.wait().await;
            let text = format!("new-{i}");
            let ack = c.post(ROOM, &text).await.expect("post");
            (ack.offset, text)
        }));
    }
    let mut acks = Vec::new();
    for p in posters {
        acks.push(within("a new post", p).await.expect("poster"));
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stored = messages(&mut prof, ROOM).await;
        let wrong: Vec<_> = acks
            .iter()
            .filter(|(offset, text)| !stored.iter().any(|(o, t)| o == offset && t == text))
            .collect();
        if wrong.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "acks naming other messages: {:?}",
            wrong
                .iter()
                .map(|(o, t)| (t, o, stored.iter().find(|(so, _)| so == o)))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.terminate().await;
    b.terminate().await;
}

/// Mounts a tmpfs of `size` at `dir` (root only); false when the machine
/// does not allow it, unless `PREAU_REQUIRE_MOUNT` says it must.
fn mount_tmpfs(dir: &Path, size: &str) -> bool {
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok && std::env::var_os("PREAU_REQUIRE_MOUNT").is_some() {
        panic!(
            "cannot mount a tmpfs at {} (PREAU_REQUIRE_MOUNT is set)",
            dir.display()
        );
    }
    ok
}

struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0).status();
    }
}

/// The disk fills up: posts get `storage_error` and `/healthz` says 503;
/// space comes back: the node recovers by itself (no restart), `/healthz`
/// says 200 again, and every post acked before is still there.
#[tokio::test]
async fn a_full_disk_is_reported_and_recovered_from_without_a_restart() {
    let mount = tempfile::tempdir().expect("dir");
    if !mount_tmpfs(mount.path(), "24m") {
        eprintln!(
            "SKIPPED: mounting a tmpfs needs root (set PREAU_REQUIRE_MOUNT=1 to fail instead)"
        );
        return;
    }
    let _unmount = Unmount(mount.path());
    let data = mount.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    let node = Proc::serve(&data, free_port(), &[]).await;
    let mut ana = client(&node.url(), &student("ana", "3B")).await;
    let mut prof = client(&node.url(), &teacher("prof", "3B")).await;
    prof.join(ROOM, None).await.expect("join");
    ana.join(ROOM, None).await.expect("join");
    // Fill the disk but a few hundred KiB.
    let filler = mount.path().join("filler");
    let free = nix_free_bytes(mount.path());
    std::fs::write(&filler, vec![0u8; free.saturating_sub(900 << 10) as usize]).expect("filler");
    let mut acked = Vec::new();
    let big = "x".repeat(3_900);
    let mut refused = None;
    for i in 0..2_000 {
        let text = format!("{i:05} {big}");
        match ana.post(ROOM, &text).await {
            Ok(ack) => acked.push((ack.offset, text)),
            Err(ClientError::Refused(e)) => {
                refused = Some(e.code);
                break;
            }
            Err(e) => panic!("post {i}: {e}"),
        }
    }
    assert_eq!(
        refused,
        Some(ErrorCode::StorageError),
        "the disk never filled"
    );
    assert_eq!(
        http_get(node.addr, "/healthz").await.0,
        503,
        "healthz while failing"
    );
    // Still failing while full: no pretend recovery.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(ana.post(ROOM, "toujours plein").await.is_err());
    std::fs::remove_file(&filler).expect("free the disk");
    let deadline = tokio::time::Instant::now() + WAIT;
    let after = loop {
        match ana.post(ROOM, "de nouveau").await {
            Ok(ack) => break ack,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "never recovered: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(http_get(node.addr, "/healthz").await.0, 200);
    let stored = messages(&mut prof, ROOM).await;
    for (offset, text) in &acked {
        assert!(
            stored.iter().any(|(o, t)| o == offset && t == text),
            "acked post {offset} lost"
        );
    }
    assert!(stored
        .iter()
        .any(|(o, t)| *o == after.offset && t == "de nouveau"));
    // And the live event of the new post reached the other member.
    loop {
        match within("live event", prof.next()).await {
            Some(ServerFrame::Event(e)) if e.offset == after.offset => break,
            Some(_) => continue,
            None => panic!("prof disconnected"),
        }
    }
    node.terminate().await;
}

fn nix_free_bytes(path: &Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df prints the free bytes")
}

/// A peer that accepts TCP connections and never answers (half-open, or
/// hung) is announced to node a, which must catch up a room from peers:
/// the catch-up gives up on it and succeeds from the real peer.
#[tokio::test]
async fn a_peer_that_never_answers_does_not_hold_a_catch_up_forever() {
    let redis = RedisServer::start().await;
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let b = cluster_node_with(&redis.url(), dir_b.path(), &["--stream-max", "100"]).await;
    let mut prof = client(&b.url(), &teacher("prof", "3B")).await;
    prof.join(ROOM, None).await.expect("join");
    for i in 0..400 {
        prof.post(ROOM, &format!("m{i}")).await.expect("post");
    }
    // The silent peer: accepts, reads nothing, answers nothing.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_url = format!("ws://{}/ws", silent.local_addr().expect("addr"));
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    // b stops; only the silent peer heartbeats while a starts.
    b.kill9().await;
    let heartbeat = {
        let redis_addr = redis.addr();
        let url = silent_url.clone();
        tokio::spawn(async move {
            #[derive(serde::Serialize)]
            struct Heartbeat<'a> {
                t: &'a str,
                node: &'a str,
                url: &'a str,
            }
            let message = rmp_serde::to_vec_named(&Heartbeat {
                t: "heartbeat",
                node: "silent",
                url: &url,
            })
            .expect("encode");
            loop {
                let _ = support::redis::resp_command(
                    redis_addr,
                    &[b"PUBLISH", b"preau:nodes", &message],
                )
                .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let a = cluster_node(&redis.url(), dir_a.path()).await;
    let mut ana = client(&a.url(), &student("ana", "3B")).await;
    ana.join(ROOM, None).await.expect("join");
    // The catch-up is stuck on the silent peer now; b comes back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = cluster_node_with(&redis.url(), dir_b.path(), &["--stream-max", "100"]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let have = messages(&mut ana, ROOM).await.len();
        if have >= 400 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a holds {have} of 400 messages: the catch-up waits on the silent peer"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    heartbeat.abort();
    a.terminate().await;
    b.terminate().await;
}
