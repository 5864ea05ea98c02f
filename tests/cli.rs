//! The `preau` command line: `token`, `send`, `listen`, and `serve`'s
//! refusal of bad settings.

mod support;

use std::path::Path;
use std::process::{Output, Stdio};

use preau::auth::{now_secs, Keyring};
use preau::client::Client;
use preau::protocol::{PresenceAction, Role, ServerFrame};
use support::*;

const ROOM: &str = "3B/chat/x";

/// `preau` with every `PREAU_*` variable of the test environment removed.
fn preau() -> std::process::Command {
    let mut command = std::process::Command::new(bin());
    for (key, _) in std::env::vars() {
        if key.starts_with("PREAU_") {
            command.env_remove(key);
        }
    }
    command.env_remove("RUST_BACKTRACE");
    command
}

fn tokio_preau() -> tokio::process::Command {
    let mut command = tokio::process::Command::from(preau());
    command.kill_on_drop(true);
    command
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn token_args(dir: &Path) -> Vec<String> {
    let mut args = vec!["token".to_owned(), "--data".to_owned()];
    args.push(dir.to_string_lossy().into_owned());
    args.extend(
        [
            "--user", "u1", "--name", "Ana", "--role", "student", "--class", "3B", "--class", "4A",
            "--ttl", "1h",
        ]
        .map(str::to_owned),
    );
    args
}

fn assert_ana(claims: &preau::auth::Claims, before: u64, after: u64) {
    assert_eq!(claims.sub, "u1");
    assert_eq!(claims.name, "Ana");
    assert_eq!(claims.role, Role::Student);
    assert_eq!(claims.classes, vec!["3B".to_owned(), "4A".to_owned()]);
    assert!(claims.children.is_empty());
    assert!(
        (before..=after).contains(&claims.iat),
        "iat {} is when the token was minted",
        claims.iat
    );
    assert_eq!(claims.exp - claims.iat, 3600, "--ttl 1h");
}

#[test]
fn token_creates_a_private_secret_and_reuses_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret_path = dir.path().join("secret");
    let before = now_secs();
    let output = preau()
        .args(token_args(dir.path()))
        .output()
        .expect("run preau token");
    let after = now_secs();
    assert!(output.status.success(), "token failed: {}", stderr(&output));
    let token = stdout(&output).trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT on stdout: {token:?}");
    assert!(secret_path.exists(), "DIR/secret was created");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret_path)
            .expect("secret metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the secret file is private");
    }
    let keyring = Keyring::load(dir.path(), None).expect("keyring from DIR");
    let claims = keyring.verify(&token, now_secs()).expect("token verifies");
    assert_ana(&claims, before, after);

    // A second call reuses the same secret.
    let secret = std::fs::read(&secret_path).expect("read secret");
    let output = preau()
        .args(token_args(dir.path()))
        .output()
        .expect("run preau token");
    assert!(output.status.success(), "token failed: {}", stderr(&output));
    assert_eq!(
        std::fs::read(&secret_path).expect("read secret"),
        secret,
        "the secret file is not rewritten"
    );
    let second = stdout(&output).trim().to_owned();
    assert_eq!(
        keyring
            .verify(&second, now_secs())
            .expect("second token verifies with the first secret")
            .sub,
        "u1"
    );
}

#[test]
fn token_uses_preau_secret_when_set() {
    let dir = tempfile::tempdir().expect("temp dir");
    let before = now_secs();
    let output = preau()
        .args(token_args(dir.path()))
        .env("PREAU_SECRET", SECRET)
        .output()
        .expect("run preau token");
    let after = now_secs();
    assert!(output.status.success(), "token failed: {}", stderr(&output));
    let token = stdout(&output).trim().to_owned();
    let claims = keyring()
        .verify(&token, now_secs())
        .expect("token verifies with PREAU_SECRET");
    assert_ana(&claims, before, after);
    assert!(
        !dir.path().join("secret").exists(),
        "no secret file is generated when PREAU_SECRET is set"
    );
    // A keyring from a generated secret does not accept it.
    let other = tempfile::tempdir().expect("temp dir");
    let generated = Keyring::load(other.path(), None).expect("generated keyring");
    assert!(generated.verify(&token, now_secs()).is_err());
}

#[test]
fn token_refuses_bad_role_and_bad_class() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut args = token_args(dir.path());
    let role = args.iter().position(|a| a == "student").expect("role");
    args[role] = "pupil".to_owned();
    let output = preau().args(&args).output().expect("run preau token");
    assert!(!output.status.success(), "bad role must fail");
    assert!(stdout(&output).trim().is_empty(), "no token printed");
    let err = stderr(&output);
    assert!(
        err.contains("role") && err.contains("pupil"),
        "the error names the role: {err}"
    );
    assert!(
        err.contains("student") && err.contains("teacher"),
        "the error lists the roles: {err}"
    );

    let mut args = token_args(dir.path());
    let class = args.iter().position(|a| a == "4A").expect("class");
    args[class] = "4A/../x".to_owned();
    let output = preau().args(&args).output().expect("run preau token");
    assert!(!output.status.success(), "bad class must fail");
    assert!(stdout(&output).trim().is_empty(), "no token printed");
    let err = stderr(&output);
    assert!(err.contains("4A/../x"), "the error names the class: {err}");
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The `event` lines of `listen`'s output, as (offset, text, epoch).
fn events_of(text: &str) -> Vec<(u64, String, String)> {
    json_lines(text)
        .into_iter()
        .filter(|v| v["type"] == "event")
        .map(|v| {
            assert_eq!(v["room"], ROOM);
            assert_eq!(v["body"]["kind"], "message");
            (
                v["offset"].as_u64().expect("offset"),
                v["body"]["text"].as_str().expect("text").to_owned(),
                v["epoch"].as_str().expect("epoch").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_send_and_listen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Proc::serve(dir.path(), free_port(), &[]).await;
    let url = server.url();
    // Staff opens the room: pupils join only rooms that exist.
    open_rooms(&url, &[ROOM]).await;

    // An observer sees the listener join, so the sends come after it.
    let (mut observer, _) = Client::connect(&url, &student("obs", "3B"))
        .await
        .expect("connect");
    let epoch = observer.join(ROOM, None).await.expect("join").epoch;
    let listener = tokio_preau()
        .args(["listen", "--url", &url, "--room", ROOM, "--count", "3"])
        .args(["--token", &student("lis", "3B")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn listen");
    loop {
        if let ServerFrame::Presence(p) = next(&mut observer).await {
            if p.user.id == "lis" && p.action == PresenceAction::Join {
                break;
            }
        }
    }

    let sender = student("snd", "3B");
    for i in 1..=3u64 {
        let text = format!("hello {i}");
        let output = tokio::time::timeout(
            WAIT,
            tokio_preau()
                .args(["send", "--url", &url, "--room", ROOM, "--text", &text])
                .env("PREAU_TOKEN", &sender)
                .output(),
        )
        .await
        .expect("send exits within WAIT")
        .expect("run send");
        assert!(output.status.success(), "send failed: {}", stderr(&output));
        let acks = json_lines(&stdout(&output));
        assert_eq!(acks.len(), 1, "one JSON ack: {}", stdout(&output));
        assert_eq!(acks[0]["offset"].as_u64(), Some(i), "offsets increase");
        assert_eq!(acks[0]["epoch"].as_str(), Some(epoch.as_str()));
        assert_eq!(acks[0]["room"], ROOM);
        assert!(acks[0]["ts"].as_u64().is_some_and(|ts| ts > 0));
    }

    let output = tokio::time::timeout(WAIT, listener.wait_with_output())
        .await
        .expect("listen exits after 3 events")
        .expect("listen output");
    assert!(
        output.status.success(),
        "listen failed: {}",
        stderr(&output)
    );
    let events = events_of(&stdout(&output));
    assert_eq!(
        events,
        (1..=3u64)
            .map(|i| (i, format!("hello {i}"), epoch.clone()))
            .collect::<Vec<_>>(),
        "listen printed the 3 events: {}",
        stdout(&output)
    );

    // Recovery: everything after offset 1.
    let output = tokio::time::timeout(
        WAIT,
        tokio_preau()
            .args(["listen", "--url", &url, "--room", ROOM, "--count", "2"])
            .args(["--from", "1", "--epoch", &epoch])
            .args(["--token", &student("lis", "3B")])
            .output(),
    )
    .await
    .expect("recovering listen exits within WAIT")
    .expect("run listen");
    assert!(
        output.status.success(),
        "listen failed: {}",
        stderr(&output)
    );
    let events = events_of(&stdout(&output));
    assert_eq!(
        events,
        (2..=3u64)
            .map(|i| (i, format!("hello {i}"), epoch.clone()))
            .collect::<Vec<_>>(),
        "recovered events 2 and 3: {}",
        stdout(&output)
    );
    assert!(
        stderr(&output).contains(r#""recovered":true"#),
        "the recovery outcome goes to stderr: {}",
        stderr(&output)
    );
    let status = server.terminate().await;
    assert!(status.success(), "serve exits 0 on SIGTERM: {status}");
}

/// Runs `preau serve` expecting it to refuse to start; returns stderr.
async fn serve_fails(args: &[&str], envs: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let child = tokio_preau()
        .arg("serve")
        .arg("--data")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .envs(envs.iter().copied())
        .env("PREAU_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("serve {args:?} {envs:?} started instead of failing"))
        .expect("serve output");
    assert!(
        !output.status.success(),
        "serve {args:?} {envs:?} must exit non-zero"
    );
    stderr(&output)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_invalid_settings_naming_them() {
    let err = serve_fails(&["--ping-interval", "90s"], &[]).await;
    assert!(err.contains("ping_interval"), "names the setting: {err}");
    assert!(err.contains("idle_timeout"), "says why: {err}");

    let err = serve_fails(&[], &[("PREAU_MAX_CONNECTIONS", "0")]).await;
    assert!(err.contains("max_connections"), "names the setting: {err}");

    let err = serve_fails(&["--outbound-budget-bytes", "1000"], &[]).await;
    assert!(
        err.contains("outbound_budget_bytes"),
        "names the setting: {err}"
    );

    let config_dir = tempfile::tempdir().expect("temp dir");
    let path = config_dir.path().join("preau.toml");
    std::fs::write(&path, "max_connections = 7\nmax_conections = 7\n").expect("write config");
    let path = path.to_string_lossy().into_owned();
    let err = serve_fails(&["--config", &path], &[]).await;
    assert!(
        err.contains("max_conections"),
        "names the unknown key: {err}"
    );

    // An invalid value in the file is named as well.
    let path2 = config_dir.path().join("bad-value.toml");
    std::fs::write(&path2, "rate_burst = 0\n").expect("write config");
    let path2 = path2.to_string_lossy().into_owned();
    let err = serve_fails(&["--config", &path2], &[]).await;
    assert!(err.contains("rate_burst"), "names the setting: {err}");
}
