//! Benchmark targets: the databases that workers put load on, and the named
//! connections (`connections.toml`) that say how to reach them.

/// A value bound to a placeholder of a workload query.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
    Timestamp(chrono::DateTime<chrono::Utc>),
}
