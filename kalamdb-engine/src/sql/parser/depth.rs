//! How deep a statement's syntax tree can be, from its tokens alone.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

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
pub(super) fn expression_depth(tokens: &[TokenWithSpan]) -> (usize, usize) {
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

#[cfg(test)]
mod tests {
    use super::super::split_batch;

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
        assert!(over.check_limits(500, 64).is_err());
        let at = &split_batch(&chain("+", 500)).unwrap()[0];
        assert!(at.check_limits(500, 64).is_ok());
        let many = &split_batch(&format!("SELECT a, b FROM {tables}")).unwrap()[0];
        assert!(many.check_limits(500, 48).is_err());
    }
}
