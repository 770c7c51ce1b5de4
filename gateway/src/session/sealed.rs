//! HTTP session and operation handles any replica can serve. Thrift over HTTP sends every call
//! as its own request, and behind a load balancer consecutive requests reach different
//! replicas: the handles sparkgate gives an HTTP client carry what a replica needs to route the
//! next call (owner, tenant, driver address, the driver's own handles, an expiry), sealed with
//! the key the replicas share (`http.cookie_key_file`) by authenticated encryption, so a client
//! can neither read nor forge one. A replica that meets a handle it does not know opens it and
//! takes the session (or operation) in.
//!
//! The handle identifier keeps its 16-byte GUID (what clients log); its secret is the sealed
//! state: a version byte, a 12-byte random nonce, and ChaCha20-Poly1305 over the JSON state with
//! the version and GUID as associated data.
//!
//! What only the issuing replica knew is asked of the driver instead (a final status), or is
//! not there: a result served from that replica's cache, a statement waiting in its queue.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use hive_thrift::generated::tcliservice as t;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::GatewayError;

const VERSION: u8 = 1;
/// A sealed state larger than this is refused unread (a handle's secret is client input).
const MAX_SEALED: usize = 8 * 1024;
/// How long a sealed handle is honoured after it was issued.
pub const HANDLE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Seals and opens handle state with a key derived from the replicas' shared key.
pub struct Sealer {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
    /// From the replicas' shared key (the cookie key): a key of its own for this purpose, so
    /// a cookie signature and a sealed handle never share one.
    pub fn new(shared_key: &[u8]) -> Self {
        let mut derive = Sha256::new();
        derive.update(b"sparkgate sealed handles v1\0");
        derive.update(shared_key);
        let key = UnboundKey::new(&CHACHA20_POLY1305, &derive.finalize())
            .expect("a 32-byte key fits ChaCha20-Poly1305");
        Self {
            key: LessSafeKey::new(key),
            random: SystemRandom::new(),
        }
    }

    /// `value`, sealed to the handle identifier `guid`.
    pub fn seal<T: Serialize>(&self, guid: &[u8], value: &T) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .expect("the system random source works");
        let mut body = serde_json::to_vec(value).expect("handle state serializes");
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(guid)),
                &mut body,
            )
            .expect("sealing a small buffer cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + body.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        out
    }

    /// The state sealed to `guid`, if `sealed` is one of ours, whole and unaltered.
    pub fn open<T: DeserializeOwned>(&self, guid: &[u8], sealed: &[u8]) -> Option<T> {
        if sealed.len() > MAX_SEALED || sealed.len() < 1 + NONCE_LEN || sealed[0] != VERSION {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[1..=NONCE_LEN]).ok()?;
        let mut body = sealed[1 + NONCE_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad(guid)), &mut body)
            .ok()?;
        serde_json::from_slice(plain).ok()
    }
}

fn aad(guid: &[u8]) -> Vec<u8> {
    let mut aad = vec![VERSION];
    aad.extend_from_slice(guid);
    aad
}

/// Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

mod bytes_b64 {
    use super::*;

    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD_NO_PAD.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD_NO_PAD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// What any replica needs to serve an HTTP session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSession {
    /// The authenticated user whose calls may use it.
    pub owner: String,
    /// The user the driver runs it as.
    pub user: String,
    pub tenant: String,
    /// The client family's name (answers are shaped for it).
    pub family: String,
    /// The driver as its launcher names it (empty if the session holds no place on a pooled
    /// driver: its address alone names it then), and its address.
    pub driver_id: String,
    pub driver: String,
    #[serde(with = "bytes_b64")]
    pub driver_guid: Vec<u8>,
    #[serde(with = "bytes_b64")]
    pub driver_secret: Vec<u8>,
    /// Unix seconds after which it is refused.
    pub expires: u64,
}

impl SealedSession {
    /// The state of `owner`'s session as `user` of `tenant`, on the driver at `driver` (where
    /// `lease` holds its place, if pooled) with the driver's handle `on_driver`; valid for
    /// [`HANDLE_TTL`].
    pub fn on_driver(
        owner: &str,
        user: &str,
        tenant: &str,
        family: super::client::ClientFamily,
        lease: Option<&crate::pool::DriverLease>,
        driver: &str,
        on_driver: &t::TSessionHandle,
    ) -> Self {
        Self {
            owner: owner.to_owned(),
            user: user.to_owned(),
            tenant: tenant.to_owned(),
            family: family.name().to_owned(),
            driver_id: lease.map(|l| l.driver_id.clone()).unwrap_or_default(),
            driver: driver.to_owned(),
            driver_guid: on_driver.session_id.guid.clone(),
            driver_secret: on_driver.session_id.secret.clone(),
            expires: unix_now() + HANDLE_TTL.as_secs(),
        }
    }

    pub fn driver_handle(&self) -> t::TSessionHandle {
        t::TSessionHandle {
            session_id: t::THandleIdentifier {
                guid: self.driver_guid.clone(),
                secret: self.driver_secret.clone(),
            },
        }
    }
}

/// What any replica needs to serve an HTTP session's operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedOperation {
    pub session: SealedSession,
    /// The client's handle of its session (so a replica can take the session in with it).
    #[serde(with = "bytes_b64")]
    pub session_guid: Vec<u8>,
    #[serde(with = "bytes_b64")]
    pub session_secret: Vec<u8>,
    #[serde(with = "bytes_b64")]
    pub driver_guid: Vec<u8>,
    #[serde(with = "bytes_b64")]
    pub driver_secret: Vec<u8>,
    pub operation_type: i32,
    pub has_result_set: bool,
    pub modified_row_count: Option<f64>,
    /// Python clients read this column alone of the results.
    pub name_column: Option<usize>,
    /// Only the replica that issued it can answer it (a cached result, a queued statement).
    pub issuer_only: bool,
}

impl SealedOperation {
    pub fn session_handle(&self) -> t::TSessionHandle {
        t::TSessionHandle {
            session_id: t::THandleIdentifier {
                guid: self.session_guid.clone(),
                secret: self.session_secret.clone(),
            },
        }
    }

    pub fn driver_handle(&self) -> t::TOperationHandle {
        t::TOperationHandle {
            operation_id: t::THandleIdentifier {
                guid: self.driver_guid.clone(),
                secret: self.driver_secret.clone(),
            },
            operation_type: t::TOperationType(self.operation_type),
            has_result_set: self.has_result_set,
            modified_row_count: self.modified_row_count.map(thrift::OrderedFloat),
        }
    }
}

impl super::CallHandler {
    /// Seals the handles of HTTP sessions with a key derived from `shared_key` (before any
    /// session opens).
    pub fn seal_http_handles(&mut self, shared_key: &[u8]) {
        let sealer = std::sync::Arc::new(Sealer::new(shared_key));
        self.table = std::sync::Arc::new(super::table::SessionTable::sealing(sealer.clone()));
        self.sealer = Some(sealer);
    }

    /// Whether other replicas may serve `session`'s calls too (an HTTP session, with
    /// `http.shared_sessions`): this replica does not end it on its own.
    pub(super) fn shares_session(&self, session: &super::Session) -> bool {
        self.config.http.shared_sessions && session.sealed.is_some()
    }

    /// A new session's client handle: for an HTTP session (with sealing on), its state sealed
    /// in, which the session keeps for its operations' handles.
    pub(super) fn mint_session_handle(
        &self,
        owner: &super::Owner,
        state: impl FnOnce(&str) -> SealedSession,
    ) -> (t::TSessionHandle, Option<SealedSession>) {
        let mut id = super::table::mint_identifier();
        let sealed = match (owner, &self.sealer) {
            (super::Owner::User(user), Some(sealer)) => {
                let sealed = state(user);
                id.secret = sealer.seal(&id.guid, &sealed);
                Some(sealed)
            }
            _ => None,
        };
        (t::TSessionHandle { session_id: id }, sealed)
    }

    /// The HTTP session behind a sealed handle this replica does not know, taken in.
    /// `None` for a handle that is not a valid sealed one of `owner`'s.
    pub(super) async fn adopt_session(
        &self,
        handle: &t::TSessionHandle,
        owner: &super::Owner,
    ) -> Result<Option<std::sync::Arc<super::Session>>, GatewayError> {
        let super::Owner::User(caller) = owner else {
            return Ok(None);
        };
        let id = &handle.session_id;
        let Some(sealer) = &self.sealer else {
            return Ok(None);
        };
        let Some(sealed) = sealer.open::<SealedSession>(&id.guid, &id.secret) else {
            return Ok(None);
        };
        self.adopt_sealed_session(handle.clone(), sealed, caller)
            .await
    }

    async fn adopt_sealed_session(
        &self,
        handle: t::TSessionHandle,
        sealed: SealedSession,
        caller: &str,
    ) -> Result<Option<std::sync::Arc<super::Session>>, GatewayError> {
        use tracing::{info, warn};
        if sealed.owner != caller {
            warn!(caller, "a sealed session handle of another user; refused");
            return Ok(None);
        }
        if sealed.expires < unix_now() {
            info!(caller, "an expired sealed session handle; refused");
            return Ok(None);
        }
        let (Some(tenant), Some(family)) = (
            self.tenants.get(&sealed.tenant),
            super::client::ClientFamily::from_name(&sealed.family),
        ) else {
            warn!(tenant = %sealed.tenant, "a sealed session handle of a tenant or client family this replica does not have; refused");
            return Ok(None);
        };
        // The driver's password and UI, as the tenant's pool knows them (every replica adopts
        // the same drivers; static backends have none).
        // A place on the driver, as the tenant's pool knows it (every replica adopts the same
        // drivers; static backends are listed too).
        let Some(pool) = self.pools.get(&tenant.name) else {
            return Ok(None);
        };
        let Some(lease) = pool
            .driver_for_sealed(&sealed.driver_id, &sealed.driver)
            .await
        else {
            warn!(tenant = %tenant.name, driver = %sealed.driver, "a sealed session handle names a driver this replica does not know (gone, or the session moved on another replica); refused");
            return Err(GatewayError::DriverGone {
                addr: sealed.driver.clone(),
            });
        };
        self.links.introduce(&sealed.driver, &lease.secret);
        let mut session = super::Session::new(
            handle,
            super::Owner::User(caller.to_owned()),
            sealed.user.clone(),
            tenant.name.clone(),
            sealed.driver.clone(),
            sealed.driver_handle(),
        );
        self.configure_session(&mut session, tenant, family);
        session.spark_ui = super::open::spark_ui_of(&lease);
        session.lease = Some(lease);
        session.origin = crate::audit::Origin {
            authenticated_user: caller.to_owned(),
            client_addr: None,
            transport: "http",
        };
        session.sealed = Some(sealed);
        let Some(session) = self.table.insert_if_absent(session) else {
            return Ok(None);
        };
        info!(session.id = %session.id(), user = %session.user, tenant = %session.tenant, driver = %session.backend_addr, "session taken in from its sealed handle (opened by another replica)");
        Ok(Some(session))
    }

    /// The HTTP operation behind a sealed handle this replica does not know, taken in (with its
    /// session, if that is new here too).
    pub(super) async fn adopt_operation(
        &self,
        handle: &t::TOperationHandle,
        owner: &super::Owner,
    ) -> Result<Option<super::OperationEntry>, GatewayError> {
        let super::Owner::User(_) = owner else {
            return Ok(None);
        };
        let Some(sealer) = &self.sealer else {
            return Ok(None);
        };
        let id = &handle.operation_id;
        let Some(sealed) = sealer.open::<SealedOperation>(&id.guid, &id.secret) else {
            return Ok(None);
        };
        if sealed.issuer_only {
            return Err(GatewayError::NotHere);
        }
        let session_handle = sealed.session_handle();
        let session = match self.table.session(&session_handle, owner) {
            Some(session) => session,
            None => {
                let super::Owner::User(caller) = owner else {
                    return Ok(None);
                };
                match self
                    .adopt_sealed_session(session_handle, sealed.session.clone(), caller)
                    .await?
                {
                    Some(session) => session,
                    None => return Ok(None),
                }
            }
        };
        let adopted = self.table.adopt_operation(
            &session,
            handle.clone(),
            sealed.driver_handle(),
            sealed.name_column,
        );
        if adopted.is_some() {
            tracing::info!(session.id = %session.id(), op.id = %super::table::display_id(&handle.operation_id), "operation taken in from its sealed handle (started by another replica)");
        }
        Ok(adopted)
    }
}

#[cfg(test)]
mod tests;
