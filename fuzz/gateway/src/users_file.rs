//! The users file parser ([`sparkgate_auth::users_file::UsersDocument::from_toml`]).
//!
//! Asserts: a document that loads has only argon2 PHC password strings, and what
//! `sparkgate passwd` would write back for it (`toml::to_string`) loads again, equal.

use std::path::Path;

use argon2::password_hash::PasswordHash;
use sparkgate_auth::users_file::UsersDocument;

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("users.toml");
    let Ok(doc) = UsersDocument::from_toml(text, path) else {
        return;
    };
    for entry in doc.users.values() {
        assert!(PasswordHash::new(&entry.password).is_ok());
    }
    let written = toml::to_string(&doc).expect("a loaded users file can be written back");
    let again = UsersDocument::from_toml(&written, path)
        .unwrap_or_else(|e| panic!("written back, it no longer loads: {e}\n{written}"));
    assert_eq!(again, doc, "users file changed through write and load");
}
