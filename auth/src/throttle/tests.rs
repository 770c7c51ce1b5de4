use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::Throttle;
use crate::AuthError;

const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
const SEC: Duration = Duration::from_secs(1);

fn throttle() -> Throttle {
    // 3 failures within 60 s lock for 30 s.
    Throttle::new(3, 60 * SEC, 30 * SEC)
}

/// Whether an attempt would be refused now, and for how long (the attempt, if let in, ends
/// undecided).
fn locked_for(t: &Throttle, user: &str, client: IpAddr, now: Instant) -> Option<Duration> {
    match t.begin_at(user, client, now) {
        Ok(_attempt) => None,
        Err(AuthError::Throttled { retry_after }) => Some(retry_after),
        Err(e) => panic!("{e}"),
    }
}

/// One attempt that fails at `now`.
fn fail(t: &Throttle, user: &str, client: IpAddr, now: Instant) {
    t.begin_at(user, client, now)
        .expect("let in")
        .failed_at(now);
}

fn succeed(t: &Throttle, user: &str, client: IpAddr) {
    t.begin(user, client).expect("let in").succeeded();
}

#[test]
fn a_user_failing_from_many_addresses_is_locked_everywhere_until_the_lockout_ends() {
    let t = throttle();
    let t0 = Instant::now();
    for (i, addr) in [A, B, "10.0.0.9".parse().unwrap()].into_iter().enumerate() {
        assert_eq!(locked_for(&t, "alice", addr, t0), None);
        fail(&t, "alice", addr, t0 + SEC * i as u32);
    }
    let now = t0 + 2 * SEC;
    assert_eq!(locked_for(&t, "alice", A, now), Some(30 * SEC));
    assert!(
        locked_for(&t, "ALICE", "10.1.1.1".parse().unwrap(), now).is_some(),
        "case-insensitive, any address"
    );
    // Each address failed once only: other users are not affected.
    assert_eq!(locked_for(&t, "bob", A, now), None);
    // The lockout ends.
    assert_eq!(locked_for(&t, "alice", A, now + 30 * SEC), None);
}

#[test]
fn an_address_trying_many_users_is_locked_for_all_users() {
    let t = throttle();
    let t0 = Instant::now();
    for user in ["alice", "bob", "carol"] {
        fail(&t, user, A, t0);
    }
    assert!(locked_for(&t, "dave", A, t0).is_some());
    assert!(locked_for(&t, "", A, t0).is_some(), "bearer tokens too");
    assert_eq!(
        locked_for(&t, "dave", B, t0),
        None,
        "other addresses are fine"
    );
    assert_eq!(
        locked_for(&t, "alice", B, t0),
        None,
        "each user failed once only"
    );
}

#[test]
fn failures_outside_the_window_do_not_count() {
    let t = throttle();
    let t0 = Instant::now();
    fail(&t, "alice", A, t0);
    fail(&t, "alice", A, t0 + 30 * SEC);
    fail(&t, "alice", A, t0 + 61 * SEC); // the first has left the 60 s window
    assert_eq!(locked_for(&t, "alice", A, t0 + 61 * SEC), None);
    fail(&t, "alice", A, t0 + 62 * SEC);
    assert!(locked_for(&t, "alice", A, t0 + 62 * SEC).is_some());
}

#[test]
fn a_success_resets_the_user_count_but_not_the_address_count() {
    let t = throttle();
    let t0 = Instant::now();
    fail(&t, "alice", A, t0);
    fail(&t, "alice", A, t0);
    succeed(&t, "alice", A);
    fail(&t, "alice", B, t0);
    fail(&t, "alice", B, t0);
    assert_eq!(locked_for(&t, "alice", B, t0), None);
    // A has 2 failures; one more (for anyone) locks it.
    fail(&t, "bob", A, t0);
    assert!(locked_for(&t, "carol", A, t0).is_some());
}

#[test]
fn zero_max_failures_turns_throttling_off() {
    let t = Throttle::new(0, 60 * SEC, 30 * SEC);
    let now = Instant::now();
    for _ in 0..100 {
        fail(&t, "alice", A, now);
    }
    assert_eq!(locked_for(&t, "alice", A, now), None);
}

#[test]
fn attempts_still_being_checked_count_against_the_limit() {
    let t = throttle();
    let t0 = Instant::now();
    let held: Vec<_> = (0..3)
        .map(|_| t.begin_at("alice", A, t0).expect("within the limit"))
        .collect();
    assert_eq!(
        locked_for(&t, "alice", B, t0),
        Some(super::RETRY_IN_FLIGHT),
        "a fourth concurrent attempt for the user waits for the three being checked"
    );
    assert_eq!(
        locked_for(&t, "bob", B, t0),
        None,
        "other users are not held up"
    );
    let mut held = held.into_iter();
    drop(held.next());
    let fourth = t
        .begin_at("alice", B, t0)
        .expect("an undecided attempt frees its place");
    for attempt in held.chain([fourth]) {
        attempt.failed_at(t0);
    }
    assert_eq!(
        locked_for(&t, "alice", A, t0),
        Some(30 * SEC),
        "three failed: locked"
    );
}
