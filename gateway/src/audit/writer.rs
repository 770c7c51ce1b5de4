//! The writer thread's side: renders records as JSON lines, appends them to the file (rotated by
//! size and by UTC day) and/or stderr.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{render_statement, AuditConfig, Record};

/// A line as written: the time first, then the record's fields.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    #[serde(flatten)]
    record: &'a Record,
}

pub(super) struct Writer {
    config: AuditConfig,
    file: Option<OpenFile>,
}

struct OpenFile {
    out: BufWriter<File>,
    bytes: u64,
    day: u64,
}

fn day_of(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 86_400
}

impl Writer {
    pub(super) fn open(config: AuditConfig) -> std::io::Result<Self> {
        let file = match &config.file {
            Some(path) => Some(open_append(path)?),
            None => None,
        };
        Ok(Self { config, file })
    }

    pub(super) fn write(&mut self, at: SystemTime, mut record: Record) {
        if let Some(sql) = record.statement.take() {
            let (text, hash) = render_statement(&sql, self.config.statement);
            record.statement = text;
            // A cut statement came with the hash of the whole.
            record.statement_sha256.get_or_insert(hash);
        }
        let line = Line {
            time: humantime_serde::re::humantime::format_rfc3339_millis(at).to_string(),
            record: &record,
        };
        let mut text = match serde_json::to_string(&line) {
            Ok(text) => text,
            Err(e) => {
                tracing::warn!(error = %e, "audit record not serializable");
                return;
            }
        };
        text.push('\n');
        if self.config.stderr {
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
        if let Err(e) = self.append(at, text.as_bytes()) {
            tracing::warn!(error = %e, "could not write the audit log file");
        }
    }

    fn append(&mut self, at: SystemTime, line: &[u8]) -> std::io::Result<()> {
        let Some(path) = self.config.file.clone() else {
            return Ok(());
        };
        let rotate = self.file.as_ref().is_some_and(|f| {
            (self.config.max_file_bytes > 0
                && f.bytes > 0
                && f.bytes + line.len() as u64 > self.config.max_file_bytes)
                || (self.config.rotate_daily && f.bytes > 0 && f.day != day_of(at))
        });
        if rotate || self.file.is_none() {
            if let Some(mut old) = self.file.take() {
                old.out.flush()?;
                drop(old);
                rotate_file(&path, at, self.config.keep_files)?;
            }
            self.file = Some(open_append(&path)?);
        }
        let file = self.file.as_mut().expect("opened above");
        file.out.write_all(line)?;
        file.bytes += line.len() as u64;
        file.day = day_of(at);
        Ok(())
    }

    /// Once per batch: a crash loses no more than the batch being written and what waits.
    pub(super) fn flush(&mut self) {
        if let Some(file) = self.file.as_mut() {
            let _ = file.out.flush();
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<OpenFile> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let meta = file.metadata()?;
    let day = meta.modified().map(day_of).unwrap_or(0);
    Ok(OpenFile {
        bytes: meta.len(),
        day,
        out: BufWriter::new(file),
    })
}

/// Renames `path` to `path.<UTC time>` and deletes the oldest rotated files beyond `keep`.
fn rotate_file(path: &Path, at: SystemTime, keep: usize) -> std::io::Result<()> {
    let stamp = humantime_serde::re::humantime::format_rfc3339_micros(at)
        .to_string()
        .replace(':', "");
    let rotated = PathBuf::from(format!("{}.{stamp}", path.display()));
    std::fs::rename(path, &rotated)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefix = format!(
        "{}.",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    let mut old: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    // The time stamps sort as text.
    old.sort();
    let excess = old.len().saturating_sub(keep);
    for path in &old[..excess] {
        std::fs::remove_file(path)?;
    }
    Ok(())
}
