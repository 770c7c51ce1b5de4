//! A fast in-process HiveServer2 server standing in for a Spark Thrift Server in unit tests and
//! benchmarks, so the gateway's own cost is visible. End-to-end tests use a real one.
//!
//! `FakeSts::new().rows(1_000_000).start().await` serves, for any statement, a result of two
//! columns (`id bigint`, `s string`) with the configured row count, in batches of the size the
//! client asks for.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use futures::SinkExt;
use hive_thrift::frame::{Framing, MessageCodec};
use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{success_status, Hs2Request, Hs2Response, MessageHeader};
use hive_thrift::sasl::{SaslServer, DEFAULT_MAX_NEGOTIATION_FRAME};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedWrite;
use tokio_util::sync::CancellationToken;

use crate::session::mint_identifier;

/// Builder and handle of a fake Spark Thrift Server.
#[derive(Debug, Clone)]
pub struct FakeSts {
    rows: u64,
    framing: Framing,
}

/// Counters a test can read back.
#[derive(Debug, Default)]
pub struct FakeStsStats {
    pub open_sessions: AtomicU64,
    pub closed_sessions: AtomicU64,
    pub status_calls: AtomicU64,
    pub fetch_calls: AtomicU64,
    pub cancel_calls: AtomicU64,
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
        }
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
            operations: Mutex::new(HashMap::new()),
        });
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => return,
                    },
                    _ = stopped.cancelled() => return,
                };
                let shared = shared.clone();
                let stopped = stopped.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = shared.serve(stream) => {}
                        _ = stopped.cancelled() => {}
                    }
                });
            }
        });
        RunningFakeSts { addr, stats, stop }
    }
}

struct Shared {
    config: FakeSts,
    stats: Arc<FakeStsStats>,
    /// Operation guid → rows already fetched.
    operations: Mutex<HashMap<Vec<u8>, u64>>,
}

impl Shared {
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
        let (mut reader, writer) = stream.into_split();
        let mut decoder = MessageCodec::new(self.config.framing, usize::MAX >> 1);
        let mut writer = FramedWrite::new(
            writer,
            MessageCodec::new(self.config.framing, usize::MAX >> 1),
        );
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
            let mut out = Vec::new();
            self.answer(request).encode_reply(header.seqid, &mut out);
            if writer.send(out).await.is_err() {
                return Ok(());
            }
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
                        session_id: mint_identifier(),
                    }),
                    configuration: Some(Default::default()),
                })
            }
            Q::CloseSession(_) => {
                self.stats.closed_sessions.fetch_add(1, Ordering::Relaxed);
                R::CloseSession(t::TCloseSessionResp { status: ok() })
            }
            Q::ExecuteStatement(_) => {
                let id = mint_identifier();
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
                    ..crate::proxy::operation_status_response(
                        ok(),
                        Some(t::TOperationState::FINISHED_STATE),
                    )
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
            other => crate::proxy::error_response(&other, ok()),
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
