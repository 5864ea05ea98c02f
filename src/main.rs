//! The `preau` binary: `serve`, `token`, `send`, `listen`.
#![warn(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use preau::auth::{Claims, Keyring};
use preau::client::Client;
use preau::config::{Config, ConfigArgs, LogFormat};
use preau::protocol::{Position, Role, ServerFrame};

#[derive(Parser)]
#[command(
    name = "preau",
    version,
    about = "Real-time collaboration hub for schools"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default command).
    Serve(Box<ConfigArgs>),
    /// Mint a signed token.
    Token(TokenArgs),
    /// Post one message and print its ack as JSON.
    Send(SendArgs),
    /// Join a room and print its events as JSON lines.
    Listen(ListenArgs),
    /// Look for words in a data folder as someone holding a copy of it
    /// would (in clear, and inside every value a key still in it opens):
    /// checks that a redaction or an erasure left nothing readable. Prints
    /// what it finds; exits 1 if anything. Safe while the server runs.
    FindText(FindTextArgs),
    /// The school directory (who exists, in which classes).
    #[command(subcommand)]
    Directory(DirectoryCommand),
}

#[derive(Subcommand)]
enum DirectoryCommand {
    /// Send a directory file to a running server (`PUT /admin/directory`):
    /// a JSON sync, or a CSV of people (one row each; see
    /// `protocol/directory.openapi.yaml` and ARCHITECTURE.md), which
    /// replaces the whole directory. Prints the outcome as JSON.
    Import(ImportArgs),
}

#[derive(clap::Args)]
struct ImportArgs {
    /// The file: `.json` (a sync) or `.csv`.
    file: PathBuf,
    /// The server's address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, env = "PREAU_ADMIN_KEY", hide_env_values = true)]
    admin_key: String,
    /// The sync's version; by default the server's current one plus one.
    #[arg(long)]
    version: Option<u64>,
    /// Check the file and print the sync it makes, without sending it.
    #[arg(long)]
    check: bool,
}

#[derive(clap::Args)]
struct FindTextArgs {
    #[arg(long, env = "PREAU_DATA", default_value = "./data")]
    data: PathBuf,
    /// The words to look for (exact bytes, case-sensitive).
    #[arg(required = true)]
    words: Vec<String>,
}

#[derive(clap::Args)]
struct TokenArgs {
    #[arg(long, env = "PREAU_DATA", default_value = "./data")]
    data: PathBuf,
    #[arg(long, env = "PREAU_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// User id.
    #[arg(long)]
    user: String,
    /// Display name.
    #[arg(long)]
    name: String,
    /// student, teacher, parent or staff.
    #[arg(long)]
    role: Role,
    /// A class (repeat for several).
    #[arg(long = "class")]
    classes: Vec<String>,
    /// A child's user id, for a parent (repeat for several).
    #[arg(long = "child")]
    children: Vec<String>,
    /// Lifetime, e.g. 8h, 30m, 7d.
    #[arg(long, default_value = "8h", value_parser = humantime::parse_duration)]
    ttl: Duration,
}

#[derive(clap::Args)]
struct SendArgs {
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    #[arg(long, env = "PREAU_TOKEN", hide_env_values = true)]
    token: String,
    #[arg(long)]
    room: String,
    #[arg(long)]
    text: String,
    /// Retries after a lost connection or a "later" error (`unavailable`,
    /// `overloaded`, `storage_error`, `rate_limited`), with the same
    /// idempotency key: the message is stored once.
    #[arg(long, default_value_t = 3)]
    retries: u32,
}

#[derive(clap::Args)]
struct ListenArgs {
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    #[arg(long, env = "PREAU_TOKEN", hide_env_values = true)]
    token: String,
    #[arg(long)]
    room: String,
    /// Recover every event after this offset (needs --epoch).
    #[arg(long, requires = "epoch")]
    from: Option<u64>,
    #[arg(long, requires = "from")]
    epoch: Option<String>,
    /// Exit after this many events.
    #[arg(long)]
    count: Option<usize>,
}

/// jemalloc, not glibc's malloc: with glibc's one arena per thread (tokio
/// workers, the blocking pool, sled's threads), freed memory stayed
/// scattered and RSS grew with the history written: 17 → 330 MB over 600 MB
/// of posts with a 64 MiB page cache, against a plateau near 150 MB with
/// two arenas. Measured with `examples/rough.rs fill`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    match cli
        .command
        .unwrap_or_else(|| Command::Serve(Box::default()))
    {
        Command::Serve(args) => {
            let config = Config::load(*args).context("invalid configuration")?;
            init_logs(config.log_format);
            runtime.block_on(preau::run(config, shutdown_signal()))?;
        }
        Command::Token(args) => token(args)?,
        Command::FindText(args) => {
            let words: Vec<&str> = args.words.iter().map(String::as_str).collect();
            let found = preau::store::find_in_data(&args.data, &words)
                .with_context(|| format!("cannot scan {}", args.data.display()))?;
            for finding in &found {
                println!(
                    "{}",
                    serde_json::json!({
                        "file": finding.file.display().to_string(),
                        "at": finding.at,
                        "word": finding.word,
                        "sealed": finding.sealed,
                    })
                );
            }
            if !found.is_empty() {
                std::process::exit(1);
            }
        }
        Command::Directory(DirectoryCommand::Import(args)) => {
            runtime.block_on(import_directory(args))?;
        }
        Command::Send(args) => {
            init_logs(LogFormat::Text);
            runtime.block_on(send(args))?;
        }
        Command::Listen(args) => {
            init_logs(LogFormat::Text);
            runtime.block_on(listen(args))?;
        }
    }
    Ok(())
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PREAU_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let keyring = Keyring::load(&args.data, args.secret.as_deref())?;
    let now = preau::auth::now_secs();
    let claims = Claims {
        sub: args.user,
        name: args.name,
        role: args.role,
        classes: args.classes,
        children: args.children.into_iter().map(Into::into).collect(),
        exp: now + args.ttl.as_secs(),
        iat: now,
    };
    claims.validate()?;
    println!("{}", keyring.mint(&claims)?);
    Ok(())
}

async fn send(args: SendArgs) -> anyhow::Result<()> {
    // One key for every attempt: a retry after an outcome the server could
    // not know (a Redis reply that timed out) is not stored twice.
    let key = preau::ids::new_epoch();
    let mut attempt = 0;
    loop {
        let sent = async {
            let (mut client, _) = Client::connect(&args.url, &args.token).await?;
            client.join(&args.room, None).await?;
            let ack = client.post_keyed(&args.room, &args.text, Some(&key)).await;
            client.close();
            ack
        }
        .await;
        match sent {
            Ok(ack) => {
                println!("{}", serde_json::to_string(&ack)?);
                return Ok(());
            }
            Err(err) if attempt < args.retries && err.is_retryable() => {
                attempt += 1;
                eprintln!("{err}; retry {attempt} of {}", args.retries);
                tokio::time::sleep(Duration::from_millis(250 << attempt.min(4))).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

async fn import_directory(args: ImportArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let http = openidconnect::reqwest::Client::new();
    let base = args.url.trim_end_matches('/');
    let version = match (args.version, args.check) {
        (Some(version), _) => version,
        (None, true) => 1,
        (None, false) => {
            let current = http
                .get(format!("{base}/admin/directory"))
                .bearer_auth(&args.admin_key)
                .send()
                .await?
                .error_for_status()
                .context("cannot read the server's directory version")?
                .text()
                .await?;
            let current: serde_json::Value = serde_json::from_str(&current)?;
            current["version"].as_u64().unwrap_or(0) + 1
        }
    };
    let sync = preau::directory::parse_file(&bytes, version)
        .with_context(|| format!("{} is not a directory file", args.file.display()))?;
    if args.check {
        println!("{}", serde_json::to_string_pretty(&sync)?);
        return Ok(());
    }
    let response = http
        .put(format!("{base}/admin/directory"))
        .bearer_auth(&args.admin_key)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&sync)?)
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    println!("{text}");
    if !status.is_success() {
        anyhow::bail!("the server refused the directory ({status})");
    }
    Ok(())
}

async fn listen(args: ListenArgs) -> anyhow::Result<()> {
    let (mut client, _) = Client::connect(&args.url, &args.token).await?;
    let since = match (args.from, args.epoch) {
        (Some(offset), Some(epoch)) => Some(Position { epoch, offset }),
        _ => None,
    };
    let joined = client.join(&args.room, since).await?;
    if let Some(recovery) = &joined.recovery {
        eprintln!("{}", serde_json::to_string(recovery)?);
    }
    let mut printed = 0;
    let done = |printed: usize| args.count.is_some_and(|n| printed >= n);
    for event in &joined.events {
        if done(printed) {
            break;
        }
        println!(
            "{}",
            serde_json::to_string(&ServerFrame::Event(event.clone()))?
        );
        printed += 1;
    }
    while !done(printed) {
        let Some(frame) = client.next().await else {
            anyhow::bail!("connection closed: {:?}", client.close_frame());
        };
        println!("{}", serde_json::to_string(&frame)?);
        if matches!(frame, ServerFrame::Event(_)) {
            printed += 1;
        }
    }
    client.close();
    Ok(())
}
