//! Rule evaluation benchmark: 1,000 alerting rules over 100,000 series, one full group
//! evaluation per iteration, on one thread.
//!
//! Data: 1,000 jobs × 10 instances × (9 `http_requests_total` counters by code and path +
//! 1 `process_cpu_seconds_total`) = 100,000 series, 61 samples each at 15 s (15 minutes).
//! Rules: one per job, four shapes in turn (error ratio by instance, per-series rate,
//! increase over 10 m, CPU rate by instance), so each rule reads 10–90 series over a
//! 5–10 m window, as a service's alert rules do. Target (issue 5): ≤ 100 ms per round.
//!
//! Run: `cargo bench -p warden-rules --bench rules`.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::path::Path;

use warden_rules::group::{Group, GroupOptions};
use warden_rules::labels::Labels;
use warden_rules::promql::Engine;
use warden_rules::rulefile;
use warden_rules::storage::{Appendable, Db, DbConfig};

const JOBS: usize = 1_000;
const INSTANCES: usize = 10;
const STEP_MS: i64 = 15_000;
const SAMPLES: i64 = 61;

fn rules_yaml() -> String {
    let mut s = String::from("groups:\n- name: bench\n  interval: 15s\n  rules:\n");
    for j in 0..JOBS {
        let expr = match j % 4 {
            0 => format!(
                "sum by (instance) (rate(http_requests_total{{job=\"j{j}\",code=~\"5..\"}}[5m])) / sum by (instance) (rate(http_requests_total{{job=\"j{j}\"}}[5m])) > 0.05"
            ),
            1 => format!("rate(http_requests_total{{job=\"j{j}\"}}[5m]) > 5"),
            2 => format!("max by (instance) (increase(http_requests_total{{job=\"j{j}\",path=\"/a\"}}[10m])) > 1000"),
            _ => format!("rate(process_cpu_seconds_total{{job=\"j{j}\"}}[5m]) > 0.9"),
        };
        s.push_str(&format!(
            "  - alert: A{j}\n    expr: '{expr}'\n    for: 1m\n    labels:\n      severity: warning\n"
        ));
    }
    s
}

fn load(db: &Db) {
    let codes = ["200", "404", "500"];
    let paths = ["/a", "/b", "/c"];
    for j in 0..JOBS {
        let job = format!("j{j}");
        for i in 0..INSTANCES {
            let inst = format!("i{i}");
            let mut series = Vec::with_capacity(10);
            for (ci, c) in codes.iter().enumerate() {
                for p in paths {
                    let l = Labels::from_pairs(&[
                        ("__name__", "http_requests_total"),
                        ("job", &job),
                        ("instance", &inst),
                        ("code", c),
                        ("path", p),
                    ]);
                    series.push((l, (3 - ci) as f64 * 2.0));
                }
            }
            let cpu =
                Labels::from_pairs(&[("__name__", "process_cpu_seconds_total"), ("job", &job), ("instance", &inst)]);
            series.push((cpu, 0.25));
            for (l, per_step) in &series {
                for k in 0..SAMPLES {
                    db.append(l, k * STEP_MS, (k as f64 * per_step * 15.0).round()).unwrap();
                }
            }
        }
    }
}

fn bench_rules(c: &mut Criterion) {
    let db = Db::new(DbConfig { max_series: 200_000, ..DbConfig::default() });
    load(&db);
    assert_eq!(db.stats().series, JOBS * INSTANCES * 10);
    let file = rulefile::parse_str(Path::new("bench.yml"), &rules_yaml()).expect("bench rules load");
    let mut group = Group::from_rule_group("bench.yml", &file.groups[0], &GroupOptions::default()).unwrap();
    let engine = Engine::default();
    let t = (SAMPLES - 1) * STEP_MS;
    let report = group.eval(&engine, &db, t);
    assert_eq!(report.failed(), 0, "{:?}", report.rules.iter().find(|r| r.error.is_some()));
    assert!(report.samples() > 0, "some rules fire, so the bench exercises the alert path");

    let mut g = c.benchmark_group("rules");
    g.sample_size(20);
    g.bench_function("1000_rules_100k_series_round", |b| {
        b.iter(|| black_box(group.eval(&engine, &db, t)));
    });
    g.finish();
}

criterion_group!(benches, bench_rules);
criterion_main!(benches);
