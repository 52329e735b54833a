//! `CREATE USER|SHARED|STREAM TABLE` and table names.

use datafusion::sql::sqlparser::ast::ObjectName;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};

use std::time::Duration;

use super::ast::{CreateTable, KalamStatement, TableChange, TableRef};
use super::{
    PResult, eat_words, expected, parse_count, parse_duration, parse_options, validate_name,
    word_at,
};

/// `CREATE USER TABLE`, `CREATE SHARED TABLE` or `CREATE STREAM TABLE` ahead.
pub(super) fn table_kind_ahead(parser: &Parser) -> Option<crate::table::TableKind> {
    if word_at(parser, 0).as_deref() != Some("CREATE")
        || word_at(parser, 2).as_deref() != Some("TABLE")
    {
        return None;
    }
    crate::table::TableKind::parse(&word_at(parser, 1)?)
}

/// A table name: `ns.table` or `table`; unquoted parts are lower-cased.
pub(super) fn parse_table_ref(parser: &mut Parser) -> PResult<TableRef> {
    let name = parser.parse_object_name(false)?;
    Ok(table_ref(&name).map_err(ParserError::ParserError)?)
}

/// Resolves an object name to a table reference.
pub(crate) fn table_ref(name: &ObjectName) -> std::result::Result<TableRef, String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| {
            p.as_ident()
                .map(|i| {
                    if i.quote_style.is_some() {
                        i.value.clone()
                    } else {
                        i.value.to_ascii_lowercase()
                    }
                })
                .ok_or_else(|| format!("invalid table name {name}"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let (namespace, table) = match parts.as_slice() {
        [table] => (None, table.clone()),
        [namespace, table] => (Some(namespace.clone()), table.clone()),
        _ => return Err(format!("invalid table name {name}: use namespace.table")),
    };
    if let Some(ns) = &namespace {
        validate_name(ns, "namespace")?;
    }
    validate_name(&table, "table")?;
    Ok(TableRef {
        namespace,
        name: table,
    })
}

pub(super) fn parse_create_table(
    parser: &mut Parser,
    kind: crate::table::TableKind,
) -> PResult<KalamStatement> {
    let if_not_exists = eat_words(parser, &["IF", "NOT", "EXISTS"]);
    let name = parse_table_ref(parser)?;
    let (columns, constraints) = parser.parse_columns()?;
    let mut create = CreateTable {
        kind,
        name,
        if_not_exists,
        columns,
        constraints,
        location: None,
        flush_rows: None,
        flush_interval: None,
        deleted_retention: None,
        with_options: Vec::new(),
    };
    loop {
        if eat_words(parser, &["LOCATION", "REFERENCE"]) {
            create.location = Some(parser.parse_literal_string()?);
        } else if eat_words(parser, &["FLUSH", "POLICY"]) {
            (create.flush_rows, create.flush_interval) = parse_flush_policy(parser)?;
        } else if eat_words(parser, &["DELETED", "RETENTION"]) {
            create.deleted_retention = Some(parse_duration(parser, "DELETED RETENTION", "7 days")?);
        } else if eat_words(parser, &["WITH"]) {
            create.with_options = parse_options(parser)?;
        } else {
            break;
        }
    }
    Ok(KalamStatement::CreateTable(Box::new(create)))
}

/// `ROWS n [INTERVAL '…']` (either or both) after `FLUSH POLICY`.
fn parse_flush_policy(parser: &mut Parser) -> PResult<(Option<u64>, Option<Duration>)> {
    let (mut rows, mut interval) = (None, None);
    loop {
        if eat_words(parser, &["ROWS"]) {
            rows = Some(parse_count(parser)?);
        } else if eat_words(parser, &["INTERVAL"]) {
            interval = Some(parse_duration(
                parser,
                "FLUSH POLICY INTERVAL",
                "5 minutes",
            )?);
        } else {
            break;
        }
    }
    if rows.is_none() && interval.is_none() {
        return expected(
            parser,
            "ROWS n or INTERVAL '…' after FLUSH POLICY",
            parser.peek_token(),
        );
    }
    Ok((rows, interval))
}

/// A column name: unquoted names are lower-cased, as in CREATE TABLE.
fn parse_column_name(parser: &mut Parser) -> PResult<String> {
    let ident = parser.parse_identifier()?;
    Ok(if ident.quote_style.is_some() {
        ident.value
    } else {
        ident.value.to_ascii_lowercase()
    })
}

/// What follows `ALTER TABLE`.
pub(super) fn parse_alter_table(parser: &mut Parser) -> PResult<KalamStatement> {
    let name = parse_table_ref(parser)?;
    let change = if eat_words(parser, &["ADD"]) {
        eat_words(parser, &["COLUMN"]);
        TableChange::AddColumn(Box::new(parser.parse_column_def()?))
    } else if eat_words(parser, &["DROP"]) {
        eat_words(parser, &["COLUMN"]);
        TableChange::DropColumn(parse_column_name(parser)?)
    } else if eat_words(parser, &["RENAME", "COLUMN"]) {
        let from = parse_column_name(parser)?;
        if !eat_words(parser, &["TO"]) {
            return expected(parser, "TO", parser.peek_token());
        }
        TableChange::RenameColumn {
            from,
            to: parse_column_name(parser)?,
        }
    } else if eat_words(parser, &["MODIFY"]) {
        eat_words(parser, &["COLUMN"]);
        TableChange::ModifyColumn {
            name: parse_column_name(parser)?,
            data_type: parser.parse_data_type()?,
        }
    } else if eat_words(parser, &["ALTER", "COLUMN"]) {
        let name = parse_column_name(parser)?;
        eat_words(parser, &["SET", "DATA"]);
        if !eat_words(parser, &["TYPE"]) {
            return expected(parser, "TYPE", parser.peek_token());
        }
        TableChange::ModifyColumn {
            name,
            data_type: parser.parse_data_type()?,
        }
    } else if eat_words(parser, &["SET", "FLUSH", "POLICY"]) {
        let (rows, interval) = parse_flush_policy(parser)?;
        TableChange::SetFlushPolicy { rows, interval }
    } else if eat_words(parser, &["SET", "DELETED", "RETENTION"]) {
        TableChange::SetDeletedRetention(parse_duration(parser, "DELETED RETENTION", "7 days")?)
    } else {
        return expected(
            parser,
            "ADD COLUMN, DROP COLUMN, RENAME COLUMN, MODIFY COLUMN, SET FLUSH POLICY or SET DELETED RETENTION",
            parser.peek_token(),
        );
    };
    Ok(KalamStatement::AlterTable { name, change })
}

#[cfg(test)]
mod tests {
    use super::super::parse_one;
    use super::*;

    #[test]
    fn tables() {
        match parse_one("CREATE USER TABLE IF NOT EXISTS App.Messages (id BIGINT PRIMARY KEY, body TEXT NOT NULL DEFAULT 'x') LOCATION REFERENCE 'local' FLUSH POLICY ROWS 100 INTERVAL '5 minutes' DELETED RETENTION '7 days'").unwrap() {
            KalamStatement::CreateTable(c) => {
                assert_eq!(c.kind, crate::table::TableKind::User);
                assert_eq!(c.name, TableRef { namespace: Some("app".into()), name: "messages".into() });
                assert!(c.if_not_exists);
                assert_eq!(c.columns.len(), 2);
                assert_eq!(c.flush_rows, Some(100));
                assert_eq!(c.flush_interval, Some(std::time::Duration::from_secs(300)));
                assert_eq!(c.deleted_retention, Some(std::time::Duration::from_secs(7 * 86_400)));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_one("CREATE SHARED TABLE rooms (name TEXT)").unwrap(),
            KalamStatement::CreateTable(_)
        ));
        assert!(matches!(
            parse_one("DROP TABLE IF EXISTS app.t").unwrap(),
            KalamStatement::DropTable {
                if_exists: true,
                ..
            }
        ));
        assert!(matches!(
            parse_one("SHOW TABLES IN app").unwrap(),
            KalamStatement::ShowTables { namespace: Some(_) }
        ));
        assert!(matches!(
            parse_one("DESCRIBE TABLE app.t HISTORY").unwrap(),
            KalamStatement::DescribeTable { history: true, .. }
        ));
        assert!(parse_one("CREATE USER TABLE a.b.c (x INT)").is_err());
    }
}
