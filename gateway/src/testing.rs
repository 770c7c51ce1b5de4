//! A fast in-process HiveServer2 server standing in for a Spark Thrift Server in unit tests and
//! benchmarks, so the gateway's own cost is visible. End-to-end tests use a real one.
//!
//! `FakeSts::new().rows(1_000_000).start().await` serves, for any statement, a result of two
//! columns (`id bigint`, `s string`) with the configured row count, in batches of the size the
//! client asks for.
//!
//! [`FakeLauncher`] is a [`Launcher`] whose drivers are such fake servers, each serving after a
//! configurable cold start, so a real [`crate::pool::DriverPool`] and its autoscaler can be
//! driven in tests and benchmarks without Spark.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use futures::future::BoxFuture;
use futures::{FutureExt, SinkExt};
use hive_thrift::frame::{Framing, MessageCodec};
use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{success_status, Hs2Request, Hs2Response, MessageHeader};
use hive_thrift::sasl::{SaslServer, DEFAULT_MAX_NEGOTIATION_FRAME};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedWrite;
use tokio_util::sync::CancellationToken;

use crate::launcher::{DriverSpec, Health, LaunchError, LaunchedDriver, Launcher};
use crate::session::table::mint_identifier;

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
                    ..hive_thrift::message::operation_status_reply(
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

/// A [`Launcher`] of in-process fake drivers: [`Launcher::start`] records a driver
/// (`<tenant>-fake-<n>`) at once, [`Launcher::wait_ready`] waits the cold start and then starts
/// a [`FakeSts`] for it, [`Launcher::stop`] drops that server. [`FakeLauncher::kill`] drops it
/// as if the process had died: the driver's health turns `Dead`.
pub struct FakeLauncher {
    /// How long a driver takes from `start` until it serves.
    cold_start: Duration,
    /// What each driver serves.
    server: FakeSts,
    drivers: Mutex<FakeDrivers>,
}

#[derive(Default)]
struct FakeDrivers {
    /// Drivers started so far (numbers the ids, and counts launches).
    started: u64,
    /// Drivers stopped so far.
    stopped: u64,
    live: Vec<FakeDriver>,
}

struct FakeDriver {
    launched: LaunchedDriver,
    /// Serving once the cold start is over; `None` while starting and after a kill.
    server: Option<RunningFakeSts>,
    /// Set by [`FakeLauncher::kill`]: the "process" is gone until the pool stops it.
    killed: bool,
}

impl Default for FakeLauncher {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeLauncher {
    /// Drivers that serve at once, with [`FakeSts::new`]'s defaults.
    pub fn new() -> Self {
        Self {
            cold_start: Duration::ZERO,
            server: FakeSts::new(),
            drivers: Mutex::default(),
        }
    }

    /// Time from `start` until a driver serves.
    pub fn cold_start(mut self, delay: Duration) -> Self {
        self.cold_start = delay;
        self
    }

    /// What every driver serves.
    pub fn server(mut self, server: FakeSts) -> Self {
        self.server = server;
        self
    }

    /// Kills a driver as a crash would: its server goes away and its health is `Dead` until the
    /// pool stops it. `false` if there is no such live driver.
    pub fn kill(&self, id: &str) -> bool {
        let server = {
            let mut drivers = self.drivers.lock().expect("fake launcher");
            let Some(d) = drivers
                .live
                .iter_mut()
                .find(|d| d.launched.id == id && !d.killed)
            else {
                return false;
            };
            d.killed = true;
            d.server.take()
        }; // lock released before the server is dropped
        drop(server);
        true
    }

    /// Drivers that exist now (starting, serving, or killed but not yet stopped).
    pub fn live(&self) -> usize {
        self.drivers.lock().expect("fake launcher").live.len()
    }

    /// Drivers started since this launcher was made.
    pub fn launches(&self) -> u64 {
        self.drivers.lock().expect("fake launcher").started
    }

    /// Drivers stopped since this launcher was made.
    pub fn stops(&self) -> u64 {
        self.drivers.lock().expect("fake launcher").stopped
    }

    /// The counters of a serving driver's fake server.
    pub fn server_stats(&self, id: &str) -> Option<Arc<FakeStsStats>> {
        let drivers = self.drivers.lock().expect("fake launcher");
        drivers
            .live
            .iter()
            .find(|d| d.launched.id == id)
            .and_then(|d| d.server.as_ref().map(|s| s.stats.clone()))
    }

    async fn ready(&self, driver: &LaunchedDriver) -> Result<LaunchedDriver, LaunchError> {
        tokio::time::sleep(self.cold_start).await;
        let server = self.server.clone().start().await;
        let address = server.addr.to_string();
        let mut drivers = self.drivers.lock().expect("fake launcher");
        let failed = |reason: &str| LaunchError::Failed {
            id: driver.id.clone(),
            reason: reason.into(),
        };
        let Some(d) = drivers.live.iter_mut().find(|d| d.launched.id == driver.id) else {
            return Err(failed("stopped while starting"));
        };
        if d.killed {
            return Err(failed("killed while starting"));
        }
        d.launched.address = address;
        d.server = Some(server);
        Ok(d.launched.clone())
    }
}

impl Launcher for FakeLauncher {
    fn start<'a>(
        &'a self,
        spec: &'a DriverSpec,
    ) -> BoxFuture<'a, Result<LaunchedDriver, LaunchError>> {
        let mut drivers = self.drivers.lock().expect("fake launcher");
        drivers.started += 1;
        let launched = LaunchedDriver {
            id: format!("{}-fake-{}", spec.tenant, drivers.started),
            tenant: spec.tenant.clone(),
            address: String::new(),
            pid: 0,
        };
        drivers.live.push(FakeDriver {
            launched: launched.clone(),
            server: None,
            killed: false,
        });
        std::future::ready(Ok(launched)).boxed()
    }

    fn wait_ready<'a>(
        &'a self,
        driver: &'a LaunchedDriver,
    ) -> BoxFuture<'a, Result<LaunchedDriver, LaunchError>> {
        self.ready(driver).boxed()
    }

    fn stop<'a>(&'a self, driver: &'a LaunchedDriver) -> BoxFuture<'a, ()> {
        let removed = {
            let mut drivers = self.drivers.lock().expect("fake launcher");
            let at = drivers.live.iter().position(|d| d.launched.id == driver.id);
            let removed = at.map(|i| drivers.live.remove(i));
            if removed.is_some() {
                drivers.stopped += 1;
            }
            removed
        }; // lock released before the server is dropped
        drop(removed);
        std::future::ready(()).boxed()
    }

    fn list(&self) -> BoxFuture<'_, Vec<(LaunchedDriver, Health)>> {
        let listed = self
            .drivers
            .lock()
            .expect("fake launcher")
            .live
            .iter()
            .filter(|d| !d.killed)
            .map(|d| {
                let health = match &d.server {
                    Some(_) => Health::Ready {
                        address: d.launched.address.clone(),
                    },
                    None => Health::Alive,
                };
                (d.launched.clone(), health)
            })
            .collect();
        std::future::ready(listed).boxed()
    }

    fn health(&self, driver: &LaunchedDriver) -> Health {
        let drivers = self.drivers.lock().expect("fake launcher");
        match drivers.live.iter().find(|d| d.launched.id == driver.id) {
            None => Health::Dead("stopped".into()),
            Some(d) if d.killed => Health::Dead("killed (fake launcher)".into()),
            Some(d) => match &d.server {
                Some(_) => Health::Ready {
                    address: d.launched.address.clone(),
                },
                None => Health::Alive,
            },
        }
    }
}
