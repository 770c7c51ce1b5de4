//! What an audit record keeps of a statement: all of it, its literals replaced by `?`, or only
//! its hash. Runs on the writer thread, never in a call.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlparser::dialect::SparkSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StatementText {
    /// The statement as sent (values of secret-looking keys still masked).
    Full,
    /// Literals (strings, numbers) and comments replaced: `WHERE id = ?`.
    #[default]
    Redacted,
    /// Only the statement's SHA-256.
    Hash,
}

/// What replaces a secret-looking key's value in every mode.
const MASKED: &str = "'*****'";

/// The statement text a record keeps (if any) and its SHA-256 (hex, always).
pub fn render_statement(sql: &str, mode: StatementText) -> (Option<String>, String) {
    let hash = sha256_hex(sql);
    let text = match mode {
        StatementText::Hash => None,
        StatementText::Full => Some(mask(sql, false).unwrap_or_else(|| sql.to_owned())),
        StatementText::Redacted => Some(mask(sql, true).unwrap_or_else(|| {
            "<a statement sparkgate cannot read; see statement_sha256>".to_owned()
        })),
    };
    (text, hash)
}

/// Rewrites `sql` token by token: `all` replaces every literal and comment; either way a literal
/// after a secret-looking key (password, secret, token, credential, access key), and the value of
/// such a key's `SET`, is masked. `None` if the statement does not tokenize.
fn mask(sql: &str, all: bool) -> Option<String> {
    if let Some(set) = mask_set(sql, all) {
        return Some(set);
    }
    let tokens = Tokenizer::new(&SparkSqlDialect {}, sql).tokenize().ok()?;
    let mut out = String::with_capacity(sql.len());
    let mut secret_key = false;
    for token in &tokens {
        match token {
            Token::Whitespace(
                Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_),
            ) if all => out.push(' '),
            Token::Whitespace(_) | Token::Eq | Token::Comma | Token::LParen => {
                out.push_str(&token.to_string())
            }
            _ if is_literal(token) => {
                out.push_str(match (secret_key, all) {
                    (true, _) => MASKED,
                    (false, true) => "?",
                    (false, false) => "",
                });
                if !secret_key && !all {
                    out.push_str(&token.to_string());
                }
                secret_key = looks_secret(&token.to_string());
            }
            other => {
                let text = other.to_string();
                secret_key = looks_secret(&text);
                out.push_str(&text);
            }
        }
    }
    Some(out)
}

/// `SET key=value` (Spark reads the rest of the line raw): the value masked if `all` or the key
/// looks secret. `None` for other statements.
fn mask_set(sql: &str, all: bool) -> Option<String> {
    let trimmed = sql.trim_start();
    let head = trimmed.get(..4)?;
    if !head[..3].eq_ignore_ascii_case("set") || !head[3..].starts_with(char::is_whitespace) {
        return None;
    }
    let (key, _) = trimmed.split_once('=')?;
    if all || looks_secret(key) {
        Some(format!("{key}={}", if all { "?" } else { MASKED }))
    } else {
        Some(sql.to_owned())
    }
}

fn looks_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "access.key",
        "accesskey",
        "access_key",
        "private",
    ]
    .iter()
    .any(|s| key.contains(s))
}

fn is_literal(token: &Token) -> bool {
    matches!(
        token,
        Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
    )
}

pub fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
