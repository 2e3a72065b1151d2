//! Database access: one pool over SQLite or PostgreSQL, the embedded migrations, and the
//! instrumentation every query goes through.
//!
//! The service uses sqlx's `Any` driver so that one set of queries and one set of
//! migrations serve both backends. Queries use `$N` placeholders (both backends accept
//! them), ids are UUID strings and times are epoch milliseconds, so no type needs a
//! backend-specific mapping.

use crate::telemetry::Metrics;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor};
use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The migrations, embedded in the binary so it needs no files at run time.
const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "init", include_str!("../migrations/0001_init.sql"))];

/// Which database the pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// The OpenTelemetry `db.system.name` value.
    pub fn otel_name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        }
    }
}

/// The pools plus what every query needs to be measured.
///
/// Reads use `pool`; writes use `writer`. On SQLite the writer is a pool of one
/// connection: SQLite admits one writer at a time, and connections competing for that
/// lock back off in sleeps of up to 100 ms (its busy handler), which wrecks tail latency
/// under load. One writer connection queues writes in memory instead. On PostgreSQL both
/// are the same pool.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    writer: AnyPool,
    backend: Backend,
    metrics: Option<Arc<Metrics>>,
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL names a backend this build does not support.
    #[error("unsupported database url scheme (use sqlite:// or postgres://)")]
    UnsupportedScheme,
    /// The data directory could not be created.
    #[error("cannot create data directory {path}")]
    DataDir {
        /// The directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Connecting failed.
    #[error("cannot connect to the database")]
    Connect(#[source] sqlx::Error),
    /// A migration failed.
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

impl Db {
    /// Connects, applies pending migrations and returns the pool.
    pub async fn open(url: &str, max_connections: u32, metrics: Option<Arc<Metrics>>) -> Result<Self, OpenError> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(OpenError::UnsupportedScheme);
        };
        if backend == Backend::Sqlite
            && let Some(dir) = sqlite_parent_dir(url)
        {
            std::fs::create_dir_all(&dir).map_err(|source| OpenError::DataDir { path: dir.clone(), source })?;
        }
        let options = || {
            AnyPoolOptions::new().acquire_timeout(Duration::from_secs(5)).after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the one writer (and beside other replicas
                        // on the same file); NORMAL sync is durable across process crashes.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
        };
        let pool = options().max_connections(max_connections.max(1)).connect(url).await.map_err(OpenError::Connect)?;
        let writer = match backend {
            Backend::Sqlite => options().max_connections(1).connect(url).await.map_err(OpenError::Connect)?,
            Backend::Postgres => pool.clone(),
        };
        let migrator = Migrator {
            migrations: Cow::Owned(
                MIGRATIONS
                    .iter()
                    .map(|(version, name, sql)| {
                        Migration::new(*version, Cow::Borrowed(name), MigrationType::Simple, Cow::Borrowed(sql), false)
                    })
                    .collect(),
            ),
            ..Migrator::DEFAULT
        };
        // On PostgreSQL the migrator serialises replicas with an advisory lock. SQLite has no
        // such lock: when two replicas start together on one file, the loser's migration
        // fails on the tables the winner just created. Running again then finds the
        // migration recorded and skips it.
        let mut attempt = 0;
        loop {
            match migrator.run(&writer).await {
                Ok(()) => break,
                Err(e) if backend == Backend::Sqlite && attempt < 5 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "migration raced another replica, retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => return Err(OpenError::Migrate(e)),
            }
        }
        Ok(Self { pool, writer, backend, metrics })
    }

    /// The pool for reads.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool for writes (one connection on SQLite).
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs one database operation inside a client span named `name`, and records its
    /// duration in `db_query_duration_seconds{query=name}`.
    pub async fn timed<T, F>(&self, name: &'static str, fut: F) -> Result<T, sqlx::Error>
    where
        F: Future<Output = Result<T, sqlx::Error>>,
    {
        let Some(metrics) = &self.metrics else {
            return fut.await;
        };
        let attributes =
            vec![KeyValue::new("db.system.name", self.backend.otel_name()), KeyValue::new("db.operation.name", name)];
        let start = Instant::now();
        let result = crate::telemetry::in_span(name, SpanKind::Client, attributes, fut).await;
        metrics.db_query_duration.with_label_values(&[name]).observe(start.elapsed().as_secs_f64());
        if result.is_err() {
            metrics.db_query_errors.with_label_values(&[name]).inc();
        }
        result
    }

    /// Whether the database answers a trivial query (for `/readyz`).
    pub async fn ping(&self) -> bool {
        let q = sqlx::query("SELECT 1").execute(&self.pool);
        matches!(tokio::time::timeout(Duration::from_secs(2), q).await, Ok(Ok(_)))
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

/// The directory holding an SQLite database file, if the URL names a file.
fn sqlite_parent_dir(url: &str) -> Option<String> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    let parent = std::path::Path::new(path).parent()?;
    let parent = parent.to_str()?;
    (!parent.is_empty()).then(|| parent.to_owned())
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

/// A new random id.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::sqlite_parent_dir;

    #[test]
    fn sqlite_dirs() {
        assert_eq!(sqlite_parent_dir("sqlite://data/platform.db?mode=rwc").as_deref(), Some("data"));
        assert_eq!(sqlite_parent_dir("sqlite:///tmp/x/p.db").as_deref(), Some("/tmp/x"));
        assert_eq!(sqlite_parent_dir("sqlite::memory:"), None);
        assert_eq!(sqlite_parent_dir("sqlite://p.db"), None);
    }
}
