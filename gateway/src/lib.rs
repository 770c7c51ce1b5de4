//! sparkgate: a HiveServer2 gateway in front of Spark Thrift Server drivers.
//!
//! Layers, outside in:
//! * [`frontend`] (binary transport) and [`http`] (Thrift over HTTP), optionally over [`tls`]:
//!   listeners, handshakes, authentication, [`limits`].
//! * [`proxy`]: every call: handle checks, tenant decision, forwarding, local answers.
//! * [`session`]: the session table (client handle → owner, tenant, driver handle).
//! * [`tenant`]: which users and groups may run SQL on which drivers.
//! * [`server`]: startup checks, listeners, housekeeping, the one shutdown path.
//! * [`config`] and [`error`]: settings, and errors with the one mapping to HS2 statuses.
pub mod admin;
pub mod autoscale;
pub mod backend;
pub mod config;
pub mod error;
pub mod frontend;
pub mod http;
pub mod launcher;
pub mod leader;
pub mod limits;
pub mod pool;
pub mod proxy;
pub mod server;
pub mod session;
pub mod tenant;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tls;
