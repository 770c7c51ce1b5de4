//! The checks behind the protocol fuzz targets, one module per decoder that reads a client's or
//! a driver's bytes: [`scan`] (NOSASL message boundaries and the raw codec), [`sasl`] (SASL
//! negotiation, then SASL frames), [`message`] (headers, `Hs2Request`, `Hs2Response`).
//!
//! Each `check(data)` must not panic on any input and asserts what the API lets it check cheaply
//! (resumed decoding agrees with one-shot decoding, decode → encode → decode is the identity, no
//! frame exceeds its limit). `fuzz_targets/*.rs` are one-line wrappers, so the checks also run
//! under plain `cargo test` over the seeds (`tests/seeds.rs`); [`seeds`] builds those.
pub mod message;
pub mod sasl;
pub mod scan;
pub mod seeds;
mod stream;
