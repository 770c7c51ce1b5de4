//! Memory of idle sessions: the release `sparkgate` binary runs as a child process in front of
//! the in-process fake Spark Thrift Server; the bench opens N client connections with one
//! session each (SASL PLAIN), leaves them idle and reads the child's resident memory before and
//! after, and counts the backend connections the fake server holds for them.
//!
//! `cargo bench -p sparkgate --bench idle_sessions [-- --sessions N] [--concurrency C] [--rounds R]`.
//! The binary is `$SPARKGATE_BIN`, else the release binary cargo built next to this bench (built
//! with `cargo build --release -p sparkgate` if missing). Prints figures; asserts nothing.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use hive_thrift::client::{ClientAuth, Hs2Connection};
use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{Hs2Request, Hs2Response};
use hive_thrift::sasl::PlainCredentials;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use sparkgate::testing::{FakeSts, FakeStsStats};

const WARM_UP_SESSIONS: usize = 100;
const MAX_MESSAGE: usize = 64 << 20;
/// Per connect-and-open; a session slower than this counts as failed.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

struct Args {
    sessions: usize,
    concurrency: usize,
    /// Rounds of open-all, close-all (the later ones show whether memory is reused).
    rounds: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        sessions: 10_000,
        concurrency: 200,
        rounds: 2,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sessions" => {
                args.sessions = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--sessions N")
            }
            "--concurrency" => {
                args.concurrency = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--concurrency N")
            }
            "--rounds" => args.rounds = it.next().and_then(|v| v.parse().ok()).expect("--rounds N"),
            // cargo bench passes --bench; ignore what is not ours.
            _ => {}
        }
    }
    args
}

/// The gateway child; killed when dropped, so a panicking bench leaves nothing behind.
struct Gateway {
    child: std::process::Child,
    log: PathBuf,
}

impl Gateway {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    fn stop(mut self, grace: Duration) -> Duration {
        let asked = Instant::now();
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        while asked.elapsed() < grace {
            if let Ok(Some(_)) = self.child.try_wait() {
                return asked.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        println!("sparkgate did not exit within {grace:?} of SIGTERM; killing it");
        asked.elapsed()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned()
}

/// `$SPARKGATE_BIN`, else the release binary (built if missing).
fn sparkgate_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SPARKGATE_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "SPARKGATE_BIN={} is not a file",
            bin.display()
        );
        return bin;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let bin = target.join("release").join("sparkgate");
    if !bin.is_file() {
        println!(
            "{} missing: cargo build --release -p sparkgate",
            bin.display()
        );
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", "sparkgate"])
            .current_dir(workspace())
            .status();
        assert!(
            matches!(status, Ok(s) if s.success()) && bin.is_file(),
            "cannot build {}: run `cargo build --release -p sparkgate` or set SPARKGATE_BIN ({status:?})",
            bin.display()
        );
    }
    bin
}

/// Raises the open-files limit for this process and the child (which inherits it): to what
/// N sessions need if allowed (root may raise the hard limit), else soft to hard.
fn raise_nofile(wanted: u64) -> u64 {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft >= wanted {
        return soft;
    }
    if setrlimit(Resource::RLIMIT_NOFILE, wanted, hard.max(wanted)).is_ok() {
        return wanted;
    }
    if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// `(VmRSS, threads)` of a process, from /proc.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("Threads:"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

async fn connect_and_open(addr: String) -> Result<(Hs2Connection, t::TSessionHandle), String> {
    let auth = ClientAuth::Plain(PlainCredentials {
        authzid: String::new(),
        user: "bench".into(),
        password: "x".into(),
    });
    let work = async {
        let mut conn = Hs2Connection::connect(&addr, &auth, MAX_MESSAGE, OPEN_TIMEOUT)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let req = Hs2Request::OpenSession(t::TOpenSessionReq {
            client_protocol: t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V10,
            username: Some("bench".into()),
            password: None,
            configuration: None,
        });
        match conn.call(&req).await.map_err(|e| format!("open: {e}"))? {
            Hs2Response::OpenSession(r) => match r.session_handle {
                Some(h) => Ok((conn, h)),
                None => Err(format!("open refused: {:?}", r.status.error_message)),
            },
            other => Err(format!("open: unexpected {other:?}")),
        }
    };
    tokio::time::timeout(OPEN_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// Opens `n` sessions, `concurrency` at a time; returns the open ones and the first error seen.
async fn open_many(
    addr: &str,
    n: usize,
    concurrency: usize,
) -> (
    Vec<(Hs2Connection, t::TSessionHandle)>,
    usize,
    Option<String>,
) {
    let mut opened = Vec::with_capacity(n);
    let (mut failed, mut first_error) = (0, None);
    let mut results = futures::stream::iter((0..n).map(|_| connect_and_open(addr.to_owned())))
        .buffer_unordered(concurrency.max(1));
    while let Some(r) = results.next().await {
        match r {
            Ok(s) => opened.push(s),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    (opened, failed, first_error)
}

fn backend_line(stats: &FakeStsStats) -> String {
    format!(
        "backend (the one fake driver): {} connections open, {} accepted, {} sessions open",
        stats.open_connections.load(Ordering::Relaxed),
        stats.accepted_connections.load(Ordering::Relaxed),
        stats.open_sessions.load(Ordering::Relaxed) - stats.closed_sessions.load(Ordering::Relaxed),
    )
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

fn main() {
    let args = parse_args();
    let n = args.sessions;
    // This process holds N client and N backend sockets; the gateway N client and N backend.
    let wanted = (2 * (n + WARM_UP_SESSIONS) + 4096) as u64;
    let limit = raise_nofile(wanted);
    let bin = sparkgate_bin();
    println!(
        "sparkgate idle-sessions bench: {} ({} cores); RLIMIT_NOFILE {limit} (wanted {wanted})",
        bin.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if limit < wanted {
        println!(
            "WARNING: open-files limit {limit} < {wanted}: some of the {n} sessions will fail; run as root or lower --sessions"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let fake = FakeSts::new().start().await;
        let dir = std::env::temp_dir().join(format!("sparkgate-idle-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let port = free_port();
        let max = (n + WARM_UP_SESSIONS + 1000).max(20_000);
        let config = dir.join("sparkgate.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nbind = \"127.0.0.1:{port}\"\nmax_connections = {max}\n\
                 max_connections_per_address = {max}\nmax_connections_per_user = {max}\n\
                 shutdown_grace = \"2s\"\n"
            ),
        )
        .expect("config file");
        let log = dir.join("sparkgate.log");
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .arg("--backend")
            .arg(fake.addr.to_string())
            .env("SPARKGATE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut gw = Gateway { child, log };
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            let exited = gw.child.try_wait().ok().flatten();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "sparkgate did not listen on {addr} ({exited:?}); log:\n{}",
                std::fs::read_to_string(&gw.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pid = gw.pid();
        settle().await;
        let (rss_start, threads) = rss_kib(pid);
        println!("sparkgate pid {pid} listening on {addr}: VmRSS {rss_start} KiB, {threads} threads");

        let (warm, warm_failed, _) = open_many(&addr, WARM_UP_SESSIONS, args.concurrency).await;
        settle().await;
        let (rss_warm, _) = rss_kib(pid);
        println!(
            "after warm-up ({} sessions, {warm_failed} failed): VmRSS {rss_warm} KiB",
            warm.len()
        );

        let started = Instant::now();
        let (sessions, failed, first_error) = open_many(&addr, n, args.concurrency).await;
        let took = started.elapsed();
        settle().await;
        let (rss_idle, threads) = rss_kib(pid);
        let fds = open_fds(pid);
        let opened = sessions.len();
        println!(
            "opened {opened} idle sessions ({failed} failed{}) in {:.2} s ({:.0}/s, {} at a time)",
            first_error.map(|e| format!(", first: {e}")).unwrap_or_default(),
            took.as_secs_f64(),
            opened as f64 / took.as_secs_f64(),
            args.concurrency,
        );
        println!(
            "sparkgate with {} idle sessions: VmRSS {rss_idle} KiB, {threads} threads, {fds} open fds",
            opened + warm.len()
        );
        if opened > 0 {
            let per = rss_idle.saturating_sub(rss_warm) as f64 / opened as f64;
            println!(
                "RSS per idle session: {per:.1} KiB (target <= 20 KiB: {})",
                if per <= 20.0 { "met" } else { "NOT met" }
            );
        }
        println!("{}", backend_line(&fake.stats));
        let backend_open = fake.stats.open_connections.load(Ordering::Relaxed);
        println!(
            "backend connections per driver: {backend_open} for {} client sessions ({:.2} per session)",
            opened + warm.len(),
            backend_open as f64 / (opened + warm.len()).max(1) as f64
        );

        drop(sessions);
        drop(warm);
        let closed = Instant::now();
        let deadline = closed + Duration::from_secs(15);
        while fake.stats.open_connections.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (rss_after, _) = rss_kib(pid);
        println!(
            "clients closed: after {:.2} s {}; sparkgate VmRSS {rss_after} KiB",
            closed.elapsed().as_secs_f64(),
            backend_line(&fake.stats)
        );
        // Again: if RSS stays put, what was not given back after closing is the allocator's
        // retained memory being reused, not a leak.
        for round in 2..=args.rounds {
            let (again, again_failed, error) = open_many(&addr, n, args.concurrency).await;
            settle().await;
            let (rss_again, _) = rss_kib(pid);
            println!(
                "round {round}, {} sessions ({again_failed} failed{}): sparkgate VmRSS {rss_again} KiB ({:+} KiB against the first round)",
                again.len(),
                error.map(|e| format!(", first: {e}")).unwrap_or_default(),
                rss_again as i64 - rss_idle as i64
            );
            drop(again);
            let deadline = Instant::now() + Duration::from_secs(15);
            while fake.stats.open_connections.load(Ordering::Relaxed) > 0
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let exit = gw.stop(Duration::from_secs(10));
        println!("sparkgate stopped {:.2} s after SIGTERM", exit.as_secs_f64());
        let _ = std::fs::remove_dir_all(&dir);
    });
}
