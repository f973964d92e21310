//! Fresh, schema-applied stores for tests: an SQLite file in a temporary
//! directory, or a new database on the PostgreSQL server named by
//! `UNIBENCH_TEST_PG_URL`.

use unibench_store::{Store, StoreUrl};

/// A store with everything that must live as long as it does.
pub struct TestStore {
    pub store: Store,
    pub url: StoreUrl,
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    /// Another, independent connection to the same store.
    pub async fn connect_again(&self) -> Store {
        Store::connect(&self.url).await.expect("reconnect to the test store")
    }
}

pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let url: StoreUrl = format!("sqlite://{}", dir.path().join("store.db").display()).parse().unwrap();
    let store = Store::connect(&url).await.expect("open the SQLite store");
    store.apply_schema().await.expect("apply the SQLite schema");
    TestStore { store, url, _dir: Some(dir) }
}

/// The admin URL of the test server. Tests fail, rather than skip, when it
/// is missing: `scripts/test.sh` always provides it.
pub fn admin_url() -> String {
    std::env::var("UNIBENCH_TEST_PG_URL")
        .expect("UNIBENCH_TEST_PG_URL is not set: run the tests through scripts/test.sh, which starts PostgreSQL")
}

/// Creates an empty database and returns its URL.
pub async fn create_database() -> String {
    let admin = admin_url();
    let (client, connection) =
        tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.expect("connect to the test PostgreSQL server");
    tokio::spawn(connection);
    let name = format!("unibench_test_{}", uuid::Uuid::new_v4().simple());
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create a test database");
    match admin.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("UNIBENCH_TEST_PG_URL has no database part: {admin}"),
    }
}

pub async fn postgres() -> TestStore {
    let url: StoreUrl = create_database().await.parse().unwrap();
    let store = Store::connect(&url).await.expect("connect to the PostgreSQL store");
    store.apply_schema().await.expect("apply the PostgreSQL schema");
    TestStore { store, url, _dir: None }
}
