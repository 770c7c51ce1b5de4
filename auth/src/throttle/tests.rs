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

fn locked_for(t: &Throttle, user: &str, client: IpAddr, now: Instant) -> Option<Duration> {
    match t.check_at(user, client, now) {
        Ok(()) => None,
        Err(AuthError::Throttled { retry_after }) => Some(retry_after),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_user_failing_from_many_addresses_is_locked_everywhere_until_the_lockout_ends() {
    let t = throttle();
    let t0 = Instant::now();
    for (i, addr) in [A, B, "10.0.0.9".parse().unwrap()].into_iter().enumerate() {
        assert_eq!(locked_for(&t, "alice", addr, t0), None);
        t.failed_at("alice", addr, t0 + SEC * i as u32);
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
        t.failed_at(user, A, t0);
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
    t.failed_at("alice", A, t0);
    t.failed_at("alice", A, t0 + 30 * SEC);
    t.failed_at("alice", A, t0 + 61 * SEC); // the first has left the 60 s window
    assert_eq!(locked_for(&t, "alice", A, t0 + 61 * SEC), None);
    t.failed_at("alice", A, t0 + 62 * SEC);
    assert!(locked_for(&t, "alice", A, t0 + 62 * SEC).is_some());
}

#[test]
fn a_success_resets_the_user_count_but_not_the_address_count() {
    let t = throttle();
    let t0 = Instant::now();
    t.failed_at("alice", A, t0);
    t.failed_at("alice", A, t0);
    t.succeeded("alice");
    t.failed_at("alice", B, t0);
    t.failed_at("alice", B, t0);
    assert_eq!(locked_for(&t, "alice", B, t0), None);
    // A has 2 failures; one more (for anyone) locks it.
    t.failed_at("bob", A, t0);
    assert!(locked_for(&t, "carol", A, t0).is_some());
}

#[test]
fn zero_max_failures_turns_throttling_off() {
    let t = Throttle::new(0, 60 * SEC, 30 * SEC);
    let now = Instant::now();
    for _ in 0..100 {
        t.failed_at("alice", A, now);
    }
    assert_eq!(locked_for(&t, "alice", A, now), None);
}
