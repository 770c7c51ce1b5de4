//! The one shutdown path's signals, shared by every listener and background task.

use tokio_util::sync::CancellationToken;

/// Tokens that steer shutdown: `stop_accepting` first, `force_close` when the grace period ends.
#[derive(Clone, Default)]
pub struct Shutdown {
    pub stop_accepting: CancellationToken,
    pub force_close: CancellationToken,
}
