//! préau's load generator: classroom scenarios against préau, the bare
//! tokio-tungstenite floor (`benches/peers/bare`) or a Socket.IO 4 server
//! (`benches/peers/socketio`), with the same client-side work for each.
//!
//!   cargo bench -p preau-benches --bench loadgen -- <scenario> [options]
//!   cargo bench -p preau-benches --bench loadgen -- report <scenario> --out DIR --to FILE
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

mod clock;
mod connections;
mod members;
mod notes;
mod options;
mod output;
mod procfs;
mod progress;
mod running;
mod socketio;
mod stats;

use clock::*;
use connections::*;
use members::*;
use notes::*;
use options::*;
use output::*;
use procfs::*;
use progress::*;
use running::*;
use socketio::*;
use stats::*;

fn main() -> anyhow::Result<()> {
    preau_benches::cd_to_repository_root();
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
