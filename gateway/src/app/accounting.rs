//! Usage accounting's background work: driver-seconds sampled from the pools, the book saved
//! now and then and at shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tracing::warn;

use super::Shared;
use crate::pool::DriverState;

/// How often the pools' drivers are counted.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Counts each scaling pool's Starting and Ready drivers every second into the usage book, and
/// saves the book every `usage.save_every`, until shutdown (then saves it once more).
/// Fixed backends (static tenants) are not sparkgate's drivers: they are not counted; with
/// several replicas, the leader counts the drivers (each replica its own statements).
pub(super) fn spawn_usage_accounting(shared: Arc<Shared>) {
    let tasks = shared.shutdown.clone();
    tasks.spawn("usage accounting", async move {
        let usage = shared.handler.recorders.usage.clone();
        let save_every = shared.config.usage.save_every.max(SAMPLE_EVERY);
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = Instant::now();
        let mut saved = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shared.shutdown.force_close.cancelled() => break,
            }
            let elapsed = last.elapsed();
            last = Instant::now();
            let now = SystemTime::now();
            for (tenant, pool) in &shared.handler.pools {
                // Every replica lists every driver: only the one that scales the pool counts them.
                if !pool.scales() || !pool.leading() {
                    continue;
                }
                let drivers = pool.drivers();
                let count = |state| drivers.iter().filter(|d| d.state == state).count() as u32;
                let ready = count(DriverState::Ready) + count(DriverState::Draining);
                usage.drivers(tenant, count(DriverState::Starting), ready, elapsed, now);
            }
            if saved.elapsed() >= save_every {
                saved = Instant::now();
                save(&usage).await;
            }
        }
        save(&usage).await;
    });
}

async fn save(usage: &Arc<crate::usage::Usage>) {
    let usage = usage.clone();
    match tokio::task::spawn_blocking(move || usage.save()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "could not save the usage figures (usage.file)"),
        Err(e) => warn!(error = %e, "saving the usage figures failed"),
    }
}
