//! The checks behind the gateway-side fuzz targets: [`cookie`] (the HTTP transport's session
//! cookie verifier), [`users_file`] (the `users_file` auth method's file), [`gateway_config`]
//! (the config file). Same shape as the protocol targets (`../protocol`): each `check(data)` must
//! not panic and asserts what it cheaply can; [`seeds`] builds the seed corpus.
pub mod cookie;
pub mod gateway_config;
pub mod seeds;
pub mod users_file;
