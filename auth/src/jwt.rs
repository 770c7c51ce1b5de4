//! JWT bearer tokens: HS256 with a shared secret, RS256/ES256 with a PEM key or a JWKS file.
//! Issuer, audience, expiry and not-before are checked; groups come from a configurable claim.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::config::JwtConfig;
use crate::{read_config_file, AuthError, Authenticator, Credential, Principal};

enum Keys {
    Single(DecodingKey),
    /// Keys by `kid`.
    Set(Vec<(Option<String>, DecodingKey)>),
}

pub struct JwtAuthenticator {
    keys: Keys,
    validation: Validation,
    user_claim: String,
    groups_claim: String,
}

fn algorithm(name: &str) -> Result<Algorithm, AuthError> {
    name.parse()
        .map_err(|_| AuthError::Config(format!("unknown JWT algorithm {name:?}")))
}

/// Whether a string has the shape of a JWT (three base64url parts), so a SASL password that is
/// one can be taken as a token.
pub fn looks_like_jwt(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts[..2].iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl JwtAuthenticator {
    pub fn new(config: &JwtConfig) -> Result<Self, AuthError> {
        let algorithms = config
            .algorithms
            .iter()
            .map(|a| algorithm(a))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(&first) = algorithms.first() else {
            return Err(AuthError::Config("jwt.algorithms is empty".into()));
        };
        let bad_key = |e: jsonwebtoken::errors::Error| AuthError::Config(format!("JWT key: {e}"));
        let keys = match (
            &config.hs256_secret_file,
            &config.public_key_file,
            &config.jwks_file,
        ) {
            (Some(path), None, None) => {
                let secret = read_config_file(path, "JWT secret file")?;
                Keys::Single(DecodingKey::from_secret(
                    secret.trim_end_matches('\n').as_bytes(),
                ))
            }
            (None, Some(path), None) => {
                let pem = read_config_file(path, "JWT public key file")?;
                let key = match first {
                    Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem.as_bytes()),
                    Algorithm::EdDSA => DecodingKey::from_ed_pem(pem.as_bytes()),
                    _ => DecodingKey::from_rsa_pem(pem.as_bytes()),
                }
                .map_err(bad_key)?;
                Keys::Single(key)
            }
            (None, None, Some(path)) => {
                let text = read_config_file(path, "JWKS file")?;
                let set: JwkSet = serde_json::from_str(&text)
                    .map_err(|e| AuthError::Config(format!("JWKS file {}: {e}", path.display())))?;
                let keys = set
                    .keys
                    .iter()
                    .map(|jwk| {
                        Ok((
                            jwk.common.key_id.clone(),
                            DecodingKey::from_jwk(jwk).map_err(bad_key)?,
                        ))
                    })
                    .collect::<Result<Vec<_>, AuthError>>()?;
                Keys::Set(keys)
            }
            _ => {
                return Err(AuthError::Config(
                    "jwt needs exactly one of hs256_secret_file, public_key_file, jwks_file".into(),
                ))
            }
        };
        let mut validation = Validation::new(first);
        validation.algorithms = algorithms;
        validation.leeway = config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        match &config.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(Self {
            keys,
            validation,
            user_claim: config.user_claim.clone(),
            groups_claim: config.groups_claim.clone(),
        })
    }

    fn key_for(&self, token: &str) -> Result<&DecodingKey, AuthError> {
        match &self.keys {
            Keys::Single(key) => Ok(key),
            Keys::Set(keys) => {
                let kid = decode_header(token).map_err(|_| AuthError::Rejected)?.kid;
                keys.iter()
                    .find(|(k, _)| kid.is_none() || *k == kid)
                    .map(|(_, key)| key)
                    .ok_or(AuthError::Rejected)
            }
        }
    }

    /// The principal a token names, if it verifies.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let key = self.key_for(token)?;
        let data = decode::<Value>(token, key, &self.validation).map_err(|e| {
            tracing::debug!(reason = %e, "JWT refused");
            AuthError::Rejected
        })?;
        let claims = data.claims;
        let user = claims
            .get(&self.user_claim)
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .ok_or(AuthError::Rejected)?
            .to_owned();
        let groups = match claims.get(&self.groups_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(s)) => s
                .split([',', ' '])
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        Ok(Principal { user, groups })
    }
}

impl Authenticator for JwtAuthenticator {
    async fn authenticate(
        &self,
        credential: &Credential<'_>,
    ) -> Result<Option<Principal>, AuthError> {
        match credential {
            Credential::Bearer { token } => self.verify(token).map(Some),
            // Clients with only user/password fields (SASL PLAIN) put the token in the password.
            Credential::Password { user, password } if looks_like_jwt(password) => {
                let principal = self.verify(password)?;
                if !user.is_empty() && *user != principal.user {
                    return Err(AuthError::Rejected);
                }
                Ok(Some(principal))
            }
            _ => Ok(None),
        }
    }
}
