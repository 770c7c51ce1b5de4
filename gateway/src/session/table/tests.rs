use super::*;
use hive_thrift::generated::tcliservice::TOperationType;

fn backend_session() -> TSessionHandle {
    TSessionHandle {
        session_id: mint_identifier(),
    }
}

fn backend_operation() -> TOperationHandle {
    TOperationHandle {
        operation_id: mint_identifier(),
        operation_type: TOperationType::EXECUTE_STATEMENT,
        has_result_set: true,
        modified_row_count: None,
    }
}

fn open(table: &SessionTable, owner: Owner) -> (TSessionHandle, TSessionHandle) {
    let client = TSessionHandle {
        session_id: mint_identifier(),
    };
    let backend = backend_session();
    table.insert(Session::new(
        client.clone(),
        owner,
        "alice".into(),
        "default".into(),
        "127.0.0.1:1".into(),
        backend.clone(),
    ));
    (client, backend)
}

const CONN_A: Owner = Owner::Connection(1);
const CONN_B: Owner = Owner::Connection(2);

#[test]
fn client_handles_map_to_backend_handles_for_their_owner_only() {
    let table = SessionTable::default();
    let (client, backend) = open(&table, CONN_A);
    assert_ne!(
        client, backend,
        "the driver's handle is never shown to the client"
    );
    assert_eq!(
        table.session(&client, &CONN_A).unwrap().backend_handle,
        backend
    );
    assert!(
        table.session(&client, &CONN_B).is_none(),
        "another connection"
    );
    assert!(
        table
            .session(&client, &Owner::User("alice".into()))
            .is_none(),
        "HTTP, same user"
    );
    assert!(table.remove_session(&client, &CONN_B).is_none());
    assert_eq!(table.session_count(), 1);
}

#[test]
fn http_sessions_belong_to_their_user() {
    let table = SessionTable::default();
    let alice = Owner::User("alice".into());
    let (client, _) = open(&table, alice.clone());
    assert!(table.session(&client, &alice).is_some());
    assert!(table.session(&client, &Owner::User("bob".into())).is_none());
    assert!(table.session(&client, &CONN_A).is_none());
}

#[test]
fn forged_secret_or_unknown_guid_is_refused() {
    let table = SessionTable::default();
    let (client, _) = open(&table, CONN_A);
    let mut forged = client.clone();
    forged.session_id.secret = vec![0; 16];
    assert!(table.session(&forged, &CONN_A).is_none());
    assert!(table.remove_session(&forged, &CONN_A).is_none());
    let mut short = client.clone();
    short.session_id.guid.truncate(3);
    assert!(table.session(&short, &CONN_A).is_none());
    assert!(table.session(&backend_session(), &CONN_A).is_none());
    assert_eq!(table.session_count(), 1);
}

#[test]
fn closing_a_session_drops_its_operations() {
    let table = SessionTable::default();
    let (s1, _) = open(&table, CONN_A);
    let (s2, _) = open(&table, CONN_A);
    let session1 = table.session(&s1, &CONN_A).unwrap();
    let session2 = table.session(&s2, &CONN_A).unwrap();
    let op1 = table.add_operation(&session1, backend_operation(), true, Default::default());
    let op2 = table.add_operation(&session2, backend_operation(), true, Default::default());
    assert!(
        table.operation(&op1, &CONN_B).is_none(),
        "another connection's operation"
    );
    assert!(table.remove_session(&s1, &CONN_A).is_some());
    assert!(table.operation(&op1, &CONN_A).is_none());
    assert!(table.operation(&op2, &CONN_A).is_some());
    let mut forged = op2.clone();
    forged.operation_id.secret[0] ^= 1;
    assert!(table.remove_operation(&forged, &CONN_A).is_none());
    assert!(table.remove_operation(&op2, &CONN_A).is_some());
    assert_eq!(table.operation_count(), 0);
}

#[test]
fn connection_end_and_idle_expiry_take_the_right_sessions() {
    let table = SessionTable::default();
    let (old, _) = open(&table, CONN_A);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let cutoff = Instant::now();
    let (fresh, _) = open(&table, CONN_A);
    let (other, _) = open(&table, CONN_B);
    let idle = table.take_idle(cutoff);
    assert_eq!(idle.len(), 1);
    assert_eq!(idle[0].client_handle, old);
    assert_eq!(table.count_owned_by(&CONN_A), 1);
    let ended = table.take_owned_by(&CONN_A);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].client_handle, fresh);
    assert!(table.session(&other, &CONN_B).is_some());
}

#[test]
fn final_status_is_remembered_and_forgotten() {
    let table = SessionTable::default();
    let (s, _) = open(&table, CONN_A);
    let session = table.session(&s, &CONN_A).unwrap();
    let op = table.add_operation(&session, backend_operation(), true, Default::default());
    table.set_final_status(&op, Some(Bytes::from_static(b"reply")));
    assert_eq!(
        table
            .operation(&op, &CONN_A)
            .unwrap()
            .final_status
            .as_deref(),
        Some(&b"reply"[..])
    );
    table.set_final_status(&op, None);
    assert!(table
        .operation(&op, &CONN_A)
        .unwrap()
        .final_status
        .is_none());
}

/// Concurrent starts cannot pass the cap together; a place comes back when its operation is
/// removed, or at once when no operation took it.
#[test]
fn operation_places_are_counted_before_the_driver_is_asked() {
    let table = SessionTable::default();
    let (client, _) = open(&table, CONN_A);
    let session = table.session(&client, &CONN_A).unwrap();
    let granted = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..16 {
            scope.spawn(|| {
                if let Some(place) = session.reserve_operation(5) {
                    granted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    place.keep();
                }
            });
        }
    });
    assert_eq!(granted.into_inner(), 5);
    assert!(session.reserve_operation(5).is_none());
    // Five kept places, one of them now a registered operation that is closed.
    let op = table.add_operation(&session, backend_operation(), false, Default::default());
    assert!(table.remove_operation(&op, &CONN_A).is_some());
    let place = session
        .reserve_operation(5)
        .expect("the closed one's place");
    drop(place);
    assert!(
        session.reserve_operation(5).is_some(),
        "an unkept place is given back"
    );
}

#[test]
fn a_moved_session_replaces_its_old_self_once_and_takes_its_old_operations_when_it_ends() {
    let table = SessionTable::default();
    let (client, _) = open(&table, CONN_A);
    let old = table.session(&client, &CONN_A).unwrap();
    let op = table.add_operation(&old, backend_operation(), true, OperationExtras::default());
    let moved = Arc::new(old.moved_to("127.0.0.1:2".into(), backend_session(), None));
    let current = table
        .replace_session(&old, moved.clone())
        .expect("replaced");
    assert!(Arc::ptr_eq(&current, &moved));
    assert_eq!(
        table.session(&client, &CONN_A).unwrap().backend_addr,
        "127.0.0.1:2"
    );
    // A second move from the same old session (a racing call) does not replace the new one.
    let again = Arc::new(old.moved_to("127.0.0.1:3".into(), backend_session(), None));
    assert!(table.replace_session(&old, again).is_err());
    assert_eq!(
        table.session(&client, &CONN_A).unwrap().backend_addr,
        "127.0.0.1:2"
    );
    // The old operation stays for its client to close; the session's end takes it too.
    assert!(table.operation(&op, &CONN_A).is_some());
    table.remove_session(&client, &CONN_A).unwrap();
    assert!(table.operation(&op, &CONN_A).is_none());
    assert_eq!(table.operation_count(), 0);
}

#[test]
fn a_session_taken_in_never_displaces_one_with_the_same_guid() {
    let table = SessionTable::default();
    let (client, _) = open(&table, Owner::User("alice".into()));
    let mut forged = client.clone();
    forged.session_id.secret = vec![9; 40];
    let taken = table.insert_if_absent(Session::new(
        forged,
        Owner::User("alice".into()),
        "alice".into(),
        "default".into(),
        "127.0.0.1:9".into(),
        backend_session(),
    ));
    assert!(taken.is_none());
    let owner = Owner::User("alice".into());
    assert_eq!(
        table.session(&client, &owner).unwrap().backend_addr,
        "127.0.0.1:1"
    );
}

/// A shared HTTP session's calls may all go to other replicas: when it is quiet here, and while
/// one of its statements runs, its driver is asked now and then (once per period), and what
/// ended there is dropped here.
#[test]
fn quiet_shared_sessions_and_their_running_statements_come_up_for_a_recheck_once_per_period() {
    use std::time::Duration;
    let table = SessionTable::default();
    let alice = Owner::User("alice".into());
    let (plain, _) = open(&table, alice.clone());
    let plain = table.session(&plain, &alice).unwrap();
    let handle = TSessionHandle {
        session_id: mint_identifier(),
    };
    let mut session = Session::new(
        handle.clone(),
        alice.clone(),
        "alice".into(),
        "default".into(),
        "127.0.0.1:1".into(),
        backend_session(),
    );
    session.sealed = Some(crate::session::sealed::SealedSession::on_driver(
        "alice",
        "alice",
        "default",
        crate::session::client::ClientFamily::Python,
        None,
        "127.0.0.1:1",
        &backend_session(),
    ));
    let shared = table.insert(session);
    let running = table.add_operation(&shared, backend_operation(), true, Default::default());
    table.add_operation(&plain, backend_operation(), true, Default::default());
    let finished = table.add_operation(&shared, backend_operation(), true, Default::default());
    table.set_final_status(&finished, Some(Bytes::from_static(b"reply")));

    std::thread::sleep(Duration::from_millis(30));
    let cutoff = Instant::now() - Duration::from_millis(10);
    let quiet = table.quiet_shared(cutoff);
    assert_eq!(quiet.len(), 1, "the shared session only");
    assert!(Arc::ptr_eq(&quiet[0], &shared));
    let due = table.due_rechecks(cutoff);
    assert_eq!(due.len(), 1, "its running statement only");
    assert_eq!(due[0].client_handle, running);
    assert!(table.quiet_shared(cutoff).is_empty(), "once per period");
    assert!(table.due_rechecks(cutoff).is_empty(), "once per period");

    std::thread::sleep(Duration::from_millis(30));
    let next_period = Instant::now() - Duration::from_millis(10);
    assert_eq!(table.due_rechecks(next_period).len(), 1, "asked again");
    table.settle_operation(&running);
    std::thread::sleep(Duration::from_millis(30));
    let later = Instant::now() - Duration::from_millis(10);
    assert!(
        table.due_rechecks(later).is_empty(),
        "settled: no longer counted"
    );

    assert!(table.forget_ended(&shared));
    assert!(table.session(&handle, &alice).is_none());
    assert!(
        table.operation(&running, &alice).is_none(),
        "its operations go with it"
    );
    assert!(!table.forget_ended(&shared), "only once");
}
