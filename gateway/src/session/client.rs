//! Which family of client a session serves, and the answers shaped for it.
//!
//! Python DB-API clients (PyHive, which Superset installs for `hive://`, and impyla) were
//! written against HiveServer2 itself and read Spark's answers wrongly in two places: they take
//! column 0 of `SHOW TABLES` / `SHOW VIEWS` as the name (Spark puts the namespace there), and
//! Superset shows an error's whole text (Spark's carries Java stack frames). Hive JDBC (beeline,
//! JDBC applications) reads Spark's shapes correctly and uses the full detail, so it gets the
//! driver's answers untouched.
//!
//! How sparkgate tells them apart at OpenSession (facts from the clients' sources):
//! * Hive JDBC 2.x always sends `use:database` (and `set:hiveconf:` keys from the URL), asks for
//!   protocol V10, and then GetInfo.
//! * PyHive asks for V6 (and requires V6 back); impyla asks for V6 or V7; neither ever sends a
//!   `use:`/`set:` key (they put configuration keys in as given).
//!
//! So: a `use:` or `set:` key means Hive JDBC; otherwise a client asking for V7 or older is a
//! Python DB-API client; anything else gets Spark's shapes. A client may say which it is with
//! the session setting `sparkgate.client` (`python` or `jdbc`).

use hive_thrift::generated::tcliservice as t;
use serde::Deserialize;
use sqlparser::dialect::HiveDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

/// The OpenSession configuration keys a client names its family with.
pub const CLIENT_KEYS: [&str; 2] = ["sparkgate.client", "set:hiveconf:sparkgate.client"];

/// The client families sparkgate shapes answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFamily {
    /// Hive JDBC (beeline, JDBC applications) and clients sparkgate does not recognise:
    /// Spark's own answers.
    Jdbc,
    /// PyHive, impyla (Superset, SQLAlchemy `hive://`).
    Python,
}

impl ClientFamily {
    /// Decides, and removes the `sparkgate.client` setting from the request. An unknown value
    /// is an error for the client.
    pub fn of(req: &mut t::TOpenSessionReq) -> Result<Self, String> {
        let config = req.configuration.get_or_insert_with(Default::default);
        let mut named = None;
        for key in CLIENT_KEYS {
            if let Some(value) = config.remove(key) {
                named = Some(value);
            }
        }
        if let Some(value) = named {
            return match value.to_ascii_lowercase().as_str() {
                "python" | "pyhive" | "impyla" => Ok(Self::Python),
                "jdbc" | "spark" => Ok(Self::Jdbc),
                other => Err(format!(
                    "unknown sparkgate.client {:?}: use \"python\" or \"jdbc\"",
                    sparkgate_auth::clip(other)
                )),
            };
        }
        let jdbc_keys = config
            .keys()
            .any(|k| k.starts_with("use:") || k.starts_with("set:"));
        let old_protocol = req.client_protocol <= t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V7;
        Ok(if !jdbc_keys && old_protocol {
            Self::Python
        } else {
            Self::Jdbc
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Jdbc => "jdbc",
            Self::Python => "python",
        }
    }

    /// The family of a [`ClientFamily::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Jdbc, Self::Python]
            .into_iter()
            .find(|f| f.name() == name)
    }
}

/// How much of a driver's error a session's client gets (tenant setting `error_detail`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ErrorDetail {
    /// Concise for Python DB-API clients (a BI tool shows the text to a person), full for the rest.
    #[default]
    Auto,
    /// The driver's text as it is, Java stack frames included.
    Full,
    /// Spark's error class and message, without stack frames or the query plan.
    Concise,
}

impl ErrorDetail {
    pub fn concise_for(self, family: ClientFamily) -> bool {
        match self {
            Self::Auto => family == ClientFamily::Python,
            Self::Full => false,
            Self::Concise => true,
        }
    }
}

/// For statements whose answer Python clients read by position: the column that holds the
/// name. `SHOW TABLES` and `SHOW VIEWS` answer (namespace, name, isTemporary) in Spark, where
/// Hive (and so PyHive and Superset) answer the name alone.
pub fn name_column_for_python(sql: &str) -> Option<usize> {
    let tokens = Tokenizer::new(&HiveDialect {}, sql).tokenize().ok()?;
    let mut words = tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_)));
    let is = |t: Option<&Token>, w: &str| matches!(t, Some(Token::Word(x)) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    if !is(words.next(), "SHOW") {
        return None;
    }
    let what = words.next();
    (is(what, "TABLES") || is(what, "VIEWS")).then_some(1)
}

/// Keeps column `keep` of a result batch (columnar or row-based).
pub fn keep_column(rows: &mut t::TRowSet, keep: usize) {
    if let Some(columns) = rows.columns.as_mut() {
        let kept: Vec<t::TColumn> = columns.drain(..).nth(keep).into_iter().collect();
        *columns = kept;
    }
    for row in &mut rows.rows {
        let kept: Vec<t::TColumnValue> = row.col_vals.drain(..).nth(keep).into_iter().collect();
        row.col_vals = kept;
    }
    if let Some(count) = rows.column_count.as_mut() {
        *count = rows.columns.as_ref().map_or(1, |c| c.len() as i32);
    }
}

/// Keeps column `keep` of a result schema.
pub fn keep_column_desc(schema: &mut t::TTableSchema, keep: usize) {
    let kept: Vec<t::TColumnDesc> = schema.columns.drain(..).nth(keep).into_iter().collect();
    schema.columns = kept;
    for (position, column) in schema.columns.iter_mut().enumerate() {
        column.position = position as i32 + 1;
    }
}

/// Appends lines to an operation log batch (its one string column, or rows before V6).
pub fn append_log_lines(results: &mut Option<t::TRowSet>, lines: Vec<String>) {
    let rows = results.get_or_insert_with(|| t::TRowSet {
        start_row_offset: 0,
        rows: Vec::new(),
        columns: Some(vec![t::TColumn::StringVal(t::TStringColumn {
            values: Vec::new(),
            nulls: Vec::new(),
        })]),
        binary_columns: None,
        column_count: None,
    });
    match rows.columns.as_mut().and_then(|c| c.first_mut()) {
        Some(t::TColumn::StringVal(column)) => column.values.extend(lines),
        _ => rows.rows.extend(lines.into_iter().map(|line| t::TRow {
            col_vals: vec![t::TColumnValue::StringVal(t::TStringValue {
                value: Some(line),
            })],
        })),
    }
}

/// The longest concise error message; the rest is cut with a note.
const CONCISE_MAX: usize = 1000;

/// Spark's error, as a person reads it: from the error class (`[TABLE_OR_VIEW_NOT_FOUND] ...`)
/// through the line with its SQLSTATE, without the exception class names before it, Java stack
/// frames or the query plan after it. Messages without an error class keep their first
/// paragraph, without stack frames.
pub fn concise_error(message: &str) -> String {
    let text = match error_class_start(message) {
        Some((at, len)) => {
            // Spark 4's Thrift server writes `[CLASS] x.y.SomeException: [CLASS] message`.
            let class = &message[at..at + len];
            let after = strip_exception_prefixes(&message[at + len..]);
            if after.starts_with(class) {
                after
            } else {
                &message[at..]
            }
        }
        None => strip_exception_prefixes(message),
    };
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("at ") && line.starts_with(char::is_whitespace)
            || trimmed.starts_with("Caused by:")
            || looks_like_plan(line)
        {
            break;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        // The line with the SQLSTATE ends Spark's message (`...; line 1 pos 14;`, the plan after).
        let line = line.trim_end();
        if line.contains("SQLSTATE: ") {
            out.push_str(line.trim_end_matches(';'));
            break;
        }
        out.push_str(line);
    }
    let mut out = out.trim().to_owned();
    if out.is_empty() {
        out = message.lines().next().unwrap_or_default().trim().to_owned();
    }
    // The root cause often says what a person can act on ("Permission denied").
    let said = |cause: &str| {
        out.contains(cause)
            || error_class_start(cause)
                .is_some_and(|(at, len)| at == 0 && out.contains(&cause[..len]))
    };
    if let Some(cause) = root_cause(message).filter(|c| !said(c)) {
        out.push_str("\nCaused by: ");
        out.push_str(cause);
    }
    if out.len() > CONCISE_MAX {
        let mut cut = CONCISE_MAX;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str(" … (cut by sparkgate)");
    }
    out
}

/// A failed statement's error text, as a synchronous ExecuteStatement reply carries it: a status
/// call's carries the whole Java exception (`org.apache.hive.service.cli.HiveSQLException: ...`
/// and its stack frames), a synchronous reply only its message.
pub fn statement_error_text(message: &str) -> String {
    let message = message
        .strip_prefix("org.apache.hive.service.cli.HiveSQLException: ")
        .unwrap_or(message);
    let end = message.find("\n\tat ").unwrap_or(message.len());
    message[..end].trim_end().to_owned()
}

/// The message of the last `Caused by:` in a Java exception's text, its first line.
fn root_cause(message: &str) -> Option<&str> {
    let line = message
        .lines()
        .rev()
        .find_map(|l| l.trim_start().strip_prefix("Caused by: "))?;
    let cause = strip_exception_prefixes(line).trim();
    (!cause.is_empty() && cause != line.trim() || !line.contains(": ")).then_some(cause)
}

/// Where `[SOME_ERROR_CLASS]` (upper case, digits, `_` and `.`) first starts, and its length.
fn error_class_start(message: &str) -> Option<(usize, usize)> {
    let bytes = message.as_bytes();
    let mut from = 0;
    while let Some(rel) = message[from..].find('[') {
        let at = from + rel;
        let inner = &message[at + 1..];
        let len = inner
            .bytes()
            .take_while(|b| {
                b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_' || *b == b'.'
            })
            .count();
        if len >= 3
            && bytes.get(at + 1 + len) == Some(&b']')
            && inner.as_bytes()[0].is_ascii_uppercase()
        {
            return Some((at, len + 2));
        }
        from = at + 1;
    }
    None
}

/// `org.apache.hive.service.cli.HiveSQLException: Error running query: x.y.SomeException: text`
/// → `text`.
fn strip_exception_prefixes(mut message: &str) -> &str {
    loop {
        let trimmed = message.trim_start();
        if let Some(rest) = trimmed.strip_prefix("Error running query: ") {
            message = rest;
            continue;
        }
        let Some((head, rest)) = trimmed.split_once(": ") else {
            return trimmed;
        };
        let is_class = head.contains('.')
            && !head.contains(char::is_whitespace)
            && head
                .rsplit('.')
                .next()
                .is_some_and(|last| last.ends_with("Exception") || last.ends_with("Error"));
        if !is_class {
            return trimmed;
        }
        message = rest;
    }
}

/// A line of Spark's logical plan (`'Project [*]`, `+- 'UnresolvedRelation ...`).
fn looks_like_plan(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("+- ") || t.starts_with(":- ") || t.starts_with("'") && t.contains(" [")
}

#[cfg(test)]
mod tests;
