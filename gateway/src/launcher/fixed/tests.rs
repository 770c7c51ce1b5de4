use std::time::Duration;

use super::*;
use crate::launcher::DriverSpec;
use crate::tenant::TenantConfig;

#[tokio::test]
async fn lists_each_address_and_checks_only_for_a_connection() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap().to_string();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let tenant = TenantConfig::new_static(
        "t",
        Vec::new(),
        vec!["*".into()],
        vec![open.clone(), closed.clone()],
    );
    let launcher = FixedLauncher::new([&tenant]);
    let listed = launcher.list().await;
    let ids: Vec<_> = listed.iter().map(|(d, _)| d.id.as_str()).collect();
    assert_eq!(ids, ["t-static-0", "t-static-1"]);
    assert!(!launcher.scales());
    assert!(launcher.answers(&listed[0].0, &open).await);
    assert!(!launcher.answers(&listed[1].0, &closed).await);
    let err = launcher.wait_ready(&listed[1].0).await.unwrap_err();
    assert!(err.to_string().contains(&closed), "{err}");
    assert!(launcher
        .start(&DriverSpec {
            tenant: "t".into(),
            driver_memory: "1g".into(),
            spark_conf: Default::default(),
            hive_conf: Default::default(),
        })
        .await
        .is_err());
}

/// A static tenant's pool: sessions spread over the servers that accept connections, one
/// that does not is skipped, and with none left a session fails at once instead of waiting.
#[tokio::test]
async fn a_pool_of_fixed_servers_places_on_those_that_answer() {
    use crate::pool::{DriverPool, PoolLimits};
    let up: Vec<_> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let up_addresses: Vec<String> = up
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut backends = up_addresses.clone();
    backends.push(down.clone());
    let tenant = TenantConfig::new_static("t", Vec::new(), vec!["*".into()], backends);
    let limits = PoolLimits {
        max_sessions_per_driver: u32::MAX,
        max_waiting: 10,
        wait_timeout: Duration::from_secs(60),
        drain_grace: Duration::from_secs(60),
        reconcile_every: Duration::from_millis(20),
    };
    let spec = DriverSpec {
        tenant: "t".into(),
        driver_memory: "1g".into(),
        spark_conf: Default::default(),
        hive_conf: Default::default(),
    };
    let pool = DriverPool::new(
        spec,
        Default::default(),
        limits,
        std::sync::Arc::new(FixedLauncher::new([&tenant])),
        Default::default(),
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
    );
    pool.adopt().await;
    let held: Vec<_> = futures::future::join_all((0..4).map(|_| pool.acquire(|| {})))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let leases: Vec<String> = held.iter().map(|l| l.address.clone()).collect();
    for address in &up_addresses {
        assert_eq!(
            leases.iter().filter(|a| *a == address).count(),
            2,
            "{leases:?}"
        );
    }
    assert!(!leases.contains(&down), "{leases:?}");

    drop(up);
    for driver in pool.drivers() {
        pool.mark_failed(&driver.id);
    }
    let started = std::time::Instant::now();
    let err = pool.acquire(|| {}).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no wait for a start that never comes"
    );
    let text = err.to_string();
    assert!(
        text.contains("cannot reach the Spark Thrift Server"),
        "{text}"
    );
    assert!(text.contains(&down), "{text}");
}
