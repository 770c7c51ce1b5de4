//! JWT bearer tokens: HS256 with a shared secret, RS256/ES256 with a PEM public key or a JWKS
//! file. The signature, `exp` and `nbf` are always checked (with `leeway`), `iss` and `aud` when
//! configured (and then required); the user and groups come from configurable claims.
//!
//! Clients that only have user/password fields (SASL PLAIN, HTTP Basic) may put the token in the
//! password: a password shaped like a JWT is verified as one, and the token's user must then be
//! the user name given, unless that is empty.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::config::JwtConfig;
use crate::{read_config_file, AuthError, Authenticator, Credential, Principal};

/// One key that may have signed a token, with the checks that go with it (the algorithms this
/// key can verify).
struct VerifyingKey {
    /// The JWKS `kid`, to pick the key a token names.
    kid: Option<String>,
    key: DecodingKey,
    validation: Validation,
}

/// The `jwt` method.
pub struct JwtAuthenticator {
    /// One key (secret or PEM), or the keys of a JWKS file.
    keys: Vec<VerifyingKey>,
    user_claim: String,
    groups_claim: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

fn family(alg: Algorithm) -> Family {
    use Algorithm::*;
    match alg {
        HS256 | HS384 | HS512 => Family::Hmac,
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Family::Rsa,
        ES256 | ES384 => Family::Ec,
        EdDSA => Family::Ed,
    }
}

fn algorithm(name: &str) -> Result<Algorithm, AuthError> {
    name.parse()
        .map_err(|_| AuthError::Config(format!("unknown JWT algorithm {name:?}")))
}

/// Whether a string has the shape of a JWT (three non-empty base64url parts), so a password that
/// is one can be taken as a token.
pub fn looks_like_jwt(s: &str) -> bool {
    let mut parts = 0;
    for part in s.split('.') {
        parts += 1;
        let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if part.is_empty() || !part.bytes().all(base64url) {
            return false;
        }
    }
    parts == 3
}

impl JwtAuthenticator {
    pub fn new(config: &JwtConfig) -> Result<Self, AuthError> {
        let algorithms = config
            .algorithms
            .iter()
            .map(|a| algorithm(a))
            .collect::<Result<Vec<_>, _>>()?;
        if algorithms.is_empty() {
            return Err(AuthError::Config("jwt.algorithms is empty".into()));
        }
        let mut base = Validation::new(algorithms[0]);
        base.leeway = config.leeway.as_secs();
        base.validate_exp = true;
        base.validate_nbf = true;
        let mut required = vec!["exp"];
        match &config.issuer {
            Some(iss) => {
                base.set_issuer(&[iss]);
                required.push("iss");
            }
            None => base.iss = None,
        }
        match &config.audience {
            Some(aud) => {
                base.set_audience(&[aud]);
                required.push("aud");
            }
            None => base.validate_aud = false,
        }
        base.set_required_spec_claims(&required);
        // A key verifies the configured algorithms of its own family only.
        let validation_for = |fam: Family, what: &str| -> Result<Validation, AuthError> {
            let algs: Vec<Algorithm> = algorithms
                .iter()
                .copied()
                .filter(|a| family(*a) == fam)
                .collect();
            if algs.is_empty() {
                return Err(AuthError::Config(format!(
                    "jwt.algorithms {:?} has none that fits {what}",
                    config.algorithms
                )));
            }
            let mut v = base.clone();
            v.algorithms = algs;
            Ok(v)
        };
        let bad_key = |e: jsonwebtoken::errors::Error| AuthError::Config(format!("JWT key: {e}"));
        let keys = match (
            &config.hs256_secret_file,
            &config.public_key_file,
            &config.jwks_file,
        ) {
            (Some(path), None, None) => {
                let secret = read_config_file(path, "JWT secret file")?;
                let secret = secret.trim_end_matches(['\r', '\n']);
                if secret.len() < 32 {
                    return Err(AuthError::Config(format!(
                        "JWT secret in {} is shorter than 32 bytes",
                        path.display()
                    )));
                }
                if algorithms.iter().any(|a| family(*a) != Family::Hmac) {
                    return Err(AuthError::Config(
                        "hs256_secret_file takes HS256/HS384/HS512 algorithms only".into(),
                    ));
                }
                vec![VerifyingKey {
                    kid: None,
                    key: DecodingKey::from_secret(secret.as_bytes()),
                    validation: validation_for(Family::Hmac, "a shared secret")?,
                }]
            }
            (None, Some(path), None) => {
                let pem = read_config_file(path, "JWT public key file")?;
                let fam = family(algorithms[0]);
                if algorithms.iter().any(|a| family(*a) != fam) {
                    return Err(AuthError::Config(
                        "with public_key_file, jwt.algorithms must all be of one kind (RS*/PS*, ES* or EdDSA)".into(),
                    ));
                }
                let key = match fam {
                    Family::Rsa => DecodingKey::from_rsa_pem(pem.as_bytes()),
                    Family::Ec => DecodingKey::from_ec_pem(pem.as_bytes()),
                    Family::Ed => DecodingKey::from_ed_pem(pem.as_bytes()),
                    Family::Hmac => {
                        return Err(AuthError::Config(
                            "HS* algorithms need hs256_secret_file, not public_key_file".into(),
                        ))
                    }
                }
                .map_err(|e| {
                    AuthError::Config(format!("JWT public key {}: {e}", path.display()))
                })?;
                vec![VerifyingKey {
                    kid: None,
                    key,
                    validation: validation_for(fam, "the public key")?,
                }]
            }
            (None, None, Some(path)) => {
                let text = read_config_file(path, "JWKS file")?;
                let set: JwkSet = serde_json::from_str(&text)
                    .map_err(|e| AuthError::Config(format!("JWKS file {}: {e}", path.display())))?;
                let mut keys = Vec::new();
                for jwk in &set.keys {
                    let fam = match &jwk.algorithm {
                        AlgorithmParameters::RSA(_) => Family::Rsa,
                        AlgorithmParameters::EllipticCurve(_) => Family::Ec,
                        AlgorithmParameters::OctetKeyPair(_) => Family::Ed,
                        AlgorithmParameters::OctetKey(_) => Family::Hmac,
                    };
                    let kid = jwk.common.key_id.clone();
                    let Ok(validation) = validation_for(fam, "this key") else {
                        tracing::warn!(
                            kid,
                            "JWKS key of an algorithm not in jwt.algorithms; ignored"
                        );
                        continue;
                    };
                    keys.push(VerifyingKey {
                        kid,
                        key: DecodingKey::from_jwk(jwk).map_err(bad_key)?,
                        validation,
                    });
                }
                if keys.is_empty() {
                    return Err(AuthError::Config(format!(
                        "JWKS file {} has no key for jwt.algorithms {:?}",
                        path.display(),
                        config.algorithms
                    )));
                }
                keys
            }
            _ => {
                return Err(AuthError::Config(
                    "jwt needs exactly one of hs256_secret_file, public_key_file, jwks_file".into(),
                ))
            }
        };
        Ok(Self {
            keys,
            user_claim: config.user_claim.clone(),
            groups_claim: config.groups_claim.clone(),
        })
    }

    /// The key for a token: the only one, or the JWKS key its header's `kid` names (a token
    /// without `kid` only when the set has a single key).
    fn key_for(&self, token: &str) -> Result<&VerifyingKey, AuthError> {
        if let [only] = self.keys.as_slice() {
            if only.kid.is_none() {
                return Ok(only);
            }
        }
        let kid = decode_header(token).map_err(|_| AuthError::Rejected)?.kid;
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid.as_str())),
            None => match self.keys.as_slice() {
                [only] => Some(only),
                _ => None,
            },
        }
        .ok_or(AuthError::Rejected)
    }

    /// The principal a token names, if it verifies.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_until(token).map(|(principal, _)| principal)
    }

    /// The principal a token names, if it verifies, and its `exp` (required, so always known).
    pub fn verify_until(&self, token: &str) -> Result<(Principal, Option<SystemTime>), AuthError> {
        let key = self.key_for(token)?;
        let data = decode::<Value>(token, &key.key, &key.validation).map_err(|e| {
            // The reason (expired, wrong audience...) is for the operator, not the client.
            tracing::info!(reason = %e, "JWT refused");
            AuthError::Rejected
        })?;
        let claims = data.claims;
        let user = claims
            .get(&self.user_claim)
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                tracing::info!(claim = %self.user_claim, "JWT has no user claim");
                AuthError::Rejected
            })?
            .to_owned();
        let groups = match claims.get(&self.groups_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect(),
            Some(Value::String(s)) => s
                .split([',', ' '])
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        let expires = claims
            .get("exp")
            .and_then(Value::as_u64)
            .map(|secs| UNIX_EPOCH + Duration::from_secs(secs));
        Ok((Principal { user, groups }, expires))
    }
}

#[async_trait::async_trait]
impl Authenticator for JwtAuthenticator {
    async fn authenticate(&self, credential: &Credential<'_>) -> Result<Principal, AuthError> {
        self.authenticate_until(credential)
            .await
            .map(|(principal, _)| principal)
    }

    async fn authenticate_until(
        &self,
        credential: &Credential<'_>,
    ) -> Result<(Principal, Option<SystemTime>), AuthError> {
        match *credential {
            Credential::Bearer { token } => self.verify_until(token),
            Credential::Password { user, password } if looks_like_jwt(password) => {
                let (principal, expires) = self.verify_until(password)?;
                if !user.is_empty() && user != principal.user {
                    tracing::info!(user = %crate::clip(user), token_user = %crate::clip(&principal.user), "JWT names another user");
                    return Err(AuthError::Rejected);
                }
                Ok((principal, expires))
            }
            _ => Err(AuthError::Rejected),
        }
    }

    fn accepts(&self, credential: &Credential<'_>) -> bool {
        match credential {
            Credential::Bearer { .. } => true,
            Credential::Password { password, .. } => looks_like_jwt(password),
            Credential::Anonymous { .. } => false,
        }
    }

    fn name(&self) -> &'static str {
        "jwt"
    }
}

#[cfg(test)]
mod tests;
