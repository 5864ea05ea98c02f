//! Server configuration: defaults, an optional TOML file, `PREAU_*`
//! environment variables and flags, in increasing precedence; validated once
//! at start with messages that name the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting `{setting}`: {message}")]
    Invalid {
        setting: &'static str,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// How préau reads the ENT's answer (TOML table `[oidc]`; the first four
/// also as flags `--oidc-issuer`, `--oidc-client-id`,
/// `--oidc-client-secret`, `--oidc-redirect-url`).
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL (discovery at `/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    /// Unset: a public client (PKCE alone).
    pub client_secret: Option<String>,
    /// This server's `/auth/callback`, as registered at the provider.
    pub redirect_url: String,
    /// Scopes besides `openid`.
    pub scopes: Vec<String>,
    /// The userinfo claim holding the role (a string or a list).
    pub role_claim: String,
    /// Values of the role claim, lower case and without accents, mapped to
    /// préau's roles (`student`, `teacher`, `parent`, `staff`), besides the
    /// built-in names (`oidc::ROLE_NAMES`: ELEVE, ENSEIGNANT, Relative…).
    pub roles: std::collections::BTreeMap<String, String>,
    /// The claim listing the user's classes (a parent: their children's).
    pub classes_claim: String,
    /// The claim listing a parent's children's user ids.
    pub children_claim: String,
    /// How long the préau token minted at sign-in is valid.
    #[serde(with = "humantime_serde")]
    pub session: Duration,
    /// The sign-in button's text.
    pub label: String,
}

/// Where files are kept and how much (TOML table `[files]`; the S3
/// secret also as `--files-s3-secret-access-key` /
/// `PREAU_FILES_S3_SECRET_ACCESS_KEY`).
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesConfig {
    /// Largest file (bytes). Default 200 MB: a few minutes of phone video.
    pub max_file_bytes: u64,
    /// Largest image (bytes): images are held whole while their metadata
    /// is stripped. Default 25 MB.
    pub max_image_bytes: u64,
    /// What one pupil or parent may store in all (bytes). Default 1 GB.
    pub max_user_bytes: u64,
    /// What one class may store in all (bytes). Default 20 GB.
    pub max_class_bytes: u64,
    /// Largest chunk of an upload (bytes), held in memory while stored.
    /// Default 8 MiB.
    pub chunk_bytes: u64,
    /// Uploads not finished, and files not attached, are deleted after
    /// this. Default 24 h.
    #[serde(with = "humantime_serde")]
    pub upload_expiry: Duration,
    /// An S3-compatible store (Garage, MinIO, a provider's) instead of
    /// the local folder `<data>/files`.
    pub s3: Option<S3Config>,
}

impl Default for FilesConfig {
    fn default() -> FilesConfig {
        FilesConfig {
            max_file_bytes: 200_000_000,
            max_image_bytes: 25_000_000,
            max_user_bytes: 1_000_000_000,
            max_class_bytes: 20_000_000_000,
            chunk_bytes: 8 * 1024 * 1024,
            upload_expiry: Duration::from_secs(24 * 3600),
            s3: None,
        }
    }
}

impl FilesConfig {
    /// The part size of multipart writes: S3 wants at least 5 MiB.
    pub fn part_bytes(&self) -> usize {
        (self.chunk_bytes as usize).max(5 * 1024 * 1024)
    }
}

impl std::fmt::Debug for FilesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilesConfig")
            .field("max_file_bytes", &self.max_file_bytes)
            .field("max_user_bytes", &self.max_user_bytes)
            .field("max_class_bytes", &self.max_class_bytes)
            .field("s3", &self.s3.as_ref().map(|s| (&s.endpoint, &s.bucket)))
            .finish_non_exhaustive()
    }
}

/// `[files.s3]`: an S3-compatible store.
#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// `https://garage.example.org:3900`; empty: AWS itself.
    pub endpoint: String,
    pub bucket: String,
    /// Garage's default is `garage`.
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl Default for OidcConfig {
    fn default() -> OidcConfig {
        OidcConfig {
            issuer: String::new(),
            client_id: String::new(),
            client_secret: None,
            redirect_url: String::new(),
            scopes: vec!["profile".to_owned()],
            role_claim: "role".to_owned(),
            roles: std::collections::BTreeMap::new(),
            classes_claim: "classes".to_owned(),
            children_claim: "children".to_owned(),
            session: Duration::from_secs(8 * 3600),
            label: "Se connecter avec l'ENT".to_owned(),
        }
    }
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<set>"),
            )
            .field("redirect_url", &self.redirect_url)
            .finish_non_exhaustive()
    }
}

impl OidcConfig {
    /// What `Config::validate` checks: the URLs parse, the ids are there,
    /// the role names are préau's.
    pub fn check(&self) -> Result<(), String> {
        url::Url::parse(&self.issuer).map_err(|e| format!("issuer: {e}"))?;
        let redirect =
            url::Url::parse(&self.redirect_url).map_err(|e| format!("redirect_url: {e}"))?;
        if redirect.path() != "/auth/callback" {
            return Err("redirect_url must end in /auth/callback".to_owned());
        }
        if let Some((value, role)) = self
            .roles
            .iter()
            .find(|(_, r)| !["student", "teacher", "parent", "staff"].contains(&r.as_str()))
        {
            return Err(format!(
                "roles: {value:?} maps to {role:?}, not student, teacher, parent or staff"
            ));
        }
        if self.client_id.is_empty() {
            return Err("client_id is required".to_owned());
        }
        if self.session < Duration::from_secs(60) {
            return Err("session must be at least 1 minute".to_owned());
        }
        Ok(())
    }
}

/// Everything `serve` needs. Field docs are the configuration table of README.md.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data folder (sled database, generated secret).
    pub data: PathBuf,
    /// This node's name, in logs and the `hello` reply.
    pub node_id: String,
    /// Token keys `KID:SECRET[,KID:SECRET]`; unset: `<data>/secret`.
    pub secret: Option<String>,
    pub max_connections: usize,
    pub max_frame_bytes: usize,
    pub max_message_len: usize,
    pub max_rooms_per_connection: usize,
    /// Past this many users in a room, presence is not broadcast and join
    /// replies carry only `member_count`.
    pub presence_limit: usize,
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub auth_timeout: Duration,
    pub outbound_budget_bytes: usize,
    pub rate_per_sec: f64,
    pub rate_burst: u32,
    /// Other requests that read or create rooms (join, history, report,
    /// room view, moderate) per second per user, and their burst.
    pub request_rate_per_sec: f64,
    pub request_burst: u32,
    pub history_page_max: usize,
    pub recovery_max: usize,
    pub recovery_max_bytes: usize,
    /// How long events are kept; 0 keeps them forever.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    #[serde(with = "humantime_serde")]
    pub retention_check: Duration,
    pub write_queue: usize,
    /// sled's page cache in bytes: the store's memory, whatever the size of
    /// the history on disk.
    pub cache_capacity: u64,
    /// How long a post's idempotency `key` is remembered: a retry with the
    /// same key within this window gets the first post's ack.
    #[serde(with = "humantime_serde")]
    pub idempotency_window: Duration,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Cluster mode: the Redis URL. Unset: a single node, no Redis.
    pub redis: Option<String>,
    /// URL other nodes reach this one at (WebSocket); default from `listen`.
    pub advertise: Option<String>,
    /// Events kept per room in the Redis stream (gap repair window).
    pub stream_max: usize,
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// A node not heard from for this long is dead: its members leave.
    #[serde(with = "humantime_serde")]
    pub node_timeout: Duration,
    /// After Redis restarts empty, publishes wait this long for every node
    /// to re-seed the counters.
    #[serde(with = "humantime_serde")]
    pub resync_window: Duration,
    pub log_format: LogFormat,
    /// Forums: how long after posting an author may edit (moderators: always).
    #[serde(with = "humantime_serde")]
    pub edit_window: Duration,
    /// Notes: the largest Yjs update accepted, in bytes.
    pub note_max_update_bytes: usize,
    /// Notes: the largest document (its encoded state), in bytes.
    pub note_max_bytes: usize,
    /// Notes: fold the updates into a snapshot after this many.
    pub note_compact_every: u64,
    /// The school's time zone (IANA name): the days of all-day agenda
    /// items in calendar feeds.
    pub timezone: String,
    /// Diary: teachers see who marked an item done, not only how many
    /// (a school's choice; off by default: a pupil's mark is theirs and
    /// their parents').
    pub homework_done_names: bool,
    /// Quiet hours (the right to disconnect) of users who set none, by
    /// role: `HH:MM-HH:MM` then the days off (`20:00-07:00 sun`), or
    /// `off`. Nothing is pushed to a user during them; it waits in their
    /// feed.
    pub quiet_hours_teacher: String,
    pub quiet_hours_student: String,
    pub quiet_hours_parent: String,
    pub quiet_hours_staff: String,
    /// Messages: pupils may write to pupils of their classes (off by
    /// default).
    pub dm_pupil_to_pupil: bool,
    /// Messages: a pupil's messages to one teacher, per hour and per day
    /// (a conversation with a teacher in it counts for that teacher).
    pub dm_pupil_per_hour: u32,
    pub dm_pupil_per_day: u32,
    /// Static files (the web app and teacher console) served at `/`.
    pub web_dir: Option<PathBuf>,
    /// Demo mode: `GET /dev/token` mints tokens for anyone. Never in production.
    pub demo: bool,
    /// Key of the `/admin/` HTTP endpoints (a user's data export and
    /// erasure), sent as `Authorization: Bearer KEY`; at least 32 bytes.
    /// Unset: those endpoints answer 404.
    pub admin_key: Option<String>,
    // Connections and listeners (gateway, listener, admission).
    /// Connections without a session (HTTP, WebSockets before `hello`);
    /// when full, a newcomer evicts the oldest of the busiest address.
    pub max_unauthenticated: usize,
    /// Of those, per client address (IPv6: per /64).
    pub max_unauthenticated_per_address: usize,
    /// Close an HTTP connection that sends no complete request head this
    /// long after connecting or after its previous response.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Origins allowed to open WebSockets besides the server's own; `*`: any.
    pub allowed_origins: Vec<String>,
    /// Where `/metrics` is served; unset: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Sign-in through the ENT (OpenID Connect); unset: tokens only.
    pub oidc: Option<OidcConfig>,
    /// Files (hand-ins, resources, blogs): where and how much.
    pub files: FilesConfig,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data", &self.data)
            .field("node_id", &self.node_id)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("admin_key", &self.admin_key.as_ref().map(|_| "<set>"))
            .field("max_connections", &self.max_connections)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("max_message_len", &self.max_message_len)
            .field("outbound_budget_bytes", &self.outbound_budget_bytes)
            .field("rate_per_sec", &self.rate_per_sec)
            .field("rate_burst", &self.rate_burst)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data: PathBuf::from("./data"),
            node_id: DEFAULT_NODE_ID.to_owned(),
            secret: None,
            max_connections: 10_000,
            max_frame_bytes: 64 * 1024,
            max_message_len: 4_000,
            max_rooms_per_connection: 32,
            presence_limit: 500,
            ping_interval: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(60),
            auth_timeout: Duration::from_secs(10),
            outbound_budget_bytes: 1024 * 1024,
            rate_per_sec: 2.0,
            rate_burst: 10,
            request_rate_per_sec: 20.0,
            request_burst: 200,
            history_page_max: 200,
            recovery_max: 1_000,
            recovery_max_bytes: 1024 * 1024,
            retention: Duration::from_secs(365 * 24 * 3600),
            retention_check: Duration::from_secs(3600),
            write_queue: 65_536,
            cache_capacity: 64 << 20,
            idempotency_window: Duration::from_secs(3600),
            shutdown_grace: Duration::from_secs(5),
            redis: None,
            advertise: None,
            stream_max: 10_000,
            heartbeat: Duration::from_secs(1),
            node_timeout: Duration::from_secs(3),
            resync_window: Duration::from_secs(2),
            edit_window: Duration::from_secs(15 * 60),
            note_max_update_bytes: 61_440,
            note_max_bytes: 4 << 20,
            note_compact_every: 500,
            timezone: "Europe/Paris".to_owned(),
            homework_done_names: false,
            quiet_hours_teacher: "20:00-07:00 sun".to_owned(),
            quiet_hours_student: "20:00-07:00 sun".to_owned(),
            quiet_hours_parent: "off".to_owned(),
            quiet_hours_staff: "off".to_owned(),
            dm_pupil_to_pupil: false,
            dm_pupil_per_hour: 5,
            dm_pupil_per_day: 20,
            web_dir: None,
            demo: false,
            admin_key: None,
            log_format: LogFormat::Text,
            max_unauthenticated: 1_024,
            max_unauthenticated_per_address: 512,
            header_timeout: Duration::from_secs(10),
            allowed_origins: Vec::new(),
            metrics_listen: None,
            oidc: None,
            files: FilesConfig::default(),
        }
    }
}

fn duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

/// Flags and `PREAU_*` variables of `serve`; each overrides the file.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, env = "PREAU_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "PREAU_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[arg(long, env = "PREAU_DATA")]
    pub data: Option<PathBuf>,
    #[arg(long, env = "PREAU_NODE_ID")]
    pub node_id: Option<String>,
    #[arg(long, env = "PREAU_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// Key of the `/admin/` endpoints (export and erasure of a user's data).
    #[arg(long, env = "PREAU_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    #[arg(long, env = "PREAU_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    #[arg(long, env = "PREAU_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    #[arg(long, env = "PREAU_MAX_MESSAGE_LEN")]
    pub max_message_len: Option<usize>,
    #[arg(long, env = "PREAU_MAX_ROOMS_PER_CONNECTION")]
    pub max_rooms_per_connection: Option<usize>,
    #[arg(long, env = "PREAU_PRESENCE_LIMIT")]
    pub presence_limit: Option<usize>,
    #[arg(long, env = "PREAU_PING_INTERVAL", value_parser = duration)]
    pub ping_interval: Option<Duration>,
    #[arg(long, env = "PREAU_IDLE_TIMEOUT", value_parser = duration)]
    pub idle_timeout: Option<Duration>,
    #[arg(long, env = "PREAU_AUTH_TIMEOUT", value_parser = duration)]
    pub auth_timeout: Option<Duration>,
    #[arg(long, env = "PREAU_OUTBOUND_BUDGET_BYTES")]
    pub outbound_budget_bytes: Option<usize>,
    #[arg(long, env = "PREAU_RATE_PER_SEC")]
    pub rate_per_sec: Option<f64>,
    #[arg(long, env = "PREAU_RATE_BURST")]
    pub rate_burst: Option<u32>,
    #[arg(long, env = "PREAU_REQUEST_RATE_PER_SEC")]
    pub request_rate_per_sec: Option<f64>,
    #[arg(long, env = "PREAU_REQUEST_BURST")]
    pub request_burst: Option<u32>,
    #[arg(long, env = "PREAU_HISTORY_PAGE_MAX")]
    pub history_page_max: Option<usize>,
    #[arg(long, env = "PREAU_RECOVERY_MAX")]
    pub recovery_max: Option<usize>,
    #[arg(long, env = "PREAU_RECOVERY_MAX_BYTES")]
    pub recovery_max_bytes: Option<usize>,
    #[arg(long, env = "PREAU_RETENTION", value_parser = duration)]
    pub retention: Option<Duration>,
    #[arg(long, env = "PREAU_RETENTION_CHECK", value_parser = duration)]
    pub retention_check: Option<Duration>,
    #[arg(long, env = "PREAU_WRITE_QUEUE")]
    pub write_queue: Option<usize>,
    #[arg(long, env = "PREAU_CACHE_CAPACITY")]
    pub cache_capacity: Option<u64>,
    #[arg(long, env = "PREAU_IDEMPOTENCY_WINDOW", value_parser = duration)]
    pub idempotency_window: Option<Duration>,
    #[arg(long, env = "PREAU_SHUTDOWN_GRACE", value_parser = duration)]
    pub shutdown_grace: Option<Duration>,
    #[arg(long, env = "PREAU_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    #[arg(long, env = "PREAU_REDIS")]
    pub redis: Option<String>,
    #[arg(long, env = "PREAU_ADVERTISE")]
    pub advertise: Option<String>,
    #[arg(long, env = "PREAU_STREAM_MAX")]
    pub stream_max: Option<usize>,
    #[arg(long, env = "PREAU_HEARTBEAT", value_parser = duration)]
    pub heartbeat: Option<Duration>,
    #[arg(long, env = "PREAU_NODE_TIMEOUT", value_parser = duration)]
    pub node_timeout: Option<Duration>,
    #[arg(long, env = "PREAU_RESYNC_WINDOW", value_parser = duration)]
    pub resync_window: Option<Duration>,
    #[arg(long, env = "PREAU_EDIT_WINDOW", value_parser = duration)]
    pub edit_window: Option<Duration>,
    #[arg(long, env = "PREAU_NOTE_MAX_UPDATE_BYTES")]
    pub note_max_update_bytes: Option<usize>,
    #[arg(long, env = "PREAU_NOTE_MAX_BYTES")]
    pub note_max_bytes: Option<usize>,
    #[arg(long, env = "PREAU_NOTE_COMPACT_EVERY")]
    pub note_compact_every: Option<u64>,
    /// The school's time zone (IANA name, e.g. Europe/Paris, America/Cayenne).
    #[arg(long, env = "PREAU_TIMEZONE")]
    pub timezone: Option<String>,
    /// Diary: teachers see who marked homework done, not only how many.
    #[arg(long, env = "PREAU_HOMEWORK_DONE_NAMES")]
    pub homework_done_names: bool,
    /// Teachers' quiet hours unless they set theirs (`20:00-07:00 sun`, `off`).
    #[arg(long, env = "PREAU_QUIET_HOURS_TEACHER")]
    pub quiet_hours_teacher: Option<String>,
    /// Pupils' quiet hours unless they set theirs.
    #[arg(long, env = "PREAU_QUIET_HOURS_STUDENT")]
    pub quiet_hours_student: Option<String>,
    /// Parents' quiet hours unless they set theirs.
    #[arg(long, env = "PREAU_QUIET_HOURS_PARENT")]
    pub quiet_hours_parent: Option<String>,
    /// Staff's quiet hours unless they set theirs.
    #[arg(long, env = "PREAU_QUIET_HOURS_STAFF")]
    pub quiet_hours_staff: Option<String>,
    /// Messages: pupils may write to pupils of their classes.
    #[arg(long, env = "PREAU_DM_PUPIL_TO_PUPIL")]
    pub dm_pupil_to_pupil: bool,
    /// Messages: a pupil's messages to one teacher per hour.
    #[arg(long, env = "PREAU_DM_PUPIL_PER_HOUR")]
    pub dm_pupil_per_hour: Option<u32>,
    /// Messages: a pupil's messages to one teacher per day.
    #[arg(long, env = "PREAU_DM_PUPIL_PER_DAY")]
    pub dm_pupil_per_day: Option<u32>,
    /// Serve the web app and console from this folder (e.g. clients/dist).
    #[arg(long, env = "PREAU_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    /// Demo mode: `GET /dev/token` mints tokens for anyone.
    #[arg(long, env = "PREAU_DEMO")]
    pub demo: bool,
    #[arg(long, env = "PREAU_MAX_UNAUTHENTICATED")]
    pub max_unauthenticated: Option<usize>,
    #[arg(long, env = "PREAU_MAX_UNAUTHENTICATED_PER_ADDRESS")]
    pub max_unauthenticated_per_address: Option<usize>,
    #[arg(long, env = "PREAU_HEADER_TIMEOUT", value_parser = duration)]
    pub header_timeout: Option<Duration>,
    /// Origins allowed to open WebSockets besides the server's own
    /// (comma-separated, e.g. https://ent.example; `*` for any).
    #[arg(long, env = "PREAU_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// Serve Prometheus `/metrics` on this address (e.g. 127.0.0.1:9464).
    #[arg(long, env = "PREAU_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Sign-in through the ENT: the OpenID provider's issuer URL (the
    /// other `[oidc]` settings from the config file).
    #[arg(long, env = "PREAU_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    #[arg(long, env = "PREAU_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// Unset: a public client (PKCE alone).
    #[arg(long, env = "PREAU_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,
    /// This server's `/auth/callback` as the provider knows it.
    #[arg(long, env = "PREAU_OIDC_REDIRECT_URL")]
    pub oidc_redirect_url: Option<String>,
    /// Largest file in bytes (`[files] max_file_bytes`).
    #[arg(long, env = "PREAU_FILES_MAX_FILE_BYTES")]
    pub files_max_file_bytes: Option<u64>,
    /// What one pupil or parent may store, bytes (`[files] max_user_bytes`).
    #[arg(long, env = "PREAU_FILES_MAX_USER_BYTES")]
    pub files_max_user_bytes: Option<u64>,
    /// What one class may store, bytes (`[files] max_class_bytes`).
    #[arg(long, env = "PREAU_FILES_MAX_CLASS_BYTES")]
    pub files_max_class_bytes: Option<u64>,
    /// Largest upload chunk, bytes (`[files] chunk_bytes`).
    #[arg(long, env = "PREAU_FILES_CHUNK_BYTES")]
    pub files_chunk_bytes: Option<u64>,
    /// The secret of `[files.s3]`, kept out of the config file.
    #[arg(long, env = "PREAU_FILES_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub files_s3_secret_access_key: Option<String>,
}

/// Bounds of `rate_per_sec` and `request_rate_per_sec`: below, a refill
/// takes longer than any timer holds; above, it is no limit at all.
const MIN_RATE: f64 = 0.001;
const MAX_RATE: f64 = 1_000_000.0;

/// The node id of a single node; cluster nodes left on it get a random one.
const DEFAULT_NODE_ID: &str = "local";

impl Config {
    /// Defaults, then the file named by `args.config`, then `args`; validated.
    pub fn load(args: ConfigArgs) -> Result<Config, ConfigError> {
        let mut config = match &args.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        args.apply(&mut config);
        // Nodes of one cluster tell their events and acks apart by node
        // id: two nodes left on the default would take each other's acks.
        if config.redis.is_some() && config.node_id == DEFAULT_NODE_ID {
            config.node_id = format!("node-{}", crate::ids::new_epoch());
        }
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        fn check(ok: bool, setting: &'static str, message: &str) -> Result<(), ConfigError> {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    setting,
                    message: message.to_owned(),
                })
            }
        }
        check(
            !self.node_id.is_empty()
                && self.node_id.len() <= 64
                && self
                    .node_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "node_id",
            "must be 1 to 64 of A-Z a-z 0-9 - _",
        )?;
        check(
            self.max_connections >= 1,
            "max_connections",
            "must be at least 1",
        )?;
        check(
            self.admin_key.as_ref().is_none_or(|key| key.len() >= 32),
            "admin_key",
            "must be at least 32 bytes (it guards every user's data)",
        )?;
        check(
            (1024..=16 * 1024 * 1024).contains(&self.max_frame_bytes),
            "max_frame_bytes",
            "must be between 1024 and 16777216",
        )?;
        check(
            self.max_message_len >= 1 && self.max_message_len + 512 <= self.max_frame_bytes,
            "max_message_len",
            "must be at least 1 and 512 bytes below max_frame_bytes",
        )?;
        check(
            self.presence_limit >= 1,
            "presence_limit",
            "must be at least 1",
        )?;
        check(
            self.max_rooms_per_connection >= 1,
            "max_rooms_per_connection",
            "must be at least 1",
        )?;
        check(
            !self.ping_interval.is_zero() && self.ping_interval < self.idle_timeout,
            "ping_interval",
            "must be above zero and below idle_timeout",
        )?;
        check(
            !self.auth_timeout.is_zero(),
            "auth_timeout",
            "must be above zero",
        )?;
        check(
            self.outbound_budget_bytes >= 2 * self.max_frame_bytes,
            "outbound_budget_bytes",
            "must be at least twice max_frame_bytes",
        )?;
        check(
            (MIN_RATE..=MAX_RATE).contains(&self.rate_per_sec),
            "rate_per_sec",
            "must be a number from 0.001 to 1000000",
        )?;
        check(self.rate_burst >= 1, "rate_burst", "must be at least 1")?;
        check(
            (MIN_RATE..=MAX_RATE).contains(&self.request_rate_per_sec),
            "request_rate_per_sec",
            "must be a number from 0.001 to 1000000",
        )?;
        check(
            self.request_burst >= 1,
            "request_burst",
            "must be at least 1",
        )?;
        check(
            (1..=10_000).contains(&self.history_page_max),
            "history_page_max",
            "must be between 1 and 10000",
        )?;
        check(
            (1..=100_000).contains(&self.recovery_max),
            "recovery_max",
            "must be between 1 and 100000",
        )?;
        check(
            (1024..=256 * 1024 * 1024).contains(&self.recovery_max_bytes),
            "recovery_max_bytes",
            "must be between 1024 and 268435456",
        )?;
        check(
            self.note_max_update_bytes >= 64,
            "note_max_update_bytes",
            "must be at least 64",
        )?;
        check(
            self.note_max_bytes >= self.note_max_update_bytes,
            "note_max_bytes",
            "must be at least note_max_update_bytes",
        )?;
        check(
            self.note_compact_every >= 1,
            "note_compact_every",
            "must be at least 1",
        )?;
        check(
            !self.retention_check.is_zero(),
            "retention_check",
            "must be above zero",
        )?;
        check(self.write_queue >= 1, "write_queue", "must be at least 1")?;
        for (setting, value) in [
            ("quiet_hours_teacher", &self.quiet_hours_teacher),
            ("quiet_hours_student", &self.quiet_hours_student),
            ("quiet_hours_parent", &self.quiet_hours_parent),
            ("quiet_hours_staff", &self.quiet_hours_staff),
        ] {
            if let Err(message) = crate::quiet::QuietHours::parse(value) {
                return Err(ConfigError::Invalid { setting, message });
            }
        }
        check(
            self.dm_pupil_per_hour >= 1 && self.dm_pupil_per_day >= self.dm_pupil_per_hour,
            "dm_pupil_per_day",
            "dm_pupil_per_hour must be at least 1 and dm_pupil_per_day at least dm_pupil_per_hour",
        )?;
        check(
            self.timezone.parse::<chrono_tz::Tz>().is_ok(),
            "timezone",
            "must be an IANA time zone name, e.g. Europe/Paris",
        )?;
        check(
            self.cache_capacity >= 1 << 20,
            "cache_capacity",
            "must be at least 1048576 (1 MiB)",
        )?;
        check(
            (Duration::from_secs(1)..=Duration::from_secs(7 * 24 * 3600))
                .contains(&self.idempotency_window),
            "idempotency_window",
            "must be between 1s and 7days",
        )?;
        if let Some(url) = &self.redis {
            check(
                url.starts_with("redis://") || url.starts_with("rediss://"),
                "redis",
                "must be a redis:// or rediss:// URL",
            )?;
        }
        check(self.stream_max >= 100, "stream_max", "must be at least 100")?;
        check(
            !self.heartbeat.is_zero() && self.heartbeat * 2 <= self.node_timeout,
            "heartbeat",
            "must be above zero and at most half of node_timeout",
        )?;
        check(
            self.resync_window >= self.heartbeat,
            "resync_window",
            "must be at least one heartbeat",
        )?;
        check(
            self.max_unauthenticated >= 1,
            "max_unauthenticated",
            "must be at least 1",
        )?;
        check(
            (1..=self.max_unauthenticated).contains(&self.max_unauthenticated_per_address),
            "max_unauthenticated_per_address",
            "must be between 1 and max_unauthenticated",
        )?;
        check(
            !self.header_timeout.is_zero(),
            "header_timeout",
            "must be above zero",
        )?;
        if let Some(bad) = self
            .allowed_origins
            .iter()
            .find(|o| !crate::origin::valid_entry(o))
        {
            return Err(ConfigError::Invalid {
                setting: "allowed_origins",
                message: format!(
                    "{bad:?} is not an origin: scheme://host[:port] (http or https), or *"
                ),
            });
        }
        check(
            self.metrics_listen.is_none_or(|m| {
                let l = self.listen;
                m.port() == 0
                    || m.port() != l.port()
                    || (m.ip() != l.ip() && !m.ip().is_unspecified() && !l.ip().is_unspecified())
            }),
            "metrics_listen",
            "must not be the address of listen",
        )?;
        if let Some(oidc) = &self.oidc {
            oidc.check().map_err(|message| ConfigError::Invalid {
                setting: "oidc",
                message,
            })?;
        }
        let files = &self.files;
        check(
            files.chunk_bytes >= 64 * 1024 && files.chunk_bytes <= 64 * 1024 * 1024,
            "files.chunk_bytes",
            "must be between 64 KiB and 64 MiB",
        )?;
        check(
            files.max_file_bytes >= 1 && files.max_image_bytes >= 1,
            "files.max_file_bytes",
            "must be at least 1",
        )?;
        if let Some(s3) = &files.s3 {
            check(
                !s3.bucket.is_empty()
                    && !s3.access_key_id.is_empty()
                    && !s3.secret_access_key.is_empty(),
                "files.s3",
                "needs bucket, access_key_id and secret_access_key",
            )?;
            if !s3.endpoint.is_empty() {
                url::Url::parse(&s3.endpoint).map_err(|e| ConfigError::Invalid {
                    setting: "files.s3.endpoint",
                    message: e.to_string(),
                })?;
            }
        }
        Ok(())
    }
}

impl ConfigArgs {
    fn apply(self, config: &mut Config) {
        macro_rules! set {
            ($($field:ident),*) => {
                $(if let Some(value) = self.$field { config.$field = value; })*
            };
        }
        set!(
            listen,
            data,
            node_id,
            max_connections,
            max_frame_bytes,
            max_message_len,
            max_rooms_per_connection,
            presence_limit,
            ping_interval,
            idle_timeout,
            auth_timeout,
            outbound_budget_bytes,
            rate_per_sec,
            rate_burst,
            request_rate_per_sec,
            request_burst,
            history_page_max,
            recovery_max,
            recovery_max_bytes,
            retention,
            retention_check,
            write_queue,
            cache_capacity,
            idempotency_window,
            shutdown_grace,
            log_format,
            stream_max,
            heartbeat,
            node_timeout,
            resync_window,
            edit_window,
            note_max_update_bytes,
            note_max_bytes,
            note_compact_every
        );
        if self.web_dir.is_some() {
            config.web_dir = self.web_dir;
        }
        if self.demo {
            config.demo = true;
        }
        if self.timezone.is_some() {
            config.timezone = self.timezone.unwrap_or_default();
        }
        if self.homework_done_names {
            config.homework_done_names = true;
        }
        for (arg, field) in [
            (self.quiet_hours_teacher, &mut config.quiet_hours_teacher),
            (self.quiet_hours_student, &mut config.quiet_hours_student),
            (self.quiet_hours_parent, &mut config.quiet_hours_parent),
            (self.quiet_hours_staff, &mut config.quiet_hours_staff),
        ] {
            if let Some(value) = arg {
                *field = value;
            }
        }
        if self.dm_pupil_to_pupil {
            config.dm_pupil_to_pupil = true;
        }
        if let Some(n) = self.dm_pupil_per_hour {
            config.dm_pupil_per_hour = n;
        }
        if let Some(n) = self.dm_pupil_per_day {
            config.dm_pupil_per_day = n;
        }
        if self.secret.is_some() {
            config.secret = self.secret;
        }
        if self.admin_key.is_some() {
            config.admin_key = self.admin_key;
        }
        if self.redis.is_some() {
            config.redis = self.redis;
        }
        if self.advertise.is_some() {
            config.advertise = self.advertise;
        }
        set!(
            max_unauthenticated,
            max_unauthenticated_per_address,
            header_timeout,
            allowed_origins
        );
        if self.metrics_listen.is_some() {
            config.metrics_listen = self.metrics_listen;
        }
        if self.oidc_issuer.is_some()
            || self.oidc_client_id.is_some()
            || self.oidc_client_secret.is_some()
            || self.oidc_redirect_url.is_some()
        {
            let oidc = config.oidc.get_or_insert_with(OidcConfig::default);
            if let Some(v) = self.oidc_issuer {
                oidc.issuer = v;
            }
            if let Some(v) = self.oidc_client_id {
                oidc.client_id = v;
            }
            if self.oidc_client_secret.is_some() {
                oidc.client_secret = self.oidc_client_secret;
            }
            if let Some(v) = self.oidc_redirect_url {
                oidc.redirect_url = v;
            }
        }
        if let Some(n) = self.files_max_file_bytes {
            config.files.max_file_bytes = n;
        }
        if let Some(n) = self.files_max_user_bytes {
            config.files.max_user_bytes = n;
        }
        if let Some(n) = self.files_max_class_bytes {
            config.files.max_class_bytes = n;
        }
        if let Some(n) = self.files_chunk_bytes {
            config.files.chunk_bytes = n;
        }
        if let Some(secret) = self.files_s3_secret_access_key {
            if let Some(s3) = config.files.s3.as_mut() {
                s3.secret_access_key = secret;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_file_then_flags_apply() {
        Config::default().validate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("preau.toml");
        std::fs::write(&path, "max_connections = 7\nidle_timeout = \"90s\"\n").unwrap();
        let config = Config::load(ConfigArgs {
            config: Some(path.clone()),
            max_connections: Some(9),
            ..ConfigArgs::default()
        })
        .unwrap();
        assert_eq!(config.max_connections, 9, "flag beats file");
        assert_eq!(
            config.idle_timeout,
            Duration::from_secs(90),
            "file beats default"
        );
        std::fs::write(&path, "max_conections = 7\n").unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("max_conections"), "{err}");
    }

    #[test]
    fn invalid_settings_are_named() {
        let config = Config {
            ping_interval: Duration::from_secs(90),
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("ping_interval"), "{err}");
        let config = Config {
            admin_key: Some("too-short".to_owned()),
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("admin_key"), "{err}");
        let config = Config {
            admin_key: Some("k".repeat(32)),
            ..Config::default()
        };
        assert!(config.validate().is_ok());
    }

    #[test]
    fn connection_settings_are_checked_and_named() {
        let named = |config: Config, setting: &str| {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(setting), "{setting}: {err}");
        };
        named(
            Config {
                rate_per_sec: 1e-300,
                ..Config::default()
            },
            "rate_per_sec",
        );
        named(
            Config {
                request_rate_per_sec: f64::INFINITY,
                ..Config::default()
            },
            "request_rate_per_sec",
        );
        named(
            Config {
                max_unauthenticated: 8,
                max_unauthenticated_per_address: 9,
                ..Config::default()
            },
            "max_unauthenticated_per_address",
        );
        named(
            Config {
                allowed_origins: vec!["https://ent.example/app".to_owned()],
                ..Config::default()
            },
            "allowed_origins",
        );
        let listen = Config::default().listen;
        named(
            Config {
                metrics_listen: Some(listen),
                ..Config::default()
            },
            "metrics_listen",
        );
        let config = Config::load(ConfigArgs {
            allowed_origins: Some(vec!["https://ent.example".to_owned(), "*".to_owned()]),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            ..ConfigArgs::default()
        })
        .unwrap();
        assert_eq!(config.allowed_origins.len(), 2);
        assert_eq!(config.metrics_listen.map(|m| m.port()), Some(9464));
    }
}
