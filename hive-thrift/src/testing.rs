//! A fast in-process HiveServer2 server standing in for a Spark Thrift Server in unit tests,
//! wire tests and benchmarks (feature `testing`). End-to-end tests use a real one.
//!
//! `FakeSts::new().rows(1_000_000).start().await` serves, for any statement, a result of two
//! columns (`id bigint`, `s string`) with the configured row count, in batches of the size the
//! client asks for. [`FakeSts::fault`] makes it misbehave on a method the way drivers do: answer
//! late, answer with an error status, cut the connection, or never answer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::frame::{Framing, MessageCodec};
use crate::generated::tcliservice as t;
use crate::message::{
    operation_status_reply, success_status, Hs2Request, Hs2Response, MessageHeader,
};
use crate::sasl::{SaslServer, DEFAULT_MAX_NEGOTIATION_FRAME};

/// How the fake server misbehaves on a method.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answers, after this long.
    Latency(Duration),
    /// Answers with an error status carrying this text.
    Error(String),
    /// Closes the connection instead of answering, as a dying driver does.
    Cut,
    /// Never answers; the connection stays open.
    Hang,
}

/// Builder and handle of a fake Spark Thrift Server.
#[derive(Debug, Clone)]
pub struct FakeSts {
    rows: u64,
    framing: Framing,
    /// By method name; `"*"` for every method without a fault of its own.
    faults: HashMap<String, Fault>,
}

/// Counters a test can read back.
#[derive(Debug, Default)]
pub struct FakeStsStats {
    pub open_sessions: AtomicU64,
    pub closed_sessions: AtomicU64,
    pub status_calls: AtomicU64,
    pub fetch_calls: AtomicU64,
    pub cancel_calls: AtomicU64,
    /// Connections accepted since start.
    pub accepted_connections: AtomicU64,
    /// Connections open now.
    pub open_connections: AtomicU64,
}

/// A running fake server.
pub struct RunningFakeSts {
    pub addr: SocketAddr,
    pub stats: Arc<FakeStsStats>,
    /// Cancelled on drop: the listener and every connection end, as when a driver dies.
    stop: CancellationToken,
}

impl Drop for RunningFakeSts {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Default for FakeSts {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeSts {
    pub fn new() -> Self {
        Self {
            rows: 10,
            framing: Framing::Sasl,
            faults: HashMap::new(),
        }
    }

    /// Misbehaves on every call of `method` (`"*"`: on every call without a fault of its own).
    pub fn fault(mut self, method: &str, fault: Fault) -> Self {
        self.faults.insert(method.to_owned(), fault);
        self
    }

    /// Rows every statement returns.
    pub fn rows(mut self, rows: u64) -> Self {
        self.rows = rows;
        self
    }

    /// Serve NOSASL instead of SASL PLAIN.
    pub fn nosasl(mut self) -> Self {
        self.framing = Framing::Raw;
        self
    }

    pub async fn start(self) -> RunningFakeSts {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let stats = Arc::new(FakeStsStats::default());
        let shared = Arc::new(Shared {
            config: self,
            stats: stats.clone(),
            next_handle: AtomicU64::new(1),
            operations: Mutex::new(HashMap::new()),
        });
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        // Test kit: its tasks end with the server (the stop token).
        #[allow(clippy::disallowed_methods)]
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        // Out of file descriptors and the like: survive, as a real server does.
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                    _ = stopped.cancelled() => return,
                };
                let shared = shared.clone();
                let stopped = stopped.clone();
                shared
                    .stats
                    .accepted_connections
                    .fetch_add(1, Ordering::Relaxed);
                shared
                    .stats
                    .open_connections
                    .fetch_add(1, Ordering::Relaxed);
                #[allow(clippy::disallowed_methods)]
                tokio::spawn(async move {
                    tokio::select! {
                        _ = shared.serve(stream) => {}
                        _ = stopped.cancelled() => {}
                    }
                    shared
                        .stats
                        .open_connections
                        .fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
        RunningFakeSts { addr, stats, stop }
    }
}

struct Shared {
    config: FakeSts,
    stats: Arc<FakeStsStats>,
    /// Numbers the handles this server mints.
    next_handle: AtomicU64,
    /// Operation guid → rows already fetched.
    operations: Mutex<HashMap<Vec<u8>, u64>>,
}

impl Shared {
    /// A handle identifier unique in this server (a fake needs no secrecy).
    fn mint(&self) -> t::THandleIdentifier {
        let n = self
            .next_handle
            .fetch_add(1, Ordering::Relaxed)
            .to_be_bytes();
        t::THandleIdentifier {
            guid: [n, n].concat(),
            secret: [n, [0xfa; 8]].concat(),
        }
    }

    async fn serve(&self, mut stream: TcpStream) -> std::io::Result<()> {
        stream.set_nodelay(true)?;
        let mut buf = BytesMut::new();
        if self.config.framing == Framing::Sasl {
            let mut sasl = SaslServer::new(DEFAULT_MAX_NEGOTIATION_FRAME);
            loop {
                match sasl.decode(&mut buf) {
                    Ok(Some(_)) => break,
                    Ok(None) => {}
                    Err(_) => return Ok(()),
                }
                if stream.read_buf(&mut buf).await? == 0 {
                    return Ok(());
                }
            }
            let mut out = BytesMut::new();
            SaslServer::accept(&mut out);
            stream.write_all(&out).await?;
        }
        let (mut reader, mut writer) = stream.into_split();
        let mut decoder = MessageCodec::new(self.config.framing, usize::MAX >> 1);
        let codec = MessageCodec::new(self.config.framing, usize::MAX >> 1);
        loop {
            let message = loop {
                match decoder.decode_message(&mut buf) {
                    Ok(Some(m)) => break m,
                    Ok(None) => {}
                    Err(_) => return Ok(()),
                }
                if reader.read_buf(&mut buf).await? == 0 {
                    return Ok(());
                }
            };
            let Ok(header) = MessageHeader::parse(&message) else {
                return Ok(());
            };
            let Ok(Some(request)) =
                Hs2Request::decode(&header.name, &message[header.body_offset..])
            else {
                return Ok(());
            };
            let fault = self
                .config
                .faults
                .get(request.method())
                .or_else(|| self.config.faults.get("*"));
            // While it makes the caller wait, the server still sees the caller hang up, as a
            // real one's socket does.
            let hung_up = async {
                loop {
                    match reader.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            };
            let response = match fault {
                None => self.answer(request),
                Some(Fault::Latency(delay)) => tokio::select! {
                    _ = tokio::time::sleep(*delay) => self.answer(request),
                    _ = hung_up => return Ok(()),
                },
                Some(Fault::Error(text)) => Hs2Response::error_for(&request, error_status(text)),
                Some(Fault::Cut) => return Ok(()),
                Some(Fault::Hang) => {
                    hung_up.await;
                    return Ok(());
                }
            };
            let mut out = Vec::new();
            response.encode_reply(header.seqid, &mut out);
            let mut frame = BytesMut::new();
            if codec.encode_message(&out, &mut frame).is_err() {
                return Ok(());
            }
            writer.write_all(&frame).await?;
        }
    }

    fn answer(&self, request: Hs2Request) -> Hs2Response {
        use Hs2Request as Q;
        use Hs2Response as R;
        let ok = success_status;
        match request {
            Q::OpenSession(req) => {
                self.stats.open_sessions.fetch_add(1, Ordering::Relaxed);
                R::OpenSession(t::TOpenSessionResp {
                    status: ok(),
                    server_protocol_version: req
                        .client_protocol
                        .min(t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V10),
                    session_handle: Some(t::TSessionHandle {
                        session_id: self.mint(),
                    }),
                    configuration: Some(Default::default()),
                })
            }
            Q::CloseSession(_) => {
                self.stats.closed_sessions.fetch_add(1, Ordering::Relaxed);
                R::CloseSession(t::TCloseSessionResp { status: ok() })
            }
            Q::ExecuteStatement(_) => {
                let id = self.mint();
                self.operations
                    .lock()
                    .expect("lock")
                    .insert(id.guid.clone(), 0);
                R::ExecuteStatement(t::TExecuteStatementResp {
                    status: ok(),
                    operation_handle: Some(t::TOperationHandle {
                        operation_id: id,
                        operation_type: t::TOperationType::EXECUTE_STATEMENT,
                        has_result_set: true,
                        modified_row_count: None,
                    }),
                })
            }
            Q::GetOperationStatus(_) => {
                self.stats.status_calls.fetch_add(1, Ordering::Relaxed);
                R::GetOperationStatus(t::TGetOperationStatusResp {
                    has_result_set: Some(true),
                    ..operation_status_reply(ok(), Some(t::TOperationState::FINISHED_STATE))
                })
            }
            Q::CancelOperation(_) => {
                self.stats.cancel_calls.fetch_add(1, Ordering::Relaxed);
                R::CancelOperation(t::TCancelOperationResp { status: ok() })
            }
            Q::CloseOperation(req) => {
                self.operations
                    .lock()
                    .expect("lock")
                    .remove(&req.operation_handle.operation_id.guid);
                R::CloseOperation(t::TCloseOperationResp { status: ok() })
            }
            Q::GetResultSetMetadata(_) => R::GetResultSetMetadata(t::TGetResultSetMetadataResp {
                status: ok(),
                schema: Some(t::TTableSchema {
                    columns: vec![
                        column_desc("id", t::TTypeId::BIGINT_TYPE, 1),
                        column_desc("s", t::TTypeId::STRING_TYPE, 2),
                    ],
                }),
            }),
            Q::FetchResults(req) => {
                self.stats.fetch_calls.fetch_add(1, Ordering::Relaxed);
                let start = {
                    let mut ops = self.operations.lock().expect("lock");
                    let Some(fetched) = ops.get_mut(&req.operation_handle.operation_id.guid) else {
                        return R::FetchResults(t::TFetchResultsResp {
                            status: error_status("Invalid OperationHandle"),
                            has_more_rows: None,
                            results: None,
                        });
                    };
                    let start = if req.orientation == t::TFetchOrientation::FETCH_FIRST {
                        0
                    } else {
                        *fetched
                    };
                    let n =
                        (req.max_rows.max(0) as u64).min(self.config.rows.saturating_sub(start));
                    *fetched = start + n;
                    start..start + n
                };
                let more = start.end < self.config.rows;
                R::FetchResults(t::TFetchResultsResp {
                    status: ok(),
                    has_more_rows: Some(more),
                    results: Some(rows(start)),
                })
            }
            other => R::error_for(&other, ok()),
        }
    }
}

fn error_status(message: &str) -> t::TStatus {
    t::TStatus {
        status_code: t::TStatusCode::ERROR_STATUS,
        error_message: Some(message.to_owned()),
        ..success_status()
    }
}

fn column_desc(name: &str, type_id: t::TTypeId, position: i32) -> t::TColumnDesc {
    t::TColumnDesc {
        column_name: name.to_owned(),
        type_desc: t::TTypeDesc {
            types: vec![t::TTypeEntry::PrimitiveEntry(t::TPrimitiveTypeEntry {
                type_: type_id,
                type_qualifiers: None,
            })],
        },
        position,
        comment: None,
    }
}

/// Columnar rows `[range.start, range.end)`: `id` and `s = "row-<id>"`.
fn rows(range: std::ops::Range<u64>) -> t::TRowSet {
    let n = (range.end - range.start) as usize;
    let nulls = vec![0u8; n.div_ceil(8)];
    t::TRowSet {
        start_row_offset: range.start as i64,
        rows: Vec::new(),
        columns: Some(vec![
            t::TColumn::I64Val(t::TI64Column {
                values: range.clone().map(|i| i as i64).collect(),
                nulls: nulls.clone(),
            }),
            t::TColumn::StringVal(t::TStringColumn {
                values: range.map(|i| format!("row-{i}")).collect(),
                nulls,
            }),
        ]),
        binary_columns: None,
        column_count: None,
    }
}
