//! The call handler's side of the cache: a statement served from an entry without a driver, a
//! miss filled when the statement finishes, fetches and metadata answered from an entry, and
//! the session state and writes the cache follows.
//!
//! A miss runs on the driver as any statement (status, progress and cancel as usual); when
//! sparkgate sees it finish, it fetches the whole result itself (up to
//! `cache.max_result_bytes`; over that it rewinds the driver's result with `FETCH_FIRST` and
//! the client fetches it from the driver), stores it, and answers the client's fetches from it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{success_status, Hs2Request, Hs2Response};
use tracing::{debug, info};

use super::rowset::Rows;
use super::rules::{self, Meaning};
use super::{CacheKey, CachedResult, FlightGuard, Lookup};
use crate::error::GatewayError;
use crate::session::reply::encoded;
use crate::session::table::{mint_identifier, OperationEntry, OperationExtras, Session};
use crate::session::{CallContext, CallHandler, Reply};

/// Rows asked of the driver per call while filling (a batch stays well under the default
/// message size limit for ordinary rows).
const FILL_BATCH: i64 = 2_000;

/// What the cache does for one operation.
#[derive(Debug)]
pub enum OpCache {
    /// A miss: when the statement finishes, sparkgate fetches its result into the cache.
    Fill(Box<Fill>),
    /// Answered from a result: where the client's next fetch starts.
    Serve {
        result: Arc<CachedResult>,
        next: usize,
        /// The line for the operation log, until the client has read it.
        log_line: Option<String>,
    },
    /// A statement changing session state: applied to the session's cache state when it ends.
    Change(Meaning),
    /// A write: its tenant's results reading these tables are dropped again when it ends.
    Write(Option<Vec<String>>),
    Done,
}

#[derive(Debug)]
pub struct Fill {
    key: CacheKey,
    tables: Vec<String>,
    generation: u64,
    ttl: Duration,
    /// Identical statements wait until this is dropped.
    _flight: FlightGuard,
}

/// An operation's cache state (shared by the table's copies of the entry). The async lock is
/// held while a fill fetches, so a client's fetch waits for it rather than racing it.
#[derive(Debug, Clone)]
pub struct OpCacheHandle {
    /// Served from the cache alone: the driver never heard of it.
    pub gateway_only: bool,
    pub state: Arc<tokio::sync::Mutex<OpCache>>,
}

impl OpCacheHandle {
    pub fn new(state: OpCache, gateway_only: bool) -> Self {
        Self {
            gateway_only,
            state: Arc::new(tokio::sync::Mutex::new(state)),
        }
    }
}

/// What a statement gets from the cache before it runs.
pub enum Plan {
    Hit(Arc<CachedResult>),
    /// Run it on the driver; the operation carries this.
    Run(Option<OpCache>),
}

impl CallHandler {
    /// Reads a statement for the cache: a hit, or how its operation follows it. Waits (bounded)
    /// for an identical statement already filling an entry.
    pub(in crate::session) async fn cache_plan(
        &self,
        ctx: &CallContext,
        session: &Session,
        statement: &t::TExecuteStatementReq,
    ) -> Result<Plan, GatewayError> {
        let sql = statement.statement.as_str();
        // Settings for this statement alone: not in the key, so not cached.
        let overlay = statement
            .conf_overlay
            .as_ref()
            .is_some_and(|c| !c.is_empty());
        let reuse = !self.config.server.session_reuse_ttl.is_zero();
        if !self.cache.enabled() && !reuse {
            return Ok(Plan::Run(None));
        }
        let meaning = rules::classify(sql);
        let (normalized, tables) = match meaning {
            Meaning::Read { normalized, tables } => (normalized, tables),
            Meaning::Uncacheable(why) => {
                debug!(why, "statement not cacheable");
                return Ok(Plan::Run(None));
            }
            Meaning::Write(tables) => {
                session.cache_state().mark_changed();
                info!(tenant = %session.tenant, ?tables, "a write: dropping the tenant's cached results that read its tables");
                self.cache.invalidate(&session.tenant, tables.as_deref());
                return Ok(Plan::Run(Some(OpCache::Write(tables))));
            }
            // PyHive opens every connection with `USE default`: no change at all.
            Meaning::Use(database) if session.cache_state().database() == database => {
                return Ok(Plan::Run(None));
            }
            change => {
                session.cache_state().begin_change();
                return Ok(Plan::Run(Some(OpCache::Change(change))));
            }
        };
        let Some(ttl) = session
            .cache_ttl
            .filter(|_| !overlay && self.cache.enabled())
        else {
            return Ok(Plan::Run(None));
        };
        let Some(key) =
            session
                .cache_state()
                .key(&session.tenant, &session.cache_scope, &normalized, &tables)
        else {
            return Ok(Plan::Run(None));
        };
        let deadline = tokio::time::Instant::now() + self.cache.config.coalesce_wait;
        loop {
            let generation = self.cache.generation(&session.tenant);
            let Some(lookup) = self.cache.lookup(&key, &session.owner) else {
                return Ok(Plan::Run(None));
            };
            match lookup {
                Lookup::Hit(result) => {
                    self.cache.counters.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(Plan::Hit(result));
                }
                Lookup::Lead(flight) => {
                    self.cache.counters.misses.fetch_add(1, Ordering::Relaxed);
                    return Ok(Plan::Run(Some(OpCache::Fill(Box::new(Fill {
                        key,
                        tables,
                        generation,
                        ttl,
                        _flight: flight,
                    })))));
                }
                Lookup::Wait(mut done) => {
                    self.cache
                        .counters
                        .coalesced
                        .fetch_add(1, Ordering::Relaxed);
                    debug!("an identical statement is filling the cache: waiting for it");
                    tokio::select! {
                        _ = done.wait_for(|d| *d) => {}
                        _ = tokio::time::sleep_until(deadline) => {
                            return Ok(Plan::Run(None));
                        }
                        _ = ctx.client_gone.cancelled() => return Err(GatewayError::ClientGone),
                    }
                }
            }
        }
    }

    /// ExecuteStatement answered from a cached result: an operation only sparkgate knows,
    /// finished, with its result ready.
    pub(in crate::session) fn answer_from_cache(
        &self,
        session: &Arc<Session>,
        result: Arc<CachedResult>,
        record: Option<Arc<crate::session::record::StatementRecord>>,
        seqid: i32,
    ) -> Result<Reply, GatewayError> {
        let max = self.config.server.max_operations_per_session;
        let place = session
            .reserve_operation(max)
            .ok_or(GatewayError::TooManyOperations { max })?;
        let age = result.created.elapsed().as_secs();
        let backend_handle = t::TOperationHandle {
            operation_id: mint_identifier(),
            operation_type: t::TOperationType::EXECUTE_STATEMENT,
            has_result_set: true,
            modified_row_count: None,
        };
        let state = OpCache::Serve {
            result,
            next: 0,
            log_line: Some(format!("served from sparkgate cache, age {age} s")),
        };
        if let Some(record) = &record {
            record.cache_hit();
        }
        let handle = self.table.add_operation(
            session,
            backend_handle,
            false,
            OperationExtras {
                cache: Some(OpCacheHandle::new(state, true)),
                record,
                ..Default::default()
            },
        );
        place.keep();
        let finished = t::TGetOperationStatusResp {
            has_result_set: Some(true),
            ..hive_thrift::message::operation_status_reply(
                success_status(),
                Some(t::TOperationState::FINISHED_STATE),
            )
        };
        let mut out = Vec::new();
        Hs2Response::GetOperationStatus(finished).encode_reply(0, &mut out);
        self.table
            .set_final_status(&handle, Some(bytes::Bytes::from(out)));
        info!(session.id = %session.id(), age_secs = age, "statement served from the cache");
        let resp = t::TExecuteStatementResp {
            status: success_status(),
            operation_handle: Some(handle),
        };
        Ok(encoded(Hs2Response::ExecuteStatement(resp), seqid))
    }

    /// The statement of `op` reached a final state (`finished`: successfully): fill, apply or
    /// invalidate what its cache state says.
    pub(in crate::session) async fn cache_on_final(&self, op: &OperationEntry, finished: bool) {
        let Some(cache) = &op.cache else { return };
        let mut state = cache.state.lock().await;
        match std::mem::replace(&mut *state, OpCache::Done) {
            OpCache::Fill(fill) if finished => {
                let Fill {
                    key,
                    tables,
                    generation,
                    ttl,
                    _flight,
                } = *fill;
                if let Some(result) = self.fill(op, tables, ttl).await {
                    let result = Arc::new(result);
                    let rows = result.rows.row_count();
                    let stored = self.cache.store_shared(key, result.clone(), generation);
                    debug!(rows, stored, "result fetched for the cache");
                    *state = OpCache::Serve {
                        result,
                        next: 0,
                        log_line: None,
                    };
                }
            }
            OpCache::Change(meaning) => op.session.cache_state().end_change(&meaning, finished),
            OpCache::Write(tables) => self.cache.invalidate(&op.session.tenant, tables.as_deref()),
            serving @ OpCache::Serve { .. } => *state = serving,
            _ => {}
        }
    }

    /// The operation is being closed: a write not yet seen to end drops its results now.
    pub(in crate::session) async fn cache_on_close(&self, op: &OperationEntry) {
        let Some(cache) = &op.cache else { return };
        let state = cache.state.lock().await;
        if let OpCache::Write(tables) = &*state {
            self.cache.invalidate(&op.session.tenant, tables.as_deref());
        }
    }

    /// Fetches a finished statement's whole result from its driver. `None`: not kept (too
    /// large, row-based, or the driver failed), and the driver's cursor is back at the start.
    async fn fill(
        &self,
        op: &OperationEntry,
        tables: Vec<String>,
        ttl: Duration,
    ) -> Option<CachedResult> {
        let metadata = Hs2Request::GetResultSetMetadata(t::TGetResultSetMetadataReq {
            operation_handle: op.backend_handle.clone(),
        });
        let Ok(Hs2Response::GetResultSetMetadata(t::TGetResultSetMetadataResp {
            status,
            schema: Some(schema),
        })) = self.session_call(&op.session, &metadata).await
        else {
            return None;
        };
        if !matches!(status.status_code, t::TStatusCode::SUCCESS_STATUS) {
            return None;
        }
        let fetch = |orientation, max_rows| {
            Hs2Request::FetchResults(t::TFetchResultsReq {
                operation_handle: op.backend_handle.clone(),
                orientation,
                max_rows,
                fetch_type: Some(0),
            })
        };
        let mut rows = Rows::new();
        let kept = loop {
            let next = self
                .session_call(
                    &op.session,
                    &fetch(t::TFetchOrientation::FETCH_NEXT, FILL_BATCH),
                )
                .await;
            let Ok(Hs2Response::FetchResults(resp)) = next else {
                break false;
            };
            let Some(batch) = resp
                .results
                .filter(|_| matches!(resp.status.status_code, t::TStatusCode::SUCCESS_STATUS))
            else {
                break false;
            };
            let before = rows.row_count();
            if rows.push(&batch).is_err() {
                break false;
            }
            if rows.memory_bytes() as u64 > self.cache.config.max_result_bytes {
                self.cache
                    .counters
                    .too_large
                    .fetch_add(1, Ordering::Relaxed);
                debug!("result over cache.max_result_bytes: the client fetches it from the driver");
                break false;
            }
            if rows.row_count() == before {
                break true;
            }
        };
        if !kept {
            // The client reads the result from the driver, from its first row.
            let rewind = fetch(t::TFetchOrientation::FETCH_FIRST, 0);
            if let Err(e) = self.session_call(&op.session, &rewind).await {
                debug!(error = %e, "rewinding the driver's result failed");
            }
            return None;
        }
        Some(CachedResult {
            schema,
            rows,
            tables,
            created: std::time::Instant::now(),
            ttl,
        })
    }

    /// FetchResults of results or log from a cached result; `None`: ask the driver.
    pub(in crate::session) async fn cached_fetch(
        &self,
        op: &OperationEntry,
        req: &t::TFetchResultsReq,
        seqid: i32,
    ) -> Option<Reply> {
        let cache = op.cache.as_ref()?;
        let mut state = cache.state.lock().await;
        let log = req.fetch_type.unwrap_or(0) == 1;
        match &mut *state {
            OpCache::Serve {
                result,
                next,
                log_line,
            } => {
                let results = if log {
                    let lines: Vec<String> = log_line.take().into_iter().collect();
                    if !cache.gateway_only {
                        return None;
                    }
                    let mut rows = None;
                    crate::session::client::append_log_lines(&mut rows, lines);
                    rows
                } else {
                    if req.orientation == t::TFetchOrientation::FETCH_FIRST {
                        *next = 0;
                    }
                    let max = usize::try_from(req.max_rows.max(0)).unwrap_or(usize::MAX);
                    let rows = result.rows.slice(*next, max);
                    *next = (*next + max).min(result.rows.row_count());
                    Some(rows)
                };
                let resp = t::TFetchResultsResp {
                    status: success_status(),
                    has_more_rows: Some(false),
                    results,
                };
                Some(encoded(Hs2Response::FetchResults(resp), seqid))
            }
            // The client fetches before sparkgate saw the statement finish: it reads from the
            // driver, and nothing is cached.
            OpCache::Fill(_) if !log => {
                *state = OpCache::Done;
                None
            }
            _ => None,
        }
    }

    /// GetResultSetMetadata from a cached result; `None`: ask the driver.
    pub(in crate::session) async fn cached_metadata(
        &self,
        op: &OperationEntry,
        seqid: i32,
    ) -> Option<Reply> {
        let state = op.cache.as_ref()?.state.lock().await;
        let OpCache::Serve { result, .. } = &*state else {
            return None;
        };
        let resp = t::TGetResultSetMetadataResp {
            status: success_status(),
            schema: Some(result.schema.clone()),
        };
        Some(encoded(Hs2Response::GetResultSetMetadata(resp), seqid))
    }
}
