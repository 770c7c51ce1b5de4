//! The `static` launcher: a tenant's Spark Thrift Servers at fixed addresses that someone else
//! runs. It starts and stops nothing; it lists each address as a driver, so a static tenant's
//! sessions are placed by a pool like every other tenant's (the least busy server that accepts
//! connections), and the pool never scales it.
//!
//! An address counts as ready when it accepts a TCP connection: the server may require
//! credentials or a transport (`backend.transport`) the launcher does not know, and a session's
//! own OpenSession reports anything beyond that with the server's words.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::{DriverSpec, Health, LaunchError, LaunchedDriver, Launcher};

/// How long a connection check of one address may take; a check runs in a pool's reconcile
/// pass, only for addresses not serving yet.
const CONNECT_CHECK: Duration = Duration::from_secs(2);

/// The fixed addresses of the static tenants.
pub struct FixedLauncher {
    drivers: Vec<LaunchedDriver>,
}

impl FixedLauncher {
    /// From each static tenant's `backends` (and their `spark_ui`).
    pub fn new<'a>(tenants: impl IntoIterator<Item = &'a crate::tenant::TenantConfig>) -> Self {
        let drivers = tenants
            .into_iter()
            .flat_map(|tenant| {
                tenant
                    .backends
                    .iter()
                    .enumerate()
                    .map(move |(i, address)| LaunchedDriver {
                        id: format!("{}-static-{i}", tenant.name),
                        tenant: tenant.name.clone(),
                        address: address.clone(),
                        pid: 0,
                        secret: Default::default(),
                        ui: tenant.spark_ui.get(address).cloned(),
                    })
            })
            .collect();
        Self { drivers }
    }
}

impl Launcher for FixedLauncher {
    fn start<'a>(
        &'a self,
        spec: &'a DriverSpec,
    ) -> BoxFuture<'a, Result<LaunchedDriver, LaunchError>> {
        let error = LaunchError::Start(format!(
            "tenant {:?} has the static launcher: its servers are the configured backends",
            spec.tenant
        ));
        async move { Err(error) }.boxed()
    }

    fn wait_ready<'a>(
        &'a self,
        driver: &'a LaunchedDriver,
    ) -> BoxFuture<'a, Result<LaunchedDriver, LaunchError>> {
        async move {
            if self.answers(driver, &driver.address).await {
                Ok(driver.clone())
            } else {
                // Taken out; the next reconcile pass lists the address again and checks it anew.
                Err(LaunchError::Failed {
                    id: driver.id.clone(),
                    reason: format!("no connection to {}", driver.address),
                })
            }
        }
        .boxed()
    }

    fn stop<'a>(&'a self, _driver: &'a LaunchedDriver) -> BoxFuture<'a, ()> {
        async {}.boxed()
    }

    fn list(&self) -> BoxFuture<'_, Vec<(LaunchedDriver, Health)>> {
        let listed = self
            .drivers
            .iter()
            .map(|d| {
                let health = Health::Ready {
                    address: d.address.clone(),
                };
                (d.clone(), health)
            })
            .collect();
        async move { listed }.boxed()
    }

    fn health(&self, driver: &LaunchedDriver) -> Health {
        Health::Ready {
            address: driver.address.clone(),
        }
    }

    fn scales(&self) -> bool {
        false
    }

    fn answers<'a>(&'a self, _driver: &'a LaunchedDriver, address: &'a str) -> BoxFuture<'a, bool> {
        async move {
            matches!(
                tokio::time::timeout(CONNECT_CHECK, tokio::net::TcpStream::connect(address)).await,
                Ok(Ok(_))
            )
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests;
