use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn method(path: &Path) -> UsersFile {
    UsersFile::new(&UsersFileConfig {
        path: path.to_owned(),
    })
    .unwrap()
}

fn login<'a>(user: &'a str, password: &'a str) -> Credential<'a> {
    Credential::Password { user, password }
}

fn two_users(dir: &Path) -> PathBuf {
    let path = dir.join("users.toml");
    set_user(
        &path,
        "alice",
        "wonderland",
        &["analysts".into(), "admins".into()],
    )
    .unwrap();
    set_user(&path, "bob", "builder", &[]).unwrap();
    path
}

/// Changes the file so its stamp changes even on filesystems with coarse timestamps.
fn touch_later(path: &Path) {
    let later = std::fs::metadata(path).unwrap().modified().unwrap() + Duration::from_secs(2);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(later)
        .unwrap();
}

#[test]
fn hash_password_is_salted_argon2id() {
    let a = hash_password("pw");
    let b = hash_password("pw");
    assert!(a.starts_with("$argon2id$"), "{a}");
    assert_ne!(a, b, "random salt");
    assert!(!a.contains("pw$") && !a.ends_with("pw"));
}

#[test]
fn set_user_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = two_users(dir.path());
    let doc = parse(&path).unwrap();
    assert_eq!(doc.users.len(), 2);
    assert_eq!(doc.users["alice"].groups, vec!["analysts", "admins"]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("$argon2id$"));
    assert!(
        !text.contains("wonderland") && !text.contains("builder"),
        "only hashes are stored"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Updating one entry keeps the others and leaves no temporary file behind.
    let bob_before = doc.users["bob"].clone();
    set_user(&path, "alice", "new-pw", &["engineers".into()]).unwrap();
    let doc = parse(&path).unwrap();
    assert_eq!(doc.users["alice"].groups, vec!["engineers"]);
    assert_eq!(doc.users["bob"], bob_before);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["users.toml"]);
    assert!(set_user(&path, "", "pw", &[]).is_err());
}

#[tokio::test]
async fn checks_passwords_and_returns_groups() {
    let dir = tempfile::tempdir().unwrap();
    let users = method(&two_users(dir.path()));
    assert_eq!(
        users.authenticate(&login("alice", "wonderland")).await,
        Ok(Principal {
            user: "alice".into(),
            groups: vec!["analysts".into(), "admins".into()],
        })
    );
    assert_eq!(
        users.authenticate(&login("alice", "builder")).await,
        Err(AuthError::Rejected)
    );
    assert_eq!(
        users.authenticate(&login("nobody", "wonderland")).await,
        Err(AuthError::Rejected)
    );
    assert_eq!(
        users.authenticate(&login("", "x")).await,
        Err(AuthError::MissingUser)
    );
    assert!(!users.accepts(&Credential::Bearer { token: "a.b.c" }));
    assert!(!users.accepts(&Credential::Anonymous { user: "alice" }));
    assert_eq!(
        users
            .authenticate(&Credential::Anonymous { user: "alice" })
            .await,
        Err(AuthError::Rejected)
    );
}

#[tokio::test]
async fn reloads_when_the_file_changes_and_keeps_the_last_good_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = two_users(dir.path());
    let users = method(&path);
    assert_eq!(
        users.authenticate(&login("carol", "singer")).await,
        Err(AuthError::Rejected)
    );

    // A user is added (and the file's stamp moves on).
    set_user(&path, "carol", "singer", &["engineers".into()]).unwrap();
    touch_later(&path);
    let carol = users.authenticate(&login("carol", "singer")).await.unwrap();
    assert_eq!(carol.groups, vec!["engineers"]);

    // A broken edit is refused; the previous users stay.
    std::fs::write(&path, "[users.carol]\npassword = \"plaintext\"\n").unwrap();
    assert!(users.authenticate(&login("carol", "singer")).await.is_ok());

    // A user is removed.
    std::fs::write(&path, "").unwrap();
    touch_later(&path);
    assert_eq!(
        users.authenticate(&login("carol", "singer")).await,
        Err(AuthError::Rejected)
    );
}

#[test]
fn a_plaintext_password_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.toml");
    std::fs::write(&path, "[users.alice]\npassword = \"secret\"\n").unwrap();
    let err = UsersFile::new(&UsersFileConfig { path }).err().unwrap();
    assert!(matches!(err, AuthError::Config(_)));
    assert!(err.to_string().contains("not an argon2 hash"), "{err}");
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[test]
fn a_missing_file_is_a_config_error() {
    let err = UsersFile::new(&UsersFileConfig {
        path: "/nonexistent/users.toml".into(),
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("/nonexistent/users.toml"), "{err}");
}
