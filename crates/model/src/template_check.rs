//! Validation of a template before any run starts, and the parameter specs
//! that operations bind to their placeholders.
//!
//! [`template_problems`] collects every problem of a template at once, so a
//! user can fix them all in one edit. Each problem names the template and
//! the field path (`workload.operations[1].sql`). The worker compiles its
//! generators from the same [`ParamSpec`] parser, so a template that passes
//! here compiles there, except for checks that need the value pools.

use std::fmt;
use std::str::FromStr;

use crate::scenario::{FindMaxSettings, LoadMode, Operation, QueryLogPolicy, Template, Workload};

/// Largest value of `random_int` without bounds: 2^31 - 1, so the values
/// fit a 32-bit integer column.
pub const RANDOM_INT_DEFAULT_MAX: i64 = i32::MAX as i64;

/// How far the operation weights may sum from 100 and still pass.
pub const WEIGHT_SUM_TOLERANCE: f64 = 0.001;

/// Maximum number of connections a run may hold, over all its workers.
pub const MAX_CONNECTIONS: u32 = 100_000;

/// Maximum number of worker processes a run may start. Every local worker is a process
/// on the orchestrator's host, so this also catches a typo such as 10000
/// for 100.
pub const MAX_WORKERS: u32 = 1_000;

/// Maximum length of a warmup, a measurement or a find-max step, in
/// seconds: 30 days.
pub const MAX_PHASE_SECONDS: f64 = 30.0 * 24.0 * 3600.0;

/// Minimum and maximum `target_qps`. At the minimum, one connection sends a
/// query every 1,000 s.
pub const MIN_TARGET_QPS: f64 = 0.001;
pub const MAX_TARGET_QPS: f64 = 100_000_000.0;

/// Maximum `random_string` length: 1 MiB.
pub const MAX_RANDOM_STRING_LEN: usize = 1 << 20;

/// Maximum nesting of YAML flow collections (`[...]`, `{...}`) that a
/// template text may have. The YAML parser takes time that grows with the
/// square of this depth, so a deeper text is rejected before parsing.
pub const MAX_YAML_FLOW_DEPTH: usize = 64;

/// The only brace token that template SQL may contain.
pub const TABLE_TOKEN: &str = "{table}";

/// Generator of the value bound to one placeholder, as written in an
/// operation's `params` list.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamSpec {
    /// `key`: an existing key drawn from the key pool by the workload's key
    /// distribution.
    Key,
    /// `new_key`: the next unused key of the worker's shard of the key space.
    NewKey,
    /// `random_int(min, max)`: a uniform integer in `min..=max`. Plain
    /// `random_int` is `random_int(0, 2147483647)`.
    RandomInt { min: i64, max: i64 },
    /// `random_float(min, max)`: a uniform float in `min..max`. Plain
    /// `random_float` is `random_float(0, 1)`.
    RandomFloat { min: f64, max: f64 },
    /// `random_string(len)`: `len` random ASCII letters and digits.
    RandomString { len: usize },
    /// `now`: the current UTC time when the query is built.
    Now,
    /// `uuid`: a random version 4 UUID, bound as text.
    Uuid,
    /// `const(VALUE)`: the same value for every query.
    Const(ConstValue),
}

/// Value of a `const(...)` parameter.
///
/// Written as `null`, `true`, `false`, an integer, a float, or text in
/// single quotes with `''` for a quote inside (`const('it''s')`).
#[derive(Debug, Clone, PartialEq)]
pub enum ConstValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

/// Error raised when a parameter spec does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid parameter spec `{spec}`: {reason}")]
pub struct ParamSpecError {
    pub spec: String,
    pub reason: String,
}

const SPEC_NAMES: &str =
    "key, new_key, random_int(min, max), random_float(min, max), random_string(len), now, uuid or const(value)";

impl FromStr for ParamSpec {
    type Err = ParamSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| ParamSpecError { spec: spec.to_owned(), reason };
        let (name, args) = split_call(spec.trim()).map_err(invalid)?;
        parse_call(name, args).map_err(invalid)
    }
}

/// Splits `name(args)` into the name and the text between the brackets,
/// or `name` into the name and `None`.
fn split_call(spec: &str) -> Result<(&str, Option<&str>), String> {
    let Some(open) = spec.find('(') else {
        return Ok((spec, None));
    };
    let Some(inner) = spec[open + 1..].strip_suffix(')') else {
        return Err("missing `)` at the end".to_owned());
    };
    Ok((spec[..open].trim_end(), Some(inner.trim())))
}

fn parse_call(name: &str, args: Option<&str>) -> Result<ParamSpec, String> {
    match name {
        "key" => no_arguments(name, args, ParamSpec::Key),
        "new_key" => no_arguments(name, args, ParamSpec::NewKey),
        "now" => no_arguments(name, args, ParamSpec::Now),
        "uuid" => no_arguments(name, args, ParamSpec::Uuid),
        "random_int" => parse_random_int(args),
        "random_float" => parse_random_float(args),
        "random_string" => parse_random_string(args),
        "const" => match args {
            Some(value) => parse_const(value).map(ParamSpec::Const),
            None => Err("const needs a value, for example const(42) or const('open')".to_owned()),
        },
        "" => Err(format!("empty spec: expected one of {SPEC_NAMES}")),
        _ => Err(format!("unknown generator `{name}`: expected one of {SPEC_NAMES}")),
    }
}

/// Accepts `name` and `name()` alike.
fn no_arguments(name: &str, args: Option<&str>, spec: ParamSpec) -> Result<ParamSpec, String> {
    match args {
        None | Some("") => Ok(spec),
        Some(_) => Err(format!("{name} takes no arguments")),
    }
}

fn parse_random_int(args: Option<&str>) -> Result<ParamSpec, String> {
    let Some(args) = args else {
        return Ok(ParamSpec::RandomInt { min: 0, max: RANDOM_INT_DEFAULT_MAX });
    };
    let [min, max] = two_arguments("random_int", args)?;
    let min: i64 = min.parse().map_err(|_| format!("min `{min}` is not an integer"))?;
    let max: i64 = max.parse().map_err(|_| format!("max `{max}` is not an integer"))?;
    if min > max {
        return Err(format!("min {min} is greater than max {max}"));
    }
    Ok(ParamSpec::RandomInt { min, max })
}

fn parse_random_float(args: Option<&str>) -> Result<ParamSpec, String> {
    let Some(args) = args else {
        return Ok(ParamSpec::RandomFloat { min: 0.0, max: 1.0 });
    };
    let [min, max] = two_arguments("random_float", args)?;
    let min = parse_finite(min).ok_or_else(|| format!("min `{min}` is not a finite number"))?;
    let max = parse_finite(max).ok_or_else(|| format!("max `{max}` is not a finite number"))?;
    if min >= max {
        return Err(format!("min {min} must be less than max {max}"));
    }
    if !(max - min).is_finite() {
        return Err(format!("the range from {min} to {max} is too wide: max - min must be a finite number"));
    }
    Ok(ParamSpec::RandomFloat { min, max })
}

fn parse_random_string(args: Option<&str>) -> Result<ParamSpec, String> {
    let Some(len) = args.filter(|args| !args.is_empty()) else {
        return Err("random_string needs a length, for example random_string(24)".to_owned());
    };
    match len.parse::<usize>() {
        Ok(0) => Err("length must be at least 1".to_owned()),
        Ok(len) if len > MAX_RANDOM_STRING_LEN => {
            Err(format!("length must be at most {MAX_RANDOM_STRING_LEN}, got {len}"))
        }
        Ok(len) => Ok(ParamSpec::RandomString { len }),
        Err(_) => Err(format!("length `{len}` is not a whole number")),
    }
}

fn two_arguments<'a>(name: &str, args: &'a str) -> Result<[&'a str; 2], String> {
    let parts: Vec<&str> = args.split(',').map(str::trim).collect();
    match parts[..] {
        [min, max] => Ok([min, max]),
        _ => Err(format!("{name} takes two arguments (min, max) or none, got {}", parts.len())),
    }
}

fn parse_finite(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|value| value.is_finite())
}

fn parse_const(value: &str) -> Result<ConstValue, String> {
    match value {
        "null" => return Ok(ConstValue::Null),
        "true" => return Ok(ConstValue::Bool(true)),
        "false" => return Ok(ConstValue::Bool(false)),
        _ => {}
    }
    if let Some(quoted) = value.strip_prefix('\'').and_then(|rest| rest.strip_suffix('\'')) {
        return unquote_text(quoted).map(ConstValue::Text);
    }
    if let Ok(number) = value.parse::<i64>() {
        return Ok(ConstValue::Int(number));
    }
    if let Some(number) = parse_finite(value) {
        return Ok(ConstValue::Float(number));
    }
    Err(format!("const value `{value}` is not null, true, false, a number or text in single quotes"))
}

/// Turns the inside of a single-quoted literal into its text, where `''`
/// stands for one quote and a lone quote is an error.
fn unquote_text(quoted: &str) -> Result<String, String> {
    let mut text = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        if c == '\'' && chars.next() != Some('\'') {
            return Err("a quote inside const text must be doubled ('')".to_owned());
        }
        text.push(c);
    }
    Ok(text)
}

impl fmt::Display for ParamSpec {
    /// Writes the spec in the form the parser reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamSpec::Key => f.write_str("key"),
            ParamSpec::NewKey => f.write_str("new_key"),
            ParamSpec::RandomInt { min, max } => write!(f, "random_int({min}, {max})"),
            ParamSpec::RandomFloat { min, max } => write!(f, "random_float({min:?}, {max:?})"),
            ParamSpec::RandomString { len } => write!(f, "random_string({len})"),
            ParamSpec::Now => f.write_str("now"),
            ParamSpec::Uuid => f.write_str("uuid"),
            ParamSpec::Const(value) => write!(f, "const({value})"),
        }
    }
}

impl fmt::Display for ConstValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConstValue::Null => f.write_str("null"),
            ConstValue::Bool(value) => write!(f, "{value}"),
            ConstValue::Int(value) => write!(f, "{value}"),
            ConstValue::Float(value) => write!(f, "{value:?}"),
            ConstValue::Text(text) => write!(f, "'{}'", text.replace('\'', "''")),
        }
    }
}

/// Placeholders and brace-token problems found in template SQL outside
/// comments, string literals and quoted identifiers.
#[derive(Debug, Default)]
struct SqlScan {
    /// Placeholder numbers in order of appearance, repeats included.
    placeholders: Vec<usize>,
    /// Problems with brace tokens, as messages.
    brace_problems: Vec<String>,
}

/// Checks that a YAML template text nests flow collections no deeper than
/// [`MAX_YAML_FLOW_DEPTH`], before it reaches the parser. Brackets inside
/// quoted scalars and comments are not counted. The error names the line
/// of the first bracket past the limit.
///
/// NOTE: brackets in block scalars (`sql: |`) are counted, so more than 64
/// unclosed `[` or `{` in the SQL of one file reject it.
pub fn check_yaml_nesting(text: &str) -> Result<(), String> {
    let mut depth = 0usize;
    let mut line = 1usize;
    // The character just before, and the last one that is not a space or
    // a tab (a line break counts).
    let mut previous = '\n';
    let mut significant = '\n';
    let mut characters = text.chars().peekable();
    while let Some(character) = characters.next() {
        match character {
            '\n' => line += 1,
            '#' if previous.is_whitespace() => while characters.next_if(|next| *next != '\n').is_some() {},
            '"' | '\'' if starts_scalar(significant) => {
                skip_quoted_scalar(character, &mut characters, &mut line);
                previous = character;
                significant = character;
                continue;
            }
            '[' | '{' => {
                depth += 1;
                if depth > MAX_YAML_FLOW_DEPTH {
                    return Err(format!("line {line}: brackets nest deeper than {MAX_YAML_FLOW_DEPTH} levels"));
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = character;
        if !matches!(character, ' ' | '\t') {
            significant = character;
        }
    }
    Ok(())
}

/// Returns whether a quote that follows `significant` (the last character
/// that is not a space) opens a quoted scalar rather than sitting inside a
/// plain one.
fn starts_scalar(significant: char) -> bool {
    matches!(significant, '\n' | '\r' | '[' | '{' | ',' | ':' | '-' | '?')
}

/// Skips a quoted scalar up to its closing quote: `\"` escapes in double
/// quotes, `''` in single quotes.
fn skip_quoted_scalar(quote: char, characters: &mut std::iter::Peekable<std::str::Chars<'_>>, line: &mut usize) {
    while let Some(character) = characters.next() {
        match character {
            '\n' => *line += 1,
            // The escaped character is skipped; an escaped line break still counts.
            '\\' if quote == '"' => *line += usize::from(characters.next() == Some('\n')),
            '\'' if quote == '\'' && characters.peek() == Some(&'\'') => {
                characters.next();
            }
            _ if character == quote => return,
            _ => {}
        }
    }
}

/// Returns the distinct placeholder numbers (`$1` is 1) in `sql`, in
/// ascending order.
///
/// The scan follows PostgreSQL's lexer closely enough for template SQL:
/// it skips string literals (`'...'`, with `''` and, in `E'...'`,
/// backslash escapes), quoted identifiers (`"..."`), dollar-quoted strings
/// (`$tag$...$tag$`), `--` line comments and nested `/* */` comments. A `$`
/// inside an identifier (`price$1`) does not start a placeholder.
pub fn placeholders(sql: &str) -> Vec<usize> {
    let mut numbers = scan_sql(sql).placeholders;
    numbers.sort_unstable();
    numbers.dedup();
    numbers
}

fn scan_sql(sql: &str) -> SqlScan {
    let bytes = sql.as_bytes();
    let mut scan = SqlScan::default();
    let mut i = 0;
    while i < bytes.len() {
        let after_identifier = i > 0 && is_identifier_byte(bytes[i - 1]);
        let next = bytes.get(i + 1).copied();
        i = match (bytes[i], next) {
            (b'\'', _) => skip_quoted(sql, i, &mut scan),
            (b'"', _) => skip_quoted(sql, i, &mut scan),
            (b'-', Some(b'-')) => sql[i..].find('\n').map_or(bytes.len(), |end| i + end + 1),
            (b'/', Some(b'*')) => skip_block_comment(bytes, i),
            (b'$', Some(b'0'..=b'9')) if !after_identifier => read_placeholder(bytes, i, &mut scan),
            (b'$', _) if !after_identifier => skip_dollar_quoted(sql, i, &mut scan),
            (b'{', _) => check_brace(sql, i, &mut scan),
            _ => i + 1,
        };
    }
    scan
}

/// Identifier characters, counting every non-ASCII byte as a letter the
/// way PostgreSQL does.
fn is_identifier_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$' || byte >= 0x80
}

/// Skips a string literal or quoted identifier that opens at `start` and
/// returns the index after it. A doubled quote inside reads as a closing
/// quote followed by a new opening one, which ends at the same place.
fn skip_quoted(sql: &str, start: usize, scan: &mut SqlScan) -> usize {
    let bytes = sql.as_bytes();
    let quote = bytes[start];
    let backslash_escapes = quote == b'\''
        && start > 0
        && matches!(bytes[start - 1], b'E' | b'e')
        && (start < 2 || !is_identifier_byte(bytes[start - 2]));

    let mut i = start + 1;
    while i < bytes.len() && bytes[i] != quote {
        i += if backslash_escapes && bytes[i] == b'\\' { 2 } else { 1 };
    }
    let end = (i + 1).min(bytes.len());
    note_quoted_table_token(&sql[start..end], scan);
    end
}

fn skip_block_comment(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

fn read_placeholder(bytes: &[u8], start: usize, scan: &mut SqlScan) -> usize {
    let digits_end = bytes[start + 1..]
        .iter()
        .position(|byte| !byte.is_ascii_digit())
        .map_or(bytes.len(), |offset| start + 1 + offset);
    let number = bytes[start + 1..digits_end]
        .iter()
        .fold(0usize, |number, digit| number.saturating_mul(10).saturating_add(usize::from(digit - b'0')));
    scan.placeholders.push(number);
    digits_end
}

/// Skips a dollar-quoted string (`$$...$$` or `$tag$...$tag$`) that opens
/// at `start`, or only the `$` when none opens there.
fn skip_dollar_quoted(sql: &str, start: usize, scan: &mut SqlScan) -> usize {
    let bytes = sql.as_bytes();
    let tag_len = bytes[start + 1..]
        .iter()
        .position(|&byte| !(byte.is_ascii_alphanumeric() || byte == b'_' || byte >= 0x80))
        .unwrap_or(bytes.len() - start - 1);
    let tag_end = start + 1 + tag_len;
    if bytes.get(tag_end) != Some(&b'$') {
        return start + 1;
    }

    let delimiter = &sql[start..=tag_end];
    let body_start = tag_end + 1;
    let end = sql[body_start..].find(delimiter).map_or(sql.len(), |offset| body_start + offset + delimiter.len());
    note_quoted_table_token(&sql[start..end], scan);
    end
}

fn note_quoted_table_token(quoted: &str, scan: &mut SqlScan) {
    if quoted.contains(TABLE_TOKEN) {
        scan.brace_problems.push(format!(
            "`{TABLE_TOKEN}` inside the quoted text {quoted}: use it only as the table name, outside quotes"
        ));
    }
}

/// Checks a `{name}` token that opens at `start`. Braces around anything
/// other than a plain identifier (a Snowflake object constant such as
/// `{'a': 1}`) are SQL and pass unchanged.
fn check_brace(sql: &str, start: usize, scan: &mut SqlScan) -> usize {
    let bytes = sql.as_bytes();
    let name_len = bytes[start + 1..]
        .iter()
        .position(|&byte| !(byte.is_ascii_alphanumeric() || byte == b'_'))
        .unwrap_or(bytes.len() - start - 1);
    let close = start + 1 + name_len;
    if name_len == 0 || bytes.get(close) != Some(&b'}') || bytes[start + 1].is_ascii_digit() {
        return start + 1;
    }

    let token = &sql[start..=close];
    if token != TABLE_TOKEN {
        scan.brace_problems.push(format!("unknown token `{token}`: the only token expanded is `{TABLE_TOKEN}`"));
        return close + 1;
    }
    let glued = |byte: Option<&u8>| byte.is_some_and(|&byte| is_identifier_byte(byte) || byte == b'.' || byte == b'"');
    if glued(start.checked_sub(1).and_then(|before| bytes.get(before))) || glued(bytes.get(close + 1)) {
        scan.brace_problems.push(format!(
            "`{TABLE_TOKEN}` is joined to other name parts: it expands to the complete quoted table name, so write it alone"
        ));
    }
    close + 1
}

/// One problem found in a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateProblem {
    /// Name of the template.
    pub template: String,
    /// Path of the field, such as `workload.operations[1].sql`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for TemplateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "template \"{}\": {}: {}", self.template, self.path, self.message)
    }
}

/// Error raised when a template has at least one problem. Its message
/// lists every problem, one per line, and it dereferences to the list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidTemplate {
    pub problems: Vec<TemplateProblem>,
}

impl std::ops::Deref for InvalidTemplate {
    type Target = [TemplateProblem];

    fn deref(&self) -> &[TemplateProblem] {
        &self.problems
    }
}

impl fmt::Display for InvalidTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines = self.problems.iter();
        if let Some(first) = lines.next() {
            write!(f, "{first}")?;
        }
        for problem in lines {
            write!(f, "\n{problem}")?;
        }
        Ok(())
    }
}

/// Checks a template and returns an error listing every problem found.
pub fn check_template(template: &Template) -> Result<(), InvalidTemplate> {
    let problems = template_problems(template);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(InvalidTemplate { problems })
    }
}

/// Returns every problem of a template, in field order. An empty list
/// means the template may run, provided the value pools hold the keys that
/// its `key` parameters draw.
pub fn template_problems(template: &Template) -> Vec<TemplateProblem> {
    let mut problems = Problems { template: &template.name, found: Vec::new() };

    if template.name.trim().is_empty() {
        problems.push("name", "must not be empty");
    }
    if template.target.table.trim().is_empty() {
        problems.push("target.table", "must not be empty");
    }
    check_workload(&template.workload, &mut problems);
    if template.workload.load_mode == LoadMode::FindMaxConcurrency {
        check_find_max(&template.find_max.unwrap_or_default(), &mut problems);
    }
    check_scaling_and_guardrails(template, &mut problems);
    problems.found
}

/// Collects problems for one template.
struct Problems<'a> {
    template: &'a str,
    found: Vec<TemplateProblem>,
}

impl Problems<'_> {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.found.push(TemplateProblem {
            template: self.template.to_owned(),
            path: path.into(),
            message: message.into(),
        });
    }

    fn require_positive(&mut self, path: &str, value: f64) {
        if !(value.is_finite() && value > 0.0) {
            self.push(path, format!("must be a finite number greater than 0, got {value}"));
        }
    }

    fn require_seconds(&mut self, path: &str, value: f64, zero_allowed: bool) {
        let low_ok = if zero_allowed { value >= 0.0 } else { value > 0.0 };
        if !(low_ok && value <= MAX_PHASE_SECONDS) {
            let low = if zero_allowed { "at least 0" } else { "greater than 0" };
            self.push(path, format!("must be {low} and at most {MAX_PHASE_SECONDS} (30 days), got {value}"));
        }
    }

    fn require_connections(&mut self, path: &str, value: u32) {
        if !(1..=MAX_CONNECTIONS).contains(&value) {
            self.push(path, format!("must be from 1 to {MAX_CONNECTIONS}, got {value}"));
        }
    }

    fn require_percent(&mut self, path: &str, value: f64, zero_allowed: bool) {
        let low_ok = if zero_allowed { value >= 0.0 } else { value > 0.0 };
        if !(low_ok && value <= 100.0) {
            let range = if zero_allowed { "from 0 to 100" } else { "greater than 0 and at most 100" };
            self.push(path, format!("must be {range}, got {value}"));
        }
    }
}

fn check_workload(workload: &Workload, problems: &mut Problems<'_>) {
    problems.require_connections("workload.concurrent_connections", workload.concurrent_connections);
    problems.require_seconds("workload.duration_seconds", workload.duration_seconds, false);
    problems.require_seconds("workload.warmup_seconds", workload.warmup_seconds, true);
    if let QueryLogPolicy::Sample(fraction) = workload.query_log {
        if !(0.0..=1.0).contains(&fraction) {
            problems.push("workload.query_log", format!("sample fraction must be from 0 to 1, got {fraction}"));
        }
    }
    check_pacing(workload, problems);
    check_operations(&workload.operations, problems);
}

fn check_pacing(workload: &Workload, problems: &mut Problems<'_>) {
    match workload.target_qps {
        Some(qps) if !(MIN_TARGET_QPS..=MAX_TARGET_QPS).contains(&qps) => problems
            .push("workload.target_qps", format!("must be from {MIN_TARGET_QPS} to {MAX_TARGET_QPS}, got {qps}")),
        Some(_) => {}
        None if workload.load_mode == LoadMode::Qps => {
            problems.push("workload.target_qps", "is required when load_mode is QPS");
        }
        None => {}
    }
    if let Some(min_connections) = workload.min_connections {
        problems.require_connections("workload.min_connections", min_connections);
    }
}

fn check_operations(operations: &[Operation], problems: &mut Problems<'_>) {
    if operations.is_empty() {
        problems.push("workload.operations", "must contain at least one operation");
        return;
    }

    let mut weights_valid = true;
    for (index, operation) in operations.iter().enumerate() {
        let path = format!("workload.operations[{index}]");
        if !(operation.weight_pct.is_finite() && operation.weight_pct > 0.0) {
            problems
                .push(format!("{path}.weight_pct"), format!("must be greater than 0, got {}", operation.weight_pct));
            weights_valid = false;
        }
        check_operation_sql(&path, operation, problems);
    }

    let sum: f64 = operations.iter().map(|operation| operation.weight_pct).sum();
    if weights_valid && (sum - 100.0).abs() > WEIGHT_SUM_TOLERANCE {
        problems
            .push("workload.operations[*].weight_pct", format!("weights sum to {}, expected 100", format_rounded(sum)));
    }
}

/// Formats a number with at most three decimals, so that float sums such
/// as 99.89999999999999 print as 99.9.
fn format_rounded(value: f64) -> String {
    let rounded = (value * 1000.0).round() / 1000.0;
    format!("{rounded}")
}

fn check_operation_sql(path: &str, operation: &Operation, problems: &mut Problems<'_>) {
    if operation.sql.trim().is_empty() {
        problems.push(format!("{path}.sql"), "must not be empty");
        return;
    }

    let scan = scan_sql(&operation.sql);
    for message in scan.brace_problems {
        problems.push(format!("{path}.sql"), message);
    }

    let count = operation.params.len();
    let mut used = placeholders(&operation.sql);
    for &number in used.iter().filter(|&&number| number == 0 || number > count) {
        let message = match count {
            0 => format!("placeholder `${number}` has no parameter: params is empty"),
            _ if number == 0 => "placeholder `$0` is invalid: placeholders start at `$1`".to_owned(),
            1 => format!("placeholder `${number}` has no parameter: params has 1 entry"),
            _ => format!("placeholder `${number}` has no parameter: params has {count} entries"),
        };
        problems.push(format!("{path}.sql"), message);
    }

    used.retain(|&number| number >= 1 && number <= count);
    for (index, spec) in operation.params.iter().enumerate() {
        let number = index + 1;
        if used.binary_search(&number).is_err() {
            problems.push(
                format!("{path}.params[{index}]"),
                format!("parameter `{spec}` is unused: the SQL has no placeholder `${number}`"),
            );
        }
        if let Err(error) = spec.parse::<ParamSpec>() {
            problems.push(format!("{path}.params[{index}]"), error.to_string());
        }
    }
}

fn check_find_max(settings: &FindMaxSettings, problems: &mut Problems<'_>) {
    problems.require_connections("find_max.start_connections", settings.start_connections);
    problems.require_connections("find_max.connections_increment", settings.connections_increment);
    problems.require_seconds("find_max.step_duration_seconds", settings.step_duration_seconds, false);
    problems.require_percent("find_max.qps_stability_pct", settings.qps_stability_pct, false);
    problems.require_positive("find_max.latency_stability_pct", settings.latency_stability_pct);
    problems.require_percent("find_max.max_error_rate_pct", settings.max_error_rate_pct, true);
}

fn check_scaling_and_guardrails(template: &Template, problems: &mut Problems<'_>) {
    use crate::scenario::AutoOr;

    if let AutoOr::Fixed(capacity) = template.scaling.per_worker_connections {
        if !(1..=MAX_CONNECTIONS).contains(&capacity) {
            problems.push("scaling.per_worker_connections", format!("must be from 1 to {MAX_CONNECTIONS} or auto"));
        }
    }
    if let AutoOr::Fixed(count) = template.scaling.worker_count {
        let connections = template.workload.concurrent_connections;
        if !(1..=MAX_WORKERS).contains(&count) {
            problems.push("scaling.worker_count", format!("must be from 1 to {MAX_WORKERS} or auto, got {count}"));
        } else if (1..count).contains(&connections) {
            // A worker without a connection would run nothing.
            problems.push(
                "scaling.worker_count",
                format!(
                    "{count} workers need at least {count} connections, but workload.concurrent_connections \
                     is {connections}. Use fewer workers or more connections"
                ),
            );
        }
    }
    problems.require_percent("guardrails.max_cpu_percent", template.guardrails.max_cpu_percent, false);
    problems.require_percent("guardrails.max_memory_percent", template.guardrails.max_memory_percent, false);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Template {
        serde_json::from_value(serde_json::json!({
            "name": "orders",
            "target": {"kind": "postgres", "table": "public.orders", "key_column": "order_id"},
            "workload": {
                "operations": [
                    {"kind": "POINT_LOOKUP", "weight_pct": 80,
                     "sql": "SELECT * FROM {table} WHERE order_id = $1", "params": ["key"]},
                    {"kind": "UPDATE", "weight_pct": 20,
                     "sql": "UPDATE {table} SET note = $1 WHERE order_id = $2",
                     "params": ["random_string(24)", "key"]}
                ]
            }
        }))
        .unwrap()
    }

    fn messages(template: &Template) -> Vec<String> {
        template_problems(template).iter().map(ToString::to_string).collect()
    }

    fn spec(text: &str) -> ParamSpec {
        text.parse().unwrap()
    }

    fn spec_error(text: &str) -> String {
        text.parse::<ParamSpec>().unwrap_err().to_string()
    }

    #[test]
    fn valid_template_passes() {
        assert_eq!(messages(&template()), Vec::<String>::new());
        assert!(check_template(&template()).is_ok());
    }

    #[test]
    fn weights_not_summing_to_100() {
        let mut template = template();
        template.workload.operations[1].weight_pct = 10.0;
        assert_eq!(
            messages(&template),
            [r#"template "orders": workload.operations[*].weight_pct: weights sum to 90, expected 100"#]
        );
    }

    #[test]
    fn weight_sum_tolerates_rounding() {
        let mut template = template();
        template.workload.operations[0].weight_pct = 33.3333;
        template.workload.operations[1].weight_pct = 66.6667;
        assert_eq!(messages(&template), Vec::<String>::new());
    }

    #[test]
    fn zero_weight_is_rejected() {
        let mut template = template();
        template.workload.operations[0].weight_pct = 0.0;
        template.workload.operations[1].weight_pct = 100.0;
        assert_eq!(
            messages(&template),
            [r#"template "orders": workload.operations[0].weight_pct: must be greater than 0, got 0"#]
        );
    }

    #[test]
    fn no_operations_is_rejected() {
        let mut template = template();
        template.workload.operations.clear();
        assert_eq!(
            messages(&template),
            [r#"template "orders": workload.operations: must contain at least one operation"#]
        );
    }

    #[test]
    fn placeholder_without_parameter() {
        let mut template = template();
        template.workload.operations[1].params.pop();
        assert_eq!(
            messages(&template),
            [r#"template "orders": workload.operations[1].sql: placeholder `$2` has no parameter: params has 1 entry"#]
        );
    }

    #[test]
    fn placeholder_with_empty_params() {
        let mut template = template();
        template.workload.operations[0].params.clear();
        assert_eq!(
            messages(&template),
            [r#"template "orders": workload.operations[0].sql: placeholder `$1` has no parameter: params is empty"#]
        );
    }

    #[test]
    fn extra_parameter_is_rejected() {
        let mut template = template();
        template.workload.operations[0].params.push("now".to_owned());
        assert_eq!(
            messages(&template),
            [
                r#"template "orders": workload.operations[0].params[1]: parameter `now` is unused: the SQL has no placeholder `$2`"#
            ]
        );
    }

    #[test]
    fn bad_spec_names_the_spec() {
        let mut template = template();
        template.workload.operations[1].params[0] = "random_strin(24)".to_owned();
        let found = messages(&template);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(
                r#"template "orders": workload.operations[1].params[0]: invalid parameter spec `random_strin(24)`: unknown generator `random_strin`"#
            ),
            "{}",
            found[0]
        );
    }

    #[test]
    fn placeholder_in_string_literal_is_ignored() {
        let mut template = template();
        template.workload.operations[0].sql =
            "SELECT * FROM {table} WHERE order_id = $1 AND note <> 'costs $2' AND tag <> 'it''s $3'".to_owned();
        assert_eq!(messages(&template), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_reported() {
        let mut template = template();
        template.target.table = " ".to_owned();
        template.workload.duration_seconds = 0.0;
        template.workload.warmup_seconds = -1.0;
        template.workload.concurrent_connections = 0;
        template.workload.operations[0].params[0] = "random_int(9, 1)".to_owned();
        let paths: Vec<String> = template_problems(&template).into_iter().map(|problem| problem.path).collect();
        assert_eq!(
            paths,
            [
                "target.table",
                "workload.concurrent_connections",
                "workload.duration_seconds",
                "workload.warmup_seconds",
                "workload.operations[0].params[0]",
            ]
        );
    }

    #[test]
    fn qps_mode_needs_target_qps() {
        let mut template = template();
        template.workload.load_mode = LoadMode::Qps;
        assert_eq!(
            messages(&template),
            [r#"template "orders": workload.target_qps: is required when load_mode is QPS"#]
        );
        template.workload.target_qps = Some(0.0);
        assert_eq!(
            messages(&template),
            [r#"template "orders": workload.target_qps: must be from 0.001 to 100000000, got 0"#]
        );
        template.workload.target_qps = Some(1e-300);
        assert_eq!(messages(&template).len(), 1, "a rate too low to pace is rejected");
        template.workload.target_qps = Some(500.0);
        assert_eq!(messages(&template), Vec::<String>::new());
    }

    #[test]
    fn find_max_settings_are_checked() {
        let mut template = template();
        template.workload.load_mode = LoadMode::FindMaxConcurrency;
        assert_eq!(messages(&template), Vec::<String>::new(), "the defaults are valid");

        template.find_max =
            Some(FindMaxSettings { connections_increment: 0, max_error_rate_pct: 120.0, ..FindMaxSettings::default() });
        assert_eq!(
            messages(&template),
            [
                r#"template "orders": find_max.connections_increment: must be from 1 to 100000, got 0"#,
                r#"template "orders": find_max.max_error_rate_pct: must be from 0 to 100, got 120"#,
            ]
        );
    }

    #[test]
    fn find_max_ignored_in_other_modes() {
        let mut template = template();
        template.find_max = Some(FindMaxSettings { start_connections: 0, ..FindMaxSettings::default() });
        assert_eq!(messages(&template), Vec::<String>::new());
    }

    #[test]
    fn sample_fraction_out_of_range() {
        let mut template = template();
        template.workload.query_log = QueryLogPolicy::Sample(1.5);
        assert_eq!(
            messages(&template),
            [r#"template "orders": workload.query_log: sample fraction must be from 0 to 1, got 1.5"#]
        );
    }

    #[test]
    fn table_token_rules() {
        let cases = [
            ("SELECT * FROM {table} WHERE id = $1", None),
            ("SELECT * FROM {table}_archive WHERE id = $1", Some("is joined to other name parts")),
            ("SELECT * FROM public.{table} WHERE id = $1", Some("is joined to other name parts")),
            ("SELECT * FROM {tabel} WHERE id = $1", Some("unknown token `{tabel}`")),
            ("SELECT '{table}', id FROM t WHERE id = $1", Some("inside the quoted text '{table}'")),
            ("SELECT {'a': 1} FROM {table} WHERE id = $1", None),
            ("SELECT * FROM {table} WHERE id = $1 -- {tabel}", None),
        ];
        for (sql, expected) in cases {
            let mut template = template();
            template.workload.operations[0].sql = sql.to_owned();
            let found = messages(&template);
            match expected {
                None => assert_eq!(found, Vec::<String>::new(), "{sql}"),
                Some(part) => {
                    assert_eq!(found.len(), 1, "{sql}: {found:?}");
                    assert!(found[0].contains("workload.operations[0].sql: "), "{}", found[0]);
                    assert!(found[0].contains(part), "{sql}: {}", found[0]);
                }
            }
        }
    }

    #[test]
    fn placeholders_skip_quotes_and_comments() {
        let cases: [(&str, &[usize]); 10] = [
            ("SELECT $2, $1, $2", &[1, 2]),
            ("SELECT 'a $1 b', $2", &[2]),
            ("SELECT 'it''s $1', $2", &[2]),
            (r"SELECT E'\' $1', $2", &[2]),
            (r#"SELECT "col$1", $2"#, &[2]),
            ("SELECT price$1 FROM t WHERE a = $2", &[2]),
            ("SELECT $$ $1 $$, $tag$ $1 $tag$, $3", &[3]),
            ("SELECT 1 -- $1\n, $2", &[2]),
            ("SELECT /* $1 /* $2 */ $3 */ $4", &[4]),
            ("SELECT $10, $0", &[0, 10]),
        ];
        for (sql, expected) in cases {
            assert_eq!(placeholders(sql), expected, "{sql}");
        }
    }

    #[test]
    fn specs_parse() {
        assert_eq!(spec("key"), ParamSpec::Key);
        assert_eq!(spec(" new_key() "), ParamSpec::NewKey);
        assert_eq!(spec("random_int"), ParamSpec::RandomInt { min: 0, max: RANDOM_INT_DEFAULT_MAX });
        assert_eq!(spec("random_int(-5, 5)"), ParamSpec::RandomInt { min: -5, max: 5 });
        assert_eq!(spec("random_int(3,3)"), ParamSpec::RandomInt { min: 3, max: 3 });
        assert_eq!(spec("random_float"), ParamSpec::RandomFloat { min: 0.0, max: 1.0 });
        assert_eq!(spec("random_float(0.5, 2)"), ParamSpec::RandomFloat { min: 0.5, max: 2.0 });
        assert_eq!(spec("random_string(24)"), ParamSpec::RandomString { len: 24 });
        assert_eq!(spec("now"), ParamSpec::Now);
        assert_eq!(spec("uuid"), ParamSpec::Uuid);
        assert_eq!(spec("const(null)"), ParamSpec::Const(ConstValue::Null));
        assert_eq!(spec("const(true)"), ParamSpec::Const(ConstValue::Bool(true)));
        assert_eq!(spec("const(-7)"), ParamSpec::Const(ConstValue::Int(-7)));
        assert_eq!(spec("const(2.5)"), ParamSpec::Const(ConstValue::Float(2.5)));
        assert_eq!(spec("const('it''s, (ok)')"), ParamSpec::Const(ConstValue::Text("it's, (ok)".to_owned())));
    }

    #[test]
    fn specs_display_round_trip() {
        let texts = [
            "key",
            "new_key",
            "random_int(-5, 5)",
            "random_float(0.5, 2.0)",
            "random_string(8)",
            "now",
            "uuid",
            "const(null)",
            "const(1.0)",
            "const('a''b')",
        ];
        for text in texts {
            assert_eq!(spec(text).to_string(), text);
            assert_eq!(spec(&spec(text).to_string()), spec(text), "{text}");
        }
    }

    #[test]
    fn spec_errors_name_the_spec() {
        let cases = [
            ("", "invalid parameter spec ``: empty spec"),
            ("keys", "invalid parameter spec `keys`: unknown generator `keys`"),
            ("key(1)", "invalid parameter spec `key(1)`: key takes no arguments"),
            ("random_int(1", "invalid parameter spec `random_int(1`: missing `)`"),
            ("random_int(1)", "random_int takes two arguments (min, max) or none, got 1"),
            ("random_int(a, 2)", "min `a` is not an integer"),
            ("random_int(9, 1)", "min 9 is greater than max 1"),
            ("random_float(1, 1)", "min 1 must be less than max 1"),
            ("random_float(0, inf)", "max `inf` is not a finite number"),
            ("random_float(-1e308, 1e308)", "max - min must be a finite number"),
            ("random_string", "random_string needs a length"),
            ("random_string(0)", "length must be at least 1"),
            ("random_string(-3)", "length `-3` is not a whole number"),
            ("const()", "const value `` is not null"),
            ("const(open)", "const value `open` is not null, true, false, a number or text in single quotes"),
            ("const('it's')", "a quote inside const text must be doubled"),
        ];
        for (text, expected) in cases {
            let message = spec_error(text);
            assert!(message.contains(expected), "{text}: {message}");
            assert!(message.starts_with(&format!("invalid parameter spec `{text}`")), "{message}");
        }
    }

    #[test]
    fn more_workers_than_connections_is_rejected() {
        let mut template = template();
        template.workload.concurrent_connections = 1;
        template.scaling.worker_count = crate::scenario::AutoOr::Fixed(2);
        let problems = template_problems(&template);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].path, "scaling.worker_count");
        assert!(problems[0].message.contains("2 workers need at least 2 connections"), "{problems:?}");
        template.workload.concurrent_connections = 2;
        assert!(template_problems(&template).is_empty());
    }

    #[test]
    fn oversized_templates_are_rejected() {
        let mut template = template();
        template.workload.concurrent_connections = u32::MAX;
        template.workload.duration_seconds = 1e300;
        template.workload.warmup_seconds = f64::INFINITY;
        template.scaling.worker_count = crate::scenario::AutoOr::Fixed(MAX_WORKERS + 1);
        let paths: Vec<String> = template_problems(&template).into_iter().map(|problem| problem.path).collect();
        assert_eq!(
            paths,
            [
                "workload.concurrent_connections",
                "workload.duration_seconds",
                "workload.warmup_seconds",
                "scaling.worker_count"
            ]
        );
        let too_long = format!("random_string({})", MAX_RANDOM_STRING_LEN + 1);
        assert!(spec_error(&too_long).contains("at most 1048576"), "{}", spec_error(&too_long));
        assert_eq!(
            spec(&format!("random_string({MAX_RANDOM_STRING_LEN})")),
            ParamSpec::RandomString { len: MAX_RANDOM_STRING_LEN }
        );
    }

    #[test]
    fn yaml_nesting_is_limited() {
        let deep = format!("name: {}{}", "[".repeat(MAX_YAML_FLOW_DEPTH + 1), "]".repeat(MAX_YAML_FLOW_DEPTH + 1));
        assert_eq!(check_yaml_nesting(&deep), Err("line 1: brackets nest deeper than 64 levels".to_owned()));
        let shallow = format!("name: {}{}", "{a: ".repeat(MAX_YAML_FLOW_DEPTH), "}".repeat(MAX_YAML_FLOW_DEPTH));
        assert_eq!(check_yaml_nesting(&shallow), Ok(()));

        // Closing brackets hidden in strings or comments do not lower the count.
        let hidden = "[ \"]]\", 'x]''', # ]]\n".repeat(100);
        assert!(check_yaml_nesting(&hidden).is_err(), "{hidden}");
        // Brackets in quoted scalars, plain scalars and block scalars do not raise it.
        let text = format!("sql: \"{}\"\nname: it's a 'b' [c]\n", "[".repeat(100));
        assert_eq!(check_yaml_nesting(&text), Ok(()));
        // A quote inside a plain scalar hides nothing.
        let plain = format!("name: [x 'y, {}{}]\n", "[".repeat(100), "]".repeat(100));
        assert!(check_yaml_nesting(&plain).is_err(), "{plain}");
        assert_eq!(check_yaml_nesting(&text), Ok(()));
        let block =
            "operations:\n  - sql: |\n      SELECT ARRAY[1], 'it''s [x]' FROM t\n    params: [key]\n".repeat(100);
        assert_eq!(check_yaml_nesting(&block), Ok(()));
    }

    #[test]
    fn invalid_template_lists_all_lines() {
        let mut template = template();
        template.target.table.clear();
        template.workload.duration_seconds = -1.0;
        let error = check_template(&template).unwrap_err();
        assert_eq!(error.len(), 2);
        assert_eq!(error[0].path, "target.table");
        assert_eq!(
            error.to_string(),
            "template \"orders\": target.table: must not be empty\n\
             template \"orders\": workload.duration_seconds: must be greater than 0 and at most 2592000 (30 days), got -1"
        );
    }
}
