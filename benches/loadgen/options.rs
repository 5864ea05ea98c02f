//! The load generator's options.

use super::*;

#[derive(Parser, Debug, Clone)]
#[command(name = "loadgen", about = "préau load generator")]
pub(crate) struct Args {
    /// idle | revision | announce | reconnect-storm | cluster | notes | report | compare
    pub(crate) scenario: String,
    /// For `report`: the scenario whose results to compare.
    pub(crate) of: Option<String>,
    /// preau | bare | socketio | hocuspocus (notes only)
    #[arg(long, default_value = "preau")]
    pub(crate) target: String,
    /// WebSocket URL (default: per target, on 127.0.0.1). `cluster`: one
    /// URL per node, comma-separated; member i connects to node i mod N.
    #[arg(long)]
    pub(crate) url: Option<String>,
    /// Server processes to sample (comma-separated, one per node); default:
    /// the process listening on each URL's port. CPU and RSS are summed.
    #[arg(long)]
    pub(crate) server_pid: Option<String>,
    /// cluster: the Redis server's process, sampled on its own.
    #[arg(long)]
    pub(crate) redis_pid: Option<u32>,
    /// notes: editors in the one note.
    #[arg(long, default_value_t = 30)]
    pub(crate) editors: usize,
    /// notes: updates (one typed character each) per second per editor.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) typing_rate: f64,
    /// notes: no awareness update (cursor and name) after each typed
    /// character; by default every keystroke also moves the cursor, as in
    /// an editor bound to Yjs (y-codemirror, y-prosemirror).
    #[arg(long)]
    pub(crate) no_awareness: bool,
    /// idle: connections (rooms of --room-size).
    #[arg(long, default_value_t = 10000)]
    pub(crate) connections: usize,
    #[arg(long, default_value_t = 30)]
    pub(crate) room_size: usize,
    /// revision: number of rooms.
    #[arg(long, default_value_t = 200)]
    pub(crate) rooms: usize,
    /// revision: posts per second per member (reconnect-storm: per room).
    #[arg(long, default_value_t = 0.1)]
    pub(crate) rate: f64,
    /// revision: step the rate up by --sweep-factor until p99 >= --p99-limit-ms.
    #[arg(long)]
    pub(crate) sweep: bool,
    #[arg(long, default_value_t = 1.5)]
    pub(crate) sweep_factor: f64,
    #[arg(long, default_value_t = 8)]
    pub(crate) sweep_steps: usize,
    #[arg(long, default_value_t = 50.0)]
    pub(crate) p99_limit_ms: f64,
    /// Message text size in bytes.
    #[arg(long, default_value_t = 100)]
    pub(crate) size: usize,
    /// announce / reconnect-storm: members.
    #[arg(long, default_value_t = 5000)]
    pub(crate) members: usize,
    /// announce: messages sent (one at a time).
    #[arg(long, default_value_t = 5)]
    pub(crate) repeat: usize,
    /// Seconds of posting before each measured window.
    #[arg(long, default_value_t = 3.0)]
    pub(crate) warmup: f64,
    /// Seconds of each measured window.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// revision, cluster, notes: take turns with other generators, as
    /// `K/N`: this generator's load is on only in slots K, K+N, K+2N… of
    /// `--slot-ms` counted from `--start-at`, so N servers measured at once
    /// are loaded one after the other, a slot each, through the same window
    /// (`run.sh` with `INTERLEAVE=1`; `compare` does not use it: servers
    /// resuming after a pause are not at their steady cost, see
    /// `benches/README.md`). `--warmup` and `--duration` must then be whole
    /// cycles of N slots.
    #[arg(long)]
    pub(crate) interleave: Option<String>,
    /// With --interleave: the length of one slot, whole seconds in ms.
    #[arg(long, default_value_t = 2000)]
    pub(crate) slot_ms: u64,
    /// With --interleave: when the schedule starts (the warm-up), Unix time
    /// in ms, the same for every generator taking turns; setup must be over
    /// by then.
    #[arg(long)]
    pub(crate) start_at: Option<u64>,
    /// idle: seconds to hold the connections while sampling memory.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) hold: f64,
    /// Connection setups (connect + hello + join) in flight at once.
    #[arg(long, default_value_t = 64)]
    pub(crate) connect_concurrency: usize,
    /// reconnect-storm: reconnections in flight at once.
    #[arg(long, default_value_t = 500)]
    pub(crate) storm_concurrency: usize,
    /// Tokio worker threads of the generator (1: current-thread runtime).
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// Folder for the JSON result and the Markdown summary.
    #[arg(long, default_value = "benches/results/raw")]
    pub(crate) out: PathBuf,
    /// Name of this run in file names and reports (default: the target).
    #[arg(long)]
    pub(crate) label: Option<String>,
    /// `report`: the Markdown file to write.
    #[arg(long)]
    pub(crate) to: Option<PathBuf>,
    /// Set by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub(crate) bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Preau,
    Bare,
    SocketIo,
    Hocuspocus,
}

impl Target {
    pub(crate) fn parse(s: &str) -> anyhow::Result<Target> {
        Ok(match s {
            "preau" => Target::Preau,
            "bare" => Target::Bare,
            "socketio" => Target::SocketIo,
            "hocuspocus" => Target::Hocuspocus,
            other => bail!("unknown target {other:?} (preau, bare, socketio, hocuspocus)"),
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::Preau => "preau",
            Target::Bare => "bare",
            Target::SocketIo => "socketio",
            Target::Hocuspocus => "hocuspocus",
        }
    }

    pub(crate) fn default_url(self) -> &'static str {
        match self {
            Target::Preau => "ws://127.0.0.1:8080/ws",
            Target::Bare => "ws://127.0.0.1:9002/ws",
            Target::SocketIo => "ws://127.0.0.1:9003/socket.io/?EIO=4&transport=websocket",
            Target::Hocuspocus => "ws://127.0.0.1:9004/",
        }
    }
}
