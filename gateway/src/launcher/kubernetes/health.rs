//! A driver's health from its Pod as the watch shows it, and what this process remembers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use super::KubernetesConfig;
use crate::launcher::Health;

#[derive(Debug, Default)]
pub(super) struct Tracking {
    /// Drivers this process created, and when: the watch may not show them yet.
    pub(super) created: HashMap<String, Instant>,
    /// Ready drivers seen not ready, since when.
    pub(super) not_ready_since: HashMap<String, Instant>,
    /// Drivers once seen ready.
    pub(super) was_ready: std::collections::HashSet<String>,
}

/// The port the driver Pod serves HS2 on: its `driver` container's port named `thrift`, as the
/// Pod was made (by a previous run, or another replica, whose `thrift_port` may differ), else
/// this process's `thrift_port`.
fn thrift_port_of(pod: &Pod, config: &KubernetesConfig) -> i32 {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.containers.iter().find(|c| c.name == "driver"))
        .and_then(|c| c.ports.as_ref())
        .and_then(|ports| {
            ports
                .iter()
                .find(|p| p.name.as_deref() == Some("thrift"))
                .map(|p| p.container_port)
        })
        .unwrap_or(i32::from(config.thrift_port))
}

/// The health of driver `id` from its Pod as the watch shows it (`None`: not in the watch's
/// cache), and what this process remembers about it.
pub(super) fn judge_pod(
    tracking: &mut Tracking,
    config: &KubernetesConfig,
    id: &str,
    pod: Option<&Pod>,
) -> Health {
    let Some(pod) = pod else {
        // Just created: the watch may not show it yet. Once the watch has shown it, its
        // absence means it is gone.
        let fresh = tracking
            .created
            .get(id)
            .is_some_and(|at| at.elapsed() < Duration::from_secs(30));
        return if fresh {
            Health::Alive
        } else {
            Health::Dead("its Pod is gone".into())
        };
    };
    // Seen by the watch: from now on, not being in the watch's cache means deleted.
    tracking.created.remove(id);
    if pod.metadata.deletion_timestamp.is_some() {
        return Health::Dead("its Pod is being deleted".into());
    }
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    if phase == "Failed" || phase == "Succeeded" {
        let why = status
            .and_then(|s| s.message.clone().or(s.reason.clone()))
            .unwrap_or_default();
        return Health::Dead(if why.is_empty() {
            format!("its Pod is {phase}")
        } else {
            format!("its Pod is {phase}: {why}")
        });
    }
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let ip = status
        .and_then(|s| s.pod_ip.clone())
        .filter(|ip| !ip.is_empty());
    match (ready, ip) {
        (true, Some(ip)) => {
            tracking.not_ready_since.remove(id);
            tracking.was_ready.insert(id.to_owned());
            let host = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip
            };
            Health::Ready {
                address: format!("{host}:{}", thrift_port_of(pod, config)),
            }
        }
        _ if tracking.was_ready.contains(id) => {
            let since = *tracking
                .not_ready_since
                .entry(id.to_owned())
                .or_insert_with(Instant::now);
            if since.elapsed() >= config.not_ready_timeout {
                Health::Dead(format!(
                    "its Pod has not been ready for {} s",
                    since.elapsed().as_secs()
                ))
            } else {
                Health::Alive
            }
        }
        _ => Health::Alive,
    }
}
