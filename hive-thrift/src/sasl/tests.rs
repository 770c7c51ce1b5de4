use super::*;

fn client_bytes(user: &str, password: &str) -> BytesMut {
    let mut out = BytesMut::new();
    let creds = PlainCredentials {
        authzid: String::new(),
        user: user.into(),
        password: password.into(),
    };
    SaslClient::start(&creds, DEFAULT_MAX_NEGOTIATION_FRAME, &mut out);
    out
}

#[test]
fn good_transcript_yields_credentials_and_keeps_trailing_data() {
    let mut src = client_bytes("alice", "secret");
    src.extend_from_slice(&[0, 0, 0, 3, b'a', b'b', b'c']);
    let mut server = SaslServer::new(DEFAULT_MAX_NEGOTIATION_FRAME);
    let creds = server.decode(&mut src).unwrap().unwrap();
    assert_eq!(creds.user, "alice");
    assert_eq!(creds.password, "secret");
    assert_eq!(&src[..], &[0, 0, 0, 3, b'a', b'b', b'c']);
}

#[test]
fn transcript_fed_one_byte_at_a_time() {
    let all = client_bytes("bob", "pw");
    let mut server = SaslServer::new(DEFAULT_MAX_NEGOTIATION_FRAME);
    let mut src = BytesMut::new();
    let mut result = None;
    for (i, b) in all.iter().enumerate() {
        src.put_u8(*b);
        let r = server.decode(&mut src).unwrap();
        if r.is_some() {
            assert_eq!(i, all.len() - 1, "credentials only once everything arrived");
            result = r;
        }
    }
    assert_eq!(result.unwrap().user, "bob");
}

#[test]
fn python_style_ok_status_is_accepted() {
    let mut src = BytesMut::new();
    encode_negotiation(SaslStatus::Start, b"PLAIN", &mut src);
    encode_negotiation(SaslStatus::Ok, b"\0carol\0x", &mut src);
    let creds = SaslServer::new(1024).decode(&mut src).unwrap().unwrap();
    assert_eq!(creds.user, "carol");
}

#[test]
fn wrong_mechanism_is_refused() {
    let mut src = BytesMut::new();
    encode_negotiation(SaslStatus::Start, b"GSSAPI", &mut src);
    let err = SaslServer::new(1024).decode(&mut src).unwrap_err();
    assert_eq!(err, SaslError::UnsupportedMechanism("GSSAPI".into()));
}

#[test]
fn truncated_transcript_waits() {
    let all = client_bytes("dave", "pw");
    let mut src = BytesMut::from(&all[..all.len() - 1]);
    let mut server = SaslServer::new(1024);
    assert_eq!(server.decode(&mut src).unwrap(), None);
}

#[test]
fn oversized_frame_is_refused_before_it_arrives() {
    let mut src = BytesMut::from(&[1u8, 0x7f, 0xff, 0xff, 0xff][..]);
    let err = SaslServer::new(1024).decode(&mut src).unwrap_err();
    assert!(matches!(err, SaslError::TooLarge { max: 1024, .. }));
}

#[test]
fn garbage_status_byte_is_refused() {
    let mut src = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
    let err = SaslServer::new(1024).decode(&mut src).unwrap_err();
    assert_eq!(err, SaslError::UnexpectedStatus(b'G'));
}

#[test]
fn data_frame_instead_of_start_is_refused() {
    // A NOSASL client talking to a SASL port: its first byte is 0x80 (strict binary version).
    let mut src = BytesMut::from(&[0x80u8, 0x01, 0x00, 0x01, 0, 0, 0, 11][..]);
    assert!(SaslServer::new(1024).decode(&mut src).is_err());
}

#[test]
fn malformed_plain_payloads() {
    for bad in [&b"nouser"[..], b"\0\0pw", b"a\0b\0c\0d", b"\0\xff\xfe\0pw"] {
        assert!(PlainCredentials::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn client_reads_server_verdicts() {
    let mut out = BytesMut::new();
    let mut client = SaslClient::start(
        &PlainCredentials {
            authzid: String::new(),
            user: "u".into(),
            password: "p".into(),
        },
        1024,
        &mut out,
    );
    let mut ok = BytesMut::new();
    SaslServer::accept(&mut ok);
    assert_eq!(client.decode(&mut ok).unwrap(), Some(()));
    let mut bad = BytesMut::new();
    SaslServer::refuse("wrong password", &mut bad);
    assert_eq!(
        client.decode(&mut bad).unwrap_err(),
        SaslError::Refused("wrong password".into())
    );
}

#[test]
fn password_never_in_debug_output() {
    let creds = PlainCredentials::parse(b"\0erin\0hunter2").unwrap();
    assert!(!format!("{creds:?}").contains("hunter2"));
}
