//! Drivers this replica did not start: those the launcher lists (a previous run's, or another
//! replica's) and the one a sealed HTTP handle names.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::info;

use super::{Driver, DriverLease, DriverPool, DriverState};
use crate::launcher::Health;

/// How often a wait for a driver named by a sealed handle looks again.
const LOOK_AGAIN_EVERY: Duration = Duration::from_millis(50);
/// What a reconcile pass's listing of the launcher's drivers may take (one API call).
const LISTING_TAKES: Duration = Duration::from_secs(2);

impl DriverPool {
    /// Takes over drivers the launcher lists for this tenant that the pool does not know yet:
    /// a previous run's, or (on Kubernetes) ones another replica started. Ready ones serve at
    /// once when they answer; others are watched until they are ready.
    pub async fn adopt(self: &Arc<Self>) {
        let listed = self.launcher.list().await;
        for (launched, health) in listed {
            if launched.tenant != self.tenant
                || self.stopping.lock().expect("pool").contains(&launched.id)
                || self
                    .drivers
                    .lock()
                    .expect("pool")
                    .iter()
                    .any(|d| d.launched.id == launched.id)
            {
                continue;
            }
            let ready_at = match &health {
                Health::Dead(_) => continue,
                Health::Ready { address } => Some(address.clone()),
                Health::Alive if !launched.address.is_empty() => Some(launched.address.clone()),
                Health::Alive => None,
            };
            let answers = match &ready_at {
                Some(address) => self.launcher.answers(&launched, address).await,
                None => false,
            };
            info!(tenant = %self.tenant, driver = %launched.id, ready = answers, "adopted a driver");
            let mut launched = launched;
            if let (true, Some(address)) = (answers, ready_at) {
                launched.address = address;
            }
            self.drivers.lock().expect("pool").push(Driver {
                launched: launched.clone(),
                state: if answers {
                    DriverState::Ready
                } else {
                    DriverState::Starting
                },
                load: Arc::default(),
                idle_since: Some(Instant::now()),
                draining_since: None,
            });
            if answers {
                self.ready.notify_waiters();
            } else {
                self.watch_start(launched);
            }
        }
    }

    /// A place on the driver a session another replica placed (taken in from its sealed
    /// handle): `id` as the launcher named it, at `address`. The session counts as this
    /// replica's load there while it holds the lease, so no replica drains the driver under it
    /// after the one that placed it is gone. The handle's address is trusted, since only a
    /// replica holding the key can seal one, but the driver must be one this pool knows: it may
    /// still be Starting here when the other replica already saw it answer, or not yet listed,
    /// so this waits (two reconcile passes and a listing) for the reconcile loop to catch up.
    pub async fn driver_for_sealed(&self, id: &str, address: &str) -> Option<DriverLease> {
        let deadline = Instant::now() + self.limits.reconcile_every * 2 + LISTING_TAKES;
        loop {
            let notified = self.ready.notified();
            if let Some(found) = self.known_driver(id, address) {
                return Some(found);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let wait = LOOK_AGAIN_EVERY.min(deadline - now);
            let _ = tokio::time::timeout(wait, notified).await;
        }
    }

    fn known_driver(&self, id: &str, address: &str) -> Option<DriverLease> {
        let drivers = self.drivers.lock().expect("pool");
        let d = drivers.iter().find(|d| {
            d.state != DriverState::Failed
                && if id.is_empty() {
                    d.launched.address == address
                } else {
                    // A driver that is still Starting here has no address yet (or a stale one).
                    d.launched.id == id
                        && (d.launched.address == address || d.state == DriverState::Starting)
                }
        })?;
        Some(d.lease(address))
    }
}
