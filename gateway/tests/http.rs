//! Thrift over HTTP under hostile clients: bodies that are too big or never come, and one user
//! holding many connections.

use std::time::{Duration, Instant};

use base64::Engine;
use sparkgate::app::Gateway;
use sparkgate::config::Config;
use sparkgate::testing::FakeSts;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

async fn gateway(
    change: impl FnOnce(&mut Config),
) -> (sparkgate::testing::RunningFakeSts, Gateway) {
    let sts = FakeSts::new().start().await;
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".parse().unwrap();
    config.http.bind = Some("127.0.0.1:0".parse().unwrap());
    config.backend.address = sts.addr.to_string();
    change(&mut config);
    let gw = Gateway::start(config).await.unwrap();
    (sts, gw)
}

fn basic(user: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"));
    format!("authorization: Basic {token}\r\n")
}

/// Reads one response off a keep-alive connection: its status code and body.
async fn response(reader: &mut BufReader<TcpStream>) -> (u16, String) {
    let mut status = String::new();
    reader.read_line(&mut status).await.unwrap();
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {status:?}"));
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.unwrap();
    (code, String::from_utf8_lossy(&body).into_owned())
}

async fn connect(gw: &Gateway) -> BufReader<TcpStream> {
    BufReader::new(TcpStream::connect(gw.http_addr.unwrap()).await.unwrap())
}

async fn post(conn: &mut BufReader<TcpStream>, headers: &str, body: &[u8]) -> (u16, String) {
    let head = format!(
        "POST /cliservice HTTP/1.1\r\nhost: x\r\n{headers}content-length: {}\r\n\r\n",
        body.len()
    );
    conn.get_mut().write_all(head.as_bytes()).await.unwrap();
    conn.get_mut().write_all(body).await.unwrap();
    response(conn).await
}

#[tokio::test]
async fn an_oversized_content_length_is_refused_before_any_byte_is_read() {
    let (_sts, gw) = gateway(|_| {}).await;
    let mut conn = connect(&gw).await;
    let head = format!(
        "POST /cliservice HTTP/1.1\r\nhost: x\r\n{}content-length: 4294967296\r\n\r\n",
        basic("alice")
    );
    conn.get_mut().write_all(head.as_bytes()).await.unwrap();
    let (code, body) = tokio::time::timeout(Duration::from_secs(5), response(&mut conn))
        .await
        .expect("answered without the body");
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("http.max_body_size"), "{body}");
}

#[tokio::test]
async fn a_body_that_never_arrives_ends_at_the_body_timeout() {
    let (_sts, gw) = gateway(|c| c.http.body_timeout = Duration::from_millis(300)).await;
    let mut conn = connect(&gw).await;
    let head = format!(
        "POST /cliservice HTTP/1.1\r\nhost: x\r\n{}content-length: 1000\r\n\r\n",
        basic("alice")
    );
    conn.get_mut().write_all(head.as_bytes()).await.unwrap();
    conn.get_mut().write_all(&[0u8; 10]).await.unwrap();
    let started = Instant::now();
    let (code, body) = tokio::time::timeout(Duration::from_secs(5), response(&mut conn))
        .await
        .expect("answered at the deadline");
    assert_eq!(code, 408, "{body}");
    assert!(body.contains("http.body_timeout"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn http_connections_count_against_the_per_user_limit() {
    let (_sts, gw) = gateway(|c| c.server.max_connections_per_user = 1).await;
    let mut first = connect(&gw).await;
    let mut second = connect(&gw).await;
    // Not Thrift, so 400 once admitted; what matters is which requests are admitted.
    let (code, _) = post(&mut first, &basic("alice"), b"not thrift").await;
    assert_eq!(code, 400);
    let (code, _) = post(&mut first, &basic("alice"), b"not thrift").await;
    assert_eq!(code, 400, "the same connection keeps its slot");
    let (code, body) = post(&mut second, &basic("alice"), b"not thrift").await;
    assert_eq!(code, 429, "{body}");
    assert!(body.contains("max_connections_per_user"), "{body}");
    let (code, _) = post(&mut second, &basic("bob"), b"not thrift").await;
    assert_eq!(code, 400, "other users are not affected");
    drop(first);
    let mut admitted = false;
    for _ in 0..50 {
        if post(&mut second, &basic("alice"), b"not thrift").await.0 == 400 {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted, "the slot comes back when the connection ends");
}
