//! Benchmark targets: the databases that workers put load on, and the named
//! connections (`connections.toml`) that describe how to reach them.
//!
//! A worker resolves its template's target into a [`TargetConfig`], opens
//! one [`TargetConnection`] per logical connection, prepares every
//! operation's SQL once per connection and then executes the prepared
//! statements with [`ParamValue`]s. Before preparing, callers replace
//! `{table}` in template SQL with [`expand_table`], given a name quoted by
//! [`quote_table`]. For SQLite, `prepare` rewrites the `$N` placeholders
//! (see [`sql`]). The controller and the orchestrator use
//! [`check_reachable`], [`table_exists`] and [`sample_keys`] before a run.

pub mod config;
pub mod connection;
pub mod connections;
pub mod error;
mod postgres;
mod postgres_params;
mod postgres_wire;
pub mod sample;
pub mod sql;
mod sqlite;

pub use config::TargetConfig;
pub use connection::{Outcome, TargetConnection};
pub use connections::{ConnectionError, ConnectionsFile, ResolvedConnection, Secret};
pub use error::{Backend, TargetError, TargetErrorKind};
pub use sample::{check_reachable, sample_keys, table_exists, KeySample, SampleMethod};
pub use sql::{expand_table, quote_identifier, quote_table, IdentifierError, QuotedTable};

/// A value bound to a placeholder of a workload query.
///
/// Each backend converts the value to the type the database expects for
/// that placeholder. `Text` converts to most types, because the database
/// parses it (PostgreSQL `numeric`, `uuid`, `date`, `jsonb`, enums, ...).
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
    Timestamp(chrono::DateTime<chrono::Utc>),
}

impl ParamValue {
    /// The name of the value's type, as error messages show it.
    pub fn type_name(&self) -> &'static str {
        match self {
            ParamValue::Null => "null",
            ParamValue::Int(_) => "integer",
            ParamValue::Float(_) => "float",
            ParamValue::Text(_) => "text",
            ParamValue::Bool(_) => "boolean",
            ParamValue::Timestamp(_) => "timestamp",
        }
    }

    /// Converts a JSON value, as value pools store them, to a parameter.
    /// Whole numbers that fit an `i64` become `Int` and other numbers
    /// `Float`. Arrays and objects become their JSON text.
    pub fn from_json(value: &serde_json::Value) -> ParamValue {
        match value {
            serde_json::Value::Null => ParamValue::Null,
            serde_json::Value::Bool(flag) => ParamValue::Bool(*flag),
            serde_json::Value::Number(number) => match number.as_i64() {
                Some(integer) => ParamValue::Int(integer),
                None => ParamValue::Float(number.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(text) => ParamValue::Text(text.clone()),
            other => ParamValue::Text(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_values_convert_to_params() {
        assert_eq!(ParamValue::from_json(&json!(42)), ParamValue::Int(42));
        assert_eq!(ParamValue::from_json(&json!(-7)), ParamValue::Int(-7));
        assert_eq!(ParamValue::from_json(&json!(2.5)), ParamValue::Float(2.5));
        assert_eq!(ParamValue::from_json(&json!(u64::MAX)), ParamValue::Float(u64::MAX as f64));
        assert_eq!(ParamValue::from_json(&json!("a")), ParamValue::Text("a".to_owned()));
        assert_eq!(ParamValue::from_json(&json!(true)), ParamValue::Bool(true));
        assert_eq!(ParamValue::from_json(&json!(null)), ParamValue::Null);
        assert_eq!(ParamValue::from_json(&json!([1, 2])), ParamValue::Text("[1,2]".to_owned()));
    }
}
