//! Redactor throughput on generated log lines (2 % PHI): the full detector set on a mix
//! with 30 % JSON lines, on text lines only and on JSON lines only, and each detector
//! family alone on text lines, in bytes per second.
//!
//! `cargo bench -p warden-collector --bench redact`

#[path = "../tests/redact_support/corpus.rs"]
mod corpus;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use warden_collector::redact::{Config, Detector, Line, Redactor};

fn lines(json: f64) -> Vec<String> {
    let mut g = corpus::Gen::new(42);
    let mut out = Vec::new();
    let mut bytes = 0;
    while bytes < 4 << 20 {
        let l = g.line(0.02, json).line;
        bytes += l.len() + 1;
        out.push(l);
    }
    out
}

fn only(dets: &[Detector]) -> Redactor {
    let mut cfg = Config::default();
    for d in Detector::ALL {
        cfg.detectors.get_mut(d).enabled = dets.contains(&d);
    }
    Redactor::new(&cfg).unwrap()
}

fn run(r: &Redactor, input: &[String]) -> usize {
    let mut n = 0;
    for l in input {
        n += match r.redact_line(l) {
            Line::Text(t) => t.len(),
            Line::Json(j) => j.len(),
            Line::Dropped => 0,
        };
    }
    n
}

fn bench(c: &mut Criterion) {
    let mixed = lines(0.3);
    let text = lines(0.0);
    let json = lines(1.0);
    let bytes = |v: &[String]| v.iter().map(|l| l.len() as u64 + 1).sum::<u64>();
    let mut group = c.benchmark_group("redact");
    group.sample_size(10);
    let full = Redactor::default_mask();
    group.throughput(Throughput::Bytes(bytes(&mixed)));
    group.bench_function("full/mixed_30pct_json", |b| b.iter(|| run(&full, black_box(&mixed))));
    group.throughput(Throughput::Bytes(bytes(&text)));
    group.bench_function("full/text", |b| b.iter(|| run(&full, black_box(&text))));
    group.throughput(Throughput::Bytes(bytes(&json)));
    group.bench_function("full/json", |b| b.iter(|| run(&full, black_box(&json))));
    group.throughput(Throughput::Bytes(bytes(&text)));
    let families: [(&str, &[Detector]); 7] = [
        ("none", &[]),
        ("numeric_shapes", &[Detector::Ssn, Detector::Phone, Detector::Card, Detector::Zip]),
        ("network", &[Detector::Ip, Detector::Url]),
        ("email", &[Detector::Email]),
        (
            "context_ids",
            &[Detector::Date, Detector::Age, Detector::Mrn, Detector::HealthPlan, Detector::Account, Detector::License],
        ),
        ("address", &[Detector::Address]),
        ("names", &[Detector::Name]),
    ];
    for (name, dets) in families {
        let r = only(dets);
        group.bench_function(format!("family/{name}/text"), |b| b.iter(|| run(&r, black_box(&text))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
