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

#[test]
fn client_handles_are_fresh_and_map_to_backend_handles() {
    let mut table = SessionTable::default();
    let backend = backend_session();
    let client = table.add_session(backend.clone(), "alice".into());
    assert_ne!(
        client, backend,
        "the driver's handle is never shown to the client"
    );
    assert_eq!(table.session_mut(&client).unwrap().backend_handle, backend);
}

#[test]
fn forged_secret_or_unknown_guid_is_refused() {
    let mut table = SessionTable::default();
    let client = table.add_session(backend_session(), "alice".into());
    let mut forged = client.clone();
    forged.session_id.secret = vec![0; 16];
    assert!(table.session_mut(&forged).is_none());
    assert!(table.remove_session(&forged).is_none());
    let mut short = client.clone();
    short.session_id.guid.truncate(3);
    assert!(table.session_mut(&short).is_none());
    assert!(table.session_mut(&backend_session()).is_none());
    assert_eq!(table.session_count(), 1);
}

#[test]
fn closing_a_session_drops_its_operations() {
    let mut table = SessionTable::default();
    let s1 = table.add_session(backend_session(), "a".into());
    let s2 = table.add_session(backend_session(), "a".into());
    let op1 = table.add_operation(&s1, backend_operation());
    let op2 = table.add_operation(&s2, backend_operation());
    assert!(table.remove_session(&s1).is_some());
    assert!(table.operation_mut(&op1).is_none());
    assert!(table.operation_mut(&op2).is_some());
    let mut forged = op2.clone();
    forged.operation_id.secret[0] ^= 1;
    assert!(table.remove_operation(&forged).is_none());
    assert!(table.remove_operation(&op2).is_some());
    assert_eq!(table.operation_count(), 0);
}

#[test]
fn idle_sessions_are_taken_out() {
    let mut table = SessionTable::default();
    let old = table.add_session(backend_session(), "a".into());
    std::thread::sleep(std::time::Duration::from_millis(5));
    let cutoff = Instant::now();
    let fresh = table.add_session(backend_session(), "a".into());
    let idle = table.take_idle(cutoff);
    assert_eq!(idle.len(), 1);
    assert_eq!(idle[0].client_handle, old);
    assert!(table.session_mut(&fresh).is_some());
}
