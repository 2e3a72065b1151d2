//! The service's life: open the database, build the router, bind (with SO_REUSEPORT),
//! serve, and on SIGTERM/SIGINT stop accepting and let in-flight requests finish within
//! the grace period.

use crate::app;
use crate::audit::AuditLog;
use crate::auth::{self, LoginLimiter, Role, TokenCache};
use crate::config::Config;
use crate::db::{Db, new_id, now_ms};
use crate::faults::Faults;
use crate::state::AppState;
use crate::telemetry::Metrics;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Binds a TCP listener with SO_REUSEADDR and SO_REUSEPORT, so that several replicas can
/// listen on one port and the kernel spreads connections across them.
pub fn bind_reuseport(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// A running service, as built from a config.
pub struct Service {
    /// The router.
    pub router: axum::Router,
    /// The state behind it.
    pub state: AppState,
    stop: watch::Sender<bool>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Service {
    /// Opens the database (migrating it), ensures the bootstrap admin, and builds the router.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let db_metrics = (!config.disable_telemetry).then(|| metrics.clone());
        let db = Db::open(&config.database_url(), config.db_max_connections, db_metrics).await?;
        if let (Some(email), Some(file)) = (&config.admin_email, &config.admin_password_file) {
            let password = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read admin password file {}", file.display()))?;
            let password = password.lines().next().unwrap_or_default().to_owned();
            ensure_admin(&db, email, password).await?;
        }
        let (stop, stop_rx) = watch::channel(false);
        let mut background = Vec::new();
        let faults = config.enable_fault_injection.then(|| Arc::new(Faults::new(metrics.clone())));
        if let Some(f) = &faults {
            tracing::warn!("fault injection is enabled");
            background.push(tokio::spawn(f.clone().run(stop_rx.clone())));
        }
        let (audit, audit_writer) = AuditLog::spawn(db.clone(), metrics.clone(), stop_rx.clone());
        background.push(audit_writer);
        let state = AppState {
            audit,
            db,
            metrics,
            telemetry: !config.disable_telemetry,
            token_ttl: config.token_ttl,
            token_cache: Arc::new(TokenCache::new(config.token_cache_ttl)),
            login_limiter: Arc::new(LoginLimiter::new(config.login_limit_per_account, config.login_limit_per_address)),
            faults,
        };
        let (router, _) = app::build(state.clone());
        Ok(Self { router, state, stop, background })
    }

    /// Serves on `listener` until `shutdown` resolves, then drains in-flight requests for at
    /// most `grace`.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let (signalled_tx, mut signalled_rx) = watch::channel(false);
        let make_service = self.router.into_make_service_with_connect_info::<SocketAddr>();
        let server = axum::serve(listener, make_service).with_graceful_shutdown(async move {
            shutdown.await;
            let _ = signalled_tx.send(true);
        });
        let deadline = async move {
            let _ = signalled_rx.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = server => result.context("server failed")?,
            () = deadline => tracing::warn!(grace_secs = grace.as_secs_f64(), "grace period over, closing remaining connections"),
        }
        let _ = self.stop.send(true);
        for task in self.background {
            let _ = task.await;
        }
        self.state.db.close().await;
        Ok(())
    }
}

async fn ensure_admin(db: &Db, email: &str, password: String) -> anyhow::Result<()> {
    let email = email.trim().to_lowercase();
    if password.chars().count() < 12 {
        anyhow::bail!("admin password must be at least 12 characters");
    }
    let existing: Option<(String,)> =
        sqlx::query_as("SELECT id FROM users WHERE email = $1").bind(&email).fetch_optional(db.pool()).await?;
    if existing.is_some() {
        return Ok(());
    }
    let hash = auth::hash_password(password)
        .await
        .map_err(|e| anyhow::anyhow!("cannot hash admin password: {}", e.message()))?;
    let id = new_id();
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, name, role, password_hash, disabled, created_at) VALUES ($1, $2, $3, $4, $5, 0, $6)",
    )
    .bind(&id)
    .bind(&email)
    .bind("Administrator")
    .bind(Role::Admin.as_str())
    .bind(&hash)
    .bind(now_ms())
    .execute(db.writer())
    .await;
    match inserted {
        Ok(_) => tracing::info!(user_id = %id, "bootstrap admin created"),
        // Another replica created it first.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received, draining");
}
