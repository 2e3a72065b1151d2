//! Command-line flags and environment variables of `platform-api`.
//!
//! Every flag can also be given as a `PLATFORM_API_*` environment variable. Traces go to the
//! endpoint in the standard `OTEL_EXPORTER_OTLP_*` variables (read by the exporter itself).

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The health-records API of the platform.
#[derive(Debug, Clone, Parser)]
#[command(name = "platform-api", version, about)]
pub struct Config {
    /// Address to listen on. The socket is bound with SO_REUSEPORT, so several replicas
    /// can share one port and the kernel balances connections between them.
    #[arg(long, env = "PLATFORM_API_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Database URL: `sqlite://PATH` or `postgres://...`. Default: `sqlite://<data-dir>/platform.db`.
    #[arg(long, env = "PLATFORM_API_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Directory for the embedded SQLite database (created if missing).
    #[arg(long, env = "PLATFORM_API_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Write JSON log lines to this file (appended) instead of stdout.
    #[arg(long, env = "PLATFORM_API_LOG_FILE")]
    pub log_file: Option<PathBuf>,

    /// Log filter in `RUST_LOG` syntax.
    #[arg(long, env = "PLATFORM_API_LOG", default_value = "info")]
    pub log: String,

    /// Turn on the `/admin/faults` endpoints (admin only). Never in production.
    #[arg(long, env = "PLATFORM_API_ENABLE_FAULT_INJECTION")]
    pub enable_fault_injection: bool,

    /// Turn off request metrics and trace spans (to measure what they cost).
    #[arg(long, env = "PLATFORM_API_DISABLE_TELEMETRY")]
    pub disable_telemetry: bool,

    /// How long in-flight requests may take to finish after SIGTERM.
    #[arg(long, env = "PLATFORM_API_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Maximum database connections in the pool.
    #[arg(long, env = "PLATFORM_API_DB_MAX_CONNECTIONS", default_value_t = 8)]
    pub db_max_connections: u32,

    /// Lifetime of a bearer token.
    #[arg(long, env = "PLATFORM_API_TOKEN_TTL", default_value = "12h", value_parser = parse_duration)]
    pub token_ttl: Duration,

    /// How long a validated token is trusted without asking the database again. A token
    /// revoked through another replica keeps working here for at most this long; `0s`
    /// turns the cache off.
    #[arg(long, env = "PLATFORM_API_TOKEN_CACHE_TTL", default_value = "5s", value_parser = parse_duration)]
    pub token_cache_ttl: Duration,

    /// Login attempts allowed per account per minute.
    #[arg(long, env = "PLATFORM_API_LOGIN_LIMIT_PER_ACCOUNT", default_value_t = 10)]
    pub login_limit_per_account: u32,

    /// Login attempts allowed per client address per minute.
    #[arg(long, env = "PLATFORM_API_LOGIN_LIMIT_PER_ADDRESS", default_value_t = 60)]
    pub login_limit_per_address: u32,

    /// Ensure an admin account with this email exists at start (needs `--admin-password-file`).
    #[arg(long, env = "PLATFORM_API_ADMIN_EMAIL", requires = "admin_password_file")]
    pub admin_email: Option<String>,

    /// File holding the bootstrap admin's password (first line).
    #[arg(long, env = "PLATFORM_API_ADMIN_PASSWORD_FILE", requires = "admin_email")]
    pub admin_password_file: Option<PathBuf>,
}

impl Config {
    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}?mode=rwc", self.data_dir.join("platform.db").display()),
        }
    }
}

/// Parses `250ms`, `15s`, `5m`, `12h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("invalid duration `{s}`: expected e.g. 15s, 250ms, 5m"))?;
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("invalid duration unit `{unit}`: use ms, s, m or h")),
    };
    if !secs.is_finite() || !(0.0..=365.0 * 86400.0).contains(&secs) {
        return Err(format!("duration `{s}` out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let check = |s: &str, ms: Option<u64>| {
            assert_eq!(parse_duration(s).ok().map(|d| d.as_millis() as u64), ms, "{s}");
        };
        check("15s", Some(15_000));
        check("250ms", Some(250));
        check("5m", Some(300_000));
        check("12h", Some(43_200_000));
        check("2", Some(2_000));
        check("1.5s", Some(1_500));
        check("5 parsecs", None);
        check("", None);
        check("-1s", None);
        check("1d", None);
    }
}
