//! The one shutdown path's signals, and the tracker every background task is spawned on, so
//! shutdown can stop and join them all.
//!
//! On SIGTERM (or `Gateway::shutdown` in `app`): readiness fails and the listeners stop
//! accepting (`stop_accepting`); connections may finish within `server.shutdown_grace`; then
//! `force_close` cuts what is left, in-flight calls included. Sessions are then closed on their
//! drivers in parallel under one deadline, the pool loops are joined before any driver is
//! stopped, and the background tasks are joined last.

use std::future::Future;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Tokens that steer shutdown: `stop_accepting` first, `force_close` when the grace period ends.
#[derive(Clone, Default)]
pub struct Shutdown {
    pub stop_accepting: CancellationToken,
    pub force_close: CancellationToken,
    /// Listeners, the admin port, housekeeping and pool loops.
    background: TaskTracker,
}

impl Shutdown {
    /// Spawns a background task that shutdown joins, in a span named after it.
    pub fn spawn<F>(&self, name: &'static str, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.background
            .spawn(task.instrument(tracing::info_span!("task", name)))
    }

    /// Waits for every background task to end (they end on `stop_accepting` or
    /// `force_close`); `false` if some did not within `within`.
    pub async fn join_background(&self, within: std::time::Duration) -> bool {
        self.background.close();
        tokio::time::timeout(within, self.background.wait())
            .await
            .is_ok()
    }

    /// Background tasks still running.
    pub fn background_tasks(&self) -> usize {
        self.background.len()
    }
}
