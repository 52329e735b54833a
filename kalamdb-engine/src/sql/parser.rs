//! Parsing with DataFusion's `sqlparser`: a batch is tokenized once, split at
//! top-level `;`, and each statement is parsed when its turn comes, so the
//! statements before a broken one still run. KalamDB's statements are
//! recognised by their leading words; any other statement is parsed by
//! sqlparser itself and handed to DataFusion.

use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};
use kalamdb_model::Role;

use crate::error::{EngineError, Result};

/// Longest identifier KalamDB accepts for namespaces and users.
const MAX_NAME_LEN: usize = 64;

/// One statement of a batch, not yet parsed.
#[derive(Debug, Clone)]
pub struct StatementSource {
    /// The statement as written, trimmed, without the `;`.
    pub text: String,
    tokens: Vec<TokenWithSpan>,
}

/// A parsed statement.
#[derive(Debug, Clone)]
pub enum KalamStatement {
    CreateNamespace {
        name: String,
        if_not_exists: bool,
    },
    AlterNamespace {
        name: String,
        options: Vec<(String, serde_json::Value)>,
    },
    DropNamespace {
        name: String,
        if_exists: bool,
        cascade: bool,
    },
    ShowNamespaces,
    CreateUser {
        username: String,
        password: String,
        role: Role,
        email: Option<String>,
        if_not_exists: bool,
    },
    AlterUser {
        username: String,
        change: UserChange,
    },
    DropUser {
        username: String,
        if_exists: bool,
    },
    /// Anything else: planned and run by DataFusion.
    Sql(Box<Statement>),
}

/// What `ALTER USER` changes.
#[derive(Debug, Clone, PartialEq)]
pub enum UserChange {
    Password(String),
    Role(Role),
    Email(Option<String>),
}

/// Splits a batch into statements. Fails only if the text cannot be
/// tokenized (an unterminated string, say) or holds no statement at all.
pub fn split_batch(sql: &str) -> Result<Vec<StatementSource>> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .map_err(|e| EngineError::InvalidSql(format!("SQL syntax error: {e}")))?;
    let mut statements = Vec::new();
    let mut current = Vec::new();
    for token in tokens
        .into_iter()
        .chain(std::iter::once(TokenWithSpan::wrap(Token::SemiColon)))
    {
        if token.token == Token::SemiColon {
            let group = std::mem::take(&mut current);
            if let Some(source) = StatementSource::from_tokens(group) {
                statements.push(source);
            }
        } else {
            current.push(token);
        }
    }
    if statements.is_empty() {
        return Err(EngineError::InvalidSql(
            "the SQL text is empty: send at least one statement".into(),
        ));
    }
    Ok(statements)
}

impl StatementSource {
    fn from_tokens(tokens: Vec<TokenWithSpan>) -> Option<Self> {
        let meaningful = tokens
            .iter()
            .any(|t| !matches!(t.token, Token::Whitespace(_)));
        if !meaningful {
            return None;
        }
        let text: String = tokens
            .iter()
            .map(|t| match &t.token {
                Token::Whitespace(Whitespace::SingleLineComment { .. })
                | Token::Whitespace(Whitespace::MultiLineComment(_)) => " ".to_string(),
                other => other.to_string(),
            })
            .collect();
        Some(StatementSource {
            text: text.trim().to_string(),
            tokens,
        })
    }

    /// Parses this statement.
    pub fn parse(&self) -> Result<KalamStatement> {
        let dialect = GenericDialect {};
        let tokens = call_syntax_for_current_user(self.tokens.clone());
        let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
        let statement = parse_statement(&mut parser).map_err(syntax_error)?;
        if parser.peek_token().token != Token::EOF {
            let found = parser.peek_token();
            return Err(syntax_error(ParserError::ParserError(format!(
                "unexpected {} at {}",
                found.token, found.span.start
            ))));
        }
        Ok(statement)
    }
}

/// sqlparser's generic dialect reads `CURRENT_USER` as a niladic keyword and
/// rejects `CURRENT_USER()`. Turning the keyword into a quoted identifier when
/// `(` follows makes it an ordinary call of the `current_user` function.
fn call_syntax_for_current_user(mut tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    for i in 0..tokens.len() {
        let is_keyword = matches!(&tokens[i].token,
            Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::CURRENT_USER);
        let next = tokens[i + 1..]
            .iter()
            .find(|t| !matches!(t.token, Token::Whitespace(_)));
        if is_keyword && next.is_some_and(|t| t.token == Token::LParen) {
            if let Token::Word(w) = &mut tokens[i].token {
                w.value = "current_user".into();
                w.quote_style = Some('"');
                w.keyword = Keyword::NoKeyword;
            }
        }
    }
    tokens
}

fn syntax_error(err: ParserError) -> EngineError {
    let message = match err {
        ParserError::ParserError(m) | ParserError::TokenizerError(m) => m,
        ParserError::RecursionLimitExceeded => "statement is nested too deeply".to_string(),
    };
    EngineError::InvalidSql(format!("SQL syntax error: {message}"))
}

type PResult<T> = std::result::Result<T, ParserError>;

/// The unquoted word `n` tokens ahead, upper-cased.
fn word_at(parser: &Parser, n: usize) -> Option<String> {
    match parser.peek_nth_token(n).token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

/// Consumes `words` if the next tokens are exactly those words.
fn eat_words(parser: &mut Parser, words: &[&str]) -> bool {
    let all = words
        .iter()
        .enumerate()
        .all(|(i, w)| word_at(parser, i).as_deref() == Some(*w));
    if all {
        for _ in words {
            parser.next_token();
        }
    }
    all
}

fn expect_words(parser: &mut Parser, words: &[&str]) -> PResult<()> {
    if eat_words(parser, words) {
        Ok(())
    } else {
        parser.expected(&words.join(" "), parser.peek_token())
    }
}

fn parse_statement(parser: &mut Parser) -> PResult<KalamStatement> {
    if eat_words(parser, &["CREATE", "NAMESPACE"]) {
        let if_not_exists = eat_words(parser, &["IF", "NOT", "EXISTS"]);
        let name = parse_name(parser, "namespace")?;
        return Ok(KalamStatement::CreateNamespace {
            name,
            if_not_exists,
        });
    }
    if eat_words(parser, &["ALTER", "NAMESPACE"]) {
        let name = parse_name(parser, "namespace")?;
        expect_words(parser, &["SET", "OPTIONS"])?;
        let options = parse_options(parser)?;
        return Ok(KalamStatement::AlterNamespace { name, options });
    }
    if eat_words(parser, &["DROP", "NAMESPACE"]) {
        let if_exists = eat_words(parser, &["IF", "EXISTS"]);
        let name = parse_name(parser, "namespace")?;
        let cascade = eat_words(parser, &["CASCADE"]);
        return Ok(KalamStatement::DropNamespace {
            name,
            if_exists,
            cascade,
        });
    }
    if eat_words(parser, &["SHOW", "NAMESPACES"]) {
        return Ok(KalamStatement::ShowNamespaces);
    }
    // `CREATE USER TABLE` is a table; `CREATE USER 'name'` is an account.
    if word_at(parser, 0).as_deref() == Some("CREATE")
        && word_at(parser, 1).as_deref() == Some("USER")
        && word_at(parser, 2).as_deref() != Some("TABLE")
    {
        expect_words(parser, &["CREATE", "USER"])?;
        return parse_create_user(parser);
    }
    if eat_words(parser, &["ALTER", "USER"]) {
        return parse_alter_user(parser);
    }
    if eat_words(parser, &["DROP", "USER"]) {
        let if_exists = eat_words(parser, &["IF", "EXISTS"]);
        let username = parse_user_name(parser)?;
        return Ok(KalamStatement::DropUser {
            username,
            if_exists,
        });
    }
    Ok(KalamStatement::Sql(Box::new(parser.parse_statement()?)))
}

/// A namespace-like name: unquoted names are lower-cased, as DataFusion does.
fn parse_name(parser: &mut Parser, what: &str) -> PResult<String> {
    let ident = parser.parse_identifier()?;
    let name = if ident.quote_style.is_some() {
        ident.value
    } else {
        ident.value.to_ascii_lowercase()
    };
    validate_name(&name, what).map_err(ParserError::ParserError)?;
    Ok(name)
}

/// Checks a namespace or table name: a letter or `_`, then letters, digits, `_`.
pub fn validate_name(name: &str, what: &str) -> std::result::Result<(), String> {
    let mut chars = name.chars();
    let starts_well = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !starts_well || !rest_ok || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "invalid {what} name '{name}': use up to {MAX_NAME_LEN} letters, digits and _, starting with a letter or _"
        ));
    }
    Ok(())
}

/// `( key = value, ... )` with string, number or boolean values.
fn parse_options(parser: &mut Parser) -> PResult<Vec<(String, serde_json::Value)>> {
    parser.expect_token(&Token::LParen)?;
    let options = parser.parse_comma_separated(|p| {
        let key = p.parse_identifier()?.value;
        p.expect_token(&Token::Eq)?;
        let token = p.next_token();
        let value = match &token.token {
            Token::SingleQuotedString(s) => serde_json::Value::String(s.clone()),
            Token::Number(n, _) => serde_json::from_str(n)
                .map_err(|_| ParserError::ParserError(format!("invalid number {n}")))?,
            Token::Word(w) if w.value.eq_ignore_ascii_case("true") => true.into(),
            Token::Word(w) if w.value.eq_ignore_ascii_case("false") => false.into(),
            _ => return p.expected("a string, number or boolean option value", token),
        };
        Ok((key, value))
    })?;
    parser.expect_token(&Token::RParen)?;
    Ok(options)
}

/// A user name: `'alice'` or `alice`.
fn parse_user_name(parser: &mut Parser) -> PResult<String> {
    let token = parser.next_token();
    let name = match token.token {
        Token::SingleQuotedString(s) => s,
        Token::Word(w) => w.value,
        _ => return parser.expected("a user name", token),
    };
    validate_user_name(&name).map_err(ParserError::ParserError)?;
    Ok(name)
}

/// User names: 1–64 characters of letters, digits, `_ . @ -`.
pub fn validate_user_name(name: &str) -> std::result::Result<(), String> {
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

fn parse_role(parser: &mut Parser) -> PResult<Role> {
    let token = parser.next_token();
    let name = match &token.token {
        Token::SingleQuotedString(s) => s.clone(),
        Token::Word(w) => w.value.clone(),
        _ => return parser.expected("a role (user, service, dba, system)", token),
    };
    Role::parse(&name).ok_or_else(|| {
        ParserError::ParserError(format!(
            "unknown role '{name}': expected user, service, dba or system"
        ))
    })
}

fn parse_create_user(parser: &mut Parser) -> PResult<KalamStatement> {
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

fn parse_alter_user(parser: &mut Parser) -> PResult<KalamStatement> {
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
            return parser.expected("SET PASSWORD, SET ROLE or SET EMAIL", parser.peek_token());
        };
    Ok(KalamStatement::AlterUser { username, change })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_one(sql: &str) -> Result<KalamStatement> {
        let batch = split_batch(sql)?;
        assert_eq!(batch.len(), 1, "{sql}");
        batch[0].parse()
    }

    #[test]
    fn splits_batches_respecting_strings_and_comments() {
        let batch = split_batch("SELECT 'a;b'; -- c;\n SELECT 2 ;; ").unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].text, "SELECT 'a;b'");
        assert_eq!(batch[1].text, "SELECT 2");
        assert!(split_batch("  ;  -- nothing").is_err());
        assert!(split_batch("SELECT 'open").is_err());
    }

    #[test]
    fn namespaces() {
        assert!(matches!(
            parse_one("create namespace if not exists App").unwrap(),
            KalamStatement::CreateNamespace { name, if_not_exists: true } if name == "app"
        ));
        assert!(matches!(
            parse_one("DROP NAMESPACE IF EXISTS app CASCADE").unwrap(),
            KalamStatement::DropNamespace {
                if_exists: true,
                cascade: true,
                ..
            }
        ));
        match parse_one("ALTER NAMESPACE app SET OPTIONS (owner = 'x', quota = 5, on = true)")
            .unwrap()
        {
            KalamStatement::AlterNamespace { options, .. } => {
                assert_eq!(options.len(), 3);
                assert_eq!(options[1].1, serde_json::json!(5));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_one("SHOW NAMESPACES").unwrap(),
            KalamStatement::ShowNamespaces
        ));
        assert!(parse_one("CREATE NAMESPACE \"bad-name\"").is_err());
        assert!(parse_one("CREATE NAMESPACE app extra").is_err());
    }

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

    #[test]
    fn other_statements_go_to_sqlparser() {
        assert!(matches!(
            parse_one("SELECT 1").unwrap(),
            KalamStatement::Sql(_)
        ));
        assert!(matches!(
            parse_one("CREATE USER TABLE app.t (id INT)"),
            Err(_) | Ok(KalamStatement::Sql(_))
        ));
        let err = parse_one("SELEC 1").unwrap_err();
        assert!(err.to_string().starts_with("SQL syntax error"), "{err}");
    }
}
