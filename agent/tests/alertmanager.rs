//! The Alertmanager receiver against a real Alertmanager (Debian's
//! `prometheus-alertmanager`, found as `WARDEN_ALERTMANAGER` or
//! `/usr/bin/prometheus-alertmanager`): Warden posts alerts to `POST /api/v2/alerts`,
//! Alertmanager groups and routes them (group_wait 1s) to a webhook receiver served by
//! this test, which checks Alertmanager's v4 payload carries our (redacted) labels and
//! annotations, with the fingerprints Warden computed; `GET /api/v2/alerts` lists them;
//! resolving them makes Alertmanager send a resolved notification. The payload a real
//! Alertmanager sends is also compared with the documented v4 fixture our webhook
//! receiver is checked against.

use axum::body::Bytes;
use axum::extract::State;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use warden::notify::alert::{AlertStatus, NotifyAlert};
use warden::notify::message::{Notification, NotificationAlert};
use warden::notify::receivers::alertmanager::{AlertmanagerConfig, AlertmanagerReceiver};
use warden::notify::receivers::{BuildContext, Receiver, ReceiverConfig, ReceiverError, ReceiverMetrics};
use warden_collector::redact::Redactor;
use warden_rules::labels::Labels;
use warden_testkit::{Child, TempDir, free_port, wait_for_port};

const SSN: &str = "123-45-6789";

/// The webhook Alertmanager notifies: every payload it posts.
#[derive(Clone, Default)]
struct Hook(Arc<Mutex<Vec<Value>>>);

async fn hook(State(h): State<Hook>, body: Bytes) -> &'static str {
    if let Ok(v) = serde_json::from_slice(&body) {
        h.0.lock().unwrap().push(v);
    }
    "ok"
}

impl Hook {
    /// Waits until a payload satisfies `pred` (at most `secs`).
    async fn wait_for(&self, secs: u64, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Some(v) = self.0.lock().unwrap().iter().find(|v| pred(v)) {
                return Some(v.clone());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

struct Alertmanager {
    _child: Child,
    _dir: TempDir,
    url: String,
}

async fn start_alertmanager(hook_url: &str) -> Option<Alertmanager> {
    let bin =
        warden_testkit::find_program("WARDEN_ALERTMANAGER", &["/usr/bin/prometheus-alertmanager", "alertmanager"]);
    let bin = warden_testkit::require(
        "Alertmanager receiver test",
        bin,
        "no Alertmanager (apt-get install prometheus-alertmanager, or set WARDEN_ALERTMANAGER)",
    )?;
    let dir = TempDir::new("alertmanager");
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: warden-test\n  group_by: [alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: warden-test\n    webhook_configs:\n      - url: {hook_url}\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let listen = format!("--web.listen-address=127.0.0.1:{port}");
    let storage = format!("--storage.path={}", dir.path().join("data").display());
    let cfg = format!("--config.file={}", config.display());
    let child =
        Child::spawn(&bin, &[&listen, "--cluster.listen-address=", &storage, &cfg]).expect("start alertmanager");
    assert!(wait_for_port(port, Duration::from_secs(30)), "alertmanager did not listen");
    let url = format!("http://127.0.0.1:{port}");
    // Ready once the configuration is loaded.
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = client.get(format!("{url}/-/ready")).send().await.is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "alertmanager not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some(Alertmanager { _child: child, _dir: dir, url })
}

fn alert(instance: &str, status: AlertStatus) -> NotifyAlert {
    let labels = Labels::from_pairs(&[
        ("alertname", "WardenHighLatency"),
        ("instance", instance),
        ("severity", "critical"),
        ("service", "platform-api"),
    ]);
    let ann = Labels::from_pairs(&[
        ("summary", format!("latency high while serving patient {SSN}").as_str()),
        ("runbook_url", "https://runbooks.example.org/latency"),
    ]);
    let start = 1_714_557_600_000;
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let end = (status == AlertStatus::Resolved).then_some(now_ms - 1000);
    let mut a = NotifyAlert::new(labels, ann, status, start, end);
    a.generator_url = "http://127.0.0.1:9464/rules#latency".to_owned();
    a
}

fn notification(alerts: &[NotifyAlert]) -> Notification {
    Notification::build(
        &Redactor::default_mask(),
        "am",
        "{}:{alertname=\"WardenHighLatency\"}",
        &Labels::from_pairs(&[("alertname", "WardenHighLatency")]),
        alerts,
        "http://127.0.0.1:9464",
    )
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

#[tokio::test]
async fn alertmanager_routes_warden_alerts_to_a_webhook() {
    // The webhook Alertmanager will call.
    let hook_state = Hook::default();
    let app = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(hook_state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(s.cancelled_owned()).await;
    });
    let Some(am) = start_alertmanager(&hook_url).await else { return };

    // Warden's receiver, built from config; a dead second instance must not matter.
    let dead = free_port();
    let cfg: ReceiverConfig = serde_saphyr::from_str(&format!(
        "name: am\nalertmanager_configs:\n  - urls: [{}, http://127.0.0.1:{dead}]\n    timeout: 5s\n",
        am.url
    ))
    .unwrap();
    let ctx = BuildContext { metrics: Arc::new(ReceiverMetrics::default()), ..BuildContext::default() };
    let (r, send_resolved) = cfg.build_with(&ctx).unwrap().remove(0);
    assert!(send_resolved);
    assert_eq!(r.integration(), "alertmanager");

    let firing = notification(&[alert("api-1:8080", AlertStatus::Firing), alert("api-2:8080", AlertStatus::Firing)]);
    r.send(&firing).await.unwrap();

    // Alertmanager groups them (group_wait 1s) and calls the webhook.
    let payload = hook_state
        .wait_for(20, |v| v["status"] == "firing" && v["alerts"].as_array().is_some_and(|a| a.len() == 2))
        .await
        .expect("alertmanager did not notify the webhook");
    assert_eq!(payload["version"], "4");
    assert_eq!(payload["receiver"], "warden-test");
    assert_eq!(payload["groupLabels"], serde_json::json!({"alertname": "WardenHighLatency"}));
    assert_eq!(payload["commonLabels"]["service"], "platform-api");
    // A real Alertmanager's payload has exactly the documented keys, as ours does.
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/alertmanager_webhook_v4.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(keys(&payload), keys(&doc));
    assert_eq!(keys(&payload["alerts"][0]), keys(&doc["alerts"][0]));
    assert_eq!(keys(&payload), keys(&serde_json::to_value(&firing).unwrap()));

    let ours: Vec<&NotificationAlert> = firing.alerts().iter().collect();
    for a in payload["alerts"].as_array().unwrap() {
        let o = ours
            .iter()
            .find(|o| o.labels().get("instance").map(String::as_str) == a["labels"]["instance"].as_str())
            .expect("an alert we sent");
        assert_eq!(a["labels"], serde_json::to_value(o.labels()).unwrap());
        assert_eq!(a["annotations"], serde_json::to_value(o.annotations()).unwrap());
        assert_eq!(a["generatorURL"], o.generator_url());
        assert_eq!(a["status"], "firing");
        // Alertmanager's fingerprint of the labels is the one Warden computed.
        assert_eq!(a["fingerprint"], o.fingerprint());
        let summary = a["annotations"]["summary"].as_str().unwrap();
        assert!(summary.contains("[REDACTED:SSN]") && !summary.contains(SSN), "{summary}");
        assert!(a["startsAt"].as_str().unwrap().starts_with("2024-05-01T10:00:00"));
    }

    // The API lists them, active.
    let listed: Value = reqwest::get(format!("{}/api/v2/alerts", am.url)).await.unwrap().json().await.unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{listed:#?}");
    for a in listed {
        assert_eq!(a["status"]["state"], "active");
        assert_eq!(a["labels"]["alertname"], "WardenHighLatency");
        assert!(a["annotations"]["summary"].as_str().unwrap().contains("[REDACTED:SSN]"));
        assert_eq!(a["receivers"][0]["name"], "warden-test");
    }

    // Resolve both (send_alerts: individual alerts, as Prometheus hands them over).
    let resolved =
        notification(&[alert("api-1:8080", AlertStatus::Resolved), alert("api-2:8080", AlertStatus::Resolved)]);
    let direct = AlertmanagerReceiver::new(
        "am",
        &AlertmanagerConfig {
            urls: vec![am.url.clone()],
            send_resolved: true,
            timeout: Duration::from_secs(5),
            firing_ttl: Duration::from_secs(3600),
        },
        reqwest::Client::new(),
    );
    direct.send_alerts(resolved.alerts()).await.unwrap();
    let payload = hook_state
        .wait_for(20, |v| v["status"] == "resolved")
        .await
        .expect("alertmanager did not send the resolved notification");
    assert_eq!(payload["alerts"].as_array().unwrap().len(), 2);
    assert!(payload["alerts"].as_array().unwrap().iter().all(|a| a["status"] == "resolved"));

    // An alert Alertmanager refuses (an invalid label name): permanent, named by status.
    let bad = NotifyAlert::new(
        Labels::from_pairs(&[("alertname", "X"), ("bad-label", "v")]),
        Labels::empty(),
        AlertStatus::Firing,
        1_714_557_600_000,
        None,
    );
    let err = direct.send(&notification(&[bad])).await.unwrap_err();
    assert_eq!(err, ReceiverError::Permanent("alertmanager receiver \"am\": HTTP 400".to_owned()));

    // No instance reachable: retryable.
    let gone = AlertmanagerReceiver::new(
        "am",
        &AlertmanagerConfig {
            urls: vec![format!("http://127.0.0.1:{dead}")],
            send_resolved: true,
            timeout: Duration::from_secs(2),
            firing_ttl: Duration::from_secs(3600),
        },
        reqwest::Client::new(),
    );
    assert!(gone.send(&firing).await.unwrap_err().is_retryable());
    stop.cancel();
}
