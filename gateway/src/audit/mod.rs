//! The audit log: one JSON line per statement, per session opened or closed, and per refused
//! login or session, to a file (rotated by size and day) and/or stderr.
//!
//! Calls never wait for it: a record is pushed to a bounded buffer (a fraction of a microsecond)
//! that a writer thread empties every 50 ms; rendering (statement redaction or hashing, JSON) and
//! I/O happen there. When the buffer is full (the disk cannot keep up) the record is dropped and counted
//! (`sparkgate_audit_dropped_total`), never the call delayed. No password, token or cookie is
//! ever part of a record: they are not in its fields, and `SET` values of secret-looking keys are
//! masked in every mode.

mod render;
mod writer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub use render::{render_statement, StatementText};

/// `[audit]`: off unless `file` or `stderr` is set.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Append records to this file (created with mode 0600). Unset: no file.
    pub file: Option<PathBuf>,
    /// Write records to stderr too (e.g. for a log collector on Kubernetes). Default false.
    pub stderr: bool,
    /// What of a statement a record keeps: `redacted` (default: literals replaced by `?`),
    /// `full`, or `hash` (its SHA-256 only).
    pub statement: StatementText,
    /// Rotate the file when it reaches this size (0: never by size). Default 64 MiB.
    pub max_file_bytes: u64,
    /// Rotate the file when the day (UTC) changes. Default true.
    pub rotate_daily: bool,
    /// Rotated files kept (the oldest beyond are deleted). Default 14.
    pub keep_files: usize,
    /// Records waiting to be written, at most; more are dropped and counted. Default 65536.
    pub buffer: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            file: None,
            stderr: false,
            statement: StatementText::Redacted,
            max_file_bytes: 64 << 20,
            rotate_daily: true,
            keep_files: 14,
            buffer: 65_536,
        }
    }
}

/// Where a session comes from: who logged in, from where, over what.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The user the login proved (the session's user may differ: a proxy user).
    pub authenticated_user: String,
    pub client_addr: Option<SocketAddr>,
    /// `binary` or `http`.
    pub transport: &'static str,
}

/// One audit record. Empty fields are left out of the line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Record {
    /// `statement`, `session_open`, `session_close`, `session_refused` or `login_refused`.
    pub event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub transport: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    /// The statement as `audit.statement` says (rendered by the writer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement_sha256: Option<String>,
    /// A statement's final state (`finished`, `error`, `cancelled`, `closed`, `refused`), or why
    /// a session ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_wait_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_fetched: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_fetched: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_hit: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A record on its way to the writer, with the time it happened.
struct Pending {
    at: SystemTime,
    record: Record,
}

/// How often the writer thread takes what the calls handed over.
const WRITE_EVERY: Duration = Duration::from_millis(50);

/// The audit log's handle: cheap to share, [`AuditLog::record`] never blocks.
///
/// Records wait in a bounded buffer the writer thread empties every [`WRITE_EVERY`]: a call
/// pays a short lock and a push, never a system call (no wake-up of a parked writer), and the
/// writer writes a batch with one flush.
pub struct AuditLog {
    pending: Arc<Mutex<Vec<Pending>>>,
    capacity: usize,
    stop: Arc<AtomicBool>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    enabled: bool,
    pub dropped: AtomicU64,
    pub written: Arc<AtomicU64>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Starts the writer thread (if the config turns the log on); fails if the file cannot be
    /// opened.
    pub fn start(config: &AuditConfig) -> std::io::Result<Self> {
        if config.file.is_none() && !config.stderr {
            return Ok(Self::off());
        }
        let mut writer = writer::Writer::open(config.clone())?;
        let pending: Arc<Mutex<Vec<Pending>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let thread = {
            let (pending, stop, written) = (pending.clone(), stop.clone(), written.clone());
            std::thread::Builder::new()
                .name("sparkgate-audit".into())
                .spawn(move || loop {
                    let stopping = stop.load(Ordering::Acquire);
                    let batch = std::mem::take(&mut *pending.lock().expect("audit"));
                    let count = batch.len() as u64;
                    for record in batch {
                        writer.write(record.at, record.record);
                    }
                    writer.flush();
                    written.fetch_add(count, Ordering::Relaxed);
                    if stopping {
                        return;
                    }
                    std::thread::park_timeout(WRITE_EVERY);
                })?
        };
        Ok(Self {
            pending,
            capacity: config.buffer.max(1),
            stop,
            writer: Mutex::new(Some(thread)),
            enabled: true,
            dropped: AtomicU64::new(0),
            written,
        })
    }

    /// A log that records nothing.
    pub fn off() -> Self {
        Self {
            pending: Arc::default(),
            capacity: 0,
            stop: Arc::new(AtomicBool::new(true)),
            writer: Mutex::new(None),
            enabled: false,
            dropped: AtomicU64::new(0),
            written: Arc::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Hands a record to the writer; never waits (a full buffer drops it, counted).
    pub fn record(&self, record: Record) {
        if !self.enabled || self.stop.load(Ordering::Relaxed) {
            return;
        }
        let pending = Pending {
            at: SystemTime::now(),
            record,
        };
        let mut buffer = self.pending.lock().expect("audit");
        if buffer.len() < self.capacity {
            buffer.push(pending);
            return;
        }
        drop(buffer);
        if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!("audit log buffer full: records are being dropped (audit.buffer; is the disk slow?)");
        }
    }

    /// Writes what is buffered and stops the writer (shutdown), within `within`.
    pub fn close(&self, within: Duration) {
        self.stop.store(true, Ordering::Release);
        let Some(thread) = self.writer.lock().expect("audit").take() else {
            return;
        };
        thread.thread().unpark();
        let deadline = std::time::Instant::now() + within;
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            tracing::warn!("audit log writer did not finish within the shutdown deadline");
        }
    }
}

/// A statement longer than this is kept cut (its hash is of the whole): records wait in memory,
/// and a client may send statements of many megabytes.
const MAX_STATEMENT_BYTES: usize = 64 << 10;

/// `record` with `sql` as its statement (cut past [`MAX_STATEMENT_BYTES`], hashed whole).
pub fn with_statement(mut record: Record, sql: &str) -> Record {
    if sql.len() <= MAX_STATEMENT_BYTES {
        record.statement = Some(sql.to_owned());
        return record;
    }
    let mut end = MAX_STATEMENT_BYTES;
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    record.statement_sha256 = Some(render::sha256_hex(sql));
    record.statement = Some(format!("{}… ({} bytes in all)", &sql[..end], sql.len()));
    record
}

/// Cuts a name a client sent before it reaches a record (refused logins: anything may be in it).
pub fn truncated(name: &str) -> String {
    truncated_to(name, 64)
}

/// `text` cut to `max` characters (an ellipsis marks the cut).
pub fn truncated_to(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests;
