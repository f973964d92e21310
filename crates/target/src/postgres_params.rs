//! Binding [`ParamValue`]s to the parameter types of a PostgreSQL prepared
//! statement.
//!
//! The server decides each parameter's type when it prepares a statement
//! (`Statement::params`). This file converts each value to that type before
//! the statement runs, so a mismatch is reported with the parameter's
//! position instead of as a protocol error. Numbers, booleans, text and
//! timestamps are sent in binary form. Types with no binary encoder in
//! tokio-postgres's default features (`numeric`, `uuid`, and any type the
//! table of [`convert`] does not list, such as `date` from text, `jsonb`,
//! enums or `inet`) are sent as text, which the server parses with the
//! type's own input function.

use std::error::Error;

use bytes::BytesMut;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use tokio_postgres::types::{to_sql_checked, Format, IsNull, Kind, ToSql, Type};

use crate::ParamValue;

/// A value converted for one parameter type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PgValue {
    Null,
    Int2(i16),
    Int4(i32),
    Int8(i64),
    Float4(f32),
    Float8(f64),
    Bool(bool),
    /// A value of a text type (`text`, `varchar`, `bpchar`, `name`).
    Text(String),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
    Date(NaiveDate),
    /// Text that the server parses with the parameter type's input
    /// function.
    ServerParsed(String),
}

impl ToSql for PgValue {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            PgValue::Null => Ok(IsNull::Yes),
            PgValue::Int2(value) => value.to_sql(ty, out),
            PgValue::Int4(value) => value.to_sql(ty, out),
            PgValue::Int8(value) => value.to_sql(ty, out),
            PgValue::Float4(value) => value.to_sql(ty, out),
            PgValue::Float8(value) => value.to_sql(ty, out),
            PgValue::Bool(value) => value.to_sql(ty, out),
            PgValue::Timestamp(value) => value.to_sql(ty, out),
            PgValue::TimestampTz(value) => value.to_sql(ty, out),
            PgValue::Date(value) => value.to_sql(ty, out),
            PgValue::Text(text) | PgValue::ServerParsed(text) => {
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    /// Every type is accepted here because [`convert`] already chose the
    /// value's form from the parameter's type.
    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        match self {
            PgValue::ServerParsed(_) => Format::Text,
            _ => Format::Binary,
        }
    }

    to_sql_checked!();
}

/// Why a value does not convert to a parameter type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConversionFailure {
    /// The type's name, such as `int4` or `numeric`.
    pub column_type: String,
    pub reason: String,
}

/// Converts every value for its parameter type into `values`, which is
/// cleared first so that a session can reuse it for every query. On
/// failure, returns the 0-based index of the first value that does not
/// convert.
pub(crate) fn bind_all(
    types: &[Type],
    params: &[ParamValue],
    values: &mut Vec<PgValue>,
) -> Result<(), (usize, ConversionFailure)> {
    values.clear();
    for (index, (ty, value)) in types.iter().zip(params).enumerate() {
        values.push(convert(value, ty).map_err(|failure| (index, failure))?);
    }
    Ok(())
}

/// Converts one value for a parameter of type `ty`. A domain converts as
/// its base type.
pub(crate) fn convert(value: &ParamValue, ty: &Type) -> Result<PgValue, ConversionFailure> {
    let base = base_type(ty);
    let fail = |reason: &str| ConversionFailure { column_type: ty.name().to_owned(), reason: reason.to_owned() };
    match value {
        ParamValue::Null => Ok(PgValue::Null),
        ParamValue::Int(value) => convert_int(*value, base).map_err(|reason| fail(&reason)),
        ParamValue::Float(value) => convert_float(*value, base).map_err(|reason| fail(&reason)),
        ParamValue::Text(text) => convert_text(text, base).map_err(|reason| fail(&reason)),
        ParamValue::Bool(value) => convert_bool(*value, base).map_err(|reason| fail(&reason)),
        ParamValue::Timestamp(value) => convert_timestamp(*value, base).map_err(|reason| fail(&reason)),
    }
}

fn base_type(ty: &Type) -> &Type {
    match ty.kind() {
        Kind::Domain(inner) => base_type(inner),
        _ => ty,
    }
}

fn is_text_type(ty: &Type) -> bool {
    matches!(*ty, Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN) || ty.name() == "citext"
}

fn is_json_type(ty: &Type) -> bool {
    matches!(*ty, Type::JSON | Type::JSONB)
}

const NO_CONVERSION: &str = "no conversion between these types";

fn convert_int(value: i64, ty: &Type) -> Result<PgValue, String> {
    let out_of_range = || format!("{value} is out of range");
    match *ty {
        Type::INT2 => i16::try_from(value).map(PgValue::Int2).map_err(|_| out_of_range()),
        Type::INT4 => i32::try_from(value).map(PgValue::Int4).map_err(|_| out_of_range()),
        Type::INT8 => Ok(PgValue::Int8(value)),
        Type::FLOAT4 => Ok(PgValue::Float4(value as f32)),
        Type::FLOAT8 => Ok(PgValue::Float8(value as f64)),
        Type::NUMERIC => Ok(PgValue::ServerParsed(value.to_string())),
        _ if is_text_type(ty) => Ok(PgValue::Text(value.to_string())),
        _ if is_json_type(ty) => Ok(PgValue::ServerParsed(value.to_string())),
        _ => Err(NO_CONVERSION.to_owned()),
    }
}

fn convert_float(value: f64, ty: &Type) -> Result<PgValue, String> {
    match *ty {
        Type::FLOAT4 => {
            let narrowed = value as f32;
            if value.is_finite() && narrowed.is_infinite() {
                return Err(format!("{value} is out of range"));
            }
            Ok(PgValue::Float4(narrowed))
        }
        Type::FLOAT8 => Ok(PgValue::Float8(value)),
        Type::INT2 | Type::INT4 | Type::INT8 => convert_int(whole_number(value)?, ty),
        Type::NUMERIC => Ok(PgValue::ServerParsed(numeric_text(value))),
        _ if is_text_type(ty) => Ok(PgValue::Text(value.to_string())),
        _ if is_json_type(ty) && value.is_finite() => Ok(PgValue::ServerParsed(value.to_string())),
        _ => Err(NO_CONVERSION.to_owned()),
    }
}

/// The float as an `i64`, when it is a whole number in range.
fn whole_number(value: f64) -> Result<i64, String> {
    // 2^63 is exactly representable, so every float below it in magnitude
    // converts to i64 without overflow.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if value.fract() == 0.0 && (-LIMIT..LIMIT).contains(&value) {
        Ok(value as i64)
    } else {
        Err(format!("{value} is not a whole number in range"))
    }
}

/// The spelling of a float that `numeric`'s input function reads.
/// Infinities need PostgreSQL 14 or later.
fn numeric_text(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else {
        value.to_string()
    }
}

fn convert_text(text: &str, ty: &Type) -> Result<PgValue, String> {
    let invalid = |error: &dyn std::fmt::Display| format!("`{}` is invalid: {error}", shorten(text));
    match *ty {
        _ if is_text_type(ty) => Ok(PgValue::Text(text.to_owned())),
        Type::INT2 => text.trim().parse().map(PgValue::Int2).map_err(|e| invalid(&e)),
        Type::INT4 => text.trim().parse().map(PgValue::Int4).map_err(|e| invalid(&e)),
        Type::INT8 => text.trim().parse().map(PgValue::Int8).map_err(|e| invalid(&e)),
        Type::FLOAT4 => text.trim().parse().map(PgValue::Float4).map_err(|e| invalid(&e)),
        Type::FLOAT8 => text.trim().parse().map(PgValue::Float8).map_err(|e| invalid(&e)),
        Type::BOOL => parse_bool(text).map(PgValue::Bool).ok_or_else(|| invalid(&"expected true or false")),
        Type::NUMERIC => match text.trim().parse::<f64>() {
            Ok(_) => Ok(PgValue::ServerParsed(text.trim().to_owned())),
            Err(error) => Err(invalid(&error)),
        },
        Type::UUID => {
            if is_uuid(text) {
                Ok(PgValue::ServerParsed(text.trim().to_owned()))
            } else {
                Err(invalid(&"expected 32 hexadecimal digits"))
            }
        }
        _ => Ok(PgValue::ServerParsed(text.to_owned())),
    }
}

/// Reads the boolean spellings PostgreSQL's `bool` input accepts.
fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Whether the text is a UUID: 32 hexadecimal digits, optionally in braces
/// and with hyphens.
fn is_uuid(text: &str) -> bool {
    let trimmed = text.trim();
    let inner = trimmed.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')).unwrap_or(trimmed);
    let digits: Vec<char> = inner.chars().filter(|&c| c != '-').collect();
    digits.len() == 32 && digits.iter().all(char::is_ascii_hexdigit)
}

/// The text cut to 40 characters, for error messages.
fn shorten(text: &str) -> String {
    const MAX_CHARS: usize = 40;
    match text.char_indices().nth(MAX_CHARS) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

fn convert_bool(value: bool, ty: &Type) -> Result<PgValue, String> {
    match *ty {
        Type::BOOL => Ok(PgValue::Bool(value)),
        _ if is_text_type(ty) => Ok(PgValue::Text(value.to_string())),
        _ if is_json_type(ty) => Ok(PgValue::ServerParsed(value.to_string())),
        _ => Err(NO_CONVERSION.to_owned()),
    }
}

fn convert_timestamp(value: DateTime<Utc>, ty: &Type) -> Result<PgValue, String> {
    match *ty {
        Type::TIMESTAMPTZ => Ok(PgValue::TimestampTz(value)),
        // A `timestamp` without time zone receives the UTC wall-clock time.
        Type::TIMESTAMP => Ok(PgValue::Timestamp(value.naive_utc())),
        Type::DATE => Ok(PgValue::Date(value.date_naive())),
        _ if is_text_type(ty) => Ok(PgValue::Text(value.to_rfc3339())),
        _ => Err(NO_CONVERSION.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(value: ParamValue, ty: Type) -> PgValue {
        convert(&value, &ty).unwrap_or_else(|failure| panic!("{value:?} to {ty}: {failure:?}"))
    }

    fn reason(value: ParamValue, ty: Type) -> String {
        match convert(&value, &ty) {
            Ok(converted) => panic!("{value:?} to {ty} converted to {converted:?}"),
            Err(failure) => {
                assert_eq!(failure.column_type, ty.name());
                failure.reason
            }
        }
    }

    #[test]
    fn integers_convert_with_range_checks() {
        assert_eq!(ok(ParamValue::Int(7), Type::INT2), PgValue::Int2(7));
        assert_eq!(ok(ParamValue::Int(7), Type::INT4), PgValue::Int4(7));
        assert_eq!(ok(ParamValue::Int(i64::MAX), Type::INT8), PgValue::Int8(i64::MAX));
        assert_eq!(ok(ParamValue::Int(2), Type::FLOAT8), PgValue::Float8(2.0));
        assert_eq!(ok(ParamValue::Int(2), Type::NUMERIC), PgValue::ServerParsed("2".to_owned()));
        assert_eq!(ok(ParamValue::Int(2), Type::VARCHAR), PgValue::Text("2".to_owned()));
        assert!(reason(ParamValue::Int(40_000), Type::INT2).contains("40000 is out of range"));
        assert!(reason(ParamValue::Int(1 << 40), Type::INT4).contains("out of range"));
        assert_eq!(reason(ParamValue::Int(1), Type::BOOL), NO_CONVERSION);
        assert_eq!(reason(ParamValue::Int(1), Type::TIMESTAMPTZ), NO_CONVERSION);
    }

    #[test]
    fn floats_convert_when_exact() {
        assert_eq!(ok(ParamValue::Float(3.0), Type::INT4), PgValue::Int4(3));
        assert!(reason(ParamValue::Float(3.5), Type::INT8).contains("not a whole number"));
        assert!(reason(ParamValue::Float(1e300), Type::FLOAT4).contains("out of range"));
        assert_eq!(ok(ParamValue::Float(0.1), Type::NUMERIC), PgValue::ServerParsed("0.1".to_owned()));
        assert_eq!(ok(ParamValue::Float(f64::NAN), Type::NUMERIC), PgValue::ServerParsed("NaN".to_owned()));
        assert_eq!(
            ok(ParamValue::Float(f64::NAN), Type::FLOAT8).encode_format(&Type::FLOAT8) as i32,
            Format::Binary as i32
        );
    }

    #[test]
    fn text_is_parsed_for_typed_parameters() {
        assert_eq!(ok(ParamValue::Text(" 42 ".to_owned()), Type::INT4), PgValue::Int4(42));
        assert_eq!(ok(ParamValue::Text("yes".to_owned()), Type::BOOL), PgValue::Bool(true));
        assert_eq!(ok(ParamValue::Text("1.5e3".to_owned()), Type::NUMERIC), PgValue::ServerParsed("1.5e3".to_owned()));
        let uuid = "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}";
        assert_eq!(ok(ParamValue::Text(uuid.to_owned()), Type::UUID), PgValue::ServerParsed(uuid.to_owned()));
        assert_eq!(
            ok(ParamValue::Text("2024-01-02".to_owned()), Type::DATE),
            PgValue::ServerParsed("2024-01-02".to_owned())
        );
        assert!(reason(ParamValue::Text("abc".to_owned()), Type::INT4).contains("`abc` is invalid"));
        assert!(reason(ParamValue::Text("maybe".to_owned()), Type::BOOL).contains("expected true or false"));
        assert!(reason(ParamValue::Text("12".to_owned()), Type::UUID).contains("hexadecimal"));
        assert!(reason(ParamValue::Text("x".repeat(100)), Type::NUMERIC).contains("xxx..."));
    }

    #[test]
    fn server_parsed_values_use_text_format() {
        let value = ok(ParamValue::Text("00000000-0000-0000-0000-000000000000".to_owned()), Type::UUID);
        assert!(matches!(value.encode_format(&Type::UUID), Format::Text));
        assert!(matches!(PgValue::Int4(1).encode_format(&Type::INT4), Format::Binary));
    }

    #[test]
    fn timestamps_follow_column_type() {
        let instant = DateTime::parse_from_rfc3339("2024-05-06T07:08:09Z").unwrap().with_timezone(&Utc);
        assert_eq!(ok(ParamValue::Timestamp(instant), Type::TIMESTAMPTZ), PgValue::TimestampTz(instant));
        assert_eq!(ok(ParamValue::Timestamp(instant), Type::TIMESTAMP), PgValue::Timestamp(instant.naive_utc()));
        assert_eq!(
            ok(ParamValue::Timestamp(instant), Type::TEXT),
            PgValue::Text("2024-05-06T07:08:09+00:00".to_owned())
        );
        assert_eq!(reason(ParamValue::Timestamp(instant), Type::INT8), NO_CONVERSION);
    }

    #[test]
    fn null_binds_to_any_type() {
        assert_eq!(ok(ParamValue::Null, Type::UUID), PgValue::Null);
        assert_eq!(ok(ParamValue::Null, Type::INT4), PgValue::Null);
    }

    #[test]
    fn bind_all_reports_first_failure() {
        let types = [Type::INT4, Type::INT2, Type::TEXT];
        let params = [ParamValue::Int(1), ParamValue::Int(100_000), ParamValue::Int(2)];
        let (index, failure) = bind_all(&types, &params, &mut Vec::new()).unwrap_err();
        assert_eq!(index, 1);
        assert_eq!(failure.column_type, "int2");
    }
}
