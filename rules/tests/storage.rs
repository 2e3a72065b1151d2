//! Tests of the in-memory time-series store through its public API: matchers against a
//! brute-force filter, time ranges across chunk boundaries, append rules, retention, the
//! series limit, and concurrent appends with concurrent selects.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use promql_parser::label::{MatchOp, Matcher};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use regex::Regex;
use warden_rules::labels::Labels;
use warden_rules::storage::{
    AppendError, Appendable, Db, DbConfig, Queryable, STALE_NAN_BITS, Sample, is_stale_nan, stale_nan,
};

fn eq(name: &str, value: &str) -> Matcher {
    Matcher::new(MatchOp::Equal, name, value)
}

fn ne(name: &str, value: &str) -> Matcher {
    Matcher::new(MatchOp::NotEqual, name, value)
}

/// PromQL regexes are fully anchored.
fn anchored(re: &str) -> Regex {
    Regex::new(&format!("^(?:{re})$")).expect("test regex is valid")
}

fn re(name: &str, value: &str) -> Matcher {
    Matcher::new(MatchOp::Re(anchored(value)), name, value)
}

fn nre(name: &str, value: &str) -> Matcher {
    Matcher::new(MatchOp::NotRe(anchored(value)), name, value)
}

fn names(series: &[warden_rules::storage::Series]) -> Vec<String> {
    series.iter().map(|s| s.labels.to_string()).collect()
}

fn bits(samples: &[Sample]) -> Vec<(i64, u64)> {
    samples.iter().map(|s| (s.t, s.v.to_bits())).collect()
}

#[test]
fn matchers_agree_with_brute_force() {
    let db = Db::default();
    let mut all: Vec<Labels> = Vec::new();
    let mut rng = StdRng::seed_from_u64(7);
    for i in 0..600u64 {
        let mut pairs = vec![("__name__".to_owned(), format!("metric_{}", i % 7))];
        // Some series lack `job` or `code`, so absent-label semantics are exercised.
        if rng.random_range(0..5) != 0 {
            pairs.push((
                "job".to_owned(),
                ["api", "db", "web", "api-canary"][rng.random_range(0..4) as usize].to_owned(),
            ));
        }
        if rng.random_range(0..3) != 0 {
            pairs.push(("code".to_owned(), ["200", "404", "500", "503"][rng.random_range(0..4) as usize].to_owned()));
        }
        pairs.push(("instance".to_owned(), format!("host-{i}")));
        let labels = Labels::from_pairs(&pairs);
        if db.append(&labels, 1_000, i as f64).is_ok() {
            all.push(labels);
        }
    }
    assert_eq!(db.stats().series, 600, "every generated label set is distinct");

    let cases: Vec<Vec<Matcher>> = vec![
        vec![eq("__name__", "metric_3")],
        vec![eq("__name__", "metric_3"), eq("job", "api")],
        vec![eq("__name__", "metric_3"), eq("job", "nope")],
        vec![eq("__name__", "metric_3"), ne("job", "api")],
        vec![eq("__name__", "metric_3"), eq("job", "")],
        vec![eq("job", ""), eq("code", "")],
        vec![eq("__name__", "metric_1"), ne("job", "")],
        vec![eq("__name__", "metric_1"), re("code", "5..")],
        vec![re("code", "5..")],
        vec![re("code", "5..|")],
        vec![eq("__name__", "metric_2"), nre("code", ".+")],
        vec![nre("code", ".+")],
        vec![eq("__name__", "metric_2"), nre("job", "api.*")],
        vec![nre("job", "api.*"), re("code", "2.*")],
        vec![re("__name__", "metric_[12]"), re("job", "api|db"), ne("code", "404")],
        vec![re("instance", "host-1.*"), eq("job", "web")],
        vec![re("instance", "host-(1|22|333)")],
        vec![eq("missing", "")],
        vec![eq("missing", "x")],
        vec![ne("missing", "x"), eq("__name__", "metric_0")],
        vec![re("missing", ".*"), eq("code", "500")],
        vec![re("missing", ".+")],
        vec![nre("missing", ".+"), eq("job", "db")],
        vec![re("job", ".*")],
        vec![ne("__name__", "metric_0"), ne("__name__", "metric_1")],
        vec![],
    ];
    for ms in &cases {
        let got = names(&db.select(ms, 0, 2_000));
        let mut want: Vec<&Labels> =
            all.iter().filter(|l| ms.iter().all(|m| m.is_match(l.get(&m.name).unwrap_or("")))).collect();
        want.sort();
        let want: Vec<String> = want.iter().map(|l| l.to_string()).collect();
        assert_eq!(got, want, "matchers {ms:?}");
    }
    // Random combinations against the same brute force.
    let pool: Vec<Matcher> = cases.iter().flatten().cloned().collect();
    for _ in 0..300 {
        let n = 1 + rng.random_range(0..3) as usize;
        let ms: Vec<Matcher> = (0..n).map(|_| pool[rng.random_range(0..pool.len() as u64) as usize].clone()).collect();
        let got = names(&db.select(&ms, 0, 2_000));
        let mut want: Vec<&Labels> =
            all.iter().filter(|l| ms.iter().all(|m| m.is_match(l.get(&m.name).unwrap_or("")))).collect();
        want.sort();
        let want: Vec<String> = want.iter().map(|l| l.to_string()).collect();
        assert_eq!(got, want, "matchers {ms:?}");
    }
}

#[test]
fn time_ranges_across_chunks_agree_with_a_plain_vector() {
    let db = Db::default();
    let labels = Labels::from_pairs(&[("__name__", "x")]);
    let mut rng = StdRng::seed_from_u64(99);
    let mut t = 1_700_000_000_000i64;
    let mut kept: Vec<(i64, u64)> = Vec::new();
    let mut v = 0.0f64;
    for i in 0..1_000 {
        v += rng.random_range(0..3) as f64;
        let value = if i % 97 == 0 { stale_nan() } else { v };
        db.append(&labels, t, value).expect("in order");
        kept.push((t, value.to_bits()));
        t += 15_000 + rng.random_range(0..200) as i64 - 100;
    }
    let first = kept[0].0;
    let last = kept[kept.len() - 1].0;
    for _ in 0..200 {
        let a = first - 100_000 + rng.random_range(0..(last - first + 200_000) as u64) as i64;
        let b = a + rng.random_range(0..3_000_000) as i64;
        let got = db.select(&[eq("__name__", "x")], a, b);
        let want: Vec<(i64, u64)> = kept.iter().copied().filter(|&(t, _)| t >= a && t <= b).collect();
        if want.is_empty() {
            assert!(got.is_empty(), "range {a}..={b}");
        } else {
            assert_eq!(got.len(), 1);
            assert_eq!(bits(&got[0].samples), want, "range {a}..={b}");
        }
    }
    // Both ends inclusive.
    let got = db.select(&[eq("__name__", "x")], kept[10].0, kept[20].0);
    assert_eq!(got[0].samples.len(), 11);
    let st = db.stats();
    assert_eq!(st.samples, 1_000);
    assert!(st.chunks >= 1_000 / 120, "{st:?}");
    assert!(got[0].samples.iter().all(|s| !s.v.is_nan() || is_stale_nan(s.v)));
}

#[test]
fn special_values_survive_the_store_bit_exactly() {
    let db = Db::default();
    let labels = Labels::from_pairs(&[("__name__", "special")]);
    let values: [u64; 7] = [
        STALE_NAN_BITS,
        0x7ff8_0000_0000_0001,
        0xfff8_dead_beef_0000,
        f64::INFINITY.to_bits(),
        f64::NEG_INFINITY.to_bits(),
        (-0.0f64).to_bits(),
        1.5f64.to_bits(),
    ];
    let mut want = Vec::new();
    for i in 0..300i64 {
        let b = values[(i as usize * 5) % values.len()];
        db.append(&labels, i * 1_000, f64::from_bits(b)).expect("in order");
        want.push((i * 1_000, b));
    }
    let got = db.select(&[eq("__name__", "special")], i64::MIN, i64::MAX);
    assert_eq!(bits(&got[0].samples), want);
}

#[test]
fn out_of_order_and_duplicates() {
    let db = Db::default();
    let l = Labels::from_pairs(&[("__name__", "a")]);
    db.append(&l, 100, 1.0).expect("first");
    db.append(&l, 200, 2.0).expect("second");
    assert_eq!(db.append(&l, 150, 9.0), Err(AppendError::OutOfOrder { labels: l.clone(), t: 150, last: 200 }));
    // Same timestamp and same value (bit for bit): accepted silently, stored once.
    assert_eq!(db.append(&l, 200, 2.0), Ok(()));
    assert_eq!(db.append(&l, 200, 3.0), Err(AppendError::DuplicateTimestamp { labels: l.clone(), t: 200 }));
    // NaN payloads are compared by bits: the stale marker is not "the same" as a plain NaN.
    db.append(&l, 300, stale_nan()).expect("stale");
    assert_eq!(db.append(&l, 300, stale_nan()), Ok(()));
    assert!(matches!(db.append(&l, 300, f64::NAN), Err(AppendError::DuplicateTimestamp { .. })));
    let got = db.select(&[eq("__name__", "a")], 0, 1_000);
    assert_eq!(got[0].samples.iter().map(|s| s.t).collect::<Vec<_>>(), vec![100, 200, 300]);
    let st = db.stats();
    assert_eq!((st.out_of_order, st.duplicate_timestamps), (1, 2));
}

#[test]
fn series_limit_refuses_new_series_and_counts() {
    let db = Db::new(DbConfig { max_series: 3, ..DbConfig::default() });
    for i in 0..3 {
        db.append(&Labels::from_pairs(&[("__name__", "s"), ("i", &i.to_string())]), 1, 1.0).expect("under limit");
    }
    let extra = Labels::from_pairs(&[("__name__", "s"), ("i", "3")]);
    let err = db.append(&extra, 1, 1.0).expect_err("over limit");
    assert_eq!(err, AppendError::SeriesLimit { limit: 3, labels: extra.clone() });
    assert_eq!(err.to_string(), "series limit of 3 reached: new series s{i=\"3\"} not stored");
    assert!(db.append(&extra, 2, 1.0).is_err());
    // Existing series still take samples.
    db.append(&Labels::from_pairs(&[("__name__", "s"), ("i", "0")]), 2, 2.0).expect("existing series");
    let st = db.stats();
    assert_eq!((st.series, st.series_limit_refusals), (3, 2));
    assert!(db.select(&[eq("i", "3")], 0, 10).is_empty());
}

#[test]
fn retention_drops_old_chunks_and_empty_series() {
    let hour = 3_600_000i64;
    let db = Db::new(DbConfig { retention_ms: hour, ..DbConfig::default() });
    let old = Labels::from_pairs(&[("__name__", "m"), ("kind", "old")]);
    let live = Labels::from_pairs(&[("__name__", "m"), ("kind", "live")]);
    // `old` stops after 1 h; `live` goes on for 3 h; both every 15 s.
    for i in 0..(3 * 240) {
        let t = i * 15_000;
        if t < hour {
            db.append(&old, t, i as f64).expect("old");
        }
        db.append(&live, t, i as f64).expect("live");
    }
    let before = db.stats();
    assert_eq!(before.series, 2);
    assert_eq!(before.samples, 240 + 720);
    let now = 3 * hour;
    db.truncate(now);
    let after = db.stats();
    assert_eq!(after.series, 1, "old series removed");
    assert_eq!(after.series_removed, 1);
    // Whole chunks went; the one straddling the cutoff stays (< 120 extra samples).
    assert!(after.samples >= 240 && after.samples < 240 + 120, "{after:?}");
    assert!(after.bytes < before.bytes);
    // Nothing before the cutoff is returned, even from the straddling chunk.
    let got = db.select(&[eq("__name__", "m")], 0, now);
    assert_eq!(names(&got), vec!["m{kind=\"live\"}"]);
    assert_eq!(got[0].samples.first().map(|s| s.t), Some(2 * hour));
    assert_eq!(got[0].samples.len(), 240);
    // The index forgot the removed series.
    assert_eq!(db.label_values("kind"), vec!["live"]);
    assert!(db.select(&[eq("kind", "old")], 0, now).is_empty());
    // Appends before the cutoff are too old; a new series after it is fine.
    assert_eq!(db.append(&old, 2 * hour - 1, 1.0), Err(AppendError::TooOld { labels: old.clone(), t: 2 * hour - 1 }));
    db.append(&old, now, 1.0).expect("after cutoff");
    assert_eq!(db.stats().too_old, 1);
    // Truncating everything away empties the store; clear resets the cutoff.
    db.truncate(100 * hour);
    assert_eq!(db.stats().series, 0);
    assert!(db.label_names().is_empty());
    assert_eq!(db.remove_empty_series(), 0, "nothing left to remove");
    db.clear();
    db.append(&old, 0, 1.0).expect("cutoff reset by clear");
    assert_eq!(db.stats().series, 1);
}

#[test]
fn defaults_and_extreme_timestamps() {
    let db = Db::default();
    assert_eq!(db.config().retention_ms, 6 * 3_600_000);
    let l = Labels::from_pairs(&[("__name__", "edge")]);
    for t in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
        db.append(&l, t, t as f64).expect("increasing");
    }
    let got = db.select(&[eq("__name__", "edge")], i64::MIN, i64::MAX);
    assert_eq!(
        got[0].samples.iter().map(|s| s.t).collect::<Vec<_>>(),
        vec![i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX]
    );
    assert!(db.select(&[eq("__name__", "edge")], 5, 4).is_empty(), "empty range");
    assert_eq!(db.select(&[eq("__name__", "edge")], 1, i64::MAX - 2).len(), 0);
    // A truncate far in the past or the future does not overflow.
    db.truncate(i64::MIN);
    assert_eq!(db.stats().samples, 6);
    db.truncate(i64::MAX);
    let st = db.stats();
    assert_eq!(st.series, 1, "the newest sample is inside the window");
    assert_eq!(db.select(&[eq("__name__", "edge")], i64::MIN, i64::MAX)[0].samples.len(), 2);
}

#[test]
fn concurrent_appends_and_selects_lose_nothing() {
    const THREADS: usize = 4;
    const SERIES_PER_THREAD: usize = 50;
    const SAMPLES: i64 = 400;
    let db = Arc::new(Db::default());
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let db = Arc::clone(&db);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut seen: BTreeMap<String, usize> = BTreeMap::new();
                let mut rounds = 0;
                while !done.load(Ordering::Relaxed) || rounds == 0 {
                    rounds += 1;
                    let ms = if r == 0 { vec![eq("__name__", "c")] } else { vec![re("writer", "[02]")] };
                    for s in db.select(&ms, i64::MIN, i64::MAX) {
                        // Samples come out sorted and contiguous (no holes mid-series).
                        assert!(s.samples.windows(2).all(|w| w[0].t < w[1].t));
                        assert_eq!(s.samples.len() as i64, s.samples.last().map_or(0, |x| x.t + 1));
                        let n = seen.entry(s.labels.to_string()).or_default();
                        assert!(s.samples.len() >= *n, "a series shrank");
                        *n = s.samples.len();
                    }
                }
                rounds
            })
        })
        .collect();
    let writers: Vec<_> = (0..THREADS)
        .map(|w| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || {
                let series: Vec<Labels> = (0..SERIES_PER_THREAD)
                    .map(|i| {
                        Labels::from_pairs(&[("__name__", "c"), ("writer", &w.to_string()), ("i", &i.to_string())])
                    })
                    .collect();
                for t in 0..SAMPLES {
                    for l in &series {
                        db.append(l, t, (t * 2) as f64).expect("in order");
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer thread");
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader thread") > 0);
    }
    let st = db.stats();
    assert_eq!(st.series, THREADS * SERIES_PER_THREAD);
    assert_eq!(st.samples, THREADS * SERIES_PER_THREAD * SAMPLES as usize);
    let all = db.select(&[eq("__name__", "c")], i64::MIN, i64::MAX);
    assert_eq!(all.len(), THREADS * SERIES_PER_THREAD);
    for s in &all {
        let want: Vec<(i64, u64)> = (0..SAMPLES).map(|t| (t, ((t * 2) as f64).to_bits())).collect();
        assert_eq!(bits(&s.samples), want, "{}", s.labels);
    }
}

#[test]
fn concurrent_creation_of_the_same_series_makes_one() {
    let db = Arc::new(Db::default());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || {
                let mut ok = 0;
                for i in 0..200 {
                    let l = Labels::from_pairs(&[("__name__", "shared"), ("i", &i.to_string())]);
                    // All threads write the same value at the same timestamp: duplicates
                    // of an identical sample are accepted, so every call succeeds.
                    if db.append(&l, 1_000, 5.0).is_ok() {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("thread"), 200);
    }
    let st = db.stats();
    assert_eq!((st.series, st.samples, st.series_created), (200, 200, 200));
    assert_eq!(db.select(&[eq("__name__", "shared")], 0, 2_000).len(), 200);
}
