//! The HTTP transport's session cookie: a signed, self-contained proof of a login that clients
//! which keep cookies (Hive JDBC) send back instead of credentials.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sparkgate_auth::Principal;

/// The cookie Hive's own HTTP transport uses; clients that keep cookies send it back.
pub const COOKIE_NAME: &str = "hive.server2.auth";

/// Signs and checks session cookies.
pub struct CookieSigner {
    key: Vec<u8>,
    ttl: Duration,
    secure: bool,
}

impl CookieSigner {
    pub fn new(key: Vec<u8>, ttl: Duration, secure: bool) -> Self {
        Self { key, ttl, secure }
    }

    fn mac(&self, payload: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// `Set-Cookie` value for `principal`, valid for the cookie lifetime but never past
    /// `valid_until` (the login's own expiry, a token's `exp`); none when that leaves nothing.
    pub fn issue(
        &self,
        principal: &Principal,
        now: SystemTime,
        valid_until: Option<SystemTime>,
    ) -> Option<String> {
        let left = match valid_until {
            Some(until) => until.duration_since(now).unwrap_or_default().min(self.ttl),
            None => self.ttl,
        };
        if left.as_secs() == 0 {
            return None;
        }
        let expires = now.duration_since(UNIX_EPOCH).unwrap_or_default() + left;
        let payload = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(&principal.user),
            URL_SAFE_NO_PAD.encode(principal.groups.join("\n")),
            expires.as_secs()
        );
        let signature = self.mac(&payload);
        Some(format!(
            "{COOKIE_NAME}={payload}.{signature}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict{}",
            left.as_secs(),
            if self.secure { "; Secure" } else { "" }
        ))
    }

    /// The principal of a cookie value, if its signature is right and it has not expired.
    pub fn verify(&self, value: &str, now: SystemTime) -> Option<Principal> {
        let (payload, signature) = value.rsplit_once('.')?;
        let expected = self.mac(payload);
        // Constant-time comparison through the MAC API.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(payload.as_bytes());
        let given = URL_SAFE_NO_PAD.decode(signature).ok()?;
        mac.verify_slice(&given).ok()?;
        debug_assert_eq!(expected, signature);
        let mut parts = payload.splitn(3, '.');
        let user = String::from_utf8(URL_SAFE_NO_PAD.decode(parts.next()?).ok()?).ok()?;
        let groups = String::from_utf8(URL_SAFE_NO_PAD.decode(parts.next()?).ok()?).ok()?;
        let expires: u64 = parts.next()?.parse().ok()?;
        if now.duration_since(UNIX_EPOCH).ok()?.as_secs() >= expires {
            return None;
        }
        let groups = groups
            .split('\n')
            .filter(|g| !g.is_empty())
            .map(str::to_owned)
            .collect();
        Some(Principal { user, groups })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Principal {
        Principal {
            user: "alice".into(),
            groups: vec!["analysts".into(), "admins".into()],
        }
    }

    fn value_of(set_cookie: &str) -> &str {
        set_cookie
            .split(';')
            .next()
            .unwrap()
            .strip_prefix("hive.server2.auth=")
            .unwrap()
    }

    #[test]
    fn cookie_round_trip_and_attributes() {
        let signer = CookieSigner::new(b"k".repeat(32), Duration::from_secs(60), true);
        let now = SystemTime::now();
        let set = signer.issue(&principal(), now, None).unwrap();
        assert!(set.contains("HttpOnly") && set.contains("Secure") && set.contains("Max-Age=60"));
        assert_eq!(signer.verify(value_of(&set), now), Some(principal()));
        let plain = CookieSigner::new(b"k".repeat(32), Duration::from_secs(60), false);
        assert!(!plain
            .issue(&principal(), now, None)
            .unwrap()
            .contains("Secure"));
    }

    /// A cookie never outlives the login it stands for (a token's `exp`), and none is issued
    /// when nothing is left of it (or cookies last zero seconds: `auth.cache_ttl = 0`).
    #[test]
    fn a_cookie_ends_with_the_login_it_stands_for() {
        let signer = CookieSigner::new(b"k".repeat(32), Duration::from_secs(3600), false);
        let now = SystemTime::now();
        let set = signer
            .issue(&principal(), now, Some(now + Duration::from_secs(90)))
            .unwrap();
        assert!(set.contains("Max-Age=90"), "{set}");
        assert_eq!(signer.verify(value_of(&set), now), Some(principal()));
        assert_eq!(
            signer.verify(value_of(&set), now + Duration::from_secs(91)),
            None
        );
        assert_eq!(signer.issue(&principal(), now, Some(now)), None);
        let off = CookieSigner::new(b"k".repeat(32), Duration::ZERO, false);
        assert_eq!(off.issue(&principal(), now, None), None);
    }

    #[test]
    fn forged_tampered_or_expired_cookies_are_refused() {
        let signer = CookieSigner::new(b"k".repeat(32), Duration::from_secs(60), false);
        let now = SystemTime::now();
        let set = signer.issue(&principal(), now, None).unwrap();
        let value = value_of(&set);
        let other_key = CookieSigner::new(b"x".repeat(32), Duration::from_secs(60), false);
        assert_eq!(
            other_key.verify(value, now),
            None,
            "signed with another key"
        );
        let (payload, sig) = value.rsplit_once('.').unwrap();
        let tampered = format!(
            "{}.{sig}",
            payload.replacen(
                &URL_SAFE_NO_PAD.encode("alice"),
                &URL_SAFE_NO_PAD.encode("admin"),
                1
            )
        );
        assert_eq!(signer.verify(&tampered, now), None, "payload changed");
        assert_eq!(
            signer.verify(value, now + Duration::from_secs(61)),
            None,
            "expired"
        );
        assert_eq!(signer.verify("garbage", now), None);
    }
}
