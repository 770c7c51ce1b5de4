//! The `sparkgate` command.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use sparkgate::app::Gateway;
use sparkgate::config::{Config, FrontendTransport};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A HiveServer2 gateway for Spark Thrift Server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML config file (see gateway/sparkgate.example.toml). Without it, defaults apply.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Forward to this Spark Thrift Server (HOST:PORT); overrides backend.address.
    #[arg(long)]
    backend: Option<String>,
    /// Listen on this address; overrides server.bind.
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// Client transport, `sasl` or `nosasl`; overrides server.transport.
    #[arg(long, value_parser = parse_transport)]
    transport: Option<FrontendTransport>,
    /// Make every startup check that needs no network (the configuration, its auth safety,
    /// the files it names: users files, keys, certificates), then exit (0 if all pass).
    /// Servers it names (LDAP, Kubernetes) are reached only at startup.
    #[arg(long)]
    check_config: bool,
    /// With --check-config: do not read the files the configuration names (checking a config
    /// rendered for another machine, whose Secrets are not here).
    #[arg(long, requires = "check_config")]
    without_files: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Adds or updates a user in a users file (auth method `users_file`). The password is read
    /// from standard input (first line), so it never shows in the process list or history.
    Passwd {
        /// The users file (TOML; created if missing).
        file: PathBuf,
        /// The user name.
        user: String,
        /// A group of the user (repeat for several).
        #[arg(long = "group")]
        groups: Vec<String>,
    },
}

fn passwd(file: &std::path::Path, user: &str, groups: &[String]) -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        eprintln!("password for {user} (input is shown; pipe it in to avoid that):");
    }
    let mut password = String::new();
    std::io::stdin().lock().read_line(&mut password)?;
    let password = password.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(!password.is_empty(), "empty password");
    sparkgate_auth::users_file::set_user(file, user, password, groups)
        .with_context(|| format!("writing {}", file.display()))?;
    eprintln!("{user} written to {}", file.display());
    Ok(())
}

fn parse_transport(s: &str) -> Result<FrontendTransport, String> {
    match s {
        "sasl" => Ok(FrontendTransport::Sasl),
        "nosasl" => Ok(FrontendTransport::Nosasl),
        other => Err(format!("unknown transport {other:?} (sasl or nosasl)")),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Passwd { file, user, groups }) = &cli.command {
        return passwd(file, user, groups);
    }
    sparkgate::telemetry::init_logging();
    let mut config = match &cli.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(backend) = cli.backend {
        config.backend.address = backend;
    }
    if let Some(bind) = cli.bind {
        config.server.bind = bind;
    }
    if let Some(transport) = cli.transport {
        config.server.transport = transport;
    }
    if cli.check_config {
        sparkgate::app::check_config(&config, !cli.without_files)?;
        println!("configuration is valid");
        return Ok(());
    }
    config.validate()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
    let bind = config.server.bind;
    let gateway = Gateway::start(config)
        .await
        .with_context(|| format!("cannot start sparkgate on {bind}"))?;
    wait_for_signal().await?;
    gateway.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        r = tokio::signal::ctrl_c() => { r?; tracing::info!("SIGINT received") },
    }
    Ok(())
}
