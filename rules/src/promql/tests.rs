//! Unit tests of the evaluator core: selectors, subqueries, operators, aggregations,
//! limits and hostile expressions.

use super::*;
use crate::storage::{Appendable, Db, DbConfig, stale_nan};

fn db(series: &[(&[(&str, &str)], &[(i64, f64)])]) -> Db {
    let db = Db::new(DbConfig { retention_ms: i64::MAX / 4, ..DbConfig::default() });
    for (labels, samples) in series {
        let l = Labels::from_pairs(labels);
        for (t, v) in *samples {
            db.append(&l, *t, *v).unwrap();
        }
    }
    db
}

fn instant(db: &Db, q: &str, t: i64) -> Result<QueryResult, EvalError> {
    Engine::default().instant(db, &parse(q)?, t)
}

/// The instant vector of `q` at `t` as sorted `(labels, value)` strings.
fn vector(db: &Db, q: &str, t: i64) -> Vec<String> {
    match instant(db, q, t).unwrap_or_else(|e| panic!("{q}: {e}")).value {
        Value::Vector(v) => {
            let mut out: Vec<String> = v.iter().map(|s| format!("{} {}", s.labels, s.v)).collect();
            out.sort();
            out
        }
        other => panic!("{q}: expected a vector, got {other:?}"),
    }
}

fn scalar(db: &Db, q: &str, t: i64) -> f64 {
    match instant(db, q, t).unwrap_or_else(|e| panic!("{q}: {e}")).value {
        Value::Scalar { v, .. } => v,
        other => panic!("{q}: expected a scalar, got {other:?}"),
    }
}

fn exec_err(db: &Db, q: &str, t: i64) -> String {
    match instant(db, q, t) {
        Err(e) => e.to_string(),
        Ok(r) => panic!("{q}: expected an error, got {:?}", r.value),
    }
}

const M: i64 = 60_000;

#[test]
fn selector_lookback_offset_and_staleness() {
    let d = db(&[
        (&[("__name__", "up"), ("job", "a")], &[(0, 1.0), (M, 2.0)]),
        (&[("__name__", "up"), ("job", "b")], &[(0, 5.0), (M, stale_nan())]),
    ]);
    assert_eq!(vector(&d, "up", 2 * M), vec!["up{job=\"a\"} 2"]);
    assert_eq!(vector(&d, "up", 30_000), vec!["up{job=\"a\"} 1", "up{job=\"b\"} 5"]);
    // Lookback is left-open: at exactly 5 m after the last sample it is gone.
    assert!(vector(&d, "up", 6 * M).is_empty());
    assert_eq!(vector(&d, "up{job=~\"a|b\"} offset 1m", 2 * M), vec!["up{job=\"a\"} 2"]);
    assert_eq!(vector(&d, "up offset -1m", 0), vec!["up{job=\"a\"} 2"]);
    assert_eq!(vector(&d, "up @ 0", 10 * M), vec!["up{job=\"a\"} 1", "up{job=\"b\"} 5"]);
    assert_eq!(vector(&d, "up{job!=\"a\"}", 30_000), vec!["up{job=\"b\"} 5"]);
    assert_eq!(vector(&d, "{job=\"a\" or job=\"b\"}", 30_000).len(), 2);
}

#[test]
fn matrix_selector_is_left_open() {
    let d = db(&[(&[("__name__", "m")], &[(0, 1.0), (M, 2.0), (2 * M, 3.0)])]);
    match instant(&d, "m[1m]", 2 * M).unwrap().value {
        Value::Matrix(m) => {
            assert_eq!(m.len(), 1);
            assert_eq!(m[0].samples, vec![Sample { t: 2 * M, v: 3.0 }]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn subquery_steps_are_absolutely_aligned() {
    let samples: Vec<(i64, f64)> = (0..20).map(|i| (i * 10_000, i as f64)).collect();
    let d = db(&[(&[("__name__", "m")], &samples)]);
    // Window (10 s, 70 s] with step 20 s: points at 20 s, 40 s and 60 s.
    match instant(&d, "m[1m:20s]", 70_000).unwrap().value {
        Value::Matrix(m) => {
            let ts: Vec<i64> = m[0].samples.iter().map(|s| s.t).collect();
            assert_eq!(ts, vec![20_000, 40_000, 60_000]);
            let vs: Vec<f64> = m[0].samples.iter().map(|s| s.v).collect();
            assert_eq!(vs, vec![2.0, 4.0, 6.0]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn binary_operators_and_matching() {
    let d = db(&[
        (&[("__name__", "a"), ("i", "1"), ("j", "x")], &[(0, 10.0)]),
        (&[("__name__", "a"), ("i", "2"), ("j", "x")], &[(0, 20.0)]),
        (&[("__name__", "b"), ("j", "x")], &[(0, 2.0)]),
    ]);
    assert_eq!(vector(&d, "a * 2", 0), vec!["{i=\"1\", j=\"x\"} 20", "{i=\"2\", j=\"x\"} 40"]);
    assert_eq!(vector(&d, "a > 15", 0), vec!["a{i=\"2\", j=\"x\"} 20"]);
    assert_eq!(vector(&d, "15 < a", 0), vec!["a{i=\"2\", j=\"x\"} 20"]);
    assert_eq!(vector(&d, "a > bool 15", 0), vec!["{i=\"1\", j=\"x\"} 0", "{i=\"2\", j=\"x\"} 1"]);
    assert_eq!(vector(&d, "a / on(j) group_left b", 0), vec!["{i=\"1\", j=\"x\"} 5", "{i=\"2\", j=\"x\"} 10"]);
    assert!(exec_err(&d, "a / on(j) b", 0).contains("many-to-one matching must be explicit"));
    assert_eq!(vector(&d, "b / on(j) group_right a", 0), vec!["{i=\"1\", j=\"x\"} 0.2", "{i=\"2\", j=\"x\"} 0.1"]);
    assert!(exec_err(&d, "b + on(j) group_left a", 0).contains("many-to-many matching not allowed"));
    assert_eq!(vector(&d, "a and on(i) a{i=\"1\"}", 0), vec!["a{i=\"1\", j=\"x\"} 10"]);
    assert_eq!(vector(&d, "a unless on(i) a{i=\"1\"}", 0), vec!["a{i=\"2\", j=\"x\"} 20"]);
    assert_eq!(vector(&d, "b or a", 0).len(), 3);
    assert_eq!(scalar(&d, "2 ^ 3 % 5", 0), 3.0);
    assert_eq!(scalar(&d, "1 < bool 2", 0), 1.0);
    let d2 = db(&[(&[("__name__", "x"), ("j", "1")], &[(0, 1.0)]), (&[("__name__", "y"), ("j", "1")], &[(0, 1.0)])]);
    assert!(exec_err(&d2, "-{j=\"1\"}", 0).contains("same labelset"));
}

#[test]
fn aggregations() {
    let d = db(&[
        (&[("__name__", "m"), ("g", "a"), ("i", "1")], &[(0, 1.0)]),
        (&[("__name__", "m"), ("g", "a"), ("i", "2")], &[(0, 3.0)]),
        (&[("__name__", "m"), ("g", "b"), ("i", "3")], &[(0, 3.0)]),
    ]);
    assert_eq!(vector(&d, "sum by (g) (m)", 0), vec!["{g=\"a\"} 4", "{g=\"b\"} 3"]);
    assert_eq!(vector(&d, "avg without (i) (m)", 0), vec!["{g=\"a\"} 2", "{g=\"b\"} 3"]);
    assert_eq!(vector(&d, "count(m)", 0), vec!["{} 3"]);
    assert_eq!(vector(&d, "stddev(m)", 0)[0].split(' ').nth(1).unwrap().parse::<f64>().unwrap(), (8.0f64 / 9.0).sqrt());
    assert_eq!(vector(&d, "topk(1, m)", 0).len(), 1);
    assert_eq!(vector(&d, "bottomk by (g) (1, m)", 0), vec!["m{g=\"a\", i=\"1\"} 1", "m{g=\"b\", i=\"3\"} 3"]);
    assert_eq!(vector(&d, "count_values(\"v\", m)", 0), vec!["{v=\"1\"} 1", "{v=\"3\"} 2"]);
    assert_eq!(vector(&d, "quantile(0.5, m)", 0), vec!["{} 3"]);
    assert_eq!(vector(&d, "limitk(2, m)", 0).len(), 2);
    assert_eq!(vector(&d, "limit_ratio(1, m)", 0).len(), 3);
    assert_eq!(exec_err(&d, "topk(NaN, m)", 0), "Parameter value is NaN");
    let r = instant(&d, "quantile(NaN, m)", 0).unwrap();
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
}

#[test]
fn sample_limit_is_enforced() {
    let samples: Vec<(i64, f64)> = (0..100).map(|i| (i * 1000, i as f64)).collect();
    let d = db(&[(&[("__name__", "m")], &samples)]);
    let engine = Engine::new(EngineOptions { max_samples: 10, ..EngineOptions::default() });
    let e = parse("m[1m]").unwrap();
    assert_eq!(engine.instant(&d, &e, 99_000), Err(EvalError::TooManySamples));
    let e = parse("m[1m:1ms]").unwrap();
    assert_eq!(engine.instant(&d, &e, 99_000), Err(EvalError::TooManySamples));
    assert!(engine.instant(&d, &parse("m").unwrap(), 99_000).is_ok());
}

#[test]
fn range_query_merges_steps() {
    let d = db(&[(&[("__name__", "m")], &[(0, 1.0), (M, 2.0), (2 * M, stale_nan())])]);
    let r = Engine::default().range(&d, &parse("m").unwrap(), 0, 3 * M, M).unwrap();
    match r.value {
        Value::Matrix(m) => {
            assert_eq!(m.len(), 1);
            assert_eq!(m[0].samples, vec![Sample { t: 0, v: 1.0 }, Sample { t: M, v: 2.0 }]);
        }
        other => panic!("{other:?}"),
    }
    let e = parse("m").unwrap();
    assert!(Engine::default().range(&d, &e, 0, M, 0).is_err());
    assert!(Engine::default().range(&d, &e, 0, i64::MAX, 1).is_err());
}

#[test]
fn hostile_expressions_do_not_panic() {
    let d = db(&[(&[("__name__", "m")], &[(0, 1.0), (M, 2.0)])]);
    let engine = Engine::new(EngineOptions { max_samples: 100_000, ..EngineOptions::default() });
    for q in [
        "m[100000000y]",
        "m offset 100000000y",
        "m offset -100000000y",
        "m @ 9999999999999",
        "m @ -9999999999999",
        "m[100000000y:1ms]",
        "m[1m:1ms] offset -100000000y",
        "topk(Inf, m)",
        "topk(-Inf, m)",
        "topk(1e300, m)",
        "quantile(Inf, m)",
        "limit_ratio(NaN, m)",
        "limitk(NaN, m)",
        "count_values(\"\", m)",
        "m / 0",
        "m % 0",
        "-m ^ 1e308",
        "sum(m) by (__name__)",
        "max_over_time(m[1h:1ms])[1h:1ms]",
        "rate((((m)))[5m:])",
    ] {
        let e = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        for t in [0, M, i64::MAX / 2, i64::MIN / 2] {
            let _ = engine.instant(&d, &e, t);
        }
        let _ = engine.range(&d, &e, 0, 10 * M, M);
        let _ = engine.range(&d, &e, i64::MAX - 10 * M, i64::MAX, M);
        let _ = engine.range(&d, &e, i64::MIN, i64::MIN + 10 * M, M);
        assert!(engine.range(&d, &e, i64::MIN, i64::MAX, M).is_err());
    }
}

#[test]
fn delayed_name_removal_keeps_the_name_until_the_end() {
    let d = db(&[(&[("__name__", "x"), ("j", "1")], &[(0, 1.0)]), (&[("__name__", "y"), ("j", "1")], &[(0, 2.0)])]);
    let delayed = Engine::new(EngineOptions { delayed_name_removal: true, ..EngineOptions::default() });
    let immediate = Engine::default();
    let q = parse("label_replace(-x, \"n\", \"$1\", \"__name__\", \"(.+)\")").unwrap();
    let labels = |r: QueryResult| match r.value {
        Value::Vector(v) => v.iter().map(|s| format!("{} {}", s.labels, s.v)).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(labels(delayed.instant(&d, &q, 0).unwrap()), vec!["{j=\"1\", n=\"x\"} -1"]);
    assert_eq!(labels(immediate.instant(&d, &q, 0).unwrap()), vec!["{j=\"1\"} -1"]);
    let q = parse("sum by (__name__) (-{j=\"1\"})").unwrap();
    assert!(delayed.instant(&d, &q, 0).is_err());
    assert_eq!(labels(immediate.instant(&d, &q, 0).unwrap()), vec!["{} -3"]);
    // Setting `__name__` with label_replace keeps it.
    let q = parse("label_replace(-x, \"__name__\", \"n_$1\", \"__name__\", \"(.+)\")").unwrap();
    assert_eq!(labels(delayed.instant(&d, &q, 0).unwrap()), vec!["n_x{j=\"1\"} -1"]);
}

#[test]
fn range_query_equals_instant_queries_at_each_step() {
    let a: Vec<(i64, f64)> = (0..60).map(|i| (i * 15_000, (i * i) as f64)).collect();
    let b: Vec<(i64, f64)> = (0..60).map(|i| (i * 20_000 + 7, if i == 30 { stale_nan() } else { i as f64 })).collect();
    let d = db(&[(&[("__name__", "m"), ("s", "a")], &a), (&[("__name__", "m"), ("s", "b")], &b)]);
    let engine = Engine::default();
    for q in [
        "m",
        "m offset 1m",
        "m @ 300",
        "sum_over_time(m[1m])",
        "max_over_time(m[2m:30s])",
        "max_over_time(sum(m)[3m:20s] offset 1m)",
        "m > bool 100",
    ] {
        let e = parse(q).unwrap();
        let (start, end, step) = (0, 15 * M, 25_000);
        let Value::Matrix(range) = engine.range(&d, &e, start, end, step).unwrap().value else {
            panic!("{q}: not a matrix")
        };
        let mut expected: std::collections::BTreeMap<Labels, Vec<Sample>> = Default::default();
        let mut t = start;
        while t <= end {
            // A fresh evaluator spanning only `t` fetches nothing ahead.
            let mut ev = Evaluator::new(&d, engine.options(), t, t, step);
            match ev.eval(&e, t).unwrap() {
                Val::Vector(v) => {
                    for s in v {
                        expected.entry(s.labels).or_default().push(Sample { t, v: s.v });
                    }
                }
                Val::Scalar(v) => expected.entry(Labels::empty()).or_default().push(Sample { t, v }),
                _ => panic!("{q}"),
            }
            t += step;
        }
        let got: std::collections::BTreeMap<Labels, Vec<Sample>> =
            range.into_iter().map(|s| (s.labels, s.samples)).collect();
        assert_eq!(got, expected, "{q}");
    }
}

#[test]
fn count_values_refuses_an_empty_label_name() {
    let d = db(&[(&[("__name__", "x"), ("a", "1")], &[(0, 7.0)])]);
    assert_eq!(vector(&d, r#"count_values("v", x)"#, 0), vec![r#"{v="7"} 1"#]);
    assert!(exec_err(&d, r#"count_values("", x)"#, 0).contains("invalid label name"));
}
