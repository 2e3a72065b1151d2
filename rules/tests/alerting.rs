//! Alerting and recording rules, rule groups and their schedule.
//!
//! The state-machine tables drive [`AlertingRule::apply`] with evaluated vectors, so each
//! row states exactly what the rule sees; the store tests run rules through the real
//! [`Engine`] over a real [`Db`].

use std::sync::Arc;

use promql_parser::label::{MatchOp, Matcher};
use warden_rules::alerting::{
    Alert, AlertState, AlertStateStore, AlertingRule, AlertingRuleConfig, MemoryAlertStateStore, RestoreOptions,
    SavedAlert,
};
use warden_rules::group::{Group, GroupOptions, GroupRule, RuleHealth, Schedule, group_offset};
use warden_rules::labels::Labels;
use warden_rules::promql::{Engine, parse};
use warden_rules::recording::{RecordingRule, RecordingRuleConfig};
use warden_rules::rulefile::{Rule, RuleGroup, RuleKind};
use warden_rules::storage::{Appendable, Db, Queryable, Sample, is_stale_nan};

const MIN: i64 = 60_000;

fn alert_cfg(name: &str, expr: &str, for_ms: i64, keep_firing_for_ms: i64) -> AlertingRuleConfig {
    AlertingRuleConfig {
        name: name.to_owned(),
        expr: parse(expr).unwrap(),
        for_ms,
        keep_firing_for_ms,
        labels: vec![],
        annotations: vec![],
        external_labels: Labels::empty(),
        external_url: String::new(),
        query_offset_ms: 0,
        limit: 0,
    }
}

fn inst(i: &str) -> Labels {
    Labels::from_pairs(&[("__name__", "up"), ("instance", i)])
}

fn alert_labels(name: &str, i: &str) -> Labels {
    Labels::from_pairs(&[("alertname", name), ("instance", i)])
}

/// What one alert should look like after a step.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    /// No alert held.
    Gone,
    /// Pending since the minute given.
    Pending(i64),
    /// Firing: active since, fired at (minutes).
    Firing(i64, i64),
    /// Firing though absent: active since, fired at, keep_firing_since (minutes).
    KeptFiring(i64, i64, i64),
    /// Resolved at the minute given (held, inactive).
    Resolved(i64),
}

fn observe(rule: &AlertingRule, labels: &Labels) -> Want {
    let all = rule.active_alerts();
    let Some(a) = all.iter().find(|a| &a.labels == labels) else { return Want::Gone };
    let m = |t: i64| t / MIN;
    match (a.state, a.keep_firing_since) {
        (AlertState::Pending, _) => {
            assert_eq!(a.fired_at, None);
            Want::Pending(m(a.active_at))
        }
        (AlertState::Firing, None) => Want::Firing(m(a.active_at), m(a.fired_at.unwrap())),
        (AlertState::Firing, Some(k)) => Want::KeptFiring(m(a.active_at), m(a.fired_at.unwrap()), m(k)),
        (AlertState::Inactive, _) => Want::Resolved(m(a.resolved_at.unwrap())),
    }
}

/// Runs one alert through evaluations at the given minutes; `present` says whether the
/// expression returned its sample.
fn check(case: &str, for_ms: i64, kff_ms: i64, steps: &[(i64, bool, Want)]) {
    let mut rule = AlertingRule::new(alert_cfg("A", "up == 0", for_ms, kff_ms));
    let want_labels = alert_labels("A", "a");
    for (i, &(minute, present, want)) in steps.iter().enumerate() {
        let input = if present { vec![(inst("a"), 0.0)] } else { vec![] };
        rule.apply(&input, minute * MIN).unwrap();
        let got = observe(&rule, &want_labels);
        assert_eq!(got, want, "case {case:?}, step {i} (t={minute}m, present={present})");
    }
}

#[test]
fn state_machine_table() {
    use Want::*;
    let cases: &[(&str, i64, i64, &[(i64, bool, Want)])] = &[
        ("for=0 fires in the same evaluation", 0, 0, &[(0, true, Firing(0, 0)), (1, true, Firing(0, 0))]),
        (
            "for boundary: one step before pending, exactly at active_at+for firing",
            5 * MIN,
            0,
            &[
                (10, true, Pending(10)),
                (11, true, Pending(10)),
                (14, true, Pending(10)),
                (15, true, Firing(10, 15)),
                (16, true, Firing(10, 15)),
            ],
        ),
        ("for boundary from t=0", 5 * MIN, 0, &[(0, true, Pending(0)), (4, true, Pending(0)), (5, true, Firing(0, 5))]),
        (
            "flapping pending alert restarts its for each time",
            2 * MIN,
            0,
            &[
                (0, true, Pending(0)),
                (1, false, Gone),
                (2, true, Pending(2)),
                (3, true, Pending(2)),
                (4, false, Gone),
                (5, true, Pending(5)),
                (6, true, Pending(5)),
                (7, true, Firing(5, 7)),
                (8, false, Resolved(8)),
                (9, true, Pending(9)),
            ],
        ),
        (
            "keep_firing_for holds a firing alert, then it resolves",
            0,
            3 * MIN,
            &[
                (0, true, Firing(0, 0)),
                (1, false, KeptFiring(0, 0, 1)),
                (2, false, KeptFiring(0, 0, 1)),
                (3, false, KeptFiring(0, 0, 1)),
                (4, false, Resolved(4)),
                (5, false, Resolved(4)),
            ],
        ),
        (
            "keep_firing_for is reset when the alert is seen again",
            0,
            3 * MIN,
            &[
                (0, true, Firing(0, 0)),
                (1, false, KeptFiring(0, 0, 1)),
                (2, true, Firing(0, 0)),
                (3, false, KeptFiring(0, 0, 3)),
                (5, false, KeptFiring(0, 0, 3)),
                (6, false, Resolved(6)),
            ],
        ),
        ("keep_firing_for does not hold a pending alert", 5 * MIN, 3 * MIN, &[(0, true, Pending(0)), (1, false, Gone)]),
        (
            "resolved alert kept 15m then dropped",
            0,
            0,
            &[
                (0, true, Firing(0, 0)),
                (1, false, Resolved(1)),
                (10, false, Resolved(1)),
                (16, false, Resolved(1)),
                (17, false, Gone),
            ],
        ),
        (
            "re-appearance after resolution starts pending again",
            2 * MIN,
            0,
            &[
                (0, true, Pending(0)),
                (2, true, Firing(0, 2)),
                (3, false, Resolved(3)),
                (4, true, Pending(4)),
                (5, true, Pending(4)),
                (6, true, Firing(4, 6)),
            ],
        ),
    ];
    for (case, for_ms, kff, steps) in cases {
        check(case, *for_ms, *kff, steps);
    }
}

#[test]
fn for_boundary_at_millisecond_precision() {
    let mut rule = AlertingRule::new(alert_cfg("A", "up == 0", 5 * MIN, 0));
    let l = alert_labels("A", "a");
    rule.apply(&[(inst("a"), 0.0)], 1_000).unwrap();
    rule.apply(&[(inst("a"), 0.0)], 1_000 + 5 * MIN - 1).unwrap();
    assert_eq!(observe(&rule, &l), Want::Pending(0));
    rule.apply(&[(inst("a"), 0.0)], 1_000 + 5 * MIN).unwrap();
    let a = &rule.pending_or_firing()[0];
    assert_eq!((a.state, a.active_at, a.fired_at), (AlertState::Firing, 1_000, Some(1_000 + 5 * MIN)));
}

#[test]
fn labels_value_and_alertname() {
    let mut cfg = alert_cfg("HighLatency", "x > 5", 0, 0);
    cfg.labels = vec![("severity".into(), "page".into()), ("instance".into(), "overridden".into())];
    cfg.annotations = vec![("summary".into(), "latency is high".into())];
    let mut rule = AlertingRule::new(cfg);
    let sample = Labels::from_pairs(&[("__name__", "x"), ("instance", "a"), ("job", "api")]);
    let out = rule.apply(&[(sample.clone(), 7.0)], 0).unwrap();
    let a = &rule.pending_or_firing()[0];
    assert_eq!(
        a.labels,
        Labels::from_pairs(&[
            ("alertname", "HighLatency"),
            ("instance", "overridden"),
            ("job", "api"),
            ("severity", "page")
        ])
    );
    assert_eq!(a.annotations.get("summary"), Some("latency is high"));
    assert_eq!(a.value, 7.0);
    assert_eq!(out.len(), 2);
    // The value is updated on every evaluation while active.
    rule.apply(&[(sample, 9.5)], MIN).unwrap();
    assert_eq!(rule.pending_or_firing()[0].value, 9.5);
    assert_eq!(rule.state(), AlertState::Firing);
}

#[test]
fn empty_templated_label_removes_the_label() {
    let mut cfg = alert_cfg("A", "up == 0", 0, 0);
    cfg.labels = vec![("instance".into(), String::new())];
    let mut rule = AlertingRule::new(cfg);
    rule.apply(&[(inst("a"), 0.0)], 0).unwrap();
    assert_eq!(rule.pending_or_firing()[0].labels, Labels::from_pairs(&[("alertname", "A")]));
}

#[test]
fn duplicate_labelsets_fail_and_change_nothing() {
    let mut cfg = alert_cfg("A", "up == 0", 0, 0);
    cfg.labels = vec![("instance".into(), "same".into())];
    let mut rule = AlertingRule::new(cfg);
    rule.apply(&[(inst("a"), 0.0)], 0).unwrap();
    let before = rule.active_alerts();
    let err = rule.apply(&[(inst("a"), 0.0), (inst("b"), 0.0)], MIN).unwrap_err();
    assert_eq!(err.to_string(), "vector contains metrics with the same labelset after applying alert labels");
    assert_eq!(rule.active_alerts(), before);
}

#[test]
fn limit_exceeded_drops_all_alerts() {
    let mut cfg = alert_cfg("A", "up == 0", 0, 0);
    cfg.limit = 2;
    let mut rule = AlertingRule::new(cfg);
    rule.apply(&[(inst("a"), 0.0), (inst("b"), 0.0)], 0).unwrap();
    assert_eq!(rule.pending_or_firing().len(), 2);
    let err = rule.apply(&[(inst("a"), 0.0), (inst("b"), 0.0), (inst("c"), 0.0)], MIN).unwrap_err();
    assert_eq!(err.to_string(), "exceeded limit of 2 with 3 alerts");
    assert!(rule.active_alerts().is_empty());
    // Back under the limit: alerts start again, pending/firing anew.
    rule.apply(&[(inst("a"), 0.0)], 2 * MIN).unwrap();
    assert_eq!(rule.pending_or_firing()[0].active_at, 2 * MIN);
}

#[test]
fn resolved_alerts_do_not_count_towards_the_limit() {
    let mut cfg = alert_cfg("A", "up == 0", 0, 0);
    cfg.limit = 1;
    let mut rule = AlertingRule::new(cfg);
    rule.apply(&[(inst("a"), 0.0)], 0).unwrap();
    rule.apply(&[(inst("b"), 0.0)], MIN).unwrap();
    let states: Vec<AlertState> = rule.active_alerts().iter().map(|a| a.state).collect();
    assert_eq!(states, vec![AlertState::Inactive, AlertState::Firing]);
    assert_eq!(rule.pending_or_firing().len(), 1, "resolved alerts are not pending or firing");
}

#[test]
fn needs_sending_follows_resend_delay_and_resolution() {
    let mut rule = AlertingRule::new(alert_cfg("A", "up == 0", 0, 0));
    let l = alert_labels("A", "a");
    rule.apply(&[(inst("a"), 0.0)], 0).unwrap();
    let a = rule.active_alerts()[0].clone();
    assert!(a.needs_sending(0, MIN));
    assert!(rule.mark_sent(&l, 0));
    let a = rule.active_alerts()[0].clone();
    assert!(!a.needs_sending(MIN, MIN));
    assert!(a.needs_sending(MIN + 1, MIN));
    rule.apply(&[], 30_000).unwrap();
    assert!(rule.active_alerts()[0].needs_sending(30_000, MIN), "resolved after last send");
    let pending = Alert { state: AlertState::Pending, ..a };
    assert!(!pending.needs_sending(10 * MIN, MIN));
}

// ---- store output -------------------------------------------------------------------

fn eq(name: &str, value: &str) -> Matcher {
    Matcher::new(MatchOp::Equal, name, value)
}

fn samples(db: &Db, matchers: &[Matcher]) -> Vec<(String, Vec<Sample>)> {
    let mut v: Vec<(String, Vec<Sample>)> =
        db.select(matchers, i64::MIN, i64::MAX).into_iter().map(|s| (s.labels.to_string(), s.samples)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn fmt_samples(s: &[Sample]) -> String {
    s.iter()
        .map(|x| if is_stale_nan(x.v) { format!("{}:stale", x.t / 1000) } else { format!("{}:{}", x.t / 1000, x.v) })
        .collect::<Vec<_>>()
        .join(" ")
}

fn group_with(rules: Vec<GroupRule>) -> Group {
    Group::new("g", "test.yml", MIN, rules, &GroupOptions::default())
}

#[test]
fn alerts_series_and_stale_markers() {
    let db = Db::default();
    let engine = Engine::default();
    // instance a goes down at 0 and comes back at 3m; for = 1m.
    for (t, a) in [(0, 0.0), (MIN, 0.0), (2 * MIN, 0.0), (3 * MIN, 1.0), (4 * MIN, 1.0)] {
        db.append(&inst("a"), t, a).unwrap();
    }
    let mut g = group_with(vec![GroupRule::Alerting(AlertingRule::new(alert_cfg("Down", "up == 0", MIN, 0)))]);
    for t in [0, MIN, 2 * MIN, 3 * MIN, 4 * MIN] {
        let r = g.eval(&engine, &db, t);
        assert_eq!(r.failed(), 0, "{r:?}");
    }
    let got = samples(&db, &[eq("__name__", "ALERTS")]);
    let got: Vec<(String, String)> = got.into_iter().map(|(l, s)| (l, fmt_samples(&s))).collect();
    assert_eq!(
        got,
        vec![
            (
                r#"ALERTS{alertname="Down", alertstate="firing", instance="a"}"#.to_owned(),
                "60:1 120:1 180:stale".to_owned()
            ),
            (r#"ALERTS{alertname="Down", alertstate="pending", instance="a"}"#.to_owned(), "0:1 60:stale".to_owned()),
        ]
    );
    let fs = samples(&db, &[eq("__name__", "ALERTS_FOR_STATE")]);
    assert_eq!(fs.len(), 1);
    assert_eq!(fs[0].0, r#"ALERTS_FOR_STATE{alertname="Down", instance="a"}"#);
    assert_eq!(fmt_samples(&fs[0].1), "0:0 60:0 120:0 180:stale");
    // The report of the last evaluation: no alert, no sample.
    let GroupRule::Alerting(rule) = &g.rules()[0] else { panic!("not alerting") };
    assert_eq!(rule.status().health, RuleHealth::Ok);
    assert_eq!(rule.status().last_evaluation, Some(4 * MIN));
    assert_eq!(rule.status().samples, 0);
    assert_eq!(rule.active_alerts()[0].state, AlertState::Inactive);
}

#[test]
fn for_state_value_is_active_at_in_seconds() {
    let db = Db::default();
    let engine = Engine::default();
    db.append(&inst("a"), 90_500, 0.0).unwrap();
    db.append(&inst("a"), 150_500, 0.0).unwrap();
    let mut g = group_with(vec![GroupRule::Alerting(AlertingRule::new(alert_cfg("Down", "up == 0", 5 * MIN, 0)))]);
    g.eval(&engine, &db, 90_500);
    g.eval(&engine, &db, 150_500);
    let fs = samples(&db, &[eq("__name__", "ALERTS_FOR_STATE")]);
    assert_eq!(fmt_samples(&fs[0].1), "90:90 150:90");
}

#[test]
fn query_offset_shifts_query_and_output_timestamps() {
    let db = Db::default();
    let engine = Engine::default();
    db.append(&Labels::from_pairs(&[("__name__", "x")]), 0, 10.0).unwrap();
    db.append(&Labels::from_pairs(&[("__name__", "x")]), 2 * MIN, 1.0).unwrap();
    let opts = GroupOptions { default_query_offset_ms: 2 * MIN, ..GroupOptions::default() };
    let rule = AlertingRule::new(AlertingRuleConfig { query_offset_ms: 2 * MIN, ..alert_cfg("X", "x > 5", 0, 0) });
    let mut g = Group::new("g", "f", MIN, vec![GroupRule::Alerting(rule)], &opts);
    // At t=2m the query runs at 0, where x=10 > 5.
    g.eval(&engine, &db, 2 * MIN);
    let got = samples(&db, &[eq("__name__", "ALERTS")]);
    assert_eq!(got.len(), 1);
    assert_eq!(fmt_samples(&got[0].1), "0:1");
    let GroupRule::Alerting(r) = &g.rules()[0] else { panic!() };
    assert_eq!(r.pending_or_firing()[0].active_at, 2 * MIN, "active_at is the evaluation time");
}

#[test]
fn query_error_marks_rule_unhealthy() {
    let db = Db::default();
    let engine = Engine::default();
    let mut g = group_with(vec![GroupRule::Recording(RecordingRule::new(RecordingRuleConfig {
        name: "r".into(),
        expr: parse(r#""a string""#).unwrap(),
        labels: vec![],
        query_offset_ms: 0,
        limit: 0,
    }))]);
    let rep = g.eval(&engine, &db, 0);
    assert_eq!(rep.failed(), 1);
    assert_eq!(rep.rules[0].error.as_deref(), Some("rule result is not a vector or scalar: got string"));
    assert_eq!(g.rules()[0].status().health, RuleHealth::Err);
}

// ---- recording rules ----------------------------------------------------------------

fn rec(name: &str, expr: &str, labels: &[(&str, &str)], limit: usize) -> RecordingRule {
    RecordingRule::new(RecordingRuleConfig {
        name: name.into(),
        expr: parse(expr).unwrap(),
        labels: labels.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
        query_offset_ms: 0,
        limit,
    })
}

#[test]
fn recording_rule_output_is_read_by_a_later_rule_at_the_same_timestamp() {
    let db = Db::default();
    let engine = Engine::default();
    let x = |i: &str| Labels::from_pairs(&[("__name__", "x"), ("instance", i)]);
    db.append(&x("a"), 0, 3.0).unwrap();
    db.append(&x("b"), 0, 8.0).unwrap();
    let mut g = group_with(vec![
        GroupRule::Recording(rec("job:x:doubled", "x * 2", &[("source", "rec")], 0)),
        GroupRule::Alerting(AlertingRule::new(alert_cfg("Big", "job:x:doubled > 10", 0, 0))),
    ]);
    let rep = g.eval(&engine, &db, 0);
    assert_eq!(rep.failed(), 0, "{rep:?}");
    assert_eq!(rep.rules[0].samples, 2);
    assert_eq!(rep.rules[1].samples, 2, "ALERTS + ALERTS_FOR_STATE of instance b");
    let recorded = samples(&db, &[eq("__name__", "job:x:doubled")]);
    let recorded: Vec<(String, String)> = recorded.into_iter().map(|(l, s)| (l, fmt_samples(&s))).collect();
    assert_eq!(
        recorded,
        vec![
            (r#"job:x:doubled{instance="a", source="rec"}"#.to_owned(), "0:6".to_owned()),
            (r#"job:x:doubled{instance="b", source="rec"}"#.to_owned(), "0:16".to_owned()),
        ]
    );
    let alerts = g.active_alerts();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].labels, Labels::from_pairs(&[("alertname", "Big"), ("instance", "b"), ("source", "rec")]));
    assert_eq!(alerts[0].value, 16.0);
}

#[test]
fn recording_rule_scalar_duplicates_limit_and_staleness() {
    let db = Db::default();
    let engine = Engine::default();
    // Scalar result: one series with only the name.
    let mut r = rec("answer", "42", &[], 0);
    assert_eq!(r.eval(&engine, &db, 0), Ok(1));
    assert_eq!(fmt_samples(&samples(&db, &[eq("__name__", "answer")])[0].1), "0:42");

    // Duplicate label sets after the name replaces the metric names.
    let y = |n: &str| Labels::from_pairs(&[("__name__", n), ("k", "v")]);
    db.append(&y("y1"), 0, 1.0).unwrap();
    db.append(&y("y2"), 0, 2.0).unwrap();
    let mut d = rec("same", r#"{k="v"}"#, &[], 0);
    let err = d.eval(&engine, &db, 0).unwrap_err();
    assert_eq!(err.to_string(), "vector contains metrics with the same labelset after applying rule labels");
    assert_eq!(d.status().health, RuleHealth::Err);
    assert_eq!(d.status().last_error.as_deref(), Some(err.to_string().as_str()));

    let z = |i: &str| Labels::from_pairs(&[("__name__", "z"), ("i", i)]);
    db.append(&z("1"), 0, 1.0).unwrap();
    db.append(&z("2"), 0, 2.0).unwrap();
    db.append(&z("1"), MIN, 1.0).unwrap();
    db.append(&z("2"), MIN, stale_marker()).unwrap();

    // Limit.
    let mut l = rec("lim", "z", &[("x", "1")], 1);
    assert_eq!(l.eval(&engine, &db, 0).unwrap_err().to_string(), "exceeded limit of 1 with 2 series");
    assert!(samples(&db, &[eq("__name__", "lim")]).is_empty());

    // A series that disappears gets a staleness marker at the next evaluation.
    let mut s = rec("z:copy", "z", &[], 0);
    assert_eq!(s.eval(&engine, &db, 0), Ok(2));
    assert_eq!(s.eval(&engine, &db, MIN), Ok(1));
    let got: Vec<(String, String)> =
        samples(&db, &[eq("__name__", "z:copy")]).into_iter().map(|(l, s)| (l, fmt_samples(&s))).collect();
    assert_eq!(
        got,
        vec![
            (r#"z:copy{i="1"}"#.to_owned(), "0:1 60:1".to_owned()),
            (r#"z:copy{i="2"}"#.to_owned(), "0:2 60:stale".to_owned()),
        ]
    );
}

fn stale_marker() -> f64 {
    warden_rules::storage::stale_nan()
}

#[test]
fn group_labels_apply_to_every_rule_and_rule_labels_win() {
    let file_group = RuleGroup {
        name: "g".into(),
        interval_ms: Some(30_000),
        query_offset_ms: None,
        limit: 0,
        labels: vec![("team".into(), "sre".into()), ("severity".into(), "ticket".into())],
        rules: vec![
            Rule {
                kind: RuleKind::Record,
                name: "r".into(),
                expr_text: "1".into(),
                expr: parse("1").unwrap(),
                for_ms: 0,
                keep_firing_for_ms: 0,
                labels: vec![],
                annotations: vec![],
                line: 3,
            },
            Rule {
                kind: RuleKind::Alert,
                name: "A".into(),
                expr_text: "r > 0".into(),
                expr: parse("r > 0").unwrap(),
                for_ms: 0,
                keep_firing_for_ms: 0,
                labels: vec![("severity".into(), "page".into())],
                annotations: vec![],
                line: 5,
            },
        ],
        line: 1,
    };
    let mut g = Group::from_rule_group("rules.yml", &file_group, &GroupOptions::default()).unwrap();
    assert_eq!(g.interval_ms(), 30_000);
    let db = Db::default();
    let rep = g.eval(&Engine::default(), &db, 0);
    assert_eq!(rep.failed(), 0, "{rep:?}");
    let rec = samples(&db, &[eq("__name__", "r")]);
    assert_eq!(rec[0].0, r#"r{severity="ticket", team="sre"}"#);
    assert_eq!(
        g.active_alerts()[0].labels,
        Labels::from_pairs(&[("alertname", "A"), ("severity", "page"), ("team", "sre")])
    );
    // A non-positive interval is refused with the group named.
    let bad = RuleGroup { interval_ms: Some(0), ..file_group };
    let err = Group::from_rule_group("rules.yml", &bad, &GroupOptions::default()).unwrap_err();
    assert_eq!(err.to_string(), "group \"g\" in rules.yml: evaluation interval must be positive, got 0ms");
}

// ---- restoration --------------------------------------------------------------------

fn saved(state: AlertState, active_at: i64, saved_at: i64) -> SavedAlert {
    SavedAlert {
        labels: alert_labels("A", "a"),
        state,
        active_at,
        fired_at: None,
        keep_firing_since: None,
        resolved_at: None,
        value: 0.0,
        saved_at,
    }
}

/// The alert after the first evaluation at `t` of a rule with `for_ms` restored from `s`.
fn restored(for_ms: i64, s: SavedAlert, t: i64) -> Alert {
    let mut rule = AlertingRule::new(alert_cfg("A", "up == 0", for_ms, 0));
    rule.restore_on_next_eval(vec![s], RestoreOptions::default());
    rule.apply(&[(inst("a"), 0.0)], t).unwrap();
    rule.active_alerts()[0].clone()
}

#[test]
fn restoration_table() {
    let h = 60 * MIN;
    // (case, for, saved alert, first evaluation at, want active_at, want state)
    let cases: &[(&str, i64, SavedAlert, i64, i64, AlertState)] = &[
        (
            "pending 20m of 30m, down 5m: keeps its 20m, downtime not counted",
            30 * MIN,
            saved(AlertState::Pending, 100 * MIN, 120 * MIN),
            125 * MIN,
            105 * MIN,
            AlertState::Pending,
        ),
        (
            "firing before the restart fires at once with its old active_at",
            30 * MIN,
            saved(AlertState::Firing, 10 * MIN, 120 * MIN),
            125 * MIN,
            10 * MIN,
            AlertState::Firing,
        ),
        (
            "less than the grace period left: fires grace after restart",
            30 * MIN,
            saved(AlertState::Pending, 95 * MIN, 120 * MIN),
            125 * MIN,
            125 * MIN + 10 * MIN - 30 * MIN,
            AlertState::Pending,
        ),
        (
            "downtime beyond the outage tolerance: not restored",
            30 * MIN,
            saved(AlertState::Pending, 100 * MIN, 120 * MIN),
            120 * MIN + h + 1,
            120 * MIN + h + 1,
            AlertState::Pending,
        ),
        (
            "downtime exactly the tolerance is restored",
            30 * MIN,
            saved(AlertState::Pending, 100 * MIN, 120 * MIN),
            120 * MIN + h,
            100 * MIN + h,
            AlertState::Pending,
        ),
        (
            "for shorter than the grace period: not restored",
            5 * MIN,
            saved(AlertState::Pending, 100 * MIN, 102 * MIN),
            103 * MIN,
            103 * MIN,
            AlertState::Pending,
        ),
        (
            "resolved alerts are not restored",
            30 * MIN,
            saved(AlertState::Inactive, 10 * MIN, 120 * MIN),
            125 * MIN,
            125 * MIN,
            AlertState::Pending,
        ),
    ];
    for (case, for_ms, s, t, want_active, want_state) in cases {
        let a = restored(*for_ms, s.clone(), *t);
        assert_eq!((a.active_at, a.state), (*want_active, *want_state), "case {case:?}");
    }
}

#[test]
fn restoration_only_applies_to_the_first_evaluation() {
    let mut rule = AlertingRule::new(alert_cfg("A", "up == 0", 30 * MIN, 0));
    rule.restore_on_next_eval(vec![saved(AlertState::Pending, 100 * MIN, 120 * MIN)], RestoreOptions::default());
    // First evaluation does not see the alert: restoration is used up.
    rule.apply(&[], 121 * MIN).unwrap();
    rule.apply(&[(inst("a"), 0.0)], 122 * MIN).unwrap();
    assert_eq!(rule.active_alerts()[0].active_at, 122 * MIN);
}

/// `up{instance="a"} == 0` for `minutes` minutes, and a group with alert `A` on it
/// (`for: 30m`) saving its state to a fresh in-memory store.
fn restorable_setup(minutes: i64) -> (Arc<MemoryAlertStateStore>, GroupOptions, Db) {
    let store: Arc<MemoryAlertStateStore> = Arc::new(MemoryAlertStateStore::new());
    let opts = GroupOptions { state_store: Some(store.clone()), ..GroupOptions::default() };
    let db = Db::default();
    for m in 0..=minutes {
        db.append(&inst("a"), m * MIN, 0.0).unwrap();
    }
    (store, opts, db)
}

fn for_30m_group(opts: &GroupOptions) -> Group {
    Group::new(
        "g",
        "f.yml",
        MIN,
        vec![GroupRule::Alerting(AlertingRule::new(alert_cfg("A", "up == 0", 30 * MIN, 0)))],
        opts,
    )
}

#[test]
fn group_saves_and_restores_through_the_state_store() {
    let (store, opts, db) = restorable_setup(40);
    let engine = Engine::default();
    let mk = || for_30m_group(&opts);
    let mut g = mk();
    for m in 0..=20 {
        let r = g.eval(&engine, &db, m * MIN);
        assert_eq!((r.restore_error.clone(), r.save_error.clone()), (None, None));
    }
    let saved = store.load("f.yml;g", "A").unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!((saved[0].state, saved[0].active_at, saved[0].saved_at), (AlertState::Pending, 0, 20 * MIN));

    // "Restart" after 5 minutes of downtime: 20m of pending time kept, fires at 35m.
    let mut g2 = mk();
    g2.eval(&engine, &db, 25 * MIN);
    assert_eq!(g2.active_alerts()[0].active_at, 5 * MIN);
    g2.eval(&engine, &db, 34 * MIN);
    assert_eq!(g2.active_alerts()[0].state, AlertState::Pending);
    g2.eval(&engine, &db, 35 * MIN);
    assert_eq!(g2.active_alerts()[0].state, AlertState::Firing);

    // A restart with an empty store starts afresh.
    let empty = GroupOptions { state_store: Some(Arc::new(MemoryAlertStateStore::new())), ..GroupOptions::default() };
    let mut g3 = for_30m_group(&empty);
    let db3 = Db::default();
    db3.append(&inst("a"), 25 * MIN, 0.0).unwrap();
    g3.eval(&engine, &db3, 25 * MIN);
    assert_eq!(g3.active_alerts()[0].active_at, 25 * MIN);
}

struct FailingStore;

impl AlertStateStore for FailingStore {
    fn save(&self, _: &str, _: &str, _: &[SavedAlert]) -> Result<(), String> {
        Err("disk full".into())
    }
    fn load(&self, _: &str, _: &str) -> Result<Vec<SavedAlert>, String> {
        Err("no such table".into())
    }
}

#[test]
fn state_store_errors_are_reported_not_fatal() {
    let opts = GroupOptions { state_store: Some(Arc::new(FailingStore)), ..GroupOptions::default() };
    let db = Db::default();
    db.append(&inst("a"), 0, 0.0).unwrap();
    let mut g = Group::new(
        "g",
        "f.yml",
        MIN,
        vec![GroupRule::Alerting(AlertingRule::new(alert_cfg("A", "up == 0", 0, 0)))],
        &opts,
    );
    let r = g.eval(&Engine::default(), &db, 0);
    assert_eq!(r.restore_error.as_deref(), Some("loading alert state of \"A\": no such table"));
    assert_eq!(r.save_error.as_deref(), Some("saving alert state of \"A\": disk full"));
    assert_eq!(r.failed(), 0);
    assert_eq!(g.active_alerts()[0].state, AlertState::Firing);
}

// ---- reload and removal -------------------------------------------------------------

#[test]
fn copy_state_keeps_alerts_across_reload_and_mark_stale_ends_series() {
    let db = Db::default();
    let engine = Engine::default();
    for m in 0..5 {
        db.append(&inst("a"), m * MIN, 0.0).unwrap();
    }
    let mk = || group_with(vec![GroupRule::Alerting(AlertingRule::new(alert_cfg("A", "up == 0", 3 * MIN, 0)))]);
    let mut old = mk();
    old.eval(&engine, &db, 0);
    old.eval(&engine, &db, MIN);
    let mut new = mk();
    new.copy_state_from(&old);
    new.eval(&engine, &db, 3 * MIN);
    assert_eq!(new.active_alerts()[0].state, AlertState::Firing, "pending time survived the reload");
    new.mark_stale(&db, 4 * MIN);
    let got = samples(&db, &[eq("__name__", "ALERTS"), eq("alertstate", "firing")]);
    assert_eq!(fmt_samples(&got[0].1), "180:1 240:stale");
}

#[test]
fn reload_before_the_first_evaluation_still_restores_saved_state() {
    let (_store, opts, db) = restorable_setup(30);
    let engine = Engine::default();
    let mk = || for_30m_group(&opts);
    let mut before_restart = mk();
    for m in 0..=20 {
        before_restart.eval(&engine, &db, m * MIN);
    }
    // Restart, then a reload lands before the new process's first evaluation.
    let first = mk();
    let mut reloaded = mk();
    reloaded.copy_state_from(&first);
    reloaded.eval(&engine, &db, 22 * MIN);
    assert_eq!(reloaded.active_alerts()[0].active_at, 2 * MIN, "20 minutes of pending time kept");
}

#[test]
fn removing_a_group_marks_series_of_rules_dropped_by_an_earlier_reload() {
    let db = Db::default();
    let engine = Engine::default();
    db.append(&inst("a"), 0, 0.0).unwrap();
    let a = || GroupRule::Alerting(AlertingRule::new(alert_cfg("A", "up == 0", 0, 0)));
    let b = || GroupRule::Alerting(AlertingRule::new(alert_cfg("B", "up == 0", 0, 0)));
    let mut old = group_with(vec![a(), b()]);
    old.eval(&engine, &db, 0);
    // A reload drops rule B; before the group evaluates again, the group is removed.
    let mut new = group_with(vec![a()]);
    new.copy_state_from(&old);
    new.mark_stale(&db, MIN);
    for name in ["A", "B"] {
        let got = samples(&db, &[eq("__name__", "ALERTS"), eq("alertname", name)]);
        assert_eq!(fmt_samples(&got[0].1), "0:1 60:stale", "ALERTS of {name}");
    }
}

// ---- schedule -----------------------------------------------------------------------

#[test]
fn schedule_alignment_and_missed_iterations() {
    // Interval 60s, offset 15s: slots at ...:15.
    let mut s = Schedule::new(60_000, 15_000, 100_000);
    assert_eq!(s.slot_at_or_before(100_000), 75_000);
    assert_eq!(s.next_eval(), 135_000);
    assert_eq!(s.poll(134_999), None);
    assert_eq!(s.poll(135_000).map(|t| (t.t, t.missed)), Some((135_000, 0)));
    assert_eq!(s.next_eval(), 195_000);
    // Late by a bit: the slot due is still evaluated, nothing missed.
    assert_eq!(s.poll(200_000).map(|t| (t.t, t.missed)), Some((195_000, 0)));
    // Three slots late (255, 315, 375 skipped): evaluates the latest slot.
    assert_eq!(s.poll(440_000).map(|t| (t.t, t.missed)), Some((435_000, 3)));
    assert_eq!(s.next_eval(), 495_000);
    assert_eq!(s.poll(500_000).map(|t| (t.t, t.missed)), Some((495_000, 0)));
    assert_eq!((s.iterations(), s.missed_iterations()), (4, 3));
    // Exactly on a slot: the first evaluation is the next slot.
    assert_eq!(Schedule::new(60_000, 15_000, 75_000).next_eval(), 135_000);
    // Hostile inputs do not panic.
    let mut h = Schedule::new(0, -5, i64::MAX);
    assert_eq!(h.poll(i64::MIN), None);
    let _ = Schedule::new(i64::MAX, i64::MIN, i64::MIN).poll(i64::MAX);
}

#[test]
fn group_offset_is_deterministic_and_spreads_groups() {
    let a = group_offset("rules.yml", "api", 60_000);
    assert_eq!(a, group_offset("rules.yml", "api", 60_000));
    assert!((0..60_000).contains(&a));
    let offsets: std::collections::HashSet<i64> =
        (0..20).map(|i| group_offset("rules.yml", &format!("g{i}"), 60_000)).collect();
    assert!(offsets.len() >= 18, "20 groups should get (nearly) distinct offsets, got {}", offsets.len());
    let g = group_with(vec![]);
    let s = g.schedule(1_000_000);
    assert_eq!(s.offset_ms(), group_offset("test.yml", "g", MIN));
    assert_eq!((s.next_eval() - s.offset_ms()).rem_euclid(MIN), 0);
}

#[test]
fn labels_and_annotations_are_templated_per_sample_and_updated() {
    let mut cfg = alert_cfg("Hot", "x > 5", 0, 0);
    cfg.labels = vec![("where".into(), "{{ $labels.instance }}@{{ $externalLabels.cluster }}".into())];
    cfg.annotations = vec![
        ("summary".into(), "{{ $labels.instance }} is at {{ $value }}".into()),
        ("link".into(), "{{ $externalURL }}/x".into()),
    ];
    cfg.external_labels = Labels::from_pairs(&[("cluster", "eu1")]);
    cfg.external_url = "http://warden:9464".into();
    let mut rule = AlertingRule::new(cfg);
    let x = |i: &str| Labels::from_pairs(&[("__name__", "x"), ("instance", i)]);
    rule.apply(&[(x("a"), 7.0), (x("b"), 8.0)], 0).unwrap();
    let got: Vec<(String, String, String)> = rule
        .pending_or_firing()
        .iter()
        .map(|a| {
            (
                a.labels.get("where").unwrap_or("").to_owned(),
                a.annotations.get("summary").unwrap_or("").to_owned(),
                a.annotations.get("link").unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("a@eu1".to_owned(), "a is at 7".to_owned(), "http://warden:9464/x".to_owned()),
            ("b@eu1".to_owned(), "b is at 8".to_owned(), "http://warden:9464/x".to_owned()),
        ]
    );
    // The annotation follows the value; the identity (labels) does not change.
    rule.apply(&[(x("a"), 9.25)], MIN).unwrap();
    let a = &rule.pending_or_firing()[0];
    assert_eq!(a.annotations.get("summary"), Some("a is at 9.25"));
    assert_eq!(a.active_at, 0);
}

#[test]
fn a_label_template_that_varies_with_the_value_changes_the_alert_identity() {
    // As in Prometheus: `$value` in a label makes a new alert whenever the value changes.
    let mut cfg = alert_cfg("V", "x > 5", 5 * MIN, 0);
    cfg.labels = vec![("v".into(), "{{ $value }}".into())];
    let mut rule = AlertingRule::new(cfg);
    let x = Labels::from_pairs(&[("__name__", "x")]);
    rule.apply(&[(x.clone(), 6.0)], 0).unwrap();
    rule.apply(&[(x, 7.0)], MIN).unwrap();
    let got: Vec<(Option<String>, i64)> =
        rule.active_alerts().iter().map(|a| (a.labels.get("v").map(str::to_owned), a.active_at)).collect();
    assert_eq!(got, vec![(Some("7".to_owned()), MIN)], "the pending alert for 6 is dropped");
}

#[test]
fn group_mark_sent_reaches_the_rule_holding_the_alert() {
    let db = Db::default();
    db.append(&inst("a"), 0, 0.0).unwrap();
    let mut g = group_with(vec![
        GroupRule::Recording(rec("r", "up", &[], 0)),
        GroupRule::Alerting(AlertingRule::new(alert_cfg("A", "up == 0", 0, 0))),
    ]);
    g.eval(&Engine::default(), &db, 0);
    assert!(g.mark_sent(&alert_labels("A", "a"), 5));
    assert!(!g.mark_sent(&alert_labels("A", "zzz"), 5));
    assert_eq!(g.active_alerts()[0].last_sent_at, Some(5));
    assert!(g.rules()[0].as_alerting().is_none());
}

#[test]
fn store_refusals_are_reported_and_the_rest_is_written() {
    use warden_rules::storage::DbConfig;
    // Room for the two input series and one more.
    let db = Db::new(DbConfig { max_series: 3, ..DbConfig::default() });
    let x = |i: &str| Labels::from_pairs(&[("__name__", "x"), ("i", i)]);
    db.append(&x("1"), 0, 1.0).unwrap();
    db.append(&x("2"), 0, 2.0).unwrap();
    let mut r = rec("copy", "x", &[], 0);
    let err = r.eval(&Engine::default(), &db, 0).unwrap_err();
    assert!(err.to_string().starts_with("1 of 2 output samples not stored: series limit of 3 reached"), "{err}");
    assert_eq!(r.status().health, RuleHealth::Err);
    assert_eq!(r.last_series(), vec![Labels::from_pairs(&[("__name__", "copy"), ("i", "1")])]);
    assert_eq!(samples(&db, &[eq("__name__", "copy")]).len(), 1);
}

#[test]
fn thousands_of_alerts_through_a_group() {
    let db = Db::default();
    let n = 5_000;
    for i in 0..n {
        db.append(&inst(&i.to_string()), 0, 0.0).unwrap();
        db.append(&inst(&i.to_string()), MIN, if i % 2 == 0 { 0.0 } else { 1.0 }).unwrap();
    }
    let mut g = group_with(vec![GroupRule::Alerting(AlertingRule::new(alert_cfg("Down", "up == 0", MIN, 0)))]);
    let started = std::time::Instant::now();
    let r0 = g.eval(&Engine::default(), &db, 0);
    let r1 = g.eval(&Engine::default(), &db, MIN);
    eprintln!("two evaluations of {n} alerts: {:?}", started.elapsed());
    assert_eq!((r0.samples(), r1.samples()), (2 * n, n));
    let alerts = g.active_alerts();
    let firing = alerts.iter().filter(|a| a.state == AlertState::Firing).count();
    let resolved = alerts.iter().filter(|a| a.state == AlertState::Inactive).count();
    assert_eq!((firing, resolved), (n / 2, 0), "odd instances were pending, so they are dropped");
    // Pending series of all 5000 were marked stale at 1m.
    let pending = samples(&db, &[eq("__name__", "ALERTS"), eq("alertstate", "pending")]);
    assert_eq!(pending.len(), n);
    assert!(pending.iter().all(|(_, s)| s.len() == 2 && is_stale_nan(s[1].v) && s[1].t == MIN));
}

#[test]
fn reload_marks_series_of_removed_rules_stale() {
    let db = Db::default();
    let engine = Engine::default();
    db.append(&inst("a"), 0, 0.0).unwrap();
    db.append(&inst("a"), MIN, 0.0).unwrap();
    let mut old = group_with(vec![
        GroupRule::Recording(rec("kept", "up", &[], 0)),
        GroupRule::Recording(rec("removed", "up", &[], 0)),
    ]);
    old.eval(&engine, &db, 0);
    let mut new = group_with(vec![GroupRule::Recording(rec("kept", "up", &[], 0))]);
    new.copy_state_from(&old);
    assert_eq!(new.eval(&engine, &db, MIN).failed(), 0);
    let got: Vec<(String, String)> = ["kept", "removed"]
        .iter()
        .flat_map(|n| samples(&db, &[eq("__name__", n)]))
        .map(|(l, s)| (l, fmt_samples(&s)))
        .collect();
    assert_eq!(
        got,
        vec![
            (r#"kept{instance="a"}"#.to_owned(), "0:0 60:0".to_owned()),
            (r#"removed{instance="a"}"#.to_owned(), "0:0 60:stale".to_owned()),
        ]
    );
}
