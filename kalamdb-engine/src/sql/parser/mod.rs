//! Parsing with DataFusion's `sqlparser`: a batch is tokenized once, split at
//! top-level `;`, and each statement is parsed when its turn comes, so the
//! statements before a broken one still run. KalamDB's statements are
//! recognised by their leading words; any other statement is parsed by
//! sqlparser itself and handed to DataFusion.

mod ast;
mod backup;
mod depth;
mod storage;
mod tables;
mod users;

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

pub(crate) use ast::{
    CreateStorage, CreateTable, KalamStatement, TableChange, TableRef, UserChange,
};
pub(crate) use tables::table_ref;

use std::time::Duration;

use crate::error::{EngineError, Result};
use crate::metrics::StatementKind;
use crate::table::def::parse_duration_secs;
use depth::expression_depth;
use storage::parse_create_storage;
use tables::{parse_alter_table, parse_create_table, parse_table_ref, table_kind_ahead};
use users::{parse_alter_user, parse_create_user, parse_user_name};

/// Longest identifier KalamDB accepts for namespaces and users.
pub(crate) use crate::table::def::{MAX_NAME_LEN, validate_name};

/// One statement of a batch, not yet parsed.
#[derive(Debug, Clone)]
pub(crate) struct StatementSource {
    /// The statement as written, trimmed, without the `;`.
    pub text: String,
    tokens: Vec<TokenWithSpan>,
    /// Upper bound of the expression depth of its syntax tree (see
    /// [`expression_depth`]), measured before anything recursive runs.
    depth: usize,
    /// Query blocks (`SELECT` keywords): CTE chains and subqueries nest plans.
    query_blocks: usize,
    /// `JOIN`s and comma joins.
    joins: usize,
}

/// Splits a batch into statements. Fails only if the text cannot be
/// tokenized (an unterminated string, say) or holds no statement at all.
pub(crate) fn split_batch(sql: &str) -> Result<Vec<StatementSource>> {
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
        let (depth, joins) = expression_depth(&tokens);
        let query_blocks = tokens
            .iter()
            .filter(|t| matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::SELECT))
            .count();
        Some(StatementSource {
            text: text.trim().to_string(),
            tokens,
            depth,
            query_blocks,
            joins,
        })
    }

    /// Refuses a statement whose syntax tree could be deeper than
    /// `max_depth` (the parser, planner, optimiser and evaluator all recurse
    /// over it, so a flat chain of a few thousand `OR`s would otherwise
    /// exhaust a thread's stack) or that joins more than `max_joins` times
    /// (join planning grows steeply). Checked on tokens, before any of them
    /// runs.
    pub(crate) fn check_limits(&self, max_depth: usize, max_joins: usize) -> Result<()> {
        if self.joins > max_joins {
            return Err(EngineError::LimitExceeded(format!(
                "the statement joins {} times; the limit is {max_joins} (KALAMDB_MAX_JOINS)",
                self.joins
            )));
        }
        if self.depth > max_depth {
            return Err(EngineError::LimitExceeded(format!(
                "the statement chains or nests expressions {} deep; the limit is {max_depth} \
                 (KALAMDB_MAX_EXPRESSION_DEPTH): use IN (…) instead of long OR chains, or split the statement",
                self.depth
            )));
        }
        if self.query_blocks > max_depth {
            return Err(EngineError::LimitExceeded(format!(
                "the statement has {} SELECT blocks; the limit is {max_depth} (KALAMDB_MAX_EXPRESSION_DEPTH)",
                self.query_blocks
            )));
        }
        Ok(())
    }

    /// What the statement does, from its first word (for `EXECUTE AS USER
    /// '…' (…)`, the inner statement's), for the metrics. Read from the
    /// tokens, so a statement that does not parse still has a kind.
    /// The statement's leading keywords as a command tag: `SELECT`,
    /// `INSERT`, `CREATE TABLE` (for every table kind), `DROP USER`, …
    pub(crate) fn command(&self) -> String {
        let words: Vec<String> = self
            .tokens
            .iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_)))
            .map_while(|t| match &t.token {
                Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
                _ => None,
            })
            .take(3)
            .collect();
        let word = |i: usize| words.get(i).map_or("", String::as_str);
        match (word(0), word(1), word(2)) {
            (verb @ ("CREATE" | "DROP" | "ALTER"), "USER" | "SHARED" | "STREAM", "TABLE") => {
                format!("{verb} TABLE")
            }
            (verb @ ("CREATE" | "DROP" | "ALTER"), object, _) if !object.is_empty() => {
                format!("{verb} {object}")
            }
            (first, _, _) => first.to_string(),
        }
    }

    pub(crate) fn kind(&self) -> StatementKind {
        let mut tokens = self
            .tokens
            .iter()
            .map(|t| &t.token)
            .filter(|t| !matches!(t, Token::Whitespace(_)));
        let mut in_execute_as = false;
        while let Some(token) = tokens.next() {
            match token {
                Token::LParen => {}
                Token::Word(w) if w.quote_style.is_none() => {
                    if !in_execute_as && w.value.eq_ignore_ascii_case("EXECUTE") {
                        // The inner statement follows the first `(`.
                        in_execute_as = true;
                        if !tokens.by_ref().any(|t| *t == Token::LParen) {
                            return StatementKind::Other;
                        }
                        continue;
                    }
                    return StatementKind::of_leading_word(&w.value);
                }
                _ => return StatementKind::Other,
            }
        }
        StatementKind::Other
    }

    /// The highest `$n` placeholder in the statement (0 if none).
    pub(crate) fn highest_placeholder(&self) -> usize {
        self.tokens
            .iter()
            .filter_map(|t| match &t.token {
                Token::Placeholder(p) => p.strip_prefix('$')?.parse().ok(),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// Parses this statement.
    pub(crate) fn parse(&self) -> Result<KalamStatement> {
        let dialect = GenericDialect {};
        let tokens = call_syntax_for_current_user(self.tokens.clone());
        let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
        let statement = parse_statement(&mut parser).map_err(syntax_error)?;
        if parser.peek_token().token != Token::EOF {
            let found = parser.peek_token();
            return Err(syntax_error(ParseFailure::Syntax(
                ParserError::ParserError(format!(
                    "unexpected {} at {}",
                    found.token, found.span.start
                )),
            )));
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
        if is_keyword
            && next.is_some_and(|t| t.token == Token::LParen)
            && let Token::Word(w) = &mut tokens[i].token
        {
            w.value = "current_user".into();
            w.quote_style = Some('"');
            w.keyword = Keyword::NoKeyword;
        }
    }
    tokens
}

fn syntax_error(err: ParseFailure) -> EngineError {
    let message = match err {
        ParseFailure::Invalid(message) => return EngineError::InvalidInput(message),
        ParseFailure::Syntax(ParserError::ParserError(m) | ParserError::TokenizerError(m)) => m,
        ParseFailure::Syntax(ParserError::RecursionLimitExceeded) => {
            "statement is nested too deeply".to_string()
        }
    };
    EngineError::InvalidSql(format!("SQL syntax error: {message}"))
}

/// Why a statement did not parse: bad syntax (`INVALID_SQL`), or a
/// well-formed value the statement does not accept, such as an unknown
/// duration unit or storage type (`INVALID_INPUT`).
#[derive(Debug)]
enum ParseFailure {
    Syntax(ParserError),
    Invalid(String),
}

impl From<ParserError> for ParseFailure {
    fn from(err: ParserError) -> Self {
        ParseFailure::Syntax(err)
    }
}

type PResult<T> = std::result::Result<T, ParseFailure>;

/// sqlparser's "Expected: …, found: …" error.
fn expected<T>(parser: &Parser, what: &str, found: TokenWithSpan) -> PResult<T> {
    Ok(parser.expected(what, found)?)
}

/// A quoted duration (`'5 minutes'`, `'7 days'`) of the clause `clause`;
/// `example` shows a valid one in the error.
fn parse_duration(parser: &mut Parser, clause: &str, example: &str) -> PResult<Duration> {
    let text = parser.parse_literal_string()?;
    parse_duration_secs(&text)
        .map(Duration::from_secs)
        .ok_or_else(|| {
            ParseFailure::Invalid(format!("invalid {clause} '{text}': use e.g. '{example}'"))
        })
}

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
        expected(parser, &words.join(" "), parser.peek_token())
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
    if let Some(kind) = table_kind_ahead(parser) {
        parser.next_token();
        parser.next_token();
        parser.next_token();
        return parse_create_table(parser, kind);
    }
    if eat_words(parser, &["BACKUP", "DATABASE"]) {
        return backup::parse_backup(parser);
    }
    if eat_words(parser, &["RESTORE", "DATABASE"]) {
        return backup::parse_restore(parser);
    }
    if eat_words(parser, &["SHOW", "BACKUP"]) {
        return backup::parse_show_backup(parser);
    }
    if eat_words(parser, &["ALTER", "TABLE"]) {
        return parse_alter_table(parser);
    }
    if eat_words(parser, &["DROP", "TABLE"]) {
        let if_exists = eat_words(parser, &["IF", "EXISTS"]);
        let name = parse_table_ref(parser)?;
        return Ok(KalamStatement::DropTable { name, if_exists });
    }
    if eat_words(parser, &["SHOW", "TABLES"]) {
        let namespace = if eat_words(parser, &["IN"]) || eat_words(parser, &["FROM"]) {
            Some(parse_name(parser, "namespace")?)
        } else {
            None
        };
        return Ok(KalamStatement::ShowTables { namespace });
    }
    if eat_words(parser, &["DESCRIBE", "TABLE"]) || eat_words(parser, &["DESC", "TABLE"]) {
        let name = parse_table_ref(parser)?;
        let history = eat_words(parser, &["HISTORY"]);
        return Ok(KalamStatement::DescribeTable { name, history });
    }
    if eat_words(parser, &["FLUSH", "TABLE"]) {
        let name = parse_table_ref(parser)?;
        return Ok(KalamStatement::FlushTable { name });
    }
    if eat_words(parser, &["COMPACT", "TABLE"]) {
        let name = parse_table_ref(parser)?;
        return Ok(KalamStatement::CompactTable { name });
    }
    if eat_words(parser, &["CREATE", "STORAGE"]) {
        return parse_create_storage(parser);
    }
    if eat_words(parser, &["DROP", "STORAGE"]) {
        let if_exists = eat_words(parser, &["IF", "EXISTS"]);
        let name = parse_name(parser, "storage")?;
        return Ok(KalamStatement::DropStorage { name, if_exists });
    }
    if eat_words(parser, &["SHOW", "STATS"]) {
        if eat_words(parser, &["FOR", "TABLE"]) {
            let name = parse_table_ref(parser)?;
            return Ok(KalamStatement::ShowTableStats { name });
        }
        return Ok(KalamStatement::ShowServerStats);
    }
    if eat_words(parser, &["KILL", "LIVE", "QUERY"]) {
        let live_id = parser.parse_literal_string()?;
        return Ok(KalamStatement::KillLiveQuery { live_id });
    }
    if eat_words(parser, &["EXECUTE", "AS", "USER"]) {
        let user = parse_user_name(parser)?;
        return parse_execute_as(parser, user);
    }
    Ok(KalamStatement::Sql(Box::new(parser.parse_statement()?)))
}

/// `( statement )` after `EXECUTE AS USER 'id'`: the tokens between the
/// outer parentheses, whitespace kept, become the inner statement.
fn parse_execute_as(parser: &mut Parser, user: String) -> PResult<KalamStatement> {
    parser.expect_token(&Token::LParen)?;
    let mut depth = 1usize;
    let mut inner = Vec::new();
    loop {
        let Some(token) = parser.next_token_no_skip().cloned() else {
            return expected(parser, ")", parser.peek_token());
        };
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            Token::EOF => return expected(parser, ")", token),
            _ => {}
        }
        inner.push(token);
    }
    let statement = StatementSource::from_tokens(inner).ok_or_else(|| {
        ParserError::ParserError("EXECUTE AS USER needs a statement inside the parentheses".into())
    })?;
    Ok(KalamStatement::ExecuteAs { user, statement })
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

/// `( key = value, ... )` with string, number or boolean values.
fn parse_options(parser: &mut Parser) -> PResult<Vec<(String, serde_json::Value)>> {
    parser.expect_token(&Token::LParen)?;
    let options = parser.parse_comma_separated(|p| {
        let key = p.parse_identifier()?.value;
        p.expect_token(&Token::Eq)?;
        let negative = p.consume_token(&Token::Minus);
        let token = p.next_token();
        let value = match &token.token {
            Token::SingleQuotedString(s) if !negative => serde_json::Value::String(s.clone()),
            Token::Number(n, _) => {
                let text = if negative { format!("-{n}") } else { n.clone() };
                serde_json::from_str(&text)
                    .map_err(|_| ParserError::ParserError(format!("invalid number {text}")))?
            }
            Token::Word(w) if !negative && w.value.eq_ignore_ascii_case("true") => true.into(),
            Token::Word(w) if !negative && w.value.eq_ignore_ascii_case("false") => false.into(),
            _ => return p.expected("a string, number or boolean option value", token),
        };
        Ok((key, value))
    })?;
    parser.expect_token(&Token::RParen)?;
    Ok(options)
}

fn parse_count(parser: &mut Parser) -> PResult<u64> {
    let token = parser.next_token();
    match &token.token {
        Token::Number(n, _) => Ok(n.parse().map_err(|_| {
            ParserError::ParserError(format!("expected a positive whole number, found {n}"))
        })?),
        _ => expected(parser, "a positive whole number", token),
    }
}

/// Parses a batch of exactly one statement (for the parser's tests).
#[cfg(test)]
fn parse_one(sql: &str) -> Result<KalamStatement> {
    let batch = split_batch(sql)?;
    assert_eq!(batch.len(), 1, "{sql}");
    batch[0].parse()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn execute_as_keeps_the_inner_statement() {
        match parse_one(
            "EXECUTE AS USER 'alice' (INSERT INTO app.m (id, body) VALUES (1, 'a (b)'))",
        )
        .unwrap()
        {
            KalamStatement::ExecuteAs { user, statement } => {
                assert_eq!(user, "alice");
                assert_eq!(
                    statement.text,
                    "INSERT INTO app.m (id, body) VALUES (1, 'a (b)')"
                );
                assert!(matches!(statement.parse().unwrap(), KalamStatement::Sql(_)));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_one("EXECUTE AS USER 'alice' (SELECT 1").is_err());
    }

    #[test]
    fn show_stats() {
        match parse_one("show stats for table App.T").unwrap() {
            KalamStatement::ShowTableStats { name } => {
                assert_eq!(
                    name,
                    TableRef {
                        namespace: Some("app".into()),
                        name: "t".into()
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_one("SHOW STATS").unwrap(),
            KalamStatement::ShowServerStats
        ));
        for bad in [
            "SHOW STATS FOR TABLE",
            "SHOW STATS FOR TABLE app..t",
            "SHOW STATS FOR TABLE app/t",
            "SHOW STATS FOR TABLE \"../etc\".t",
            "SHOW STATS FOR TABLE app.\"a/b\"",
            "SHOW STATS FOR TABLE a.b.c",
            "SHOW STATS app.t",
        ] {
            let err = parse_one(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    EngineError::InvalidSql(_) | EngineError::InvalidInput(_)
                ),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn statement_kinds() {
        let kind = |sql: &str| split_batch(sql).unwrap()[0].kind();
        assert_eq!(kind("  select 1"), StatementKind::Select);
        assert_eq!(kind("(SELECT 1) UNION (SELECT 2)"), StatementKind::Select);
        assert_eq!(
            kind("-- c\nINSERT INTO t VALUES (1)"),
            StatementKind::Insert
        );
        assert_eq!(
            kind("EXECUTE AS USER 'a' (UPDATE t SET x = 1)"),
            StatementKind::Update
        );
        assert_eq!(kind("EXECUTE AS USER 'a'"), StatementKind::Other);
        assert_eq!(kind("CREATE USER TABLE a.b (x INT)"), StatementKind::Ddl);
        assert_eq!(kind("SHOW STATS"), StatementKind::Show);
        assert_eq!(kind("FLUSH TABLE a.b"), StatementKind::Admin);
        assert_eq!(kind("'text'"), StatementKind::Other);
        assert_eq!(kind("\"select\" 1"), StatementKind::Other);
    }

    #[test]
    fn current_user_call_syntax() {
        assert!(matches!(
            parse_one("SELECT CURRENT_USER()").unwrap(),
            KalamStatement::Sql(_)
        ));
        assert!(matches!(
            parse_one("SELECT CURRENT_USER").unwrap(),
            KalamStatement::Sql(_)
        ));
    }

    #[test]
    fn other_statements_go_to_sqlparser() {
        assert!(matches!(
            parse_one("SELECT 1").unwrap(),
            KalamStatement::Sql(_)
        ));
        let err = parse_one("SELEC 1").unwrap_err();
        assert!(err.to_string().starts_with("SQL syntax error"), "{err}");
    }
}
