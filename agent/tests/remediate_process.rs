//! The `process` actuator end to end with real programs: `platform-api` replicas sharing one
//! port through SO_REUSEPORT (scale 1 → 3 → 1), a hung `/healthz` (platform-api's fault
//! injection) restarted by the liveness probe, per-replica probes on Python's
//! `http.server` (a SIGSTOPped replica is killed after its grace period and only it is
//! restarted; a rolling restart waits for readiness), crash-loop backoff, and shutdown
//! leaving no child behind.
//!
//! platform-api comes from the workspace's target directory (`cargo build -p
//! platform-api`, done by `cargo test --workspace`); Python from `WARDEN_PYTHON` or
//! `python3`. Missing ones skip, or fail under `WARDEN_REQUIRE_SERVICES=1`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use warden::remediate::actuator::Actuator;
use warden::remediate::actuator::process::{ProcessActuator, ReplicaStatus};
use warden::remediate::config::ProcessConfig;
use warden_testkit::{TempDir, find_program, free_port, require, workspace_bin};

fn config(yaml: &str) -> ProcessConfig {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// Listening TCP sockets on 127.0.0.1:`port` (one per replica with SO_REUSEPORT).
fn listeners(port: u16) -> usize {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let want = format!("0100007F:{port:04X}");
    text.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == want && f[3] == "0A"
        })
        .count()
}

fn alive(pid: u32) -> bool {
    // A zombie is not alive: check the state in /proc/<pid>/stat.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

async fn wait_for<F: FnMut() -> bool>(what: &str, timeout: Duration, mut f: F) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_status<F: FnMut(&[ReplicaStatus]) -> bool>(
    a: &ProcessActuator,
    what: &str,
    timeout: Duration,
    mut f: F,
) -> Vec<ReplicaStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        let s = a.status().await;
        if f(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn http_ok(url: &str) -> bool {
    // A fresh client per call: a new connection each time, so SO_REUSEPORT may pick any replica.
    let c = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().unwrap();
    matches!(c.get(url).send().await, Ok(r) if r.status().is_success())
}

fn platform_api() -> Option<PathBuf> {
    require(
        "process actuator with platform-api",
        workspace_bin("platform-api"),
        "binary not built (cargo build -p platform-api)",
    )
}

fn python() -> Option<PathBuf> {
    require(
        "process actuator probes",
        find_program("WARDEN_PYTHON", &["python3"]),
        "python3 not found (set WARDEN_PYTHON)",
    )
}

fn log_text(a: &ProcessActuator) -> String {
    std::fs::read_to_string(a.log_path()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_api_scales_1_3_1_on_one_port() {
    let Some(bin) = platform_api() else { return };
    let dir = TempDir::new("proc_scale");
    let port = free_port();
    let cfg = config(&format!(
        r#"
command: {bin}
args: ["--listen", "127.0.0.1:{port}", "--data-dir", "{data}/replica-{{replica}}", "--shutdown-grace", "2s"]
env: {{PLATFORM_API_LOG: warn}}
termination_grace: 10s
"#,
        bin = bin.display(),
        data = dir.path().display()
    ));
    let a = ProcessActuator::start("api", cfg, dir.path(), 1, CancellationToken::new()).await.unwrap();
    assert_eq!(a.current_replicas().await.unwrap(), 1);
    wait_for("one replica listening", Duration::from_secs(60), || listeners(port) == 1).await;
    assert!(http_ok(&format!("http://127.0.0.1:{port}/healthz")).await);

    a.scale_to(3).await.unwrap();
    assert_eq!(a.current_replicas().await.unwrap(), 3);
    wait_for("three replicas listening on one port", Duration::from_secs(60), || listeners(port) == 3).await;
    let three = a.status().await;
    assert_eq!(three.iter().map(|s| s.slot).collect::<Vec<_>>(), [0, 1, 2]);
    let pids: Vec<u32> = three.iter().map(|s| s.pid.expect("running")).collect();
    for _ in 0..20 {
        assert!(http_ok(&format!("http://127.0.0.1:{port}/healthz")).await);
    }

    // Scale down: the two newest go, gracefully (SIGTERM; platform-api drains and exits).
    a.scale_to(1).await.unwrap();
    let one = a.status().await;
    assert_eq!(one.len(), 1);
    assert_eq!((one[0].slot, one[0].pid), (0, Some(pids[0])), "the oldest replica stays");
    assert!(!alive(pids[1]) && !alive(pids[2]));
    assert_eq!(listeners(port), 1);
    assert!(http_ok(&format!("http://127.0.0.1:{port}/healthz")).await);
    let log = log_text(&a);
    assert_eq!(log.matches("stopping: exited after SIGTERM").count(), 2, "{log}");
    assert!(log.contains(&format!("[warden] replica 2 started (pid {})", pids[2])), "{log}");

    // Shutdown leaves nothing running.
    a.shutdown().await;
    assert!(!alive(pids[0]));
    assert_eq!(listeners(port), 0);
}

async fn admin_token(base: &str, email: &str, password: &str) -> String {
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = c
        .post(format!("{base}/v1/auth/login"))
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_health_endpoint_is_restarted_by_liveness() {
    let Some(bin) = platform_api() else { return };
    let dir = TempDir::new("proc_liveness");
    let port = free_port();
    let pw = dir.path().join("admin-password");
    std::fs::write(&pw, "correct horse battery staple\n").unwrap();
    let cfg = config(&format!(
        r#"
command: {bin}
args: ["--listen", "127.0.0.1:{port}", "--data-dir", "{data}", "--enable-fault-injection",
       "--admin-email", "admin@example.test", "--admin-password-file", "{pw}", "--shutdown-grace", "1s"]
env: {{PLATFORM_API_LOG: warn}}
liveness_probe: {{http_get: {{path: /healthz, port: {port}}}, initial_delay: 1s, period: 300ms, timeout: 200ms, failure_threshold: 3}}
termination_grace: 3s
crash_backoff: {{initial: 200ms, max: 1s}}
"#,
        bin = bin.display(),
        data = dir.path().display(),
        pw = pw.display()
    ));
    let a = ProcessActuator::start("api", cfg, dir.path(), 1, CancellationToken::new()).await.unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_for("platform-api listening", Duration::from_secs(60), || listeners(port) == 1).await;
    let first = a.status().await[0].pid.unwrap();
    // Healthy for a while: no restart.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(a.status().await[0].restarts, 0);
    let token = admin_token(&base, "admin@example.test", "correct horse battery staple").await;
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = c
        .put(format!("{base}/admin/faults"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"health_hang": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!http_ok(&format!("{base}/healthz")).await, "the fault hangs /healthz");
    let s = wait_status(&a, "a restart after failed liveness", Duration::from_secs(30), |s| {
        s[0].restarts >= 1 && s[0].pid.is_some_and(|p| p != first)
    })
    .await;
    assert!(!alive(first), "the hung process is gone");
    // The new process has no faults: healthy again, and it stays up.
    wait_for("listening again", Duration::from_secs(30), || listeners(port) == 1).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http_ok(&format!("{base}/healthz")).await {
        assert!(Instant::now() < deadline, "no healthy replica after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(a.status().await[0].pid, s[0].pid, "no further restarts once healthy");
    let log = log_text(&a);
    assert!(log.contains("failed its liveness probe"), "{log}");
    a.shutdown().await;
}

fn http_server_config(py: &Path, base: u16, extra: &str) -> ProcessConfig {
    config(&format!(
        r#"
command: {py}
args: ["-m", "http.server", "--bind", "127.0.0.1", "{{replica_port}}"]
replica_port_base: {base}
liveness_probe: {{http_get: {{path: /, port: "{{replica_port}}"}}, initial_delay: 3s, period: 200ms, timeout: 200ms, failure_threshold: 3}}
readiness_probe: {{http_get: {{path: /, port: "{{replica_port}}"}}, period: 100ms, timeout: 200ms, failure_threshold: 1}}
termination_grace: 500ms
crash_backoff: {{initial: 100ms, max: 1s}}
{extra}
"#,
        py = py.display()
    ))
}

/// A free range of `n` consecutive ports (best effort: checked now).
fn free_ports(n: u16) -> u16 {
    loop {
        let base = free_port();
        if base < 60000 && (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_replica_liveness_restarts_only_the_stuck_replica() {
    let Some(py) = python() else { return };
    let dir = TempDir::new("proc_stopped");
    let base = free_ports(2);
    let a = ProcessActuator::start("web", http_server_config(&py, base, ""), dir.path(), 2, CancellationToken::new())
        .await
        .unwrap();
    let s =
        wait_status(&a, "two ready replicas", Duration::from_secs(30), |s| s.len() == 2 && s.iter().all(|r| r.ready))
            .await;
    let (p0, p1) = (s[0].pid.unwrap(), s[1].pid.unwrap());
    // Freeze replica 1: its probes time out; SIGTERM cannot stop a stopped process, so it
    // is killed after the 500 ms grace and started again.
    rustix::process::kill_process(rustix::process::Pid::from_raw(p1 as i32).unwrap(), rustix::process::Signal::Stop)
        .unwrap();
    let s = wait_status(&a, "replica 1 restarted and ready", Duration::from_secs(30), |s| {
        s[1].pid.is_some_and(|p| p != p1) && s[1].ready
    })
    .await;
    let log = log_text(&a);
    assert_eq!(s[1].restarts, 1, "{log}");
    assert_eq!((s[0].pid, s[0].restarts), (Some(p0), 0), "replica 0 untouched: {log}");
    assert!(!alive(p1));
    assert!(
        log_text(&a)
            .contains(&format!("replica 1 (pid {p1}) failed its liveness probe: killed after the grace period"))
    );

    // A rolling restart replaces both, one at a time, each ready before the next.
    let before: Vec<u32> = s.iter().map(|r| r.pid.unwrap()).collect();
    a.restart(None).await.unwrap();
    let after = a.status().await;
    assert!(after.iter().all(|r| r.ready), "{after:?}");
    for (b, r) in before.iter().zip(&after) {
        assert_ne!(Some(*b), r.pid);
        assert!(!alive(*b));
    }
    // Restarting one replica by slot; an unknown slot is an error.
    let p = after[0].pid;
    a.restart(Some("0".into())).await.unwrap();
    assert_ne!(a.status().await[0].pid, p);
    assert!(a.restart(Some("7".into())).await.is_err());
    let pids: Vec<u32> = a.status().await.iter().filter_map(|r| r.pid).collect();
    a.shutdown().await;
    assert!(pids.iter().all(|p| !alive(*p)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_replicas_restart_with_backoff() {
    let dir = TempDir::new("proc_crash");
    let cfg = config(
        r#"
command: /bin/sh
args: ["-c", "echo replica $WARDEN_REPLICA of $WARDEN_TARGET; echo oops >&2; exit 3"]
crash_backoff: {initial: 100ms, max: 400ms}
"#,
    );
    let a = ProcessActuator::start("crashy", cfg, dir.path(), 1, CancellationToken::new()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let s = a.status().await;
    // Delays 100, 200, 400, 400, ... ms: about 7 starts in 2.5 s, never one per loop turn.
    assert!((4..=9).contains(&s[0].starts), "{s:?}");
    // Counted once per exit: equal to the starts while backing off, one less while running.
    let restarts = u64::from(s[0].restarts);
    assert!(restarts == s[0].starts || restarts + 1 == s[0].starts, "{s:?}");
    a.shutdown().await;
    let log = log_text(&a);
    for want in [
        "restarts in 100ms",
        "restarts in 200ms",
        "restarts in 400ms",
        "replica 0 of crashy",
        "stderr] oops",
        "exited: exit status: 3",
    ] {
        assert!(log.contains(want), "missing {want:?} in\n{log}");
    }
    assert!(!log.contains("restarts in 800ms"), "backoff is capped at max:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_program_backs_off_instead_of_spinning() {
    let dir = TempDir::new("proc_missing");
    let cfg = config("command: /nonexistent/program\ncrash_backoff: {initial: 200ms, max: 200ms}\n");
    let a = ProcessActuator::start("gone", cfg, dir.path(), 1, CancellationToken::new()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let s = a.status().await;
    assert_eq!(s[0].pid, None);
    assert!((3..=5).contains(&s[0].restarts), "{s:?}");
    a.shutdown().await;
    assert!(log_text(&a).contains("cannot start /nonexistent/program"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shutdown_token_stops_every_replica() {
    let dir = TempDir::new("proc_token");
    let cfg = config("command: /bin/sleep\nargs: ['600']\ntermination_grace: 2s\n");
    let token = CancellationToken::new();
    let a = ProcessActuator::start("sleepy", cfg, dir.path(), 3, token.clone()).await.unwrap();
    let s = wait_status(&a, "three sleepers", Duration::from_secs(10), |s| s.iter().all(|r| r.pid.is_some())).await;
    let pids: Vec<u32> = s.iter().map(|r| r.pid.unwrap()).collect();
    token.cancel();
    wait_for("children gone", Duration::from_secs(10), || pids.iter().all(|p| !alive(*p))).await;
    a.shutdown().await;
}
