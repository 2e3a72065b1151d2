//! The agent's state store: SQLite by default (`sqlite://<data_dir>/warden.db`), PostgreSQL
//! by URL (`postgres://...`), one schema and one set of migrations for both.
//!
//! What it holds, one module each:
//! - [`alert_state`]: the saved alerts of every alerting rule, so `for` survives a restart
//!   ([`AlertStateCache`] implements the rules crate's `AlertStateStore`);
//! - [`nflog`]: the notification log (Alertmanager's nflog): per aggregation group and
//!   receiver integration, which alerts were last sent firing and resolved, and when; the
//!   notifier reads it to deduplicate across restarts and to time `repeat_interval`;
//! - [`silence`]: silences (matchers and a time range);
//! - [`audit`]: the remediation audit log.
//!
//! Like platform-api's database, it runs over sqlx's `Any` driver: queries use `$N`
//! placeholders, times are epoch milliseconds in `BIGINT`, ids are UUID text (silences) or
//! integers assigned by the store (audit entries), label sets and matchers are JSON text. On
//! SQLite the file and its directory are created if missing, the journal is WAL, and writes
//! go through a pool of one connection (SQLite admits one writer; competing connections
//! would back off in sleeps and wreck latency); reads use a separate pool. On PostgreSQL
//! both are one pool, and [`Store::postgres_pool`] hands out a native pool for advisory
//! locks (leader election of the remediator).
//!
//! Invariants: every query is bounded by [`QUERY_TIMEOUT`] (and PostgreSQL's
//! `statement_timeout`); every error names the operation and the table, never a value (label
//! values, matchers, reasons and details may carry data that must not reach logs); every
//! list a query returns is bounded by a limit.
//!
//! Retention: [`Store::prune`] deletes what can no longer matter (expired notification-log
//! entries, alert state older than the restore tolerance, silences and audit entries past
//! their retention); the daemon runs it periodically ([`Store::spawn_pruner`]).

pub mod alert_state;
pub mod audit;
pub mod nflog;
pub mod silence;

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Executor};

pub use alert_state::AlertStateCache;
pub use audit::{AuditEntry, AuditRecord};
pub use nflog::NflogEntry;
pub use silence::{NewSilence, Silence, SilenceState};

/// The migrations, embedded so the binary needs no files at run time.
const MIGRATIONS: &[(i64, &str, &str)] = &[(1, "init", include_str!("../../migrations/0001_init.sql"))];

/// Longest time one query may take before it fails with [`StoreError::Timeout`].
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a caller waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections of the read pool (and of the one PostgreSQL pool).
const MAX_CONNECTIONS: u32 = 4;

/// Connections of the native PostgreSQL pool handed out for advisory locks.
const PG_LOCK_CONNECTIONS: u32 = 8;

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Backend {
    /// `sqlite` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Why a store operation failed. Messages name the operation and the table, never a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL is neither `sqlite:` nor `postgres:`/`postgresql:`.
    #[error("unsupported store url scheme (use sqlite://PATH or postgres://...)")]
    UnsupportedScheme,
    /// The SQLite file's directory could not be created.
    #[error("cannot create the store directory {path}")]
    DataDir {
        /// The directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Connecting failed.
    #[error("cannot connect to the {backend} store")]
    Connect {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// The cause.
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("store migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("store: {op} on table {table} failed")]
    Query {
        /// What was being done (`insert`, `select`, `upsert`, ...).
        op: &'static str,
        /// The table.
        table: &'static str,
        /// The cause.
        source: sqlx::Error,
    },
    /// A query did not finish within [`QUERY_TIMEOUT`].
    #[error("store: {op} on table {table} timed out")]
    Timeout {
        /// What was being done.
        op: &'static str,
        /// The table.
        table: &'static str,
    },
    /// A stored row could not be decoded.
    #[error("store: corrupt row in table {table}, column {column}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
    },
    /// An argument was refused before reaching the database.
    #[error("store: invalid {field}: {reason}")]
    Invalid {
        /// The argument or field.
        field: &'static str,
        /// Why (never the value).
        reason: String,
    },
}

/// The state store. Cheap to clone (the pools are shared).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    writer: AnyPool,
    backend: Backend,
    pg: Option<sqlx::PgPool>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: never print it.
        f.debug_struct("Store").field("backend", &self.backend).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store at `url` (`sqlite://PATH` or `postgres://...`), creating an SQLite
    /// file and its directory if missing, and applies pending migrations.
    ///
    /// Several processes may open one store at once: on PostgreSQL the migrator serialises
    /// them with an advisory lock; on SQLite a migration that raced another process (and
    /// fails on the tables the winner just created) is retried, and then finds it recorded.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedScheme);
        };
        let url = match backend {
            Backend::Sqlite => {
                if let Some(dir) = sqlite_parent_dir(url) {
                    std::fs::create_dir_all(&dir)
                        .map_err(|source| StoreError::DataDir { path: dir.clone(), source })?;
                }
                sqlite_create_url(url)
            }
            Backend::Postgres => url.to_owned(),
        };
        let connect_err = |source| StoreError::Connect { backend: backend.as_str(), source };
        let options = || {
            AnyPoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT).after_connect(move |conn, _meta| {
                Box::pin(async move {
                    match backend {
                        Backend::Sqlite => {
                            // WAL lets readers run beside the one writer; NORMAL sync is
                            // durable across process crashes.
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            conn.execute("PRAGMA busy_timeout = 5000").await?;
                        }
                        Backend::Postgres => {
                            conn.execute("SET statement_timeout = 10000").await?;
                        }
                    }
                    Ok(())
                })
            })
        };
        let pool = options().max_connections(MAX_CONNECTIONS).connect(&url).await.map_err(connect_err)?;
        let (writer, pg) = match backend {
            Backend::Sqlite => (options().max_connections(1).connect(&url).await.map_err(connect_err)?, None),
            Backend::Postgres => {
                // Lazy: no connection is opened until the remediator asks for one.
                let pg = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(PG_LOCK_CONNECTIONS)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .idle_timeout(Duration::from_secs(300))
                    .connect_lazy(&url)
                    .map_err(connect_err)?;
                (pool.clone(), Some(pg))
            }
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
        let mut attempt = 0;
        loop {
            match migrator.run(&writer).await {
                Ok(()) => break,
                Err(e) if backend == Backend::Sqlite && attempt < 5 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "store migration raced another process, retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => return Err(StoreError::Migrate(e)),
            }
        }
        Ok(Store { pool, writer, backend, pg })
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A native PostgreSQL pool on the same database (lazy, up to 8 connections), for
    /// session-level advisory locks; `None` on SQLite.
    pub fn postgres_pool(&self) -> Option<sqlx::PgPool> {
        self.pg.clone()
    }

    /// Whether the database answers a trivial query within 2 s (for `/readyz`).
    pub async fn ping(&self) -> bool {
        let q = sqlx::query("SELECT 1").execute(&self.pool);
        matches!(tokio::time::timeout(Duration::from_secs(2), q).await, Ok(Ok(_)))
    }

    /// Closes the pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
        if let Some(pg) = &self.pg {
            pg.close().await;
        }
    }

    /// Deletes what can no longer matter at `now_ms`: notification-log entries past their
    /// expiry, alert state saved more than `alert_state_max_age_ms` ago, silences that
    /// ended and audit entries written more than `retention_ms` ago. Returns the number
    /// of rows deleted.
    pub async fn prune(&self, now_ms: i64, alert_state_max_age_ms: i64, retention_ms: i64) -> Result<u64, StoreError> {
        let mut n = self.prune_notification_log(now_ms).await?;
        n += self.prune_alert_state(now_ms.saturating_sub(alert_state_max_age_ms)).await?;
        n += self.prune_silences(now_ms.saturating_sub(retention_ms)).await?;
        n += self.prune_audit_log(now_ms.saturating_sub(retention_ms)).await?;
        Ok(n)
    }

    /// Starts a task that calls [`Store::prune`] every `every` (first after one period),
    /// logging failures, until `shutdown`.
    pub fn spawn_pruner(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
        every: Duration,
        alert_state_max_age: Duration,
        retention: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let (max_age_ms, retention_ms) = (ms(alert_state_max_age), ms(retention));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(every.max(Duration::from_millis(10))) => {}
                }
                match store.prune(now_ms(), max_age_ms, retention_ms).await {
                    Ok(n) => tracing::debug!(rows = n, "pruned the state store"),
                    Err(e) => tracing::warn!(error = %e, "pruning the state store failed"),
                }
            }
        })
    }

    /// The pool for reads.
    pub(crate) fn reader(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool for writes (one connection on SQLite).
    pub(crate) fn writer(&self) -> &AnyPool {
        &self.writer
    }
}

/// Runs one database operation with [`QUERY_TIMEOUT`], naming `op` and `table` in its error.
pub(crate) async fn run<T, F>(op: &'static str, table: &'static str, fut: F) -> Result<T, StoreError>
where
    F: Future<Output = Result<T, sqlx::Error>>,
{
    match tokio::time::timeout(QUERY_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(StoreError::Query { op, table, source }),
        Err(_) => Err(StoreError::Timeout { op, table }),
    }
}

/// The directory holding an SQLite database file, if the URL names one.
fn sqlite_parent_dir(url: &str) -> Option<String> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    let parent = std::path::Path::new(path).parent()?;
    let parent = parent.to_str()?;
    (!parent.is_empty()).then(|| parent.to_owned())
}

/// The SQLite URL with `mode=rwc` (create if missing) unless it sets a mode.
fn sqlite_create_url(url: &str) -> String {
    match url.split_once('?') {
        Some((_, q)) if q.split('&').any(|kv| kv.starts_with("mode=")) => url.to_owned(),
        Some(_) => format!("{url}&mode=rwc"),
        None => format!("{url}?mode=rwc"),
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `s` cut to at most `max` bytes at a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls() {
        assert_eq!(sqlite_parent_dir("sqlite://data/warden.db?mode=rwc").as_deref(), Some("data"));
        assert_eq!(sqlite_parent_dir("sqlite:///tmp/x/w.db").as_deref(), Some("/tmp/x"));
        assert_eq!(sqlite_parent_dir("sqlite::memory:"), None);
        assert_eq!(sqlite_parent_dir("sqlite://w.db"), None);
        assert_eq!(sqlite_create_url("sqlite:///a/w.db"), "sqlite:///a/w.db?mode=rwc");
        assert_eq!(sqlite_create_url("sqlite:///a/w.db?x=1"), "sqlite:///a/w.db?x=1&mode=rwc");
        assert_eq!(sqlite_create_url("sqlite:///a/w.db?mode=ro"), "sqlite:///a/w.db?mode=ro");
    }

    #[test]
    fn truncates_at_char_boundaries() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("aé", 2), "a");
    }
}
