//! `CREATE USER`, `ALTER USER` and user names.

use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;
use kalamdb_model::Role;

use super::ast::{KalamStatement, UserChange};
use super::{MAX_NAME_LEN, PResult, eat_words, expect_words, expected};

/// A user name: `'alice'` or `alice`.
pub(super) fn parse_user_name(parser: &mut Parser) -> PResult<String> {
    let token = parser.next_token();
    let name = match token.token {
        Token::SingleQuotedString(s) => s,
        Token::Word(w) => w.value,
        _ => return expected(parser, "a user name", token),
    };
    validate_user_name(&name).map_err(ParserError::ParserError)?;
    Ok(name)
}

/// User names: 1–64 characters of letters, digits, `_ . @ -`.
fn validate_user_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid user name '{name}': use 1 to {MAX_NAME_LEN} letters, digits and _ . @ -"
        ))
    }
}

pub(super) fn parse_role(parser: &mut Parser) -> PResult<Role> {
    let token = parser.next_token();
    let name = match &token.token {
        Token::SingleQuotedString(s) => s.clone(),
        Token::Word(w) => w.value.clone(),
        _ => return expected(parser, "a role (user, service, dba, system)", token),
    };
    let role = Role::parse(&name).ok_or_else(|| {
        ParserError::ParserError(format!(
            "unknown role '{name}': expected user, service, dba or system"
        ))
    })?;
    Ok(role)
}

pub(super) fn parse_create_user(parser: &mut Parser) -> PResult<KalamStatement> {
    let if_not_exists = eat_words(parser, &["IF", "NOT", "EXISTS"]);
    let username = parse_user_name(parser)?;
    expect_words(parser, &["WITH", "PASSWORD"])?;
    let password = parser.parse_literal_string()?;
    let mut role = Role::User;
    let mut email = None;
    loop {
        if eat_words(parser, &["ROLE"]) {
            role = parse_role(parser)?;
        } else if eat_words(parser, &["EMAIL"]) {
            email = Some(parser.parse_literal_string()?);
        } else {
            break;
        }
    }
    Ok(KalamStatement::CreateUser {
        username,
        password,
        role,
        email,
        if_not_exists,
    })
}

pub(super) fn parse_alter_user(parser: &mut Parser) -> PResult<KalamStatement> {
    let username = parse_user_name(parser)?;
    let change =
        if eat_words(parser, &["WITH", "PASSWORD"]) || eat_words(parser, &["SET", "PASSWORD"]) {
            UserChange::Password(parser.parse_literal_string()?)
        } else if eat_words(parser, &["SET", "ROLE"]) {
            UserChange::Role(parse_role(parser)?)
        } else if eat_words(parser, &["SET", "EMAIL"]) {
            if eat_words(parser, &["NULL"]) {
                UserChange::Email(None)
            } else {
                UserChange::Email(Some(parser.parse_literal_string()?))
            }
        } else {
            return expected(
                parser,
                "SET PASSWORD, SET ROLE or SET EMAIL",
                parser.peek_token(),
            );
        };
    Ok(KalamStatement::AlterUser { username, change })
}

#[cfg(test)]
mod tests {
    use super::super::parse_one;
    use super::*;

    #[test]
    fn users() {
        match parse_one("CREATE USER 'alice' WITH PASSWORD 's3cret' ROLE dba EMAIL 'a@x.io'")
            .unwrap()
        {
            KalamStatement::CreateUser {
                username,
                password,
                role,
                email,
                ..
            } => {
                assert_eq!((username.as_str(), password.as_str()), ("alice", "s3cret"));
                assert_eq!(role, Role::Dba);
                assert_eq!(email.as_deref(), Some("a@x.io"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_one("ALTER USER bob SET ROLE service").unwrap(),
            KalamStatement::AlterUser {
                change: UserChange::Role(Role::Service),
                ..
            }
        ));
        assert!(matches!(
            parse_one("DROP USER IF EXISTS 'bob'").unwrap(),
            KalamStatement::DropUser {
                if_exists: true,
                ..
            }
        ));
        let err = parse_one("CREATE USER 'x' WITH PASSWORD 'p' ROLE king").unwrap_err();
        assert!(err.to_string().contains("unknown role 'king'"));
    }
}
