//! Aggregation operators (`sum`, `avg`, `topk`, `quantile`, `count_values`, ...) with
//! `by`/`without` grouping.
//!
//! Invariants: groups keep the order in which their first sample arrived; `sum` and `avg`
//! use compensated (Kahan-Neumaier) summation; a NaN `k`/ratio parameter is an error, as in
//! Prometheus, and no parameter value can make this allocate more than the input.

/// Hash maps with a fast hasher, seeded at random per map.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use std::hash::{BuildHasher, Hash, Hasher};

use promql_parser::parser::ast::LabelModifier;

use super::eval::{HIDDEN_NAME, Val, drop_name, early_label};
use super::{EvalError, VectorSample};
use crate::labels::{Label, Labels, METRIC_NAME};

/// Compensated running sum.
#[derive(Default, Clone, Copy)]
struct Kahan {
    sum: f64,
    c: f64,
}

impl Kahan {
    fn add(&mut self, v: f64) {
        let t = self.sum + v;
        if t.is_infinite() {
            self.c = 0.0;
        } else if self.sum.abs() >= v.abs() {
            self.c += (self.sum - t) + v;
        } else {
            self.c += (v - t) + self.sum;
        }
        self.sum = t;
    }

    fn value(&self) -> f64 {
        if self.sum.is_infinite() { self.sum } else { self.sum + self.c }
    }
}

/// The grouping key of a series.
fn group_key(labels: &Labels, m: Option<&LabelModifier>) -> Labels {
    match m {
        None => Labels::empty(),
        Some(LabelModifier::Include(ls)) => {
            let names: Vec<&str> = ls.labels.iter().map(String::as_str).collect();
            let key = labels.keep(&names);
            // `by (__name__)` also groups by a name marked for delayed removal; whether
            // the output's name is dropped is decided per group (see `aggregate`).
            match labels.get(HIDDEN_NAME) {
                Some(n) if names.contains(&METRIC_NAME) => key.with(METRIC_NAME, n),
                _ => key,
            }
        }
        Some(LabelModifier::Exclude(ls)) => {
            let mut names: Vec<&str> = ls.labels.iter().map(String::as_str).collect();
            names.push(METRIC_NAME);
            names.push(HIDDEN_NAME);
            labels.without(&names)
        }
    }
}

/// Formats a float as Go's `strconv.FormatFloat(v, 'f', -1, 64)` does.
pub(crate) fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// The `phi`-quantile of `values` (sorted in place), as Prometheus computes it.
pub(crate) fn quantile(phi: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || phi.is_nan() {
        return f64::NAN;
    }
    if phi < 0.0 {
        return f64::NEG_INFINITY;
    }
    if phi > 1.0 {
        return f64::INFINITY;
    }
    // NaN sorts first, as the smallest value.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = phi * (n - 1.0);
    let lower = rank.floor().max(0.0) as usize;
    let upper = (rank.ceil() as usize).min(values.len() - 1);
    let weight = rank - rank.floor();
    values[lower] * (1.0 - weight) + values[upper] * weight
}

fn scalar_param(op: &str, p: Option<Val>) -> Result<f64, EvalError> {
    match p {
        Some(Val::Scalar(v)) => Ok(v),
        _ => Err(EvalError::Execution(format!("expected scalar parameter for {op}"))),
    }
}

/// Evaluates aggregation `op` over `input`.
pub(crate) fn aggregate(
    op: &str,
    param: Option<Val>,
    input: Vec<VectorSample>,
    m: Option<&LabelModifier>,
    t: i64,
    warnings: &mut Vec<String>,
) -> Result<Vec<VectorSample>, EvalError> {
    // Partition into groups, in order of first appearance.
    let mut index: HashMap<Labels, usize> = HashMap::default();
    let mut groups: Vec<(Labels, Vec<VectorSample>)> = Vec::new();
    // Groups with a member whose name is marked for delayed removal.
    let mut hidden: Vec<bool> = Vec::new();
    let count_values_label = if op == "count_values" {
        match param {
            // Prometheus 3 accepts any UTF-8 label name but the empty one.
            Some(Val::Str(ref s)) if s.is_empty() => {
                return Err(EvalError::Execution(format!("invalid label name {s:?}")));
            }
            Some(Val::Str(ref s)) => Some(s.clone()),
            _ => return Err(EvalError::Execution("expected string parameter for count_values".into())),
        }
    } else {
        None
    };
    // `by (...)` without `__name__`: groups are found by a hash of the grouping values,
    // and the key label set is built once per group rather than once per sample.
    let by_names: Option<Vec<&str>> = match m {
        Some(LabelModifier::Include(ls))
            if count_values_label.is_none() && !ls.labels.iter().any(|n| n == METRIC_NAME) =>
        {
            Some(ls.labels.iter().map(String::as_str).collect())
        }
        _ => None,
    };
    let mut rest = input;
    if let Some(names) = by_names {
        let mut by_hash: HashMap<u64, Vec<usize>> = HashMap::default();
        let hasher = foldhash::fast::RandomState::default();
        for s in std::mem::take(&mut rest) {
            let mut st = hasher.build_hasher();
            for n in &names {
                s.labels.get(n).hash(&mut st);
            }
            let h = st.finish();
            let same = |g: &(Labels, Vec<VectorSample>)| {
                g.1.first().is_some_and(|f| names.iter().all(|n| f.labels.get(n) == s.labels.get(n)))
            };
            let found = by_hash.get(&h).and_then(|c| c.iter().copied().find(|&i| same(&groups[i])));
            let i = match found {
                Some(i) => i,
                None => {
                    groups.push((s.labels.keep(&names), Vec::new()));
                    hidden.push(false);
                    by_hash.entry(h).or_default().push(groups.len() - 1);
                    groups.len() - 1
                }
            };
            hidden[i] |= early_label(&s.labels, HIDDEN_NAME).is_some();
            groups[i].1.push(s);
        }
    }
    for s in rest {
        let mut key = group_key(&s.labels, m);
        if let Some(l) = &count_values_label {
            key = key.with(l, &format_float(s.v));
        }
        let i = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            hidden.push(false);
            groups.len() - 1
        });
        hidden[i] |= s.labels.get(HIDDEN_NAME).is_some();
        groups[i].1.push(s);
    }
    // A group key keeps a name only under `by (__name__)`; it stays marked for removal
    // if any member's was.
    for (g, h) in groups.iter_mut().zip(&hidden) {
        if *h {
            g.0 = drop_name(&g.0, true);
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    match op {
        "sum" | "avg" | "count" | "group" | "min" | "max" | "stddev" | "stdvar" | "count_values" => {
            for (key, samples) in groups {
                let n = samples.len() as f64;
                let v = match op {
                    "sum" => {
                        let mut k = Kahan::default();
                        samples.iter().for_each(|s| k.add(s.v));
                        k.value()
                    }
                    "avg" => {
                        let mut k = Kahan::default();
                        samples.iter().for_each(|s| k.add(s.v));
                        if k.sum.is_finite() {
                            k.value() / n
                        } else {
                            // The sum overflowed: fall back to an incremental mean.
                            let mut mean = 0.0f64;
                            let mut c = 0.0f64;
                            for (i, s) in samples.iter().enumerate() {
                                let count = (i + 1) as f64;
                                if mean.is_infinite() {
                                    if s.v.is_infinite() && (mean > 0.0) == (s.v > 0.0) {
                                        continue;
                                    }
                                    if !s.v.is_infinite() && !s.v.is_nan() {
                                        continue;
                                    }
                                }
                                let delta = s.v / count - (mean + c) / count;
                                let t = mean + delta;
                                if t.is_infinite() {
                                    c = 0.0;
                                } else if mean.abs() >= delta.abs() {
                                    c += (mean - t) + delta;
                                } else {
                                    c += (delta - t) + mean;
                                }
                                mean = t;
                            }
                            if mean.is_infinite() { mean } else { mean + c }
                        }
                    }
                    "count" | "count_values" => n,
                    "group" => 1.0,
                    "min" => samples.iter().map(|s| s.v).fold(f64::NAN, |a, v| if a.is_nan() || v < a { v } else { a }),
                    "max" => samples.iter().map(|s| s.v).fold(f64::NAN, |a, v| if a.is_nan() || v > a { v } else { a }),
                    _ => {
                        // Population variance by Welford's method.
                        let (mut mean, mut m2) = (0.0f64, 0.0f64);
                        for (i, s) in samples.iter().enumerate() {
                            let count = (i + 1) as f64;
                            let delta = s.v - mean;
                            mean += delta / count;
                            m2 += delta * (s.v - mean);
                        }
                        let var = m2 / n;
                        if op == "stddev" { var.sqrt() } else { var }
                    }
                };
                out.push(VectorSample { labels: key, t, v });
            }
        }
        "topk" | "bottomk" | "limitk" => {
            let k = scalar_param(op, param)?;
            if k.is_nan() {
                return Err(EvalError::Execution("Parameter value is NaN".into()));
            }
            // Saturating float-to-int conversion; values below 1 select nothing.
            let k = if k >= 1.0 { k as usize } else { 0 };
            for (_, mut samples) in groups {
                if op != "limitk" {
                    let top = op == "topk";
                    // NaN always sorts last: it is the least preferred value either way.
                    samples.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => std::cmp::Ordering::Greater,
                        (false, true) => std::cmp::Ordering::Less,
                        _ => {
                            if top {
                                b.v.total_cmp(&a.v)
                            } else {
                                a.v.total_cmp(&b.v)
                            }
                        }
                    });
                }
                out.extend(samples.into_iter().take(k).map(|mut s| {
                    s.t = t;
                    s
                }));
            }
        }
        "limit_ratio" => {
            let mut r = scalar_param(op, param)?;
            if r.is_nan() {
                return Err(EvalError::Execution("Ratio value is NaN".into()));
            }
            if !(-1.0..=1.0).contains(&r) {
                let capped = r.clamp(-1.0, 1.0);
                warnings.push(format!(
                    "PromQL warning: ratio value should be between -1 and 1, got {}, capping to {}",
                    format_float(r),
                    format_float(capped)
                ));
                r = capped;
            }
            for (_, samples) in groups {
                for mut s in samples {
                    let h = label_hash_fraction(&s.labels);
                    let keep = if r >= 0.0 { h < r } else { h >= 1.0 + r };
                    if keep {
                        s.t = t;
                        out.push(s);
                    }
                }
            }
        }
        "quantile" => {
            let phi = scalar_param(op, param)?;
            if phi.is_nan() || !(0.0..=1.0).contains(&phi) {
                warnings.push(format!(
                    "PromQL warning: quantile value should be between 0 and 1, got {}",
                    format_float(phi)
                ));
            }
            for (key, samples) in groups {
                let mut vals: Vec<f64> = samples.iter().map(|s| s.v).collect();
                out.push(VectorSample { labels: key, t, v: quantile(phi, &mut vals) });
            }
        }
        other => return Err(EvalError::Unsupported(format!("aggregation {other}"))),
    }
    Ok(out)
}

/// Where a label set falls in `[0, 1]`: its XXH64 hash (of `name 0xff value 0xff ...`,
/// the byte layout Prometheus hashes) over `u64::MAX`, so `limit_ratio` picks the same
/// series Prometheus does.
fn label_hash_fraction(labels: &Labels) -> f64 {
    let mut b = Vec::with_capacity(64);
    for Label { name, value } in labels.iter() {
        b.extend_from_slice(name.as_bytes());
        b.push(0xff);
        b.extend_from_slice(value.as_bytes());
        b.push(0xff);
    }
    xxh64(&b) as f64 / u64::MAX as f64
}

const P1: u64 = 11_400_714_785_074_694_791;
const P2: u64 = 14_029_467_366_897_019_727;
const P3: u64 = 1_609_587_929_392_839_161;
const P4: u64 = 9_650_029_242_287_828_579;
const P5: u64 = 2_870_177_450_012_600_261;

fn xx_round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2)).rotate_left(31).wrapping_mul(P1)
}

fn xx_merge(acc: u64, val: u64) -> u64 {
    (acc ^ xx_round(0, val)).wrapping_mul(P1).wrapping_add(P4)
}

fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// XXH64 with seed 0 (the published xxHash algorithm).
fn xxh64(data: &[u8]) -> u64 {
    let mut rest = data;
    let mut h = if data.len() >= 32 {
        let (mut v1, mut v2, mut v3, mut v4) = (P1.wrapping_add(P2), P2, 0u64, 0u64.wrapping_sub(P1));
        while rest.len() >= 32 {
            v1 = xx_round(v1, read_u64(&rest[0..]));
            v2 = xx_round(v2, read_u64(&rest[8..]));
            v3 = xx_round(v3, read_u64(&rest[16..]));
            v4 = xx_round(v4, read_u64(&rest[24..]));
            rest = &rest[32..];
        }
        let mut h = v1
            .rotate_left(1)
            .wrapping_add(v2.rotate_left(7))
            .wrapping_add(v3.rotate_left(12))
            .wrapping_add(v4.rotate_left(18));
        for v in [v1, v2, v3, v4] {
            h = xx_merge(h, v);
        }
        h
    } else {
        P5
    };
    h = h.wrapping_add(data.len() as u64);
    while rest.len() >= 8 {
        h ^= xx_round(0, read_u64(rest));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        let mut a = [0u8; 4];
        a.copy_from_slice(&rest[..4]);
        h ^= u64::from(u32::from_le_bytes(a)).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &byte in rest {
        h ^= u64::from(byte).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates() {
        let mut v = vec![4.0, 1.0, 2.0, 3.0];
        assert_eq!(quantile(0.5, &mut v), 2.5);
        assert_eq!(quantile(1.5, &mut v), f64::INFINITY);
        assert!(quantile(f64::NAN, &mut v).is_nan());
    }

    #[test]
    fn xxh64_matches_reference_vectors() {
        assert_eq!(xxh64(b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxh64(b"a"), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(xxh64(b"abc"), 0x44BC_2CF5_AD77_0999);
        assert_eq!(xxh64(b"Nobody inspects the spammish repetition"), 0xFBCE_A83C_8A37_8BF1);
    }

    #[test]
    fn kahan_keeps_small_terms() {
        let mut k = Kahan::default();
        for v in [1e100, 1.0, -1e100] {
            k.add(v);
        }
        assert_eq!(k.value(), 1.0);
    }
}
