//! The PostgreSQL target against a real server: parameter conversion,
//! prepared statement reuse, row counts, timeouts, lost sessions, named
//! connections, sampling and catalog checks, over TCP and the Unix socket,
//! and the same results from unibench's own wire and from tokio-postgres.
//! Each test uses a database of its own.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::TestDatabase;
use unibench_model::scenario::{TargetKind, TargetSpec};
use unibench_target::{
    check_reachable, expand_table, quote_table, sample_keys, table_exists, ParamValue, SampleMethod, TargetConfig,
    TargetConnection, TargetError, TargetErrorKind,
};

async fn open(database: &TestDatabase, statements: &[&str]) -> TargetConnection {
    let mut connection = TargetConnection::open(&database.target()).await.expect("open a target connection");
    let statements: Vec<String> = statements.iter().map(|sql| sql.to_string()).collect();
    connection.prepare(&statements).await.expect("prepare the statements");
    connection
}

fn text(value: &str) -> ParamValue {
    ParamValue::Text(value.to_owned())
}

#[tokio::test]
async fn params_convert_to_column_types() {
    let database = TestDatabase::create().await;
    let client = database.client().await;
    client
        .batch_execute(
            "CREATE TABLE typed (i2 int2, i4 int4, i8 int8, f8 float8, n numeric(12, 3), n2 numeric, \
             t text, vc varchar(20), ts timestamptz, tsn timestamp, b bool, u uuid, d date)",
        )
        .await
        .unwrap();
    let mut connection =
        open(&database, &["INSERT INTO typed VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"]).await;

    let instant: DateTime<Utc> = "2024-05-06T07:08:09.123456Z".parse().unwrap();
    let params = [
        ParamValue::Int(12),
        ParamValue::Int(2_000_000),
        ParamValue::Int(9_000_000_000),
        ParamValue::Float(2.5),
        text("12.345"),
        ParamValue::Float(0.1),
        text("it's text"),
        ParamValue::Int(77),
        ParamValue::Timestamp(instant),
        ParamValue::Timestamp(instant),
        ParamValue::Bool(true),
        text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        text("2024-02-29"),
    ];
    let outcome = connection.execute(0, &params).await.expect("insert typed values");
    assert_eq!(outcome.rows_affected, 1);

    let row = client
        .query_one(
            "SELECT i2, i4, i8, f8, n::text, n2::text, t, vc, ts, tsn::text, b, u::text, d::text FROM typed",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i16>(0), 12);
    assert_eq!(row.get::<_, i32>(1), 2_000_000);
    assert_eq!(row.get::<_, i64>(2), 9_000_000_000);
    assert_eq!(row.get::<_, f64>(3), 2.5);
    assert_eq!(row.get::<_, String>(4), "12.345");
    assert_eq!(row.get::<_, String>(5), "0.1");
    assert_eq!(row.get::<_, String>(6), "it's text");
    assert_eq!(row.get::<_, String>(7), "77");
    assert_eq!(row.get::<_, DateTime<Utc>>(8), instant);
    assert_eq!(row.get::<_, String>(9), "2024-05-06 07:08:09.123456");
    assert!(row.get::<_, bool>(10));
    assert_eq!(row.get::<_, String>(11), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert_eq!(row.get::<_, String>(12), "2024-02-29");
    connection.close().await;
}

#[tokio::test]
async fn text_params_parse_for_numbers_and_booleans() {
    let database = TestDatabase::create().await;
    let mut connection =
        open(&database, &["SELECT $1::int4 + 1, $2::float8, $3::bool, $4::int8 WHERE $5::numeric > 0"]).await;
    let params = [text("41"), text("1e3"), text("yes"), ParamValue::Float(8.0), ParamValue::Int(1)];
    let outcome = connection.execute(0, &params).await.expect("text converts to typed parameters");
    assert_eq!(outcome.rows_affected, 1);
    let nulls = [ParamValue::Null, ParamValue::Null, ParamValue::Null, ParamValue::Null, ParamValue::Null];
    let outcome = connection.execute(0, &nulls).await.expect("NULL binds to every type");
    assert_eq!(outcome.rows_affected, 0);
    connection.close().await;
}

#[tokio::test]
async fn bad_conversion_names_position_and_types() {
    let database = TestDatabase::create().await;
    let mut connection = open(&database, &["SELECT $1::int4, $2::int2", "SELECT $1::int4"]).await;

    let error = connection.execute(0, &[ParamValue::Int(1), ParamValue::Int(100_000)]).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, TargetError::Bind { position: 2, .. }), "{error:?}");
    assert!(message.contains("parameter $2"), "{message}");
    assert!(message.contains("integer value does not convert to int2"), "{message}");
    assert!(message.contains("100000 is out of range"), "{message}");
    assert_eq!(error.kind(), TargetErrorKind::Execute);
    assert!(!error.is_connection_lost());

    let error = connection.execute(1, &[ParamValue::Bool(true)]).await.unwrap_err();
    assert!(error.to_string().contains("parameter $1: a boolean value does not convert to int4"), "{error}");
    let error = connection.execute(1, &[text("twelve")]).await.unwrap_err();
    assert!(error.to_string().contains("`twelve` is invalid"), "{error}");

    let error = connection.execute(1, &[]).await.unwrap_err();
    assert!(error.to_string().contains("expects 1 parameters but 0 were given"), "{error}");
    let error = connection.execute(5, &[]).await.unwrap_err();
    assert!(matches!(error, TargetError::UnknownStatement { statement: 5, prepared: 2, .. }), "{error:?}");

    // The session is still usable after binding errors.
    let outcome = connection.execute(1, &[ParamValue::Int(3)]).await.expect("execute after a binding error");
    assert_eq!(outcome.rows_affected, 1);
    connection.close().await;
}

#[tokio::test]
async fn prepared_statements_are_reused() {
    let database = TestDatabase::create().await;
    database
        .client()
        .await
        .batch_execute("CREATE TABLE counter (id int PRIMARY KEY, hits int8 NOT NULL)")
        .await
        .unwrap();
    database.client().await.batch_execute("INSERT INTO counter VALUES (1, 0)").await.unwrap();
    let mut connection = open(
        &database,
        &["UPDATE counter SET hits = hits + $1 WHERE id = 1", "SELECT name FROM pg_prepared_statements"],
    )
    .await;

    for _ in 0..300 {
        let outcome = connection.execute(0, &[ParamValue::Int(1)]).await.expect("update the counter");
        assert_eq!(outcome.rows_affected, 1);
    }
    // Two statements prepared once: executing never prepares again.
    let outcome = connection.execute(1, &[]).await.expect("list prepared statements");
    assert_eq!(outcome.rows_affected, 2);

    let hits: i64 = database.client().await.query_one("SELECT hits FROM counter", &[]).await.unwrap().get(0);
    assert_eq!(hits, 300);
    connection.close().await;
}

#[tokio::test]
async fn rows_are_counted_for_select_and_writes() {
    let database = TestDatabase::create().await;
    database
        .client()
        .await
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY, note text); INSERT INTO orders SELECT g, 'n' FROM generate_series(1, 10) g")
        .await
        .unwrap();
    let table = quote_table(TargetKind::Postgres, "public.orders").unwrap();
    let statements: Vec<String> = [
        "SELECT * FROM {table} WHERE id <= $1",
        "UPDATE {table} SET note = $1 WHERE id > $2",
        "INSERT INTO {table} VALUES ($1, $2) RETURNING id",
        "DELETE FROM {table} WHERE id = $1",
        "SELECT * FROM {table} WHERE id = $1",
    ]
    .iter()
    .map(|sql| expand_table(sql, &table))
    .collect();
    let mut connection = TargetConnection::open(&database.target()).await.unwrap();
    connection.prepare(&statements).await.unwrap();

    assert_eq!(connection.execute(0, &[ParamValue::Int(4)]).await.unwrap().rows_affected, 4);
    assert_eq!(connection.execute(1, &[text("changed"), ParamValue::Int(7)]).await.unwrap().rows_affected, 3);
    assert_eq!(connection.execute(2, &[ParamValue::Int(11), text("new")]).await.unwrap().rows_affected, 1);
    assert_eq!(connection.execute(3, &[ParamValue::Int(11)]).await.unwrap().rows_affected, 1);
    assert_eq!(connection.execute(4, &[ParamValue::Int(99)]).await.unwrap().rows_affected, 0);

    let error = connection.execute(2, &[ParamValue::Int(1), text("dup")]).await.unwrap_err();
    assert_eq!(error.code(), Some("23505"), "{error}");
    assert_eq!(error.kind(), TargetErrorKind::Execute);
    assert!(!error.is_connection_lost());
    connection.close().await;
}

#[tokio::test]
async fn prepare_error_names_statement_and_code() {
    let database = TestDatabase::create().await;
    let mut connection = TargetConnection::open(&database.target()).await.unwrap();
    let statements = vec!["SELECT 1".to_owned(), "SELECT * FROM missing_table".to_owned()];
    let error = connection.prepare(&statements).await.unwrap_err();
    assert!(matches!(error, TargetError::Prepare { statement: 1, .. }), "{error:?}");
    assert_eq!(error.code(), Some("42P01"));
    assert_eq!(error.kind(), TargetErrorKind::Prepare);
    assert!(error.to_string().contains("relation \"missing_table\" does not exist"), "{error}");
    connection.close().await;
}

#[tokio::test]
async fn statement_timeout_is_a_timeout() {
    let database = TestDatabase::create().await;
    let config = database.target().with_statement_timeout(Some(Duration::from_millis(50)));
    let mut connection = TargetConnection::open(&config).await.unwrap();
    connection.prepare(&["SELECT pg_sleep($1)".to_owned()]).await.unwrap();

    let error = connection.execute(0, &[ParamValue::Float(5.0)]).await.unwrap_err();
    assert_eq!(error.kind(), TargetErrorKind::Timeout, "{error}");
    assert_eq!(error.code(), Some("57014"));
    assert!(!error.is_connection_lost());

    let outcome = connection.execute(0, &[ParamValue::Float(0.0)]).await.expect("the session survives a timeout");
    assert_eq!(outcome.rows_affected, 1);
    connection.close().await;
}

#[tokio::test]
async fn terminated_session_is_reported_lost() {
    let database = TestDatabase::create().await;
    let mut connection = open(&database, &["SELECT 1"]).await;
    let pid = connection.session_id();
    let terminated: bool = database
        .client()
        .await
        .query_one("SELECT pg_terminate_backend($1)", &[&i32::try_from(pid).unwrap()])
        .await
        .unwrap()
        .get(0);
    assert!(terminated);

    // The server ends the session; the next statement finds it gone.
    let error = connection.execute(0, &[]).await.unwrap_err();
    assert!(error.is_connection_lost(), "{error:?}");
    assert!(connection.is_closed());

    let mut again = open(&database, &["SELECT 1"]).await;
    assert_ne!(again.session_id(), pid);
    assert_eq!(again.execute(0, &[]).await.unwrap().rows_affected, 1);
    again.close().await;
}

#[tokio::test]
async fn session_has_application_name_and_closes() {
    let database = TestDatabase::create().await;
    let connection = open(&database, &[]).await;
    let pid = i32::try_from(connection.session_id()).unwrap();
    let admin = database.client().await;
    let name: String =
        admin.query_one("SELECT application_name FROM pg_stat_activity WHERE pid = $1", &[&pid]).await.unwrap().get(0);
    assert_eq!(name, "unibench-worker");

    connection.close().await;
    let mut remaining = 1;
    for _ in 0..50 {
        remaining = admin
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .await
            .unwrap()
            .get::<_, i64>(0);
        if remaining == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(remaining, 0, "the server session outlived close()");
}

#[tokio::test]
async fn connect_errors_name_location_and_hide_password() {
    let password_url = std::env::var("UNIBENCH_TEST_PG_PASSWORD_URL").expect(
        "UNIBENCH_TEST_PG_PASSWORD_URL is not set: run the tests through scripts/test.sh, which creates the password role",
    );
    let mut config: tokio_postgres::Config = password_url.parse().unwrap();
    let wrong = "not-the-password-4f1c";
    config.password(wrong);
    let error = TargetConnection::open(&TargetConfig::postgres(config)).await.unwrap_err();
    let text = format!("{error} {error:?}");
    assert_eq!(error.kind(), TargetErrorKind::Connect);
    assert_eq!(error.code(), Some("28P01"), "{text}");
    assert!(text.contains("127.0.0.1:"), "{text}");
    assert!(!text.contains(wrong), "{text}");

    let database = TestDatabase::create().await;
    let missing = database.url.replace(&database.name, "unibench_target_missing_db");
    let config = TargetConfig::postgres(missing.parse().unwrap());
    let error = check_reachable(&config).await.unwrap_err();
    assert_eq!(error.code(), Some("3D000"), "{error}");
    assert!(error.to_string().contains("unibench_target_missing_db"), "{error}");
}

#[tokio::test]
async fn named_connection_reaches_server() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("connections.toml");
    std::fs::write(&file, format!("[connections.bench]\nkind = \"postgres\"\nurl = \"{}\"\n", database.url)).unwrap();
    let spec = TargetSpec {
        kind: TargetKind::Postgres,
        connection: Some("bench".to_owned()),
        table: "public.orders".to_owned(),
        table_type: None,
        warehouse: None,
        key_column: None,
    };
    let config = TargetConfig::resolve(&spec, Some(&file)).expect("resolve the named connection");
    check_reachable(&config).await.expect("the named connection reaches the server");
    assert!(config.location().ends_with(&format!("/{}", database.name)), "{}", config.location());

    let unknown = TargetSpec { connection: Some("other".to_owned()), ..spec };
    let error = TargetConfig::resolve(&unknown, Some(&file)).unwrap_err();
    assert!(error.to_string().contains("available connections: bench"), "{error}");
}

#[tokio::test]
async fn table_exists_reads_catalog() {
    let database = TestDatabase::create().await;
    database
        .client()
        .await
        .batch_execute("CREATE TABLE orders (id int); CREATE TABLE \"Mixed Case\" (id int)")
        .await
        .unwrap();
    let config = database.target();
    assert!(table_exists(&config, "orders").await.unwrap());
    assert!(table_exists(&config, "public.ORDERS").await.unwrap());
    assert!(table_exists(&config, "\"Mixed Case\"").await.unwrap());
    assert!(!table_exists(&config, "public.missing").await.unwrap());
    assert!(!table_exists(&config, "nosuchschema.orders").await.unwrap());
    assert!(table_exists(&config, "a.b.c.d").await.is_err());
}

#[tokio::test]
async fn sample_small_table_reads_bounds_and_values() {
    let database = TestDatabase::create().await;
    database
        .client()
        .await
        .batch_execute(
            "CREATE TABLE orders (order_id int8 PRIMARY KEY); INSERT INTO orders SELECT generate_series(1, 1000)",
        )
        .await
        .unwrap();
    let sample = sample_keys(&database.target(), "public.orders", "order_id", 50).await.unwrap();
    assert_eq!(sample.min, Some(serde_json::json!(1)));
    assert_eq!(sample.max, Some(serde_json::json!(1000)));
    assert_eq!(sample.values.len(), 50);
    assert_eq!(sample.method, SampleMethod::Shuffle);
    let mut keys: Vec<i64> = sample.values.iter().map(|value| value.as_i64().expect("integer key")).collect();
    assert!(keys.iter().all(|key| (1..=1000).contains(key)), "{keys:?}");
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 50, "sampled keys repeat");
}

#[tokio::test]
async fn sample_large_table_uses_tablesample() {
    let database = TestDatabase::create().await;
    // About 12 MiB each: over the 8 MiB limit for a full shuffle.
    database
        .client()
        .await
        .batch_execute(
            "CREATE TABLE events (id int8 PRIMARY KEY, payload text); \
             INSERT INTO events SELECT g, repeat('x', 200) FROM generate_series(1, 50000) g; ANALYZE events; \
             CREATE TABLE split (id int8, payload text) PARTITION BY RANGE (id); \
             CREATE TABLE split_low PARTITION OF split FOR VALUES FROM (1) TO (25001); \
             CREATE TABLE split_high PARTITION OF split FOR VALUES FROM (25001) TO (50001); \
             INSERT INTO split SELECT * FROM events; ANALYZE split",
        )
        .await
        .unwrap();
    let sample = sample_keys(&database.target(), "events", "id", 100).await.unwrap();
    assert_eq!(sample.min, Some(serde_json::json!(1)));
    assert_eq!(sample.max, Some(serde_json::json!(50000)));
    assert_eq!(sample.values.len(), 100);
    assert!(
        matches!(sample.method, SampleMethod::System { percent } if percent > 0.0 && percent < 10.0),
        "{:?}",
        sample.method
    );
    let spread = sample.values.iter().filter(|value| value.as_i64().is_some_and(|key| key > 25_000)).count();
    assert!(spread > 0 && spread < 100, "the sample is not spread over the table: {spread} of 100 above the middle");

    // A partitioned table is sized by its partitions.
    let split = sample_keys(&database.target(), "split", "id", 100).await.unwrap();
    assert_eq!(split.values.len(), 100);
    assert!(matches!(split.method, SampleMethod::System { .. }), "{:?}", split.method);
    assert_eq!(split.max, Some(serde_json::json!(50000)));
}

#[tokio::test]
async fn sample_casts_views_partitions_empty() {
    let database = TestDatabase::create().await;
    database
        .client()
        .await
        .batch_execute(
            "CREATE TABLE docs (id uuid PRIMARY KEY, amount numeric); \
             INSERT INTO docs VALUES ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 1.50), ('b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', 2); \
             CREATE TABLE empty (id int); \
             CREATE VIEW docs_view AS SELECT * FROM docs; \
             CREATE TABLE parts (id int) PARTITION BY RANGE (id); \
             CREATE TABLE parts_low PARTITION OF parts FOR VALUES FROM (0) TO (100); \
             CREATE TABLE parts_high PARTITION OF parts FOR VALUES FROM (100) TO (200); \
             INSERT INTO parts SELECT generate_series(0, 199)",
        )
        .await
        .unwrap();
    let config = database.target();

    let uuids = sample_keys(&config, "docs", "id", 10).await.unwrap();
    assert_eq!(uuids.values.len(), 2);
    assert!(uuids.values.contains(&serde_json::json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")), "{uuids:?}");

    let amounts = sample_keys(&config, "docs", "amount", 10).await.unwrap();
    assert_eq!(amounts.min, Some(serde_json::json!("1.50")));
    assert_eq!(amounts.max, Some(serde_json::json!("2")));

    let empty = sample_keys(&config, "empty", "id", 10).await.unwrap();
    assert_eq!(empty.min, None);
    assert_eq!(empty.max, None);
    assert!(empty.values.is_empty());

    let view = sample_keys(&config, "docs_view", "id", 10).await.unwrap();
    assert_eq!(view.method, SampleMethod::First);
    assert_eq!(view.values.len(), 2);

    let parts = sample_keys(&config, "parts", "id", 300).await.unwrap();
    assert_eq!(parts.method, SampleMethod::Shuffle);
    assert_eq!(parts.values.len(), 200);
    assert_eq!(parts.max, Some(serde_json::json!(199)));

    let error = sample_keys(&config, "docs", "no_such_column", 10).await.unwrap_err();
    assert_eq!(error.code(), Some("42703"), "{error}");
}

/// The server's Unix socket directory, set by `scripts/test.sh`.
fn socket_dir() -> String {
    std::env::var("UNIBENCH_TEST_PG_SOCKET_DIR").expect(
        "UNIBENCH_TEST_PG_SOCKET_DIR is not set: run the tests through scripts/test.sh, which starts PostgreSQL",
    )
}

/// The test database's settings with its host listed twice, which makes
/// tokio-postgres run every statement instead of unibench's own wire.
fn two_host_target(database: &TestDatabase) -> TargetConfig {
    let url: tokio_postgres::Config = database.url.parse().expect("parse the test database URL");
    let host = match url.get_hosts() {
        [tokio_postgres::config::Host::Tcp(host)] => host.clone(),
        hosts => panic!("the test URL should name one TCP host: {hosts:?}"),
    };
    let port = url.get_ports().first().copied().unwrap_or(5432);
    let mut config = tokio_postgres::Config::new();
    config.host(&host).host(&host).port(port).port(port).user("postgres").dbname(&database.name);
    TargetConfig::postgres(config)
}

/// Runs the same statements on `connection` and returns what each gave:
/// rows, or the SQLSTATE of the error.
async fn run_mix(connection: &mut TargetConnection) -> Vec<Result<u64, Option<String>>> {
    let calls: [(usize, Vec<ParamValue>); 7] = [
        (0, vec![ParamValue::Int(1), text("one")]),
        (0, vec![ParamValue::Int(2), text("two")]),
        (0, vec![ParamValue::Int(1), text("again")]),
        (1, vec![ParamValue::Int(0)]),
        (2, vec![text("changed"), ParamValue::Int(10)]),
        (3, vec![]),
        (1, vec![ParamValue::Int(1)]),
    ];
    let mut results = Vec::new();
    for (statement, params) in calls {
        results.push(match connection.execute(statement, &params).await {
            Ok(outcome) => Ok(outcome.rows_affected),
            Err(error) => Err(error.code().map(str::to_owned)),
        });
    }
    results
}

#[tokio::test]
async fn wire_and_tokio_postgres_agree() {
    let database = TestDatabase::create().await;
    let client = database.client().await;
    client
        .batch_execute(
            "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);
             CREATE FUNCTION noisy() RETURNS int LANGUAGE plpgsql AS
                 $$ BEGIN RAISE NOTICE 'a notice between the rows'; RETURN 7; END $$;",
        )
        .await
        .unwrap();
    let statements = [
        "INSERT INTO notes VALUES ($1, $2) RETURNING id",
        "SELECT body FROM notes WHERE id > $1",
        "UPDATE notes SET body = $1 WHERE id < $2",
        "SELECT noisy()",
        "SELECT name FROM pg_prepared_statements WHERE name LIKE 'unibench%'",
    ];
    let statements: Vec<String> = statements.iter().map(|sql| sql.to_string()).collect();

    let mut wire = TargetConnection::open(&database.target()).await.expect("open a one-host connection");
    wire.prepare(&statements).await.expect("prepare on the one-host connection");
    let wire_results = run_mix(&mut wire).await;
    let wire_named = wire.execute(4, &[]).await.expect("list prepared statements").rows_affected;

    client.batch_execute("TRUNCATE notes").await.unwrap();
    let mut fallback = TargetConnection::open(&two_host_target(&database)).await.expect("open a two-host connection");
    fallback.prepare(&statements).await.expect("prepare on the two-host connection");
    let fallback_results = run_mix(&mut fallback).await;
    let fallback_named = fallback.execute(4, &[]).await.expect("list prepared statements").rows_affected;

    let expected: Vec<Result<u64, Option<String>>> =
        vec![Ok(1), Ok(1), Err(Some("23505".to_owned())), Ok(2), Ok(2), Ok(1), Ok(1)];
    assert_eq!(wire_results, expected);
    assert_eq!(fallback_results, expected);
    // One server statement per SQL text, named by the path that runs it.
    assert_eq!(wire_named, statements.len() as u64);
    assert_eq!(fallback_named, 0);
    wire.close().await;
    fallback.close().await;
}

#[tokio::test]
async fn unix_socket_connection_runs_statements() {
    let database = TestDatabase::create().await;
    let url: tokio_postgres::Config = database.url.parse().expect("parse the test database URL");
    let port = url.get_ports().first().copied().unwrap_or(5432);
    let mut config = tokio_postgres::Config::new();
    config.host(socket_dir()).port(port).user("postgres").dbname(&database.name);
    let mut connection = TargetConnection::open(&TargetConfig::postgres(config)).await.expect("open over the socket");
    connection
        .prepare(&["SELECT generate_series(1, $1)".to_owned(), "SELECT pg_backend_pid()".to_owned()])
        .await
        .expect("prepare over the socket");
    assert_eq!(connection.execute(0, &[ParamValue::Int(5)]).await.unwrap().rows_affected, 5);
    assert_eq!(connection.execute(1, &[]).await.unwrap().rows_affected, 1);
    connection.close().await;
}

#[tokio::test]
async fn session_ended_by_the_server_while_idle_is_lost() {
    let database = TestDatabase::create().await;
    // The server ends a session idle for longer than `idle_session_timeout`
    // with a FATAL error whose SQLSTATE (57P05) is not a connection class.
    let mut config: tokio_postgres::Config = database.url.parse().expect("parse the test database URL");
    config.options("-c idle_session_timeout=200");
    let mut connection =
        TargetConnection::open(&TargetConfig::postgres(config)).await.expect("open a connection with a timeout");
    connection.prepare(&["SELECT 1".to_owned()]).await.expect("prepare");
    assert_eq!(connection.execute(0, &[]).await.unwrap().rows_affected, 1);
    tokio::time::sleep(Duration::from_millis(600)).await;

    let error = connection.execute(0, &[]).await.unwrap_err();
    assert!(error.is_connection_lost(), "{error:?}");
    assert!(connection.is_closed());
}
