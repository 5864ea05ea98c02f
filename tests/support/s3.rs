//! An S3-compatible server that a test controls: `s3s-fs` (from crates.io,
//! installed by `.ci/s3-server.sh`, whose path `.ci/run` exports as
//! `PREAU_S3S_BIN`) as a child process on a free loopback port, over an
//! empty temp folder, with one bucket. Not a mock: it speaks S3's HTTP API
//! (SigV4, multipart uploads, conditional puts) and keeps objects as files.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const ACCESS_KEY: &str = "preau-test-access";
pub const SECRET_KEY: &str = "preau-test-secret";
pub const BUCKET: &str = "preau-files";

pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub root: tempfile::TempDir,
}

/// The binary: `PREAU_S3S_BIN`, else where `.ci/s3-server.sh` caches it.
/// A test that needs it fails (never skips) when it is missing.
pub fn binary() -> PathBuf {
    if let Ok(bin) = std::env::var("PREAU_S3S_BIN") {
        return PathBuf::from(bin);
    }
    let cache = std::env::var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache")
        });
    let bin = cache.join("preau-s3s/0.14.1/bin/s3s-fs");
    assert!(
        bin.is_file(),
        "s3s-fs not found: run .ci/s3-server.sh (or set PREAU_S3S_BIN)"
    );
    bin
}

impl S3Server {
    pub fn start() -> S3Server {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join(BUCKET)).expect("bucket folder");
        let mut child = Command::new(binary())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--access-key",
                ACCESS_KEY,
                "--secret-key",
                SECRET_KEY,
            ])
            .arg(root.path())
            // It prints its address (after binding) only at info level.
            .env("RUST_LOG", "s3s_fs=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn s3s-fs");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Drained for the process's life, so it never blocks on a pipe.
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("server is running at ").nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(rest.trim().to_owned());
                    }
                }
            }
        });
        let endpoint = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(endpoint) => endpoint,
            Err(_) => {
                let _ = child.kill();
                panic!("s3s-fs did not report its address within 20 s");
            }
        };
        S3Server {
            child,
            endpoint,
            root,
        }
    }

    /// `[files.s3]` for this server.
    pub fn config(&self) -> preau::config::S3Config {
        preau::config::S3Config {
            endpoint: self.endpoint.clone(),
            bucket: BUCKET.to_owned(),
            region: "us-east-1".to_owned(),
            access_key_id: ACCESS_KEY.to_owned(),
            secret_access_key: SECRET_KEY.to_owned(),
        }
    }

    /// The bucket's folder on disk (objects are files under it).
    pub fn bucket_dir(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
