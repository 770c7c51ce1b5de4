//! One leader among sparkgate replicas, by a `coordination.k8s.io/v1` Lease: every replica
//! routes sessions, only the leader scales pools. The Lease is taken and renewed with
//! optimistic concurrency (its resourceVersion), so two replicas never both win a round; a
//! replica that cannot renew stops deciding before its lease runs out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// What a replica needs to take part.
#[derive(Debug, Clone)]
pub struct Election {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
}

/// The identity of this replica: `$POD_NAME`, else host name and process id.
pub fn default_identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME") {
        if !pod.is_empty() {
            return pod;
        }
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "sparkgate".into());
    format!("{host}-{}", std::process::id())
}

/// What one round found.
#[derive(Debug, PartialEq, Eq)]
enum Round {
    Leading,
    Following(String),
}

/// Campaigns until `stop`; `leading` is true exactly while this replica holds the Lease. On
/// stop, a leader gives the Lease up so another replica takes over at once.
pub async fn run(
    client: Client,
    election: Election,
    leading: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let leases: Api<Lease> = Api::namespaced(client, &election.namespace);
    let retry = election.lease_duration / 3;
    let mut last_renewed: Option<Instant> = None;
    loop {
        match round(&leases, &election).await {
            Ok(Round::Leading) => {
                if !leading.swap(true, Ordering::SeqCst) {
                    info!(identity = %election.identity, lease = %election.lease_name, "leading: this replica now makes scaling decisions");
                }
                last_renewed = Some(Instant::now());
            }
            Ok(Round::Following(holder)) => {
                if leading.swap(false, Ordering::SeqCst) {
                    warn!(%holder, "lost the lease; no longer making scaling decisions");
                }
                last_renewed = None;
            }
            Err(e) => {
                warn!(error = %e, "leader election round failed");
                // Stop deciding before the lease could have passed to someone else.
                let expired = last_renewed
                    .is_none_or(|at| at.elapsed() >= election.lease_duration.mul_f32(0.8));
                if expired && leading.swap(false, Ordering::SeqCst) {
                    warn!("cannot renew the lease; no longer making scaling decisions");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = stop.cancelled() => break,
        }
    }
    if leading.swap(false, Ordering::SeqCst) {
        release(&leases, &election).await;
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

async fn round(leases: &Api<Lease>, election: &Election) -> Result<Round, kube::Error> {
    let duration_secs = election.lease_duration.as_secs().max(1) as i32;
    let Some(mut lease) = leases.get_opt(&election.lease_name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(election.lease_name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(election.identity.clone()),
                lease_duration_seconds: Some(duration_secs),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match leases.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Round::Leading),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                Ok(Round::Following("another replica".into()))
            }
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let mine = holder == election.identity;
    let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
        (Some(MicroTime(renewed)), Some(secs)) => {
            let age = Timestamp::now().duration_since(*renewed);
            age.as_secs() >= i64::from(secs)
        }
        _ => true,
    };
    if !mine && !holder.is_empty() && !expired {
        return Ok(Round::Following(holder));
    }
    if !mine {
        spec.holder_identity = Some(election.identity.clone());
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.lease_duration_seconds = Some(duration_secs);
    spec.renew_time = Some(now());
    // replace carries the resourceVersion read above: a concurrent writer makes this a 409.
    match leases
        .replace(&election.lease_name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(Round::Leading),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Round::Following(holder)),
        Err(e) => Err(e),
    }
}

async fn release(leases: &Api<Lease>, election: &Election) {
    let Ok(Some(mut lease)) = leases.get_opt(&election.lease_name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(&election.identity) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    match leases
        .replace(&election.lease_name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => info!("gave up the lease"),
        Err(e) => warn!(error = %e, "cannot give up the lease; it expires by itself"),
    }
}
