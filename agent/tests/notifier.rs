//! The notifier with Alertmanager's semantics, on a simulated clock (hours pass without
//! sleeping): routing (regex matchers, `continue`), `group_by`, `group_wait` /
//! `group_interval` / `repeat_interval`, inheritance, inhibition, silences from the store,
//! resolved notifications and `send_resolved`, failures and retries, deduplication across
//! restarts through the notification log (SQLite and PostgreSQL), and restoration of `for`
//! through the store's `AlertStateStore` with the rules crate's groups. Receivers are a
//! recording [`Dispatch`]; the real loop ([`Notifier::run`]) is exercised once with tokio
//! timers.

mod store_common;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use store_common::{Backend, TestDb};
use tokio_util::sync::CancellationToken;
use warden::notify::alert::{AlertStatus, NotifyAlert};
use warden::notify::config::NotifyConfig;
use warden::notify::dispatch::{Dispatch, Integration, Notifier, NotifierOptions, SystemClock};
use warden::notify::matcher::Matcher;
use warden::notify::message::Notification;
use warden::notify::receivers::{ReceiverError, SendFuture};
use warden::store::{AlertStateCache, NewSilence, Store};
use warden_collector::redact::Redactor;
use warden_rules::alerting::{AlertState, AlertStateStore, RestoreOptions};
use warden_rules::group::{Group, GroupOptions};
use warden_rules::labels::Labels;
use warden_rules::storage::{Db, DbConfig};

const T0: i64 = 1_700_000_000_000;
const S: i64 = 1000;
const M: i64 = 60 * S;
const H: i64 = 60 * M;

on_both_backends!(restart_does_not_page_again_within_repeat_interval, restart_keeps_for_state_and_pages_once);

/// One notification as a receiver got it.
#[derive(Clone, Debug)]
struct Sent {
    at: i64,
    receiver: String,
    integration: usize,
    group_key: String,
    status: AlertStatus,
    /// `alertname[instance]`, `!` appended if resolved, in notification order.
    alerts: Vec<String>,
    group_labels: BTreeMap<String, String>,
    json: serde_json::Value,
}

/// A [`Dispatch`] that records, and fails for receivers listed in `failing`.
#[derive(Default)]
struct Recorder {
    integrations: BTreeMap<String, Vec<Integration>>,
    sent: Mutex<Vec<Sent>>,
    failing: Mutex<HashSet<String>>,
}

impl Recorder {
    /// Receivers with one `webhook[0]` integration (send_resolved) each.
    fn new(receivers: &[&str]) -> Recorder {
        let mut r = Recorder::default();
        for name in receivers {
            r.integrations
                .insert(name.to_string(), vec![Integration { name: "webhook[0]".to_owned(), send_resolved: true }]);
        }
        r
    }
}

fn short(a: &warden::notify::message::NotificationAlert) -> String {
    let mut s = a.alertname().to_owned();
    if let Some(i) = a.labels().get("instance") {
        s.push_str(&format!("[{i}]"));
    }
    if a.status() == AlertStatus::Resolved {
        s.push('!');
    }
    s
}

impl Dispatch for Recorder {
    fn integrations(&self, receiver: &str) -> Vec<Integration> {
        self.integrations.get(receiver).cloned().unwrap_or_default()
    }

    fn send<'a>(&'a self, receiver: &'a str, integration: usize, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(async move {
            if self.failing.lock().unwrap().contains(receiver) {
                return Err(ReceiverError::Retryable(format!("webhook receiver {receiver:?}: HTTP 503")));
            }
            self.sent.lock().unwrap().push(Sent {
                at: 0,
                receiver: receiver.to_owned(),
                integration,
                group_key: n.group_key().to_owned(),
                status: n.status(),
                alerts: n.alerts().iter().map(short).collect(),
                group_labels: n.group_labels().clone(),
                json: serde_json::from_slice(&n.to_json()).unwrap(),
            });
            Ok(())
        })
    }
}

/// A notifier on a simulated clock.
struct Sim {
    n: Notifier<Recorder>,
    rec: Arc<Recorder>,
    store: Store,
    now: i64,
}

fn config(yaml: &str) -> NotifyConfig {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("config: {e}"))
}

impl Sim {
    async fn new(yaml: &str, rec: Recorder, store: Store, now: i64) -> Sim {
        let rec = Arc::new(rec);
        let n = Notifier::new(
            &config(yaml),
            Arc::clone(&rec),
            store.clone(),
            Arc::new(Redactor::default_mask()),
            NotifierOptions { external_url: "http://warden.test:9464".to_owned(), ..Default::default() },
            now,
        )
        .await
        .unwrap();
        Sim { n, rec, store, now }
    }

    fn update(&mut self, alerts: &[NotifyAlert]) {
        self.n.update(self.now, alerts);
    }

    /// Flushes at every deadline up to `to`; returns what was sent, stamped with the time.
    async fn advance(&mut self, to: i64) -> Vec<Sent> {
        let mut out = Vec::new();
        while let Some(d) = self.n.next_deadline() {
            if d > to {
                break;
            }
            self.now = d.max(self.now);
            self.n.tick(self.now).await;
            let mut sent: Vec<Sent> = std::mem::take(&mut *self.rec.sent.lock().unwrap());
            sent.sort_by(|a, b| {
                (&a.receiver, a.integration, &a.group_key).cmp(&(&b.receiver, b.integration, &b.group_key))
            });
            for mut s in sent {
                s.at = self.now;
                out.push(s);
            }
        }
        self.now = to.max(self.now);
        out
    }
}

async fn sqlite_store() -> (TestDb, Store) {
    let db = TestDb::create(Backend::Sqlite).await.unwrap();
    let store = db.open().await;
    (db, store)
}

fn firing(pairs: &[(&str, &str)], starts_at: i64) -> NotifyAlert {
    NotifyAlert::new(
        Labels::from_pairs(pairs),
        Labels::from_pairs(&[("summary", "x")]),
        AlertStatus::Firing,
        starts_at,
        None,
    )
}

fn resolved(pairs: &[(&str, &str)], starts_at: i64, ends_at: i64) -> NotifyAlert {
    NotifyAlert::new(Labels::from_pairs(pairs), Labels::empty(), AlertStatus::Resolved, starts_at, Some(ends_at))
}

/// `(offset from T0, receiver, alerts)` of each send.
fn summary(sent: &[Sent]) -> Vec<(i64, String, Vec<String>)> {
    sent.iter().map(|s| (s.at - T0, s.receiver.clone(), s.alerts.clone())).collect()
}

fn row(at: i64, receiver: &str, alerts: &[&str]) -> (i64, String, Vec<String>) {
    (at, receiver.to_owned(), alerts.iter().map(|s| s.to_string()).collect())
}

#[tokio::test]
async fn routes_with_regex_matchers_and_continue() {
    let (_db, store) = sqlite_store().await;
    let yaml = r#"
route:
  receiver: default
  routes:
    - matchers: ['team=~"db|api"']
      receiver: team
      continue: true
    - matchers: ['severity="critical"']
      receiver: pager
    - matchers: ['severity=~"crit"']
      receiver: never
receivers: [{name: default}, {name: team}, {name: pager}, {name: never}]
"#;
    let mut sim = Sim::new(yaml, Recorder::new(&["default", "team", "pager", "never"]), store, T0).await;
    let a = firing(&[("alertname", "A"), ("team", "api"), ("severity", "critical")], T0);
    let b = firing(&[("alertname", "B"), ("team", "web"), ("severity", "critical")], T0);
    let c = firing(&[("alertname", "C"), ("team", "dbx"), ("severity", "warning")], T0);
    let d = firing(&[("alertname", "D"), ("team", "db"), ("severity", "warning")], T0);
    let tree = sim.n.routes();
    let receivers = |x: &NotifyAlert| -> Vec<String> {
        tree.match_routes(&x.labels).iter().map(|&i| tree.route(i).opts.receiver.clone()).collect()
    };
    assert_eq!(receivers(&a), ["team", "pager"], "continue goes on to the next sibling");
    assert_eq!(receivers(&b), ["pager"]);
    assert_eq!(receivers(&c), ["default"], "regex is anchored: dbx is not db");
    assert_eq!(receivers(&d), ["team"]);
    sim.update(&[a, b, c, d]);
    let sent = sim.advance(T0 + 10 * M).await;
    assert_eq!(
        summary(&sent),
        [row(30 * S, "default", &["C"]), row(30 * S, "pager", &["A", "B"]), row(30 * S, "team", &["A", "D"])]
    );
    let team = sent.iter().find(|s| s.receiver == "team").unwrap();
    assert_eq!(team.group_key, r#"{}/{team=~"db|api"}:{}"#);
    assert_eq!(team.json["externalURL"], "http://warden.test:9464");
    assert_eq!(team.json["version"], "4");
}

#[tokio::test]
async fn group_by_names_all_labels_or_none() {
    let (_db, store) = sqlite_store().await;
    let yaml = r#"
route:
  receiver: by_name
  group_by: [alertname]
  routes:
    - matchers: ['kind="each"']
      receiver: each
      group_by: ['...']
    - matchers: ['kind="one"']
      receiver: one
      group_by: []
receivers: [{name: by_name}, {name: each}, {name: one}]
"#;
    let mut sim = Sim::new(yaml, Recorder::new(&["by_name", "each", "one"]), store, T0).await;
    sim.update(&[
        firing(&[("alertname", "Lat"), ("instance", "2"), ("severity", "page")], T0),
        firing(&[("alertname", "Lat"), ("instance", "1"), ("severity", "page")], T0),
        firing(&[("alertname", "Err"), ("instance", "1")], T0),
        firing(&[("alertname", "E"), ("instance", "1"), ("kind", "each")], T0),
        firing(&[("alertname", "E"), ("instance", "2"), ("kind", "each")], T0),
        firing(&[("alertname", "X"), ("kind", "one")], T0),
        firing(&[("alertname", "Y"), ("kind", "one")], T0),
    ]);
    let sent = sim.advance(T0 + M).await;
    assert_eq!(
        summary(&sent),
        [
            row(30 * S, "by_name", &["Err[1]"]),
            row(30 * S, "by_name", &["Lat[1]", "Lat[2]"]),
            row(30 * S, "each", &["E[1]"]),
            row(30 * S, "each", &["E[2]"]),
            row(30 * S, "one", &["X", "Y"]),
        ]
    );
    let lat = &sent[1];
    assert_eq!(lat.group_key, r#"{}:{alertname="Lat"}"#);
    assert_eq!(lat.group_labels, BTreeMap::from([("alertname".to_owned(), "Lat".to_owned())]));
    assert_eq!(lat.json["commonLabels"], serde_json::json!({"alertname": "Lat", "severity": "page"}));
    assert_eq!(sent[2].group_labels.len(), 3, "`...` groups by every label");
    assert!(sent[4].group_labels.is_empty());
    assert_eq!(sent[4].group_key, r#"{}/{kind="one"}:{}"#);
}

#[tokio::test]
async fn group_wait_group_interval_and_repeat_interval() {
    let (_db, store) = sqlite_store().await;
    // Defaults: group_wait 30s, group_interval 5m, repeat_interval 4h.
    let yaml = "route: {receiver: r, group_by: [alertname]}\nreceivers: [{name: r}]\n";
    let mut sim = Sim::new(yaml, Recorder::new(&["r"]), store, T0).await;
    let a1 = firing(&[("alertname", "A"), ("instance", "1")], T0);
    let a2 = firing(&[("alertname", "A"), ("instance", "2")], T0 + M);
    sim.update(std::slice::from_ref(&a1));
    assert!(sim.advance(T0 + 30 * S - 1).await.is_empty(), "nothing before group_wait");
    assert_eq!(summary(&sim.advance(T0 + 30 * S).await), [row(30 * S, "r", &["A[1]"])]);
    sim.now = T0 + M;
    sim.update(&[a1.clone(), a2.clone()]);
    assert!(sim.advance(T0 + 5 * M + 30 * S - 1).await.is_empty(), "a change waits for group_interval");
    assert_eq!(summary(&sim.advance(T0 + 5 * M + 30 * S).await), [row(5 * M + 30 * S, "r", &["A[1]", "A[2]"])]);
    // Unchanged: the repeat comes at the first flush more than 4h after the last send.
    let sent = sim.advance(T0 + 5 * H).await;
    assert_eq!(summary(&sent), [row(4 * H + 10 * M + 30 * S, "r", &["A[1]", "A[2]"])]);
    let stats = sim.n.stats();
    assert_eq!(stats.sent("r", "webhook[0]"), 3);
    assert!(stats.deduplicated("r", "webhook[0]") >= 40);
    // A new group whose alert started longer than group_wait ago flushes at once.
    let old = firing(&[("alertname", "B")], T0);
    sim.update(&[a1, a2, old]);
    assert_eq!(summary(&sim.advance(T0 + 5 * H).await), [row(5 * H, "r", &["B"])]);
}

#[tokio::test]
async fn settings_are_inherited_down_the_tree() {
    let (_db, store) = sqlite_store().await;
    let yaml = r#"
route:
  receiver: root
  group_by: [alertname]
  group_wait: 10s
  group_interval: 1m
  repeat_interval: 1h
  routes:
    - matchers: ['team="a"']
      receiver: team_a
      group_wait: 1s
      routes:
        - matchers: ['severity="page"']
          group_by: [instance, alertname]
receivers: [{name: root}, {name: team_a}]
"#;
    let mut sim = Sim::new(yaml, Recorder::new(&["root", "team_a"]), store, T0).await;
    let tree = sim.n.routes();
    let (child, grandchild) = (&tree.route(1).opts, &tree.route(2).opts);
    assert_eq!(child.receiver, "team_a");
    assert_eq!((child.group_wait_ms, child.group_interval_ms, child.repeat_interval_ms), (S, M, H));
    assert_eq!(grandchild.receiver, "team_a");
    assert_eq!((grandchild.group_wait_ms, grandchild.group_interval_ms, grandchild.repeat_interval_ms), (S, M, H));
    assert_eq!(
        grandchild.group_by,
        warden::notify::route::GroupBy::Labels(vec!["alertname".to_owned(), "instance".to_owned()])
    );
    sim.update(&[
        firing(&[("alertname", "X"), ("team", "a"), ("severity", "page"), ("instance", "1")], T0),
        firing(&[("alertname", "Y"), ("team", "b")], T0),
    ]);
    let sent = sim.advance(T0 + H + 2 * M).await;
    // team_a: 1s wait; repeat (1h) at the first 1m flush after it: 1h + 1m + 1s.
    assert_eq!(
        summary(&sent),
        [
            row(S, "team_a", &["X[1]"]),
            row(10 * S, "root", &["Y"]),
            row(H + M + S, "team_a", &["X[1]"]),
            row(H + M + 10 * S, "root", &["Y"]),
        ]
    );
    assert_eq!(sent[0].group_labels.len(), 2);
}

#[tokio::test]
async fn critical_inhibits_warning_with_equal_labels() {
    let (_db, store) = sqlite_store().await;
    let yaml = r#"
route: {receiver: r, group_by: [alertname]}
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [service]
receivers: [{name: r}]
"#;
    let mut sim = Sim::new(yaml, Recorder::new(&["r"]), store, T0).await;
    let down = firing(&[("alertname", "Down"), ("severity", "critical"), ("service", "api")], T0);
    let slow_api =
        firing(&[("alertname", "Slow"), ("severity", "warning"), ("service", "api"), ("instance", "api")], T0);
    let slow_db = firing(&[("alertname", "Slow"), ("severity", "warning"), ("service", "db"), ("instance", "db")], T0);
    sim.update(&[down.clone(), slow_api.clone(), slow_db.clone()]);
    assert_eq!(
        summary(&sim.advance(T0 + M).await),
        [row(30 * S, "r", &["Down"]), row(30 * S, "r", &["Slow[db]"])],
        "the api warning is inhibited, the db one is not"
    );
    // The critical alert resolves: its resolution is sent, and the warning is no longer muted.
    sim.now = T0 + 2 * M;
    sim.update(&[slow_api, slow_db]);
    assert_eq!(
        summary(&sim.advance(T0 + 6 * M).await),
        [row(5 * M + 30 * S, "r", &["Down!"]), row(5 * M + 30 * S, "r", &["Slow[api]", "Slow[db]"])]
    );
}

#[tokio::test]
async fn silences_from_the_store_mute_until_expired() {
    let (_db, store) = sqlite_store().await;
    let yaml = "route: {receiver: r, group_by: [alertname]}\nreceivers: [{name: r}]\n";
    let mut sim = Sim::new(yaml, Recorder::new(&["r"]), store.clone(), T0).await;
    let silence = NewSilence {
        matchers: Matcher::parse_list(r#"service="db""#).unwrap(),
        starts_at: T0,
        ends_at: T0 + H,
        created_by: "ops".to_owned(),
        comment: "db maintenance".to_owned(),
    };
    let s = store.create_silence(&silence, T0).await.unwrap();
    // A silence that starts later does not mute now.
    let later = NewSilence { starts_at: T0 + 2 * H, ends_at: T0 + 3 * H, ..silence.clone() };
    store
        .create_silence(&NewSilence { matchers: Matcher::parse_list(r#"service="api""#).unwrap(), ..later }, T0)
        .await
        .unwrap();
    let api = firing(&[("alertname", "Lat"), ("service", "api"), ("instance", "api")], T0);
    let db = firing(&[("alertname", "Lat"), ("service", "db"), ("instance", "db")], T0);
    let only_db = firing(&[("alertname", "Disk"), ("service", "db")], T0);
    sim.update(&[api.clone(), db.clone(), only_db.clone()]);
    assert_eq!(summary(&sim.advance(T0 + M).await), [row(30 * S, "r", &["Lat[api]"])]);
    assert!(sim.advance(T0 + 5 * M).await.is_empty());
    assert!(store.expire_silence(&s.id, T0 + 6 * M).await.unwrap());
    // The next flush of each group sends what was muted.
    assert_eq!(
        summary(&sim.advance(T0 + 11 * M).await),
        [row(10 * M + 30 * S, "r", &["Disk"]), row(10 * M + 30 * S, "r", &["Lat[api]", "Lat[db]"])]
    );
}

#[tokio::test]
async fn resolved_notifications_and_send_resolved_false() {
    let (_db, store) = sqlite_store().await;
    let yaml = "route: {receiver: r, group_by: [alertname]}\nreceivers: [{name: r}]\n";
    let mut rec = Recorder::default();
    rec.integrations.insert(
        "r".to_owned(),
        vec![
            Integration { name: "webhook[0]".to_owned(), send_resolved: true },
            Integration { name: "email[0]".to_owned(), send_resolved: false },
        ],
    );
    let mut sim = Sim::new(yaml, rec, store, T0).await;
    let handle = sim.n.handle();
    let a = firing(&[("alertname", "A")], T0);
    sim.update(std::slice::from_ref(&a));
    let sent = sim.advance(T0 + M).await;
    assert_eq!(sent.iter().map(|s| s.integration).collect::<Vec<_>>(), [0, 1], "both integrations");
    assert_eq!(handle.groups().len(), 1);
    assert_eq!(handle.groups()[0].last_notified_ms, Some(T0 + 30 * S));
    // Absent from the next set: resolved at that moment; only send_resolved gets it.
    sim.now = T0 + 2 * M;
    sim.update(&[]);
    let sent = sim.advance(T0 + 6 * M).await;
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].integration, sent[0].status), (0, AlertStatus::Resolved));
    assert_eq!(sent[0].alerts, ["A!"]);
    assert_eq!(sent[0].json["alerts"][0]["endsAt"], "2023-11-14T22:15:20Z");
    assert!(handle.groups().is_empty(), "the group is gone once its resolution was sent");
    // Firing again is new to both integrations.
    sim.now = T0 + 10 * M;
    let again = firing(&[("alertname", "A")], T0 + 10 * M);
    sim.update(std::slice::from_ref(&again));
    let sent = sim.advance(T0 + 11 * M).await;
    assert_eq!(
        sent.iter().map(|s| (s.integration, s.status)).collect::<Vec<_>>(),
        [(0, AlertStatus::Firing), (1, AlertStatus::Firing)]
    );
    // Resolved as the rules report it, and reported again and again for 15 minutes: one
    // resolved notification, no churn.
    for i in 0..20 {
        sim.now = T0 + 12 * M + i * M;
        sim.update(&[resolved(&[("alertname", "A")], T0 + 10 * M, T0 + 12 * M)]);
        let sent = sim.advance(sim.now + M - 1).await;
        if i == 3 {
            assert_eq!(summary(&sent), [row(15 * M + 30 * S, "r", &["A!"])]);
        } else {
            assert!(sent.is_empty(), "minute {i}: {:?}", summary(&sent));
        }
    }
    assert!(handle.groups().is_empty());
}

#[tokio::test]
async fn failed_sends_are_retried_and_counted() {
    let (_db, store) = sqlite_store().await;
    let yaml = "route: {receiver: r, group_by: [alertname]}\nreceivers: [{name: r}]\n";
    let mut sim = Sim::new(yaml, Recorder::new(&["r"]), store, T0).await;
    let fail = |sim: &Sim, on: bool| {
        let mut f = sim.rec.failing.lock().unwrap();
        if on {
            f.insert("r".to_owned())
        } else {
            f.remove("r")
        };
    };
    fail(&sim, true);
    sim.update(&[firing(&[("alertname", "A")], T0)]);
    assert!(sim.advance(T0 + 11 * M).await.is_empty());
    assert_eq!(sim.n.stats().failed("r", "webhook[0]"), 3, "30s, 5m30s, 10m30s");
    // Resolved while the receiver is down and never told about it firing: nothing to send
    // (Alertmanager: nothing fires and there is no log entry), so the group goes.
    sim.update(&[]);
    assert!(sim.advance(T0 + 16 * M).await.is_empty());
    assert!(sim.n.handle().groups().is_empty());
    assert_eq!(sim.n.stats().deduplicated("r", "webhook[0]"), 1);
    // Recovery: B goes out at its next flush after the failure.
    fail(&sim, false);
    let b = firing(&[("alertname", "B")], sim.now);
    sim.update(std::slice::from_ref(&b));
    fail(&sim, true);
    assert!(sim.advance(sim.now + M).await.is_empty());
    fail(&sim, false);
    assert_eq!(summary(&sim.advance(T0 + 22 * M).await), [row(21 * M + 30 * S, "r", &["B"])]);
    // B resolves while the receiver is down: the resolved alert stays until it is delivered.
    sim.update(&[]);
    fail(&sim, true);
    assert!(sim.advance(T0 + 27 * M).await.is_empty());
    let groups = sim.n.handle().groups();
    assert_eq!((groups.len(), groups[0].firing, groups[0].resolved), (1, 0, 1));
    fail(&sim, false);
    assert_eq!(summary(&sim.advance(T0 + 32 * M).await), [row(31 * M + 30 * S, "r", &["B!"])]);
    assert!(sim.n.handle().groups().is_empty());
    let text = sim.n.stats().encode();
    for line in [
        "warden_notifier_notifications_failed_total{receiver=\"r\",integration=\"webhook[0]\"} 5",
        "warden_notifier_notifications_total{receiver=\"r\",integration=\"webhook[0]\"} 2",
        "warden_notifier_aggregation_groups 0",
        "warden_notifier_alerts{state=\"firing\"} 0",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}

#[tokio::test]
async fn limits_drop_and_count() {
    let (_db, store) = sqlite_store().await;
    let yaml = "route: {receiver: r, group_by: ['...']}\nreceivers: [{name: r}]\nlimits: {max_groups: 3, max_alerts_per_group: 1}\n";
    let mut sim = Sim::new(yaml, Recorder::new(&["r"]), store, T0).await;
    let alerts: Vec<NotifyAlert> =
        (0..5).map(|i| firing(&[("alertname", "A"), ("instance", &i.to_string())], T0)).collect();
    sim.update(&alerts);
    sim.update(&alerts);
    assert_eq!(sim.n.stats().dropped(), (2, 0), "counted once per alert");
    assert_eq!(sim.advance(T0 + M).await.len(), 3);
}

async fn restart_does_not_page_again_within_repeat_interval(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let yaml = "route: {receiver: r, group_by: [alertname]}\nreceivers: [{name: r}]\n";
    let a = firing(&[("alertname", "A"), ("instance", "1")], T0);
    let b = firing(&[("alertname", "A"), ("instance", "2")], T0 + 4 * H);
    {
        let mut sim = Sim::new(yaml, Recorder::new(&["r"]), db.open().await, T0).await;
        sim.update(std::slice::from_ref(&a));
        assert_eq!(summary(&sim.advance(T0 + 2 * M).await), [row(30 * S, "r", &["A[1]"])]);
        sim.store.close().await;
    }
    // Restarted 10 minutes later with the same alert: nothing until the repeat, which is
    // timed from the notification before the restart. (The alert started long before the
    // new group, so the group flushes at once, at 10m, then every 5m; the first flush more
    // than 4h after the page at 30s is 4h5m.)
    {
        let mut sim = Sim::new(yaml, Recorder::new(&["r"]), db.open().await, T0 + 10 * M).await;
        sim.update(std::slice::from_ref(&a));
        assert_eq!(sim.n.next_deadline(), Some(T0 + 10 * M));
        let dup = sim.advance(T0 + 4 * H + 5 * M - 1).await;
        assert!(dup.is_empty(), "no duplicate page after restart: {:?}", summary(&dup));
        assert_eq!(summary(&sim.advance(T0 + 4 * H + 5 * M).await), [row(4 * H + 5 * M, "r", &["A[1]"])]);
        sim.store.close().await;
    }
    // Restarted again a minute after that page, with a new alert in the group: the change
    // goes out group_interval after the last page (4h10m), not at once nor at group_wait.
    {
        let mut sim = Sim::new(yaml, Recorder::new(&["r"]), db.open().await, T0 + 4 * H + 6 * M).await;
        sim.update(&[a.clone(), b.clone()]);
        assert_eq!(sim.n.next_deadline(), Some(T0 + 4 * H + 10 * M));
        assert!(sim.advance(T0 + 4 * H + 10 * M - 1).await.is_empty());
        assert_eq!(summary(&sim.advance(T0 + 4 * H + 11 * M).await), [row(4 * H + 10 * M, "r", &["A[1]", "A[2]"])]);
        let g = sim.n.handle().groups();
        assert_eq!(g[0].last_notified_ms, Some(T0 + 4 * H + 10 * M));
        sim.store.close().await;
    }
}

const RULES: &str = r#"
groups:
  - name: latency
    interval: 1m
    rules:
      - alert: HighLatency
        expr: latency_seconds > 1
        for: 5m
        labels: {severity: page}
        annotations: {summary: "latency is {{ $value }}s"}
"#;

/// The rules crate's group over the store's alert state.
fn rule_group(cache: &Arc<AlertStateCache>) -> Group {
    let file = warden_rules::rulefile::parse_str(Path::new("latency.yml"), RULES).unwrap();
    let opts = GroupOptions {
        state_store: Some(Arc::clone(cache) as Arc<dyn AlertStateStore>),
        restore: RestoreOptions { outage_tolerance_ms: H, for_grace_period_ms: M },
        ..GroupOptions::default()
    };
    Group::from_rule_group("latency.yml", &file.groups[0], &opts).unwrap()
}

/// Evaluates at `t`: instance 1 is slow from T0, instance 2 from T0+4m.
async fn eval(group: &mut Group, cache: &AlertStateCache, t: i64) -> Vec<NotifyAlert> {
    let db = Db::new(DbConfig::default());
    let mut query = |_: &promql_parser::parser::Expr, ts: i64| {
        let mut v = vec![(Labels::from_pairs(&[("__name__", "latency_seconds"), ("instance", "1")]), 2.0)];
        if ts >= T0 + 4 * M {
            v.push((Labels::from_pairs(&[("__name__", "latency_seconds"), ("instance", "2")]), 3.0));
        }
        Ok::<_, warden_rules::group::RuleError>(v)
    };
    let report = group.eval_with(&mut query, &db, t);
    assert_eq!((report.restore_error.as_deref(), report.save_error.as_deref()), (None, None));
    assert_eq!(report.failed(), 0);
    cache.flush().await.unwrap();
    group.active_alerts().iter().filter_map(|a| NotifyAlert::from_rule_alert(a, "http://warden.test/graph")).collect()
}

fn state(group: &Group, instance: &str) -> Option<AlertState> {
    group.active_alerts().into_iter().find(|a| a.labels.get("instance") == Some(instance)).map(|a| a.state)
}

async fn restart_keeps_for_state_and_pages_once(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let yaml = "route: {receiver: r, group_by: [alertname, instance]}\nreceivers: [{name: r}]\n";
    // First life: evaluations every minute from T0 to T0+7m.
    {
        let store = db.open().await;
        let cache = AlertStateCache::open(store.clone(), T0, H).await.unwrap();
        let mut group = rule_group(&cache);
        let mut sim = Sim::new(yaml, Recorder::new(&["r"]), store.clone(), T0).await;
        let mut pages = Vec::new();
        for k in 0..=7 {
            let t = T0 + k * M;
            pages.extend(sim.advance(t).await);
            let alerts = eval(&mut group, &cache, t).await;
            sim.update(&alerts);
        }
        pages.extend(sim.advance(T0 + 7 * M + 59 * S).await);
        assert_eq!(state(&group, "1"), Some(AlertState::Firing));
        assert_eq!(state(&group, "2"), Some(AlertState::Pending));
        assert_eq!(summary(&pages), [row(5 * M + 30 * S, "r", &["HighLatency[1]"])]);
        assert_eq!(pages[0].json["alerts"][0]["generatorURL"], "http://warden.test/graph");
        assert_eq!(pages[0].json["alerts"][0]["annotations"]["summary"], "latency is 2s");
        store.close().await;
    }
    // Restart: the agent was down for one evaluation (T0+8m missed), back at T0+9m.
    let store = db.open().await;
    let cache = AlertStateCache::open(store.clone(), T0 + 9 * M, H).await.unwrap();
    let mut group = rule_group(&cache);
    let mut sim = Sim::new(yaml, Recorder::new(&["r"]), store.clone(), T0 + 9 * M).await;
    let mut pages = Vec::new();
    let mut fired_2 = None;
    for k in 9..=16 {
        let t = T0 + k * M;
        pages.extend(sim.advance(t).await);
        let alerts = eval(&mut group, &cache, t).await;
        if k == 9 {
            assert_eq!(state(&group, "1"), Some(AlertState::Firing), "a firing alert fires again at once");
        }
        if fired_2.is_none() && state(&group, "2") == Some(AlertState::Firing) {
            fired_2 = Some(t);
        }
        sim.update(&alerts);
    }
    pages.extend(sim.advance(T0 + 16 * M + 59 * S).await);
    // Instance 2 was pending since T0+4m, 3m of its 5m `for` spent when saved at T0+7m;
    // restored with the 2m downtime not counted, it fires at T0+11m, not T0+14m (afresh).
    assert_eq!(fired_2, Some(T0 + 11 * M));
    // Instance 1 is not paged again; instance 2 is paged once, group_wait after it fired.
    assert_eq!(summary(&pages), [row(11 * M + 30 * S, "r", &["HighLatency[2]"])]);
    store.close().await;
}

#[tokio::test]
async fn the_real_loop_runs_on_tokio_time_and_stops() {
    let (_db, store) = sqlite_store().await;
    let yaml = r#"
route: {receiver: r, group_by: [alertname], group_wait: 200ms, group_interval: 300ms, repeat_interval: 1h}
receivers: [{name: r}]
"#;
    let rec = Arc::new(Recorder::new(&["r"]));
    let n = Notifier::new(
        &config(yaml),
        Arc::clone(&rec),
        store,
        Arc::new(Redactor::default_mask()),
        NotifierOptions::default(),
        warden::store::now_ms(),
    )
    .await
    .unwrap();
    let handle = n.handle();
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(Vec::new()));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(n.run(SystemClock, rx, cancel.clone()));
    let now = warden::store::now_ms();
    tx.send_replace(Arc::new(vec![firing(&[("alertname", "A")], now)]));
    let wait_for = |n: usize| {
        let rec = Arc::clone(&rec);
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while rec.sent.lock().unwrap().len() < n {
                assert!(tokio::time::Instant::now() < deadline, "no notification");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_for(1).await;
    let first = std::time::Instant::now();
    assert_eq!(handle.groups().len(), 1);
    // Resolve: the resolution follows within one group_interval.
    tx.send_replace(Arc::new(Vec::new()));
    wait_for(2).await;
    assert!(first.elapsed() < Duration::from_secs(5));
    assert_eq!(rec.sent.lock().unwrap()[1].status, AlertStatus::Resolved);
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("run stops on shutdown").unwrap();
}

#[tokio::test]
async fn invalid_configs_are_refused_with_paths() {
    let (_db, store) = sqlite_store().await;
    let cases = [
        ("route: {group_by: [alertname]}\n", "route.receiver: required on the root route"),
        ("route: {receiver: nope}\nreceivers: [{name: r}]\n", "route.receiver: unknown receiver \"nope\""),
        (
            "route: {receiver: r, routes: [{matchers: ['a=\"b\"'], group_by: ['...', x]}]}\nreceivers: [{name: r}]\n",
            "route.routes[0].group_by: \"...\" must be the only entry",
        ),
        (
            "route: {receiver: r, routes: [{receiver: x}]}\nreceivers: [{name: r}, {name: r}]\n",
            "receivers[1].name: duplicate receiver name \"r\"",
        ),
        (
            "route: {receiver: r}\ninhibit_rules: [{target_matchers: ['a=\"b\"'], equal: ['1x']}]\nreceivers: [{name: r}]\n",
            "inhibit_rules[0].equal[0]: invalid label name",
        ),
    ];
    for (yaml, want) in cases {
        let err = match Notifier::new(
            &config(yaml),
            Arc::new(Recorder::default()),
            store.clone(),
            Arc::new(Redactor::default_mask()),
            NotifierOptions::default(),
            T0,
        )
        .await
        {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted: {yaml}"),
        };
        assert!(err.contains(want), "{yaml}: {err}");
    }
    // Unknown fields (Alertmanager's deprecated `match`) and bad matchers are refused by
    // serde, with their position.
    for yaml in [
        "route: {receiver: r, match: {a: b}}\nreceivers: [{name: r}]\n",
        "route: {receiver: r, routes: [{matchers: ['a=~\"(\"']}]}\nreceivers: [{name: r}]\n",
        "route: {receiver: r, group_wait: soon}\nreceivers: [{name: r}]\n",
    ] {
        assert!(serde_saphyr::from_str::<NotifyConfig>(yaml).is_err(), "{yaml}");
    }
}
