//! Load shared across sparkgate replicas. Every replica publishes what it carries per tenant
//! (sessions waiting for a driver, statements queued, and per driver its sessions and running
//! statements) as one annotation of a shared Lease (`<lease_name>-load`); the leader reads the
//! others' annotations and scales each pool on the sum. A report older than the lease duration
//! (by its own timestamp) is left out, and the leader removes it.
//!
//! One Lease with an annotation per replica, written by JSON merge patch, needs no read before
//! a write and no retry on conflict, and lets the chart's Role name the one object it may touch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{DriverPool, DriverState};

/// Annotation keys of load reports: this prefix and the replica's name.
const KEY_PREFIX: &str = "load.sparkgate.io/";

/// What one replica carries for one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantLoad {
    /// Sessions waiting for a driver plus statements waiting in the admission queue.
    #[serde(default)]
    pub queued: u32,
    /// Per driver (its id, the same on every replica): the replica's sessions and running
    /// statements there. Drivers it has nothing on are left out.
    #[serde(default)]
    pub drivers: BTreeMap<String, DriverShare>,
    /// Drivers the replica drains (the leader, scaling down): no replica places sessions there.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub draining: BTreeSet<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverShare {
    #[serde(default)]
    pub sessions: u32,
    #[serde(default)]
    pub operations: u32,
}

impl TenantLoad {
    fn add(&mut self, other: &TenantLoad) {
        self.queued = self.queued.saturating_add(other.queued);
        for (id, share) in &other.drivers {
            let mine = self.drivers.entry(id.clone()).or_default();
            mine.sessions = mine.sessions.saturating_add(share.sessions);
            mine.operations = mine.operations.saturating_add(share.operations);
        }
        self.draining.extend(other.draining.iter().cloned());
    }

    /// The sessions and running statements others have on driver `id`.
    pub fn on_driver(&self, id: &str) -> DriverShare {
        self.drivers.get(id).copied().unwrap_or_default()
    }
}

/// One replica's report, as published.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    /// When it was measured: milliseconds since the Unix epoch, by the publisher's clock.
    pub at_ms: u64,
    pub tenants: BTreeMap<String, TenantLoad>,
}

/// Where reports go, and how long one counts.
#[derive(Debug, Clone)]
pub struct LoadSharing {
    pub namespace: String,
    /// The Lease holding every replica's report.
    pub lease_name: String,
    pub identity: String,
    /// A report older than this is left out (the replica is taken for gone).
    pub stale_after: Duration,
    /// How often a replica looks at its load (and the leader at the others').
    pub every: Duration,
}

/// The annotation key of a replica's report: its name where that is a valid key name, else a
/// readable prefix of it and a hash (a key name is at most 63 characters of `[A-Za-z0-9-_.]`,
/// beginning and ending alphanumeric).
pub fn report_key(identity: &str) -> String {
    let valid = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
    };
    if valid(identity) {
        return format!("{KEY_PREFIX}{identity}");
    }
    let readable: String = identity
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    let hash: String = Sha256::digest(identity.as_bytes())[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let name = format!("{}-{hash}", readable.trim_matches('-'));
    format!("{KEY_PREFIX}{}", name.trim_start_matches('-'))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The reports of other replicas in a Lease's annotations, summed per tenant, and the keys of
/// reports that are stale or unreadable (to be removed).
pub fn sum_reports(
    annotations: &BTreeMap<String, String>,
    own_key: &str,
    now_ms: u64,
    stale_after: Duration,
) -> (BTreeMap<String, TenantLoad>, BTreeSet<String>, Vec<String>) {
    let mut sum: BTreeMap<String, TenantLoad> = BTreeMap::new();
    let mut counted = BTreeSet::new();
    let mut stale = Vec::new();
    for (key, value) in annotations {
        let Some(replica) = key.strip_prefix(KEY_PREFIX) else {
            continue;
        };
        if key == own_key {
            continue;
        }
        let report = match serde_json::from_str::<LoadReport>(value) {
            Ok(report) => report,
            Err(e) => {
                warn!(replica, error = %e, "unreadable load report; removing it");
                stale.push(key.clone());
                continue;
            }
        };
        if now_ms.saturating_sub(report.at_ms) > stale_after.as_millis() as u64 {
            stale.push(key.clone());
            continue;
        }
        counted.insert(replica.to_owned());
        for (tenant, load) in &report.tenants {
            sum.entry(tenant.clone()).or_default().add(load);
        }
    }
    (sum, counted, stale)
}

impl DriverPool {
    /// What this replica carries for the tenant now.
    pub fn local_load(&self) -> TenantLoad {
        let drivers = self.drivers.lock().expect("pool");
        TenantLoad {
            queued: self.waiting.load(Ordering::Relaxed)
                + self.queued_statements.load(Ordering::Relaxed),
            drivers: drivers
                .iter()
                .filter(|d| d.state != DriverState::Failed)
                .map(|d| {
                    let share = DriverShare {
                        sessions: d.load.sessions(),
                        operations: d.load.operations(),
                    };
                    (d.launched.id.clone(), share)
                })
                .filter(|(_, s)| s.sessions > 0 || s.operations > 0)
                .collect(),
            draining: drivers
                .iter()
                .filter(|d| d.state == DriverState::Draining)
                .map(|d| d.launched.id.clone())
                .collect(),
        }
    }

    /// What the other replicas carry for this tenant, as last read.
    pub fn set_others_load(&self, load: TenantLoad) {
        *self.others.lock().expect("pool") = load;
    }

    pub(super) fn others_load(&self) -> TenantLoad {
        self.others.lock().expect("pool").clone()
    }
}

/// Publishes this replica's load and reads the others' into `pools` (the leader scales on the
/// sum), until `stop`; then takes its report back.
pub async fn run(
    client: Client,
    sharing: LoadSharing,
    pools: Vec<Arc<DriverPool>>,
    leading: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let leases: Api<Lease> = Api::namespaced(client, &sharing.namespace);
    let own_key = report_key(&sharing.identity);
    let heartbeat = sharing.stale_after / 3;
    let mut published: Option<(BTreeMap<String, TenantLoad>, std::time::Instant)> = None;
    let mut reporting: BTreeSet<String> = BTreeSet::new();
    let mut tick = tokio::time::interval(sharing.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        let tenants: BTreeMap<String, TenantLoad> = pools
            .iter()
            .map(|p| (p.tenant.clone(), p.local_load()))
            .collect();
        let due = published
            .as_ref()
            .is_none_or(|(last, at)| *last != tenants || at.elapsed() >= heartbeat);
        if due {
            let report = LoadReport {
                at_ms: now_ms(),
                tenants: tenants.clone(),
            };
            match publish(&leases, &sharing.lease_name, &own_key, Some(&report)).await {
                Ok(()) => published = Some((tenants, std::time::Instant::now())),
                Err(e) => warn!(error = %e, "cannot publish this replica's load"),
            }
        }
        // Followers read too: the drivers the leader drains take no new session anywhere.
        let leads = leading.load(Ordering::SeqCst);
        match gather(&leases, &sharing, &own_key, leads).await {
            Ok((mut sum, counted)) => {
                if leads && counted != reporting {
                    info!(replicas = ?counted, "other replicas reporting load");
                }
                reporting = counted;
                for pool in &pools {
                    pool.set_others_load(sum.remove(&pool.tenant).unwrap_or_default());
                }
            }
            Err(e) => warn!(error = %e, "cannot read the other replicas' load"),
        }
    }
    match publish(&leases, &sharing.lease_name, &own_key, None).await {
        Ok(()) => debug!("took this replica's load report back"),
        Err(e) => {
            warn!(error = %e, "cannot take this replica's load report back; it goes stale by itself")
        }
    }
}

/// Sets (or with `None` removes) this replica's report; creates the Lease if it is missing.
async fn publish(
    leases: &Api<Lease>,
    lease_name: &str,
    key: &str,
    report: Option<&LoadReport>,
) -> Result<(), kube::Error> {
    let value = match report {
        Some(report) => serde_json::Value::String(
            serde_json::to_string(report).expect("a load report serializes"),
        ),
        None => serde_json::Value::Null,
    };
    let patch = serde_json::json!({ "metadata": { "annotations": { key: value } } });
    match leases
        .patch(lease_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 && report.is_some() => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(lease_name.to_owned()),
                    annotations: Some(BTreeMap::from([(
                        key.to_owned(),
                        value.as_str().unwrap_or_default().to_owned(),
                    )])),
                    ..ObjectMeta::default()
                },
                spec: None,
            };
            match leases.create(&PostParams::default(), &lease).await {
                // Another replica created it meanwhile: the report goes in by patch after all.
                Err(kube::Error::Api(e)) if e.code == 409 => leases
                    .patch(lease_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ()),
                other => other.map(|_| ()),
            }
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The other replicas' fresh reports, summed per tenant, and who sent them; the leader removes
/// stale ones from the Lease.
async fn gather(
    leases: &Api<Lease>,
    sharing: &LoadSharing,
    own_key: &str,
    leads: bool,
) -> Result<(BTreeMap<String, TenantLoad>, BTreeSet<String>), kube::Error> {
    let Some(lease) = leases.get_opt(&sharing.lease_name).await? else {
        return Ok(Default::default());
    };
    let annotations = lease.metadata.annotations.unwrap_or_default();
    let (sum, counted, stale) = sum_reports(&annotations, own_key, now_ms(), sharing.stale_after);
    for key in stale.into_iter().filter(|_| leads) {
        info!(report = %key, "removing a stale load report (its replica is gone)");
        if let Err(e) = publish(leases, &sharing.lease_name, &key, None).await {
            warn!(report = %key, error = %e, "cannot remove a stale load report");
        }
    }
    Ok((sum, counted))
}

#[cfg(test)]
mod tests;
