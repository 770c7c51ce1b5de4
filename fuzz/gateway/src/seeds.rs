//! The seed corpus of the gateway-side targets: an issued cookie, users files with real argon2
//! hashes, gateway configs. `cargo run --example gen_seeds` (in this directory) writes them to
//! `seeds/<target>/`.

use std::time::{Duration, UNIX_EPOCH};

/// One seed file: its name and bytes.
pub type Seed = (&'static str, Vec<u8>);

/// Cookie target inputs (mode byte first; see `cookie.rs`).
pub fn cookies() -> Vec<Seed> {
    let signer = sparkgate::frontend::http::CookieSigner::new(
        crate::cookie::KEY.to_vec(),
        Duration::from_secs(3600),
        false,
    );
    let principal = sparkgate_auth::Principal {
        user: "alice".into(),
        groups: vec!["analysts".into(), "admins".into()],
    };
    let set_cookie = signer
        .issue(
            &principal,
            UNIX_EPOCH + Duration::from_secs(1_750_000_000),
            None,
        )
        .expect("the TTL is not zero");
    let value = set_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_owned())
        .expect("cookie=value");
    let payload = value
        .rsplit_once('.')
        .expect("payload.signature")
        .0
        .to_owned();
    let with_mode = |mode: u8, rest: &[u8]| {
        let mut v = vec![mode];
        v.extend_from_slice(rest);
        v
    };
    vec![
        ("value_issued", with_mode(0, value.as_bytes())),
        ("payload_issued", with_mode(1, payload.as_bytes())),
        ("principal", with_mode(2, b"alice\0analysts\0admins")),
    ]
}

/// Users files: the layout `sparkgate passwd` writes, with real argon2id hashes.
pub fn users_files() -> Vec<Seed> {
    let alice = sparkgate_auth::hash_password("secret");
    let bob = sparkgate_auth::hash_password("hunter2");
    let two = format!(
        "[users.alice]\npassword = \"{alice}\"\ngroups = [\"analysts\", \"admins\"]\n\n\
         [users.\"bob@example.org\"]\npassword = \"{bob}\"\n"
    );
    vec![
        ("two_users", two.into_bytes()),
        ("empty", b"[users]\n".to_vec()),
    ]
}

/// Gateway configs: the annotated example, and one with a tenant of each launcher.
pub fn gateway_configs() -> Vec<Seed> {
    let tenants = r#"[backend]
address = "127.0.0.1:10001"

[auth]
methods = [{ type = "users_file", path = "/etc/sparkgate/users.toml" }, { type = "none" }]

[[tenants]]
name = "analytics"
groups = ["analysts"]
users = ["dave"]
backends = ["10.0.0.5:10000"]

[[tenants]]
name = "finance"
groups = ["finance"]
launcher = "kubernetes"
service_account_annotations = { "eks.amazonaws.com/role-arn" = "arn:aws:iam::111122223333:role/finance-spark" }
hive_conf = { "hive.metastore.uris" = "thrift://metastore.data:9083" }
spark_conf = { "spark.sql.warehouse.dir" = "s3a://finance-lake/warehouse" }

[[tenants]]
name = "engineering"
groups = ["engineers"]
launcher = "local"
driver_memory = "2g"
[tenants.scaling]
min_drivers = 1
max_drivers = 4
scale_up_after = "5s"
idle_ttl = "10m"
"#;
    vec![
        (
            "example",
            include_bytes!("../../../gateway/sparkgate.example.toml").to_vec(),
        ),
        ("tenants", tenants.as_bytes().to_vec()),
    ]
}

/// Every target's seeds, by target name.
pub fn all() -> Vec<(&'static str, Vec<Seed>)> {
    vec![
        ("cookie", cookies()),
        ("users_file", users_files()),
        ("gateway_config", gateway_configs()),
    ]
}
