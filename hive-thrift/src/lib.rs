//! HiveServer2 (TCLIService) protocol for sparkgate.
//!
//! Layers, bottom up, all sans-IO (bytes in, bytes out) unless noted:
//! * [`scan`]: where a bare binary-protocol message ends (for NOSASL).
//! * [`frame`]: whole messages out of a stream, SASL-framed or raw; size limits.
//! * [`sasl`]: SASL PLAIN negotiation, server and client, as state machines.
//! * [`generated`]: the TCLIService types, generated from `thrift/TCLIService.thrift`.
//! * [`message`]: message headers, the typed [`message::Hs2Request`], reply encoding.
//! * [`client`] (feature `tokio`): an async HS2 client used to talk to drivers.
#[cfg(feature = "tokio")]
pub mod client;
pub mod error;
pub mod frame;
pub mod generated;
pub mod message;
pub mod sasl;
pub mod scan;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{DecodeError, FrameError, SaslError};
