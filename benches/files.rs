//! Uploading and downloading large files (issue 18's figures): how fast
//! a 50 MB recording goes up in chunks and comes down, and how much
//! memory the server holds meanwhile, against its size at rest — the goal
//! is a flat line, whatever the file's size (an upload holds one chunk,
//! a download streams).
//!
//!     cargo build --release --bin preau
//!     cargo bench -p preau-benches --bench files [-- SIZES_MB...]     (default: 50 200)
//!
//! Runs `target/release/preau serve` (or `PREAU_BIN`) as a child process
//! on a temp data folder, the local file store, default chunk size
//! (8 MiB), and one client in this process over loopback HTTP. The
//! server's RSS is read from `/proc/<pid>/status` every 10 ms. Results go
//! to stdout; the last run's are in `benches/results/files.md`.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use preau::auth::{Claims, Keyring};
use preau::protocol::Role;

const SECRET: &str = "bench:0123456789abcdef0123456789abcdef";

fn token(sub: &str) -> String {
    let now = preau::auth::now_secs();
    let claims = Claims {
        sub: sub.to_owned(),
        name: sub.to_owned(),
        role: Role::Teacher,
        classes: vec!["3B".to_owned()],
        children: Vec::new(),
        exp: now + 3600,
        iat: now,
    };
    Keyring::parse(SECRET)
        .expect("secret")
        .mint(&claims)
        .expect("token")
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Samples `pid`'s RSS until `stop`, keeping the peak.
fn sampler(pid: u32, stop: Arc<AtomicBool>, peak: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

struct Run {
    size_mb: usize,
    upload_s: f64,
    finish_s: f64,
    download_s: f64,
    rest_kib: u64,
    upload_peak_kib: u64,
    download_peak_kib: u64,
}

async fn run(addr: SocketAddr, pid: u32, size_mb: usize) -> Run {
    let http = reqwest::Client::new();
    let token = token("tb");
    let size = size_mb * 1_000_000;
    // A recording-like body: an MP3 frame header, then pseudo-random bytes.
    let mut body = vec![0u8; size];
    body[..4].copy_from_slice(&[0xFF, 0xFB, 0x90, 0x64]);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in body[4..].iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let body = bytes::Bytes::from(body);
    let rest_kib = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = sampler(pid, stop.clone(), peak.clone());
    let base = format!("http://{addr}/files/uploads");
    let started = Instant::now();
    let created: serde_json::Value = http
        .post(&base)
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "enregistrement.mp3", "size": size}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = created["upload"].as_str().expect("upload").to_owned();
    let chunk = created["chunk_bytes"].as_u64().expect("chunk") as usize;
    let mut at = 0;
    while at < size {
        let end = (at + chunk).min(size);
        let response = http
            .patch(format!("{base}/{id}"))
            .bearer_auth(&token)
            .header("Upload-Offset", at.to_string())
            .body(body.slice(at..end))
            .send()
            .await
            .expect("chunk");
        assert_eq!(response.status().as_u16(), 200);
        at = end;
    }
    let upload_s = started.elapsed().as_secs_f64();
    let finishing = Instant::now();
    let done: serde_json::Value = http
        .post(format!("{base}/{id}/done"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("done")
        .json()
        .await
        .expect("json");
    assert_eq!(done["size"].as_u64(), Some(size as u64), "{done}");
    let finish_s = finishing.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    sampling.join().expect("sampler");
    let upload_peak_kib = peak.load(Ordering::Relaxed);

    // Attach it to a hand-in, then download it.
    let (mut client, _) = preau::client::Client::connect(&format!("ws://{addr}/ws"), &token)
        .await
        .expect("ws");
    let opened: preau::protocol::PostOk = client
        .request_kind(&preau::kinds::handin::HandinRequest::HandinOpen {
            id: None,
            room: "3B/handin/main".into(),
            title: "bench".into(),
            instructions: String::new(),
            due: preau::auth::now_secs() * 1000 + 3_600_000,
            pupils: vec!["tb-pupil".into()],
            group: None,
            accepts: vec![],
            late: false,
            entry: None,
        })
        .await
        .expect("open");
    let pupil = {
        let now = preau::auth::now_secs();
        Keyring::parse(SECRET)
            .expect("secret")
            .mint(&Claims {
                sub: "tb-pupil".into(),
                name: "p".into(),
                role: Role::Student,
                classes: vec!["3B".into()],
                children: Vec::new(),
                exp: now + 3600,
                iat: now,
            })
            .expect("token")
    };
    // The pupil uploads the same bytes (the teacher's upload stays staged).
    let created: serde_json::Value = http
        .post(&base)
        .bearer_auth(&pupil)
        .json(&serde_json::json!({"name": "enregistrement.mp3", "size": size}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let pid2 = created["upload"].as_str().expect("upload").to_owned();
    let mut at = 0;
    while at < size {
        let end = (at + chunk).min(size);
        http.patch(format!("{base}/{pid2}"))
            .bearer_auth(&pupil)
            .header("Upload-Offset", at.to_string())
            .body(body.slice(at..end))
            .send()
            .await
            .expect("chunk");
        at = end;
    }
    http.post(format!("{base}/{pid2}/done"))
        .bearer_auth(&pupil)
        .send()
        .await
        .expect("done");
    let (mut pupil_client, _) = preau::client::Client::connect(&format!("ws://{addr}/ws"), &pupil)
        .await
        .expect("ws");
    let _: preau::protocol::PostOk = pupil_client
        .request_kind(&preau::kinds::handin::HandinRequest::HandinSubmit {
            id: None,
            room: "3B/handin/main".into(),
            handin: opened.offset,
            file: pid2.clone(),
        })
        .await
        .expect("submit");
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = sampler(pid, stop.clone(), peak.clone());
    let started = Instant::now();
    let mut response = http
        .get(format!("http://{addr}/files/{pid2}?room=3B/handin/main"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("download");
    let mut got = 0usize;
    while let Some(piece) = response.chunk().await.expect("chunk") {
        got += piece.len();
    }
    let download_s = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    sampling.join().expect("sampler");
    assert_eq!(got, size);
    Run {
        size_mb,
        upload_s,
        finish_s,
        download_s,
        rest_kib,
        upload_peak_kib,
        download_peak_kib: peak.load(Ordering::Relaxed),
    }
}

#[tokio::main]
async fn main() {
    preau_benches::cd_to_repository_root();
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![50, 200]
    } else {
        sizes
    };
    let bin = std::env::var("PREAU_BIN").unwrap_or_else(|_| "target/release/preau".to_owned());
    let data = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut child = Command::new(&bin)
        .args(["serve", "--data"])
        .arg(data.path())
        .args([
            "--listen",
            &addr.to_string(),
            "--files-max-file-bytes",
            "1000000000",
        ])
        .args(["--files-max-user-bytes", "10000000000"])
        .env("PREAU_SECRET", SECRET)
        .env("PREAU_RATE_PER_SEC", "10000")
        .env("PREAU_REQUEST_RATE_PER_SEC", "10000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e} (cargo build --release --bin preau)"));
    let pid = child.id();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("| file | upload (chunks) | finish (compose) | upload MB/s | download | download MB/s | RSS at rest | peak RSS uploading | peak RSS downloading |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for size in sizes {
        let r = run(addr, pid, size).await;
        let mb = r.size_mb as f64;
        println!(
            "| {} MB | {:.2} s | {:.2} s | {:.0} | {:.2} s | {:.0} | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
            r.size_mb,
            r.upload_s,
            r.finish_s,
            mb / (r.upload_s + r.finish_s),
            r.download_s,
            mb / r.download_s,
            r.rest_kib as f64 / 1024.0,
            r.upload_peak_kib as f64 / 1024.0,
            r.download_peak_kib as f64 / 1024.0,
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}
