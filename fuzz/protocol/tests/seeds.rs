//! Every checked-in seed (and kept crash input) through its target's check, without libFuzzer:
//! `cargo test --manifest-path fuzz/protocol/Cargo.toml --no-default-features`.
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
fn scan() {
    replay("scan", sparkgate_fuzz_protocol::scan::check);
}

#[test]
fn sasl() {
    replay("sasl", sparkgate_fuzz_protocol::sasl::check);
}

#[test]
fn message() {
    replay("message", sparkgate_fuzz_protocol::message::check);
}

/// The seeds exercise what they are for: each message decodes, the SASL stream authenticates.
#[test]
fn seeds_are_real() {
    use hive_thrift::message::{Hs2Request, Hs2Response, MessageHeader, MessageKind};
    for (name, msg) in sparkgate_fuzz_protocol::seeds::messages() {
        let header = MessageHeader::parse(&msg).unwrap();
        match header.kind {
            MessageKind::Call => {
                let body = &msg[header.body_offset..];
                assert!(
                    Hs2Request::decode(&header.name, body).unwrap().is_some(),
                    "{name}"
                );
            }
            _ if name.starts_with("exception") => {
                assert!(Hs2Response::decode(&header.name, &msg).is_ok_and(|r| r.is_none()));
            }
            _ => assert!(
                Hs2Response::decode(&header.name, &msg).unwrap().is_some(),
                "{name}"
            ),
        }
    }
}
