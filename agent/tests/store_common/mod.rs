//! Test databases for the state store: a fresh SQLite file in a temp dir, or a fresh
//! PostgreSQL database `warden_test_<pid>_<n>` on the server at `WARDEN_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`), dropped when the [`TestDb`] is
//! dropped (also when the test panics). Without a reachable server the PostgreSQL variant
//! is skipped through `warden-testkit` (a failure under `WARDEN_REQUIRE_SERVICES=1`).

#![allow(dead_code)]

use sqlx::Connection;
use warden::store::Store;
use warden_testkit::{TempDir, skip, unique};

/// Default server when `WARDEN_POSTGRES_URL` is not set.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A database prepared for one test.
pub struct TestDb {
    /// The store URL.
    pub url: String,
    /// The temp dir (SQLite file, anything else the test writes).
    pub dir: TempDir,
    /// (server URL, database name) of a PostgreSQL test database.
    pg: Option<(String, String)>,
}

impl TestDb {
    /// A fresh database, or `None` (skipped) if PostgreSQL is wanted but unreachable.
    pub async fn create(backend: Backend) -> Option<TestDb> {
        let dir = TempDir::new("warden-store");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("state").join("warden.db").display());
                Some(TestDb { url, dir, pg: None })
            }
            Backend::Postgres => {
                let base = std::env::var("WARDEN_POSTGRES_URL")
                    .ok()
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_owned());
                let mut conn = match sqlx::PgConnection::connect(&base).await {
                    Ok(c) => c,
                    Err(e) => {
                        skip("PostgreSQL store test", &format!("cannot connect to WARDEN_POSTGRES_URL: {e}"));
                        return None;
                    }
                };
                let name = unique("warden_test");
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
                let _ = conn.close().await;
                let url = replace_database(&base, &name);
                Some(TestDb { url, dir, pg: Some((base, name)) })
            }
        }
    }

    /// Opens the store.
    pub async fn open(&self) -> Store {
        Store::open(&self.url).await.unwrap_or_else(|e| panic!("open store: {e}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((base, name)) = self.pg.take() else { return };
        // Drop may run inside the test's runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&base).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
                }
            });
        })
        .join();
    }
}

/// `url` with its database name replaced by `name`.
pub fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let prefix = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}

/// Generates a `sqlite` and a `postgres` test for each async fn taking a [`Backend`].
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::store_common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::store_common::Backend::Postgres).await
            }
        }
    )*};
}
