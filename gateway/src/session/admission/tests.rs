use super::*;

fn queue(max_running: u32, max_queued: u32) -> (Arc<TenantQueue>, Arc<AtomicU32>) {
    let gauge = Arc::new(AtomicU32::new(0));
    let policy = AdmissionPolicy {
        max_running_per_driver: max_running,
        max_queued,
        queue_timeout: Duration::from_secs(60),
    };
    (TenantQueue::new("t", policy, gauge.clone()), gauge)
}

fn run(admit: Result<Admit, AdmissionError>) -> Slot {
    match admit {
        Ok(Admit::Run(slot)) => slot,
        other => panic!("expected a place at once, got {other:?}"),
    }
}

fn wait(admit: Result<Admit, AdmissionError>) -> Ticket {
    match admit {
        Ok(Admit::Wait(ticket)) => ticket,
        other => panic!("expected a ticket, got {other:?}"),
    }
}

/// The slot a ticket got, if it got one already.
fn try_granted(ticket: &mut Ticket) -> Option<Slot> {
    let slot = ticket.grant.as_mut()?.try_recv().ok()?;
    ticket.grant = None;
    Some(slot)
}

#[test]
fn statements_run_up_to_the_limit_then_wait() {
    let (q, gauge) = queue(2, 10);
    let a = run(q.admit("ann", "d1"));
    let _b = run(q.admit("ann", "d1"));
    let mut c = wait(q.admit("ann", "d1"));
    // Another driver has its own places.
    let _other = run(q.admit("ann", "d2"));
    assert_eq!(q.queued(), 1);
    assert_eq!(gauge.load(Ordering::Relaxed), 1);
    assert_eq!(c.place(), Some((0, 1)));
    assert!(try_granted(&mut c).is_none());
    a.release();
    let slot = try_granted(&mut c).expect("the freed place goes to the waiter");
    assert_eq!(q.queued(), 0);
    assert_eq!(gauge.load(Ordering::Relaxed), 0);
    assert_eq!(q.running_on("d1"), 2);
    drop(slot);
    assert_eq!(q.running_on("d1"), 1);
}

#[test]
fn a_newcomer_does_not_pass_a_waiter() {
    let (q, _) = queue(1, 10);
    let first = run(q.admit("ann", "d1"));
    let mut waiting = wait(q.admit("bob", "d1"));
    first.release();
    let _second = try_granted(&mut waiting).expect("granted");
    // d1 is full again; a newcomer waits.
    let _third = wait(q.admit("cy", "d1"));
}

#[test]
fn round_robin_across_users_first_come_first_served_within_one() {
    let (q, _) = queue(1, 100);
    let running = run(q.admit("heavy", "d1"));
    let mut heavy: Vec<Ticket> = (0..20).map(|_| wait(q.admit("heavy", "d1"))).collect();
    let mut light = wait(q.admit("light", "d1"));
    assert_eq!(light.place(), Some((1, 21)), "one heavy statement ahead");
    running.release();
    let first = try_granted(&mut heavy[0]).expect("the oldest statement goes first");
    assert!(try_granted(&mut light).is_none());
    first.release();
    let second = try_granted(&mut light).expect("the light user's one statement runs second");
    second.release();
    // Then the heavy user's, in their order.
    let _third = try_granted(&mut heavy[1]).expect("the heavy user's next");
    assert!(try_granted(&mut heavy[2]).is_none());
}

#[test]
fn a_full_queue_refuses_naming_the_setting() {
    let (q, _) = queue(1, 2);
    let _running = run(q.admit("ann", "d1"));
    let _a = wait(q.admit("ann", "d1"));
    let _b = wait(q.admit("bob", "d1"));
    let err = q.admit("cy", "d1").unwrap_err();
    assert_eq!(
        err,
        AdmissionError::QueueFull {
            tenant: "t".into(),
            max: 2
        }
    );
    assert!(err.to_string().contains("max_queued"));
    assert!(q.timeout_error().to_string().contains("queue_timeout"));
}

#[test]
fn a_dropped_ticket_leaves_and_a_dropped_grant_comes_back() {
    let (q, gauge) = queue(1, 10);
    let running = run(q.admit("ann", "d1"));
    let gone = wait(q.admit("ann", "d1"));
    let granted_then_gone = wait(q.admit("bob", "d1"));
    let mut last = wait(q.admit("cy", "d1"));
    drop(gone);
    assert_eq!(q.queued(), 2);
    assert_eq!(gauge.load(Ordering::Relaxed), 2);
    running.release();
    // bob's ticket got the place but is dropped before taking it: it goes to cy.
    drop(granted_then_gone);
    let _slot = try_granted(&mut last).expect("cy gets the place");
    assert_eq!(q.queued(), 0);
    assert_eq!(q.running_on("d1"), 1);
}

#[test]
fn release_is_once_and_no_limit_means_no_queue() {
    let (q, _) = queue(1, 10);
    let slot = run(q.admit("ann", "d1"));
    slot.release();
    slot.release();
    drop(slot);
    assert_eq!(q.running_on("d1"), 0);
    let (open, _) = queue(0, 0);
    let slots: Vec<Slot> = (0..50).map(|_| run(open.admit("ann", "d1"))).collect();
    assert_eq!(slots.len(), 50);
}

#[tokio::test]
async fn a_waiter_is_woken_when_a_place_frees() {
    let (q, _) = queue(1, 10);
    let running = run(q.admit("ann", "d1"));
    let mut ticket = wait(q.admit("bob", "d1"));
    let waiter = async move { ticket.granted().await };
    let release = async move {
        tokio::task::yield_now().await;
        running.release();
    };
    let (slot, ()) = tokio::join!(waiter, release);
    assert_eq!(q.running_on("d1"), 1);
    drop(slot);
    assert_eq!(q.running_on("d1"), 0);
}

#[test]
fn session_state_statements_never_wait() {
    for sql in [
        "USE default",
        "  use `db`",
        "SET spark.sql.x=1",
        "-- c\nSET a=b",
        "/* x */ RESET",
        "set",
    ] {
        assert!(sets_session_state(sql), "{sql}");
    }
    for sql in [
        "SELECT 1",
        "SET VAR v = (SELECT 1)",
        "set variable v = 1",
        "settle",
        "-- USE x\nSELECT 1",
        "",
    ] {
        assert!(!sets_session_state(sql), "{sql}");
    }
}
