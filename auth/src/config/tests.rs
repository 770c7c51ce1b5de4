use std::time::Duration;

use super::*;

#[test]
fn the_default_is_none_only() {
    let config: AuthConfig = toml::from_str("").unwrap();
    assert_eq!(config, AuthConfig::default());
    assert_eq!(config.methods, vec![MethodConfig::None {}]);
}

#[test]
fn a_full_config_parses() {
    let text = r#"
cache_ttl = "5m"
max_failures = 5
failure_window = "1m"
lockout = "90s"

[[methods]]
type = "users_file"
path = "/etc/sparkgate/users.toml"

[[methods]]
type = "ldap"
url = "ldaps://ldap.example.org"
ca_file = "/etc/ssl/ldap-ca.pem"
connect_timeout = "2s"
operation_timeout = "3s"
bind_dn = "cn=reader,dc=example,dc=org"
bind_password_file = "/run/secrets/ldap"
user_search_base = "ou=people,dc=example,dc=org"
user_search_filter = "(&(objectClass=person)(uid={user}))"
group_source = "search"
group_search_base = "ou=groups,dc=example,dc=org"
group_search_filter = "(member={dn})"
group_name_attribute = "cn"

[[methods]]
type = "jwt"
jwks_file = "/etc/sparkgate/jwks.json"
algorithms = ["RS256", "ES256"]
issuer = "https://idp.example"
audience = "sparkgate"
groups_claim = "roles"
leeway = "30s"

[[methods]]
type = "none"
"#;
    let config: AuthConfig = toml::from_str(text).unwrap();
    assert_eq!(config.lockout, Duration::from_secs(90));
    assert_eq!(config.methods.len(), 4);
    let MethodConfig::Ldap(ldap) = &config.methods[1] else {
        panic!("{:?}", config.methods[1]);
    };
    assert_eq!(ldap.operation_timeout, Duration::from_secs(3));
    assert_eq!(ldap.group_source, GroupSource::Search);
    assert!(!ldap.starttls);
    let MethodConfig::Jwt(jwt) = &config.methods[2] else {
        panic!("{:?}", config.methods[2]);
    };
    assert_eq!(jwt.user_claim, "sub", "default");
    assert_eq!(jwt.groups_claim, "roles");
}

#[test]
fn unknown_fields_and_methods_are_errors() {
    for text in [
        "cache_tll = \"5m\"",
        "[[methods]]\ntype = \"kerberos\"",
        "[[methods]]\ntype = \"none\"\npath = \"x\"",
        "[[methods]]\ntype = \"users_file\"\npath = \"x\"\npasword = \"y\"",
        "[[methods]]\ntype = \"ldap\"\nurl = \"ldap://x\"\nuser_dn_patern = \"uid={user}\"",
        "cache_ttl = \"five minutes\"",
    ] {
        assert!(toml::from_str::<AuthConfig>(text).is_err(), "{text}");
    }
}
