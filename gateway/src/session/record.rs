//! What sparkgate records of each statement for the audit log and the usage book: filled in as
//! the statement goes (queue wait, final state, rows and bytes fetched) and handed over once,
//! when the last reference to it goes (its operation closed, or its session ended).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hive_thrift::generated::tcliservice as t;

use crate::audit::{AuditLog, Record};
use crate::usage::{StatementUse, Usage};

use super::table::Session;

/// Where records go.
#[derive(Debug, Clone)]
pub struct Recorders {
    pub audit: Arc<AuditLog>,
    pub usage: Arc<Usage>,
}

/// One statement's record in the making.
#[derive(Debug)]
pub struct StatementRecord {
    recorders: Recorders,
    tenant: String,
    base: Record,
    started: Instant,
    outcome: Mutex<Outcome>,
    rows: AtomicU64,
    bytes: AtomicU64,
    cache_hit: AtomicBool,
}

#[derive(Debug, Default)]
struct Outcome {
    operation_id: Option<String>,
    queue_wait: Duration,
    /// When it reached its driver (after the queue).
    on_driver: Option<Instant>,
    ended: Option<Instant>,
    state: Option<&'static str>,
    error_code: Option<String>,
    error: Option<String>,
}

impl StatementRecord {
    pub fn new(recorders: &Recorders, session: &Session, statement: &str) -> Arc<Self> {
        let base = session_record("statement", session, None);
        // Only with the log on: the usage book does not need the text.
        let base = if recorders.audit.enabled() {
            crate::audit::with_statement(base, statement)
        } else {
            base
        };
        Arc::new(Self {
            recorders: recorders.clone(),
            tenant: session.tenant.clone(),
            base,
            started: Instant::now(),
            outcome: Mutex::default(),
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            cache_hit: AtomicBool::new(false),
        })
    }

    fn outcome(&self) -> std::sync::MutexGuard<'_, Outcome> {
        self.outcome.lock().expect("statement record")
    }

    pub fn operation(&self, id: String) {
        self.outcome().operation_id = Some(id);
    }

    pub fn cache_hit(&self) {
        self.cache_hit.store(true, Ordering::Relaxed);
        self.ended("finished", None);
    }

    /// It waited this long in the tenant's queue, and now runs on its driver.
    pub fn admitted(&self, waited: Duration) {
        let mut outcome = self.outcome();
        outcome.queue_wait = waited;
        outcome.on_driver = Some(Instant::now());
    }

    /// A fetch of its results carried `rows` rows in `bytes` bytes.
    pub fn fetched(&self, rows: u64, bytes: u64) {
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// It ended in `state` (the first end seen counts).
    pub fn ended(&self, state: &'static str, error: Option<&t::TStatus>) {
        let mut outcome = self.outcome();
        if outcome.state.is_some() {
            return;
        }
        outcome.ended = Some(Instant::now());
        outcome.state = Some(state);
        if let Some(status) = error {
            outcome.error_code = status.sql_state.clone();
            outcome.error = status.error_message.clone().map(|m| first_line(&m));
        }
    }

    /// It ended as a driver's final status says.
    pub fn ended_as(&self, status: &t::TGetOperationStatusResp) {
        let state = match status.operation_state {
            Some(t::TOperationState::FINISHED_STATE) => "finished",
            Some(t::TOperationState::CANCELED_STATE) => "cancelled",
            Some(t::TOperationState::CLOSED_STATE) => "closed",
            Some(t::TOperationState::TIMEDOUT_STATE) => "timed_out",
            _ => "error",
        };
        let error = (state != "finished").then(|| t::TStatus {
            status_code: t::TStatusCode::ERROR_STATUS,
            info_messages: None,
            sql_state: status.sql_state.clone(),
            error_code: status.error_code,
            error_message: status.error_message.clone(),
        });
        self.ended(state, error.as_ref());
    }
}

impl Drop for StatementRecord {
    fn drop(&mut self) {
        let outcome = std::mem::take(&mut *self.outcome());
        let now = Instant::now();
        let state = outcome.state.unwrap_or("closed");
        let rows = *self.rows.get_mut();
        let bytes = *self.bytes.get_mut();
        let cache_hit = *self.cache_hit.get_mut();
        self.recorders.usage.statement(
            &self.tenant,
            &StatementUse {
                failed: !matches!(state, "finished" | "closed"),
                cache_hit,
                rows,
                bytes,
                queue_wait: outcome.queue_wait,
            },
        );
        if !self.recorders.audit.enabled() {
            return;
        }
        let run_from = outcome.on_driver.unwrap_or(self.started);
        let run = outcome
            .ended
            .unwrap_or(now)
            .saturating_duration_since(run_from);
        let mut record = std::mem::take(&mut self.base);
        record.operation_id = outcome.operation_id;
        record.state = Some(state.to_owned());
        record.queue_wait_ms = Some(outcome.queue_wait.as_millis() as u64);
        record.run_ms = Some(run.as_millis() as u64);
        record.rows_fetched = Some(rows);
        record.bytes_fetched = Some(bytes);
        record.cache_hit = Some(cache_hit);
        record.error_code = outcome.error_code;
        record.error = outcome.error;
        self.recorders.audit.record(record);
    }
}

/// A record's error: the first line of the driver's message (no stack frames), at most 500
/// characters.
fn first_line(message: &str) -> String {
    let line = message.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    crate::audit::truncated_to(line, 500)
}

/// A session event's record.
pub fn session_record(event: &'static str, session: &Session, state: Option<&str>) -> Record {
    Record {
        event,
        user: Some(session.origin.authenticated_user.clone()),
        effective_user: Some(session.user.clone()),
        client_addr: session.origin.client_addr.map(|a| a.to_string()),
        transport: session.origin.transport,
        tenant: Some(session.tenant.clone()),
        driver: Some(session.backend_addr.clone()),
        session_id: Some(session.id()),
        state: state.map(str::to_owned),
        ..Record::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hive_thrift::generated::tcliservice::TSessionHandle;

    #[test]
    fn a_statement_record_carries_its_queue_wait_rows_and_end() {
        let dir = std::env::temp_dir().join(format!("sparkgate-record-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = crate::audit::AuditConfig {
            file: Some(dir.join("audit.log")),
            ..Default::default()
        };
        let recorders = Recorders {
            audit: Arc::new(AuditLog::start(&config).unwrap()),
            usage: Arc::new(Usage::load(Default::default())),
        };
        let handle = TSessionHandle {
            session_id: crate::session::table::mint_identifier(),
        };
        let session = Session::new(
            handle.clone(),
            crate::session::Owner::Connection(1),
            "ann".into(),
            "t".into(),
            "127.0.0.1:1".into(),
            handle,
        );
        let record = StatementRecord::new(&recorders, &session, "SELECT 1");
        record.admitted(Duration::from_millis(2_500));
        record.fetched(3, 300);
        record.ended("finished", None);
        drop(record);
        recorders.audit.close(Duration::from_secs(5));
        let text = std::fs::read_to_string(dir.join("audit.log")).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["queue_wait_ms"], 2_500);
        assert_eq!(line["rows_fetched"], 3);
        assert_eq!(line["state"], "finished");
        assert_eq!(recorders.usage.totals()["t"].queue_wait_seconds, 2.5);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
