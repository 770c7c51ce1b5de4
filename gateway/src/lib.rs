//! sparkgate: a HiveServer2 gateway in front of Spark Thrift Server drivers.
//!
//! Layers, outside in:
//! * [`frontend`]: listener, SASL/NOSASL handshake, one task per connection.
//! * [`proxy`]: each call of a connection: handle checks, forwarding, local answers.
//! * [`session`]: the per-connection session table (client handle → driver handle).
//! * [`config`] and [`error`]: settings, and errors with the one mapping to HS2 statuses.
pub mod config;
pub mod error;
pub mod frontend;
pub mod proxy;
pub mod server;
pub mod session;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
