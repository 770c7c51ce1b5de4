//! Every checked-in seed (and kept crash input) through its target's check, without libFuzzer:
//! `cargo test --manifest-path fuzz/gateway/Cargo.toml --no-default-features`.
use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        check(&std::fs::read(&path).unwrap());
        count += 1;
    }
    assert!(count > 0, "no seeds in {}", dir.display());
}

#[test]
fn cookie() {
    replay("cookie", sparkgate_fuzz_gateway::cookie::check);
}

#[test]
fn users_file() {
    replay("users_file", sparkgate_fuzz_gateway::users_file::check);
}

#[test]
fn gateway_config() {
    replay(
        "gateway_config",
        sparkgate_fuzz_gateway::gateway_config::check,
    );
}
