//! The gateway's config file ([`sparkgate::config::Config::from_toml`]): parsing and validation.
//!
//! Asserts: nothing panics; a config that loads validates again and routes to at least one
//! tenant.

use sparkgate::config::Config;

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_toml(text) else {
        return;
    };
    config.validate().expect("a loaded config validates");
    assert!(!config.effective_tenants().is_empty());
}
