use super::*;

#[test]
fn example_file_loads_and_equals_the_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sparkgate.example.toml");
    let config = Config::from_file(&path).expect("example config loads");
    assert_eq!(config.source.as_deref(), Some(path.as_path()));
    assert_eq!(
        Config {
            source: None,
            ..config
        },
        Config::default(),
        "the example documents the defaults"
    );
}

#[test]
fn empty_file_gives_defaults() {
    assert_eq!(Config::from_toml("").unwrap(), Config::default());
}

#[test]
fn unknown_keys_are_errors() {
    let err = Config::from_toml("[server]\nbind_address = \"127.0.0.1:1\"\n").unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    let err = Config::from_toml("[servr]\n").unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[test]
fn durations_and_transport_parse() {
    let config = Config::from_toml(
        "[server]\ntransport = \"nosasl\"\nhandshake_timeout = \"2s\"\nidle_session_timeout = \"1h 30m\"\n",
    )
    .unwrap();
    assert_eq!(config.server.transport, FrontendTransport::Nosasl);
    assert_eq!(config.server.handshake_timeout, Duration::from_secs(2));
    assert_eq!(
        config.server.idle_session_timeout,
        Duration::from_secs(5400)
    );
}

#[test]
fn invalid_values_are_refused_before_binding() {
    for bad in [
        "[backend]\naddress = \"nohost\"\n",
        "[backend]\naddress = \"host:notaport\"\n",
        "[server]\nmax_message_size = 10\n",
        "[server]\nmax_connections = 0\n",
        "[backend]\ncall_timeout = \"0s\"\n",
        "[server]\ntransport = \"kerberos\"\n",
    ] {
        assert!(Config::from_toml(bad).is_err(), "accepted: {bad}");
    }
}
