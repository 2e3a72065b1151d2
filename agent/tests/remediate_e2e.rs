//! Remediation end to end, all real parts: `platform-api` replicas supervised by the
//! process actuator, latency injected through its fault API, a black-box latency probe
//! (fresh connections to the shared SO_REUSEPORT port, so the kernel spreads them over the
//! replicas) written into the rules engine's store, real Prometheus rules evaluated by
//! `RuleManager` every second, and the remediator acting on the alerts:
//!
//! latency injected → `ApiSlow` fires → scale up (never beyond max_replicas) → the
//! unaffected new replicas bring the average down → `ApiSlow` resolves → the fault is
//! cleared → `ApiIdle` fires → scale down, one step per stabilisation window, to
//! min_replicas.
//!
//! Needs the platform-api binary (`cargo build -p platform-api`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use warden::remediate::actuator::BuildContext;
use warden::remediate::{AlertInput, AuditEntry, MemoryAuditLog, RecordingSink, RemediationConfig, Remediator};
use warden_rules::group::GroupOptions;
use warden_rules::labels::Labels;
use warden_rules::manager::RuleManager;
use warden_rules::promql::{Engine, EngineOptions};
use warden_rules::storage::Appendable;
use warden_rules::storage::{Db, DbConfig};
use warden_testkit::{TempDir, free_port, require, workspace_bin};

const RULES: &str = r#"
groups:
  - name: api
    interval: 1s
    rules:
      - alert: ApiSlow
        expr: avg_over_time(probe_duration_seconds{job="api"}[4s]) > 0.2
        labels: {severity: page}
      - alert: ApiIdle
        expr: avg_over_time(probe_duration_seconds{job="api"}[4s]) < 0.05
"#;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// What the agent loop publishes for the test body.
#[derive(Default)]
struct Seen {
    active: Vec<String>,
    probe_failures: u64,
}

async fn wait<F: FnMut() -> bool>(what: &str, timeout: Duration, mut f: F) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn fresh_client() -> reqwest::Client {
    // No pooling: every request is a new connection the kernel may give any replica.
    reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).timeout(Duration::from_secs(5)).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_alert_scales_out_and_back_in() {
    let Some(bin) = require(
        "remediation end to end",
        workspace_bin("platform-api"),
        "binary not built (cargo build -p platform-api)",
    ) else {
        return;
    };
    let dir = TempDir::new("remediate_e2e");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let pw = dir.path().join("admin-password");
    std::fs::write(&pw, "correct horse battery staple\n").unwrap();
    let yaml = format!(
        r#"
targets:
  api:
    actuator:
      process:
        command: {bin}
        args: ["--listen", "127.0.0.1:{port}", "--data-dir", "{data}", "--enable-fault-injection",
               "--admin-email", "admin@example.test", "--admin-password-file", "{pw}", "--shutdown-grace", "1s"]
        env: {{PLATFORM_API_LOG: warn}}
        termination_grace: 5s
    min_replicas: 1
    max_replicas: 3
    cooldown: 4s
    scale_down_stabilization: 10s
    escalate_after: 10m
policies:
  - {{name: slow, matchers: ['alertname="ApiSlow"'], action: scale_up, target: api}}
  - {{name: idle, matchers: ['alertname="ApiIdle"'], action: scale_down, target: api}}
"#,
        bin = bin.display(),
        data = dir.path().join("platform").display(),
        pw = pw.display()
    );
    let config: RemediationConfig = serde_saphyr::from_str(&yaml).unwrap();
    let stop = CancellationToken::new();
    let audit = Arc::new(MemoryAuditLog::new(10_000));
    let ctx = BuildContext::new(dir.path().to_path_buf(), stop.clone());
    let remediator = Arc::new(
        Remediator::build(&config, &ctx, audit.clone(), Arc::new(RecordingSink::new(1000)), None).await.unwrap(),
    );

    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let db = Arc::new(Db::new(DbConfig::default()));
    let mut manager = RuleManager::new(vec![rules.display().to_string()], GroupOptions::default());
    manager.reload(&*db, now_ms()).unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));

    // The probe: one request every 50 ms on a fresh connection; its duration is the metric.
    let probe = {
        let (db, stop, seen, url) = (Arc::clone(&db), stop.clone(), Arc::clone(&seen), format!("{base}/v1/records"));
        tokio::spawn(async move {
            let labels = Labels::from_pairs(&[("__name__", "probe_duration_seconds"), ("job", "api")]);
            let client = fresh_client();
            while !stop.is_cancelled() {
                let t = Instant::now();
                match client.get(&url).send().await {
                    // 401 without a token, after the fault middleware's latency.
                    Ok(r) if r.status() == 401 => {
                        db.append(&labels, now_ms(), t.elapsed().as_secs_f64()).unwrap();
                    }
                    _ => seen.lock().unwrap().probe_failures += 1,
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // The agent loop: rules every second, the remediator on each evaluation.
    let agent = {
        let (db, stop, seen, r) = (Arc::clone(&db), stop.clone(), Arc::clone(&seen), Arc::clone(&remediator));
        tokio::spawn(async move {
            let engine = Engine::new(EngineOptions::default());
            while !stop.is_cancelled() {
                if !manager.eval_due(&engine, &*db, now_ms()).is_empty() {
                    let alerts: Vec<AlertInput> =
                        manager.groups().flat_map(|g| g.active_alerts()).map(|a| AlertInput::from(&a)).collect();
                    r.evaluate(&alerts).await;
                    let mut s = seen.lock().unwrap();
                    s.active = alerts
                        .iter()
                        .filter(|a| a.firing)
                        .filter_map(|a| a.labels.get("alertname").map(str::to_string))
                        .collect();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let replicas = |audit: &MemoryAuditLog| {
        audit
            .entries()
            .iter()
            .rev()
            .find(|e| e.decision == "taken" && e.to_replicas.is_some())
            .and_then(|e| e.to_replicas)
            .unwrap_or(1)
    };

    // Healthy: the idle alert fires but the target is at min_replicas.
    wait("a healthy replica", Duration::from_secs(60), || seen.lock().unwrap().active.contains(&"ApiIdle".to_string()))
        .await;
    let c = fresh_client();
    let login = c
        .post(format!("{base}/v1/auth/login"))
        .json(&serde_json::json!({"email": "admin@example.test", "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let token = login.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_string();

    // Inject 400 ms of latency (one replica: it gets the fault).
    let r = c
        .put(format!("{base}/admin/faults"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"latency_ms": 400}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let injected_at = now_ms();
    wait("a scale-up", Duration::from_secs(60), || replicas(&audit) >= 2).await;
    // The new replicas have no fault: the average falls and the alert resolves.
    wait("ApiSlow to resolve", Duration::from_secs(90), || {
        !seen.lock().unwrap().active.contains(&"ApiSlow".to_string())
    })
    .await;
    let peak = replicas(&audit);
    assert!((2..=3).contains(&peak), "{peak}");

    // The incident is over: clear the fault on whichever replica holds it (every replica
    // shares the database, so the token works on all), until probes are fast again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = c.delete(format!("{base}/admin/faults")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 204, "clearing faults");
        let mut fast = 0;
        for _ in 0..15 {
            let t = Instant::now();
            let _ = fresh_client().get(format!("{base}/v1/records")).send().await;
            fast += usize::from(t.elapsed() < Duration::from_millis(200));
        }
        if fast == 15 {
            break;
        }
        assert!(Instant::now() < deadline, "the latency fault could not be cleared");
    }
    wait("scale back down to min_replicas", Duration::from_secs(120), || replicas(&audit) == 1).await;
    stop.cancel();
    let _ = probe.await;
    let _ = agent.await;
    remediator.shutdown().await;

    let entries = audit.entries();
    let taken: Vec<&AuditEntry> = entries.iter().filter(|e| e.decision == "taken" && e.action != "escalate").collect();
    let summary: Vec<String> = taken
        .iter()
        .map(|e| format!("{} {}->{}", e.action, e.from_replicas.unwrap_or(-1), e.to_replicas.unwrap_or(-1)))
        .collect();
    eprintln!("actions: {summary:?}; probe failures: {}", seen.lock().unwrap().probe_failures);
    let ups: Vec<&&AuditEntry> = taken.iter().filter(|e| e.action == "scale_up").collect();
    let downs: Vec<&&AuditEntry> = taken.iter().filter(|e| e.action == "scale_down").collect();
    assert!(!ups.is_empty() && !downs.is_empty(), "{summary:?}");
    assert!(taken.iter().all(|e| e.to_replicas.unwrap() <= 3), "never beyond max_replicas: {summary:?}");
    assert!(ups[0].at_ms >= injected_at);
    // No flapping: all scale-ups come before all scale-downs, and the first scale-down waits
    // out the stabilisation window after the last scale-up.
    let last_up = ups.last().unwrap().at_ms;
    assert!(downs.iter().all(|d| d.at_ms > last_up), "{summary:?}");
    assert!(downs[0].at_ms - last_up >= 10_000, "scale-down {} ms after the last scale-up", downs[0].at_ms - last_up);
    // Each scale-down step is one replica, a stabilisation window apart.
    for w in downs.windows(2) {
        assert!(w[1].at_ms - w[0].at_ms >= 10_000, "{summary:?}");
    }
    assert_eq!(downs.last().unwrap().to_replicas, Some(1));
    // The skips that held it back are in the audit log, with their reasons.
    assert!(entries.iter().any(|e| e.reason.starts_with("stabilization")), "no stabilisation skip recorded");
}
