//! Users from a TOML file with argon2id password hashes, reloaded when the file changes.
//!
//! ```toml
//! [users.alice]
//! password = "$argon2id$v=19$m=19456,t=2,p=1$..."
//! groups = ["analysts"]
//! ```
//! `sparkgate passwd FILE USER [--group G]...` writes entries ([`set_user`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

use crate::config::UsersFileConfig;
use crate::{read_config_file, AuthError, Authenticator, Credential, Principal};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UsersDocument {
    #[serde(default)]
    pub users: BTreeMap<String, UserEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// An argon2 PHC string; never a plaintext password.
    pub password: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// A salted argon2id hash of `password`, as a PHC string.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters")
        .to_string()
}

impl UsersDocument {
    /// Parses the text of a users file; `path` only names it in errors. Every password must be
    /// an argon2 PHC string. Public for the fuzz target (`fuzz/fuzz_targets/users_file.rs`).
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, AuthError> {
        let doc: UsersDocument = toml::from_str(text)
            .map_err(|e| AuthError::Config(format!("users file {}: {e}", path.display())))?;
        for (user, entry) in &doc.users {
            PasswordHash::new(&entry.password).map_err(|e| {
                AuthError::Config(format!(
                    "users file {}: user {user:?}: password is not an argon2 hash ({e}); write entries with `sparkgate passwd`",
                    path.display()
                ))
            })?;
        }
        Ok(doc)
    }
}

fn parse(path: &Path) -> Result<UsersDocument, AuthError> {
    let text = read_config_file(path, "users file")?;
    UsersDocument::from_toml(&text, path)
}

/// Adds or replaces `user` in the file at `path` (created if missing), written atomically and
/// readable by the owner only.
pub fn set_user(path: &Path, user: &str, password: &str, groups: &[String]) -> std::io::Result<()> {
    if user.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the user name is empty",
        ));
    }
    let mut doc = if path.exists() {
        parse(path).map_err(|e| std::io::Error::other(e.to_string()))?
    } else {
        UsersDocument::default()
    };
    doc.users.insert(
        user.to_owned(),
        UserEntry {
            password: hash_password(password),
            groups: groups.to_vec(),
        },
    );
    let text = toml::to_string(&doc).map_err(std::io::Error::other)?;
    // Written next to the target and renamed over it, so readers see the old or the new file,
    // never half of one.
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp); // left over by a crash
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// What identifies a version of the file (modification time, size), to notice changes.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The `users_file` method.
pub struct UsersFile {
    path: PathBuf,
    /// The version last loaded and what identified it; replaced when the stamp changes.
    loaded: Mutex<(Stamp, Arc<UsersDocument>)>,
}

impl UsersFile {
    pub fn new(config: &UsersFileConfig) -> Result<Self, AuthError> {
        let doc = parse(&config.path)?;
        Ok(Self {
            loaded: Mutex::new((stamp(&config.path), Arc::new(doc))),
            path: config.path.clone(),
        })
    }

    /// The current users; re-read when the file's modification time or size changed. A broken
    /// new version is logged once and the previous one kept until the file changes again.
    fn users(&self) -> Arc<UsersDocument> {
        let now = stamp(&self.path);
        let mut loaded = self.loaded.lock().expect("users file lock");
        if now.is_some() && now != loaded.0 {
            loaded.0 = now;
            match parse(&self.path) {
                Ok(doc) => {
                    tracing::info!(path = %self.path.display(), users = doc.users.len(), "users file reloaded");
                    loaded.1 = Arc::new(doc);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "users file changed but does not load; keeping the previous version")
                }
            }
        }
        loaded.1.clone()
    }
}

/// A hash to check unknown users against, so they take as long as known ones.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hash_password("no such user"))
}

#[async_trait::async_trait]
impl Authenticator for UsersFile {
    async fn authenticate(&self, credential: &Credential<'_>) -> Result<Principal, AuthError> {
        let Credential::Password { user, password } = *credential else {
            return Err(AuthError::Rejected);
        };
        if user.is_empty() {
            return Err(AuthError::MissingUser);
        }
        let users = self.users();
        let entry = users.users.get(user);
        let hash = entry.map_or_else(|| dummy_hash().to_owned(), |e| e.password.clone());
        let password = password.to_owned();
        // argon2 is deliberately slow: keep it off the async workers.
        let verified = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
        })
        .await
        .map_err(|e| AuthError::Unavailable(format!("password check failed: {e}")))?;
        match entry {
            Some(entry) if verified => Ok(Principal {
                user: user.to_owned(),
                groups: entry.groups.clone(),
            }),
            _ => Err(AuthError::Rejected),
        }
    }

    fn accepts(&self, credential: &Credential<'_>) -> bool {
        matches!(credential, Credential::Password { .. })
    }

    fn name(&self) -> &'static str {
        "users_file"
    }

    fn costly(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
