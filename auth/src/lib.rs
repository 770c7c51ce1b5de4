//! Who a client is: authenticators turn a credential into a [`Principal`].
//!
//! This crate knows nothing about Thrift; the gateway hands it what the client presented.
//! Today it has the `none` method (any user, password ignored, as a Spark Thrift Server with
//! `hive.server2.authentication=NONE` does); LDAP, users file and JWT come with the tenant work.

use thiserror::Error;

/// An authenticated client: its user name and the groups it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub groups: Vec<String>,
}

/// What a client presented to prove who it is.
pub enum Credential<'a> {
    /// SASL PLAIN (or HTTP Basic): user and password.
    Password { user: &'a str, password: &'a str },
    /// NOSASL: the transport carries no identity; the user name comes from OpenSession.
    Anonymous { user: &'a str },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("authentication failed for user {user:?}")]
    Rejected { user: String },
    #[error("a user name is required")]
    MissingUser,
}

/// Decides who a credential belongs to.
pub trait Authenticator: Send + Sync {
    fn authenticate(&self, credential: &Credential<'_>) -> Result<Principal, AuthError>;
}

/// Accepts any user and ignores the password, as the Spark Thrift Server does with auth NONE.
#[derive(Debug, Default, Clone)]
pub struct NoneAuthenticator;

impl Authenticator for NoneAuthenticator {
    fn authenticate(&self, credential: &Credential<'_>) -> Result<Principal, AuthError> {
        let user = match credential {
            Credential::Password { user, .. } | Credential::Anonymous { user } => *user,
        };
        if user.is_empty() {
            return Err(AuthError::MissingUser);
        }
        Ok(Principal {
            user: user.to_owned(),
            groups: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_accepts_any_password_but_needs_a_user() {
        let auth = NoneAuthenticator;
        let p = auth
            .authenticate(&Credential::Password {
                user: "alice",
                password: "whatever",
            })
            .unwrap();
        assert_eq!(p.user, "alice");
        assert_eq!(
            auth.authenticate(&Credential::Anonymous { user: "" }),
            Err(AuthError::MissingUser)
        );
    }
}
