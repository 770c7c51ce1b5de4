//! What a tenant lets its sessions run, beyond the drivers' own rules: per-tenant switches that
//! refuse statements reaching what every session on a driver shares (jars and files added to the
//! driver, global temporary views).
//!
//! The check reads the statement's tokens (sqlparser's tokenizer: Hive quoting and comments), so
//! a keyword in a comment or a name in quotes is seen for what it is. It errs on the side of
//! refusing: a name in any string literal counts (Spark's `IDENTIFIER('global_temp.v')` names a
//! table with a string), and statements Spark builds at run time from strings and variables
//! (`EXECUTE IMMEDIATE`, `IDENTIFIER(...)`), which sparkgate cannot see into, are refused while a
//! switch is on.

use sqlparser::dialect::HiveDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

/// The statement switches of one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatementRules {
    /// Refuse `ADD JAR|FILE|ARCHIVE` and `CREATE FUNCTION ... USING JAR|FILE|ARCHIVE`.
    pub refuse_add_resources: bool,
    /// Refuse statements naming this database (Spark's global temporary views), and
    /// `CREATE GLOBAL TEMPORARY VIEW`; `None`: allowed.
    pub refuse_global_temp: Option<String>,
}

/// Why a statement is refused (shown to the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this tenant does not allow adding jars, files or archives to its drivers (ADD JAR/FILE/ARCHIVE, CREATE FUNCTION ... USING JAR)")]
    AddResource,
    #[error("this tenant does not allow global temporary views (the {0} database): use a temporary view, which is the session's own")]
    GlobalTemp(String),
    #[error("this tenant does not allow statements built at run time (EXECUTE IMMEDIATE, IDENTIFIER(...)): sparkgate cannot check what they name")]
    Dynamic,
    #[error("sparkgate cannot read this statement to check it against the tenant's rules: {0}")]
    Unreadable(String),
}

const RESOURCES: &[&str] = &["JAR", "JARS", "FILE", "FILES", "ARCHIVE", "ARCHIVES"];

impl StatementRules {
    pub fn any(&self) -> bool {
        self.refuse_add_resources || self.refuse_global_temp.is_some()
    }

    /// `Err` with the reason when the tenant's rules refuse `sql`.
    pub fn check(&self, sql: &str) -> Result<(), Refusal> {
        if !self.any() {
            return Ok(());
        }
        let tokens = Tokenizer::new(&HiveDialect {}, sql)
            .tokenize()
            .map_err(|e| Refusal::Unreadable(e.to_string()))?;
        let tokens: Vec<&Token> = tokens
            .iter()
            .filter(|t| !matches!(t, Token::Whitespace(_)))
            .collect();
        let word = |t: &Token, w: &str| matches!(t, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
        for (i, token) in tokens.iter().enumerate() {
            let next = tokens.get(i + 1).copied();
            if word(token, "EXECUTE") && next.is_some_and(|n| word(n, "IMMEDIATE"))
                || word(token, "IDENTIFIER") && next == Some(&Token::LParen)
            {
                return Err(Refusal::Dynamic);
            }
            if self.refuse_add_resources
                && (word(token, "ADD") || word(token, "USING"))
                && next.is_some_and(|n| RESOURCES.iter().any(|r| word(n, r)))
            {
                return Err(Refusal::AddResource);
            }
            if let Some(database) = &self.refuse_global_temp {
                let named = match token {
                    Token::Word(w) => w.value.eq_ignore_ascii_case(database),
                    other => other
                        .to_string()
                        .to_ascii_lowercase()
                        .contains(&database.to_ascii_lowercase()),
                };
                let creates = word(token, "GLOBAL")
                    && next.is_some_and(|n| word(n, "TEMPORARY") || word(n, "TEMP"));
                if named || creates {
                    return Err(Refusal::GlobalTemp(database.clone()));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> StatementRules {
        StatementRules {
            refuse_add_resources: true,
            refuse_global_temp: Some("global_temp".into()),
        }
    }

    #[test]
    fn off_by_default_and_reads_nothing() {
        let rules = StatementRules::default();
        assert!(rules.check("ADD JAR /tmp/x.jar").is_ok());
        assert!(rules.check("select * from global_temp.v").is_ok());
        assert!(rules.check("'unterminated").is_ok());
    }

    #[test]
    fn added_resources_are_refused_however_written() {
        for sql in [
            "ADD JAR /tmp/evil.jar",
            "  add   jars /a.jar /b.jar",
            "/* hi */ ADD FILE /etc/passwd",
            "-- note\nadd archive x.zip",
            "BEGIN ADD JAR x.jar; END",
            "CREATE TEMPORARY FUNCTION f AS 'x.F' USING JAR 'file:///tmp/f.jar'",
            "create function f as 'x.F' using file 's3a://b/f.py'",
        ] {
            assert_eq!(strict().check(sql), Err(Refusal::AddResource), "{sql}");
        }
        for sql in [
            "alter table t add columns (jar string)",
            "select 'add jar' as s",
            "select 1 -- add jar x",
            "LIST JARS",
        ] {
            assert_eq!(strict().check(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn the_global_temp_database_is_refused_however_named() {
        for sql in [
            "select * from global_temp.v",
            "SELECT * FROM `global_temp`.`v`",
            "select * from spark_catalog.GLOBAL_TEMP.v",
            "use global_temp",
            "show tables in global_temp",
            "create global temporary view v as select 1",
            "CREATE OR REPLACE GLOBAL TEMP VIEW v AS SELECT 1",
            "select * from identifier('global_temp.v')",
            "select * from identifier('glob' || 'al_temp.v')",
            "execute immediate 'select * from ' || 'global_temp.v'",
        ] {
            assert!(strict().check(sql).is_err(), "{sql}");
        }
        for sql in [
            "create temporary view v as select 1",
            "select * from globals.temp",
            "select 1 /* global_temp.v */",
        ] {
            assert_eq!(strict().check(sql), Ok(()), "{sql}");
        }
        let renamed = StatementRules {
            refuse_global_temp: Some("shared_views".into()),
            ..Default::default()
        };
        assert!(renamed.check("select * from shared_views.v").is_err());
    }

    #[test]
    fn a_statement_it_cannot_read_is_refused_while_a_switch_is_on() {
        assert!(matches!(
            strict().check("select 'unterminated"),
            Err(Refusal::Unreadable(_))
        ));
    }
}
