//! `BACKUP DATABASE`, `RESTORE DATABASE` and `SHOW BACKUP`.

use datafusion::sql::sqlparser::parser::Parser;

use super::ast::{BackupTarget, KalamStatement};
use super::{PResult, eat_words, expect_words, parse_name};

/// `'path'` or `STORAGE location PATH 'prefix'`.
fn parse_target(parser: &mut Parser) -> PResult<BackupTarget> {
    if eat_words(parser, &["STORAGE"]) {
        let location = parse_name(parser, "storage")?;
        expect_words(parser, &["PATH"])?;
        let path = parser.parse_literal_string()?;
        return Ok(BackupTarget::Storage { location, path });
    }
    Ok(BackupTarget::Path {
        path: parser.parse_literal_string()?,
    })
}

/// What follows `BACKUP DATABASE`.
pub(super) fn parse_backup(parser: &mut Parser) -> PResult<KalamStatement> {
    let namespace = parse_name(parser, "namespace")?;
    expect_words(parser, &["TO"])?;
    let target = parse_target(parser)?;
    Ok(KalamStatement::Backup { namespace, target })
}

/// What follows `RESTORE DATABASE`.
pub(super) fn parse_restore(parser: &mut Parser) -> PResult<KalamStatement> {
    let namespace = parse_name(parser, "namespace")?;
    expect_words(parser, &["FROM"])?;
    let target = parse_target(parser)?;
    let as_name = if eat_words(parser, &["AS"]) {
        Some(parse_name(parser, "namespace")?)
    } else {
        None
    };
    Ok(KalamStatement::Restore {
        namespace,
        target,
        as_name,
    })
}

/// What follows `SHOW BACKUP`.
pub(super) fn parse_show_backup(parser: &mut Parser) -> PResult<KalamStatement> {
    Ok(KalamStatement::ShowBackup {
        target: parse_target(parser)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::parse_one;
    use super::*;

    #[test]
    fn backup_statements() {
        match parse_one("BACKUP DATABASE app TO 'daily/1'").unwrap() {
            KalamStatement::Backup { namespace, target } => {
                assert_eq!(namespace, "app");
                assert_eq!(
                    target,
                    BackupTarget::Path {
                        path: "daily/1".into()
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        match parse_one("RESTORE DATABASE app FROM STORAGE s3main PATH 'b/1' AS App2").unwrap() {
            KalamStatement::Restore {
                target, as_name, ..
            } => {
                assert_eq!(
                    target,
                    BackupTarget::Storage {
                        location: "s3main".into(),
                        path: "b/1".into()
                    }
                );
                assert_eq!(as_name.as_deref(), Some("app2"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_one("SHOW BACKUP 'x'").unwrap(),
            KalamStatement::ShowBackup { .. }
        ));
        assert!(parse_one("BACKUP DATABASE app").is_err());
        assert!(parse_one("RESTORE DATABASE app TO 'x'").is_err());
    }
}
