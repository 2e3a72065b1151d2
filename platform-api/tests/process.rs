//! The real `platform-api` binary: zero-setup start on SQLite, JSON logs carrying the W3C
//! trace context, OTLP trace export, graceful shutdown of an in-flight request, and two
//! replicas sharing one port and one database. All but the zero-setup start run on SQLite
//! and on PostgreSQL.

mod common;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, Backend, PASSWORD, TempDir, TestDb, unique};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_platform-api");

on_both_backends!(
    logs_and_traces_carry_the_incoming_trace_context,
    graceful_shutdown_finishes_in_flight_requests,
    grace_period_bounds_shutdown,
    two_replicas_share_one_port,
);

/// A free port on 127.0.0.1 (bound and released; the kernel does not hand it out again
/// immediately).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running binary, killed on drop.
struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let stdout = std::fs::File::create(cwd.join(unique("stdout"))).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.current_dir(cwd).args(args).stdout(stdout).stderr(Stdio::inherit());
        for var in ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL"]
        {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc { child: cmd.spawn().unwrap() }
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits for exit, at most `limit`.
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "process did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

async fn wait_ready(base: &str) {
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "{base} did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn login(base: &str, email: &str, password: &str) -> String {
    let resp = client()
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
}

fn read_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_on_sqlite_with_no_setup() {
    let dir = TempDir::new();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let mut p = Proc::spawn(&dir.0, &["--listen", &listen], &[]);
    let base = format!("http://{listen}");
    wait_ready(&base).await;
    assert!(dir.0.join("data/platform.db").exists(), "the database file is created under ./data");
    let resp = client()
        .post(format!("{base}/v1/auth/register"))
        .json(&json!({"email": "first@example.org", "password": PASSWORD, "name": "First User"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "migrated and writable");
    p.signal("-TERM");
    assert!(p.wait(Duration::from_secs(15)).success());
}

/// A minimal OTLP/HTTP receiver: records every body posted to `/v1/traces`.
async fn otlp_receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    use axum::routing::post;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let _ = tx.send((ct, body.to_vec()));
                ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), rx)
}

async fn logs_and_traces_carry_the_incoming_trace_context(backend: Backend) {
    let db = TestDb::create(&backend).await;
    let dir = &db.dir;
    let (otlp, mut received) = otlp_receiver().await;
    let listen = format!("127.0.0.1:{}", free_port());
    let log = dir.0.join("platform.log");
    let log_arg = log.display().to_string();
    let mut p = Proc::spawn(
        &dir.0,
        &["--listen", &listen, "--log-file", &log_arg, "--database-url", &db.url],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")],
    );
    let base = format!("http://{listen}");
    wait_ready(&base).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let email = format!("{}@example.org", unique("traced"));
    let resp = client()
        .post(format!("{base}/v1/auth/register"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({"email": email, "password": PASSWORD, "name": "Trace Able"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let token = login(&base, &email, PASSWORD).await;
    let resp = client()
        .post(format!("{base}/v1/records"))
        .bearer_auth(&token)
        .json(&json!({"kind": "vital", "code": "heart_rate", "value": 61}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    p.signal("-TERM");
    assert!(p.wait(Duration::from_secs(15)).success());

    let lines = read_log(&log);
    let registered = lines.iter().find(|l| l["message"] == "user registered").expect("registration is logged");
    assert_eq!(registered["trace_id"], trace_id, "log lines carry the propagated trace id");
    assert_eq!(registered["span_id"].as_str().map(str::len), Some(16));
    assert_eq!(registered["email"], email.as_str(), "this line deliberately carries PHI for Warden to catch");
    let access =
        lines.iter().find(|l| l["message"] == "request completed" && l["route"] == "/v1/auth/register").unwrap();
    assert_eq!((access["trace_id"].as_str(), access["status"].as_u64()), (Some(trace_id), Some(201)));
    assert!(lines.iter().all(|l| l["timestamp"].is_string() && l["level"].is_string()));

    // The exporter flushed on shutdown; the protobuf body holds the raw 16-byte trace id.
    let raw_id: Vec<u8> = (0..16).map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap()).collect();
    let mut exported = Vec::new();
    while let Ok(Some((ct, body))) = tokio::time::timeout(Duration::from_secs(2), received.recv()).await {
        assert_eq!(ct, "application/x-protobuf");
        exported.extend_from_slice(&body);
    }
    let contains = |needle: &[u8]| exported.windows(needle.len()).any(|w| w == needle);
    assert!(contains(&raw_id), "spans of the traced request were exported over OTLP/HTTP");
    for name in ["POST /v1/auth/register", "POST /v1/records", "user_insert", "record_insert", "db.system.name"] {
        assert!(contains(name.as_bytes()), "no `{name}` in the exported spans");
    }
    // The record.create span deliberately carries PHI as attributes, for Warden to catch.
    assert!(contains(b"record.create") && contains(b"patient.email") && contains(email.as_bytes()));
    db.drop_db().await;
}

/// Starts the binary with fault injection and a bootstrap admin, sets `faults`, and
/// returns the process, its address and the admin's token.
async fn start_with_fault(db: &TestDb, grace: &str, faults: Value) -> (Proc, String, String) {
    let dir = &db.dir;
    std::fs::write(dir.0.join("pw"), ADMIN_PASSWORD).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let args = [
        "--listen",
        &listen,
        "--enable-fault-injection",
        "--admin-email",
        ADMIN_EMAIL,
        "--admin-password-file",
        "pw",
        "--shutdown-grace",
        grace,
        "--database-url",
        &db.url,
    ];
    let p = Proc::spawn(&dir.0, &args, &[]);
    let base = format!("http://{listen}");
    wait_ready(&base).await;
    let admin = login(&base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let put = client().put(format!("{base}/admin/faults")).bearer_auth(&admin).json(&faults).send().await.unwrap();
    assert_eq!(put.status(), 200);
    (p, listen, admin)
}

async fn graceful_shutdown_finishes_in_flight_requests(backend: Backend) {
    let db = TestDb::create(&backend).await;
    let (mut p, listen, admin) = start_with_fault(&db, "10s", json!({"latency_ms": 1500})).await;
    let base = format!("http://{listen}");
    let slow = tokio::spawn({
        let url = format!("{base}/v1/me");
        let admin = admin.clone();
        async move { client().get(url).bearer_auth(admin).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    p.signal("-TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = tokio::net::TcpStream::connect(&listen).await;
    assert!(refused.is_err(), "no new connections after SIGTERM");
    assert_eq!(slow.await.unwrap().unwrap(), 200, "the in-flight request completes");
    assert!(p.wait(Duration::from_secs(10)).success());
    assert!(signalled.elapsed() < Duration::from_secs(5), "exits once drained, not at the end of the grace period");
    db.drop_db().await;
}

async fn grace_period_bounds_shutdown(backend: Backend) {
    let db = TestDb::create(&backend).await;
    let (mut p, listen, _) = start_with_fault(&db, "1s", json!({"health_hang": true})).await;
    let base = format!("http://{listen}");
    let hung = tokio::spawn(client().get(format!("{base}/healthz")).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    p.signal("-TERM");
    p.wait(Duration::from_secs(10));
    let took = signalled.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "exited after {took:?}");
    assert!(hung.await.unwrap().is_err(), "the hung request was cut off");
    db.drop_db().await;
}

async fn two_replicas_share_one_port(backend: Backend) {
    let test_db = TestDb::create(&backend).await;
    let dir = &test_db.dir;
    let listen = format!("127.0.0.1:{}", free_port());
    let logs = [dir.0.join("a.log"), dir.0.join("b.log")];
    let db = test_db.url.clone();
    let mut replicas: Vec<Proc> = logs
        .iter()
        .map(|log| {
            let log = log.display().to_string();
            Proc::spawn(&dir.0, &["--listen", &listen, "--database-url", &db, "--log-file", &log], &[])
        })
        .collect();
    let base = format!("http://{listen}");
    wait_ready(&base).await;
    // Give the second replica time to bind too before counting.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // A fresh connection per request lets the kernel pick a replica each time.
        for _ in 0..50 {
            let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
            let r = http.get(format!("{base}/healthz")).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
        let served: Vec<usize> = logs
            .iter()
            .map(|l| {
                read_log(l).iter().filter(|e| e["message"] == "request completed" && e["route"] == "/healthz").count()
            })
            .collect();
        if served.iter().all(|n| *n > 0) {
            break;
        }
        assert!(Instant::now() < deadline, "one replica served nothing: {served:?}");
    }
    for r in &replicas {
        r.signal("-TERM");
    }
    for r in &mut replicas {
        assert!(r.wait(Duration::from_secs(15)).success());
    }
    test_db.drop_db().await;
}
