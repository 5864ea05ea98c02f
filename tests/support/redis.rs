//! A Redis server that a test controls: `redis-server` as a child process on
//! its own loopback port, with an empty temp folder and nothing kept on disk,
//! so that `restart()` brings it back on the same port with no data at all.
//! Plus `command`, through the `redis` crate, to look at or poke keys and
//! channels (replies as `RespValue`, error replies included).
//!
//! `RedisServer::shared_or_start()` reuses the machine's Redis on 6379 when it
//! answers; tests that stop or restart Redis must use `RedisServer::start()`.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;

use tokio::process::{Child, Command};
use tokio::time::{sleep, timeout, Instant};

/// How long `redis-server` may take to answer PING, and one command to answer.
pub const REDIS_WAIT: Duration = Duration::from_secs(10);

/// The machine's Redis, used by `shared_or_start()` when it answers.
pub const SHARED_PORT: u16 = 6379;

/// Ports held by live `RedisServer`s of this test binary (from `start()` to
/// drop, restarts included), so no two servers ever pick the same one.
static RESERVED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A reply in RESP2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RespValue {
    /// `+OK`
    Simple(String),
    /// `-ERR ...` (the text after the `-`)
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nabc`
    Bulk(Vec<u8>),
    /// `*2\r\n...`
    Array(Vec<RespValue>),
    /// `$-1` or `*-1`
    Nil,
}

impl RespValue {
    /// The text of a simple or bulk string (bulk as lossy UTF-8).
    pub fn as_text(&self) -> Option<String> {
        match self {
            RespValue::Simple(s) => Some(s.clone()),
            RespValue::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// Like `as_text`, panics on anything else.
    pub fn text(&self) -> String {
        self.as_text()
            .unwrap_or_else(|| panic!("expected a Redis string, got {self:?}"))
    }

    /// The bytes of a bulk string; panics on anything else.
    pub fn bytes(&self) -> &[u8] {
        match self {
            RespValue::Bulk(b) => b,
            other => panic!("expected a Redis bulk string, got {other:?}"),
        }
    }

    /// An integer reply; panics on anything else.
    pub fn int(&self) -> i64 {
        match self {
            RespValue::Integer(n) => *n,
            other => panic!("expected a Redis integer, got {other:?}"),
        }
    }

    /// An array reply; panics on anything else.
    pub fn array(&self) -> &[RespValue] {
        match self {
            RespValue::Array(items) => items,
            other => panic!("expected a Redis array, got {other:?}"),
        }
    }

    /// An array of strings (`KEYS *`, `SMEMBERS`, ...), sorted; panics on
    /// anything else.
    pub fn strings(&self) -> Vec<String> {
        let mut out: Vec<String> = self.array().iter().map(RespValue::text).collect();
        out.sort();
        out
    }

    /// A flat field/value array (`HGETALL`, `CONFIG GET`) as a map; panics
    /// on anything else.
    pub fn map(&self) -> BTreeMap<String, String> {
        let items = self.array();
        assert!(items.len() % 2 == 0, "odd field/value array: {self:?}");
        items
            .chunks(2)
            .map(|pair| (pair[0].text(), pair[1].text()))
            .collect()
    }

    pub fn is_nil(&self) -> bool {
        matches!(self, RespValue::Nil)
    }

    pub fn is_error(&self) -> bool {
        matches!(self, RespValue::Error(_))
    }

    /// Panics unless this is `+OK`.
    pub fn assert_ok(&self) {
        assert_eq!(self, &RespValue::Simple("OK".to_owned()), "expected +OK");
    }
}

/// The owned part of a `RedisServer`: the process, its folder and log.
struct Owned {
    child: tokio::sync::Mutex<Option<Child>>,
    dir: tempfile::TempDir,
}

/// A Redis for one test. Dropping it kills the process (if owned), removes
/// its temp folder and frees its port.
pub struct RedisServer {
    port: u16,
    /// `None` for the shared Redis on 6379, which this handle does not own.
    owned: Option<Owned>,
}

impl RedisServer {
    /// Starts a private `redis-server` on a free loopback port and waits until
    /// it answers PING (at most `REDIS_WAIT`). Panics with a clear message if
    /// `redis-server` is not installed or does not come up.
    pub async fn start() -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("preau-redis-")
            .tempdir()
            .expect("temp dir for redis-server");
        // A port taken between our check and Redis' bind (by another test
        // binary, say) makes Redis exit at once: try another port.
        for _ in 0..8 {
            let port = reserve_port();
            match launch(port, dir.path(), Instant::now() + REDIS_WAIT).await {
                Ok(child) => {
                    return RedisServer {
                        port,
                        owned: Some(Owned {
                            child: tokio::sync::Mutex::new(Some(child)),
                            dir,
                        }),
                    }
                }
                Err(_) => release_port(port),
            }
        }
        panic!(
            "redis-server could not listen on any of 8 loopback ports; its log:\n{}",
            log_tail(dir.path())
        );
    }

    /// The machine's Redis on 127.0.0.1:6379 if it answers PING, else a
    /// private one from `start()`. The shared one cannot be stopped or
    /// restarted (those panic), and other tests use it too: use unique keys.
    pub async fn shared_or_start() -> RedisServer {
        let shared = SocketAddr::from(([127, 0, 0, 1], SHARED_PORT));
        if ping_within(shared, Duration::from_secs(1)).await {
            return RedisServer {
                port: SHARED_PORT,
                owned: None,
            };
        }
        RedisServer::start().await
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// True for the machine's Redis from `shared_or_start()`.
    pub fn is_shared(&self) -> bool {
        self.owned.is_none()
    }

    /// The temp folder of a private server (`None` when shared).
    pub fn dir(&self) -> Option<&Path> {
        self.owned.as_ref().map(|o| o.dir.path())
    }

    /// Whether the process is alive (for the shared one: whether it answers
    /// PING).
    pub async fn is_running(&self) -> bool {
        match &self.owned {
            None => self.ping().await,
            Some(owned) => match owned.child.lock().await.as_mut() {
                None => false,
                Some(child) => matches!(child.try_wait(), Ok(None)),
            },
        }
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the server's process: a
    /// stopped Redis keeps its connections open and answers nothing, as a
    /// frozen or overloaded one would. Panics on the shared server.
    pub async fn signal(&self, signal: &str) {
        let owned = self.owned_or_panic("signal");
        let child = owned.child.lock().await;
        let pid = child
            .as_ref()
            .and_then(|c| c.id())
            .expect("redis-server is running");
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Kills the server (SIGKILL, no shutdown) and waits for it to be gone:
    /// after this, connections to its port are refused. A no-op if it is
    /// already stopped. Panics on the shared server.
    pub async fn stop(&self) {
        let owned = self.owned_or_panic("stop");
        let mut child = owned.child.lock().await;
        if let Some(mut process) = child.take() {
            // kill() is SIGKILL then wait(); the listening socket is closed
            // once the process is reaped.
            let _ = timeout(REDIS_WAIT, process.kill()).await;
        }
    }

    /// Starts the server again on the SAME port with empty memory (it keeps
    /// nothing on disk), killing it first if it is running; waits until it
    /// answers PING. Panics on the shared server.
    pub async fn restart(&self) {
        let owned = self.owned_or_panic("restart");
        let mut child = owned.child.lock().await;
        if let Some(mut process) = child.take() {
            let _ = timeout(REDIS_WAIT, process.kill()).await;
        }
        let deadline = Instant::now() + REDIS_WAIT;
        loop {
            match launch(self.port, owned.dir.path(), deadline).await {
                Ok(process) => {
                    *child = Some(process);
                    return;
                }
                // The port may be briefly unavailable: retry until deadline.
                Err(_) if Instant::now() < deadline => {
                    sleep(Duration::from_millis(100)).await;
                }
                Err(status) => panic!(
                    "redis-server did not restart on port {} within {REDIS_WAIT:?} \
                     (last exit: {status}); its log:\n{}",
                    self.port,
                    log_tail(owned.dir.path())
                ),
            }
        }
    }

    /// Whether the server answers PING now.
    pub async fn ping(&self) -> bool {
        ping_within(self.addr(), Duration::from_secs(1)).await
    }

    /// One command on a fresh connection; Redis errors come back as
    /// `RespValue::Error`, I/O failures (server down) panic.
    pub async fn command(&self, args: &[&str]) -> RespValue {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.command_bytes(&args).await
    }

    /// `command` with binary arguments (e.g. a malformed payload to PUBLISH).
    pub async fn command_bytes(&self, args: &[&[u8]]) -> RespValue {
        match resp_command(self.addr(), args).await {
            Ok(reply) => reply,
            Err(e) => panic!(
                "Redis at {} did not answer {:?}: {e}",
                self.addr(),
                args.iter()
                    .map(|a| String::from_utf8_lossy(a))
                    .collect::<Vec<_>>()
            ),
        }
    }

    /// `command` that returns I/O failures instead of panicking.
    pub async fn try_command(&self, args: &[&str]) -> io::Result<RespValue> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        resp_command(self.addr(), &args).await
    }

    fn owned_or_panic(&self, what: &str) -> &Owned {
        self.owned.as_ref().unwrap_or_else(|| {
            panic!(
                "RedisServer::{what}() on the shared Redis at 127.0.0.1:{SHARED_PORT}: \
                 tests that stop or restart Redis must use RedisServer::start()"
            )
        })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let Some(owned) = self.owned.as_mut() else {
            return;
        };
        if let Some(child) = owned.child.get_mut().as_mut() {
            // SIGKILL and reap it here, so the port and folder are free when
            // drop returns (kill_on_drop is only the fallback).
            let _ = child.start_kill();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        release_port(self.port);
        // `owned.dir` (TempDir) is removed when the fields drop, after this.
    }
}

/// A free loopback port for a Redis: outside the kernel's ephemeral range
/// when it can (so no `bind(0)` or outgoing connection takes it while Redis
/// is down for a restart), not held by another `RedisServer` of this binary.
fn reserve_port() -> u16 {
    let low = ephemeral_low().unwrap_or(32768);
    let range = if low > 16_000 {
        15_000..low
    } else {
        10_000..65_000
    };
    let mut rng = rand::thread_rng();
    for _ in 0..500 {
        let port = rng.gen_range(range.clone());
        let mut reserved = RESERVED.lock().unwrap_or_else(|e| e.into_inner());
        if reserved.contains(&port) || port == SHARED_PORT {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            reserved.insert(port);
            return port;
        }
    }
    panic!("no free loopback port for redis-server in {range:?}");
}

fn release_port(port: u16) {
    RESERVED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&port);
}

fn ephemeral_low() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Spawns `redis-server` on `port` and waits until that very process answers
/// PING. `Err(status)` if it exits first (port taken); panics if it is not
/// installed or is still silent at `deadline`.
async fn launch(port: u16, dir: &Path, deadline: Instant) -> Result<Child, String> {
    let log = File::options()
        .create(true)
        .append(true)
        .open(dir.join("redis.log"))
        .expect("redis-server log file");
    let mut child = match Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log file"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
            "redis-server is not installed (not on PATH): these tests need it; \
             install it with `apt-get install -y redis-server` (.ci/run does)"
        ),
        Err(e) => panic!("cannot run redis-server: {e}"),
    };
    let pid = child.id().map(|p| p.to_string());
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(status.to_string());
        }
        // PONG from *this* process, not from someone else's on that port.
        if ping_within(addr, Duration::from_secs(1)).await {
            if let Ok(reply) = timeout(
                Duration::from_secs(2),
                resp_command(addr, &[b"INFO", b"server"]),
            )
            .await
            {
                let info = reply.ok().and_then(|r| r.as_text()).unwrap_or_default();
                let server_pid = info
                    .lines()
                    .find_map(|l| l.strip_prefix("process_id:"))
                    .map(|p| p.trim().to_owned());
                if server_pid.is_some() && server_pid == pid {
                    return Ok(child);
                }
            }
        }
        if Instant::now() >= deadline {
            let _ = child.kill().await;
            panic!(
                "redis-server on 127.0.0.1:{port} did not answer PING within {REDIS_WAIT:?}; \
                 its log:\n{}",
                log_tail(dir)
            );
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// The last lines of a server's log, for panic messages.
fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

async fn ping_within(addr: SocketAddr, limit: Duration) -> bool {
    matches!(
        timeout(limit, resp_command(addr, &[b"PING"])).await,
        Ok(Ok(RespValue::Simple(ref s))) if s == "PONG"
    )
}

/// Sends one command to the Redis at `addr` on a fresh connection (the
/// `redis` crate's) and reads its reply (at most `REDIS_WAIT` in all). An
/// error reply is `RespValue::Error`, not an `Err`: tests look at it.
pub async fn resp_command(addr: SocketAddr, args: &[&[u8]]) -> io::Result<RespValue> {
    let io_error = |e: ::redis::RedisError| {
        let kind = if e.is_connection_refusal() {
            io::ErrorKind::ConnectionRefused
        } else {
            io::ErrorKind::Other
        };
        io::Error::new(kind, e.to_string())
    };
    timeout(REDIS_WAIT, async {
        let client = ::redis::Client::open(format!("redis://{addr}")).map_err(io_error)?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(io_error)?;
        let (name, rest) = args
            .split_first()
            .ok_or_else(|| io::Error::other("no command"))?;
        let mut cmd = ::redis::cmd(&String::from_utf8_lossy(name));
        for arg in rest {
            cmd.arg(*arg);
        }
        match cmd.query_async::<::redis::Value>(&mut conn).await {
            Ok(value) => Ok(RespValue::from(value)),
            Err(err) if err.kind() == ::redis::ErrorKind::Io => Err(io_error(err)),
            // Redis answered with an error reply: its code and text.
            Err(err) => Ok(RespValue::Error(
                [err.code().unwrap_or(""), err.detail().unwrap_or("")]
                    .join(" ")
                    .trim()
                    .to_owned(),
            )),
        }
    })
    .await
    .unwrap_or_else(|_| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no reply from Redis at {addr} within {REDIS_WAIT:?}"),
        ))
    })
}

impl From<::redis::Value> for RespValue {
    fn from(value: ::redis::Value) -> Self {
        match value {
            ::redis::Value::Nil => RespValue::Nil,
            ::redis::Value::Int(n) => RespValue::Integer(n),
            ::redis::Value::BulkString(bytes) => RespValue::Bulk(bytes),
            ::redis::Value::Array(items) | ::redis::Value::Set(items) => {
                RespValue::Array(items.into_iter().map(RespValue::from).collect())
            }
            ::redis::Value::SimpleString(text) => RespValue::Simple(text),
            ::redis::Value::Okay => RespValue::Simple("OK".to_owned()),
            ::redis::Value::Map(pairs) => RespValue::Array(
                pairs
                    .into_iter()
                    .flat_map(|(k, v)| [RespValue::from(k), RespValue::from(v)])
                    .collect(),
            ),
            other => RespValue::Error(format!("unexpected RESP3 value {other:?}")),
        }
    }
}
