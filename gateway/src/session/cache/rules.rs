//! What a statement means to the result cache, decided by parsing it (sqlparser's Spark
//! dialect), never by matching strings: a read-only query that may be cached (and the tables it
//! reads), a change of session state the cache key tracks, or a write that makes cached results
//! stale. When in doubt, a statement is not cached, and a statement that cannot be read counts
//! as a write of unknown tables (unless it plainly only reads).

use std::ops::ControlFlow;

use sqlparser::ast::{
    visit_relations, Expr, FunctionArguments, ObjectName, Statement, TableFactor, Visit, Visitor,
};
use sqlparser::dialect::SparkSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

/// Functions whose result depends on when, where or by whom a query runs, or on chance: a query
/// calling one is never cached. `unix_timestamp()` and `to_unix_timestamp()` are "now" only
/// without arguments (Superset's time grains call them with a column).
const VOLATILE_FUNCTIONS: &[&str] = &[
    "rand",
    "randn",
    "random",
    "randstr",
    "uniform",
    "uuid",
    "shuffle",
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "curdate",
    "localtimestamp",
    "current_timezone",
    "current_user",
    "user",
    "session_user",
    "current_database",
    "current_schema",
    "current_catalog",
    "input_file_name",
    "input_file_block_start",
    "input_file_block_length",
    "monotonically_increasing_id",
    "spark_partition_id",
    "reflect",
    "java_method",
    "try_reflect",
    "session_window",
    "window_time",
];

/// Only "now" when called without arguments.
const NOW_WITHOUT_ARGUMENTS: &[&str] = &["unix_timestamp", "to_unix_timestamp"];

/// The database every driver keeps its global temporary views in (shared by every session of a
/// driver, and different on each driver): never cached.
const GLOBAL_TEMP: &str = "global_temp";

/// What a statement does, as the cache sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meaning {
    /// A single read-only query with no volatile function: may be cached. `normalized` is its
    /// text as the parser prints it back (whitespace and comments gone); `tables` the bare,
    /// lower-case names of the relations it reads.
    Read {
        normalized: String,
        tables: Vec<String>,
    },
    /// A read the cache must not keep (why, for the debug log).
    Uncacheable(&'static str),
    /// `USE db`: the session's current database.
    Use(String),
    /// `SET key=value`: a session setting that may change results.
    Set { key: String, value: String },
    /// `RESET`: every session setting back to its default.
    Reset,
    /// `CREATE TEMPORARY VIEW name` / `CACHE TABLE name AS ...`: a name only this session
    /// sees; queries reading it are not cached.
    TempView(String),
    /// `ADD JAR`, `CREATE TEMPORARY FUNCTION`: code the cache cannot judge; the session's
    /// queries are not cached from then on.
    SessionCode,
    /// Writes data or metadata: cached results reading `tables` are stale (every result of the
    /// tenant when `None`: the tables cannot be told).
    Write(Option<Vec<String>>),
}

impl Meaning {
    /// Whether the statement changes what later statements of its session see.
    pub fn changes_session(&self) -> bool {
        matches!(
            self,
            Meaning::Use(_)
                | Meaning::Set { .. }
                | Meaning::Reset
                | Meaning::TempView(_)
                | Meaning::SessionCode
        )
    }
}

/// Reads one statement.
pub fn classify(sql: &str) -> Meaning {
    let words = leading_words(sql, 4);
    let first = words.first().map(String::as_str).unwrap_or("");
    let second = words.get(1).map(String::as_str).unwrap_or("");
    // Spark's own syntax for these takes raw text sqlparser does not read (`SET k=a/b`).
    match first {
        "set" => return set(sql),
        "reset" => return Meaning::Reset,
        "use" => {
            return words
                .get(1)
                .filter(|_| words.len() == 2)
                .map_or(Meaning::SessionCode, |db| Meaning::Use(db.clone()))
        }
        "add" => return Meaning::SessionCode,
        "refresh" | "msck" | "uncache" | "analyze" | "load" | "truncate" => {
            return Meaning::Write(table_after(sql, first))
        }
        "cache" => {
            return match words.iter().position(|w| w == "table") {
                Some(i) => words
                    .get(i + 1)
                    .map_or(Meaning::SessionCode, |v| Meaning::TempView(v.clone())),
                None => Meaning::SessionCode,
            }
        }
        "create" | "replace"
            if words.iter().any(|w| w == "temporary" || w == "temp")
                && words.iter().any(|w| w == "function") =>
        {
            return Meaning::SessionCode
        }
        _ => {}
    }
    let parsed = Parser::new(&SparkSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements());
    let statements = match parsed {
        Ok(statements) => statements,
        Err(_) => {
            return match first {
                "select" | "with" | "values" | "show" | "describe" | "desc" | "explain"
                | "list" => Meaning::Uncacheable("sparkgate cannot parse it"),
                _ if first == "create" && second == "temporary" => Meaning::SessionCode,
                _ => Meaning::Write(None),
            }
        }
    };
    let [statement] = statements.as_slice() else {
        return if statements.iter().all(|s| matches!(s, Statement::Query(_))) {
            Meaning::Uncacheable("several statements")
        } else {
            Meaning::Write(None)
        };
    };
    match statement {
        Statement::Query(query) => read(statement, query),
        Statement::CreateView(view) if view.temporary => Meaning::TempView(bare_name(&view.name)),
        Statement::ShowTables { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowCreate { .. }
        | Statement::ExplainTable { .. }
        | Statement::Explain { .. } => Meaning::Uncacheable("not a query"),
        _ => Meaning::Write(touched_tables(statement)),
    }
}

fn read(statement: &Statement, query: &sqlparser::ast::Query) -> Meaning {
    if query.for_clause.is_some() || !query.locks.is_empty() {
        return Meaning::Uncacheable("not read-only");
    }
    let mut check = ReadCheck::default();
    if let ControlFlow::Break(why) = statement.visit(&mut check) {
        return Meaning::Uncacheable(why);
    }
    check.tables.sort();
    check.tables.dedup();
    Meaning::Read {
        normalized: statement.to_string(),
        tables: check.tables,
    }
}

/// Walks a query: its relations, and whether anything in it makes it uncacheable.
#[derive(Default)]
struct ReadCheck {
    tables: Vec<String>,
}

impl Visitor for ReadCheck {
    type Break = &'static str;

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<Self::Break> {
        let parts = name_parts(relation);
        if parts.iter().any(|p| p == GLOBAL_TEMP) {
            return ControlFlow::Break("reads a global temporary view");
        }
        if let Some(last) = parts.last() {
            self.tables.push(last.clone());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Self::Break> {
        if let TableFactor::Table {
            sample: Some(_), ..
        } = factor
        {
            return ControlFlow::Break("samples a table");
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Self::Break> {
        match expr {
            Expr::Function(function) => {
                let name = name_parts(&function.name);
                if name.len() > 1 {
                    return ControlFlow::Break("calls a user-defined function");
                }
                let name = name.last().map(String::as_str).unwrap_or("");
                let no_arguments = match &function.args {
                    FunctionArguments::None => true,
                    FunctionArguments::List(list) => list.args.is_empty(),
                    FunctionArguments::Subquery(_) => false,
                };
                if VOLATILE_FUNCTIONS.contains(&name)
                    || NOW_WITHOUT_ARGUMENTS.contains(&name) && no_arguments
                {
                    return ControlFlow::Break("calls a function whose result changes");
                }
            }
            // `current_date` and friends are functions in Spark when written without parentheses.
            Expr::Identifier(ident)
                if ident.quote_style.is_none()
                    && VOLATILE_FUNCTIONS.contains(&ident.value.to_ascii_lowercase().as_str()) =>
            {
                return ControlFlow::Break("calls a function whose result changes");
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// The tables a write names (bare, lower case); `None` when it names none the cache can use.
fn touched_tables(statement: &Statement) -> Option<Vec<String>> {
    let mut tables = Vec::new();
    let _ = visit_relations(statement, |name| {
        if let Some(last) = name_parts(name).pop() {
            tables.push(last);
        }
        ControlFlow::<()>::Continue(())
    });
    // A statement naming no relation the visitor sees (ALTER ..., DROP ...) may still write:
    // its target is in the text, but telling which word it is needs each statement's shape.
    let named = match statement {
        Statement::Drop { names, .. } => names.iter().filter_map(|n| name_parts(n).pop()).collect(),
        Statement::AlterTable(alter) => name_parts(&alter.name).pop().into_iter().collect(),
        _ => Vec::new(),
    };
    tables.extend(named);
    tables.sort();
    tables.dedup();
    (!tables.is_empty()).then_some(tables)
}

fn name_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .filter_map(|part| part.as_ident())
        .map(|ident| ident.value.to_ascii_lowercase())
        .collect()
}

fn bare_name(name: &ObjectName) -> String {
    name_parts(name).pop().unwrap_or_default()
}

/// `SET key=value` (Spark reads the rest of the line raw); `SET` and `SET key` only read.
fn set(sql: &str) -> Meaning {
    let rest = sql.trim().trim_end_matches(';').trim();
    let rest = rest.get(3..).unwrap_or("").trim();
    match rest.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Meaning::Set {
            key: key.trim().trim_matches('`').to_ascii_lowercase(),
            value: value.trim().to_owned(),
        },
        _ => Meaning::Uncacheable("reads a setting"),
    }
}

/// The table named after `REFRESH [TABLE]`, `TRUNCATE TABLE`, `MSCK REPAIR TABLE`...
fn table_after(sql: &str, _keyword: &str) -> Option<Vec<String>> {
    let words = leading_words(sql, 8);
    let at = words.iter().position(|w| w == "table")?;
    let name = words.get(at + 1)?;
    let bare = name.rsplit('.').next()?.trim_matches('`').to_owned();
    (!bare.is_empty()).then(|| vec![bare])
}

/// The statement's first `n` words, lower case, comments and quotes read by the tokenizer
/// (`db`.`t` comes out as `db.t`).
fn leading_words(sql: &str, n: usize) -> Vec<String> {
    let Ok(tokens) = Tokenizer::new(&SparkSqlDialect {}, sql).tokenize() else {
        return Vec::new();
    };
    let mut words: Vec<String> = Vec::new();
    let mut joined = false;
    for token in tokens {
        match token {
            Token::Whitespace(_) => joined = false,
            Token::Period => {
                if let Some(last) = words.last_mut() {
                    last.push('.');
                    joined = true;
                }
            }
            Token::Word(w) => {
                let value = w.value.to_ascii_lowercase();
                match words.last_mut() {
                    Some(last) if joined || last.ends_with('.') => last.push_str(&value),
                    _ => {
                        if words.len() == n {
                            break;
                        }
                        words.push(value);
                    }
                }
                joined = false;
            }
            _ => break,
        }
    }
    words
}

#[cfg(test)]
mod tests;
