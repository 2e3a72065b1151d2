//! Benchmarks of the in-memory time-series store.
//!
//! - `append/single_thread`: samples appended per second by one thread to 10,000
//!   existing series (target: at least 1 M/s per core); `append/two_threads`: the same
//!   samples from two producers at once, each on its half of the series.
//! - `select/*`: one `select` over 100,000 series (1,000 metric names × 100 series, 40
//!   samples each at 15 s), with equality and regex matchers over a 5 min range, and a
//!   "rule round" of 1,000 such selects (target: at most 100 ms per round).
//! - Bytes per sample: printed (not timed) for series at a 15 s interval over 6 h with a
//!   stated mix of value kinds, from [`DbStats::bytes`].
//!
//! Run: `cargo bench -p warden-rules --bench storage`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use promql_parser::label::{MatchOp, Matcher};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use regex::Regex;
use warden_rules::labels::Labels;
use warden_rules::storage::{Appendable, Db, DbConfig, DbStats, Queryable};

const T0: i64 = 1_700_000_000_000;
const STEP: i64 = 15_000;

fn eq(name: &str, value: &str) -> Matcher {
    Matcher::new(MatchOp::Equal, name, value)
}

fn ne(name: &str, value: &str) -> Matcher {
    Matcher::new(MatchOp::NotEqual, name, value)
}

fn re(name: &str, value: &str) -> Matcher {
    let r = Regex::new(&format!("^(?:{value})$")).expect("bench regex is valid");
    Matcher::new(MatchOp::Re(r), name, value)
}

fn series_labels(k: usize) -> Labels {
    const CODES: [&str; 4] = ["200", "404", "500", "503"];
    Labels::from_pairs(&[
        ("__name__", format!("metric_{}", k / 100)),
        ("instance", format!("host-{}", k % 100)),
        ("job", format!("job-{}", k % 10)),
        ("code", CODES[(k / 10) % 4].to_owned()),
        ("env", "prod".to_owned()),
    ])
}

fn bench_append(c: &mut Criterion) {
    const SERIES: usize = 10_000;
    let db = Db::default();
    let labels: Vec<Labels> = (0..SERIES).map(series_labels).collect();
    for l in &labels {
        db.append(l, T0, 0.0).expect("fresh store");
    }
    let mut t = T0;
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.sample_size(20);
    g.bench_function("single_thread", |b| {
        b.iter(|| {
            t += STEP;
            let v = (t / STEP % 7) as f64;
            for l in &labels {
                // A failed append here would be a bug in the bench's timestamps.
                black_box(db.append(l, t, v)).expect("in order");
            }
        })
    });
    // Two producers on disjoint series at once: with lock striping and a mutex per
    // series they should not serialize (this machine has 2 cores).
    let halves: Vec<&[Labels]> = labels.chunks(SERIES / 2).collect();
    g.bench_function("two_threads", |b| {
        b.iter(|| {
            t += STEP;
            let v = (t / STEP % 7) as f64;
            std::thread::scope(|s| {
                for half in &halves {
                    let db = &db;
                    s.spawn(move || {
                        for l in half.iter() {
                            black_box(db.append(l, t, v)).expect("in order");
                        }
                    });
                }
            });
        })
    });
    g.finish();
}

/// 100,000 series with 40 samples each (10 min at 15 s).
fn select_db() -> Db {
    let db = Db::default();
    let labels: Vec<Labels> = (0..100_000).map(series_labels).collect();
    let mut rng = StdRng::seed_from_u64(1);
    for i in 0..40 {
        let t = T0 + i * STEP;
        for (k, l) in labels.iter().enumerate() {
            db.append(l, t, (k as i64 * 10 + i * rng.random_range(0..3) as i64) as f64).expect("in order");
        }
    }
    db
}

/// The selectors of 1,000 rule evaluations: a realistic mix of equality and regex
/// matchers, each one named metric at most (as rules are written).
fn rule_selectors() -> Vec<Vec<Matcher>> {
    (0..1_000)
        .map(|i| {
            let name = format!("metric_{}", (i * 7) % 1_000);
            match i % 10 {
                0..=3 => vec![eq("__name__", &name), eq("job", &format!("job-{}", i % 10))],
                4..=6 => vec![eq("__name__", &name), re("code", "5..")],
                7 | 8 => vec![eq("__name__", &name), re("instance", "host-1.*"), ne("job", "job-0")],
                _ => vec![re("__name__", &format!("metric_{}.", i % 100)), eq("job", "job-3")],
            }
        })
        .collect()
}

fn bench_select(c: &mut Criterion) {
    let db = select_db();
    let maxt = T0 + 39 * STEP;
    let mint = maxt - 5 * 60_000;
    let rounds = rule_selectors();
    let returned: usize = rounds.iter().map(|m| db.select(m, mint, maxt).len()).sum();
    println!("select: {} series, one rule round returns {returned} series", db.stats().series);

    let mut g = c.benchmark_group("select");
    g.sample_size(20);
    let by_name_job = [eq("__name__", "metric_123"), eq("job", "job-3")];
    g.bench_function("eq_name_and_job", |b| b.iter(|| black_box(db.select(&by_name_job, mint, maxt))));
    let by_name_code = [eq("__name__", "metric_123"), re("code", "5..")];
    g.bench_function("eq_name_regex_code", |b| b.iter(|| black_box(db.select(&by_name_code, mint, maxt))));
    let regex_name = [re("__name__", "metric_12."), eq("job", "job-3")];
    g.bench_function("regex_name_eq_job", |b| b.iter(|| black_box(db.select(&regex_name, mint, maxt))));
    g.sample_size(10);
    g.bench_function("rule_round_1000", |b| {
        b.iter(|| {
            for m in &rounds {
                black_box(db.select(m, mint, maxt));
            }
        })
    });
    g.finish();
}

/// Value kinds for the size figure.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A counter increasing by 0..=3 per scrape.
    Counter,
    /// A gauge taking one of 4 values, changing at 5 % of scrapes.
    FewValues,
    /// A gauge with full-precision float noise (±0.5 % around a level).
    Noisy,
}

/// Stores `series` series of `kind` at 15 s for 6 h; `jitter_ms` moves each timestamp
/// by up to ± that much. Returns the store's figures.
fn size_for(kind: Kind, series: usize, jitter_ms: i64, seed: u64) -> DbStats {
    let db = Db::new(DbConfig::default());
    let mut rng = StdRng::seed_from_u64(seed);
    let n = 6 * 3600 * 1000 / STEP;
    for s in 0..series {
        let l = Labels::from_pairs(&[("__name__", format!("{kind:?}")), ("i", s.to_string())]);
        let mut counter = rng.random_range(0..1_000_000) as f64;
        let mut level = [0.0, 1.0, 2.0, 3.0][rng.random_range(0..4) as usize];
        let base = 0.1 + rng.random::<f64>();
        for i in 0..n {
            let jitter =
                if jitter_ms > 0 { rng.random_range(0..2 * jitter_ms as u64 + 1) as i64 - jitter_ms } else { 0 };
            let v = match kind {
                Kind::Counter => {
                    counter += rng.random_range(0..4) as f64;
                    counter
                }
                Kind::FewValues => {
                    if rng.random_range(0..100) < 5 {
                        level = [0.0, 1.0, 2.0, 3.0][rng.random_range(0..4) as usize];
                    }
                    level
                }
                Kind::Noisy => base * (1.0 + (rng.random::<f64>() - 0.5) * 0.01),
            };
            db.append(&l, T0 + i * STEP + jitter, v).expect("in order");
        }
    }
    db.stats()
}

/// Bytes a sealed chunk takes besides its data (the boxed slice: pointer and length).
const CHUNK_OVERHEAD: usize = warden_rules::storage::SEALED_CHUNK_OVERHEAD;

fn print_bytes_per_sample() {
    const SERIES: usize = 200;
    // The mix: half counters, 35 % gauges with few distinct values, 15 % noisy floats.
    let mix = [(Kind::Counter, 0.50), (Kind::FewValues, 0.35), (Kind::Noisy, 0.15)];
    for jitter in [0i64, 5] {
        let mut mixed = 0.0;
        let mut mixed_meta = 0.0;
        for (seed, &(kind, share)) in mix.iter().enumerate() {
            let st = size_for(kind, SERIES, jitter, seed as u64 + 10);
            let bps = st.bytes as f64 / st.samples as f64;
            // Each sealed chunk also keeps its boxed slice (16 bytes; the count and time
            // span live in the slice, counted in `bytes`): counted here so that figure is
            // the memory held for samples (labels, index and allocator rounding excluded).
            let with_meta = (st.bytes + CHUNK_OVERHEAD * st.chunks) as f64 / st.samples as f64;
            println!(
                "bytes/sample (15 s x 6 h, timestamp jitter ±{jitter} ms) {kind:?}: {bps:.3} compressed, \
                 {with_meta:.3} with chunk metadata ({} samples, {} chunks)",
                st.samples, st.chunks
            );
            mixed += share * bps;
            mixed_meta += share * with_meta;
        }
        println!(
            "bytes/sample (15 s x 6 h, timestamp jitter ±{jitter} ms) MIX 50% counters / 35% few-value gauges / \
             15% noisy floats: {mixed:.3} compressed, {mixed_meta:.3} with chunk metadata"
        );
    }
}

fn bench_size(_c: &mut Criterion) {
    print_bytes_per_sample();
}

criterion_group!(benches, bench_size, bench_append, bench_select);
criterion_main!(benches);
