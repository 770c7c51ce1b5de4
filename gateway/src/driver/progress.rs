//! A statement's progress, read from its driver's Spark UI (REST API): the Spark jobs of the
//! statement's job group, which Spark's Thrift server names after the driver-side operation
//! handle. sparkgate shows them as Hive-style operation log lines (what Superset parses for its
//! progress bar) and as HS2's progress update (what beeline draws).
//!
//! Only running jobs are asked for (`jobs?status=running`, a few hundred bytes; the whole job
//! list of a long-lived driver is megabytes). Which jobs a statement ran before is remembered
//! per operation ([`ProgressLog`]), so the Nth job seen is "Job N". Spark cannot say how many
//! jobs a statement will run (adaptive execution adds some as it goes), so the log says
//! "Job N out of N": the bar reaches 100 % within each job and never goes back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use hive_thrift::generated::tcliservice as t;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

/// The job group of the statement behind a driver-side operation handle: its guid as a UUID
/// (Spark's Thrift server runs a statement's jobs in the group of its statement id).
pub fn group_of(guid: &[u8]) -> Option<String> {
    let b: &[u8; 16] = guid.try_into().ok()?;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// A driver's Spark UI, and the `Authorization` header it takes from sparkgate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SparkUi {
    /// `http://host:port`, no trailing slash.
    pub base: String,
    pub authorization: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("Spark UI {0}: not an http://host:port address")]
    Address(String),
    #[error("Spark UI {url}: {detail}")]
    Request { url: String, detail: String },
    #[error("Spark UI {url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("Spark UI {url}: unreadable answer: {detail}")]
    Json { url: String, detail: String },
}

/// One job, as the REST API lists it (the fields sparkgate uses).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct JobData {
    pub job_id: i64,
    pub job_group: Option<String>,
    pub status: String,
    pub num_tasks: i64,
    pub num_active_tasks: i64,
    pub num_completed_tasks: i64,
    pub num_skipped_tasks: i64,
    pub num_failed_tasks: i64,
    pub num_killed_tasks: i64,
    pub stage_ids: Vec<i64>,
    pub num_completed_stages: i64,
    pub num_skipped_stages: i64,
}

impl JobData {
    /// Tasks done (completed or skipped) of all, in percent.
    fn task_percent(&self) -> i64 {
        percent(
            self.num_completed_tasks + self.num_skipped_tasks,
            self.num_tasks,
        )
    }

    /// Stages done of all, in percent, the stages left counted by the share of tasks done (a
    /// one-stage job would otherwise stay at 0 until it ends, and Superset's bar at 50 %).
    fn stage_percent(&self) -> i64 {
        let stages = self.stage_ids.len() as i64;
        if stages <= 0 {
            return self.task_percent();
        }
        let done = (self.num_completed_stages + self.num_skipped_stages).min(stages);
        (done * 100 + (stages - done) * self.task_percent()) / stages
    }
}

fn percent(done: i64, all: i64) -> i64 {
    if all <= 0 {
        0
    } else {
        (done * 100 / all).clamp(0, 100)
    }
}

#[derive(Deserialize)]
struct Application {
    id: String,
}

/// Reads drivers' Spark UIs; remembers each UI's application id.
#[derive(Debug)]
pub struct UiClient {
    timeout: Duration,
    app_ids: Mutex<HashMap<String, String>>,
}

impl UiClient {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            app_ids: Mutex::new(HashMap::new()),
        }
    }

    /// The running jobs of job group `group`.
    pub async fn running_jobs(&self, ui: &SparkUi, group: &str) -> Result<Vec<JobData>, UiError> {
        let app = self.app_id(ui).await?;
        let path = format!("/api/v1/applications/{app}/jobs?status=running");
        let jobs: Vec<JobData> = self.get_json(ui, &path).await.inspect_err(|_| {
            // A restarted driver at the same address has another application id.
            self.app_ids.lock().expect("app ids").remove(&ui.base);
        })?;
        Ok(jobs
            .into_iter()
            .filter(|j| j.job_group.as_deref() == Some(group))
            .collect())
    }

    async fn app_id(&self, ui: &SparkUi) -> Result<String, UiError> {
        if let Some(id) = self.app_ids.lock().expect("app ids").get(&ui.base) {
            return Ok(id.clone());
        }
        let apps: Vec<Application> = self.get_json(ui, "/api/v1/applications").await?;
        let id = apps
            .into_iter()
            .next()
            .map(|a| a.id)
            .ok_or_else(|| UiError::Json {
                url: ui.base.clone(),
                detail: "no application".into(),
            })?;
        self.app_ids
            .lock()
            .expect("app ids")
            .insert(ui.base.clone(), id.clone());
        Ok(id)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        ui: &SparkUi,
        path: &str,
    ) -> Result<T, UiError> {
        let url = format!("{}{path}", ui.base);
        let body = tokio::time::timeout(self.timeout, get(ui, path))
            .await
            .map_err(|_| UiError::Request {
                url: url.clone(),
                detail: format!("no answer within {:?}", self.timeout),
            })??;
        serde_json::from_slice(&body).map_err(|e| UiError::Json {
            url,
            detail: e.to_string(),
        })
    }
}

/// One HTTP/1 GET on a fresh connection (a status call a few seconds apart; the UI is local or
/// in the same cluster).
async fn get(ui: &SparkUi, path: &str) -> Result<Bytes, UiError> {
    let url = format!("{}{path}", ui.base);
    let request_error = |detail: String| UiError::Request {
        url: url.clone(),
        detail,
    };
    let authority = ui
        .base
        .strip_prefix("http://")
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .ok_or_else(|| UiError::Address(ui.base.clone()))?;
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| request_error(e.to_string()))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| request_error(e.to_string()))?;
    let mut request = hyper::Request::get(path).header(hyper::header::HOST, authority);
    if let Some(value) = &ui.authorization {
        request = request.header(hyper::header::AUTHORIZATION, value);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| request_error(e.to_string()))?;
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| request_error(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| request_error(e.to_string()))?
            .to_bytes();
        Ok::<_, UiError>((status, body))
    };
    // The connection is driven here, beside the exchange (no task to leak); if it ends first
    // (the server closed it), what it delivered is still read.
    tokio::pin!(exchange);
    let (status, body) = tokio::select! {
        result = &mut exchange => result?,
        _ = connection => exchange.await?,
    };
    if status != 200 {
        return Err(UiError::Status {
            url: url.clone(),
            status,
        });
    }
    Ok(body)
}

/// What a statement's client has been told of its progress.
#[derive(Debug, Default)]
pub struct ProgressLog {
    /// The statement's jobs, in the order first seen.
    jobs: Vec<i64>,
    /// Those the log has announced ("Launching Job N").
    announced: Vec<i64>,
    tracking_url_sent: bool,
    /// The stage line last written per job (unchanged ones are not written again).
    last_line: HashMap<i64, String>,
    /// When lines were last written (see [`ProgressLog::due`]).
    last_written: Option<std::time::Instant>,
}

impl ProgressLog {
    /// Log lines for the running jobs `running`: "Launching Job N out of N" for each new one
    /// (and once a tracking URL), then a stage line per running job, as Hive writes them.
    pub fn lines(&mut self, ui_base: &str, running: &[JobData]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut running: Vec<&JobData> = running.iter().collect();
        running.sort_by_key(|j| j.job_id);
        for job in &running {
            self.register(job.job_id);
            if self.announced.contains(&job.job_id) {
                continue;
            }
            self.announced.push(job.job_id);
            let n = self.number_of(job.job_id);
            lines.push(format!("INFO  : Launching Job {n} out of {n}"));
            if !self.tracking_url_sent {
                self.tracking_url_sent = true;
                lines.push(format!(
                    "INFO  : Tracking URL = {ui_base}/jobs/job/?id={}",
                    job.job_id
                ));
            }
        }
        for job in &running {
            let n = self.number_of(job.job_id);
            let line = format!(
                "INFO  : Stage-{n} map = {}%,  reduce = {}%",
                job.task_percent(),
                job.stage_percent()
            );
            if self.last_line.get(&job.job_id) != Some(&line) {
                self.last_line.insert(job.job_id, line.clone());
                lines.push(line);
            }
        }
        self.last_written = Some(std::time::Instant::now());
        lines
    }

    /// Whether progress lines may be written again: at most once per `every`. Clients read
    /// the log until a batch comes back empty (PyHive), so a batch must come back empty.
    pub fn due(&self, every: Duration) -> bool {
        self.last_written.is_none_or(|at| at.elapsed() >= every)
    }

    /// Notes a job of the statement; `true` if it is new.
    fn register(&mut self, job_id: i64) -> bool {
        if self.jobs.contains(&job_id) {
            return false;
        }
        self.jobs.push(job_id);
        true
    }

    fn number_of(&self, job_id: i64) -> usize {
        self.jobs
            .iter()
            .position(|j| *j == job_id)
            .map_or(0, |i| i + 1)
    }

    /// HS2's progress update (beeline's in-place bar): a row per running job, done in percent
    /// of the jobs seen so far.
    pub fn update(&mut self, running: &[JobData], started_ms: i64) -> t::TProgressUpdateResp {
        let mut running: Vec<&JobData> = running.iter().collect();
        running.sort_by_key(|j| j.job_id);
        for job in &running {
            self.register(job.job_id);
        }
        let rows = running
            .iter()
            .map(|j| {
                let done = j.num_completed_tasks + j.num_skipped_tasks;
                let pending = (j.num_tasks - done - j.num_active_tasks).max(0);
                vec![
                    format!("Job {}", self.number_of(j.job_id)),
                    "Spark".into(),
                    j.status.clone(),
                    j.num_tasks.to_string(),
                    done.to_string(),
                    j.num_active_tasks.to_string(),
                    pending.to_string(),
                    j.num_failed_tasks.to_string(),
                    j.num_killed_tasks.to_string(),
                ]
            })
            .collect();
        let seen = self.jobs.len().max(1) as f64;
        let finished_jobs = self.jobs.len() - running.len();
        let running_share: f64 = running
            .iter()
            .map(|j| j.task_percent() as f64 / 100.0)
            .sum();
        t::TProgressUpdateResp {
            header_names: [
                "JOBS",
                "MODE",
                "STATUS",
                "TOTAL",
                "COMPLETED",
                "RUNNING",
                "PENDING",
                "FAILED",
                "KILLED",
            ]
            .map(String::from)
            .to_vec(),
            rows,
            progressed_percentage: ((finished_jobs as f64 + running_share) / seen)
                .clamp(0.0, 1.0)
                .into(),
            status: t::TJobExecutionStatus::IN_PROGRESS,
            footer_summary: format!("JOBS: {finished_jobs:02}/{:02}", self.jobs.len()),
            start_time: started_ms,
        }
    }
}

#[cfg(test)]
mod tests;
