//! The remediator's guardrails on a simulated clock: cooldown, max actions with a single
//! escalation, min/max clamping, HPA tolerance, scale-down stabilisation, restart backoff,
//! dry run, pause, escalation when an action did not help, skip dedup, leadership, and a
//! flapping signal over ten minutes.
//!
//! The actuator here is an in-memory replica counter (what is under test is the decision
//! logic; the real actuators have their own tests), except the `exec` test, which runs a
//! real command.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warden::remediate::actuator::{ActionOutcome, Actuator, ActuatorError};
use warden::remediate::leader::{AlwaysLeader, LeaderElection};
use warden::remediate::{
    AlertInput, AuditEntry, BoxFuture, ManualClock, MemoryAuditLog, RecordingSink, RemediationConfig, Remediator,
    RemediatorDeps,
};

const T0: i64 = 1_700_000_000_000;

/// Replicas in memory; every call is logged.
#[derive(Default)]
struct Counter {
    replicas: Mutex<i64>,
    calls: Mutex<Vec<String>>,
    fail: AtomicBool,
}

impl Counter {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn replicas(&self) -> i64 {
        *self.replicas.lock().unwrap()
    }
}

impl Actuator for Counter {
    fn kind(&self) -> &'static str {
        "counter"
    }
    fn current_replicas(&self) -> BoxFuture<'_, Result<i64, ActuatorError>> {
        Box::pin(async move { Ok(*self.replicas.lock().unwrap()) })
    }
    fn scale_to(&self, n: i64) -> BoxFuture<'_, Result<ActionOutcome, ActuatorError>> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(format!("scale {n}"));
            if self.fail.load(Ordering::SeqCst) {
                return Err(ActuatorError {
                    message: "api unreachable".into(),
                    detail: Some("connect refused".into()),
                });
            }
            *self.replicas.lock().unwrap() = n;
            Ok(ActionOutcome::default())
        })
    }
    fn restart(&self, instance: Option<String>) -> BoxFuture<'_, Result<ActionOutcome, ActuatorError>> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(format!("restart {}", instance.unwrap_or_default()));
            Ok(ActionOutcome::default())
        })
    }
}

struct Leader(AtomicBool);

impl LeaderElection for Leader {
    fn is_leader(&self, _: &str) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    fn confirm<'a>(&'a self, _: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(std::future::ready(self.0.load(Ordering::SeqCst)))
    }
    fn kind(&self, _: &str) -> &'static str {
        "test"
    }
}

struct H {
    r: Remediator,
    clock: Arc<ManualClock>,
    audit: Arc<MemoryAuditLog>,
    sink: Arc<RecordingSink>,
    act: Arc<Counter>,
}

const EXEC_STUB: &str =
    "{exec: {restart: {argv: [/bin/true]}, scale: {argv: [/bin/true]}, replicas: {argv: [/bin/true]}}}";

/// An engine over `yaml` (a `remediation:` section whose targets use [`EXEC_STUB`] as
/// actuator) with the counter standing in for target `api` at `replicas`.
fn harness_with(yaml: &str, replicas: i64, leader: Arc<dyn LeaderElection>) -> H {
    let yaml = yaml.replace("ACT", EXEC_STUB);
    let config: RemediationConfig = serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let clock = Arc::new(ManualClock::new(T0));
    let audit = Arc::new(MemoryAuditLog::new(100_000));
    let sink = Arc::new(RecordingSink::new(100_000));
    let act = Arc::new(Counter { replicas: Mutex::new(replicas), ..Counter::default() });
    let actuators: HashMap<String, Arc<dyn Actuator>> =
        config.targets.keys().map(|k| (k.clone(), Arc::clone(&act) as Arc<dyn Actuator>)).collect();
    let deps = RemediatorDeps { actuators, audit: audit.clone(), sink: sink.clone(), leader, clock: clock.clone() };
    let r = Remediator::new(&config, deps).unwrap_or_else(|e| panic!("{e:#?}"));
    H { r, clock, audit, sink, act }
}

fn harness(yaml: &str, replicas: i64) -> H {
    harness_with(yaml, replicas, Arc::new(AlwaysLeader))
}

fn high() -> AlertInput {
    AlertInput::firing(&[("alertname", "HighLatency"), ("service", "api")], 2.0, T0)
}

fn low() -> AlertInput {
    AlertInput::firing(&[("alertname", "LowLoad"), ("service", "api")], 0.1, T0)
}

impl H {
    async fn eval(&self, alerts: &[AlertInput]) -> Vec<AuditEntry> {
        self.r.evaluate(alerts).await
    }
    fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }
    /// `decision/reason-code` of every audit entry, in order.
    fn log(&self) -> Vec<String> {
        self.audit.entries().iter().map(summary).collect()
    }
}

fn summary(e: &AuditEntry) -> String {
    let code = e.reason.split(':').next().unwrap_or("");
    match (e.from_replicas, e.to_replicas) {
        (Some(f), Some(t)) if e.decision != "skipped" => format!("{} {} {f}->{t}", e.action, e.decision),
        _ => format!("{} {} {code}", e.action, e.decision),
    }
}

const SCALE_UP: &str = r#"
targets:
  api:
    actuator: ACT
    min_replicas: 1
    max_replicas: 5
policies:
  - name: up
    matchers: ['alertname="HighLatency"']
    action: scale_up
    target: api
"#;

#[tokio::test]
async fn cooldown_holds_actions_and_records_one_skip() {
    let h = harness(SCALE_UP, 1);
    let got = h.eval(&[high()]).await;
    assert_eq!(got.iter().map(summary).collect::<Vec<_>>(), ["scale_up taken 1->2"]);
    assert_eq!(got[0].alert, "HighLatency{service=\"api\"}");
    assert_eq!(got[0].detail.as_deref(), Some("policy up"));
    // A 15 s loop for the rest of the 3 m cooldown: one skip row, not eleven.
    for _ in 0..11 {
        h.advance(15);
        h.eval(&[high()]).await;
    }
    assert_eq!(h.log(), ["scale_up taken 1->2", "scale_up skipped cooldown"]);
    assert!(
        h.audit.entries()[1].reason.starts_with("cooldown: last action 15s ago, cooldown 3m"),
        "{:?}",
        h.audit.entries()[1]
    );
    assert_eq!(h.r.counters().skips_suppressed.load(Ordering::Relaxed), 10);
    h.advance(15); // 180 s after the action
    h.eval(&[high()]).await;
    assert_eq!(h.log().last().unwrap(), "scale_up taken 2->3");
    assert_eq!(h.act.calls(), ["scale 2", "scale 3"]);
    // Every recorded decision also went to the notifier, none as a page.
    assert_eq!(h.sink.events().len(), 3);
    assert!(h.sink.escalations().is_empty());
}

#[tokio::test]
async fn max_actions_per_window_pages_once() {
    let h = harness(
        r#"
targets:
  api: {actuator: ACT, max_replicas: 50, cooldown: 0s, max_actions: {count: 3, window: 1h}}
policies:
  - {name: up, matchers: ['alertname="HighLatency"'], action: scale_up, target: api}
"#,
        1,
    );
    for _ in 0..40 {
        h.eval(&[high()]).await;
        h.advance(15);
    }
    assert_eq!(
        h.log(),
        [
            "scale_up taken 1->2",
            "scale_up taken 2->3",
            "scale_up taken 3->4",
            "scale_up skipped max_actions",
            "escalate taken max_actions"
        ]
    );
    let pages = h.sink.escalations();
    assert_eq!(pages.len(), 1, "one page, not one per evaluation");
    assert_eq!(pages[0].policy, "up");
    assert_eq!(pages[0].alert_labels.get("service"), Some("api"));
    assert!(
        pages[0].entry.reason.starts_with("max_actions: 3 actions in the last 1h (limit 3)"),
        "{}",
        pages[0].entry.reason
    );
    // Once the first actions leave the window the target may act again.
    h.clock.set(T0 + 3_600_000 + 1);
    h.eval(&[high()]).await;
    assert_eq!(h.log().last().unwrap(), "scale_up taken 4->5");
}

#[tokio::test]
async fn replicas_are_clamped_and_max_pages_once() {
    let h = harness(
        r#"
targets:
  api: {actuator: ACT, min_replicas: 2, max_replicas: 4, cooldown: 1m, escalate_after: 1h}
policies:
  - {name: up, matchers: ['alertname="HighLatency"'], action: scale_up, target: api, step: 5}
  - {name: down, matchers: ['alertname="LowLoad"'], action: scale_down, target: api, step: 10}
"#,
        1,
    );
    h.eval(&[high()]).await;
    assert_eq!(h.act.replicas(), 4, "1 + 5 clamped to max_replicas");
    for _ in 0..10 {
        h.advance(60);
        h.eval(&[high()]).await;
    }
    assert_eq!(h.log(), ["scale_up taken 1->4", "scale_up skipped at_max_replicas", "escalate taken at_max_replicas"]);
    assert_eq!(h.sink.escalations().len(), 1);
    // Scale-down: 4 - 10 clamped to min_replicas (after the stabilisation window).
    h.advance(600);
    h.eval(&[low()]).await;
    assert_eq!(h.act.replicas(), 2);
    h.advance(600);
    h.eval(&[low()]).await;
    assert_eq!(h.log()[3..], ["scale_down taken 4->2", "scale_down skipped at_min_replicas"]);
    assert_eq!(h.act.calls(), ["scale 4", "scale 2"]);
}

#[tokio::test]
async fn proportional_scaling_with_tolerance() {
    let h = harness(
        r#"
targets:
  api: {actuator: ACT, max_replicas: 10, cooldown: 0s, scale_down_stabilization: 0s}
policies:
  - {name: hpa, matchers: ['alertname="Utilisation"'], action: scale_to, target: api, ratio_from: {target_value: 0.5}}
"#,
        2,
    );
    let util = |v: f64| AlertInput::firing(&[("alertname", "Utilisation")], v, T0);
    // 0.54 / 0.5 = 1.08: within the 10 % tolerance.
    h.eval(&[util(0.54)]).await;
    assert_eq!(h.log(), ["scale_to skipped within_tolerance"]);
    // 1.2 / 0.5 = 2.4 → ceil(2 × 2.4) = 5.
    h.advance(15);
    h.eval(&[util(1.2)]).await;
    assert_eq!(h.act.replicas(), 5);
    // The highest value of several matching alerts decides (HPA takes the largest proposal).
    h.advance(15);
    let a = AlertInput::firing(&[("alertname", "Utilisation"), ("pod", "a")], 0.6, T0);
    let b = AlertInput::firing(&[("alertname", "Utilisation"), ("pod", "b")], 0.9, T0);
    h.eval(&[a, b]).await;
    assert_eq!(h.act.replicas(), 9, "ceil(5 × 0.9/0.5)");
    // Far beyond max: clamped.
    h.advance(15);
    h.eval(&[util(50.0)]).await;
    assert_eq!(h.act.replicas(), 10);
    // Down: 0.2/0.5 → ceil(10 × 0.4) = 4 (no stabilisation window here).
    h.advance(15);
    h.eval(&[util(0.2)]).await;
    assert_eq!(h.act.replicas(), 4);
    // A value that is not a number is refused.
    h.advance(15);
    h.eval(&[util(f64::NAN)]).await;
    assert_eq!(h.log().last().unwrap(), "scale_to skipped alert_value");
    assert_eq!(h.act.calls(), ["scale 5", "scale 9", "scale 10", "scale 4"]);
}

#[tokio::test]
async fn scale_down_waits_for_the_stabilisation_window() {
    let h = harness(
        r#"
targets:
  api: {actuator: ACT, max_replicas: 5, cooldown: 30s, scale_down_stabilization: 5m}
policies:
  - {name: up, matchers: ['alertname="HighLatency"'], action: scale_up, target: api}
  - {name: down, matchers: ['alertname="LowLoad"'], action: scale_down, target: api}
"#,
        1,
    );
    h.eval(&[high()]).await; // 1 → 2
    h.advance(60);
    h.eval(&[high()]).await; // 2 → 3 at T0+60s
    // The latency alert resolves; low load is seen from T0+2m on.
    let mut t = 120;
    h.clock.set(T0 + t * 1000);
    while t < 420 {
        h.eval(&[low()]).await;
        t += 15;
        h.clock.set(T0 + t * 1000);
    }
    let log = h.log();
    assert_eq!(log[..3], ["scale_up taken 1->2", "scale_up taken 2->3", "scale_down skipped stabilization"]);
    // The first scale-down is 5 m after the last recommendation of 3 (the action at 60 s).
    let entries = h.audit.entries();
    let downs: Vec<&AuditEntry> =
        entries.iter().filter(|e| e.decision == "taken" && e.action == "scale_down").collect();
    assert_eq!(downs.len(), 1, "{log:?}");
    assert_eq!((downs[0].from_replicas, downs[0].to_replicas), (Some(3), Some(2)));
    assert_eq!(downs[0].at_ms, T0 + 360_000 + 15_000, "first evaluation after 60 s + 5 m (window is inclusive)");
}

#[tokio::test]
async fn restart_backoff_doubles() {
    let h = harness(
        r#"
targets:
  api: {actuator: ACT, cooldown: 0s, max_actions: {count: 100}, restart_backoff: {initial: 10s, max: 40s}}
policies:
  - {name: stuck, matchers: ['alertname="Stuck"'], action: restart, target: api, instance_label: replica}
"#,
        1,
    );
    let stuck = AlertInput::firing(&[("alertname", "Stuck"), ("replica", "2")], 1.0, T0);
    let mut restarts = vec![];
    for s in 0..=150 {
        h.clock.set(T0 + s * 1000);
        if h.eval(std::slice::from_ref(&stuck)).await.iter().any(|e| e.decision == "taken" && e.action == "restart") {
            restarts.push(s);
        }
    }
    assert_eq!(restarts, [0, 10, 30, 70, 110, 150], "backoff 10s, 20s, 40s, 40s, 40s");
    assert!(h.act.calls().iter().all(|c| c == "restart 2"), "{:?}", h.act.calls());
    // Resolution resets the backoff: the next episode restarts at once, then 10 s later.
    h.eval(&[]).await;
    h.clock.set(T0 + 151_000);
    assert!(h.eval(std::slice::from_ref(&stuck)).await.iter().any(|e| e.decision == "taken"));
    h.clock.set(T0 + 161_000);
    assert!(h.eval(std::slice::from_ref(&stuck)).await.iter().any(|e| e.decision == "taken"));
    // An alert without the instance label is skipped with a reason.
    h.clock.set(T0 + 400_000);
    let got = h.eval(&[AlertInput::firing(&[("alertname", "Stuck")], 1.0, T0)]).await;
    assert_eq!(got.iter().map(summary).collect::<Vec<_>>(), ["restart skipped no_instance"]);
}

#[tokio::test]
async fn dry_run_decides_everything_and_acts_on_nothing() {
    let yaml = format!("dry_run: true\n{SCALE_UP}");
    let h = harness(&yaml, 1);
    h.eval(&[high()]).await;
    h.advance(60);
    h.eval(&[high()]).await;
    h.advance(180);
    h.eval(&[high()]).await;
    assert_eq!(h.log(), ["scale_up dry_run 1->2", "scale_up skipped cooldown", "scale_up dry_run 1->2"]);
    assert!(h.audit.entries()[0].reason.starts_with("dry_run: would scale from 1 to 2"));
    assert!(h.act.calls().is_empty(), "nothing acted: {:?}", h.act.calls());
    // Ten minutes later the alert still fires: the escalation is recorded but is no page.
    h.advance(600);
    h.eval(&[high()]).await;
    assert!(h.log().contains(&"escalate dry_run unresolved".to_string()), "{:?}", h.log());
    assert!(h.sink.escalations().is_empty());
}

#[tokio::test]
async fn pause_and_resume() {
    let yaml = format!(
        "{SCALE_UP}\n  - {{name: up2, matchers: ['alertname=\"HighLatency\"'], action: scale_up, target: web}}\n"
    )
    .replace("targets:\n", "targets:\n  web: {actuator: ACT, max_replicas: 5}\n");
    let h = harness(&yaml, 1);
    h.r.pause(None).unwrap();
    h.eval(&[high()]).await;
    h.advance(15);
    h.eval(&[high()]).await;
    assert_eq!(h.log(), ["scale_up skipped paused", "scale_up skipped paused"], "one per policy");
    assert!(h.act.calls().is_empty());
    h.r.resume(None).unwrap();
    h.r.pause(Some("web")).unwrap();
    assert_eq!(h.r.paused(), (false, vec!["web".to_string()]));
    assert!(h.r.pause(Some("nope")).is_err());
    h.advance(15);
    let got = h.eval(&[high()]).await;
    assert_eq!(
        got.iter().map(|e| format!("{} {}", e.target, summary(e))).collect::<Vec<_>>(),
        ["api scale_up taken 1->2", "web scale_up skipped target_paused"]
    );
    let st = h.r.status().await;
    assert!(st.iter().any(|s| s.name == "web" && s.paused));
    assert!(st.iter().any(|s| s.name == "api" && !s.paused && s.actions_in_window == 1 && s.leader));
}

#[tokio::test]
async fn escalates_once_when_the_alert_does_not_resolve() {
    let h = harness(SCALE_UP, 1);
    for _ in 0..(15 * 4) {
        h.eval(&[high()]).await;
        h.advance(15);
    }
    // Actions at 0, 3, 6 and 9 min (then 5 = max_replicas); pages at 10 min (unresolved)
    // and at 12 min (at max_replicas).
    let pages = h.sink.escalations();
    assert_eq!(pages.len(), 2, "{:?}", h.log());
    assert!(pages[0].entry.reason.starts_with("unresolved: alert still firing 10m after the first action"));
    assert_eq!(pages[0].entry.at_ms, T0 + 600_000);
    assert!(pages[1].entry.reason.starts_with("at_max_replicas"), "{}", pages[1].entry.reason);
    // Resolved, then firing again: a new episode escalates again after 10 minutes.
    h.eval(&[]).await;
    for _ in 0..(11 * 4) {
        h.advance(15);
        h.eval(&[high()]).await;
    }
    let unresolved = h.sink.escalations().iter().filter(|e| e.entry.reason.starts_with("unresolved")).count();
    // The target is at max, so the new episode's first decision is a skip, not an
    // action: no action, no "did not help" page.
    assert_eq!(unresolved, 1);
}

#[tokio::test]
async fn failed_actions_count_and_are_audited() {
    let h = harness(SCALE_UP, 1);
    h.act.fail.store(true, Ordering::SeqCst);
    h.eval(&[high()]).await;
    h.advance(60);
    h.eval(&[high()]).await;
    assert_eq!(h.log(), ["scale_up failed 1->2", "scale_up skipped cooldown"]);
    let e = &h.audit.entries()[0];
    assert_eq!(e.reason, "failed: scale from 1 to 2: api unreachable");
    assert_eq!(e.detail.as_deref(), Some("policy up\nconnect refused"));
    assert_eq!(h.r.counters().failed.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn only_the_leader_acts() {
    let leader = Arc::new(Leader(AtomicBool::new(false)));
    let h = harness_with(SCALE_UP, 1, leader.clone());
    for _ in 0..5 {
        h.eval(&[high()]).await;
        h.advance(15);
    }
    assert_eq!(h.log(), ["scale_up skipped not_leader"]);
    leader.0.store(true, Ordering::SeqCst);
    h.eval(&[high()]).await;
    assert_eq!(h.log().last().unwrap(), "scale_up taken 1->2");
}

#[tokio::test]
async fn exec_action_runs_a_command_with_context() {
    let h = harness(
        r#"
targets:
  api: {actuator: ACT}
policies:
  - name: flush
    matchers: ['alertname="CacheFull"']
    action: exec
    target: api
    command: {argv: ["/bin/sh", "-c", "echo $WARDEN_POLICY $WARDEN_ALERTNAME $WARDEN_ALERT_VALUE; echo oops >&2"], timeout: 5s}
"#,
        1,
    );
    let got = h.eval(&[AlertInput::firing(&[("alertname", "CacheFull")], 0.97, T0)]).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].decision, "taken");
    assert_eq!(
        got[0].detail.as_deref(),
        Some("policy flush\nexit code 0\nstdout:\nflush CacheFull 0.97\n\nstderr:\noops\n")
    );
}

#[tokio::test]
async fn unmatched_alerts_and_pending_alerts_do_nothing() {
    let h = harness(SCALE_UP, 1);
    let mut pending = high();
    pending.firing = false;
    h.eval(&[pending, AlertInput::firing(&[("alertname", "Other")], 1.0, T0)]).await;
    assert!(h.log().is_empty());
}

/// Ten minutes of a latency signal that flips every 30 s between "too slow" and "idle",
/// evaluated every 15 s: the guardrails keep actions few and never scale down right
/// after scaling up.
#[tokio::test]
async fn flapping_signal_for_ten_minutes_is_bounded() {
    let h = harness(
        r#"
targets:
  api: {actuator: ACT, min_replicas: 1, max_replicas: 6}
policies:
  - {name: up, matchers: ['alertname="HighLatency"'], action: scale_up, target: api}
  - {name: down, matchers: ['alertname="LowLoad"'], action: scale_down, target: api}
"#,
        2,
    );
    let mut replicas = vec![h.act.replicas()];
    for i in 0..40 {
        let alert = if (i / 2) % 2 == 0 { high() } else { low() };
        h.eval(&[alert]).await;
        replicas.push(h.act.replicas());
        h.advance(15);
    }
    let taken: Vec<AuditEntry> =
        h.audit.entries().into_iter().filter(|e| e.decision == "taken" && e.action != "escalate").collect();
    // 10 minutes / 3-minute cooldown: at most 4 actions, and the default budget (6/h) holds.
    assert!(taken.len() <= 4, "{:?}", h.log());
    assert!(!taken.is_empty());
    // No scale-down within the 5-minute stabilisation window of any scale-up.
    for (i, d) in taken.iter().enumerate().filter(|(_, e)| e.action == "scale_down") {
        for u in taken[..i].iter().filter(|e| e.action == "scale_up") {
            assert!(d.at_ms - u.at_ms > 300_000, "scale-down {} ms after a scale-up: {:?}", d.at_ms - u.at_ms, h.log());
        }
    }
    // No direction changes back and forth: the count only went up in these 10 minutes.
    assert!(replicas.windows(2).all(|w| w[1] >= w[0]), "{replicas:?}");
    assert!(replicas.iter().all(|r| (1..=6).contains(r)));
    // And the audit log stays small: decisions, not evaluations.
    assert!(h.audit.entries().len() < 30, "{} rows: {:?}", h.audit.entries().len(), h.log());
}

#[tokio::test]
async fn decisions_go_to_the_state_store() {
    let dir = warden_testkit::TempDir::new("remediate_store");
    let store = warden::store::Store::open(&format!("sqlite://{}/warden.db", dir.path().display())).await.unwrap();
    let config: RemediationConfig = serde_saphyr::from_str(&SCALE_UP.replace("ACT", EXEC_STUB)).unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let act: Arc<dyn Actuator> = Arc::new(Counter { replicas: Mutex::new(1), ..Counter::default() });
    let r = Remediator::new(
        &config,
        RemediatorDeps {
            actuators: [("api".to_string(), act)].into_iter().collect(),
            audit: Arc::new(store.clone()),
            sink: Arc::new(RecordingSink::new(10)),
            leader: Arc::new(AlwaysLeader),
            clock: clock.clone(),
        },
    )
    .unwrap();
    r.evaluate(&[high()]).await;
    clock.advance(Duration::from_secs(20));
    r.evaluate(&[high()]).await;
    let rows = store.audit_log(Some("api"), None, 100).await.unwrap();
    let mut got: Vec<(String, String, Option<i64>)> =
        rows.iter().map(|r| (r.entry.action.clone(), r.entry.decision.clone(), r.entry.to_replicas)).collect();
    got.sort();
    assert_eq!(
        got,
        [("scale_up".to_string(), "skipped".to_string(), None), ("scale_up".to_string(), "taken".to_string(), Some(2))]
    );
    assert_eq!(r.counters().audit_errors.load(Ordering::Relaxed), 0);
}
