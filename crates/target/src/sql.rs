//! The SQL text this crate builds or rewrites at run time, and nothing
//! else: quoting identifiers, expanding `{table}` in template SQL, and
//! rewriting `$N` placeholders for SQLite. Template SQL is user input, so
//! every change made to it before it reaches a database goes through the
//! functions of this file.

use unibench_model::scenario::TargetKind;

/// Error raised for a table or column name that cannot be quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{name}`: {reason}")]
pub struct IdentifierError {
    /// `table name` or `column name`.
    pub what: &'static str,
    pub name: String,
    pub reason: String,
}

/// A table name quoted for one database, ready for [`expand_table`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotedTable(String);

impl QuotedTable {
    /// The quoted name, such as `"public"."orders"`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for QuotedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Quotes a possibly qualified table name (`orders`, `public.orders`,
/// `db.public.orders`) for `kind`: `public.orders` becomes
/// `"public"."orders"`.
///
/// Each part is read as SQL reads an identifier. A part written in double
/// quotes keeps its exact spelling (`"Order Lines"`, with `""` for a quote
/// inside it). An unquoted part is folded the way the database folds
/// unquoted identifiers (lower case for PostgreSQL, upper case for
/// Snowflake, unchanged for SQLite, which compares names without regard to
/// case), so `public.Orders` names the same table that the SQL
/// `SELECT * FROM public.Orders` reads. Double quotes inside an unquoted
/// part are escaped. Empty parts, and more parts than the database allows
/// (three, or two for SQLite's `schema.table`), are rejected.
pub fn quote_table(kind: TargetKind, name: &str) -> Result<QuotedTable, IdentifierError> {
    let max_parts = match kind {
        TargetKind::Sqlite => 2,
        TargetKind::Postgres | TargetKind::Snowflake => 3,
    };
    let parts = split_name(kind, name, "table name")?;
    if parts.len() > max_parts {
        return Err(invalid(
            "table name",
            name,
            &format!("expected at most {max_parts} dot-separated parts for {kind}, found {}", parts.len()),
        ));
    }
    let quoted: Vec<String> = parts.iter().map(|part| quote_part(part)).collect();
    Ok(QuotedTable(quoted.join(".")))
}

/// Quotes a single, unqualified identifier such as a column name, with the
/// same reading rules as [`quote_table`].
pub fn quote_identifier(kind: TargetKind, name: &str) -> Result<String, IdentifierError> {
    let parts = split_name(kind, name, "column name")?;
    match parts.as_slice() {
        [part] => Ok(quote_part(part)),
        _ => Err(invalid("column name", name, "expected one identifier without dots")),
    }
}

/// Replaces every `{table}` in template SQL with the quoted table name.
/// The replacement is textual, so a `{table}` inside a string literal is
/// replaced too.
pub fn expand_table(sql: &str, table: &QuotedTable) -> String {
    sql.replace("{table}", table.as_str())
}

fn invalid(what: &'static str, name: &str, reason: &str) -> IdentifierError {
    IdentifierError { what, name: name.to_owned(), reason: reason.to_owned() }
}

fn quote_part(part: &str) -> String {
    format!("\"{}\"", part.replace('"', "\"\""))
}

/// Splits a dotted name into its parts, unquoting quoted parts and folding
/// unquoted ones. `what` names the kind of name in errors.
pub(crate) fn split_name(kind: TargetKind, name: &str, what: &'static str) -> Result<Vec<String>, IdentifierError> {
    let mut parts = Vec::new();
    let mut rest = name.trim();
    loop {
        let (part, after) = if rest.starts_with('"') {
            read_quoted_part(rest).ok_or_else(|| invalid(what, name, "a double-quoted part has no closing quote"))?
        } else {
            let end = rest.find('.').unwrap_or(rest.len());
            (fold_unquoted(kind, rest[..end].trim()), &rest[end..])
        };
        if part.is_empty() {
            return Err(invalid(what, name, "a part of the name is empty"));
        }
        if part.contains('\0') {
            return Err(invalid(what, name, "the name contains a NUL character"));
        }
        parts.push(part);

        let after = after.trim_start();
        if after.is_empty() {
            return Ok(parts);
        }
        match after.strip_prefix('.') {
            Some(next) => rest = next.trim_start(),
            None => return Err(invalid(what, name, "expected `.` after a double-quoted part")),
        }
    }
}

/// Reads `"..."` at the start of `text`, where `""` stands for one quote.
/// Returns the unquoted part and the text after the closing quote.
fn read_quoted_part(text: &str) -> Option<(String, &str)> {
    let mut part = String::new();
    let mut chars = text.char_indices().skip(1).peekable();
    while let Some((index, c)) = chars.next() {
        if c != '"' {
            part.push(c);
            continue;
        }
        if chars.peek().map(|&(_, next)| next) == Some('"') {
            part.push('"');
            chars.next();
            continue;
        }
        return Some((part, &text[index + 1..]));
    }
    None
}

fn fold_unquoted(kind: TargetKind, part: &str) -> String {
    match kind {
        TargetKind::Postgres => part.to_ascii_lowercase(),
        TargetKind::Snowflake => part.to_ascii_uppercase(),
        TargetKind::Sqlite => part.to_owned(),
    }
}

/// Rewrites PostgreSQL-style placeholders (`$1`, `$2`, ...) to SQLite's
/// numbered form (`?1`, `?2`, ...).
///
/// SQLite reads `$1` as a parameter *named* `$1` and numbers named
/// parameters in order of first appearance, so `... $2 ... $1` would bind
/// the values the wrong way round. `?N` binds by number. A `$N` is
/// rewritten only where SQLite would read it as a parameter: outside string
/// literals (`'...'`), quoted identifiers (`"..."`, `` `...` ``, `[...]`)
/// and comments, not inside an identifier such as `price$1`, and not when
/// more identifier characters follow the digits (`$1abc` stays a named
/// parameter).
pub fn sqlite_placeholders(sql: &str) -> String {
    let chars: Vec<char> = sql.chars().collect();
    let mut output = String::with_capacity(sql.len());
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        let skip_to = match c {
            '\'' | '"' | '`' => closing_quote(&chars, index, c),
            '[' => closing_bracket(&chars, index),
            '-' if chars.get(index + 1) == Some(&'-') => line_end(&chars, index),
            '/' if chars.get(index + 1) == Some(&'*') => comment_end(&chars, index),
            '$' => {
                if let Some(digits_end) = placeholder_end(&chars, index) {
                    output.push('?');
                    output.extend(&chars[index + 1..digits_end]);
                    index = digits_end;
                    continue;
                }
                index + 1
            }
            _ => index + 1,
        };
        output.extend(&chars[index..skip_to]);
        index = skip_to;
    }
    output
}

fn is_identifier_char(c: char) -> bool {
    // SQLite treats every non-ASCII character as an identifier character.
    c.is_ascii_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()
}

/// The end of the digits of a `$N` placeholder starting at `start`, or
/// `None` when the `$` does not start one.
fn placeholder_end(chars: &[char], start: usize) -> Option<usize> {
    if start > 0 && is_identifier_char(chars[start - 1]) {
        return None;
    }
    let mut end = start + 1;
    while end < chars.len() && chars[end].is_ascii_digit() {
        end += 1;
    }
    let has_digits = end > start + 1;
    let followed_by_identifier = chars.get(end).is_some_and(|&c| is_identifier_char(c));
    (has_digits && !followed_by_identifier).then_some(end)
}

/// The index after the quote that closes the one at `start`. A doubled
/// quote inside stands for one quote character. An unclosed quote runs to
/// the end of the text.
fn closing_quote(chars: &[char], start: usize, quote: char) -> usize {
    let mut index = start + 1;
    while index < chars.len() {
        if chars[index] == quote {
            if chars.get(index + 1) == Some(&quote) {
                index += 2;
                continue;
            }
            return index + 1;
        }
        index += 1;
    }
    chars.len()
}

fn closing_bracket(chars: &[char], start: usize) -> usize {
    chars[start..].iter().position(|&c| c == ']').map_or(chars.len(), |offset| start + offset + 1)
}

fn line_end(chars: &[char], start: usize) -> usize {
    chars[start..].iter().position(|&c| c == '\n').map_or(chars.len(), |offset| start + offset + 1)
}

fn comment_end(chars: &[char], start: usize) -> usize {
    let mut index = start + 2;
    while index + 1 < chars.len() {
        if chars[index] == '*' && chars[index + 1] == '/' {
            return index + 2;
        }
        index += 1;
    }
    chars.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(name: &str) -> String {
        quote_table(TargetKind::Postgres, name).map(|quoted| quoted.to_string()).unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn quote_table_quotes_each_part() {
        assert_eq!(pg("public.orders"), r#""public"."orders""#);
        assert_eq!(pg("orders"), r#""orders""#);
        assert_eq!(pg("bench.public.orders"), r#""bench"."public"."orders""#);
        assert_eq!(pg(" public . orders "), r#""public"."orders""#);
    }

    #[test]
    fn quote_table_folds_unquoted_parts() {
        assert_eq!(pg("Public.Orders"), r#""public"."orders""#);
        assert_eq!(
            quote_table(TargetKind::Snowflake, "bench.public.orders").unwrap().as_str(),
            r#""BENCH"."PUBLIC"."ORDERS""#
        );
        assert_eq!(quote_table(TargetKind::Sqlite, "Orders").unwrap().as_str(), r#""Orders""#);
    }

    #[test]
    fn quote_table_keeps_quoted_parts() {
        assert_eq!(pg(r#"public."Order Lines""#), r#""public"."Order Lines""#);
        assert_eq!(pg(r#""a.b"."c""d""#), r#""a.b"."c""d""#);
    }

    #[test]
    fn quote_table_escapes_embedded_quotes() {
        assert_eq!(pg(r#"we"ird"#), r#""we""ird""#);
        assert_eq!(pg(r#"x"; DROP TABLE y; --"#), r#""x""; drop table y; --""#);
    }

    #[test]
    fn quote_table_rejects_bad_names() {
        for (name, reason) in [
            ("", "empty"),
            ("public.", "empty"),
            (".orders", "empty"),
            ("a..b", "empty"),
            (r#""""#, "empty"),
            ("a.b.c.d", "at most 3"),
            (r#""open"#, "no closing quote"),
            (r#""a"b"#, "expected `.`"),
            ("a\0b", "NUL"),
        ] {
            let error = quote_table(TargetKind::Postgres, name).unwrap_err();
            assert!(error.to_string().contains(reason), "{name:?}: {error}");
            assert!(error.to_string().starts_with("invalid table name"), "{error}");
        }
        let error = quote_table(TargetKind::Sqlite, "main.public.orders").unwrap_err();
        assert!(error.to_string().contains("at most 2"), "{error}");
    }

    #[test]
    fn quote_identifier_takes_one_part() {
        assert_eq!(quote_identifier(TargetKind::Postgres, "Order_ID").unwrap(), r#""order_id""#);
        assert_eq!(quote_identifier(TargetKind::Sqlite, r#""my col""#).unwrap(), r#""my col""#);
        let error = quote_identifier(TargetKind::Postgres, "t.id").unwrap_err();
        assert!(error.to_string().contains("invalid column name `t.id`"), "{error}");
    }

    #[test]
    fn expand_table_replaces_every_occurrence() {
        let table = quote_table(TargetKind::Postgres, "public.orders").unwrap();
        assert_eq!(
            expand_table("INSERT INTO {table} SELECT * FROM {table} WHERE id = $1", &table),
            r#"INSERT INTO "public"."orders" SELECT * FROM "public"."orders" WHERE id = $1"#
        );
    }

    #[test]
    fn sqlite_placeholders_numbers_parameters() {
        assert_eq!(sqlite_placeholders("UPDATE t SET a = $2 WHERE id = $1"), "UPDATE t SET a = ?2 WHERE id = ?1");
        assert_eq!(sqlite_placeholders("SELECT $10,$11"), "SELECT ?10,?11");
        assert_eq!(sqlite_placeholders("SELECT ($1)"), "SELECT (?1)");
    }

    #[test]
    fn sqlite_placeholders_skip_literals_and_comments() {
        assert_eq!(sqlite_placeholders("SELECT '$1', $1"), "SELECT '$1', ?1");
        assert_eq!(sqlite_placeholders("SELECT 'it''s $1', $2"), "SELECT 'it''s $1', ?2");
        assert_eq!(sqlite_placeholders(r#"SELECT "$1" FROM t WHERE a = $1"#), r#"SELECT "$1" FROM t WHERE a = ?1"#);
        assert_eq!(sqlite_placeholders("SELECT [$1], `$2`, $3"), "SELECT [$1], `$2`, ?3");
        assert_eq!(sqlite_placeholders("SELECT $1 -- and $2\n, $3"), "SELECT ?1 -- and $2\n, ?3");
        assert_eq!(sqlite_placeholders("SELECT /* $1 */ $2"), "SELECT /* $1 */ ?2");
        assert_eq!(sqlite_placeholders("SELECT 'open $1"), "SELECT 'open $1");
    }

    #[test]
    fn sqlite_placeholders_leave_identifiers_alone() {
        assert_eq!(sqlite_placeholders("SELECT price$1 FROM t"), "SELECT price$1 FROM t");
        assert_eq!(sqlite_placeholders("SELECT $1abc, $name, $"), "SELECT $1abc, $name, $");
        assert_eq!(sqlite_placeholders("SELECT é$1, $1"), "SELECT é$1, ?1");
    }
}
