//! Test harness: starts platform-api in-process on a real socket (or as a real process) over
//! SQLite or a fresh PostgreSQL database, and drives it over HTTP.
//!
//! PostgreSQL tests run when `WARDEN_POSTGRES_URL` is set (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`); without it they print why they skip, and
//! with `WARDEN_REQUIRE_SERVICES=1` they fail instead.

#![allow(dead_code)]

use clap::Parser;
use platform_api::config::Config;
use platform_api::server::{Service, bind_reuseport};
use serde_json::{Value, json};
use sqlx::Connection;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Which database a test runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A fresh SQLite file in a temp dir.
    Sqlite,
    /// A fresh database on the server at this URL.
    Postgres(String),
}

impl Backend {
    /// The PostgreSQL backend, or `None` (with the reason printed) when not configured.
    pub fn postgres() -> Option<Backend> {
        let required = std::env::var("WARDEN_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        match std::env::var("WARDEN_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Some(Backend::Postgres(url)),
            _ if required => panic!("WARDEN_REQUIRE_SERVICES=1 but WARDEN_POSTGRES_URL is not set"),
            _ => {
                // Written to the real stderr, not through `eprintln!`, which the test
                // harness captures and hides for passing tests.
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "skipping PostgreSQL variant: WARDEN_POSTGRES_URL is not set");
                None
            }
        }
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique name for this process and call.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A fresh temp directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("platform-api-test"));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A database prepared for one test.
pub struct TestDb {
    pub url: String,
    pub dir: TempDir,
    admin_url: Option<(String, String)>,
}

impl TestDb {
    pub async fn create(backend: &Backend) -> TestDb {
        let dir = TempDir::new();
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}?mode=rwc", dir.0.join("platform.db").display());
                TestDb { url, dir, admin_url: None }
            }
            Backend::Postgres(base) => {
                let name = unique("papi_test");
                let mut conn = sqlx::PgConnection::connect(base)
                    .await
                    .unwrap_or_else(|e| panic!("cannot connect to WARDEN_POSTGRES_URL: {e}"));
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
                let url = replace_database(base, &name);
                TestDb { url, dir, admin_url: Some((base.clone(), name)) }
            }
        }
    }

    /// Drops a PostgreSQL test database.
    pub async fn drop_db(&self) {
        if let Some((base, name)) = &self.admin_url
            && let Ok(mut conn) = sqlx::PgConnection::connect(base).await
        {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
        }
    }
}

fn replace_database(url: &str, name: &str) -> String {
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

pub const ADMIN_EMAIL: &str = "admin@example.org";
pub const ADMIN_PASSWORD: &str = "admin password 1234";
pub const PASSWORD: &str = "correct horse battery";

/// A running in-process server.
pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    pub db: TestDb,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with a bootstrap admin; `extra` adds flags.
    pub async fn start(backend: &Backend, extra: &[&str]) -> TestServer {
        let db = TestDb::create(backend).await;
        let pw_file = db.dir.0.join("admin-password");
        std::fs::write(&pw_file, ADMIN_PASSWORD).unwrap();
        let mut args: Vec<String> = vec![
            "platform-api".into(),
            "--database-url".into(),
            db.url.clone(),
            "--admin-email".into(),
            ADMIN_EMAIL.into(),
            "--admin-password-file".into(),
            pw_file.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let config = Config::try_parse_from(args).unwrap();
        let service = Service::build(&config).await.unwrap();
        let listener = bind_reuseport(config.listen).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            service
                .serve(
                    listener,
                    async {
                        let _ = stop_rx.await;
                    },
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
        });
        let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
        TestServer { base: format!("http://{addr}"), http, db, stop: Some(stop), task: Some(task) }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.db.drop_db().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request and returns status and JSON body (`Null` when empty or not JSON).
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method.parse().unwrap(), self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call("GET", path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(token), Some(body)).await
    }

    /// Registers a user and returns `(id, token)`.
    pub async fn user(&self, name: &str, role: &str) -> (String, String) {
        let email = format!("{}@example.org", unique(&name.to_lowercase().replace(' ', ".")));
        let (status, body) = self
            .call(
                "POST",
                "/v1/auth/register",
                None,
                Some(json!({"email": email, "password": PASSWORD, "name": name, "role": role})),
            )
            .await;
        assert_eq!(status, 201, "register {name}: {body}");
        let id = body["id"].as_str().unwrap().to_owned();
        (id, self.login(&email, PASSWORD).await)
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let (status, body) =
            self.call("POST", "/v1/auth/login", None, Some(json!({"email": email, "password": password}))).await;
        assert_eq!(status, 200, "login {email}: {body}");
        body["token"].as_str().unwrap().to_owned()
    }

    pub async fn admin(&self) -> String {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }
}

/// Asserts the API's error shape and returns the code.
pub fn error_code(body: &Value) -> String {
    let err = body.get("error").unwrap_or_else(|| panic!("not an error body: {body}"));
    assert!(err["message"].is_string(), "error without message: {body}");
    err["code"].as_str().unwrap_or_else(|| panic!("error without code: {body}")).to_owned()
}

/// Generates a `sqlite` and a `postgres` test for each async fn taking a [`Backend`].
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(backend) = super::common::Backend::postgres() {
                    super::$name(backend).await
                }
            }
        }
    )*};
}

#[test]
fn database_names_are_replaced() {
    assert_eq!(replace_database("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
    assert_eq!(replace_database("postgres://u@h/test?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
    assert_eq!(replace_database("postgres://u@h", "x"), "postgres://u@h/x");
}
