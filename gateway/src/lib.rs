//! sparkgate: a HiveServer2 gateway in front of pools of Spark Thrift Server drivers.
//!
//! The modules, in the order a client's call flows through them:
//! * [`frontend`]: listeners, limits, TLS, the binary (SASL/NOSASL) handshake and Thrift over
//!   HTTP; authentication through the `sparkgate-auth` crate.
//! * [`session`]: the call handler (handle checks, OpenSession and tenant choice, forwarding,
//!   answers it gives itself) and the session table.
//! * [`tenant`]: which users and groups may run SQL on which tenant's drivers.
//! * [`pool`]: each tenant's drivers: placement, queue, reconcile loop, autoscaler, leader
//!   election.
//! * [`launcher`]: starting, finding and stopping drivers (local processes, Kubernetes Pods;
//!   fixed addresses for static tenants).
//! * [`driver`]: pooled connections to drivers; statements' progress from their Spark UI.
//!
//! Beside the flow: [`admin`] (health, readiness, metrics, sessions and drivers API),
//! [`audit`] (the audit log, written off the calls' path), [`usage`] (what each tenant used),
//! [`telemetry`] (logging, the metrics registry), [`shutdown`] (its signals), [`config`], [`error`] (one mapping to
//! HS2 statuses), [`app`] (startup checks, wiring, the one shutdown path) and, for tests and
//! benchmarks, `testing` (an in-process fake driver).
pub mod admin;
pub mod app;
pub mod audit;
pub mod config;
pub mod driver;
pub mod error;
pub mod frontend;
pub mod launcher;
pub mod pool;
pub mod session;
pub mod shutdown;
pub mod telemetry;
pub mod tenant;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod usage;
