//! préau's load generator: classroom scenarios against préau, the bare
//! tokio-tungstenite floor (`benches/peers/bare`) or a Socket.IO 4 server
//! (`benches/peers/socketio`), with the same client-side work for each.
//!
//!   cargo bench --bench loadgen -- <scenario> [options]
//!   cargo bench --bench loadgen -- report <scenario> --out DIR --to FILE
//!
//! Scenarios: `idle`, `revision` (with `--sweep`), `announce`,
//! `reconnect-storm`, `cluster` (`revision` over several nodes: `--url`
//! lists them) and `notes` (Yjs editors in one note, against préau or a
//! Hocuspocus server). See `benches/README.md` for what each measures.
//!
//! Every connection is one task (plus the two tasks of `preau::client::Client`
//! or of the Socket.IO client below). Posted texts start with the send time
//! (nanoseconds since this process started) and a sequence number, so every
//! delivery's latency is measured on one clock. Latencies go to one HDR
//! histogram (microseconds). The server's CPU time and resident memory are
//! read from `/proc/<pid>/stat` and `/proc/<pid>/status`.
//!
//! With `--interleave K/N --start-at T`, N generators (one per server, all
//! servers up) take turns of `--slot-ms` from T, so that every server meets
//! the same minutes of a shared machine (but each resumes after a pause:
//! `benches/README.md` says what that does to Node servers).

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use preau::auth::{Claims, Keyring};
use preau::client::{Client, ClientError};
use preau::protocol::{self, Body, Position, Request, Role, ServerFrame};
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------- options

#[derive(Parser, Debug, Clone)]
#[command(name = "loadgen", about = "préau load generator")]
struct Args {
    /// idle | revision | announce | reconnect-storm | cluster | notes | report | compare
    scenario: String,
    /// For `report`: the scenario whose results to compare.
    of: Option<String>,
    /// preau | bare | socketio | hocuspocus (notes only)
    #[arg(long, default_value = "preau")]
    target: String,
    /// WebSocket URL (default: per target, on 127.0.0.1). `cluster`: one
    /// URL per node, comma-separated; member i connects to node i mod N.
    #[arg(long)]
    url: Option<String>,
    /// Server processes to sample (comma-separated, one per node); default:
    /// the process listening on each URL's port. CPU and RSS are summed.
    #[arg(long)]
    server_pid: Option<String>,
    /// cluster: the Redis server's process, sampled on its own.
    #[arg(long)]
    redis_pid: Option<u32>,
    /// notes: editors in the one note.
    #[arg(long, default_value_t = 30)]
    editors: usize,
    /// notes: updates (one typed character each) per second per editor.
    #[arg(long, default_value_t = 5.0)]
    typing_rate: f64,
    /// notes: no awareness update (cursor and name) after each typed
    /// character; by default every keystroke also moves the cursor, as in
    /// an editor bound to Yjs (y-codemirror, y-prosemirror).
    #[arg(long)]
    no_awareness: bool,
    /// idle: connections (rooms of --room-size).
    #[arg(long, default_value_t = 10000)]
    connections: usize,
    #[arg(long, default_value_t = 30)]
    room_size: usize,
    /// revision: number of rooms.
    #[arg(long, default_value_t = 200)]
    rooms: usize,
    /// revision: posts per second per member (reconnect-storm: per room).
    #[arg(long, default_value_t = 0.1)]
    rate: f64,
    /// revision: step the rate up by --sweep-factor until p99 >= --p99-limit-ms.
    #[arg(long)]
    sweep: bool,
    #[arg(long, default_value_t = 1.5)]
    sweep_factor: f64,
    #[arg(long, default_value_t = 8)]
    sweep_steps: usize,
    #[arg(long, default_value_t = 50.0)]
    p99_limit_ms: f64,
    /// Message text size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// announce / reconnect-storm: members.
    #[arg(long, default_value_t = 5000)]
    members: usize,
    /// announce: messages sent (one at a time).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Seconds of posting before each measured window.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Seconds of each measured window.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// revision, cluster, notes: take turns with other generators, as
    /// `K/N`: this generator's load is on only in slots K, K+N, K+2N… of
    /// `--slot-ms` counted from `--start-at`, so N servers measured at once
    /// are loaded one after the other, a slot each, through the same window
    /// (`run.sh` with `INTERLEAVE=1`; `compare` does not use it: servers
    /// resuming after a pause are not at their steady cost, see
    /// `benches/README.md`). `--warmup` and `--duration` must then be whole
    /// cycles of N slots.
    #[arg(long)]
    interleave: Option<String>,
    /// With --interleave: the length of one slot, whole seconds in ms.
    #[arg(long, default_value_t = 2000)]
    slot_ms: u64,
    /// With --interleave: when the schedule starts (the warm-up), Unix time
    /// in ms, the same for every generator taking turns; setup must be over
    /// by then.
    #[arg(long)]
    start_at: Option<u64>,
    /// idle: seconds to hold the connections while sampling memory.
    #[arg(long, default_value_t = 5.0)]
    hold: f64,
    /// Connection setups (connect + hello + join) in flight at once.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// reconnect-storm: reconnections in flight at once.
    #[arg(long, default_value_t = 500)]
    storm_concurrency: usize,
    /// Tokio worker threads of the generator (1: current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Folder for the JSON result and the Markdown summary.
    #[arg(long, default_value = "benches/results/raw")]
    out: PathBuf,
    /// Name of this run in file names and reports (default: the target).
    #[arg(long)]
    label: Option<String>,
    /// `report`: the Markdown file to write.
    #[arg(long)]
    to: Option<PathBuf>,
    /// Set by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Preau,
    Bare,
    SocketIo,
    Hocuspocus,
}

impl Target {
    fn parse(s: &str) -> anyhow::Result<Target> {
        Ok(match s {
            "preau" => Target::Preau,
            "bare" => Target::Bare,
            "socketio" => Target::SocketIo,
            "hocuspocus" => Target::Hocuspocus,
            other => bail!("unknown target {other:?} (preau, bare, socketio, hocuspocus)"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Target::Preau => "preau",
            Target::Bare => "bare",
            Target::SocketIo => "socketio",
            Target::Hocuspocus => "hocuspocus",
        }
    }

    fn default_url(self) -> &'static str {
        match self {
            Target::Preau => "ws://127.0.0.1:8080/ws",
            Target::Bare => "ws://127.0.0.1:9002/ws",
            Target::SocketIo => "ws://127.0.0.1:9003/socket.io/?EIO=4&transport=websocket",
            Target::Hocuspocus => "ws://127.0.0.1:9004/",
        }
    }
}

// ---------------------------------------------------------------- clock

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since this process started (one monotonic clock for send and
/// receive, both in this process).
fn now_ns() -> u64 {
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// `"<send ns> <seq> <node> xxxx…"`, `size` bytes long (at least the three
/// numbers); `node` is the poster's node (cluster), 0 otherwise.
/// Sleeps until `at` on the [`now_ns`] clock.
async fn sleep_until_ns(at: u64) {
    tokio::time::sleep(Duration::from_nanos(at.saturating_sub(now_ns()))).await;
}

/// `--interleave K/N`: when this generator's load is on, on the [`now_ns`]
/// clock. Slots are whole seconds and the window starts on a cycle, so each
/// second of the window belongs to exactly one generator.
#[derive(Clone, Copy, Debug)]
struct Schedule {
    /// `--start-at` on this process's clock.
    origin_ns: u64,
    slot_ns: u64,
    index: u64,
    count: u64,
    /// The measured window, from `origin_ns`: after the warm-up, for
    /// `--duration`.
    window_from_ns: u64,
    window_to_ns: u64,
}

impl Schedule {
    fn from_args(args: &Args) -> anyhow::Result<Option<Schedule>> {
        let Some(spec) = &args.interleave else {
            return Ok(None);
        };
        let parsed = spec
            .split_once('/')
            .and_then(|(k, n)| Some((k.parse::<u64>().ok()?, n.parse::<u64>().ok()?)));
        let Some((index, count)) = parsed.filter(|(k, n)| k < n) else {
            bail!("--interleave {spec:?}: K/N with K < N, e.g. 0/2");
        };
        let start_at = args
            .start_at
            .context("--interleave needs --start-at (Unix time in ms)")?;
        if args.slot_ms == 0 || args.slot_ms % 1000 != 0 {
            bail!("--slot-ms must be whole seconds (1000, 2000…)");
        }
        if args.sweep {
            bail!("--interleave measures one window: no --sweep");
        }
        let cycle_ms = args.slot_ms * count;
        let whole_cycles = |secs: f64| {
            let ms = (secs * 1000.0).round() as u64;
            (ms > 0 && ms % cycle_ms == 0).then_some(ms)
        };
        let (Some(warmup_ms), Some(duration_ms)) =
            (whole_cycles(args.warmup), whole_cycles(args.duration))
        else {
            bail!(
                "with --interleave {spec}, --warmup and --duration must be whole cycles of {} s",
                cycle_ms / 1000
            );
        };
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if start_at <= unix_ms {
            bail!("--start-at is {} ms in the past", unix_ms - start_at);
        }
        Ok(Some(Schedule {
            origin_ns: now_ns() + (start_at - unix_ms) * 1_000_000,
            slot_ns: args.slot_ms * 1_000_000,
            index,
            count,
            window_from_ns: warmup_ms * 1_000_000,
            window_to_ns: (warmup_ms + duration_ms) * 1_000_000,
        }))
    }

    /// Whether this generator posts at `t`.
    fn active(&self, t: u64) -> bool {
        t.checked_sub(self.origin_ns).is_some_and(|since| {
            since < self.window_to_ns && (since / self.slot_ns) % self.count == self.index
        })
    }

    fn window_start(&self) -> u64 {
        self.origin_ns + self.window_from_ns
    }

    fn window_end(&self) -> u64 {
        self.origin_ns + self.window_to_ns
    }

    /// Whether second `i` of the window is one of this generator's.
    fn second_active(&self, i: usize) -> bool {
        self.active(self.window_start() + i as u64 * 1_000_000_000)
    }

    /// This generator's slots inside the window, as (start, end).
    fn own_slots(&self) -> Vec<(u64, u64)> {
        (self.window_from_ns / self.slot_ns..self.window_to_ns / self.slot_ns)
            .filter(|slot| slot % self.count == self.index)
            .map(|slot| {
                let start = self.origin_ns + slot * self.slot_ns;
                (start, start + self.slot_ns)
            })
            .collect()
    }
}

/// With --interleave, a slot's server CPU is read until this long after
/// the slot ends, so that the work on deliveries still in flight counts for
/// the server that does it.
const SLOT_DRAIN_NS: u64 = 300_000_000;

fn make_text(seq: u64, node: usize, size: usize) -> String {
    let mut text = format!("{} {} {} ", now_ns(), seq, node);
    while text.len() < size {
        text.push('x');
    }
    text
}

/// The send time, sequence number and poster's node at the start of a text.
fn parse_text(text: &str) -> Option<(u64, u64, usize)> {
    let mut parts = text.splitn(4, ' ');
    let sent = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let node = parts.next()?.parse().ok()?;
    Some((sent, seq, node))
}

// ---------------------------------------------------------------- connections

/// What a connection receives, whatever the server.
enum Incoming {
    Event {
        offset: u64,
        text: String,
    },
    /// The ack of a post sent without waiting.
    Ack,
    Error(String),
    Other,
}

struct JoinInfo {
    epoch: String,
    head: u64,
    recovered: Option<bool>,
    replay: Vec<(u64, String)>,
}

/// Rooms one staff user opens in [`Endpoint::open_rooms`]: a join and a
/// leave each, within préau's default request burst (200).
const OPENER_ROOMS: usize = 50;

/// Sends `request` (a join or a leave), and sends it again while préau
/// answers `rate_limited`, after the `retry_after_ms` it gives.
async fn request_until_not_rate_limited(
    client: &mut Client,
    request: Request,
) -> anyhow::Result<()> {
    loop {
        match client.request::<rmpv::Value>(request.clone()).await {
            Err(ClientError::Refused(reply)) if reply.code == protocol::ErrorCode::RateLimited => {
                let wait = reply.retry_after_ms.unwrap_or(100).max(1);
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            other => {
                other?;
                return Ok(());
            }
        }
    }
}

/// One client connection: préau's own client (préau and the bare peer) or
/// the Socket.IO client below.
enum Conn {
    Preau(Client),
    Sio(SioClient),
}

struct Endpoint {
    target: Target,
    /// One URL per node (one unless `cluster`).
    urls: Vec<String>,
    keyring: Option<Keyring>,
}

impl Endpoint {
    /// A pupil's token: every member of every scenario is a pupil of 3B.
    fn token(&self, user: &str) -> anyhow::Result<String> {
        self.mint(user, Role::Student, &["3B"])
    }

    fn mint(&self, user: &str, role: Role, classes: &[&str]) -> anyhow::Result<String> {
        let Some(keyring) = &self.keyring else {
            return Ok("no-auth".to_owned());
        };
        let now = preau::auth::now_secs();
        Ok(keyring.mint(&Claims {
            sub: user.to_owned(),
            name: user.to_owned(),
            role,
            classes: classes.iter().map(|c| (*c).to_owned()).collect(),
            children: vec![],
            exp: now + 4 * 3600,
            iat: now,
        })?)
    }

    /// Opens `rooms` on préau before any member joins them: a room exists
    /// once a teacher of its class or staff joins it, and a pupil's join of
    /// a room nobody opened is refused (`unknown_room`). Staff users join
    /// and leave [`OPENER_ROOMS`] rooms each, all at once: each user's
    /// requests have their own bucket (`request_rate_per_sec`,
    /// `request_burst`), and a `rate_limited` join or leave waits and is
    /// sent again. On a cluster the rooms are opened on the first node
    /// (Redis makes them known to the others). Other targets have no such
    /// rule: nothing to do.
    async fn open_rooms(&self, run_id: &str, rooms: &[String]) -> anyhow::Result<()> {
        if self.target != Target::Preau {
            return Ok(());
        }
        let openers = rooms
            .chunks(OPENER_ROOMS)
            .enumerate()
            .map(|(k, chunk)| async move {
                let token = self.mint(&format!("{run_id}-opener{k}"), Role::Staff, &[])?;
                let (mut client, _) = Client::connect(self.url(0), &token)
                    .await
                    .context("opener connects")?;
                for room in chunk {
                    let join = Request::Join {
                        id: None,
                        room: room.clone(),
                        since: None,
                    };
                    request_until_not_rate_limited(&mut client, join)
                        .await
                        .with_context(|| format!("opening {room}"))?;
                    let leave = Request::Leave {
                        id: None,
                        room: room.clone(),
                    };
                    request_until_not_rate_limited(&mut client, leave)
                        .await
                        .with_context(|| format!("leaving {room} after opening it"))?;
                }
                client.close();
                anyhow::Ok(())
            });
        futures_util::future::try_join_all(openers).await?;
        Ok(())
    }

    /// The URL of `node` (members are spread over the nodes by index).
    fn url(&self, node: usize) -> &str {
        &self.urls[node % self.urls.len().max(1)]
    }

    async fn connect(&self, user: &str, node: usize) -> anyhow::Result<Conn> {
        let url = self.url(node);
        match self.target {
            Target::Preau | Target::Bare => {
                let token = self.token(user)?;
                let (client, _) = Client::connect(url, &token).await?;
                Ok(Conn::Preau(client))
            }
            Target::SocketIo => Ok(Conn::Sio(SioClient::connect(url).await?)),
            Target::Hocuspocus => bail!("the hocuspocus target only runs the notes scenario"),
        }
    }
}

impl Conn {
    async fn join(&mut self, room: &str, since: Option<(String, u64)>) -> anyhow::Result<JoinInfo> {
        match self {
            Conn::Preau(client) => {
                let since = since.map(|(epoch, offset)| Position { epoch, offset });
                let joined = client.join(room, since).await?;
                Ok(JoinInfo {
                    epoch: joined.epoch,
                    head: joined.head,
                    recovered: joined.recovery.map(|r| r.recovered),
                    replay: joined
                        .events
                        .into_iter()
                        .map(|e| {
                            let text = match e.body {
                                Body::Message { text, .. } => text,
                                _ => String::new(),
                            };
                            (e.offset, text)
                        })
                        .collect(),
                })
            }
            Conn::Sio(client) => client.join(room).await,
        }
    }

    /// Posts without waiting for the ack (it arrives as [`Incoming::Ack`]).
    fn post(&mut self, room: &str, text: String) -> anyhow::Result<()> {
        match self {
            Conn::Preau(client) => {
                let frame = protocol::encode_request(&Request::Post {
                    id: None,
                    room: room.to_owned(),
                    text,
                    title: None,
                    thread: None,
                    reply_to: None,
                    quote: None,
                    key: None,
                })?;
                client.send_raw(frame)?;
                Ok(())
            }
            Conn::Sio(client) => client.post(room, &text),
        }
    }

    /// Posts and waits for the ack; the offset given (préau only).
    async fn post_acked(&mut self, room: &str, text: &str) -> Result<u64, String> {
        match self {
            Conn::Preau(client) => match client.post(room, text).await {
                Ok(ack) => Ok(ack.offset),
                Err(ClientError::Refused(reply)) => Err(reply.code.to_string()),
                Err(err) => Err(err.to_string()),
            },
            Conn::Sio(_) => Err("post_acked needs préau".to_owned()),
        }
    }

    async fn next(&mut self) -> Option<Incoming> {
        match self {
            Conn::Preau(client) => Some(match client.next().await? {
                ServerFrame::Event(event) => {
                    let text = match event.body {
                        Body::Message { text, .. } => text,
                        _ => String::new(),
                    };
                    Incoming::Event {
                        offset: event.offset,
                        text,
                    }
                }
                ServerFrame::Ok { id: None, .. } => Incoming::Ack,
                ServerFrame::Error(reply) => Incoming::Error(reply.code.to_string()),
                _ => Incoming::Other,
            }),
            Conn::Sio(client) => client.events.recv().await,
        }
    }

    fn close(&self) {
        match self {
            Conn::Preau(client) => client.close(),
            Conn::Sio(client) => client.close(),
        }
    }
}

// ---------------------------------------------------------------- Socket.IO client

type SioAcks = Arc<Mutex<HashMap<u32, oneshot::Sender<Value>>>>;

/// Socket.IO 4 over its WebSocket transport (engine.io v4 framing): `0{..}`
/// open, `40` connect to `/`, `42[..]` events, `42<id>[..]`/`43<id>[..]`
/// acks, ping `2` answered with pong `3`. Built like `preau::client::Client`
/// (a writer task and a reader task, unbounded channels) so that both
/// targets cost the generator about the same.
struct SioClient {
    outgoing: mpsc::UnboundedSender<Message>,
    events: mpsc::UnboundedReceiver<Incoming>,
    acks: SioAcks,
    next_ack: u32,
}

#[derive(serde::Deserialize)]
struct SioEvent {
    offset: u64,
    text: String,
}

impl SioClient {
    async fn connect(url: &str) -> anyhow::Result<SioClient> {
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
        let mut opened = false;
        loop {
            let message = ws
                .next()
                .await
                .context("socket.io closed during handshake")??;
            let Message::Text(text) = message else {
                continue;
            };
            let text = text.as_str();
            if !opened && text.starts_with('0') {
                opened = true;
                ws.send(Message::text("40")).await?;
            } else if text.starts_with("40") {
                break;
            } else if text.starts_with("44") {
                bail!("socket.io refused the connection: {text}");
            } else if text == "2" {
                ws.send(Message::text("3")).await?;
            }
        }
        let (mut sink, mut stream) = ws.split();
        let (outgoing, mut outgoing_rx) = mpsc::unbounded_channel::<Message>();
        let (events_tx, events) = mpsc::unbounded_channel();
        let acks: SioAcks = Arc::default();
        tokio::spawn(async move {
            while let Some(message) = outgoing_rx.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let reader_acks = acks.clone();
        let reader_out = outgoing.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                match message {
                    Message::Text(text) => {
                        let text = text.as_str();
                        if text == "2" {
                            let _ = reader_out.send(Message::text("3"));
                        } else if let Some(body) = text.strip_prefix("42") {
                            let incoming = match serde_json::from_str::<(String, SioEvent)>(body) {
                                Ok((name, event)) if name == "event" => Incoming::Event {
                                    offset: event.offset,
                                    text: event.text,
                                },
                                _ => Incoming::Other,
                            };
                            let _ = events_tx.send(incoming);
                        } else if let Some(body) = text.strip_prefix("43") {
                            let digits = body.bytes().take_while(u8::is_ascii_digit).count();
                            let id: u32 = body[..digits].parse().unwrap_or(0);
                            let waiter = reader_acks.lock().remove(&id);
                            match waiter {
                                Some(waiter) => {
                                    let value = serde_json::from_str(&body[digits..])
                                        .unwrap_or(Value::Null);
                                    let _ = waiter.send(value);
                                }
                                None => {
                                    let _ = events_tx.send(Incoming::Ack);
                                }
                            }
                        } else if text.starts_with("41") || text == "1" {
                            break;
                        }
                    }
                    Message::Close(_) => {
                        let _ = reader_out.send(Message::Close(None));
                        break;
                    }
                    _ => {}
                }
            }
            reader_acks.lock().clear();
        });
        Ok(SioClient {
            outgoing,
            events,
            acks,
            next_ack: 1,
        })
    }

    fn send(&self, text: String) -> anyhow::Result<()> {
        self.outgoing
            .send(Message::text(text))
            .map_err(|_| anyhow::anyhow!("socket.io connection closed"))
    }

    fn ack_id(&mut self) -> u32 {
        let id = self.next_ack;
        self.next_ack = self.next_ack.wrapping_add(1).max(1);
        id
    }

    async fn join(&mut self, room: &str) -> anyhow::Result<JoinInfo> {
        let id = self.ack_id();
        let (tx, rx) = oneshot::channel();
        self.acks.lock().insert(id, tx);
        self.send(format!("42{id}{}", json!(["join", room])))?;
        let reply = rx.await.context("socket.io closed before the join ack")?;
        Ok(JoinInfo {
            epoch: String::new(),
            head: reply[0]["head"].as_u64().unwrap_or(0),
            recovered: None,
            replay: Vec::new(),
        })
    }

    /// Emits `post` with an ack id (the server acks every post, as préau
    /// does); the ack arrives as [`Incoming::Ack`].
    fn post(&mut self, room: &str, text: &str) -> anyhow::Result<()> {
        let id = self.ack_id();
        self.send(format!("42{id}{}", json!(["post", room, text])))
    }

    fn close(&self) {
        let _ = self.outgoing.send(Message::Close(None));
    }
}

// ---------------------------------------------------------------- /proc

#[derive(Debug, Clone, Copy)]
struct ProcSample {
    /// utime + stime of all threads, in clock ticks (USER_HZ = 100).
    cpu_ticks: u64,
    rss_kib: u64,
    /// Time its threads spent runnable but waiting for a CPU (ns, summed
    /// over the live threads, /proc/<pid>/task/*/schedstat): how much other
    /// processes on the same core got in the way.
    wait_ns: u64,
    at: Instant,
}

const TICKS_PER_SEC: f64 = 100.0;

fn proc_sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may contain spaces; field 3 is first.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut wait_ns = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
                wait_ns += text
                    .split_whitespace()
                    .nth(1)
                    .and_then(|w| w.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    Some(ProcSample {
        cpu_ticks: utime + stime,
        rss_kib,
        wait_ns,
        at: Instant::now(),
    })
}

/// One sample of several processes (the nodes of a cluster), summed: CPU,
/// RSS and run-queue wait. `None` if there is none or one is gone.
fn proc_sample_sum(pids: &[u32]) -> Option<ProcSample> {
    let mut samples = pids.iter().map(|&pid| proc_sample(pid));
    let mut total = samples.next()??;
    for sample in samples {
        let sample = sample?;
        total.cpu_ticks += sample.cpu_ticks;
        total.rss_kib += sample.rss_kib;
        total.wait_ns += sample.wait_ns;
    }
    Some(total)
}

/// Run-queue wait between two samples, in milliseconds.
fn wait_ms(a: &ProcSample, b: &ProcSample) -> f64 {
    b.wait_ns.saturating_sub(a.wait_ns) as f64 / 1e6
}

/// CPU used between two samples, in seconds.
fn cpu_secs(a: &ProcSample, b: &ProcSample) -> f64 {
    b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / TICKS_PER_SEC
}

/// The process listening on `port` (TCP, IPv4 or IPv6): its socket's inode
/// from /proc/net/tcp*, then the process holding that inode in /proc/*/fd.
fn pid_listening_on(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 || cols[3] != "0A" {
                continue;
            }
            let local_port = cols[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                inodes.push(format!("socket:[{}]", cols[9]));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                if inodes.iter().any(|i| link.as_os_str() == i.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

fn port_of(url: &str) -> Option<u16> {
    url::Url::parse(url).ok()?.port_or_known_default()
}

fn describe_process(pid: u32) -> Value {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let allowed = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or("")
        .trim()
        .to_owned();
    json!({"pid": pid, "comm": comm.trim(), "cmdline": cmdline, "cpus_allowed": allowed})
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    json!({
        "cpu": model,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cores_online": cpuinfo.lines().filter(|l| l.starts_with("processor")).count(),
        "kernel": kernel.trim(),
        "memory_gib": (mem_kib as f64 / 1048576.0 * 10.0).round() / 10.0,
    })
}

// ---------------------------------------------------------------- shared stats

struct Stats {
    /// Delivery latency (µs) of events that arrived inside the open window.
    latency: Mutex<Histogram<u64>>,
    /// Setup time (µs) of each connection (connect + hello + join).
    setup: Mutex<Histogram<u64>>,
    /// cluster: the same deliveries split by whether the poster was on
    /// another node than the receiver.
    latency_cross: Mutex<Histogram<u64>>,
    latency_local: Mutex<Histogram<u64>>,
    window_cross_deliveries: AtomicU64,
    /// notes: per update, time until every other editor had it (µs).
    propagation: Mutex<Histogram<u64>>,
    /// notes: an editor's own update coming back to it (not a delivery).
    echoes: AtomicU64,
    /// notes: awareness messages sent, and the delivery latency (µs) of
    /// other editors' awareness states (also counted as deliveries).
    awareness_sent: AtomicU64,
    awareness: Mutex<Histogram<u64>>,
    window_open: AtomicBool,
    /// When the window opened (`now_ns`), for [`Stats::timelines`].
    window_started_ns: AtomicU64,
    /// Per [`Series`] and per second of the window (by receive time): the
    /// latencies of that second, to tell a steady tail from a few stalls.
    timelines: Mutex<[Vec<Histogram<u64>>; 3]>,
    deliveries: AtomicU64,
    window_deliveries: AtomicU64,
    window_posts: AtomicU64,
    max_latency_ns: AtomicU64,
    posts: AtomicU64,
    acks: AtomicU64,
    others: AtomicU64,
    connected: AtomicU64,
    setup_failed: AtomicU64,
    disconnected: AtomicU64,
    /// Offsets skipped (a member saw offset n+k after n) and seen twice or
    /// out of order, over all members.
    gaps: AtomicU64,
    dups: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    recovered: AtomicU64,
    not_recovered: AtomicU64,
    replayed: AtomicU64,
    storm_done: AtomicU64,
    last_recovered_ns: AtomicU64,
    /// `--interleave`: which deliveries and seconds are this generator's.
    schedule: Option<Schedule>,
}

impl Stats {
    fn new(schedule: Option<Schedule>) -> Stats {
        let hist = || Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds");
        Stats {
            latency: Mutex::new(hist()),
            setup: Mutex::new(hist()),
            latency_cross: Mutex::new(hist()),
            latency_local: Mutex::new(hist()),
            window_cross_deliveries: AtomicU64::new(0),
            propagation: Mutex::new(hist()),
            echoes: AtomicU64::new(0),
            awareness_sent: AtomicU64::new(0),
            awareness: Mutex::new(hist()),
            window_open: AtomicBool::new(false),
            window_started_ns: AtomicU64::new(0),
            timelines: Mutex::new([Vec::new(), Vec::new(), Vec::new()]),
            deliveries: AtomicU64::new(0),
            window_deliveries: AtomicU64::new(0),
            window_posts: AtomicU64::new(0),
            max_latency_ns: AtomicU64::new(0),
            posts: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            others: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            setup_failed: AtomicU64::new(0),
            disconnected: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            dups: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            recovered: AtomicU64::new(0),
            not_recovered: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            storm_done: AtomicU64::new(0),
            last_recovered_ns: AtomicU64::new(0),
            schedule,
        }
    }

    fn error(&self, what: impl Into<String>) {
        *self.errors.lock().entry(what.into()).or_insert(0) += 1;
    }

    /// When a message sent at `sent_ns` and received `now` counts in the
    /// window, the time its second is filed under: its receive time; or,
    /// with `--interleave`, its send time if it was sent inside the window,
    /// so that a slot's deliveries still in flight when the next
    /// generator's slot starts stay in the seconds of this one.
    fn filed_at(&self, sent_ns: u64, now: u64) -> Option<u64> {
        if !self.window_open.load(Ordering::Relaxed) {
            return None;
        }
        match &self.schedule {
            None => Some(now),
            Some(s) => (s.window_start()..s.window_end())
                .contains(&sent_ns)
                .then_some(sent_ns),
        }
    }

    fn delivered(&self, sent_ns: u64) {
        let now = now_ns();
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        if let Some(at) = self.filed_at(sent_ns, now) {
            let latency = now.saturating_sub(sent_ns);
            self.window_deliveries.fetch_add(1, Ordering::Relaxed);
            self.max_latency_ns.fetch_max(latency, Ordering::Relaxed);
            self.latency
                .lock()
                .saturating_record((latency / 1000).max(1));
            self.record_second(Series::Delivery, at, latency);
        }
    }

    fn record_second(&self, series: Series, now: u64, latency_ns: u64) {
        let second = (now.saturating_sub(self.window_started_ns.load(Ordering::Relaxed))
            / 1_000_000_000) as usize;
        let mut timelines = self.timelines.lock();
        let timeline = &mut timelines[series as usize];
        while timeline.len() <= second.min(3600) {
            timeline.push(Histogram::new_with_bounds(1, 600_000_000, 2).expect("histogram bounds"));
        }
        if let Some(h) = timeline.get_mut(second) {
            h.saturating_record((latency_ns / 1000).max(1));
        }
    }

    /// The window's seconds of `series` (with `--interleave`, only those
    /// of this generator's slots): samples, p99 and max, in µs.
    fn seconds(&self, series: Series) -> Vec<(u64, u64, u64)> {
        self.timelines.lock()[series as usize]
            .iter()
            .enumerate()
            .filter(|(i, _)| self.schedule.as_ref().is_none_or(|s| s.second_active(*i)))
            .map(|(_, h)| (h.len(), h.value_at_quantile(0.99), h.max()))
            .collect()
    }

    /// One entry per second of the window: samples, p99 and max (ms).
    fn timeline_json(&self, series: Series) -> Value {
        let ms = |us: u64| (us as f64 / 1000.0 * 100.0).round() / 100.0;
        Value::Array(
            self.seconds(series)
                .into_iter()
                .map(|(samples, p99, max)| json!([samples, ms(p99), ms(max)]))
                .collect(),
        )
    }

    /// The steady tail of `series`: the median of the p99s of the window's
    /// seconds (see [`steady_p99_ms`]).
    fn steady_p99_ms(&self, series: Series) -> Option<f64> {
        let seconds: Vec<(u64, f64)> = self
            .seconds(series)
            .into_iter()
            .map(|(samples, p99, _)| (samples, p99 as f64 / 1000.0))
            .collect();
        steady_p99_ms(&seconds).map(|v| (v * 1000.0).round() / 1000.0)
    }

    /// cluster: files a delivery already counted by [`Stats::delivered`]
    /// as cross-node or same-node.
    fn delivered_across(&self, sent_ns: u64, cross: bool) {
        let now = now_ns();
        let Some(at) = self.filed_at(sent_ns, now) else {
            return;
        };
        let latency = now.saturating_sub(sent_ns);
        let hist = if cross {
            self.window_cross_deliveries.fetch_add(1, Ordering::Relaxed);
            self.record_second(Series::CrossNode, at, latency);
            &self.latency_cross
        } else {
            &self.latency_local
        };
        hist.lock().saturating_record((latency / 1000).max(1));
    }

    /// notes: another editor's awareness state sent at `sent_ns` arrived.
    fn awareness_delivered(&self, sent_ns: u64) {
        let now = now_ns();
        if self.filed_at(sent_ns, now).is_some() {
            let latency = now.saturating_sub(sent_ns);
            self.awareness
                .lock()
                .saturating_record((latency / 1000).max(1));
        }
    }

    /// notes: the last other editor just received an update sent at `sent_ns`.
    fn propagated(&self, sent_ns: u64) {
        let now = now_ns();
        if let Some(at) = self.filed_at(sent_ns, now) {
            let latency = now.saturating_sub(sent_ns);
            self.propagation
                .lock()
                .saturating_record((latency / 1000).max(1));
            self.record_second(Series::Propagation, at, latency);
        }
    }

    fn open_window(&self) {
        self.latency.lock().reset();
        self.latency_cross.lock().reset();
        self.latency_local.lock().reset();
        self.propagation.lock().reset();
        self.awareness.lock().reset();
        self.window_cross_deliveries.store(0, Ordering::Relaxed);
        self.window_deliveries.store(0, Ordering::Relaxed);
        self.window_posts.store(0, Ordering::Relaxed);
        self.max_latency_ns.store(0, Ordering::Relaxed);
        self.timelines.lock().iter_mut().for_each(Vec::clear);
        let start = self.schedule.map_or_else(now_ns, |s| s.window_start());
        self.window_started_ns.store(start, Ordering::Relaxed);
        self.window_open.store(true, Ordering::Relaxed);
    }

    fn close_window(&self) {
        self.window_open.store(false, Ordering::Relaxed);
    }

    fn latency_json(&self) -> Value {
        hist_json(&self.latency.lock())
    }

    fn errors_json(&self) -> Value {
        json!(self.errors.lock().clone())
    }
}

/// The latencies [`Stats`] keeps a per-second timeline of.
#[derive(Clone, Copy)]
enum Series {
    /// Every delivery (`steps[0].timeline`).
    Delivery = 0,
    /// cluster: deliveries whose poster was on the other node.
    CrossNode = 1,
    /// notes: an update reaching the last other editor.
    Propagation = 2,
}

/// Seconds with fewer samples than this (the window's cut edges) are left
/// out of the steady p99.
const STEADY_MIN_SAMPLES: u64 = 20;

/// The steady tail: the median over the window's seconds of each second's
/// p99, from `(samples, p99_ms)` per second. A p99 over a whole short
/// window moves with how many stalls (a GC pause, a descheduled thread, a
/// slow flush) happen to fall in it, which on this shared machine is
/// luck; a stall moves the median of the per-second p99s by one second
/// at most. Stalls are counted on their own (`compare`'s stall table).
fn steady_p99_ms(seconds: &[(u64, f64)]) -> Option<f64> {
    median(
        seconds
            .iter()
            .filter(|(samples, _)| *samples >= STEADY_MIN_SAMPLES)
            .map(|(_, p99)| *p99)
            .collect(),
    )
}

fn hist_json(h: &Histogram<u64>) -> Value {
    let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
    if h.is_empty() {
        return json!({"count": 0});
    }
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.5)),
        "p90_ms": ms(h.value_at_quantile(0.9)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
        "mean_ms": (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
    })
}

// ---------------------------------------------------------------- members

enum Cmd {
    /// Post one message now (announce).
    Post(u64),
    /// Drop the connection and reconnect with recovery (reconnect-storm).
    Reconnect,
    /// Close and finish; the reply carries what the member saw last.
    Close(oneshot::Sender<(String, u64)>),
}

struct Ctx {
    endpoint: Endpoint,
    stats: Stats,
    size: usize,
    /// Posts per second per member (revision); 0 = silent.
    rate: watch::Receiver<f64>,
    connect_slots: Semaphore,
    storm_slots: Semaphore,
    storm_started_ns: AtomicU64,
}

impl Ctx {
    /// Whether members post now: always, or with `--interleave` only in
    /// this generator's slots (a tick outside them is skipped, so the rate
    /// inside them is the rate asked for).
    fn posting_now(&self) -> bool {
        self.stats
            .schedule
            .as_ref()
            .is_none_or(|s| s.active(now_ns()))
    }
}

/// Tracks a member's position in its room: gaps and duplicates.
struct Position_ {
    epoch: String,
    last: u64,
}

impl Position_ {
    fn see(&mut self, offset: u64, stats: &Stats) {
        if offset == 0 {
            return; // a server without offsets
        }
        if offset > self.last + 1 {
            stats
                .gaps
                .fetch_add(offset - self.last - 1, Ordering::Relaxed);
        } else if offset <= self.last {
            stats.dups.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.last = offset;
    }
}

async fn setup(ctx: &Ctx, user: &str, room: &str, node: usize) -> anyhow::Result<(Conn, JoinInfo)> {
    let started = now_ns();
    let mut conn = ctx.endpoint.connect(user, node).await?;
    let joined = conn.join(room, None).await?;
    ctx.stats
        .setup
        .lock()
        .saturating_record(((now_ns() - started) / 1000).max(1));
    Ok((conn, joined))
}

/// One member: connects to `node`, joins, then receives (recording every
/// delivery), posts at the current rate and obeys commands until closed.
async fn member(
    ctx: Arc<Ctx>,
    user: String,
    room: String,
    node: usize,
    mut commands: mpsc::UnboundedReceiver<Cmd>,
) {
    let slot = ctx.connect_slots.acquire().await;
    let setup = setup(&ctx, &user, &room, node).await;
    drop(slot);
    let (mut conn, joined) = match setup {
        Ok(ok) => ok,
        Err(err) => {
            ctx.stats.setup_failed.fetch_add(1, Ordering::Relaxed);
            ctx.stats.error(format!("setup: {err}"));
            return;
        }
    };
    ctx.stats.connected.fetch_add(1, Ordering::Relaxed);
    let mut position = Position_ {
        epoch: joined.epoch,
        last: joined.head,
    };
    let mut rate_rx = ctx.rate.clone();
    let mut rate = *rate_rx.borrow_and_update();
    let mut ticker = post_ticker(rate);
    let mut seq = 0u64;
    let mut alive = true;
    loop {
        tokio::select! {
            incoming = conn.next(), if alive => match incoming {
                Some(Incoming::Event { offset, text }) => {
                    position.see(offset, &ctx.stats);
                    match parse_text(&text) {
                        Some((sent, _, from)) => {
                            ctx.stats.delivered(sent);
                            if ctx.endpoint.urls.len() > 1 {
                                ctx.stats.delivered_across(sent, from != node);
                            }
                        }
                        None => ctx.stats.error("unparsable event text"),
                    }
                }
                Some(Incoming::Ack) => {
                    ctx.stats.acks.fetch_add(1, Ordering::Relaxed);
                }
                Some(Incoming::Error(code)) => ctx.stats.error(code),
                Some(Incoming::Other) => {
                    ctx.stats.others.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    ctx.stats.disconnected.fetch_add(1, Ordering::Relaxed);
                    if let Conn::Preau(client) = &conn {
                        if let Some((code, reason)) = client.close_frame() {
                            ctx.stats.error(format!("closed by server: {code} {reason}"));
                        }
                    }
                    alive = false;
                }
            },
            _ = ticker.tick(), if alive && rate > 0.0 => {
                if !ctx.posting_now() {
                    continue;
                }
                seq += 1;
                if conn.post(&room, make_text(seq, node, ctx.size)).is_ok() {
                    ctx.stats.posts.fetch_add(1, Ordering::Relaxed);
                    ctx.stats.window_posts.fetch_add(1, Ordering::Relaxed);
                }
            }
            changed = rate_rx.changed() => {
                if changed.is_err() {
                    // The scenario is over; keep the connection until closed.
                    rate = 0.0;
                    rate_rx = watch::channel(0.0).1;
                } else {
                    rate = *rate_rx.borrow_and_update();
                    ticker = post_ticker(rate);
                }
            }
            command = commands.recv() => match command {
                Some(Cmd::Post(seq)) => {
                    if conn.post(&room, make_text(seq, node, ctx.size)).is_ok() {
                        ctx.stats.posts.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Cmd::Reconnect) => {
                    conn.close();
                    match reconnect(&ctx, &user, &room, node, &mut position).await {
                        Some(new) => {
                            conn = new;
                            alive = true;
                        }
                        None => alive = false,
                    }
                }
                Some(Cmd::Close(reply)) => {
                    conn.close();
                    let _ = reply.send((room.clone(), position.last));
                    return;
                }
                None => {
                    conn.close();
                    return;
                }
            }
        }
    }
}

/// A ticker at `rate` per second, starting at a random phase so that
/// members do not post in lockstep.
fn post_ticker(rate: f64) -> tokio::time::Interval {
    let period = if rate > 0.0 {
        Duration::from_secs_f64(1.0 / rate)
    } else {
        Duration::from_secs(3600)
    };
    let phase = period.mul_f64(rand::thread_rng().gen_range(0.0..1.0));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    ticker
}

/// Connects again and joins with `since` = what the member saw last.
async fn reconnect(
    ctx: &Ctx,
    user: &str,
    room: &str,
    node: usize,
    position: &mut Position_,
) -> Option<Conn> {
    let _slot = ctx.storm_slots.acquire().await;
    for attempt in 0..20 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
        }
        let since = (position.epoch.clone(), position.last);
        let mut conn = match ctx.endpoint.connect(user, node).await {
            Ok(conn) => conn,
            Err(err) => {
                ctx.stats.error(format!("reconnect: {err}"));
                continue;
            }
        };
        let joined = match conn.join(room, Some(since)).await {
            Ok(joined) => joined,
            Err(err) => {
                ctx.stats.error(format!("rejoin: {err}"));
                continue;
            }
        };
        if joined.recovered == Some(true) {
            ctx.stats.recovered.fetch_add(1, Ordering::Relaxed);
            for (offset, _) in &joined.replay {
                position.see(*offset, &ctx.stats);
            }
            ctx.stats
                .replayed
                .fetch_add(joined.replay.len() as u64, Ordering::Relaxed);
            // The replay must reach the head the join reply gives; events
            // after it arrive live.
            if joined.head > position.last {
                ctx.stats
                    .gaps
                    .fetch_add(joined.head - position.last, Ordering::Relaxed);
                position.last = joined.head;
            }
        } else {
            ctx.stats.not_recovered.fetch_add(1, Ordering::Relaxed);
            ctx.stats
                .gaps
                .fetch_add(joined.head.saturating_sub(position.last), Ordering::Relaxed);
            position.epoch = joined.epoch;
            position.last = joined.head;
        }
        ctx.stats
            .last_recovered_ns
            .fetch_max(now_ns(), Ordering::Relaxed);
        ctx.stats.storm_done.fetch_add(1, Ordering::Relaxed);
        return Some(conn);
    }
    ctx.stats.storm_done.fetch_add(1, Ordering::Relaxed);
    None
}

// ---------------------------------------------------------------- progress

struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_line: Mutex<Instant>,
}

impl Progress {
    fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            last_line: Mutex::new(Instant::now()),
        }
    }

    fn show(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.set_message(line),
            None => {
                let mut last = self.last_line.lock();
                if last.elapsed() >= Duration::from_secs(5) {
                    *last = Instant::now();
                    eprintln!("{line}");
                }
            }
        }
    }

    fn println(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Prints a status line every second until dropped.
fn spawn_progress(
    ctx: Arc<Ctx>,
    progress: Arc<Progress>,
    server_pids: Vec<u32>,
    phase: Arc<Mutex<String>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let me = std::process::id();
        let mut last_server = proc_sample_sum(&server_pids);
        let mut last_me = proc_sample(me);
        let mut last_deliveries = ctx.stats.deliveries.load(Ordering::Relaxed);
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let server = proc_sample_sum(&server_pids);
            let mine = proc_sample(me);
            let deliveries = ctx.stats.deliveries.load(Ordering::Relaxed);
            let pct = |a: &Option<ProcSample>, b: &Option<ProcSample>| match (a, b) {
                (Some(a), Some(b)) => {
                    let secs = b.at.duration_since(a.at).as_secs_f64().max(0.001);
                    format!("{:.0}%", cpu_secs(a, b) / secs * 100.0)
                }
                _ => "?".to_owned(),
            };
            let elapsed = last_me
                .map(|s| s.at.elapsed().as_secs_f64())
                .unwrap_or(1.0)
                .max(0.001);
            progress.show(format!(
                "[{:>5.0}s] {} | conns {} (failed {}, dropped {}) | deliveries/s {:.0} | server cpu {} rss {} MiB | generator cpu {}",
                started.elapsed().as_secs_f64(),
                phase.lock(),
                ctx.stats.connected.load(Ordering::Relaxed),
                ctx.stats.setup_failed.load(Ordering::Relaxed),
                ctx.stats.disconnected.load(Ordering::Relaxed),
                (deliveries - last_deliveries) as f64 / elapsed,
                pct(&last_server, &server),
                server.map_or(0, |s| s.rss_kib / 1024),
                pct(&last_me, &mine),
            ));
            last_server = server;
            last_me = mine;
            last_deliveries = deliveries;
        }
    })
}

// ---------------------------------------------------------------- running

/// CPU time (s) and run-queue wait (ms) of a process over a window.
#[derive(Clone, Copy, Default)]
struct Use {
    cpu: f64,
    wait_ms: f64,
}

/// What one measured window saw.
struct Measured {
    /// Seconds the load was on (with `--interleave`: this generator's slots).
    secs: f64,
    /// Seconds the processes were sampled over (the slots and their drains).
    sampled_secs: f64,
    posts: u64,
    acks: u64,
    delivered: u64,
    /// The server (all nodes), this generator and Redis; None where `/proc`
    /// could not be read (or, for Redis, there is none).
    use_of: [Option<Use>; 3],
    server_after: Option<ProcSample>,
    redis_after: Option<ProcSample>,
}

impl Measured {
    /// Adds the CPU and wait between two [`Run::sample_all`]s.
    fn add(&mut self, before: &[Option<ProcSample>; 3], after: &[Option<ProcSample>; 3]) {
        for (i, total) in self.use_of.iter_mut().enumerate() {
            *total = match (*total, &before[i], &after[i]) {
                (Some(t), Some(a), Some(b)) => Some(Use {
                    cpu: t.cpu + cpu_secs(a, b),
                    wait_ms: t.wait_ms + wait_ms(a, b),
                }),
                _ => None,
            };
        }
    }
}

struct Run {
    args: Args,
    target: Target,
    ctx: Arc<Ctx>,
    rate_tx: watch::Sender<f64>,
    /// Every server process (one per node); sampled as one.
    server_pids: Vec<u32>,
    redis_pid: Option<u32>,
    progress: Arc<Progress>,
    phase: Arc<Mutex<String>>,
    /// A unique prefix for room names, so reruns against one server never
    /// share rooms.
    run_id: String,
    members: Vec<mpsc::UnboundedSender<Cmd>>,
}

impl Run {
    fn set_phase(&self, phase: impl Into<String>) {
        let phase = phase.into();
        self.progress.println(format!("-- {phase}"));
        *self.phase.lock() = phase;
    }

    /// With `--interleave`: fails when setup ran past `--start-at` (the
    /// generators taking turns would no longer share the schedule's start).
    fn check_schedule(&self) -> anyhow::Result<()> {
        if let Some(s) = &self.ctx.stats.schedule {
            let late = now_ns().saturating_sub(s.origin_ns);
            if late > 0 {
                bail!(
                    "setup ended {:.1} s after --start-at: start the schedule later",
                    late as f64 / 1e9
                );
            }
        }
        Ok(())
    }

    fn sample_server(&self) -> Option<ProcSample> {
        proc_sample_sum(&self.server_pids)
    }

    fn sample_redis(&self) -> Option<ProcSample> {
        self.redis_pid.and_then(proc_sample)
    }

    /// Starts `count` members over rooms of `room_size`, `room_of(i)`
    /// naming member i's room; waits until every setup finished.
    async fn connect_members(&mut self, count: usize, room_of: impl Fn(usize) -> String) -> Value {
        let rooms: Vec<String> = (0..count)
            .map(&room_of)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if self.target == Target::Preau {
            self.set_phase(format!("opening {} rooms", rooms.len()));
            if let Err(err) = self.ctx.endpoint.open_rooms(&self.run_id, &rooms).await {
                // The members' joins then fail with `unknown_room`, counted
                // as setup failures.
                self.ctx.stats.error(format!("opening rooms: {err:#}"));
            }
        }
        self.set_phase(format!("connecting {count}"));
        let started = Instant::now();
        let before = (self.ctx.stats.connected.load(Ordering::Relaxed))
            + self.ctx.stats.setup_failed.load(Ordering::Relaxed);
        for i in 0..count {
            let (tx, rx) = mpsc::unbounded_channel();
            self.members.push(tx);
            let user = format!("{}-m{i}", self.run_id);
            let node = i % self.ctx.endpoint.urls.len().max(1);
            tokio::spawn(member(self.ctx.clone(), user, room_of(i), node, rx));
        }
        loop {
            let done = self.ctx.stats.connected.load(Ordering::Relaxed)
                + self.ctx.stats.setup_failed.load(Ordering::Relaxed)
                - before;
            if done >= count as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        let connected = self.ctx.stats.connected.load(Ordering::Relaxed);
        let failed = self.ctx.stats.setup_failed.load(Ordering::Relaxed);
        self.progress.println(format!(
            "   {connected} connected, {failed} failed in {secs:.2} s ({:.0}/s)",
            count as f64 / secs
        ));
        json!({
            "connections": count,
            "connected": connected,
            "failed": failed,
            "seconds": round3(secs),
            "per_second": round1(count as f64 / secs),
            "concurrency": self.args.connect_concurrency,
            "setup_latency": hist_json(&self.ctx.stats.setup.lock()),
        })
    }

    /// Waits until the generator has received nothing new for `quiet`
    /// (at most `max`): presence frames and events in flight drained.
    async fn settle(&self, quiet: Duration, max: Duration) -> f64 {
        let started = Instant::now();
        let count = || {
            self.ctx.stats.deliveries.load(Ordering::Relaxed)
                + self.ctx.stats.others.load(Ordering::Relaxed)
                + self.ctx.stats.acks.load(Ordering::Relaxed)
        };
        let mut last = count();
        let mut still_since = Instant::now();
        while started.elapsed() < max {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = count();
            if now != last {
                last = now;
                still_since = Instant::now();
            } else if still_since.elapsed() >= quiet {
                break;
            }
        }
        started.elapsed().as_secs_f64()
    }

    /// Measures one window of `duration` after `warmup` at the current rate
    /// (with `--interleave`: the schedule's window, over this generator's
    /// slots).
    async fn window(&self, warmup: f64, duration: f64) -> Value {
        let m = match self.ctx.stats.schedule {
            Some(schedule) => self.measure_slots(&schedule).await,
            None => self.measure(warmup, duration).await,
        };
        self.window_json(&m)
    }

    /// One window of `duration` after `warmup`, CPU sampled at both ends.
    async fn measure(&self, warmup: f64, duration: f64) -> Measured {
        tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
        let stats = &self.ctx.stats;
        let before = self.sample_all();
        let delivered_before = stats.deliveries.load(Ordering::Relaxed);
        let posts_before = stats.posts.load(Ordering::Relaxed);
        let acks_before = stats.acks.load(Ordering::Relaxed);
        stats.open_window();
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(duration)).await;
        stats.close_window();
        let secs = started.elapsed().as_secs_f64();
        let after = self.sample_all();
        let mut m = Measured {
            secs,
            sampled_secs: secs,
            posts: stats.posts.load(Ordering::Relaxed) - posts_before,
            acks: stats.acks.load(Ordering::Relaxed) - acks_before,
            delivered: stats.deliveries.load(Ordering::Relaxed) - delivered_before,
            use_of: [Some(Use::default()); 3],
            server_after: after[0],
            redis_after: after[2],
        };
        m.add(&before, &after);
        m
    }

    /// `--interleave`: the schedule's window; CPU and run-queue wait summed
    /// over this generator's slots, each read until [`SLOT_DRAIN_NS`] after
    /// it ends; the deliveries of what was sent in them.
    async fn measure_slots(&self, schedule: &Schedule) -> Measured {
        let stats = &self.ctx.stats;
        sleep_until_ns(schedule.window_start()).await;
        let acks_before = stats.acks.load(Ordering::Relaxed);
        stats.open_window();
        let mut m = Measured {
            secs: 0.0,
            sampled_secs: 0.0,
            posts: 0,
            acks: 0,
            delivered: 0,
            use_of: [Some(Use::default()); 3],
            server_after: None,
            redis_after: None,
        };
        for (start, end) in schedule.own_slots() {
            sleep_until_ns(start).await;
            let before = self.sample_all();
            sleep_until_ns(end + SLOT_DRAIN_NS).await;
            let after = self.sample_all();
            m.add(&before, &after);
            m.secs += (end - start) as f64 / 1e9;
            m.sampled_secs += (end + SLOT_DRAIN_NS - start) as f64 / 1e9;
        }
        // What the last slots sent is still arriving.
        sleep_until_ns(schedule.window_end() + 1_000_000_000).await;
        stats.close_window();
        let after = self.sample_all();
        m.server_after = after[0];
        m.redis_after = after[2];
        m.posts = stats.window_posts.load(Ordering::Relaxed);
        m.acks = stats.acks.load(Ordering::Relaxed) - acks_before;
        m.delivered = stats.window_deliveries.load(Ordering::Relaxed);
        m
    }

    /// The server (all nodes), this generator and Redis, in [`Measured`]'s order.
    fn sample_all(&self) -> [Option<ProcSample>; 3] {
        [
            self.sample_server(),
            proc_sample(std::process::id()),
            self.sample_redis(),
        ]
    }

    fn window_json(&self, m: &Measured) -> Value {
        let stats = &self.ctx.stats;
        let [server, generator, redis] = m.use_of;
        let secs = m.secs;
        let delivered = m.delivered;
        let percent = |u: Option<Use>| u.map(|u| round1(u.cpu / m.sampled_secs * 100.0));
        let per =
            |u: Option<Use>, n: u64| u.filter(|_| n > 0).map(|u| round3(u.cpu * 1e6 / n as f64));
        let cross = stats.window_cross_deliveries.load(Ordering::Relaxed);
        let mut window = json!({
            "seconds": round3(secs),
            "posts_per_s": round1(m.posts as f64 / secs),
            "acks_per_s": round1(m.acks as f64 / secs),
            "deliveries_per_s": round1(delivered as f64 / secs),
            "latency": stats.latency_json(),
            "timeline": stats.timeline_json(Series::Delivery),
            "server_cpu_percent": percent(server),
            "server_cpu_us_per_delivery": per(server, delivered),
            "server_rss_mib": m.server_after.map(|s| round1(s.rss_kib as f64 / 1024.0)),
            "generator_cpu_percent": percent(generator),
            "server_runqueue_wait_ms": server.map(|u| round1(u.wait_ms)),
            "generator_runqueue_wait_ms": generator.map(|u| round1(u.wait_ms)),
            "generator_cpu_us_per_delivery": per(generator, delivered),
            "server_cpu_us_per_post": per(server, m.posts),
        });
        window["latency"]["steady_p99_ms"] = json!(stats.steady_p99_ms(Series::Delivery));
        if let Some(s) = &stats.schedule {
            window["interleave"] = json!({
                "slot": s.index,
                "of": s.count,
                "slot_seconds": s.slot_ns as f64 / 1e9,
                "cpu_sampled_seconds": round3(m.sampled_secs),
            });
        }
        if self.server_pids.len() > 1 {
            window["server_processes"] = json!(self.server_pids.len());
            window["server_rss_mib_per_process"] = json!(self
                .server_pids
                .iter()
                .map(|&pid| proc_sample(pid).map(|s| round1(s.rss_kib as f64 / 1024.0)))
                .collect::<Vec<_>>());
        }
        if self.ctx.endpoint.urls.len() > 1 {
            window["cross_node_deliveries_per_s"] = json!(round1(cross as f64 / secs));
            window["latency_cross_node"] = hist_json(&stats.latency_cross.lock());
            window["latency_cross_node"]["steady_p99_ms"] =
                json!(stats.steady_p99_ms(Series::CrossNode));
            window["timeline_cross_node"] = stats.timeline_json(Series::CrossNode);
            window["latency_same_node"] = hist_json(&stats.latency_local.lock());
        }
        if self.redis_pid.is_some() {
            window["redis_cpu_percent"] = json!(percent(redis));
            window["redis_rss_mib"] =
                json!(m.redis_after.map(|s| round1(s.rss_kib as f64 / 1024.0)));
            if let (Some(server), Some(redis)) = (server, redis) {
                if delivered > 0 {
                    window["server_and_redis_cpu_us_per_delivery"] =
                        json!(round3((server.cpu + redis.cpu) * 1e6 / delivered as f64));
                }
            }
        }
        if self.args.scenario == "notes" {
            window["propagation_to_all_others"] = hist_json(&stats.propagation.lock());
            window["propagation_to_all_others"]["steady_p99_ms"] =
                json!(stats.steady_p99_ms(Series::Propagation));
            window["timeline_propagation"] = stats.timeline_json(Series::Propagation);
            window["awareness_latency"] = hist_json(&stats.awareness.lock());
        }
        window
    }

    /// Closes every member; returns what each saw last, by room.
    async fn close_all(&mut self) -> Vec<(String, u64)> {
        let mut replies = Vec::new();
        for tx in self.members.drain(..) {
            let (reply_tx, reply_rx) = oneshot::channel();
            if tx.send(Cmd::Close(reply_tx)).is_ok() {
                replies.push(reply_rx);
            }
        }
        let mut seen = Vec::new();
        for reply in replies {
            if let Ok(Ok(last)) = tokio::time::timeout(Duration::from_secs(10), reply).await {
                seen.push(last);
            }
        }
        seen
    }

    fn common(&self) -> Value {
        let stats = &self.ctx.stats;
        json!({
            "gaps": stats.gaps.load(Ordering::Relaxed),
            "duplicates": stats.dups.load(Ordering::Relaxed),
            "dropped_connections": stats.disconnected.load(Ordering::Relaxed),
            "errors": stats.errors_json(),
        })
    }
}

async fn idle(run: &mut Run) -> anyhow::Result<Value> {
    let baseline = run.sample_server();
    // The generator's own run-queue wait over the whole run (setup to end
    // of hold): idle has no measured window, and a starved generator
    // inflates setup and settling, so `compare` can flag a noisy run.
    let me_before = proc_sample(std::process::id());
    let n = run.args.connections;
    let size = run.args.room_size;
    let id = run.run_id.clone();
    let setup = run
        .connect_members(n, |i| format!("3B/chat/{id}-i{}", i / size))
        .await;
    run.set_phase("settling");
    let settle = run
        .settle(Duration::from_secs(1), Duration::from_secs(30))
        .await;
    run.set_phase(format!("holding {:.0} s", run.args.hold));
    let hold_start = run.sample_server();
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < run.args.hold {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(s) = run.sample_server() {
            samples.push(s.rss_kib);
        }
    }
    let hold_end = run.sample_server();
    samples.sort_unstable();
    let rss = samples.get(samples.len() / 2).copied();
    let connected = run.ctx.stats.connected.load(Ordering::Relaxed);
    let per_conn = match (baseline, rss) {
        (Some(b), Some(rss)) if connected > 0 => {
            Some(round3((rss as f64 - b.rss_kib as f64) / connected as f64))
        }
        _ => None,
    };
    let idle_cpu = match (hold_start, hold_end) {
        (Some(a), Some(b)) => Some(round1(
            cpu_secs(&a, &b) / b.at.duration_since(a.at).as_secs_f64() * 100.0,
        )),
        _ => None,
    };
    let me = proc_sample(std::process::id());
    let (gen_wait, gen_wait_secs) = match (&me_before, &me) {
        (Some(a), Some(b)) => (
            Some(round1(wait_ms(a, b))),
            Some(round3(b.at.duration_since(a.at).as_secs_f64())),
        ),
        _ => (None, None),
    };
    let result = json!({
        "setup": setup,
        "settle_seconds": round3(settle),
        "generator_runqueue_wait_ms": gen_wait,
        "generator_runqueue_wait_over_seconds": gen_wait_secs,
        "rooms": n.div_ceil(size),
        "server_rss_baseline_mib": baseline.map(|s| round1(s.rss_kib as f64 / 1024.0)),
        "server_rss_mib": rss.map(|r| round1(r as f64 / 1024.0)),
        "server_rss_kib_per_connection": per_conn,
        "server_cpu_percent_while_idle": idle_cpu,
        "generator_rss_kib_per_connection": me.filter(|_| connected > 0)
            .map(|m| round3(m.rss_kib as f64 / connected as f64)),
        "presence_and_other_frames": run.ctx.stats.others.load(Ordering::Relaxed),
    });
    run.close_all().await;
    Ok(result)
}

async fn revision(run: &mut Run) -> anyhow::Result<Value> {
    let size = run.args.room_size;
    let n = run.args.rooms * size;
    let id = run.run_id.clone();
    let setup = run
        .connect_members(n, |i| format!("3B/chat/{id}-r{}", i / size))
        .await;
    run.set_phase("settling");
    run.settle(Duration::from_secs(1), Duration::from_secs(30))
        .await;
    run.check_schedule()?;
    let posting_from = run.ctx.stats.deliveries.load(Ordering::Relaxed);
    let acks_from = run.ctx.stats.acks.load(Ordering::Relaxed);
    let mut steps = Vec::new();
    let mut rate = run.args.rate;
    let mut best: Option<Value> = None;
    let max_steps = if run.args.sweep {
        run.args.sweep_steps
    } else {
        1
    };
    for step in 0..max_steps {
        let expected = rate * n as f64 * size as f64;
        run.set_phase(format!(
            "step {}: {rate:.3} posts/s per member, ~{expected:.0} deliveries/s",
            step + 1
        ));
        run.rate_tx.send_replace(rate);
        let mut window = run.window(run.args.warmup, run.args.duration).await;
        window["rate_per_member"] = json!(round3(rate));
        window["offered_deliveries_per_s"] = json!(round1(expected));
        let p99 = window["latency"]["p99_ms"]
            .as_f64()
            .unwrap_or(f64::INFINITY);
        let disconnected = run.ctx.stats.disconnected.load(Ordering::Relaxed);
        let ok = p99 < run.args.p99_limit_ms && disconnected == 0;
        window["p99_under_limit"] = json!(ok);
        run.progress.println(format!(
            "   {:.0} deliveries/s, p50 {} ms, p99 {} ms, max {} ms, server {} µs/delivery, server cpu {}%, generator cpu {}%, run-queue wait server {} ms generator {} ms",
            window["deliveries_per_s"].as_f64().unwrap_or(0.0),
            window["latency"]["p50_ms"],
            window["latency"]["p99_ms"],
            window["latency"]["max_ms"],
            window["server_cpu_us_per_delivery"],
            window["server_cpu_percent"],
            window["generator_cpu_percent"],
            window["server_runqueue_wait_ms"],
            window["generator_runqueue_wait_ms"],
        ));
        steps.push(window.clone());
        if !ok {
            break;
        }
        best = Some(window);
        rate *= run.args.sweep_factor;
    }
    run.rate_tx.send_replace(0.0);
    run.set_phase("draining");
    run.settle(Duration::from_secs(1), Duration::from_secs(20))
        .await;
    let delivered = run.ctx.stats.deliveries.load(Ordering::Relaxed) - posting_from;
    let acks = run.ctx.stats.acks.load(Ordering::Relaxed) - acks_from;
    let mut result = json!({
        "setup": setup,
        "rooms": run.args.rooms,
        "room_size": size,
        "message_bytes": run.args.size,
        "steps": steps,
        "sweep": run.args.sweep,
        "p99_limit_ms": run.args.p99_limit_ms,
        "posts_acked": acks,
        "deliveries_expected_from_acks": acks * size as u64,
        "deliveries": delivered,
    });
    if run.args.sweep {
        result["best"] = best.unwrap_or(Value::Null);
    }
    run.close_all().await;
    Ok(result)
}

async fn announce(run: &mut Run) -> anyhow::Result<Value> {
    let k = run.args.members;
    let room = format!("3B/chat/{}-a", run.run_id);
    let setup = run.connect_members(k, |_| room.clone()).await;
    run.set_phase("settling (presence)");
    let settle = run
        .settle(Duration::from_secs(1), Duration::from_secs(120))
        .await;
    let presence = run.ctx.stats.others.load(Ordering::Relaxed);
    let connected = run.ctx.stats.connected.load(Ordering::Relaxed);
    let mut lasts = Vec::new();
    let server_before = run.sample_server();
    run.ctx.stats.open_window();
    let mut complete = 0;
    for r in 0..run.args.repeat {
        run.set_phase(format!("announce {}/{}", r + 1, run.args.repeat));
        let before = run.ctx.stats.deliveries.load(Ordering::Relaxed);
        run.ctx.stats.max_latency_ns.store(0, Ordering::Relaxed);
        let Some(poster) = run.members.first() else {
            bail!("no member");
        };
        poster
            .send(Cmd::Post(r as u64 + 1))
            .map_err(|_| anyhow::anyhow!("poster gone"))?;
        let started = Instant::now();
        while run.ctx.stats.deliveries.load(Ordering::Relaxed) - before < connected
            && started.elapsed() < Duration::from_secs(30)
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let got = run.ctx.stats.deliveries.load(Ordering::Relaxed) - before;
        if got >= connected {
            complete += 1;
        }
        let last_ms = run.ctx.stats.max_latency_ns.load(Ordering::Relaxed) as f64 / 1e6;
        run.progress.println(format!(
            "   {got}/{connected} members have it; the last after {last_ms:.2} ms"
        ));
        lasts.push(json!({"received": got, "last_member_ms": round3(last_ms)}));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    run.ctx.stats.close_window();
    let server_after = run.sample_server();
    let mut last_ms: Vec<f64> = lasts
        .iter()
        .filter_map(|l| l["last_member_ms"].as_f64())
        .collect();
    last_ms.sort_by(f64::total_cmp);
    let result = json!({
        "setup": setup,
        "members": k,
        "settle_seconds": round3(settle),
        "presence_and_other_frames_during_setup": presence,
        "server_rss_mib": server_after.map(|s| round1(s.rss_kib as f64 / 1024.0)),
        "server_cpu_seconds_during_announces": match (server_before, server_after) {
            (Some(a), Some(b)) => Some(round3(cpu_secs(&a, &b))),
            _ => None,
        },
        "server_runqueue_wait_ms_during_announces": match (server_before, server_after) {
            (Some(a), Some(b)) => Some(round1(wait_ms(&a, &b))),
            _ => None,
        },
        "repeats": lasts,
        "complete_repeats": complete,
        "last_member_ms_median": last_ms.get(last_ms.len() / 2).copied(),
        "last_member_ms_max": last_ms.last().copied(),
        "last_member_ms_min": last_ms.first().copied(),
        "per_member_latency": run.ctx.stats.latency_json(),
    });
    run.close_all().await;
    Ok(result)
}

/// A room's writer in reconnect-storm: posts at `rate` with acks, keeps
/// the last acked offset.
async fn writer(
    ctx: Arc<Ctx>,
    user: String,
    room: String,
    rate: f64,
    stop: watch::Receiver<bool>,
    head: Arc<AtomicU64>,
) {
    let Ok((mut conn, _)) = setup(&ctx, &user, &room, 0).await else {
        ctx.stats.error("writer setup failed");
        return;
    };
    let mut ticker = post_ticker(rate);
    let mut seq = 0;
    loop {
        ticker.tick().await;
        if *stop.borrow() {
            break;
        }
        // Drain its own events (it is a member too).
        while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, conn.next()).await {}
        seq += 1;
        match conn.post_acked(&room, &make_text(seq, 0, ctx.size)).await {
            Ok(offset) => {
                head.fetch_max(offset, Ordering::Relaxed);
                ctx.stats.posts.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => ctx.stats.error(format!("writer post: {err}")),
        }
    }
    conn.close();
}

async fn reconnect_storm(run: &mut Run) -> anyhow::Result<Value> {
    if run.target != Target::Preau {
        bail!(
            "reconnect-storm needs recovery (join with since): only préau has it here \
             (the bare peer has no history; the Socket.IO peer runs without connection state recovery)"
        );
    }
    let size = run.args.room_size;
    let k = run.args.members;
    let rooms = k.div_ceil(size);
    let id = run.run_id.clone();
    let room_name = move |r: usize| format!("3B/chat/{id}-s{r}");
    let setup = run.connect_members(k, |i| room_name(i / size)).await;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut heads = Vec::new();
    for r in 0..rooms {
        let head = Arc::new(AtomicU64::new(0));
        heads.push(head.clone());
        tokio::spawn(writer(
            run.ctx.clone(),
            format!("{}-w{r}", run.run_id),
            room_name(r),
            run.args.rate,
            stop_rx.clone(),
            head,
        ));
    }
    run.set_phase(format!(
        "writers posting {:.2}/s in each of {rooms} rooms",
        run.args.rate
    ));
    tokio::time::sleep(Duration::from_secs_f64(run.args.warmup.max(2.0))).await;
    run.set_phase(format!("storm: {k} clients drop and reconnect"));
    let server_before = run.sample_server();
    let storm_start = now_ns();
    run.ctx
        .storm_started_ns
        .store(storm_start, Ordering::Relaxed);
    for tx in &run.members {
        let _ = tx.send(Cmd::Reconnect);
    }
    let started = Instant::now();
    while run.ctx.stats.storm_done.load(Ordering::Relaxed) < run.members.len() as u64
        && started.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let last = run.ctx.stats.last_recovered_ns.load(Ordering::Relaxed);
    let all_secs = last.saturating_sub(storm_start) as f64 / 1e9;
    let server_after = run.sample_server();
    run.progress.println(format!(
        "   {} recovered, {} not recovered, in {all_secs:.3} s",
        run.ctx.stats.recovered.load(Ordering::Relaxed),
        run.ctx.stats.not_recovered.load(Ordering::Relaxed)
    ));
    run.set_phase("after the storm");
    tokio::time::sleep(Duration::from_secs_f64(run.args.warmup.max(2.0))).await;
    stop_tx.send_replace(true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    run.settle(Duration::from_secs(1), Duration::from_secs(20))
        .await;
    // What every member saw last against the room's last acked offset.
    let seen = run.close_all().await;
    let mut tail_missing = 0u64;
    for (room, last) in &seen {
        let Some(r) = room
            .rsplit("-s")
            .next()
            .and_then(|r| r.parse::<usize>().ok())
        else {
            continue;
        };
        let head = heads[r].load(Ordering::Relaxed);
        tail_missing += head.saturating_sub(*last);
    }
    let stats = &run.ctx.stats;
    let gaps = stats.gaps.load(Ordering::Relaxed);
    Ok(json!({
        "setup": setup,
        "members": k,
        "rooms": rooms,
        "writer_rate_per_room": run.args.rate,
        "storm_concurrency": run.args.storm_concurrency,
        "seconds_until_all_recovered": round3(all_secs),
        "recovered": stats.recovered.load(Ordering::Relaxed),
        "not_recovered": stats.not_recovered.load(Ordering::Relaxed),
        "events_replayed": stats.replayed.load(Ordering::Relaxed),
        "messages_missed": gaps + tail_missing,
        "missed_as_gaps": gaps,
        "missed_at_tail": tail_missing,
        "members_checked": seen.len(),
        "server_cpu_seconds_during_storm": match (server_before, server_after) {
            (Some(a), Some(b)) => Some(round3(cpu_secs(&a, &b))),
            _ => None,
        },
        "server_rss_mib": server_after.map(|s| round1(s.rss_kib as f64 / 1024.0)),
    }))
}

/// `revision` over several nodes (`--url A,B`, one URL per node): member i
/// connects to node i mod N, so a room of 30 has 15 members on each of two
/// nodes and most deliveries cross nodes. The window also splits latency
/// into cross-node and same-node deliveries (the poster's node travels in
/// the text), and samples the Redis process when `--redis-pid` is given.
async fn cluster(run: &mut Run) -> anyhow::Result<Value> {
    let nodes = run.ctx.endpoint.urls.len();
    if nodes < 2 {
        bail!("cluster needs one URL per node in --url (comma-separated), at least two");
    }
    if run.target == Target::Hocuspocus {
        bail!("cluster runs against preau, bare or socketio");
    }
    let mut result = revision(run).await?;
    result["nodes"] = json!(nodes);
    result["urls"] = json!(run.ctx.endpoint.urls);
    Ok(result)
}

// ---------------------------------------------------------------- notes

/// lib0 `varUint` (7 bits per byte, little end first), as y-protocols and
/// Hocuspocus write lengths and message types.
fn write_var_uint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n & 0x7f) as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn read_var_uint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut n = 0u64;
    let mut shift = 0;
    loop {
        let byte = *data.get(*pos)?;
        *pos += 1;
        if shift >= 64 {
            return None;
        }
        n |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(n);
        }
        shift += 7;
    }
}

/// lib0 `varUint8Array`: a length, then that many bytes.
fn read_var_bytes<'a>(data: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len = usize::try_from(read_var_uint(data, pos)?).ok()?;
    let end = pos.checked_add(len)?;
    let bytes = data.get(*pos..end)?;
    *pos = end;
    Some(bytes)
}

/// What a note editor receives, whatever the server.
enum NoteIn {
    /// A Yjs v1 update to apply: a `yjs_update` event (préau) or a sync
    /// update message (Hocuspocus).
    Update(Vec<u8>),
    /// The server's sync step 1: answer with what it lacks.
    Step1(yrs::StateVector),
    /// The server's sync step 2: what this editor lacked.
    Step2(Vec<u8>),
    /// Awareness states (cursors) of other editors.
    Awareness(yrs::sync::AwarenessUpdate),
    /// The reply to one of our messages (préau `ok`, Hocuspocus SyncStatus).
    Ack,
    Error(String),
    Other,
}

/// Hocuspocus's protocol over WebSocket: every message, both ways, is
/// `varString(documentName)` followed by a y-protocols message (types 0 sync,
/// 1 awareness, 2 auth, 3 query awareness, 4 sync reply, 8 sync status).
/// A document starts with an auth message (`2, 0, varString(token)`); the
/// server queues everything else for that document until its hooks ran and
/// it answered `2, 2, varString(scope)` (or `2, 1, reason`). Built like
/// `preau::client::Client`: a writer task, a reader task, unbounded channels.
struct HocusClient {
    outgoing: mpsc::UnboundedSender<Message>,
    incoming: mpsc::UnboundedReceiver<NoteIn>,
    /// `varString(documentName)`.
    prefix: Vec<u8>,
}

impl HocusClient {
    async fn connect(url: &str, document: &str) -> anyhow::Result<HocusClient> {
        // The same small buffers as préau's client.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .write_buffer_size(0);
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
        let mut prefix = Vec::with_capacity(document.len() + 2);
        write_var_uint(&mut prefix, document.len() as u64);
        prefix.extend_from_slice(document.as_bytes());
        // No onAuthenticate hook on the server: any token passes.
        let mut auth = prefix.clone();
        auth.extend_from_slice(&[2, 0]);
        write_var_uint(&mut auth, 7);
        auth.extend_from_slice(b"no-auth");
        ws.send(Message::binary(auth)).await?;
        loop {
            let message = ws.next().await.context("hocuspocus closed during auth")??;
            let Message::Binary(data) = message else {
                continue;
            };
            if !data.starts_with(&prefix) {
                continue;
            }
            let mut pos = prefix.len();
            match (
                read_var_uint(&data, &mut pos),
                read_var_uint(&data, &mut pos),
            ) {
                (Some(2), Some(2)) => break,
                (Some(2), Some(1)) => bail!("hocuspocus refused the document: permission denied"),
                _ => {}
            }
        }
        let (mut sink, mut stream) = ws.split();
        let (outgoing, mut outgoing_rx) = mpsc::unbounded_channel::<Message>();
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(message) = outgoing_rx.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let reader_out = outgoing.clone();
        let reader_prefix = prefix.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                match message {
                    // Messages of other documents cannot come: one per connection.
                    Message::Binary(data) if data.starts_with(&reader_prefix) => {
                        let _ = incoming_tx.send(parse_hocus(&data, reader_prefix.len()));
                    }
                    Message::Close(_) => {
                        let _ = reader_out.send(Message::Close(None));
                        break;
                    }
                    _ => {}
                }
            }
        });
        Ok(HocusClient {
            outgoing,
            incoming,
            prefix,
        })
    }

    /// Sends one y-protocols message for the document.
    fn send(&self, message: &[u8]) -> anyhow::Result<()> {
        let mut frame = Vec::with_capacity(self.prefix.len() + message.len());
        frame.extend_from_slice(&self.prefix);
        frame.extend_from_slice(message);
        self.outgoing
            .send(Message::binary(frame))
            .map_err(|_| anyhow::anyhow!("hocuspocus connection closed"))
    }

    fn close(&self) {
        let _ = self.outgoing.send(Message::Close(None));
    }
}

/// One message from Hocuspocus, after the document name.
fn parse_hocus(data: &[u8], mut pos: usize) -> NoteIn {
    use yrs::updates::decoder::Decode;
    let start = pos;
    match read_var_uint(data, &mut pos) {
        // Sync, or SyncReply (a sync message that asks for no step 1 back).
        Some(0) | Some(4) => {
            let sub = read_var_uint(data, &mut pos);
            let Some(payload) = read_var_bytes(data, &mut pos) else {
                return NoteIn::Other;
            };
            match sub {
                Some(0) => match yrs::StateVector::decode_v1(payload) {
                    Ok(sv) => NoteIn::Step1(sv),
                    Err(_) => NoteIn::Error("bad state vector from hocuspocus".to_owned()),
                },
                Some(1) => NoteIn::Step2(payload.to_vec()),
                Some(2) => NoteIn::Update(payload.to_vec()),
                _ => NoteIn::Other,
            }
        }
        // Awareness: the same y-protocols message as préau relays.
        Some(1) => match preau::notes::decode_message(&data[start..]) {
            Ok(preau::notes::Incoming::Awareness(update)) => NoteIn::Awareness(update),
            _ => NoteIn::Error("bad awareness message from hocuspocus".to_owned()),
        },
        Some(8) => NoteIn::Ack,
        _ => NoteIn::Other,
    }
}

/// One editor's connection: préau (`yjs` requests, `yjs` frames and
/// `yjs_update` events) or Hocuspocus.
enum NoteConn {
    Preau { client: Client, room: String },
    Hocus(HocusClient),
}

impl NoteConn {
    async fn connect(endpoint: &Endpoint, user: &str, note: &str) -> anyhow::Result<NoteConn> {
        match endpoint.target {
            Target::Preau => {
                let token = endpoint.token(user)?;
                let (mut client, _) = Client::connect(endpoint.url(0), &token).await?;
                client.join(note, None).await?;
                Ok(NoteConn::Preau {
                    client,
                    room: note.to_owned(),
                })
            }
            Target::Hocuspocus => Ok(NoteConn::Hocus(
                HocusClient::connect(endpoint.url(0), note).await?,
            )),
            other => bail!(
                "notes runs against preau or hocuspocus, not {}",
                other.name()
            ),
        }
    }

    /// Sends one y-protocols message (no request id on préau: the reply
    /// arrives as [`NoteIn::Ack`]).
    fn send(&self, message: Vec<u8>) -> anyhow::Result<()> {
        match self {
            NoteConn::Preau { client, room } => {
                let frame = protocol::encode_request(&Request::Yjs {
                    id: None,
                    room: room.clone(),
                    data: message,
                    more: None,
                })?;
                client.send_raw(frame)?;
                Ok(())
            }
            NoteConn::Hocus(client) => client.send(&message),
        }
    }

    async fn next(&mut self) -> Option<NoteIn> {
        match self {
            NoteConn::Preau { client, .. } => Some(match client.next().await? {
                ServerFrame::Event(event) => match event.body {
                    Body::YjsUpdate { data } => NoteIn::Update(data),
                    _ => NoteIn::Other,
                },
                ServerFrame::Yjs(frame) => match preau::notes::decode_message(&frame.data) {
                    Ok(preau::notes::Incoming::SyncStep1(sv)) => NoteIn::Step1(sv),
                    Ok(preau::notes::Incoming::SyncStep2(update)) => NoteIn::Step2(update),
                    Ok(preau::notes::Incoming::Update(update)) => NoteIn::Update(update),
                    Ok(preau::notes::Incoming::Awareness(update)) => NoteIn::Awareness(update),
                    Ok(_) => NoteIn::Other,
                    Err(_) => NoteIn::Error("bad yjs frame from préau".to_owned()),
                },
                ServerFrame::Ok { id: None, .. } => NoteIn::Ack,
                ServerFrame::Error(reply) => NoteIn::Error(reply.code.to_string()),
                _ => NoteIn::Other,
            }),
            NoteConn::Hocus(client) => client.incoming.recv().await,
        }
    }

    fn close(&self) {
        match self {
            NoteConn::Preau { client, .. } => client.close(),
            NoteConn::Hocus(client) => client.close(),
        }
    }
}

/// Characters typed, in turn.
const TYPED: &[&str] = &["a", "b", "c", "d", "e", " ", "f", "g", "h", "i", "j", "\n"];

/// One editor's yrs document and cursor. The cursor is a sticky index
/// bound to the character just typed, so the editor keeps typing after its
/// own text whatever the others insert before it (as a person does).
struct Typist {
    doc: yrs::Doc,
    text: yrs::TextRef,
    client_id: u64,
    cursor: Option<yrs::StickyIndex>,
    typed: usize,
    /// Clock of this editor's awareness state (each change increments it).
    awareness_clock: u32,
}

impl Typist {
    fn new(client_id: u64) -> Typist {
        let doc = yrs::Doc::with_client_id(client_id);
        let text = doc.get_or_insert_text("content");
        Typist {
            doc,
            text,
            client_id,
            cursor: None,
            typed: 0,
            awareness_clock: 0,
        }
    }

    /// The awareness message an editor sends when its cursor moves: its
    /// name, colour and cursor, as y-codemirror and y-prosemirror set them,
    /// plus the send time (`t`, ns) to measure the delivery.
    fn awareness(&mut self, sent_ns: u64) -> Vec<u8> {
        self.awareness_clock += 1;
        let state = json!({
            "user": {"name": format!("editor {}", self.client_id), "color": "#30bced"},
            "cursor": {"anchor": self.typed, "head": self.typed},
            "t": sent_ns,
        });
        let entry = yrs::sync::awareness::AwarenessUpdateEntry {
            clock: self.awareness_clock,
            json: Arc::from(state.to_string()),
        };
        preau::notes::encode_awareness(&yrs::sync::AwarenessUpdate {
            clients: HashMap::from([(self.client_id, entry)]),
        })
    }

    /// Types one character at the cursor: the v1 update and the clock of
    /// the new character (its id is `(client_id, clock)`).
    fn type_one(&mut self) -> (Vec<u8>, u32) {
        use yrs::{IndexedSequence, ReadTxn, Text, Transact};
        let mut txn = self.doc.transact_mut();
        let clock = txn.state_vector().get(&self.client_id);
        let len = self.text.len(&txn);
        let index = self
            .cursor
            .as_ref()
            .and_then(|cursor| cursor.get_offset(&txn))
            .map_or(len, |offset| offset.index.min(len));
        self.text
            .insert(&mut txn, index, TYPED[self.typed % TYPED.len()]);
        self.typed += 1;
        self.cursor = self.text.sticky_index(&txn, index + 1, yrs::Assoc::Before);
        (txn.encode_update_v1(), clock)
    }

    /// Applies an update; the id of its first new item, `(client, clock)`.
    fn apply(&mut self, data: &[u8]) -> Result<Option<(u64, u32)>, String> {
        use yrs::updates::decoder::Decode;
        use yrs::Transact;
        let update =
            yrs::Update::decode_v1(data).map_err(|e| format!("undecodable update: {e}"))?;
        let first = update
            .state_vector_lower()
            .iter()
            .next()
            .map(|(&client, &clock)| (client, clock));
        self.doc
            .transact_mut()
            .apply_update(update)
            .map_err(|e| format!("update does not apply: {e}"))?;
        Ok(first)
    }

    /// Sync step 2 in answer to the server's step 1.
    fn diff(&self, remote: &yrs::StateVector) -> Vec<u8> {
        use yrs::{ReadTxn, Transact};
        preau::notes::encode_step2(&self.doc.transact().encode_state_as_update_v1(remote))
    }

    fn text(&self) -> String {
        use yrs::{GetString, Transact};
        self.text.get_string(&self.doc.transact())
    }
}

/// Updates sent and not yet received by every other editor, by the id of
/// their character: (send time, editors still to receive it).
#[derive(Default)]
struct NoteTrack {
    pending: Mutex<HashMap<(u64, u32), (u64, u64)>>,
    /// Editors minus one, set before typing starts.
    others: AtomicU64,
    /// Updates received that no editor of this run sent (or received twice).
    unknown: AtomicU64,
}

impl NoteTrack {
    fn sent(&self, id: (u64, u32), at_ns: u64) {
        let others = self.others.load(Ordering::Relaxed);
        if others > 0 {
            self.pending.lock().insert(id, (at_ns, others));
        }
    }

    /// Another editor received `id`: one delivery (its latency), and when it
    /// was the last one, the update's propagation time.
    fn received(&self, id: (u64, u32), stats: &Stats) {
        let mut pending = self.pending.lock();
        let Some(entry) = pending.get_mut(&id) else {
            self.unknown.fetch_add(1, Ordering::Relaxed);
            return;
        };
        stats.delivered(entry.0);
        entry.1 -= 1;
        if entry.1 == 0 {
            let sent = entry.0;
            pending.remove(&id);
            stats.propagated(sent);
        }
    }
}

enum EditorCmd {
    /// Close; the reply carries the editor's final text.
    Finish(oneshot::Sender<String>),
}

/// Handles one incoming message; true when it was the server's step 2
/// (the editor is in sync).
fn editor_handle(
    message: NoteIn,
    typist: &mut Typist,
    conn: &NoteConn,
    ctx: &Ctx,
    track: &NoteTrack,
) -> bool {
    let stats = &ctx.stats;
    match message {
        NoteIn::Update(data) => match typist.apply(&data) {
            Ok(Some((client, _))) if client == typist.client_id => {
                stats.echoes.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(id)) => track.received(id, stats),
            Ok(None) => stats.error("update without new items"),
            Err(err) => stats.error(err),
        },
        NoteIn::Step2(data) => {
            if let Err(err) = typist.apply(&data) {
                stats.error(err);
            }
            return true;
        }
        NoteIn::Step1(remote) => {
            if let Err(err) = conn.send(typist.diff(&remote)) {
                stats.error(format!("step 2: {err}"));
            }
        }
        NoteIn::Awareness(update) => {
            for (client, entry) in &update.clients {
                if *client == typist.client_id {
                    continue;
                }
                // States without a send time (a removal, the states a
                // server sends on connect) are not deliveries to time.
                let sent = serde_json::from_str::<Value>(&entry.json)
                    .ok()
                    .and_then(|state| state["t"].as_u64());
                if let Some(sent) = sent {
                    stats.delivered(sent);
                    stats.awareness_delivered(sent);
                }
            }
        }
        NoteIn::Ack => {
            stats.acks.fetch_add(1, Ordering::Relaxed);
        }
        NoteIn::Error(code) => stats.error(code),
        NoteIn::Other => {
            stats.others.fetch_add(1, Ordering::Relaxed);
        }
    }
    false
}

/// Connects, syncs (step 1, the server's step 2 and step 1, our step 2).
async fn editor_setup(
    ctx: &Ctx,
    track: &NoteTrack,
    user: &str,
    note: &str,
    typist: &mut Typist,
) -> anyhow::Result<NoteConn> {
    let started = now_ns();
    let mut conn = NoteConn::connect(&ctx.endpoint, user, note).await?;
    let sv = {
        use yrs::{ReadTxn, Transact};
        typist.doc.transact().state_vector()
    };
    conn.send(preau::notes::encode_step1(&sv))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let message = tokio::time::timeout_at(deadline, conn.next())
            .await
            .context("no sync step 2 within 30 s")?
            .context("closed during sync")?;
        if editor_handle(message, typist, &conn, ctx, track) {
            break;
        }
    }
    ctx.stats
        .setup
        .lock()
        .saturating_record(((now_ns() - started) / 1000).max(1));
    Ok(conn)
}

/// One editor: connects and syncs, then types at the current rate (one
/// character, one update each), applies every update it receives, and
/// reports its text when finished.
async fn editor(
    ctx: Arc<Ctx>,
    track: Arc<NoteTrack>,
    client_id: u64,
    user: String,
    note: String,
    awareness: bool,
    mut commands: mpsc::UnboundedReceiver<EditorCmd>,
) {
    let mut typist = Typist::new(client_id);
    let slot = ctx.connect_slots.acquire().await;
    let setup = editor_setup(&ctx, &track, &user, &note, &mut typist).await;
    drop(slot);
    let mut conn = match setup {
        Ok(conn) => conn,
        Err(err) => {
            ctx.stats.setup_failed.fetch_add(1, Ordering::Relaxed);
            ctx.stats.error(format!("setup: {err}"));
            return;
        }
    };
    ctx.stats.connected.fetch_add(1, Ordering::Relaxed);
    let mut rate_rx = ctx.rate.clone();
    let mut rate = *rate_rx.borrow_and_update();
    let mut ticker = post_ticker(rate);
    let mut alive = true;
    loop {
        tokio::select! {
            incoming = conn.next(), if alive => match incoming {
                Some(message) => {
                    editor_handle(message, &mut typist, &conn, &ctx, &track);
                }
                None => {
                    ctx.stats.disconnected.fetch_add(1, Ordering::Relaxed);
                    if let NoteConn::Preau { client, .. } = &conn {
                        if let Some((code, reason)) = client.close_frame() {
                            ctx.stats.error(format!("closed by server: {code} {reason}"));
                        }
                    }
                    alive = false;
                }
            },
            _ = ticker.tick(), if alive && rate > 0.0 => {
                if !ctx.posting_now() {
                    continue;
                }
                let (update, clock) = typist.type_one();
                let message = preau::notes::encode_update(&update);
                let sent = now_ns();
                track.sent((client_id, clock), sent);
                if conn.send(message).is_ok() {
                    ctx.stats.posts.fetch_add(1, Ordering::Relaxed);
                    ctx.stats.window_posts.fetch_add(1, Ordering::Relaxed);
                }
                if awareness && conn.send(typist.awareness(sent)).is_ok() {
                    ctx.stats.awareness_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            changed = rate_rx.changed() => {
                if changed.is_err() {
                    rate = 0.0;
                    rate_rx = watch::channel(0.0).1;
                } else {
                    rate = *rate_rx.borrow_and_update();
                    ticker = post_ticker(rate);
                }
            }
            command = commands.recv() => {
                let text = typist.text();
                conn.close();
                if let Some(EditorCmd::Finish(reply)) = command {
                    let _ = reply.send(text);
                }
                return;
            }
        }
    }
}

/// `notes`: `--editors` in one note, each typing `--typing-rate` characters
/// per second (one Yjs update each). One window: per-delivery latency,
/// propagation (until every other editor has the update), server CPU per
/// delivered update, RSS. Then: every update reached every other editor,
/// and every editor ends with the same text.
async fn notes(run: &mut Run) -> anyhow::Result<Value> {
    let n = run.args.editors;
    if n < 2 {
        bail!("notes needs 2 editors or more");
    }
    let note = match run.target {
        Target::Preau => format!("3B/notes/{}-n", run.run_id),
        Target::Hocuspocus => format!("{}-note", run.run_id),
        other => bail!(
            "notes runs against preau or hocuspocus, not {}",
            other.name()
        ),
    };
    let track = Arc::new(NoteTrack::default());
    if run.target == Target::Preau {
        run.set_phase("opening the note");
        run.ctx
            .endpoint
            .open_rooms(&run.run_id, std::slice::from_ref(&note))
            .await?;
    }
    run.set_phase(format!("connecting {n} editors"));
    let started = Instant::now();
    let mut editors = Vec::new();
    for i in 0..n {
        let (tx, rx) = mpsc::unbounded_channel();
        editors.push(tx);
        // Yjs client ids are random 53-bit numbers; any distinct ones do.
        let client_id = 1_000 + i as u64;
        tokio::spawn(editor(
            run.ctx.clone(),
            track.clone(),
            client_id,
            format!("{}-e{i}", run.run_id),
            note.clone(),
            !run.args.no_awareness,
            rx,
        ));
    }
    let stats = &run.ctx.stats;
    while stats.connected.load(Ordering::Relaxed) + stats.setup_failed.load(Ordering::Relaxed)
        < n as u64
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let connected = stats.connected.load(Ordering::Relaxed);
    let failed = stats.setup_failed.load(Ordering::Relaxed);
    run.progress.println(format!(
        "   {connected} editors in sync, {failed} failed in {secs:.2} s"
    ));
    let setup = json!({
        "connections": n,
        "connected": connected,
        "failed": failed,
        "seconds": round3(secs),
        "per_second": round1(n as f64 / secs),
        "concurrency": run.args.connect_concurrency,
        "setup_latency": hist_json(&stats.setup.lock()),
    });
    if connected < 2 {
        bail!(
            "fewer than 2 editors in sync ({connected}); errors: {}",
            stats.errors_json()
        );
    }
    track.others.store(connected - 1, Ordering::Relaxed);
    run.check_schedule()?;
    let rate = run.args.typing_rate;
    run.set_phase(format!(
        "{connected} editors typing {rate} characters/s each, ~{:.0} deliveries/s to other editors",
        rate * connected as f64 * (connected - 1) as f64
    ));
    let acks_from = stats.acks.load(Ordering::Relaxed);
    run.rate_tx.send_replace(rate);
    let mut window = run.window(run.args.warmup, run.args.duration).await;
    window["rate_per_editor"] = json!(rate);
    run.progress.println(format!(
        "   {:.0} updates/s, {:.0} deliveries/s, propagation p50 {} ms p99 {} ms, per delivery p99 {} ms, server {} µs/delivery, server cpu {}%, rss {} MiB, generator cpu {}%, run-queue wait server {} ms generator {} ms",
        window["posts_per_s"].as_f64().unwrap_or(0.0),
        window["deliveries_per_s"].as_f64().unwrap_or(0.0),
        window["propagation_to_all_others"]["p50_ms"],
        window["propagation_to_all_others"]["p99_ms"],
        window["latency"]["p99_ms"],
        window["server_cpu_us_per_delivery"],
        window["server_cpu_percent"],
        window["server_rss_mib"],
        window["generator_cpu_percent"],
        window["server_runqueue_wait_ms"],
        window["generator_runqueue_wait_ms"],
    ));
    run.rate_tx.send_replace(0.0);
    run.set_phase("draining");
    run.settle(Duration::from_secs(1), Duration::from_secs(20))
        .await;
    let not_everywhere = track.pending.lock().len();
    let mut replies = Vec::new();
    for tx in editors.drain(..) {
        let (reply_tx, reply_rx) = oneshot::channel();
        if tx.send(EditorCmd::Finish(reply_tx)).is_ok() {
            replies.push(reply_rx);
        }
    }
    let mut texts = Vec::new();
    for reply in replies {
        if let Ok(Ok(text)) = tokio::time::timeout(Duration::from_secs(10), reply).await {
            texts.push(text);
        }
    }
    let distinct: std::collections::BTreeSet<&String> = texts.iter().collect();
    let typed = stats.posts.load(Ordering::Relaxed);
    let converged = distinct.len() == 1
        && texts.len() as u64 == connected
        && texts.first().is_some_and(|t| t.len() as u64 == typed);
    run.progress.println(format!(
        "   {typed} updates typed; {not_everywhere} not received by every other editor; {} distinct final texts over {} editors ({} characters)",
        distinct.len(),
        texts.len(),
        texts.first().map_or(0, |t| t.len())
    ));
    Ok(json!({
        "setup": setup,
        "editors": connected,
        "typing_rate": rate,
        "note": note,
        "steps": [window],
        "updates_sent": typed,
        "awareness": !run.args.no_awareness,
        "awareness_sent": stats.awareness_sent.load(Ordering::Relaxed),
        "replies_received": stats.acks.load(Ordering::Relaxed) - acks_from,
        "updates_not_received_by_every_other_editor": not_everywhere,
        "unknown_updates": track.unknown.load(Ordering::Relaxed),
        "own_updates_echoed": stats.echoes.load(Ordering::Relaxed),
        "final_texts_distinct": distinct.len(),
        "final_text_chars": texts.first().map(|t| t.len()),
        "converged": converged,
    }))
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

// ---------------------------------------------------------------- output

fn fmt(v: &Value) -> String {
    match v {
        Value::Null => "–".to_owned(),
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if n.is_u64() || n.is_i64() {
                format!("{}", n)
            } else if x.abs() >= 100.0 {
                format!("{x:.0}")
            } else if x.abs() >= 10.0 {
                format!("{x:.1}")
            } else {
                format!("{x:.2}")
            }
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The headline figures of one result, as `(name, value, lower is better)`.
fn headline(scenario: &str, result: &Value) -> Vec<(String, Value, Option<bool>)> {
    let r = &result["result"];
    let mut rows: Vec<(String, Value, Option<bool>)> = Vec::new();
    let mut push = |name: &str, v: &Value, lower: Option<bool>| {
        rows.push((name.to_owned(), v.clone(), lower));
    };
    push("connections set up", &r["setup"]["connected"], None);
    push("setup failures", &r["setup"]["failed"], Some(true));
    push(
        "connection setup rate (/s)",
        &r["setup"]["per_second"],
        Some(false),
    );
    push(
        "setup latency p99 (ms)",
        &r["setup"]["setup_latency"]["p99_ms"],
        Some(true),
    );
    match scenario {
        "idle" => {
            push(
                "server RSS per connection (KiB)",
                &r["server_rss_kib_per_connection"],
                Some(true),
            );
            push("server RSS (MiB)", &r["server_rss_mib"], Some(true));
            push(
                "server CPU while idle (%)",
                &r["server_cpu_percent_while_idle"],
                Some(true),
            );
            push(
                "frames other than events received (presence…)",
                &r["presence_and_other_frames"],
                None,
            );
        }
        "revision" | "cluster" => {
            if scenario == "cluster" {
                push("nodes", &r["nodes"], None);
            }
            let steps = r["steps"].as_array().cloned().unwrap_or_default();
            for step in &steps {
                let label = format!("@ {} posts/s/member", fmt(&step["rate_per_member"]));
                push(
                    &format!("{label}: deliveries/s"),
                    &step["deliveries_per_s"],
                    Some(false),
                );
                push(
                    &format!("{label}: latency p50 (ms)"),
                    &step["latency"]["p50_ms"],
                    Some(true),
                );
                push(
                    &format!("{label}: latency p99 (ms)"),
                    &step["latency"]["p99_ms"],
                    Some(true),
                );
                push(
                    &format!("{label}: latency steady p99, median of per-second p99s (ms)"),
                    &step["latency"]["steady_p99_ms"],
                    Some(true),
                );
                push(
                    &format!("{label}: latency max (ms)"),
                    &step["latency"]["max_ms"],
                    Some(true),
                );
                if step.get("latency_cross_node").is_some() {
                    push(
                        &format!("{label}: cross-node deliveries/s"),
                        &step["cross_node_deliveries_per_s"],
                        Some(false),
                    );
                    push(
                        &format!("{label}: cross-node latency p50 (ms)"),
                        &step["latency_cross_node"]["p50_ms"],
                        Some(true),
                    );
                    push(
                        &format!("{label}: cross-node latency p99 (ms)"),
                        &step["latency_cross_node"]["p99_ms"],
                        Some(true),
                    );
                    push(
                        &format!("{label}: cross-node latency steady p99 (ms)"),
                        &step["latency_cross_node"]["steady_p99_ms"],
                        Some(true),
                    );
                    push(
                        &format!("{label}: same-node latency p50 (ms)"),
                        &step["latency_same_node"]["p50_ms"],
                        Some(true),
                    );
                    push(
                        &format!("{label}: same-node latency p99 (ms)"),
                        &step["latency_same_node"]["p99_ms"],
                        Some(true),
                    );
                }
                push(
                    &format!("{label}: server CPU µs per delivery"),
                    &step["server_cpu_us_per_delivery"],
                    Some(true),
                );
                push(
                    &format!("{label}: server CPU (%)"),
                    &step["server_cpu_percent"],
                    Some(true),
                );
                push(
                    &format!("{label}: server RSS (MiB)"),
                    &step["server_rss_mib"],
                    Some(true),
                );
                if step.get("redis_cpu_percent").is_some() {
                    push(
                        &format!("{label}: Redis CPU (%)"),
                        &step["redis_cpu_percent"],
                        Some(true),
                    );
                    push(
                        &format!("{label}: servers + Redis CPU µs per delivery"),
                        &step["server_and_redis_cpu_us_per_delivery"],
                        Some(true),
                    );
                }
                push(
                    &format!("{label}: generator CPU (%)"),
                    &step["generator_cpu_percent"],
                    None,
                );
                push(
                    &format!("{label}: server run-queue wait (ms)"),
                    &step["server_runqueue_wait_ms"],
                    None,
                );
                push(
                    &format!("{label}: generator run-queue wait (ms)"),
                    &step["generator_runqueue_wait_ms"],
                    None,
                );
            }
            if r["sweep"].as_bool() == Some(true) {
                push(
                    "sweep: best deliveries/s with p99 under limit",
                    &r["best"]["deliveries_per_s"],
                    Some(false),
                );
            }
            push("posts acked", &r["posts_acked"], None);
            push(
                "deliveries expected (acks × room size)",
                &r["deliveries_expected_from_acks"],
                None,
            );
            push("deliveries received", &r["deliveries"], None);
        }
        "notes" => {
            push("editors", &r["editors"], None);
            let w = &r["steps"][0];
            push("updates sent /s", &w["posts_per_s"], None);
            push("awareness updates sent in all", &r["awareness_sent"], None);
            push(
                "deliveries to other editors /s (updates + awareness)",
                &w["deliveries_per_s"],
                Some(false),
            );
            push(
                "awareness delivery p99 (ms)",
                &w["awareness_latency"]["p99_ms"],
                Some(true),
            );
            push(
                "propagation to every other editor p50 (ms)",
                &w["propagation_to_all_others"]["p50_ms"],
                Some(true),
            );
            push(
                "propagation to every other editor p99 (ms)",
                &w["propagation_to_all_others"]["p99_ms"],
                Some(true),
            );
            push(
                "propagation steady p99, median of per-second p99s (ms)",
                &w["propagation_to_all_others"]["steady_p99_ms"],
                Some(true),
            );
            push(
                "propagation to every other editor max (ms)",
                &w["propagation_to_all_others"]["max_ms"],
                Some(true),
            );
            push(
                "per-delivery latency p50 (ms)",
                &w["latency"]["p50_ms"],
                Some(true),
            );
            push(
                "per-delivery latency p99 (ms)",
                &w["latency"]["p99_ms"],
                Some(true),
            );
            push(
                "server CPU µs per delivered message",
                &w["server_cpu_us_per_delivery"],
                Some(true),
            );
            push(
                "server CPU µs per update sent",
                &w["server_cpu_us_per_post"],
                Some(true),
            );
            push("server CPU (%)", &w["server_cpu_percent"], Some(true));
            push("server RSS (MiB)", &w["server_rss_mib"], Some(true));
            push("generator CPU (%)", &w["generator_cpu_percent"], None);
            push(
                "server run-queue wait (ms)",
                &w["server_runqueue_wait_ms"],
                None,
            );
            push(
                "generator run-queue wait (ms)",
                &w["generator_runqueue_wait_ms"],
                None,
            );
            push("updates sent in all", &r["updates_sent"], None);
            push(
                "updates not received by every other editor",
                &r["updates_not_received_by_every_other_editor"],
                Some(true),
            );
            push(
                "unknown updates received",
                &r["unknown_updates"],
                Some(true),
            );
            push("distinct final texts", &r["final_texts_distinct"], None);
            push("converged", &r["converged"], None);
        }
        "announce" => {
            push("members", &r["members"], None);
            push(
                "time until the last member has it, median (ms)",
                &r["last_member_ms_median"],
                Some(true),
            );
            push(
                "time until the last member has it, max (ms)",
                &r["last_member_ms_max"],
                Some(true),
            );
            push(
                "per-member latency p50 (ms)",
                &r["per_member_latency"]["p50_ms"],
                Some(true),
            );
            push(
                "per-member latency p99 (ms)",
                &r["per_member_latency"]["p99_ms"],
                Some(true),
            );
            push("complete announces", &r["complete_repeats"], None);
            push(
                "server CPU during announces (s)",
                &r["server_cpu_seconds_during_announces"],
                Some(true),
            );
            push(
                "frames other than events during setup (presence…)",
                &r["presence_and_other_frames_during_setup"],
                None,
            );
            push(
                "settle time after setup (s)",
                &r["settle_seconds"],
                Some(true),
            );
            push("server RSS (MiB)", &r["server_rss_mib"], Some(true));
        }
        "reconnect-storm" => {
            push(
                "time until all recovered (s)",
                &r["seconds_until_all_recovered"],
                Some(true),
            );
            push("recovered", &r["recovered"], None);
            push("not recovered", &r["not_recovered"], Some(true));
            push("messages missed", &r["messages_missed"], Some(true));
            push("events replayed", &r["events_replayed"], None);
            push(
                "server CPU during storm (s)",
                &r["server_cpu_seconds_during_storm"],
                Some(true),
            );
        }
        _ => {}
    }
    push(
        "gaps seen (offsets skipped)",
        &r["common"]["gaps"],
        Some(true),
    );
    push("duplicates seen", &r["common"]["duplicates"], Some(true));
    push(
        "connections dropped by the server",
        &r["common"]["dropped_connections"],
        Some(true),
    );
    rows
}

fn summary_md(doc: &Value) -> String {
    let scenario = doc["scenario"].as_str().unwrap_or("?");
    let mut md = format!(
        "# {scenario} — {}\n\n{} · target `{}` at `{}` · server {}\n\n| figure | value |\n|---|---|\n",
        doc["label"].as_str().unwrap_or("?"),
        doc["finished"].as_str().unwrap_or(""),
        doc["target"].as_str().unwrap_or("?"),
        doc["url"].as_str().unwrap_or("?"),
        doc["server"]["cmdline"].as_str().unwrap_or("(not sampled)"),
    );
    for (name, value, _) in headline(scenario, doc) {
        md.push_str(&format!("| {name} | {} |\n", fmt(&value)));
    }
    let errors = &doc["result"]["common"]["errors"];
    if errors.as_object().is_some_and(|e| !e.is_empty()) {
        md.push_str(&format!("\nErrors: `{errors}`\n"));
    }
    md.push_str(&format!("\nParameters: `{}`\n", doc["parameters"]));
    md
}

/// `report <scenario>`: one table of every `<scenario>-*.json` in `--out`,
/// with préau/peer ratios.
fn report(args: &Args) -> anyhow::Result<()> {
    let scenario = args.of.clone().context("report needs a scenario")?;
    let mut docs: Vec<Value> = Vec::new();
    for entry in std::fs::read_dir(&args.out)
        .with_context(|| format!("cannot read {}", args.out.display()))?
    {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(&format!("{scenario}-")) && name.ends_with(".json") {
            let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
            if doc["scenario"] == scenario {
                docs.push(doc);
            }
        }
    }
    if docs.is_empty() {
        bail!("no {scenario}-*.json in {}", args.out.display());
    }
    let order = |d: &Value| {
        let label = d["label"].as_str().unwrap_or("?");
        LABELS
            .iter()
            .position(|l| *l == label)
            .unwrap_or(LABELS.len())
    };
    docs.sort_by_key(order);
    // préau as the run labelled so, else the first run of préau.
    let preau = docs
        .iter()
        .position(|d| d["label"] == "preau")
        .or_else(|| docs.iter().position(|d| d["target"] == "preau"));
    let labels: Vec<String> = docs
        .iter()
        .map(|d| d["label"].as_str().unwrap_or("?").to_owned())
        .collect();
    let tables: Vec<Vec<(String, Value, Option<bool>)>> =
        docs.iter().map(|d| headline(&scenario, d)).collect();
    let mut md = format!("# `{scenario}`: préau side by side\n\n");
    let first = &docs[0];
    md.push_str(&format!(
        "Machine: {} · {} cores online · {} GiB · Linux {}. Written {}.\n\n",
        first["machine"]["cpu"].as_str().unwrap_or("?"),
        first["machine"]["cores_online"],
        first["machine"]["memory_gib"],
        first["machine"]["kernel"].as_str().unwrap_or("?"),
        first["finished"].as_str().unwrap_or("?"),
    ));
    md.push_str(
        "| run | server process | CPUs allowed (server) | generator CPUs |\n|---|---|---|---|\n",
    );
    for d in &docs {
        for process in measured_processes(d) {
            md.push_str(&format!(
                "| {} | `{}` | {} | {} |\n",
                d["label"].as_str().unwrap_or("?"),
                process["cmdline"].as_str().unwrap_or("?"),
                process["cpus_allowed"].as_str().unwrap_or("?"),
                d["generator"]["cpus_allowed"].as_str().unwrap_or("?"),
            ));
        }
    }
    md.push_str(&format!(
        "\nParameters ({}): `{}`\n\n",
        labels[0], first["parameters"]
    ));
    let mut header = String::from("| figure |");
    let mut rule = String::from("|---|");
    for label in &labels {
        header.push_str(&format!(" {label} |"));
        rule.push_str("---:|");
    }
    if let Some(p) = preau {
        for (i, label) in labels.iter().enumerate() {
            if i != p {
                header.push_str(&format!(" préau / {label} |"));
                rule.push_str("---:|");
            }
        }
    }
    md.push_str(&format!("{header}\n{rule}\n"));
    // Rows by name, in the order of the first table, then any extra.
    let mut names: Vec<String> = Vec::new();
    for table in &tables {
        for (name, _, _) in table {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    for name in &names {
        let cell = |t: &Vec<(String, Value, Option<bool>)>| {
            t.iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, v, lower)| (v.clone(), *lower))
        };
        let mut row = format!("| {name} |");
        for table in &tables {
            row.push_str(&format!(
                " {} |",
                cell(table).map_or("–".to_owned(), |(v, _)| fmt(&v))
            ));
        }
        if let Some(p) = preau {
            let mine = cell(&tables[p]);
            for (i, table) in tables.iter().enumerate() {
                if i == p {
                    continue;
                }
                let ratio = match (&mine, cell(table)) {
                    (Some((a, Some(_))), Some((b, _))) => match (a.as_f64(), b.as_f64()) {
                        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}", a / b),
                        _ => "–".to_owned(),
                    },
                    _ => "".to_owned(),
                };
                row.push_str(&format!(" {ratio} |"));
            }
        }
        md.push_str(&format!("{row}\n"));
    }
    md.push_str(
        "\nRatios are préau's figure divided by the peer's, for figures where lower or higher \
         is better (for latency, CPU and memory, above 1 means préau costs more; for rates, \
         above 1 means préau does more). Absolute figures drift on this shared machine; \
         compare ratios from one run.\n",
    );
    for d in &docs {
        let errors = &d["result"]["common"]["errors"];
        if errors.as_object().is_some_and(|e| !e.is_empty()) {
            md.push_str(&format!(
                "\nErrors seen by the generator against {}: `{errors}`\n",
                d["label"].as_str().unwrap_or("?")
            ));
        }
    }
    let to = args
        .to
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("benches/results/{scenario}.md")));
    std::fs::write(&to, md).with_context(|| format!("cannot write {}", to.display()))?;
    eprintln!("wrote {}", to.display());
    Ok(())
}

/// The server processes a result measured: every node of a cluster, then
/// its Redis.
fn measured_processes(doc: &Value) -> Vec<&Value> {
    let mut processes: Vec<&Value> = match doc["servers"].as_array() {
        Some(all) if !all.is_empty() => all.iter().collect(),
        _ => vec![&doc["server"]],
    };
    if !doc["redis"].is_null() {
        processes.push(&doc["redis"]);
    }
    processes
}

/// A figure `compare` puts side by side: `(scenario, figure, JSON pointer
/// into a result, peers, in the verdict)`. A figure out of the verdict is
/// shown with its drift for information: the window p99s, which move with
/// the number of stalls that fall in a short window (see [`steady_p99_ms`]);
/// the steady p99s stand for latency in the verdict. All are "lower is
/// better".
type ComparedFigure = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    bool,
);

const COMPARED: &[ComparedFigure] = &[
    (
        "idle",
        "server RSS per idle connection (KiB)",
        "/result/server_rss_kib_per_connection",
        &["bare", "socketio"],
        true,
    ),
    (
        "revision",
        "server CPU per delivery (µs)",
        "/result/steps/0/server_cpu_us_per_delivery",
        &["bare", "socketio"],
        true,
    ),
    (
        "revision",
        "delivery latency, steady p99 (ms)",
        "/result/steps/0/latency/steady_p99_ms",
        &["bare", "socketio"],
        true,
    ),
    (
        "revision",
        "delivery latency p99 over each window (ms)",
        "/result/steps/0/latency/p99_ms",
        &["bare", "socketio"],
        false,
    ),
    (
        "revision",
        "server RSS under load (MiB)",
        "/result/steps/0/server_rss_mib",
        &["bare", "socketio"],
        true,
    ),
    // préau's data on tmpfs ÷ on the VM's disk, in the same round: what
    // durable writes cost on this disk, that minute (out of the verdict:
    // it measures the disk's other tenants as much as préau).
    (
        "revision",
        "durability: server CPU per delivery, préau on tmpfs vs on disk (µs)",
        "/result/steps/0/server_cpu_us_per_delivery",
        &["preau-disk"],
        false,
    ),
    (
        "revision",
        "durability: steady p99, préau on tmpfs vs on disk (ms)",
        "/result/steps/0/latency/steady_p99_ms",
        &["preau-disk"],
        false,
    ),
    (
        "notes",
        "server CPU per delivered message, updates + awareness (µs)",
        "/result/steps/0/server_cpu_us_per_delivery",
        &["hocuspocus"],
        true,
    ),
    (
        "notes",
        "propagation to all editors, steady p99 (ms)",
        "/result/steps/0/propagation_to_all_others/steady_p99_ms",
        &["hocuspocus"],
        true,
    ),
    (
        "notes",
        "propagation to all editors p99 over each window (ms)",
        "/result/steps/0/propagation_to_all_others/p99_ms",
        &["hocuspocus"],
        false,
    ),
    (
        "notes",
        "server RSS (MiB)",
        "/result/steps/0/server_rss_mib",
        &["hocuspocus"],
        true,
    ),
    (
        "cluster",
        "CPU per delivery, 2 nodes + Redis (µs)",
        "/result/steps/0/server_and_redis_cpu_us_per_delivery",
        &["socketio"],
        true,
    ),
    (
        "cluster",
        "cross-node latency, steady p99 (ms)",
        "/result/steps/0/latency_cross_node/steady_p99_ms",
        &["socketio"],
        true,
    ),
    (
        "cluster",
        "cross-node latency p99 over each window (ms)",
        "/result/steps/0/latency_cross_node/p99_ms",
        &["socketio"],
        false,
    ),
    (
        "cluster",
        "server RSS, both nodes (MiB)",
        "/result/steps/0/server_rss_mib",
        &["socketio"],
        true,
    ),
];

/// A ratio that moved more than this between runs is flagged (the issue's
/// ±15%).
const DRIFT_LIMIT: f64 = 0.15;

/// A run whose generator waited for its core more than this share of the
/// measured time is flagged as noisy (quiet runs: about 1%).
const NOISY_WAIT: f64 = 0.10;

/// The runs `run.sh` labels, in the order reports show them: the target's
/// name, or `preau-disk` for préau with its data folder on the disk where
/// `preau` has it on tmpfs (`run.sh compare`).
const LABELS: [&str; 5] = ["preau", "preau-disk", "bare", "socketio", "hocuspocus"];

/// One round's results, by (scenario, label).
type RoundDocs = HashMap<(String, String), Value>;

/// One repeat of `run.sh compare`: its number and its rounds (`raw/` of the
/// run folder, then each `round<K>/raw/`).
struct RunRounds {
    n: u32,
    rounds: Vec<RoundDocs>,
}

impl RunRounds {
    /// The docs of `scenario` for `target`, one per round that has it.
    fn docs<'a>(&'a self, scenario: &'a str, target: &'a str) -> impl Iterator<Item = &'a Value> {
        let key = (scenario.to_owned(), target.to_owned());
        self.rounds.iter().filter_map(move |round| round.get(&key))
    }

    fn has(&self, scenario: &str, target: &str) -> bool {
        self.docs(scenario, target).next().is_some()
    }

    /// The median over rounds of `pointer` for `target`.
    fn median(&self, scenario: &str, target: &str, pointer: &str) -> Option<f64> {
        median(
            self.docs(scenario, target)
                .filter_map(|d| d.pointer(pointer).and_then(Value::as_f64))
                .collect(),
        )
    }

    /// The median over rounds of préau's figure ÷ the peer's figure in the
    /// same round (rounds where either is missing are skipped).
    fn ratio(&self, scenario: &str, peer: &str, pointer: &str) -> Option<f64> {
        let key = |target: &str| (scenario.to_owned(), target.to_owned());
        let ratios = self
            .rounds
            .iter()
            .filter_map(|round| {
                let a = round.get(&key("preau"))?.pointer(pointer)?.as_f64()?;
                let b = round.get(&key(peer))?.pointer(pointer)?.as_f64()?;
                (b > 0.0).then(|| a / b)
            })
            .collect();
        median(ratios)
    }

    /// Rounds in which both préau and `peer` ran `scenario`.
    fn paired_rounds(&self, scenario: &str, peer: &str) -> usize {
        let key = |target: &str| (scenario.to_owned(), target.to_owned());
        self.rounds
            .iter()
            .filter(|round| round.contains_key(&key("preau")) && round.contains_key(&key(peer)))
            .count()
    }
}

/// The median (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// Every `*.json` result in `raw`, by (scenario, target); None when the
/// folder does not exist.
fn read_round(raw: &Path) -> anyhow::Result<Option<RoundDocs>> {
    let Ok(files) = std::fs::read_dir(raw) else {
        return Ok(None);
    };
    let mut docs = HashMap::new();
    for file in files {
        let file = file?.path();
        if file.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)
            .with_context(|| format!("cannot parse {}", file.display()))?;
        let key = (
            doc["scenario"].as_str().unwrap_or("?").to_owned(),
            doc["label"]
                .as_str()
                .or(doc["target"].as_str())
                .unwrap_or("?")
                .to_owned(),
        );
        docs.insert(key, doc);
    }
    Ok(Some(docs))
}

/// `compare`: reads `<out>/run<N>/raw/*.json` and `<out>/run<N>/round<K>/raw/*.json`
/// (one folder per repeat and per round, as `run.sh compare` writes them)
/// and writes one table of préau/peer ratios per run (each the median over
/// the run's rounds of the same-round ratio), the drift of each ratio
/// between runs, each run's generator run-queue wait and stalls.
fn compare(args: &Args) -> anyhow::Result<()> {
    let numbered = |path: &Path, prefix: &str| -> Option<u32> {
        path.file_name()?
            .to_str()?
            .strip_prefix(prefix)?
            .parse::<u32>()
            .ok()
    };
    let mut runs: Vec<RunRounds> = Vec::new();
    for entry in std::fs::read_dir(&args.out)
        .with_context(|| format!("cannot read {}", args.out.display()))?
    {
        let path = entry?.path();
        let Some(n) = numbered(&path, "run") else {
            continue;
        };
        let mut rounds = Vec::new();
        if let Some(docs) = read_round(&path.join("raw"))? {
            rounds.push((0, docs));
        }
        for sub in std::fs::read_dir(&path)? {
            let sub = sub?.path();
            if let Some(k) = numbered(&sub, "round") {
                if let Some(docs) = read_round(&sub.join("raw"))? {
                    rounds.push((k, docs));
                }
            }
        }
        rounds.sort_by_key(|(k, _)| *k);
        runs.push(RunRounds {
            n,
            rounds: rounds.into_iter().map(|(_, docs)| docs).collect(),
        });
    }
    if runs.iter().all(|run| run.rounds.is_empty()) {
        bail!(
            "no run*/raw/*.json nor run*/round*/raw/*.json under {}",
            args.out.display()
        );
    }
    runs.sort_by_key(|run| run.n);
    let mut md = String::from("# préau against its peers: one-command comparison\n\n");
    // Machine and pinning, from the results themselves.
    let all_docs = || {
        runs.iter()
            .flat_map(|run| run.rounds.iter())
            .flat_map(|round| round.values())
    };
    if let Some(d) = all_docs().next() {
        md.push_str(&format!(
            "Machine: {} · {} cores online · {} GiB · Linux {}.\n\n",
            d["machine"]["cpu"].as_str().unwrap_or("?"),
            d["machine"]["cores_online"],
            d["machine"]["memory_gib"],
            d["machine"]["kernel"].as_str().unwrap_or("?"),
        ));
    }
    let mut server_cpus: Vec<String> = Vec::new();
    let mut generator_cpus: Vec<String> = Vec::new();
    for doc in all_docs() {
        for p in measured_processes(doc) {
            let cpus = p["cpus_allowed"].as_str().unwrap_or("?").to_owned();
            if !server_cpus.contains(&cpus) {
                server_cpus.push(cpus);
            }
        }
        let cpus = doc["generator"]["cpus_allowed"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        if !generator_cpus.contains(&cpus) {
            generator_cpus.push(cpus);
        }
    }
    let mut slot_ms: BTreeMap<String, u64> = BTreeMap::new();
    for d in all_docs() {
        if let (Some(scenario), Some(ms)) =
            (d["scenario"].as_str(), d["parameters"]["slot_ms"].as_u64())
        {
            slot_ms.insert(scenario.to_owned(), ms);
        }
    }
    let turns = if slot_ms.is_empty() {
        "One server at a time.".to_owned()
    } else {
        format!(
            "In each round of {}, every target of the scenario is up at once, each with its \
             own generator, and the targets take turns ({}) through one window \
             (`--interleave`), in reverse order every other round: one target is loaded at a \
             time, and every target meets the same minutes of this shared machine. A \
             target's figures are over its own turns (CPU read until {} s after each turn \
             ends; latencies filed by send time). Other scenarios: one server at a time.",
            slot_ms
                .keys()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", "),
            slot_ms
                .iter()
                .map(|(s, ms)| format!("{} s in `{s}`", *ms as f64 / 1000.0))
                .collect::<Vec<_>>()
                .join(", "),
            SLOT_DRAIN_NS as f64 / 1e9
        )
    };
    md.push_str(&format!(
        "Pinning (read back from `/proc/<pid>/status` `Cpus_allowed_list` of every process \
         measured): server processes (every node, and Redis in `cluster`) on CPU {}, \
         load generator on CPU {}, set with `taskset -c` by `benches/run.sh`. {turns}\n\n",
        server_cpus.join(", "),
        generator_cpus.join(", ")
    ));
    let mut header =
        String::from("| scenario | figure | préau (run 1) | peer (run 1) | peer | rounds |");
    let mut rule = String::from("|---|---|---:|---:|---|---:|");
    for run in &runs {
        header.push_str(&format!(" préau/peer run {} |", run.n));
        rule.push_str("---:|");
    }
    if runs.len() > 1 {
        header.push_str(" drift |");
        rule.push_str("---:|");
    }
    md.push_str(&format!("{header}\n{rule}\n"));
    let (mut compared, mut drifted, mut missing) = (0, Vec::new(), 0);
    let mut informational = Vec::new();
    for (scenario, figure, pointer, peers, in_verdict) in COMPARED {
        for peer in *peers {
            let ratios: Vec<Option<f64>> = runs
                .iter()
                .map(|run| run.ratio(scenario, peer, pointer))
                .collect();
            let cell = |v: Option<f64>| v.map_or("–".to_owned(), |x| fmt(&json!(x)));
            let rounds: Vec<String> = runs
                .iter()
                .map(|run| run.paired_rounds(scenario, peer).to_string())
                .collect();
            let info = if *in_verdict { "" } else { " *(information)*" };
            let mut row = format!(
                "| {scenario} | {figure}{info} | {} | {} | {peer} | {} |",
                cell(runs[0].median(scenario, "preau", pointer)),
                cell(runs[0].median(scenario, peer, pointer)),
                rounds.join(", "),
            );
            for r in &ratios {
                row.push_str(&format!(
                    " {} |",
                    r.map_or("–".to_owned(), |x| format!("{x:.2}"))
                ));
            }
            if runs.len() > 1 {
                // Drift: the largest move of a later run's ratio from run 1's.
                let drift = match ratios.first().copied().flatten() {
                    Some(first) if ratios.iter().all(Option::is_some) => ratios
                        .iter()
                        .flatten()
                        .map(|r| (r / first - 1.0).abs())
                        .fold(0.0, f64::max)
                        .into(),
                    _ => None,
                };
                match drift {
                    Some(d) if !*in_verdict => {
                        informational
                            .push(format!("{scenario} {figure} vs {peer}: {:.0}%", d * 100.0));
                        row.push_str(&format!(" {:.0}% |", d * 100.0));
                    }
                    None if !*in_verdict => row.push_str(" – |"),
                    Some(d) => {
                        compared += 1;
                        let flag = if d > DRIFT_LIMIT {
                            drifted.push(format!("{scenario} {figure} vs {peer}"));
                            " **⚠ >15%**"
                        } else {
                            ""
                        };
                        row.push_str(&format!(" {:.0}%{flag} |", d * 100.0));
                    }
                    None => {
                        missing += 1;
                        row.push_str(" – |");
                    }
                }
            }
            md.push_str(&format!("{row}\n"));
        }
    }
    md.push_str(
        "\nRatios: préau's figure ÷ the peer's; every figure here is lower-is-better, so \
         above 1 means préau costs more. A run's ratio is the median, over its rounds, of \
         the ratio of préau's and the peer's figures in the same round; `rounds` says how \
         many rounds paired them in each run; the figures of run 1 are medians over its \
         rounds. Drift: the largest |ratio in run k ÷ ratio in run 1 − 1| over the runs.\n\n\
         Latency: a *steady p99* is the median, over the seconds of a window, of each \
         second's p99 (seconds with fewer than 20 samples left out); it is the tail a user \
         meets in an ordinary second, and the verdict holds it. The p99 over each whole \
         window is shown for information and left out of the verdict: in a 15 to 30 s \
         window it is set by whether one stall (a pause of tens of ms: Socket.IO's garbage \
         collector, préau's slow disk flushes) falls in it, so it can move by a fifth to \
         a half between runs (it did at 18,000 deliveries/s); the stalls are counted on \
         their own below.\n",
    );
    let data_folder = |label: &str| {
        runs.iter()
            .flat_map(|run| run.rounds.iter())
            .flat_map(|round| round.values())
            .filter(|d| d["label"] == label && d["scenario"] != "idle")
            .find_map(|d| {
                let cmdline = d["server"]["cmdline"].as_str()?;
                let (_, rest) = cmdline.split_once("--data ")?;
                rest.split_whitespace().next().map(str::to_owned)
            })
    };
    if let (Some(tmpfs), Some(disk)) = (data_folder("preau"), data_folder("preau-disk")) {
        md.push_str(&format!(
            "\npréau's data: the peers keep nothing, and préau flushes every event to its \
             sled folder before delivering it. In the runs labelled `preau`, that folder is \
             on tmpfs (`{tmpfs}`), so the ratios compare the servers' own work; `preau-disk` \
             is the same préau with its folder on this VM's disk (`{disk}`), run in the same \
             rounds of `revision`, and its rows (préau on tmpfs ÷ préau on disk, out of the \
             verdict) show what durable writes cost on this disk. That disk is shared: how \
             long a flush takes depends on the other tenants' writes that minute, which is \
             why the verdict leaves it out.\n"
        ));
    }
    let verdict = if runs.len() < 2 {
        "one run only: no drift measured (use --repeat 2)".to_owned()
    } else if drifted.is_empty() && missing == 0 {
        format!(
            "PASS: all {compared} ratios within ±15% across {} runs",
            runs.len()
        )
    } else {
        format!(
            "FAIL: {} of {} ratios moved more than 15% across {} runs{}{}",
            drifted.len(),
            compared + missing,
            runs.len(),
            if drifted.is_empty() {
                String::new()
            } else {
                format!(" ({})", drifted.join("; "))
            },
            if missing > 0 {
                format!(", {missing} missing in a run")
            } else {
                String::new()
            }
        )
    };
    md.push_str(&format!("\n**Verdict: {verdict}.**\n"));
    if !informational.is_empty() {
        md.push_str(&format!(
            "\nOut of the verdict, drift of the figures shown for information: {}.\n",
            informational.join("; ")
        ));
    }
    md.push_str(&noise_table(&runs));
    md.push_str(&stall_table(&runs));
    // Loss checks: every scenario must deliver everything, whatever the speed.
    let mut lost = Vec::new();
    for run in &runs {
        for (k, round) in run.rounds.iter().enumerate() {
            for ((scenario, target), d) in round {
                let c = &d["result"]["common"];
                let bad = ["gaps", "duplicates", "dropped_connections"]
                    .iter()
                    .any(|key| c[key].as_u64().unwrap_or(0) > 0)
                    || d["result"]["deliveries"] != d["result"]["deliveries_expected_from_acks"]
                    || d["result"]["updates_not_received_by_every_other_editor"]
                        .as_u64()
                        .unwrap_or(0)
                        > 0;
                if bad {
                    lost.push(format!("run {} folder {k} {scenario} {target}", run.n));
                }
            }
        }
    }
    lost.sort();
    md.push_str(&if lost.is_empty() {
        "\nNo gap, duplicate, dropped connection or missing delivery in any run or round.\n"
            .to_owned()
    } else {
        format!("\nLoss or disorder seen in: {}.\n", lost.join(", "))
    });
    let to = args
        .to
        .clone()
        .unwrap_or_else(|| PathBuf::from("benches/results/comparison.md"));
    std::fs::write(&to, md).with_context(|| format!("cannot write {}", to.display()))?;
    println!("{verdict}");
    eprintln!("wrote {}", to.display());
    Ok(())
}

/// `compare`: the generator's run-queue wait per run, scenario and target,
/// summed over the rounds.
fn noise_table(runs: &[RunRounds]) -> String {
    let mut md = String::from(
        "\n## Generator run-queue wait (noise)\n\nTime the load generator's threads were \
         runnable but waiting for their core (`/proc/<pid>/task/*/schedstat`), in ms, over \
         the measured windows of all rounds (idle: over the whole run), with the windows' \
         total length. Above 10% of the windows (**noisy**), other work shared the \
         generator's core and latencies from that run mean little.\n\n",
    );
    md.push_str(&per_run_header(runs, "---:"));
    let mut noisy = Vec::new();
    for scenario in ["idle", "revision", "notes", "cluster"] {
        for target in LABELS {
            if !runs.iter().any(|run| run.has(scenario, target)) {
                continue;
            }
            let (wait_ptr, secs_ptr) = if scenario == "idle" {
                (
                    "/result/generator_runqueue_wait_ms",
                    "/result/generator_runqueue_wait_over_seconds",
                )
            } else {
                (
                    "/result/steps/0/generator_runqueue_wait_ms",
                    "/result/steps/0/seconds",
                )
            };
            let mut row = format!("| {scenario} | {target} |");
            for run in runs {
                let (mut wait, mut secs) = (0.0, 0.0);
                for doc in run.docs(scenario, target) {
                    if let (Some(w), Some(s)) = (
                        doc.pointer(wait_ptr).and_then(Value::as_f64),
                        doc.pointer(secs_ptr).and_then(Value::as_f64),
                    ) {
                        wait += w;
                        secs += s;
                    }
                }
                if secs > 0.0 {
                    let flag = if wait / (secs * 1000.0) > NOISY_WAIT {
                        noisy.push(format!("run {} {scenario} {target}", run.n));
                        " **noisy**"
                    } else {
                        ""
                    };
                    row.push_str(&format!(" {wait:.0} ms / {secs:.1} s{flag} |"));
                } else {
                    row.push_str(" – |");
                }
            }
            md.push_str(&format!("{row}\n"));
        }
    }
    if !noisy.is_empty() {
        md.push_str(&format!("\nNoisy: {}.\n", noisy.join(", ")));
    }
    md
}

/// A second of the window whose slowest delivery took longer than this is
/// a stall: every delivery in it waited on one pause (GC, a descheduled
/// thread, a slow flush), not on steady load.
const STALL_MS: f64 = 50.0;

/// `compare`: per scenario, target and run, over all rounds, the seconds
/// of the measured windows that held a stall, the worst one, and the
/// median of the per-second p99s (the steady tail, which stalls do not
/// move).
fn stall_table(runs: &[RunRounds]) -> String {
    let mut md = format!(
        "\n## Stalls and steady tail\n\nPer second of the measured windows (by receive \
         time, all rounds): seconds whose slowest delivery took over {STALL_MS:.0} ms / \
         seconds in all / the worst such delivery (ms) / the steady p99 over all rounds \
         (ms: the median of the seconds' p99s). A p99 over one window moves with the number of stalls that happen to fall \
         in it; the median of the per-second p99s does not.\n\n"
    );
    md.push_str(&per_run_header(runs, "---"));
    for scenario in ["revision", "notes", "cluster"] {
        for target in LABELS {
            if !runs.iter().any(|run| run.has(scenario, target)) {
                continue;
            }
            let mut row = format!("| {scenario} | {target} |");
            for run in runs {
                // (samples, p99, max) per second.
                let seconds: Vec<(u64, f64, f64)> = run
                    .docs(scenario, target)
                    .filter_map(|d| d.pointer("/result/steps/0/timeline")?.as_array())
                    .flatten()
                    .filter_map(|s| {
                        Some((
                            s.get(0)?.as_u64()?,
                            s.get(1)?.as_f64()?,
                            s.get(2)?.as_f64()?,
                        ))
                    })
                    .collect();
                let p99s: Vec<(u64, f64)> = seconds.iter().map(|(n, p99, _)| (*n, *p99)).collect();
                let Some(steady) = steady_p99_ms(&p99s) else {
                    row.push_str(" – |");
                    continue;
                };
                let stalls: Vec<f64> = seconds
                    .iter()
                    .map(|(_, _, max)| *max)
                    .filter(|max| *max > STALL_MS)
                    .collect();
                let worst = if stalls.is_empty() {
                    "–".to_owned()
                } else {
                    format!("{:.0}", stalls.iter().copied().fold(0.0, f64::max))
                };
                row.push_str(&format!(
                    " {} / {} / {worst} / {steady:.1} |",
                    stalls.len(),
                    seconds.len()
                ));
            }
            md.push_str(&format!("{row}\n"));
        }
    }
    md
}

/// The header of a table with one column per run (`rule`: each run
/// column's alignment, `---` or `---:`).
fn per_run_header(runs: &[RunRounds], rule: &str) -> String {
    let mut header = String::from("| scenario | target |");
    let mut rules = String::from("|---|---|");
    for run in runs {
        header.push_str(&format!(" run {} |", run.n));
        rules.push_str(&format!("{rule}|"));
    }
    format!("{header}\n{rules}\n")
}

fn write_outputs(out: &Path, doc: &Value) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let stem = format!(
        "{}-{}",
        doc["scenario"].as_str().unwrap_or("run"),
        doc["label"].as_str().unwrap_or("run")
    );
    let json_path = out.join(format!("{stem}.json"));
    let md_path = out.join(format!("{stem}.md"));
    std::fs::write(&json_path, serde_json::to_string_pretty(doc)?)?;
    std::fs::write(&md_path, summary_md(doc))?;
    Ok((json_path, md_path))
}

// ---------------------------------------------------------------- main

fn main() -> anyhow::Result<()> {
    ORIGIN.get_or_init(Instant::now);
    let args = Args::parse();
    if args.scenario == "report" {
        return report(&args);
    }
    if args.scenario == "compare" {
        return compare(&args);
    }
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    let result = runtime.block_on(run(args));
    // Thousands of connection tasks: exit without tearing each one down.
    match result {
        Ok(()) => std::process::exit(0),
        Err(err) => {
            eprintln!("loadgen: {err:#}");
            std::process::exit(1)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let target = Target::parse(&args.target)?;
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| target.default_url().to_owned());
    let keyring = match target {
        Target::Preau => {
            let secret = std::env::var("PREAU_SECRET")
                .context("set PREAU_SECRET to the server's secret (KID:SECRET)")?;
            Some(Keyring::parse(&secret)?)
        }
        _ => None,
    };
    let urls: Vec<String> = url
        .split(',')
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        bail!("--url is empty");
    }
    let server_pids: Vec<u32> = match &args.server_pid {
        Some(list) => list
            .split(',')
            .map(|p| p.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .with_context(|| format!("--server-pid {list:?}: comma-separated pids"))?,
        None => urls
            .iter()
            .filter_map(|u| port_of(u).and_then(pid_listening_on))
            .collect(),
    };
    if server_pids.is_empty() {
        eprintln!("loadgen: server process not found: CPU and memory will not be sampled");
    }
    let (rate_tx, rate_rx) = watch::channel(0.0);
    let ctx = Arc::new(Ctx {
        endpoint: Endpoint {
            target,
            urls,
            keyring,
        },
        stats: Stats::new(Schedule::from_args(&args)?),
        size: args.size,
        rate: rate_rx,
        connect_slots: Semaphore::new(args.connect_concurrency.max(1)),
        storm_slots: Semaphore::new(args.storm_concurrency.max(1)),
        storm_started_ns: AtomicU64::new(0),
    });
    let progress = Arc::new(Progress::new());
    let phase = Arc::new(Mutex::new("starting".to_owned()));
    let ticker = spawn_progress(
        ctx.clone(),
        progress.clone(),
        server_pids.clone(),
        phase.clone(),
    );
    let run_id = format!(
        "b{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() % 1_000_000_000)
            .unwrap_or(0)
    );
    let mut run = Run {
        args: args.clone(),
        target,
        ctx: ctx.clone(),
        rate_tx,
        server_pids: server_pids.clone(),
        redis_pid: args.redis_pid,
        progress: progress.clone(),
        phase,
        run_id,
        members: Vec::new(),
    };
    let started = chrono_now();
    let wall = Instant::now();
    let mut result = match args.scenario.as_str() {
        "idle" => idle(&mut run).await?,
        "revision" => revision(&mut run).await?,
        "announce" => announce(&mut run).await?,
        "reconnect-storm" => reconnect_storm(&mut run).await?,
        "cluster" => cluster(&mut run).await?,
        "notes" => notes(&mut run).await?,
        other => {
            bail!(
                "unknown scenario {other:?} \
                 (idle, revision, announce, reconnect-storm, cluster, notes, report)"
            )
        }
    };
    result["common"] = run.common();
    ticker.abort();
    progress.finish();
    let label = args
        .label
        .clone()
        .unwrap_or_else(|| target.name().to_owned());
    let doc = json!({
        "scenario": args.scenario,
        "label": label,
        "target": target.name(),
        "url": url,
        "started": started,
        "finished": chrono_now(),
        "wall_seconds": round3(wall.elapsed().as_secs_f64()),
        "parameters": {
            "connections": args.connections,
            "room_size": args.room_size,
            "rooms": args.rooms,
            "rate": args.rate,
            "sweep": args.sweep,
            "size": args.size,
            "members": args.members,
            "repeat": args.repeat,
            "warmup": args.warmup,
            "duration": args.duration,
            "connect_concurrency": args.connect_concurrency,
            "storm_concurrency": args.storm_concurrency,
            "threads": args.threads,
            "editors": args.editors,
            "typing_rate": args.typing_rate,
            "interleave": args.interleave,
            "slot_ms": args.interleave.as_ref().map(|_| args.slot_ms),
            "start_at": args.start_at,
        },
        "machine": machine(),
        "server": server_pids.first().map(|&pid| describe_process(pid)),
        "servers": server_pids.iter().map(|&pid| describe_process(pid)).collect::<Vec<_>>(),
        "redis": args.redis_pid.map(describe_process),
        "generator": describe_process(std::process::id()),
        "result": result,
    });
    let (json_path, md_path) = write_outputs(&args.out, &doc)?;
    println!("{}", summary_md(&doc));
    eprintln!("wrote {} and {}", json_path.display(), md_path.display());
    Ok(())
}

/// UTC time as `YYYY-MM-DD HH:MM:SS` (no date crate needed).
fn chrono_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
