//! Parsing with DataFusion's `sqlparser`: a batch is tokenized once, split at
//! top-level `;`, and each statement is parsed when its turn comes, so the
//! statements before a broken one still run. KalamDB's statements are
//! recognised by their leading words; any other statement is parsed by
//! sqlparser itself and handed to DataFusion.

use datafusion::sql::sqlparser::ast::{ColumnDef, ObjectName, Statement, TableConstraint};
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
    /// Upper bound of the expression depth of its syntax tree (see
    /// [`expression_depth`]), measured before anything recursive runs.
    depth: usize,
    /// Query blocks (`SELECT` keywords): CTE chains and subqueries nest plans.
    query_blocks: usize,
    /// `JOIN`s and comma joins.
    joins: usize,
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
    CreateTable(Box<CreateTable>),
    DropTable {
        name: TableRef,
        if_exists: bool,
    },
    ShowTables {
        namespace: Option<String>,
    },
    DescribeTable {
        name: TableRef,
        history: bool,
    },
    /// `FLUSH TABLE ns.t`: queue a flush of every partition.
    FlushTable {
        name: TableRef,
    },
    /// `COMPACT TABLE ns.t`: queue a compaction of every partition.
    CompactTable {
        name: TableRef,
    },
    CreateStorage(CreateStorage),
    /// `DROP STORAGE [IF EXISTS] name`.
    DropStorage {
        name: String,
        if_exists: bool,
    },
    /// `KILL LIVE QUERY 'live_id'`.
    KillLiveQuery {
        live_id: String,
    },
    /// `EXECUTE AS USER 'id' (statement)`.
    ExecuteAs {
        user: String,
        statement: StatementSource,
    },
    /// Anything else: planned and run by DataFusion.
    Sql(Box<Statement>),
}

/// A table name as written: `ns.table` or `table` (namespace from the request).
#[derive(Debug, Clone, PartialEq)]
pub struct TableRef {
    pub namespace: Option<String>,
    pub name: String,
}

/// `CREATE USER|SHARED|STREAM TABLE …`.
#[derive(Debug, Clone)]
pub struct CreateTable {
    pub kind: crate::table::TableKind,
    pub name: TableRef,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    pub constraints: Vec<TableConstraint>,
    pub location: Option<String>,
    pub flush_rows: Option<u64>,
    pub flush_interval: Option<String>,
    pub deleted_retention: Option<String>,
    pub with_options: Vec<(String, serde_json::Value)>,
}

/// `CREATE STORAGE name TYPE filesystem|s3 PATH '…' [CREDENTIALS 'ref'] [OPTIONS (…)]`.
#[derive(Debug, Clone)]
pub struct CreateStorage {
    pub name: String,
    pub if_not_exists: bool,
    pub kind: String,
    pub path: String,
    pub credentials: Option<String>,
    pub options: Vec<(String, serde_json::Value)>,
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
    /// `max_depth`: the parser, planner, optimiser and evaluator all recurse
    /// over it, so a flat chain of a few thousand `OR`s would otherwise
    /// exhaust a thread's stack. Checked on tokens, before any of them runs.
    pub fn check_depth(&self, max_depth: usize, max_joins: usize) -> Result<()> {
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

    /// The highest `$n` placeholder in the statement (0 if none).
    pub fn highest_placeholder(&self) -> usize {
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

/// One parenthesised group while measuring [`expression_depth`].
#[derive(Default)]
struct Group {
    /// Operators in the current comma-separated item.
    operators: usize,
    /// Deepest parenthesised group inside the current item.
    child: usize,
    /// Deepest item so far.
    best: usize,
    /// Set operations, joins and comma joins: they nest the plan whatever
    /// the commas around them.
    structure: usize,
    /// After `FROM`, where a comma is a join.
    in_from: bool,
}

impl Group {
    fn close_item(&mut self) {
        self.best = self.best.max(self.operators + self.child);
        self.operators = 0;
        self.child = 0;
    }

    fn depth(mut self) -> usize {
        self.close_item();
        self.best + self.structure
    }
}

/// An upper bound of how deep the syntax tree of `tokens` can be: within
/// one comma-separated item of one parenthesised group every operator may
/// add a level (`a OR b OR c` is a left-deep tree), each enclosing
/// parenthesis adds one, and set operations and joins add one each. Also
/// returns the number of joins (`JOIN`s and comma joins).
fn expression_depth(tokens: &[TokenWithSpan]) -> (usize, usize) {
    let mut joins = 0;
    let mut stack = vec![Group::default()];
    let close = |stack: &mut Vec<Group>| {
        if let Some(group) = stack.pop() {
            let depth = group.depth() + 1;
            if let Some(parent) = stack.last_mut() {
                parent.child = parent.child.max(depth);
            }
        }
    };
    for token in tokens {
        match &token.token {
            Token::LParen | Token::LBracket | Token::LBrace => stack.push(Group::default()),
            Token::RParen | Token::RBracket | Token::RBrace => {
                if stack.len() > 1 {
                    close(&mut stack);
                }
            }
            Token::Comma => {
                if let Some(group) = stack.last_mut() {
                    if group.in_from {
                        group.structure += 1;
                        joins += 1;
                    } else {
                        group.close_item();
                    }
                }
            }
            Token::Word(word) if word.quote_style.is_none() => {
                let Some(group) = stack.last_mut() else {
                    continue;
                };
                match word.keyword {
                    Keyword::UNION | Keyword::INTERSECT | Keyword::EXCEPT | Keyword::JOIN => {
                        group.structure += 1;
                        group.in_from = word.keyword == Keyword::JOIN;
                        joins += usize::from(group.in_from);
                    }
                    Keyword::FROM => group.in_from = true,
                    Keyword::WHERE
                    | Keyword::GROUP
                    | Keyword::HAVING
                    | Keyword::ORDER
                    | Keyword::LIMIT
                    | Keyword::WINDOW
                    | Keyword::QUALIFY
                    | Keyword::SELECT
                    | Keyword::ON
                    | Keyword::USING
                    | Keyword::SET
                    | Keyword::VALUES => group.in_from = false,
                    Keyword::AND
                    | Keyword::OR
                    | Keyword::NOT
                    | Keyword::XOR
                    | Keyword::LIKE
                    | Keyword::ILIKE
                    | Keyword::SIMILAR
                    | Keyword::RLIKE
                    | Keyword::REGEXP
                    | Keyword::IS
                    | Keyword::IN
                    | Keyword::BETWEEN
                    | Keyword::AT
                    | Keyword::COLLATE
                    | Keyword::OVERLAPS
                    | Keyword::DIV
                    | Keyword::MOD => group.operators += 1,
                    _ => {}
                }
            }
            Token::Word(_)
            | Token::EOF
            | Token::Whitespace(_)
            | Token::Period
            | Token::SemiColon
            | Token::Placeholder(_)
            | Token::Number(..)
            | Token::Char(_) => {}
            other if is_literal(other) => {}
            _ => {
                if let Some(group) = stack.last_mut() {
                    group.operators += 1;
                }
            }
        }
    }
    while stack.len() > 1 {
        close(&mut stack);
    }
    (stack.pop().map(Group::depth).unwrap_or(0), joins)
}

/// String literals of every quoting style.
fn is_literal(token: &Token) -> bool {
    matches!(
        token,
        Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::QuoteDelimitedStringLiteral(_)
            | Token::NationalQuoteDelimitedStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
    )
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
    if let Some(kind) = table_kind_ahead(parser) {
        parser.next_token();
        parser.next_token();
        parser.next_token();
        return parse_create_table(parser, kind);
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

/// The rest of `CREATE STORAGE`: clauses in any order after the name.
fn parse_create_storage(parser: &mut Parser) -> PResult<KalamStatement> {
    let if_not_exists = eat_words(parser, &["IF", "NOT", "EXISTS"]);
    let name = parse_name(parser, "storage")?;
    let (mut kind, mut path, mut credentials, mut options) = (None, None, None, Vec::new());
    loop {
        if eat_words(parser, &["TYPE"]) {
            let token = parser.next_token();
            kind = Some(match token.token {
                Token::Word(w) => w.value.to_ascii_lowercase(),
                Token::SingleQuotedString(s) => s.to_ascii_lowercase(),
                _ => return parser.expected("filesystem or s3", token),
            });
        } else if eat_words(parser, &["PATH"]) || eat_words(parser, &["BASE_DIRECTORY"]) {
            path = Some(parser.parse_literal_string()?);
        } else if eat_words(parser, &["CREDENTIALS"]) {
            credentials = Some(parser.parse_literal_string()?);
        } else if eat_words(parser, &["OPTIONS"]) || eat_words(parser, &["WITH"]) {
            options = parse_options(parser)?;
        } else {
            break;
        }
    }
    let kind = kind.ok_or_else(|| {
        ParserError::ParserError("CREATE STORAGE needs TYPE filesystem or TYPE s3".into())
    })?;
    let path = path.ok_or_else(|| {
        ParserError::ParserError(
            "CREATE STORAGE needs PATH '…' (a directory or s3://bucket/prefix)".into(),
        )
    })?;
    Ok(KalamStatement::CreateStorage(CreateStorage {
        name,
        if_not_exists,
        kind,
        path,
        credentials,
        options,
    }))
}

/// `CREATE USER TABLE`, `CREATE SHARED TABLE` or `CREATE STREAM TABLE` ahead.
fn table_kind_ahead(parser: &Parser) -> Option<crate::table::TableKind> {
    if word_at(parser, 0).as_deref() != Some("CREATE")
        || word_at(parser, 2).as_deref() != Some("TABLE")
    {
        return None;
    }
    crate::table::TableKind::parse(&word_at(parser, 1)?)
}

/// A table name: `ns.table` or `table`; unquoted parts are lower-cased.
fn parse_table_ref(parser: &mut Parser) -> PResult<TableRef> {
    let name = parser.parse_object_name(false)?;
    table_ref(&name).map_err(ParserError::ParserError)
}

/// Resolves an object name to a table reference.
pub fn table_ref(name: &ObjectName) -> std::result::Result<TableRef, String> {
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

fn parse_create_table(
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
            let mut any = false;
            loop {
                if eat_words(parser, &["ROWS"]) {
                    create.flush_rows = Some(parse_count(parser)?);
                } else if eat_words(parser, &["INTERVAL"]) {
                    create.flush_interval = Some(parser.parse_literal_string()?);
                } else {
                    break;
                }
                any = true;
            }
            if !any {
                return parser.expected(
                    "ROWS n or INTERVAL '…' after FLUSH POLICY",
                    parser.peek_token(),
                );
            }
        } else if eat_words(parser, &["DELETED", "RETENTION"]) {
            create.deleted_retention = Some(parser.parse_literal_string()?);
        } else if eat_words(parser, &["WITH"]) {
            create.with_options = parse_options(parser)?;
        } else {
            break;
        }
    }
    Ok(KalamStatement::CreateTable(Box::new(create)))
}

fn parse_count(parser: &mut Parser) -> PResult<u64> {
    let token = parser.next_token();
    match &token.token {
        Token::Number(n, _) => n.parse().map_err(|_| {
            ParserError::ParserError(format!("expected a positive whole number, found {n}"))
        }),
        _ => parser.expected("a positive whole number", token),
    }
}

/// `( statement )` after `EXECUTE AS USER 'id'`: the tokens between the
/// outer parentheses, whitespace kept, become the inner statement.
fn parse_execute_as(parser: &mut Parser, user: String) -> PResult<KalamStatement> {
    parser.expect_token(&Token::LParen)?;
    let mut depth = 1usize;
    let mut inner = Vec::new();
    loop {
        let Some(token) = parser.next_token_no_skip().cloned() else {
            return parser.expected(")", parser.peek_token());
        };
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            Token::EOF => return parser.expected(")", token),
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
    fn tables() {
        match parse_one("CREATE USER TABLE IF NOT EXISTS App.Messages (id BIGINT PRIMARY KEY, body TEXT NOT NULL DEFAULT 'x') LOCATION REFERENCE 'local' FLUSH POLICY ROWS 100 INTERVAL '5 minutes' DELETED RETENTION '7 days'").unwrap() {
            KalamStatement::CreateTable(c) => {
                assert_eq!(c.kind, crate::table::TableKind::User);
                assert_eq!(c.name, TableRef { namespace: Some("app".into()), name: "messages".into() });
                assert!(c.if_not_exists);
                assert_eq!(c.columns.len(), 2);
                assert_eq!(c.flush_rows, Some(100));
                assert_eq!(c.flush_interval.as_deref(), Some("5 minutes"));
                assert_eq!(c.deleted_retention.as_deref(), Some("7 days"));
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

    fn depth(sql: &str) -> usize {
        split_batch(sql).unwrap()[0].depth
    }

    fn joins(sql: &str) -> usize {
        split_batch(sql).unwrap()[0].joins
    }

    #[test]
    fn expression_depth_bounds_chains_and_nesting() {
        assert_eq!(depth("SELECT 1"), 0);
        let chain = |op: &str, n: usize| format!("SELECT 1{}", format!(" {op} 1").repeat(n));
        assert_eq!(depth(&chain("+", 500)), 500);
        assert_eq!(depth(&chain("OR", 500)), 500);
        assert_eq!(depth(&chain("||", 7)), 7);
        // Commas separate items: a long VALUES list or select list is flat.
        let values = format!("INSERT INTO t VALUES {}", vec!["(1, -2)"; 1000].join(", "));
        assert_eq!(depth(&values), 2);
        assert_eq!(depth("SELECT a, b, c FROM t WHERE x = 1 AND y = 2"), 3);
        assert_eq!(depth("SELECT ((((1))))"), 4);
        assert_eq!(depth("SELECT (1 + 1) + (1 + 1)"), 3);
        // Set operations and joins count whatever the commas.
        let union = format!("SELECT 1, 2{}", " UNION SELECT 1, 2".repeat(300));
        assert_eq!(depth(&union), 300);
        let tables = (0..50)
            .map(|i| format!("t{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        assert_eq!(depth(&format!("SELECT a, b FROM {tables} WHERE x = 1")), 50);
        let joined = "SELECT a FROM t JOIN u ON t.a = u.a JOIN v ON v.b = u.b";
        assert_eq!(depth(joined), 4);
        assert_eq!(joins(joined), 2);
        assert_eq!(joins(&format!("SELECT a, b FROM {tables} WHERE x = 1")), 49);
        assert_eq!(joins("SELECT a, b, c FROM t WHERE x IN (1, 2, 3)"), 0);
        assert_eq!(joins("SELECT extract(year FROM t), b FROM t"), 0);
        let over = &split_batch(&chain("+", 501)).unwrap()[0];
        assert!(over.check_depth(500, 64).is_err());
        let at = &split_batch(&chain("+", 500)).unwrap()[0];
        assert!(at.check_depth(500, 64).is_ok());
        assert!(at.check_depth(500, 64).is_ok());
        let many = &split_batch(&format!("SELECT a, b FROM {tables}")).unwrap()[0];
        assert!(many.check_depth(500, 48).is_err());
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
