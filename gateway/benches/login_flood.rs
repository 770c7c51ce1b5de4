//! Memory under a flood of bad logins: the release `sparkgate` binary with a users file (argon2id
//! hashes, ~19 MiB per check) takes N concurrent SASL PLAIN logins with wrong passwords, each a
//! different user from a different loopback address (so no lockout stops them), while one good
//! client logs in. Run twice in one go: with checks unbounded (`auth.max_concurrent_checks` =
//! N, what sparkgate did before the bound) and with the default bound. Prints the peak RSS
//! growth, the flood's duration and the good login's latency; asserts nothing.
//!
//! `cargo bench -p sparkgate --bench login_flood [-- --logins N]`. The binary is
//! `$SPARKGATE_BIN`, else `target/release/sparkgate` (build it first).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

const SASL_START: u8 = 1;
const SASL_OK: u8 = 2;
const SASL_COMPLETE: u8 = 5;

fn logins() -> usize {
    let mut args = std::env::args().skip_while(|a| a != "--logins");
    args.nth(1).and_then(|v| v.parse().ok()).unwrap_or(200)
}

fn sparkgate_bin() -> PathBuf {
    let bin = std::env::var_os("SPARKGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/sparkgate")
        });
    assert!(
        bin.is_file(),
        "{} missing: cargo build --release -p sparkgate, or set SPARKGATE_BIN",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn frame(status: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![status];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// One SASL PLAIN login from `from`; whether the server completed it.
async fn login(gateway: SocketAddr, from: IpAddr, user: &str, password: &str) -> bool {
    let socket = TcpSocket::new_v4().expect("socket");
    if socket.bind(SocketAddr::new(from, 0)).is_err() {
        return false;
    }
    let Ok(mut stream) = socket.connect(gateway).await else {
        return false;
    };
    let mut hello = frame(SASL_START, b"PLAIN");
    hello.extend(frame(SASL_OK, format!("\0{user}\0{password}").as_bytes()));
    if stream.write_all(&hello).await.is_err() {
        return false;
    }
    let mut status = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(60), stream.read_exact(&mut status)).await {
        Ok(Ok(_)) => status[0] == SASL_COMPLETE,
        _ => false,
    }
}

struct Run {
    peak_growth_mib: f64,
    flood_secs: f64,
    good_login_ms: f64,
    good_ok: bool,
}

async fn run(bin: &PathBuf, users_file: &std::path::Path, logins: usize, checks: usize) -> Run {
    let port = free_port();
    let dir = users_file.parent().unwrap();
    let config = dir.join(format!("sparkgate-{checks}.toml"));
    std::fs::write(
        &config,
        format!(
            "[server]\nbind = \"127.0.0.1:{port}\"\n[auth]\nmax_failures = 5\nmax_concurrent_checks = {checks}\ncheck_wait = \"60s\"\ncache_ttl = \"0s\"\n[[auth.methods]]\ntype = \"users_file\"\npath = \"{}\"\n",
            users_file.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(bin)
        .args(["--config".as_ref(), config.as_os_str()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sparkgate starts");
    let gateway: SocketAddr = ([127, 0, 0, 1], port).into();
    let started = Instant::now();
    while std::net::TcpStream::connect(gateway).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "sparkgate did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Warm up (one good login), then the baseline.
    assert!(login(gateway, Ipv4Addr::LOCALHOST.into(), "good", "good-pw").await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = child.id();
    let base = rss_kib(pid);
    let done = std::sync::atomic::AtomicBool::new(false);
    let sampling = async {
        let mut peak = base;
        // Bounded: 10 minutes of samples at most.
        for _ in 0..60_000 {
            peak = peak.max(rss_kib(pid));
            if done.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        peak
    };
    let flood_started = Instant::now();
    let flood = async {
        let results = futures::future::join_all((0..logins).map(|i| {
            let from = IpAddr::V4(Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8));
            let user = format!("user{i}");
            async move { login(gateway, from, &user, "wrong").await }
        }))
        .await;
        results
    };
    let good = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = Instant::now();
        let ok = login(
            gateway,
            Ipv4Addr::new(127, 2, 0, 1).into(),
            "good",
            "good-pw",
        )
        .await;
        (ok, t.elapsed())
    };
    let work = async {
        let out = tokio::join!(flood, good);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        out
    };
    let ((_, (good_ok, good_took)), peak) = tokio::join!(work, sampling);
    let flood_secs = flood_started.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    Run {
        peak_growth_mib: (peak.saturating_sub(base)) as f64 / 1024.0,
        flood_secs,
        good_login_ms: good_took.as_secs_f64() * 1000.0,
        good_ok,
    }
}

#[tokio::main]
async fn main() {
    let bin = sparkgate_bin();
    let n = logins();
    let dir = tempfile::tempdir().unwrap();
    let users_file = dir.path().join("users.toml");
    sparkgate_auth::users_file::set_user(&users_file, "good", "good-pw", &[]).unwrap();
    for i in 0..n {
        sparkgate_auth::users_file::set_user(&users_file, &format!("user{i}"), "right", &[])
            .unwrap();
    }
    println!("login flood: {n} concurrent bad SASL logins, distinct users and addresses, users file (argon2id)");
    for (label, checks) in [("unbounded (before)", n), ("bounded (default 4)", 4)] {
        let r = run(&bin, &users_file, n, checks).await;
        println!(
            "{label:>20}: peak RSS growth {:.1} MiB | flood {:.2} s | a good login meanwhile {} in {:.0} ms",
            r.peak_growth_mib,
            r.flood_secs,
            if r.good_ok { "ok" } else { "FAILED" },
            r.good_login_ms
        );
    }
}
