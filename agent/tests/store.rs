//! The agent's state store, on SQLite and on PostgreSQL (the same tests on both): opening
//! and migrating, alert state (directly and through the rules crate's `AlertStateStore`),
//! the notification log, silences, the remediation audit log, pruning, and errors that
//! never carry values.

mod store_common;

use std::time::Duration;

use store_common::{Backend, TestDb};
use tokio_util::sync::CancellationToken;
use warden::notify::matcher::Matcher;
use warden::store::{AlertStateCache, AuditEntry, NewSilence, NflogEntry, SilenceState, Store, StoreError};
use warden_rules::alerting::{AlertState, AlertStateStore, SavedAlert};
use warden_rules::labels::Labels;

on_both_backends!(
    opens_twice_and_concurrently,
    alert_state_round_trips_and_replaces,
    alert_state_cache_writes_behind,
    notification_log_upserts_and_expires,
    silences_validate_create_expire_and_list,
    audit_log_records_filters_and_truncates,
    audit_ids_stay_unique_under_concurrency,
    prune_deletes_only_what_no_longer_matters,
    errors_name_operation_and_table_not_values,
);

const H: i64 = 3_600_000;

fn saved(pairs: &[(&str, &str)], state: AlertState, active_at: i64, value: f64, saved_at: i64) -> SavedAlert {
    SavedAlert {
        labels: Labels::from_pairs(pairs),
        state,
        active_at,
        fired_at: (state == AlertState::Firing).then_some(active_at + 60_000),
        keep_firing_since: None,
        resolved_at: None,
        value,
        saved_at,
    }
}

async fn opens_twice_and_concurrently(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    // Two processes starting together on one database: both migrations succeed.
    let (a, b) = tokio::join!(Store::open(&db.url), Store::open(&db.url));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.ping().await && b.ping().await);
    a.record_action(&audit("t", "scale_up", 1)).await.unwrap();
    assert_eq!(b.audit_log(None, None, 10).await.unwrap().len(), 1, "both see one database");
    a.close().await;
    b.close().await;
    // Reopening finds the migration applied and the data kept.
    let c = db.open().await;
    assert_eq!(c.audit_log(None, None, 10).await.unwrap().len(), 1);
    match backend {
        Backend::Sqlite => {
            assert!(db.dir.path().join("state").join("warden.db").is_file(), "directory and file created");
            assert!(c.postgres_pool().is_none());
        }
        Backend::Postgres => {
            let pg = c.postgres_pool().expect("a PostgreSQL pool");
            let got: (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock(42)").fetch_one(&pg).await.unwrap();
            assert!(got.0, "advisory locks work on the handed-out pool");
        }
    }
}

async fn alert_state_round_trips_and_replaces(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let store = db.open().await;
    let alerts = vec![
        saved(&[("alertname", "A"), ("instance", "x\"y\\z\n"), ("zone", "é-ü")], AlertState::Firing, 1_000, 3.5, 9_000),
        saved(&[("alertname", "A"), ("instance", "2")], AlertState::Pending, 2_000, f64::NAN, 9_000),
        saved(&[("alertname", "A"), ("instance", "3")], AlertState::Firing, 3_000, f64::INFINITY, 9_000),
        SavedAlert {
            keep_firing_since: Some(8_000),
            resolved_at: Some(8_500),
            ..saved(&[("alertname", "A"), ("instance", "4")], AlertState::Inactive, 4_000, -0.25, 9_000)
        },
    ];
    store.save_alert_state("rules.yml;g", "A", &alerts).await.unwrap();
    store.save_alert_state("rules.yml;g", "B", &alerts[..1]).await.unwrap();
    let mut got = store.load_alert_state("rules.yml;g", "A").await.unwrap();
    got.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut want = alerts.clone();
    want.sort_by(|a, b| a.labels.cmp(&b.labels));
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.labels, w.labels);
        assert_eq!(
            (g.state, g.active_at, g.fired_at, g.keep_firing_since, g.resolved_at, g.saved_at),
            (w.state, w.active_at, w.fired_at, w.keep_firing_since, w.resolved_at, w.saved_at)
        );
        assert!(g.value == w.value || (g.value.is_nan() && w.value.is_nan()), "value {} vs {}", g.value, w.value);
    }
    // A save replaces everything of its (group, rule), nothing else.
    store.save_alert_state("rules.yml;g", "A", &alerts[1..2]).await.unwrap();
    assert_eq!(store.load_alert_state("rules.yml;g", "A").await.unwrap().len(), 1);
    assert_eq!(store.load_alert_state("rules.yml;g", "B").await.unwrap().len(), 1);
    store.save_alert_state("rules.yml;g", "A", &[]).await.unwrap();
    assert!(store.load_alert_state("rules.yml;g", "A").await.unwrap().is_empty());
    assert!(store.load_alert_state("other", "A").await.unwrap().is_empty());
    // Many alerts (several insert chunks) in one save.
    let many: Vec<SavedAlert> = (0..450)
        .map(|i| saved(&[("alertname", "M"), ("i", &i.to_string())], AlertState::Pending, i, i as f64, 10_000))
        .collect();
    store.save_alert_state("g2", "M", &many).await.unwrap();
    assert_eq!(store.load_alert_state("g2", "M").await.unwrap().len(), 450);
    // load_all filters by age.
    let all = store.load_all_alert_state(9_500).await.unwrap();
    assert_eq!(all.len(), 1, "only the state saved at 10000 is young enough");
    assert_eq!(all[&("g2".to_owned(), "M".to_owned())].len(), 450);
}

async fn alert_state_cache_writes_behind(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let store = db.open().await;
    let now = 100 * H;
    store
        .save_alert_state("g", "Old", &[saved(&[("alertname", "Old")], AlertState::Firing, 0, 1.0, now - 2 * H)])
        .await
        .unwrap();
    store
        .save_alert_state("g", "A", &[saved(&[("alertname", "A")], AlertState::Pending, now - H, 1.0, now - 60_000)])
        .await
        .unwrap();
    let cache = AlertStateCache::open(store.clone(), now, H).await.unwrap();
    // Loaded at open; older than the maximum age is not.
    assert_eq!(cache.load("g", "A").unwrap().len(), 1);
    assert!(cache.load("g", "Old").unwrap().is_empty());
    // Saving an empty list where nothing is saved costs nothing.
    cache.save("g", "Nothing", &[]).unwrap();
    assert_eq!(cache.pending(), 0);
    // A save is visible at once in memory, in the store only after a flush.
    let fresh = saved(&[("alertname", "A"), ("i", "2")], AlertState::Firing, now - H, 2.0, now);
    cache.save("g", "A", std::slice::from_ref(&fresh)).unwrap();
    assert_eq!(cache.load("g", "A").unwrap(), vec![fresh.clone()]);
    assert_eq!(cache.pending(), 1);
    assert_eq!(store.load_alert_state("g", "A").await.unwrap()[0].labels.get("i"), None);
    assert_eq!(cache.flush().await.unwrap(), 1);
    assert_eq!(store.load_alert_state("g", "A").await.unwrap(), vec![fresh.clone()]);
    // The writer task writes on its own, and once more at shutdown.
    let cancel = CancellationToken::new();
    let writer = cache.spawn_writer(cancel.clone(), Duration::from_millis(50));
    let second = saved(&[("alertname", "B")], AlertState::Pending, now, 1.0, now + 1_000);
    cache.save("g", "B", std::slice::from_ref(&second)).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.load_alert_state("g", "B").await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "writer did not write");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let third = saved(&[("alertname", "C")], AlertState::Pending, now, 1.0, now + 2_000);
    cache.save("g", "C", std::slice::from_ref(&third)).unwrap();
    cancel.cancel();
    writer.await.unwrap();
    assert_eq!(store.load_alert_state("g", "C").await.unwrap(), vec![third]);
    assert_eq!(cache.pending(), 0);
    // Clearing a rule's alerts deletes its rows.
    cache.save("g", "A", &[]).unwrap();
    cache.flush().await.unwrap();
    assert!(store.load_alert_state("g", "A").await.unwrap().is_empty());
}

async fn notification_log_upserts_and_expires(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let store = db.open().await;
    let key = r#"{}/{severity="critical"}/0:{alertname="A", service="api"}"#;
    let e1 = NflogEntry::new(key, "oncall", "webhook[0]", vec![3, 1], vec![], 1_000, 1_000 + 5 * H);
    store.log_notification(&e1).await.unwrap();
    assert_eq!(store.notification_entry(key, "oncall", "webhook[0]", 2_000).await.unwrap(), Some(e1.clone()));
    assert_eq!(store.notification_entry(key, "oncall", "email[0]", 2_000).await.unwrap(), None);
    assert_eq!(store.notification_entry(key, "other", "webhook[0]", 2_000).await.unwrap(), None);
    // The next notification replaces the entry.
    let e2 = NflogEntry::new(key, "oncall", "webhook[0]", vec![], vec![1, 3, u64::MAX], 9_000, 9_000 + 5 * H);
    store.log_notification(&e2).await.unwrap();
    let got = store.notification_entry(key, "oncall", "webhook[0]", 10_000).await.unwrap().unwrap();
    assert_eq!(got, e2);
    assert!(got.all_resolved());
    assert_ne!(got.state_hash(), e1.state_hash());
    // A second integration, then listing (newest first) and expiry.
    let e3 = NflogEntry::new(key, "oncall", "email[0]", vec![1], vec![], 5_000, 6_000);
    store.log_notification(&e3).await.unwrap();
    assert_eq!(store.notification_log(5_500).await.unwrap(), vec![e2.clone(), e3.clone()]);
    assert_eq!(store.notification_log(6_000).await.unwrap(), vec![e2.clone()], "expired entries are not listed");
    assert_eq!(store.notification_entry(key, "oncall", "email[0]", 6_000).await.unwrap(), None);
    assert_eq!(store.prune_notification_log(6_000).await.unwrap(), 1);
    assert_eq!(store.notification_log(0).await.unwrap(), vec![e2]);
}

fn matchers(text: &str) -> Vec<Matcher> {
    Matcher::parse_list(text).unwrap()
}

fn new_silence(m: &str, starts_at: i64, ends_at: i64) -> NewSilence {
    NewSilence {
        matchers: matchers(m),
        starts_at,
        ends_at,
        created_by: "ops@example.org".to_owned(),
        comment: "maintenance".to_owned(),
    }
}

async fn silences_validate_create_expire_and_list(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let store = db.open().await;
    let now = 50 * H;
    // Refused, each naming the field and never the value.
    let bad = [
        (NewSilence { matchers: vec![], ..new_silence(r#"a="1""#, now, now + H) }, "matchers"),
        (new_silence(r#"a=~".*", b="""#, now, now + H), "matchers"),
        (new_silence(r#"a="secret-value""#, now, now - 1), "endsAt"),
        (new_silence(r#"a="secret-value""#, now + 2 * H, now + H), "endsAt"),
        (NewSilence { created_by: " ".to_owned(), ..new_silence(r#"a="secret-value""#, now, now + H) }, "createdBy"),
        (NewSilence { comment: String::new(), ..new_silence(r#"a="secret-value""#, now, now + H) }, "comment"),
    ];
    for (s, field) in bad {
        let e = store.create_silence(&s, now).await.unwrap_err();
        assert!(matches!(e, StoreError::Invalid { field: f, .. } if f == field), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
    }
    // A start in the past becomes now.
    let active = store
        .create_silence(&new_silence(r#"service="api", severity=~"warn.*""#, now - H, now + H), now)
        .await
        .unwrap();
    assert_eq!(active.starts_at, now);
    let pending = store.create_silence(&new_silence(r#"service="db""#, now + H, now + 2 * H), now).await.unwrap();
    assert_ne!(active.id, pending.id);
    assert_eq!(store.silence(&active.id).await.unwrap(), Some(active.clone()));
    assert_eq!(active.state(now), SilenceState::Active);
    assert_eq!(pending.state(now), SilenceState::Pending);
    let warn_api = Labels::from_pairs(&[("service", "api"), ("severity", "warning")]);
    assert!(active.mutes(&warn_api, now));
    assert!(!active.mutes(&warn_api.with("severity", "critical"), now));
    assert!(!active.mutes(&warn_api, now + H), "ended");
    let ids = |v: Vec<warden::store::Silence>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(ids(store.active_silences(now).await.unwrap()), vec![active.id.clone()]);
    assert_eq!(ids(store.active_silences(now + H + 1).await.unwrap()), vec![pending.id.clone()]);
    assert_eq!(ids(store.list_silences(now, 0).await.unwrap()), vec![active.id.clone(), pending.id.clone()]);
    // Expire: the active one ends now; the pending one never starts.
    assert!(store.expire_silence(&active.id, now + 10).await.unwrap());
    assert!(!store.expire_silence(&active.id, now + 20).await.unwrap(), "already expired");
    assert!(!store.expire_silence("no-such-id", now).await.unwrap());
    assert!(store.expire_silence(&pending.id, now + 30).await.unwrap());
    let p = store.silence(&pending.id).await.unwrap().unwrap();
    assert_eq!((p.starts_at, p.ends_at), (now + 30, now + 30));
    assert!(store.active_silences(now + 40).await.unwrap().is_empty());
    assert!(store.list_silences(now + 40, 0).await.unwrap().is_empty());
    let expired = ids(store.list_silences(now + 40, 10).await.unwrap());
    assert_eq!(expired, vec![pending.id.clone(), active.id.clone()], "expired, newest end first");
    let e = store.silence(&active.id).await.unwrap().unwrap();
    assert_eq!(e.ends_at, now + 10);
    assert_eq!(e.matchers, active.matchers, "matchers round-trip");
}

fn audit(target: &str, action: &str, at_ms: i64) -> AuditEntry {
    AuditEntry {
        at_ms,
        target: target.to_owned(),
        action: action.to_owned(),
        decision: "taken".to_owned(),
        reason: "latency above threshold".to_owned(),
        alert: r#"HighLatency{service="api"}"#.to_owned(),
        from_replicas: Some(2),
        to_replicas: Some(3),
        detail: None,
    }
}

async fn audit_log_records_filters_and_truncates(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let store = db.open().await;
    let mut ids = Vec::new();
    for (i, target) in ["api", "db", "api", "api"].iter().enumerate() {
        ids.push(store.record_action(&audit(target, "scale_up", 1_000 * (i as i64 + 1))).await.unwrap());
    }
    assert!(ids.windows(2).all(|w| w[1] > w[0]), "increasing ids: {ids:?}");
    let all = store.audit_log(None, None, 100).await.unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), ids.iter().rev().copied().collect::<Vec<_>>());
    assert_eq!(all[0].entry, audit("api", "scale_up", 4_000));
    let api = store.audit_log(Some("api"), None, 100).await.unwrap();
    assert_eq!(api.len(), 3);
    assert!(api.iter().all(|r| r.entry.target == "api"));
    let since = store.audit_log(Some("api"), Some(3_000), 100).await.unwrap();
    assert_eq!(since.iter().map(|r| r.entry.at_ms).collect::<Vec<_>>(), [4_000, 3_000]);
    assert_eq!(store.audit_log(None, Some(2_000), 1).await.unwrap().len(), 1, "limit");
    assert_eq!(store.audit_log(None, None, 0).await.unwrap().len(), 1, "limit clamped to at least 1");
    // Optional fields, truncation at a character boundary, required fields.
    let long = AuditEntry {
        action: "exec".to_owned(),
        decision: "failed".to_owned(),
        from_replicas: None,
        to_replicas: None,
        detail: Some("é".repeat(5000)),
        reason: "r".repeat(5000),
        ..audit("worker", "exec", 9_000)
    };
    let id = store.record_action(&long).await.unwrap();
    let got = &store.audit_log(Some("worker"), None, 1).await.unwrap()[0];
    assert_eq!(got.id, id);
    assert_eq!((got.entry.from_replicas, got.entry.to_replicas), (None, None));
    let detail = got.entry.detail.as_deref().unwrap();
    assert!(detail.len() <= 4096 && detail.len() >= 4094 && detail.chars().all(|c| c == 'é'));
    assert_eq!(got.entry.reason.len(), 1024);
    let e = store.record_action(&AuditEntry { target: String::new(), ..audit("x", "restart", 1) }).await.unwrap_err();
    assert!(matches!(e, StoreError::Invalid { field: "target", .. }), "{e}");
}

async fn audit_ids_stay_unique_under_concurrency(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    // Two stores (two agents) writing at once.
    let (a, b) = (db.open().await, db.open().await);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40i64 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move { s.record_action(&audit("api", "restart", i)).await.unwrap() });
    }
    let mut ids = Vec::new();
    while let Some(r) = tasks.join_next().await {
        ids.push(r.unwrap());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 40, "every insert got its own id");
    assert_eq!(a.audit_log(None, None, 1000).await.unwrap().len(), 40);
}

async fn prune_deletes_only_what_no_longer_matters(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let store = db.open().await;
    let now = 1_000 * H;
    store
        .save_alert_state("g", "Old", &[saved(&[("alertname", "Old")], AlertState::Firing, 0, 1.0, now - 2 * H)])
        .await
        .unwrap();
    store
        .save_alert_state("g", "New", &[saved(&[("alertname", "New")], AlertState::Firing, 0, 1.0, now - 1)])
        .await
        .unwrap();
    store.log_notification(&NflogEntry::new("k", "r", "i", vec![1], vec![], now - H, now - 1)).await.unwrap();
    store.log_notification(&NflogEntry::new("k2", "r", "i", vec![1], vec![], now - H, now + H)).await.unwrap();
    let old = store.create_silence(&new_silence(r#"a="1""#, now - 100 * H, now - 99 * H), now - 100 * H).await.unwrap();
    let cur = store.create_silence(&new_silence(r#"a="1""#, now, now + H), now).await.unwrap();
    store.record_action(&audit("t", "scale_up", now - 100 * H)).await.unwrap();
    store.record_action(&audit("t", "scale_up", now)).await.unwrap();
    let deleted = store.prune(now, H, 48 * H).await.unwrap();
    assert_eq!(deleted, 4);
    assert!(store.load_alert_state("g", "Old").await.unwrap().is_empty());
    assert_eq!(store.load_alert_state("g", "New").await.unwrap().len(), 1);
    assert_eq!(store.notification_log(0).await.unwrap().len(), 1);
    assert!(store.silence(&old.id).await.unwrap().is_none());
    assert!(store.silence(&cur.id).await.unwrap().is_some());
    assert_eq!(store.audit_log(None, None, 10).await.unwrap().len(), 1);
    // The periodic pruner (wall clock): removes an entry already expired, stops on shutdown.
    let real_now = warden::store::now_ms();
    store
        .log_notification(&NflogEntry::new("k3", "r", "i", vec![1], vec![], real_now - H, real_now - 1))
        .await
        .unwrap();
    let cancel = CancellationToken::new();
    let task = store.spawn_pruner(
        cancel.clone(),
        Duration::from_millis(20),
        Duration::from_secs(3600),
        Duration::from_secs(86400 * 365 * 100),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.notification_log(0).await.unwrap().iter().any(|e| e.group_key == "k3") {
        assert!(tokio::time::Instant::now() < deadline, "pruner did not run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

async fn errors_name_operation_and_table_not_values(backend: Backend) {
    let Some(db) = TestDb::create(backend).await else { return };
    let store = db.open().await;
    store.close().await;
    let e = store.record_action(&audit("patient-123-45-6789", "scale_up", 1)).await.unwrap_err();
    let msg = e.to_string();
    assert_eq!(msg, "store: begin on table remediation_audit failed");
    let mut chain = String::new();
    let mut src: Option<&dyn std::error::Error> = Some(&e);
    while let Some(s) = src {
        chain.push_str(&s.to_string());
        src = s.source();
    }
    assert!(!chain.contains("6789"), "{chain}");
    let e = store.create_silence(&new_silence(r#"a="x""#, 0, i64::MAX), 0).await.unwrap_err();
    assert!(e.to_string().starts_with("store: count on table silences"), "{e}");
    assert!(matches!(Store::open("mysql://x").await, Err(StoreError::UnsupportedScheme)));
}
