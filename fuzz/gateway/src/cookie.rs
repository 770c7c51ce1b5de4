//! The HTTP transport's session cookie verifier ([`sparkgate::frontend::http::CookieSigner::verify`]).
//!
//! The first input byte picks what the rest is:
//! * 0: a cookie value as a client sends it. Asserts: accepted only if its signature is the
//!   HMAC of its payload under the key.
//! * 1: a payload, signed here with the key, so the fuzzer reaches the parsing that follows the
//!   signature check. Asserts: an accepted cookie names the user it encodes and has not expired.
//! * 2: a principal (user and groups, NUL-separated) for a cookie issued by the signer. Asserts:
//!   it verifies to that principal, not after it expires, and not with any one byte changed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sparkgate::frontend::http::{CookieSigner, COOKIE_NAME};
use sparkgate_auth::Principal;

pub const KEY: &[u8] = b"sparkgate fuzz cookie key, 32 by";
const TTL: Duration = Duration::from_secs(3600);

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

/// The signature the gateway puts after the payload.
pub fn sign(payload: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY).expect("any key length");
    mac.update(payload.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

pub fn check(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let signer = CookieSigner::new(KEY.to_vec(), TTL, false);
    let text = String::from_utf8_lossy(rest);
    match mode % 3 {
        0 => {
            if signer.verify(&text, now()).is_some() {
                let (payload, signature) =
                    text.rsplit_once('.').expect("accepted cookies have a '.'");
                assert_eq!(
                    sign(payload),
                    signature,
                    "accepted a cookie it did not sign"
                );
            }
        }
        1 => {
            let value = format!("{text}.{}", sign(&text));
            if let Some(principal) = signer.verify(&value, now()) {
                let user = text.split('.').next().unwrap();
                assert_eq!(
                    URL_SAFE_NO_PAD.decode(user).unwrap(),
                    principal.user.as_bytes()
                );
                let expires: u64 = text.splitn(3, '.').nth(2).unwrap().parse().unwrap();
                assert!(expires > now().duration_since(UNIX_EPOCH).unwrap().as_secs());
            }
        }
        _ => {
            let mut parts = text.split('\0');
            let user = parts.next().unwrap_or_default().to_owned();
            // Groups travel newline-joined; empty ones are dropped on the way back.
            let groups = parts
                .filter(|g| !g.is_empty() && !g.contains('\n'))
                .map(str::to_owned)
                .collect();
            let principal = Principal { user, groups };
            let set_cookie = signer
                .issue(&principal, now(), None)
                .expect("the TTL is not zero");
            let value = set_cookie
                .split(';')
                .next()
                .and_then(|kv| kv.strip_prefix(COOKIE_NAME)?.strip_prefix('='))
                .expect("Set-Cookie starts with the cookie");
            assert_eq!(signer.verify(value, now()), Some(principal));
            assert_eq!(
                signer.verify(value, now() + TTL),
                None,
                "expired cookie accepted"
            );
            // Any one character replaced: refused.
            let at = usize::from(rest.first().copied().unwrap_or(0)) % value.len();
            for replacement in ['A', '_', '.', '0'] {
                let mut forged: Vec<char> = value.chars().collect();
                if forged[at] == replacement {
                    continue;
                }
                forged[at] = replacement;
                let forged: String = forged.into_iter().collect();
                assert_eq!(
                    signer.verify(&forged, now()),
                    None,
                    "forged {forged:?} accepted"
                );
            }
        }
    }
}
