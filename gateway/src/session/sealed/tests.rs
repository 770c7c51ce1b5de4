use super::*;

fn state() -> SealedSession {
    SealedSession {
        owner: "ann".into(),
        user: "ann".into(),
        tenant: "analytics".into(),
        family: "jdbc".into(),
        driver_id: "sg-analytics-1f2e3d4c".into(),
        driver: "10.0.0.7:10000".into(),
        driver_guid: vec![1; 16],
        driver_secret: vec![2; 16],
        expires: unix_now() + 60,
    }
}

#[test]
fn a_sealed_state_opens_with_the_same_key_and_guid_only() {
    let sealer = Sealer::new(b"shared cookie key of the replicas");
    let guid = [7u8; 16];
    let sealed = sealer.seal(&guid, &state());
    // Another replica with the same key reads it.
    let other = Sealer::new(b"shared cookie key of the replicas");
    assert_eq!(other.open::<SealedSession>(&guid, &sealed), Some(state()));
    // Not with another key, not under another handle's GUID.
    assert_eq!(
        Sealer::new(b"another key").open::<SealedSession>(&guid, &sealed),
        None
    );
    assert_eq!(sealer.open::<SealedSession>(&[8u8; 16], &sealed), None);
    // Nothing of it is readable: not the driver, the tenant or the user.
    let text = String::from_utf8_lossy(&sealed);
    for secret in ["10.0.0.7", "analytics", "ann"] {
        assert!(
            !text.contains(secret),
            "{secret} readable in the sealed handle"
        );
    }
    // Two seals of the same state differ (a fresh nonce each).
    assert_ne!(sealer.seal(&guid, &state()), sealed);
}

#[test]
fn a_forged_or_altered_handle_never_opens_nor_panics() {
    let sealer = Sealer::new(b"k");
    let guid = [7u8; 16];
    let sealed = sealer.seal(&guid, &state());
    for i in 0..sealed.len() {
        let mut altered = sealed.clone();
        altered[i] ^= 0x01;
        assert_eq!(
            sealer.open::<SealedSession>(&guid, &altered),
            None,
            "byte {i}"
        );
    }
    for garbage in [
        vec![],
        vec![VERSION],
        vec![VERSION; 13],
        vec![0u8; 64],
        vec![VERSION; MAX_SEALED + 1],
        sealed[..sealed.len() - 1].to_vec(),
    ] {
        assert_eq!(sealer.open::<SealedSession>(&guid, &garbage), None);
    }
    // A plain 16-byte secret (a handle of a replica without sealing) is no sealed state.
    assert_eq!(sealer.open::<SealedSession>(&guid, &[3u8; 16]), None);
}

#[test]
fn an_operation_state_round_trips_its_driver_handle() {
    let sealer = Sealer::new(b"k");
    let op = SealedOperation {
        session: state(),
        session_guid: vec![4; 16],
        session_secret: vec![5; 40],
        driver_guid: vec![6; 16],
        driver_secret: vec![9; 16],
        operation_type: 0,
        has_result_set: true,
        modified_row_count: Some(3.0),
        name_column: Some(1),
        issuer_only: false,
    };
    let sealed = sealer.seal(&[1u8; 16], &op);
    let opened: SealedOperation = sealer.open(&[1u8; 16], &sealed).unwrap();
    assert_eq!(opened, op);
    let handle = opened.driver_handle();
    assert_eq!(handle.operation_id.guid, vec![6; 16]);
    assert!(handle.has_result_set);
    assert_eq!(opened.session_handle().session_id.secret, vec![5; 40]);
    assert!(
        sealed.len() < 1024,
        "a sealed operation handle stays small: {}",
        sealed.len()
    );
}
