//! The SQLite target on a temporary database file: placeholder binding by
//! number, row counts, errors, concurrent connections, sampling and
//! catalog checks.

use std::path::Path;

use unibench_model::scenario::TargetKind;
use unibench_target::{
    check_reachable, expand_table, quote_table, sample_keys, table_exists, ParamValue, TargetConfig, TargetConnection,
    TargetError, TargetErrorKind,
};

/// Creates a database file with `orders(id, note)` containing ids 1 to
/// `rows`. The note of id 1 is the literal text `$1`.
fn create_orders(dir: &Path, rows: i64) -> TargetConfig {
    let path = dir.join("demo.db");
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT, placed_at TEXT, paid INTEGER)")
        .unwrap();
    for id in 1..=rows {
        let note = if id == 1 { "$1".to_owned() } else { format!("note {id}") };
        connection.execute("INSERT INTO orders (id, note) VALUES (?1, ?2)", rusqlite::params![id, note]).unwrap();
    }
    TargetConfig::sqlite(&path)
}

fn text(value: &str) -> ParamValue {
    ParamValue::Text(value.to_owned())
}

async fn open(config: &TargetConfig, statements: &[&str]) -> TargetConnection {
    let table = quote_table(TargetKind::Sqlite, "orders").unwrap();
    let statements: Vec<String> = statements.iter().map(|sql| expand_table(sql, &table)).collect();
    let mut connection = TargetConnection::open(config).await.expect("open the SQLite target");
    connection.prepare(&statements).await.expect("prepare the statements");
    connection
}

#[tokio::test]
async fn placeholders_bind_by_number() {
    let dir = tempfile::tempdir().unwrap();
    let config = create_orders(dir.path(), 5);
    let mut connection = open(
        &config,
        &[
            "UPDATE {table} SET note = $1 WHERE id = $2",
            "SELECT id FROM {table} WHERE note = $1",
            "SELECT id FROM {table} WHERE note = '$1' OR id = $1",
        ],
    )
    .await;

    // `$2` comes first in the text but binds the second value.
    let outcome = connection.execute(0, &[text("updated"), ParamValue::Int(3)]).await.unwrap();
    assert_eq!(outcome.rows_affected, 1);
    assert_eq!(connection.execute(1, &[text("updated")]).await.unwrap().rows_affected, 1);

    // The `'$1'` literal stays text: it matches id 1, and `$1` matches id 4.
    assert_eq!(connection.execute(2, &[ParamValue::Int(4)]).await.unwrap().rows_affected, 2);
    connection.close().await;
}

#[tokio::test]
async fn rows_are_counted_for_select_and_writes() {
    let dir = tempfile::tempdir().unwrap();
    let config = create_orders(dir.path(), 10);
    let mut connection = open(
        &config,
        &[
            "SELECT * FROM {table} WHERE id <= $1",
            "UPDATE {table} SET paid = $1 WHERE id > $2",
            "INSERT INTO {table} (id, note, placed_at) VALUES ($1, $2, $3) RETURNING id",
            "DELETE FROM {table} WHERE id = $1",
            "INSERT INTO {table} (id, note) VALUES ($1, $2)",
        ],
    )
    .await;

    assert_eq!(connection.execute(0, &[ParamValue::Int(4)]).await.unwrap().rows_affected, 4);
    assert_eq!(connection.execute(1, &[ParamValue::Bool(true), ParamValue::Int(7)]).await.unwrap().rows_affected, 3);
    let placed_at = ParamValue::Timestamp("2024-05-06T07:08:09.5Z".parse().unwrap());
    assert_eq!(connection.execute(2, &[ParamValue::Int(11), text("new"), placed_at]).await.unwrap().rows_affected, 1);
    assert_eq!(connection.execute(3, &[ParamValue::Int(11)]).await.unwrap().rows_affected, 1);
    assert_eq!(connection.execute(3, &[ParamValue::Int(99)]).await.unwrap().rows_affected, 0);
    assert_eq!(connection.execute(4, &[ParamValue::Int(12), ParamValue::Null]).await.unwrap().rows_affected, 1);

    let error = connection.execute(4, &[ParamValue::Int(1), text("duplicate")]).await.unwrap_err();
    assert_eq!(error.kind(), TargetErrorKind::Execute);
    assert_eq!(error.code(), Some("1555"), "SQLITE_CONSTRAINT_PRIMARYKEY: {error}");
    assert!(!error.is_connection_lost());

    let error = connection.execute(3, &[]).await.unwrap_err();
    assert!(matches!(error, TargetError::ParameterCount { expected: 1, given: 0, .. }), "{error:?}");
    connection.close().await;

    let file = rusqlite::Connection::open(dir.path().join("demo.db")).unwrap();
    let paid: i64 = file.query_row("SELECT count(*) FROM orders WHERE paid = 1", [], |row| row.get(0)).unwrap();
    assert_eq!(paid, 3);
}

#[tokio::test]
async fn timestamps_bind_as_sqlite_text() {
    let dir = tempfile::tempdir().unwrap();
    let config = create_orders(dir.path(), 1);
    let mut connection = open(&config, &["UPDATE {table} SET placed_at = $1 WHERE id = 1"]).await;
    let instant = ParamValue::Timestamp("2024-05-06T07:08:09.5Z".parse().unwrap());
    connection.execute(0, &[instant]).await.unwrap();
    connection.close().await;

    let file = rusqlite::Connection::open(dir.path().join("demo.db")).unwrap();
    let (stored, parsed): (String, String) = file
        .query_row("SELECT placed_at, datetime(placed_at) FROM orders WHERE id = 1", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .unwrap();
    assert_eq!(stored, "2024-05-06 07:08:09.500");
    assert_eq!(parsed, "2024-05-06 07:08:09");
}

#[tokio::test]
async fn prepare_error_names_statement() {
    let dir = tempfile::tempdir().unwrap();
    let config = create_orders(dir.path(), 1);
    let mut connection = TargetConnection::open(&config).await.unwrap();
    let error = connection.prepare(&["SELECT 1".to_owned(), "SELECT * FROM missing".to_owned()]).await.unwrap_err();
    assert!(matches!(error, TargetError::Prepare { statement: 1, .. }), "{error:?}");
    assert!(error.to_string().contains("no such table: missing"), "{error}");
    assert_eq!(error.kind(), TargetErrorKind::Prepare);
    connection.close().await;
}

#[tokio::test]
async fn missing_file_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.db");
    let error = TargetConnection::open(&TargetConfig::sqlite(&path)).await.unwrap_err();
    assert_eq!(error.kind(), TargetErrorKind::Connect);
    assert!(error.to_string().contains("absent.db"), "{error}");
    assert!(!path.exists());
    assert!(check_reachable(&TargetConfig::sqlite(&path)).await.is_err());
}

#[tokio::test]
async fn connections_run_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let config = create_orders(dir.path(), 100);
    let mut tasks = Vec::new();
    for worker in 0..4_i64 {
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            let mut connection = open(
                &config,
                &["SELECT note FROM {table} WHERE id = $1", "UPDATE {table} SET paid = $1 WHERE id = $2"],
            )
            .await;
            let session = connection.session_id();
            for round in 0..50_i64 {
                let id = worker * 25 + round % 25 + 1;
                assert_eq!(connection.execute(0, &[ParamValue::Int(id)]).await.unwrap().rows_affected, 1);
                assert_eq!(
                    connection.execute(1, &[ParamValue::Int(1), ParamValue::Int(id)]).await.unwrap().rows_affected,
                    1
                );
            }
            connection.close().await;
            session
        }));
    }
    let mut sessions = Vec::new();
    for task in tasks {
        sessions.push(task.await.unwrap());
    }
    sessions.sort_unstable();
    sessions.dedup();
    assert_eq!(sessions.len(), 4, "session ids repeat");

    let file = rusqlite::Connection::open(dir.path().join("demo.db")).unwrap();
    let mode: String = file.query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn table_exists_and_sampling() {
    let dir = tempfile::tempdir().unwrap();
    let config = create_orders(dir.path(), 200);
    check_reachable(&config).await.unwrap();
    assert!(table_exists(&config, "orders").await.unwrap());
    assert!(table_exists(&config, "main.ORDERS").await.unwrap());
    assert!(!table_exists(&config, "missing").await.unwrap());

    let sample = sample_keys(&config, "orders", "id", 20).await.unwrap();
    assert_eq!(sample.min, Some(serde_json::json!(1)));
    assert_eq!(sample.max, Some(serde_json::json!(200)));
    assert_eq!(sample.values.len(), 20);
    let mut keys: Vec<i64> = sample.values.iter().map(|value| value.as_i64().expect("integer key")).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 20);

    let notes = sample_keys(&config, "orders", "note", 500).await.unwrap();
    assert_eq!(notes.values.len(), 200);
    assert!(notes.values.contains(&serde_json::json!("$1")));

    // SQLite's fallback would read "idd" as the string 'idd'.
    let error = sample_keys(&config, "orders", "idd", 20).await.unwrap_err();
    assert!(error.to_string().contains("no such column: \"idd\""), "{error}");
    let mut connection = TargetConnection::open(&config).await.unwrap();
    let error = connection.prepare(&["SELECT * FROM orders WHERE \"idd\" = ?1".to_owned()]).await.unwrap_err();
    assert!(error.to_string().contains("no such column: \"idd\""), "{error}");
    connection.close().await;
}
