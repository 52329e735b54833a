//! `CREATE STORAGE`.

use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use super::ast::{CreateStorage, KalamStatement};
use super::{PResult, ParseFailure, eat_words, expected, parse_name, parse_options};
use crate::cold::location::parse_storage_kind;

/// The rest of `CREATE STORAGE`: clauses in any order after the name.
pub(super) fn parse_create_storage(parser: &mut Parser) -> PResult<KalamStatement> {
    let if_not_exists = eat_words(parser, &["IF", "NOT", "EXISTS"]);
    let name = parse_name(parser, "storage")?;
    let (mut kind, mut path, mut credentials, mut options) = (None, None, None, Vec::new());
    loop {
        if eat_words(parser, &["TYPE"]) {
            let token = parser.next_token();
            let text = match token.token {
                Token::Word(w) => w.value,
                Token::SingleQuotedString(s) => s,
                _ => return expected(parser, "filesystem or s3", token),
            };
            kind = Some(parse_storage_kind(&text).ok_or_else(|| {
                ParseFailure::Invalid(format!(
                    "unknown storage type {}; use filesystem or s3",
                    text.to_ascii_lowercase()
                ))
            })?);
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
