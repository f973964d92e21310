//! Fresh PostgreSQL databases for the target tests, on the server named by
//! `UNIBENCH_TEST_PG_URL` (superuser, trust authentication).

#![allow(dead_code)]

use std::str::FromStr;

use tokio_postgres::{Client, NoTls};
use unibench_target::TargetConfig;

/// The admin URL of the test server. Tests fail, rather than skip, when it
/// is missing: `scripts/test.sh` always sets it.
pub fn admin_url() -> String {
    std::env::var("UNIBENCH_TEST_PG_URL")
        .expect("UNIBENCH_TEST_PG_URL is not set: run the tests through scripts/test.sh, which starts PostgreSQL")
}

/// A database of its own for one test.
pub struct TestDatabase {
    pub url: String,
    pub name: String,
}

impl TestDatabase {
    /// Creates an empty database named `unibench_target_<random>`.
    pub async fn create() -> Self {
        let admin = admin_url();
        let client = connect(&admin).await;
        let name = format!("unibench_target_{}", uuid::Uuid::new_v4().simple());
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create a test database");
        let url = match admin.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("UNIBENCH_TEST_PG_URL has no database part: {admin}"),
        };
        TestDatabase { url, name }
    }

    /// A plain tokio-postgres client, for setting up and checking tables.
    pub async fn client(&self) -> Client {
        connect(&self.url).await
    }

    /// Target settings for this database.
    pub fn target(&self) -> TargetConfig {
        TargetConfig::postgres(tokio_postgres::Config::from_str(&self.url).expect("parse the test database URL"))
    }
}

pub async fn connect(url: &str) -> Client {
    let (client, connection) =
        tokio_postgres::connect(url, NoTls).await.expect("connect to the test PostgreSQL server");
    tokio::spawn(connection);
    client
}
