use super::*;

fn tenants(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[test]
fn a_tenants_user_is_the_prefix_and_its_name_in_lowercase_unless_named() {
    let overrides = BTreeMap::from([("Long".to_owned(), "spark_long".to_owned())]);
    let names = user_names(
        &tenants(&["sales", "Ops", "Long"]),
        "sparkgate-",
        &overrides,
    )
    .unwrap();
    assert_eq!(names["sales"], "sparkgate-sales");
    assert_eq!(names["Ops"], "sparkgate-ops");
    assert_eq!(names["Long"], "spark_long");
}

#[test]
fn user_names_useradd_would_refuse_or_two_tenants_would_share_are_refused() {
    let none = BTreeMap::new();
    let long = "t".repeat(30);
    let err = user_names(&tenants(&[&long]), "sparkgate-", &none).unwrap_err();
    assert!(matches!(err, OsUserError::BadName { .. }), "{err}");
    assert!(err.to_string().contains("local.os_users"), "{err}");
    let err = user_names(&tenants(&["x"]), "9-", &none).unwrap_err();
    assert!(matches!(err, OsUserError::BadName { .. }), "{err}");
    // Tenant names differ in case only; OS user names do not.
    let err = user_names(&tenants(&["Ops", "ops"]), "sg-", &none).unwrap_err();
    assert!(matches!(err, OsUserError::Shared { .. }), "{err}");
    let overrides = BTreeMap::from([("b".to_owned(), "sg-a".to_owned())]);
    let err = user_names(&tenants(&["a", "b"]), "sg-", &overrides).unwrap_err();
    assert!(matches!(err, OsUserError::Shared { .. }), "{err}");
}

#[test]
fn drivers_as_sparkgates_own_user_expose_its_secrets_and_other_tenants() {
    // The embedded default: one tenant, no secret file: nothing to refuse.
    assert!(shared_user_exposure(&[], 1).is_empty());
    let exposed = shared_user_exposure(&[PathBuf::from("/etc/sg/jwt.key")], 1);
    assert_eq!(exposed, ["the secret file /etc/sg/jwt.key"]);
    let exposed = shared_user_exposure(&[], 3);
    assert_eq!(
        exposed,
        ["the tables and work dirs of the other 2 local tenants"]
    );
}

#[test]
fn auto_means_per_tenant_users_exactly_when_root() {
    assert_eq!(per_tenant(DriverUsers::Auto).unwrap(), is_root());
    assert!(!per_tenant(DriverUsers::Sparkgate).unwrap());
    match per_tenant(DriverUsers::Tenant) {
        Ok(true) => assert!(is_root()),
        Err(OsUserError::NeedsRoot) => assert!(!is_root()),
        other => panic!("{other:?}"),
    }
}

/// `nobody` exists on every Debian system: what it can read is checked as it, not guessed from
/// mode bits.
#[test]
fn what_another_user_can_read_is_asked_of_that_user() {
    if !is_root() {
        eprintln!("not root: no other user to run the check as");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let nobody = RunAs {
        name: "nobody".into(),
        uid: nobody.uid.as_raw(),
        gid: nobody.gid.as_raw(),
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let open = dir.path().join("open");
    let secret = dir.path().join("secret");
    let tricky = dir.path().join("with\nnewline 'quote'");
    for f in [&open, &secret, &tricky] {
        std::fs::write(f, "x").unwrap();
    }
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&tricky, std::fs::Permissions::from_mode(0o644)).unwrap();
    let readable = readable_by(&nobody, &[open.clone(), secret.clone(), tricky.clone()]).unwrap();
    assert_eq!(readable, [open.clone(), tricky]);
    assert!(can_enter(&nobody, dir.path()).unwrap());
    // A private parent hides even a world-readable file.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(readable_by(&nobody, &[open]).unwrap().is_empty());
    assert!(!can_enter(&nobody, dir.path()).unwrap());
}

#[test]
fn a_directory_handed_to_a_tenant_user_keeps_its_links_pointing_nowhere_new() {
    if !is_root() {
        eprintln!("not root: cannot change owners");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let nobody = RunAs {
        name: "nobody".into(),
        uid: nobody.uid.as_raw(),
        gid: nobody.gid.as_raw(),
    };
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::write(&outside, "sparkgate's").unwrap();
    let private = dir.path().join("tenant");
    std::fs::create_dir_all(private.join("sub")).unwrap();
    std::fs::write(private.join("sub/table"), "rows").unwrap();
    std::os::unix::fs::symlink(&outside, private.join("sub/link")).unwrap();
    private_dir(&private, Some(&nobody)).unwrap();
    let uid = |p: &Path| std::fs::symlink_metadata(p).unwrap().uid();
    assert_eq!(uid(&private), nobody.uid);
    assert_eq!(uid(&private.join("sub/table")), nobody.uid);
    assert_eq!(
        uid(&private.join("sub/link")),
        nobody.uid,
        "the link itself"
    );
    assert_eq!(uid(&outside), 0, "not what it points to");
    let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn a_spark_home_a_tenant_user_cannot_reach_is_mirrored_where_it_can() {
    if !is_root() {
        eprintln!("not root: no other user to check as");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let users = BTreeMap::from([(
        "t".to_owned(),
        RunAs {
            name: "nobody".into(),
            uid: nobody.uid.as_raw(),
            gid: nobody.gid.as_raw(),
        },
    )]);
    let private = tempfile::tempdir().unwrap();
    // Like root's home.
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let home = private.path().join("spark");
    std::fs::create_dir_all(home.join("bin")).unwrap();
    std::fs::create_dir_all(home.join("jars")).unwrap();
    std::fs::write(home.join("bin/spark-submit"), "#!/bin/sh\n").unwrap();
    std::fs::write(home.join("jars/a.jar"), "jar").unwrap();
    std::fs::set_permissions(
        home.join("jars/a.jar"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let mirror = reachable_spark_home(&home, work.path(), &users).unwrap();
    assert_ne!(mirror, home);
    assert!(mirror.starts_with(work.path()));
    assert_eq!(std::fs::read(mirror.join("jars/a.jar")).unwrap(), b"jar");
    assert_eq!(
        readable_by(&users["t"], &[mirror.join("jars/a.jar")])
            .unwrap()
            .len(),
        1
    );
    // Again: the same mirror, not a second copy.
    assert_eq!(
        reachable_spark_home(&home, work.path(), &users).unwrap(),
        mirror
    );
    // An upgraded Spark in the same place gets a copy of its own.
    std::fs::write(home.join("jars/b.jar"), "jar").unwrap();
    let upgraded = reachable_spark_home(&home, work.path(), &users).unwrap();
    assert_ne!(upgraded, mirror);
    assert!(upgraded.join("jars/b.jar").exists());
    // A Spark home it can reach is used as it is.
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        reachable_spark_home(&home, work.path(), &users).unwrap(),
        home
    );
}

#[test]
fn the_peer_of_a_loopback_connection_is_found_with_its_os_user() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (accepted, peer) = listener.accept().unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    let uid = loopback_peer_uid(peer, accepted.local_addr().unwrap());
    assert_eq!(uid, Some(nix::unistd::geteuid().as_raw()));
    // A port pair no connection has: nobody, not a guess.
    let unrelated = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    assert_eq!(
        loopback_peer_uid(unrelated, accepted.local_addr().unwrap()),
        None
    );
    // Only loopback peers are looked up.
    let remote = std::net::SocketAddr::from(([10, 0, 0, 1], peer.port()));
    assert_eq!(
        loopback_peer_uid(remote, accepted.local_addr().unwrap()),
        None
    );
}
