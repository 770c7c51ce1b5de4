//! Successful authentications, reused for `cache_ttl` (never past the credential's own expiry,
//! a token's `exp`), keyed by user and a salted SHA-256 digest of the credential: the plaintext
//! is never kept, and the per-service random salt makes the digests useless outside this
//! process.

use std::time::{Duration, SystemTime};

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{Credential, Principal};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    user: String,
    digest: [u8; 32],
}

pub(crate) struct CredentialCache {
    /// `None` when `cache_ttl` is zero: every attempt goes to the methods.
    entries: Option<moka::future::Cache<CacheKey, (Principal, Option<SystemTime>)>>,
    salt: [u8; 32],
}

/// Enough for every user of a gateway; an entry is a few hundred bytes.
const MAX_ENTRIES: u64 = 100_000;

impl CredentialCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        let mut salt = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut salt);
        let entries = (!ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .time_to_live(ttl)
                .max_capacity(MAX_ENTRIES)
                .build()
        });
        Self { entries, salt }
    }

    pub(crate) fn key(&self, credential: &Credential<'_>) -> CacheKey {
        let (kind, user, secret) = match credential {
            Credential::Password { user, password } => (0u8, *user, *password),
            Credential::Bearer { token } => (1u8, "", *token),
            Credential::Anonymous { user } => (2u8, *user, ""),
        };
        let mut hasher = Sha256::new();
        hasher.update(self.salt);
        hasher.update([kind]);
        // Length-prefixed, so (user, secret) pairs cannot run into each other.
        hasher.update((user.len() as u64).to_be_bytes());
        hasher.update(user.as_bytes());
        hasher.update(secret.as_bytes());
        CacheKey {
            user: user.to_owned(),
            digest: hasher.finalize().into(),
        }
    }

    /// A kept success, with the time it stops being valid (if it does).
    pub(crate) async fn get(&self, key: &CacheKey) -> Option<(Principal, Option<SystemTime>)> {
        let entries = self.entries.as_ref()?;
        let (principal, valid_until) = entries.get(key).await?;
        if valid_until.is_some_and(|until| until <= SystemTime::now()) {
            entries.invalidate(key).await;
            return None;
        }
        Some((principal, valid_until))
    }

    /// Keeps a success, until `valid_until` at the latest.
    pub(crate) async fn insert(
        &self,
        key: CacheKey,
        principal: Principal,
        valid_until: Option<SystemTime>,
    ) {
        if let Some(entries) = &self.entries {
            entries.insert(key, (principal, valid_until)).await;
        }
    }
}
