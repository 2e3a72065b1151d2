//! PromQL function calls: every float function of Prometheus 3.x, evaluated at one step.
//!
//! Interface used by the evaluator: [`call`] evaluates one function at one step from its
//! already-evaluated arguments ([`Arg`]), with the step's context ([`FnCtx`]).
//!
//! Invariants and conventions:
//! - Nothing here panics on any input: NaN, ±Inf, empty windows, single samples, huge
//!   numbers and hostile strings all give a value, an empty result or an [`EvalError`].
//! - Output samples carry `t = ctx.t` (the step time). Input instant-vector samples may carry
//!   the sample's own timestamp (a selector's output does); only `timestamp()` reads it.
//! - `__name__` is dropped by every function that changes values, as Prometheus does; it is
//!   kept by `last_over_time`, `first_over_time`, `sort*`, `label_replace`, `label_join`.
//! - Annotations are Prometheus' texts (`PromQL info: ...`, `PromQL warning: ...`) without
//!   the position suffix (the parser has no positions); each text is recorded once.
//! - Native histograms are out of scope: functions that only read native histograms
//!   (`histogram_count`, `histogram_sum`, ...) ignore float samples, as Prometheus does, and
//!   give an empty vector. `histogram_quantile`, `histogram_quantiles` and
//!   `histogram_fraction` work on classic (`le`) buckets.
//! - `step()`, `range()`, `start()`, `end()` need the query's range, which [`FnCtx`] does not
//!   carry: they report [`EvalError::Unsupported`] and are the evaluator's to answer, as are
//!   `info()` and the other experimental functions not listed in [`call`].
//! - Sums use Kahan–Neumaier compensation; `avg_over_time` divides the compensated sum
//!   and falls back to an incremental mean only when the sum overflows.

use std::cmp::Ordering;
use std::collections::HashMap;

use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;

use super::eval::early_label;
use super::{EvalError, Value, VectorSample};
use crate::labels::{Label, Labels, METRIC_NAME};
use crate::storage::Sample;
use crate::template::{civil_from_days, go_v};

/// One evaluated function argument.
pub(crate) enum Arg {
    /// A scalar.
    Scalar(f64),
    /// A string literal.
    String(String),
    /// An instant vector.
    Vector(Vec<VectorSample>),
    /// A range vector (matrix selector or subquery points).
    Matrix(Vec<RangeSeries>),
}

/// One series' samples inside a range window (left-open (start, end]), stale markers removed.
pub(crate) struct RangeSeries {
    /// The series' labels.
    pub labels: Labels,
    /// Samples in ascending time order.
    pub samples: Vec<Sample>,
}

/// Evaluation context of one call.
pub(crate) struct FnCtx<'a> {
    /// Evaluation time (ms).
    pub t: i64,
    /// For a Matrix arg: window start (exclusive), ms.
    pub range_start: i64,
    /// For a Matrix arg: window end (inclusive), ms (= t - offset, or @ time).
    pub range_end: i64,
    /// The call's argument expressions (absent() needs the matchers).
    pub args: &'a [Box<Expr>],
    /// Warnings to report.
    pub warnings: &'a mut Vec<String>,
    /// Infos to report.
    pub infos: &'a mut Vec<String>,
    /// The caller ignores the outputs' `__name__` (an aggregation whose grouping leaves
    /// it out), so the `*_over_time`-shaped functions may skip dropping it.
    pub keep_name: bool,
}

impl FnCtx<'_> {
    fn warn(&mut self, msg: String) {
        if !self.warnings.contains(&msg) {
            self.warnings.push(msg);
        }
    }

    fn info(&mut self, msg: String) {
        if !self.infos.contains(&msg) {
            self.infos.push(msg);
        }
    }
}

/// Evaluates function `name` at one step. Returns a Vector, or a Scalar for `scalar`, `time`, `pi`.
pub(crate) fn call(name: &str, mut args: Vec<Arg>, ctx: &mut FnCtx<'_>) -> Result<Value, EvalError> {
    let t = ctx.t;
    // Functions that drop `__name__` may keep it when the caller ignores it.
    let ignore = ctx.keep_name;
    let a = &mut args;
    let out = match name {
        // Scalars.
        "time" => return Ok(Value::Scalar { t, v: t as f64 / 1000.0 }),
        "pi" => return Ok(Value::Scalar { t, v: std::f64::consts::PI }),
        "scalar" => {
            let v = vector_at(a, 0, name)?;
            let v = if v.len() == 1 { v[0].v } else { f64::NAN };
            return Ok(Value::Scalar { t, v });
        }
        "min_of" | "max_of" => {
            let (x, y) = (scalar_at(a, 0, name)?, scalar_at(a, 1, name)?);
            let v = if x.is_nan() || y.is_nan() {
                f64::NAN
            } else if name == "min_of" {
                go_min(x, y)
            } else {
                go_max(x, y)
            };
            return Ok(Value::Scalar { t, v });
        }
        "vector" => vec![VectorSample { labels: Labels::empty(), t, v: scalar_at(a, 0, name)? }],

        // Element-wise math.
        "abs" => map_values(vector_at(a, 0, name)?, t, f64::abs),
        "ceil" => map_values(vector_at(a, 0, name)?, t, f64::ceil),
        "floor" => map_values(vector_at(a, 0, name)?, t, f64::floor),
        "exp" => map_values(vector_at(a, 0, name)?, t, f64::exp),
        "sqrt" => map_values(vector_at(a, 0, name)?, t, f64::sqrt),
        "ln" => map_values(vector_at(a, 0, name)?, t, f64::ln),
        "log2" => map_values(vector_at(a, 0, name)?, t, f64::log2),
        "log10" => map_values(vector_at(a, 0, name)?, t, f64::log10),
        "sgn" => map_values(vector_at(a, 0, name)?, t, sgn),
        "sin" => map_values(vector_at(a, 0, name)?, t, f64::sin),
        "cos" => map_values(vector_at(a, 0, name)?, t, f64::cos),
        "tan" => map_values(vector_at(a, 0, name)?, t, f64::tan),
        "asin" => map_values(vector_at(a, 0, name)?, t, f64::asin),
        "acos" => map_values(vector_at(a, 0, name)?, t, f64::acos),
        "atan" => map_values(vector_at(a, 0, name)?, t, f64::atan),
        "sinh" => map_values(vector_at(a, 0, name)?, t, f64::sinh),
        "cosh" => map_values(vector_at(a, 0, name)?, t, f64::cosh),
        "tanh" => map_values(vector_at(a, 0, name)?, t, f64::tanh),
        "asinh" => map_values(vector_at(a, 0, name)?, t, f64::asinh),
        "acosh" => map_values(vector_at(a, 0, name)?, t, f64::acosh),
        "atanh" => map_values(vector_at(a, 0, name)?, t, f64::atanh),
        "deg" => map_values(vector_at(a, 0, name)?, t, |v| v * 180.0 / std::f64::consts::PI),
        "rad" => map_values(vector_at(a, 0, name)?, t, |v| v * std::f64::consts::PI / 180.0),
        "round" => {
            let to_nearest = opt_scalar_at(a, 1, name)?.unwrap_or(1.0);
            let inv = 1.0 / to_nearest;
            map_values(vector_at(a, 0, name)?, t, |v| (v * inv + 0.5).floor() / inv)
        }
        "clamp" => {
            let (lo, hi) = (scalar_at(a, 1, name)?, scalar_at(a, 2, name)?);
            if hi < lo { Vec::new() } else { map_values(vector_at(a, 0, name)?, t, |v| go_max(lo, go_min(hi, v))) }
        }
        "clamp_min" => {
            let lo = scalar_at(a, 1, name)?;
            map_values(vector_at(a, 0, name)?, t, |v| go_max(lo, v))
        }
        "clamp_max" => {
            let hi = scalar_at(a, 1, name)?;
            map_values(vector_at(a, 0, name)?, t, |v| go_min(hi, v))
        }
        "timestamp" => vector_at(a, 0, name)?
            .into_iter()
            .map(|s| VectorSample { labels: s.labels.without_metric_name(), t, v: s.t as f64 / 1000.0 })
            .collect(),

        // Calendar functions.
        "minute" | "hour" | "day_of_week" | "day_of_month" | "day_of_year" | "days_in_month" | "month" | "year" => {
            let input = if a.is_empty() {
                vec![VectorSample { labels: Labels::empty(), t, v: t as f64 / 1000.0 }]
            } else {
                vector_at(a, 0, name)?
            };
            map_values(input, t, |v| date_part(name, v))
        }

        // Labels and ordering.
        "label_replace" => label_replace(a, t)?,
        "label_join" => label_join(a, t)?,
        "sort" => sort_by_value(vector_at(a, 0, name)?, t, false),
        "sort_desc" => sort_by_value(vector_at(a, 0, name)?, t, true),
        "sort_by_label" | "sort_by_label_desc" => {
            let v = vector_at(a, 0, name)?;
            let mut names = Vec::with_capacity(a.len().saturating_sub(1));
            for i in 1..a.len() {
                names.push(string_at(a, i, name)?);
            }
            sort_by_labels(v, &names, name == "sort_by_label_desc", t)
        }

        // Presence.
        "absent" => {
            if vector_at(a, 0, name)?.is_empty() {
                vec![VectorSample { labels: absent_labels(ctx.args.first().map(|e| &**e)), t, v: 1.0 }]
            } else {
                Vec::new()
            }
        }
        "absent_over_time" => {
            if matrix_at(a, 0, name)?.iter().all(|s| s.samples.is_empty()) {
                vec![VectorSample { labels: absent_labels(ctx.args.first().map(|e| &**e)), t, v: 1.0 }]
            } else {
                Vec::new()
            }
        }
        "present_over_time" => over_time(matrix_at(a, 0, name)?, t, ignore, |_| Some(1.0)),

        // Counters and gauges over a window.
        "rate" | "increase" | "delta" => {
            let m = matrix_at(a, 0, name)?;
            let is_counter = name != "delta";
            if is_counter {
                for s in &m {
                    if !s.samples.is_empty() {
                        possible_non_counter(ctx, &s.labels);
                    }
                }
            }
            let (start, end) = (ctx.range_start, ctx.range_end);
            over_time(m, t, ignore, |s| extrapolated_rate(s, start, end, is_counter, name == "rate"))
        }
        "irate" => over_time(matrix_at(a, 0, name)?, t, ignore, |s| instant_delta(s, true)),
        "idelta" => over_time(matrix_at(a, 0, name)?, t, ignore, |s| instant_delta(s, false)),
        "deriv" => {
            over_time(matrix_at(a, 0, name)?, t, ignore, |s| (s.len() >= 2).then(|| linear_regression(s, s[0].t).0))
        }
        "predict_linear" => {
            let duration = scalar_at(a, 1, name)?;
            over_time(matrix_at(a, 0, name)?, t, ignore, |s| {
                (s.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(s, t);
                    slope * duration + intercept
                })
            })
        }
        "double_exponential_smoothing" => {
            let (sf, tf) = (scalar_at(a, 1, name)?, scalar_at(a, 2, name)?);
            if !(sf > 0.0 && sf < 1.0) {
                return Err(EvalError::Execution(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {}",
                    go_fixed(sf)
                )));
            }
            if !(tf > 0.0 && tf < 1.0) {
                return Err(EvalError::Execution(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {}",
                    go_fixed(tf)
                )));
            }
            over_time(matrix_at(a, 0, name)?, t, ignore, |s| double_exponential_smoothing(s, sf, tf))
        }
        "changes" => over_time(matrix_at(a, 0, name)?, t, ignore, |s| {
            let n = s.windows(2).filter(|w| w[0].v != w[1].v && !(w[0].v.is_nan() && w[1].v.is_nan())).count();
            Some(n as f64)
        }),
        "resets" => over_time(matrix_at(a, 0, name)?, t, ignore, |s| {
            Some(s.windows(2).filter(|w| w[1].v < w[0].v).count() as f64)
        }),

        // Aggregations over time.
        "avg_over_time" => over_time(matrix_at(a, 0, name)?, t, ignore, |s| Some(avg(s))),
        "sum_over_time" => over_time(matrix_at(a, 0, name)?, t, ignore, |s| Some(kahan_sum(s.iter().map(|x| x.v)))),
        "count_over_time" => over_time(matrix_at(a, 0, name)?, t, ignore, |s| Some(s.len() as f64)),
        "min_over_time" => over_time(matrix_at(a, 0, name)?, t, ignore, |s| extreme(s, true).map(|x| x.v)),
        "max_over_time" => over_time(matrix_at(a, 0, name)?, t, ignore, |s| extreme(s, false).map(|x| x.v)),
        "ts_of_min_over_time" => {
            over_time(matrix_at(a, 0, name)?, t, ignore, |s| extreme(s, true).map(|x| x.t as f64 / 1000.0))
        }
        "ts_of_max_over_time" => {
            over_time(matrix_at(a, 0, name)?, t, ignore, |s| extreme(s, false).map(|x| x.t as f64 / 1000.0))
        }
        "last_over_time" => over_time(matrix_at(a, 0, name)?, t, true, |s| s.last().map(|x| x.v)),
        "first_over_time" => over_time(matrix_at(a, 0, name)?, t, true, |s| s.first().map(|x| x.v)),
        "ts_of_last_over_time" => {
            over_time(matrix_at(a, 0, name)?, t, ignore, |s| s.last().map(|x| x.t as f64 / 1000.0))
        }
        "ts_of_first_over_time" => {
            over_time(matrix_at(a, 0, name)?, t, ignore, |s| s.first().map(|x| x.t as f64 / 1000.0))
        }
        "stdvar_over_time" => over_time(matrix_at(a, 0, name)?, t, ignore, |s| Some(variance(s))),
        "stddev_over_time" => over_time(matrix_at(a, 0, name)?, t, ignore, |s| Some(variance(s).sqrt())),
        "quantile_over_time" => {
            let q = scalar_at(a, 0, name)?;
            if !(0.0..=1.0).contains(&q) {
                ctx.warn(invalid_quantile(q));
            }
            over_time(matrix_at(a, 1, name)?, t, ignore, |s| {
                let mut vals: Vec<f64> = s.iter().map(|x| x.v).collect();
                Some(quantile(q, &mut vals))
            })
        }
        "mad_over_time" => over_time(matrix_at(a, 0, name)?, t, ignore, |s| Some(mad(s))),

        // Classic histograms.
        "histogram_quantile" => {
            let q = scalar_at(a, 0, name)?;
            histogram_quantile(q, vector_at(a, 1, name)?, ctx)
        }
        // These read native histograms only and ignore float samples.
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev" | "histogram_stdvar" => Vec::new(),

        "step" | "range" | "start" | "end" => {
            return Err(EvalError::Unsupported(format!(
                "function {name}() needs the query's range and is evaluated by the engine"
            )));
        }
        "histogram_fraction" => {
            let (lower, upper) = (scalar_at(a, 0, name)?, scalar_at(a, 1, name)?);
            histogram_fraction(lower, upper, vector_at(a, 2, name)?, ctx)
        }
        "histogram_quantiles" => {
            let v = vector_at(a, 0, name)?;
            let label = string_at(a, 1, name)?;
            if !valid_label_name(&label) {
                return Err(EvalError::Execution(format!("invalid quantile label name in {name}(): {label:?}")));
            }
            let mut qs = Vec::with_capacity(a.len().saturating_sub(2));
            for i in 2..a.len() {
                qs.push(scalar_at(a, i, name)?);
            }
            histogram_quantiles(v, &label, &qs, ctx)
        }
        _ => return Err(EvalError::Unsupported(format!("function {name}()"))),
    };
    Ok(Value::Vector(out))
}

// ---------------------------------------------------------------------------------------
// Argument access.

fn bad_arg(f: &str, i: usize, want: &str) -> EvalError {
    EvalError::Execution(format!("function {f}(): argument {} must be {want}", i + 1))
}

fn vector_at(args: &mut [Arg], i: usize, f: &str) -> Result<Vec<VectorSample>, EvalError> {
    match args.get_mut(i) {
        Some(Arg::Vector(v)) => Ok(std::mem::take(v)),
        _ => Err(bad_arg(f, i, "an instant vector")),
    }
}

fn matrix_at(args: &mut [Arg], i: usize, f: &str) -> Result<Vec<RangeSeries>, EvalError> {
    match args.get_mut(i) {
        Some(Arg::Matrix(m)) => Ok(std::mem::take(m)),
        _ => Err(bad_arg(f, i, "a range vector")),
    }
}

fn scalar_at(args: &[Arg], i: usize, f: &str) -> Result<f64, EvalError> {
    match args.get(i) {
        Some(Arg::Scalar(v)) => Ok(*v),
        _ => Err(bad_arg(f, i, "a scalar")),
    }
}

fn opt_scalar_at(args: &[Arg], i: usize, f: &str) -> Result<Option<f64>, EvalError> {
    match args.get(i) {
        None => Ok(None),
        Some(Arg::Scalar(v)) => Ok(Some(*v)),
        Some(_) => Err(bad_arg(f, i, "a scalar")),
    }
}

fn string_at(args: &[Arg], i: usize, f: &str) -> Result<String, EvalError> {
    match args.get(i) {
        Some(Arg::String(s)) => Ok(s.clone()),
        _ => Err(bad_arg(f, i, "a string")),
    }
}

// ---------------------------------------------------------------------------------------
// Shared shapes.

/// Applies `f` to every value; drops `__name__`; stamps the step time.
fn map_values(v: Vec<VectorSample>, t: i64, f: impl Fn(f64) -> f64) -> Vec<VectorSample> {
    v.into_iter().map(|s| VectorSample { labels: s.labels.without_metric_name(), t, v: f(s.v) }).collect()
}

/// Applies `f` to each series' window; a series whose window is empty or for which `f`
/// gives `None` is left out.
fn over_time(
    m: Vec<RangeSeries>,
    t: i64,
    keep_name: bool,
    mut f: impl FnMut(&[Sample]) -> Option<f64>,
) -> Vec<VectorSample> {
    let mut out = Vec::with_capacity(m.len());
    for s in m {
        if s.samples.is_empty() {
            continue;
        }
        if let Some(v) = f(&s.samples) {
            let labels = if keep_name || early_label(&s.labels, METRIC_NAME).is_none() {
                s.labels
            } else {
                s.labels.without(&[METRIC_NAME])
            };
            out.push(VectorSample { labels, t, v });
        }
    }
    out
}

/// Go's `math.Min`: NaN if either is NaN, and -0 below +0.
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == b {
        if a.is_sign_negative() { a } else { b }
    } else if a < b {
        a
    } else {
        b
    }
}

/// Go's `math.Max`: NaN if either is NaN, and +0 above -0.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == b {
        if a.is_sign_positive() { a } else { b }
    } else if a > b {
        a
    } else {
        b
    }
}

fn sgn(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        v // 0, -0 and NaN stay as they are
    }
}

// ---------------------------------------------------------------------------------------
// Numerics.

/// One step of Kahan–Neumaier summation: adds `inc` to `sum` with compensation `c`.
/// An infinite sum clears the compensation (it would otherwise turn into NaN).
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// The compensated sum of `vals`.
fn kahan_sum(vals: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for v in vals {
        (sum, c) = kahan_inc(v, sum, c);
    }
    if sum.is_infinite() { sum } else { sum + c }
}

/// Mean of a non-empty window: the compensated sum divided by the count while the sum is
/// finite; once it overflows, an incremental (compensated) mean from that point on.
fn avg(s: &[Sample]) -> f64 {
    let Some(first) = s.first() else { return f64::NAN };
    if s.len() == 1 {
        return first.v;
    }
    let (mut sum, mut c) = (first.v, 0.0);
    let (mut mean, mut incremental) = (0.0, false);
    for (i, x) in s.iter().enumerate().skip(1) {
        let count = (i + 1) as f64;
        if !incremental {
            let (ns, nc) = kahan_inc(x.v, sum, c);
            if !ns.is_infinite() {
                (sum, c) = (ns, nc);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(x.v / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        let n = s.len() as f64;
        sum / n + c / n
    }
}

/// Population variance of a non-empty window (Welford with compensated accumulators).
fn variance(s: &[Sample]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for x in s {
        count += 1.0;
        let delta = x.v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (x.v - (mean + c_mean)), aux, c_aux);
    }
    if count == 0.0 { f64::NAN } else { (aux + c_aux) / count }
}

/// The φ-quantile of `vals` (sorted in place, NaN first) with linear interpolation between
/// the closest ranks. NaN for no values or NaN φ, -Inf below 0, +Inf above 1.
fn quantile(q: f64, vals: &mut [f64]) -> f64 {
    if vals.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    vals.sort_by(nan_first);
    let n = vals.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    // In range: 0 <= lower <= upper <= n-1 < usize::MAX.
    let (li, ui) = (lower as usize, upper as usize);
    match (vals.get(li), vals.get(ui)) {
        (Some(l), Some(u)) => l * (1.0 - weight) + u * weight,
        _ => f64::NAN,
    }
}

fn nan_first(a: &f64, b: &f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
    }
}

/// Median absolute deviation of a non-empty window; NaN if any value is NaN.
fn mad(s: &[Sample]) -> f64 {
    if s.iter().any(|x| x.v.is_nan()) {
        return f64::NAN;
    }
    let mut vals: Vec<f64> = s.iter().map(|x| x.v).collect();
    let median = quantile(0.5, &mut vals);
    let mut dev: Vec<f64> = vals.iter().map(|v| (v - median).abs()).collect();
    quantile(0.5, &mut dev)
}

/// The sample holding the minimum (`min`) or maximum value; NaN loses to any number; on
/// ties the latest sample wins.
fn extreme(s: &[Sample], min: bool) -> Option<Sample> {
    let mut best = *s.first()?;
    for x in &s[1..] {
        let better = if min { x.v <= best.v } else { x.v >= best.v };
        if better || (best.v.is_nan() && !x.v.is_nan()) {
            best = *x;
        }
    }
    Some(best)
}

/// Least-squares fit of the window, x in seconds relative to `intercept_t` (ms).
/// Returns (slope per second, value at `intercept_t`).
fn linear_regression(s: &[Sample], intercept_t: i64) -> (f64, f64) {
    let Some(first) = s.first() else { return (f64::NAN, f64::NAN) };
    let init_y = first.v;
    let const_y = s.iter().all(|x| x.v == init_y);
    if const_y {
        return if init_y.is_infinite() { (f64::NAN, f64::NAN) } else { (0.0, init_y) };
    }
    let n = s.len() as f64;
    let (mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for p in s {
        let x = (p.t as f64 - intercept_t as f64) / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(p.v, sy, cy);
        (sxy, cxy) = kahan_inc(x * p.v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov_xy = sxy - sx * sy / n;
    let var_x = sx2 - sx * sx / n;
    let slope = cov_xy / var_x;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

/// `rate`, `increase` (counters) and `delta` (gauges) over the window `(start, end]` (ms):
/// the change between the first and last sample (counter resets added back), extrapolated
/// towards the window edges. An edge is reached if the gap to it is under 1.1× the average
/// sample interval, else the extrapolation covers half an interval; a counter is never
/// extrapolated below zero. `None` for fewer than two samples.
fn extrapolated_rate(s: &[Sample], start: i64, end: i64, is_counter: bool, is_rate: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (first, last) = (s[0], s[s.len() - 1]);
    let mut result = last.v - first.v;
    if is_counter {
        for w in s.windows(2) {
            if w[1].v < w[0].v {
                result += w[0].v;
            }
        }
    }
    let mut to_start = (first.t as f64 - start as f64) / 1000.0;
    let mut to_end = (end as f64 - last.t as f64) / 1000.0;
    let sampled = (last.t as f64 - first.t as f64) / 1000.0;
    let avg_interval = sampled / (s.len() - 1) as f64;
    let threshold = avg_interval * 1.1;
    if to_start >= threshold {
        to_start = avg_interval / 2.0;
    }
    if is_counter && result > 0.0 && first.v >= 0.0 {
        let to_zero = sampled * (first.v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_interval / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= (end as f64 - start as f64) / 1000.0;
    }
    Some(result * factor)
}

/// `irate` (`per_second`, counter) and `idelta`: from the last two samples.
fn instant_delta(s: &[Sample], per_second: bool) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (prev, last) = (s[s.len() - 2], s[s.len() - 1]);
    let interval_ms = last.t.saturating_sub(prev.t);
    if interval_ms == 0 {
        return None;
    }
    if !per_second {
        return Some(last.v - prev.v);
    }
    let diff = if last.v < prev.v { last.v } else { last.v - prev.v };
    Some(diff / (interval_ms as f64 / 1000.0))
}

/// Holt's linear (double exponential) smoothing; `None` for fewer than two samples.
fn double_exponential_smoothing(s: &[Sample], sf: f64, tf: f64) -> Option<f64> {
    if s.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, s[0].v);
    let mut b = s[1].v - s[0].v;
    for (i, x) in s.iter().enumerate().skip(1) {
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let next = sf * x.v + (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, next);
    }
    Some(s1)
}

fn invalid_quantile(q: f64) -> String {
    format!("PromQL warning: quantile value should be between 0 and 1, got {}", go_v(q))
}

/// Formats like Go's `%f` (six decimals; `NaN`, `+Inf`, `-Inf`).
fn go_fixed(v: f64) -> String {
    if v.is_finite() { format!("{v:.6}") } else { go_v(v) }
}

fn possible_non_counter(ctx: &mut FnCtx<'_>, labels: &Labels) {
    if let Some(name) = early_label(labels, METRIC_NAME)
        && !["_total", "_sum", "_count", "_bucket"].iter().any(|suf| name.ends_with(suf))
    {
        ctx.info(format!(
            "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {name:?}"
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Calendar.

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A calendar field (UTC) of the Unix time `v` seconds (truncated to whole seconds).
/// NaN for non-finite or out-of-range times.
fn date_part(part: &str, v: f64) -> f64 {
    // ±2^62 s is far beyond any calendar use and keeps every step below in i64 range.
    const LIMIT: f64 = 4.611_686_018_427_388e18;
    if !v.is_finite() || v.abs() >= LIMIT {
        return f64::NAN;
    }
    let secs = v.trunc() as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (m, d) = (i64::from(m), i64::from(d));
    let r = match part {
        "minute" => (sod / 60) % 60,
        "hour" => sod / 3600,
        "day_of_week" => (days + 4).rem_euclid(7),
        "day_of_month" => d,
        "day_of_year" => {
            let cum = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
            let idx = usize::try_from(m - 1).unwrap_or(0).min(11);
            cum[idx] + d + i64::from(m > 2 && is_leap(y))
        }
        "days_in_month" => days_in_month(y, m),
        "month" => m,
        "year" => y,
        _ => return f64::NAN,
    };
    r as f64
}

// ---------------------------------------------------------------------------------------
// Labels.

/// A label name is valid if it is non-empty (Prometheus 3 accepts any UTF-8 name).
fn valid_label_name(n: &str) -> bool {
    !n.is_empty()
}

fn label_replace(a: &mut [Arg], t: i64) -> Result<Vec<VectorSample>, EvalError> {
    const F: &str = "label_replace";
    let v = vector_at(a, 0, F)?;
    let (dst, repl, src, re) = (string_at(a, 1, F)?, string_at(a, 2, F)?, string_at(a, 3, F)?, string_at(a, 4, F)?);
    let regex = anchored_regex(&re)?;
    if !valid_label_name(&dst) {
        return Err(EvalError::Execution(format!("invalid destination label name in label_replace(): {dst}")));
    }
    let mut out = Vec::with_capacity(v.len());
    for s in v {
        let src_val = s.labels.get(&src).unwrap_or("");
        let labels = match regex.captures(src_val) {
            Some(caps) => {
                let mut value = String::new();
                caps.expand(&repl, &mut value);
                s.labels.with(&dst, &value)
            }
            None => s.labels,
        };
        out.push(VectorSample { labels, t, v: s.v });
    }
    Ok(out)
}

thread_local! {
    /// Compiled `label_replace` regexes: a range query calls it once per step.
    static REGEX_CACHE: std::cell::RefCell<HashMap<String, regex::Regex>> = std::cell::RefCell::new(HashMap::new());
}

/// Most regexes kept in [`REGEX_CACHE`] per thread; the cache is emptied when full.
const REGEX_CACHE_MAX: usize = 64;

/// `re` compiled as a full-string match (`^(?s:re)$`), from a small per-thread cache.
fn anchored_regex(re: &str) -> Result<regex::Regex, EvalError> {
    if let Some(r) = REGEX_CACHE.with(|c| c.borrow().get(re).cloned()) {
        return Ok(r);
    }
    let compiled = regex::RegexBuilder::new(&format!("^(?s:{re})$"))
        .size_limit(1 << 22)
        .build()
        .map_err(|e| EvalError::Execution(format!("invalid regular expression in label_replace(): {re}: {e}")))?;
    REGEX_CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= REGEX_CACHE_MAX {
            c.clear();
        }
        c.insert(re.to_owned(), compiled.clone());
    });
    Ok(compiled)
}

fn label_join(a: &mut [Arg], t: i64) -> Result<Vec<VectorSample>, EvalError> {
    const F: &str = "label_join";
    let v = vector_at(a, 0, F)?;
    let (dst, sep) = (string_at(a, 1, F)?, string_at(a, 2, F)?);
    let mut srcs = Vec::with_capacity(a.len().saturating_sub(3));
    for i in 3..a.len() {
        let s = string_at(a, i, F)?;
        if !valid_label_name(&s) {
            return Err(EvalError::Execution(format!("invalid source label name in label_join(): {s}")));
        }
        srcs.push(s);
    }
    if !valid_label_name(&dst) {
        return Err(EvalError::Execution(format!("invalid destination label name in label_join(): {dst}")));
    }
    let mut out = Vec::with_capacity(v.len());
    for s in v {
        let value = srcs.iter().map(|n| s.labels.get(n).unwrap_or("")).collect::<Vec<_>>().join(&sep);
        out.push(VectorSample { labels: s.labels.with(&dst, &value), t, v: s.v });
    }
    Ok(out)
}

/// Labels for `absent`/`absent_over_time`: the equality matchers of a plain selector
/// argument, except `__name__` and any label with more than one matcher.
fn absent_labels(arg: Option<&Expr>) -> Labels {
    let vs = match arg {
        Some(Expr::VectorSelector(vs)) => vs,
        Some(Expr::MatrixSelector(ms)) => &ms.vs,
        _ => return Labels::empty(),
    };
    let mut set: Vec<(String, String)> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if matches!(m.op, MatchOp::Equal) && !seen.contains(&m.name.as_str()) {
            set.retain(|(n, _)| n != &m.name);
            set.push((m.name.clone(), m.value.clone()));
            seen.push(&m.name);
        } else {
            set.retain(|(n, _)| n != &m.name);
        }
    }
    Labels::new(set.into_iter().map(|(name, value)| Label { name, value }).collect())
}

fn sort_by_value(mut v: Vec<VectorSample>, t: i64, desc: bool) -> Vec<VectorSample> {
    v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => {
            let o = a.v.partial_cmp(&b.v).unwrap_or(Ordering::Equal);
            if desc { o.reverse() } else { o }
        }
    });
    for s in &mut v {
        s.t = t;
    }
    v
}

fn sort_by_labels(mut v: Vec<VectorSample>, names: &[String], desc: bool, t: i64) -> Vec<VectorSample> {
    v.sort_by(|a, b| {
        let mut o = Ordering::Equal;
        for n in names {
            o = natural_cmp(a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""));
            if o != Ordering::Equal {
                break;
            }
        }
        if o == Ordering::Equal {
            o = a.labels.cmp(&b.labels);
        }
        if desc { o.reverse() } else { o }
    });
    for s in &mut v {
        s.t = t;
    }
    v
}

/// Natural order: runs of ASCII digits compare as numbers, everything else byte-wise.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let (si, sj) = (i, j);
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let (da, db) = (&a[si..i], &b[sj..j]);
            let ta = trim_zeros(da);
            let tb = trim_zeros(db);
            let o = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb)).then_with(|| da.len().cmp(&db.len()));
            if o != Ordering::Equal {
                return o;
            }
        } else {
            let (si, sj) = (i, j);
            while i < a.len() && !a[i].is_ascii_digit() {
                i += 1;
            }
            while j < b.len() && !b[j].is_ascii_digit() {
                j += 1;
            }
            let o = a[si..i].cmp(&b[sj..j]);
            if o != Ordering::Equal {
                return o;
            }
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let k = d.iter().take_while(|c| **c == b'0').count();
    &d[k..]
}

// ---------------------------------------------------------------------------------------
// Classic histograms.

/// One classic bucket: upper bound and cumulative count.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    upper: f64,
    count: f64,
}

/// One classic histogram gathered from bucket series: its output labels, its metric name
/// (for annotations) and its buckets.
struct ClassicHistogram {
    labels: Labels,
    name: Option<String>,
    buckets: Vec<Bucket>,
}

/// Groups bucket series into classic histograms by their labels without `le` (the metric
/// name included, so two histograms that differ only by name stay apart and then collide
/// as duplicate output label sets, as in Prometheus), in order of first appearance. The
/// output labels drop `__name__`. Series whose `le` is missing or not a number
/// are left out with a warning.
fn classic_histograms(v: Vec<VectorSample>, ctx: &mut FnCtx<'_>) -> Vec<ClassicHistogram> {
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<ClassicHistogram> = Vec::new();
    for s in v {
        let upper = s.labels.get("le").and_then(|le| le.trim().parse::<f64>().ok());
        let Some(upper) = upper else {
            ctx.warn(format!(
                "PromQL warning: bucket label \"le\" is missing or has a malformed value of {:?} for metric name {:?}",
                s.labels.get("le").unwrap_or(""),
                s.labels.metric_name().unwrap_or("")
            ));
            continue;
        };
        let key = s.labels.without(&["le"]);
        let i = *index.entry(key).or_insert_with(|| {
            groups.push(ClassicHistogram {
                labels: s.labels.without(&["le", METRIC_NAME]),
                name: s.labels.metric_name().map(str::to_owned),
                buckets: Vec::new(),
            });
            groups.len() - 1
        });
        groups[i].buckets.push(Bucket { upper, count: s.v });
    }
    groups
}

fn monotonicity_info(ctx: &mut FnCtx<'_>, name: Option<&str>) {
    ctx.info(format!(
        "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {:?}",
        name.unwrap_or("")
    ));
}

/// `histogram_quantile` over classic buckets: one output sample per classic histogram.
fn histogram_quantile(q: f64, v: Vec<VectorSample>, ctx: &mut FnCtx<'_>) -> Vec<VectorSample> {
    if !(0.0..=1.0).contains(&q) {
        ctx.warn(invalid_quantile(q));
    }
    let mut out = Vec::new();
    for mut h in classic_histograms(v, ctx) {
        let (v, forced) = bucket_quantile(q, &mut h.buckets);
        if forced {
            monotonicity_info(ctx, h.name.as_deref());
        }
        out.push(VectorSample { labels: h.labels, t: ctx.t, v });
    }
    out
}

/// `histogram_quantiles` (experimental) over classic buckets: one output sample per
/// classic histogram and quantile, the quantile named by label `label`.
fn histogram_quantiles(v: Vec<VectorSample>, label: &str, qs: &[f64], ctx: &mut FnCtx<'_>) -> Vec<VectorSample> {
    for &q in qs {
        if !(0.0..=1.0).contains(&q) {
            ctx.warn(invalid_quantile(q));
        }
    }
    let mut out = Vec::new();
    for h in classic_histograms(v, ctx) {
        for &q in qs {
            let (v, forced) = bucket_quantile(q, &mut h.buckets.clone());
            if forced {
                monotonicity_info(ctx, h.name.as_deref());
            }
            out.push(VectorSample { labels: h.labels.with(label, &quantile_label_value(q)), t: ctx.t, v });
        }
    }
    out
}

/// A quantile as a label value, in OpenMetrics' canonical form: whole numbers keep one
/// decimal (`1.0`), infinities are `+Inf`/`-Inf`.
fn quantile_label_value(q: f64) -> String {
    if q.is_finite() && q.fract() == 0.0 && q.abs() < 1e15 { format!("{q:.1}") } else { go_v(q) }
}

/// `histogram_fraction` over classic buckets: one output sample per classic histogram.
fn histogram_fraction(lower: f64, upper: f64, v: Vec<VectorSample>, ctx: &mut FnCtx<'_>) -> Vec<VectorSample> {
    let mut out = Vec::new();
    for mut h in classic_histograms(v, ctx) {
        let (v, forced) = bucket_fraction(lower, upper, &mut h.buckets);
        if forced {
            monotonicity_info(ctx, h.name.as_deref());
        }
        out.push(VectorSample { labels: h.labels, t: ctx.t, v });
    }
    out
}

/// Relative tolerance under which two neighbouring cumulative counts are treated as equal.
const SMALL_DELTA: f64 = 1e-12;

fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < eps * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

/// Sorts the buckets by bound, merges equal bounds (e.g. `le="1"` and `le="1.0"`), ignores
/// tiny relative differences between neighbours and forces the counts monotonic.
/// `None` if the highest bound is not +Inf. Otherwise (buckets, whether counts were forced).
fn normalize_buckets(buckets: &mut [Bucket]) -> Option<(Vec<Bucket>, bool)> {
    buckets.sort_by(|a, b| nan_first(&a.upper, &b.upper));
    if buckets.last()?.upper != f64::INFINITY {
        return None;
    }
    let mut merged: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for b in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.upper == b.upper => last.count += b.count,
            _ => merged.push(*b),
        }
    }
    let mut forced = false;
    if let Some(first) = merged.first() {
        let mut prev = first.count;
        for b in merged.iter_mut().skip(1) {
            let cur = b.count;
            if cur == prev {
                continue;
            }
            if almost_equal(prev, cur, SMALL_DELTA) {
                b.count = prev;
                continue;
            }
            if cur < prev {
                b.count = prev;
                forced = true;
                continue;
            }
            prev = cur;
        }
    }
    Some((merged, forced))
}

/// The q-quantile of one classic histogram, interpolating linearly inside the bucket the
/// rank falls in. Returns (value, whether counts had to be forced monotonic).
/// NaN without a +Inf bucket, with fewer than two buckets or with no observations.
fn bucket_quantile(q: f64, buckets: &mut [Bucket]) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    let Some((merged, forced)) = normalize_buckets(buckets) else { return (f64::NAN, false) };
    if merged.len() < 2 {
        return (f64::NAN, forced);
    }
    let observations = merged[merged.len() - 1].count;
    if observations == 0.0 || observations.is_nan() {
        return (f64::NAN, forced);
    }
    let mut rank = q * observations;
    // First bucket (excluding +Inf) whose cumulative count reaches the rank.
    let n = merged.len() - 1;
    let b = merged[..n].iter().position(|x| x.count >= rank).unwrap_or(n);
    if b == n {
        return (merged[n - 1].upper, forced);
    }
    if b == 0 && merged[0].upper <= 0.0 {
        return (merged[0].upper, forced);
    }
    let end = merged[b].upper;
    let mut count = merged[b].count;
    let mut start = 0.0;
    if b > 0 {
        start = merged[b - 1].upper;
        count -= merged[b - 1].count;
        rank -= merged[b - 1].count;
    }
    (start + (end - start) * (rank / count), forced)
}

/// The estimated fraction of the observations of one classic histogram that lie between
/// `lower` and `upper`, with the same model as [`bucket_quantile`]: observations spread
/// uniformly inside a bucket, the lowest bucket starting at 0 if its bound is positive (else
/// all its observations at its bound), and the +Inf bucket's observations above every
/// finite value. Returns (fraction, whether counts had to be forced monotonic).
fn bucket_fraction(lower: f64, upper: f64, buckets: &mut [Bucket]) -> (f64, bool) {
    let Some((merged, forced)) = normalize_buckets(buckets) else { return (f64::NAN, false) };
    if merged.len() < 2 || lower.is_nan() || upper.is_nan() {
        return (f64::NAN, forced);
    }
    let total = merged[merged.len() - 1].count;
    if total == 0.0 || total.is_nan() {
        return (f64::NAN, forced);
    }
    if lower >= upper {
        return (0.0, forced);
    }
    let below = |x: f64| -> f64 {
        if x == f64::INFINITY {
            return total;
        }
        let mut prev = 0.0;
        for (i, b) in merged.iter().enumerate() {
            if b.upper == f64::INFINITY {
                return prev;
            }
            if x <= b.upper {
                if x == b.upper {
                    return b.count;
                }
                let lo = if i > 0 {
                    merged[i - 1].upper
                } else if b.upper > 0.0 {
                    0.0
                } else {
                    return prev;
                };
                if x <= lo {
                    return prev;
                }
                return prev + (b.count - prev) * (x - lo) / (b.upper - lo);
            }
            prev = b.count;
        }
        prev
    };
    ((below(upper) - below(lower)) / total, forced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ser(vals: &[(i64, f64)]) -> Vec<Sample> {
        vals.iter().map(|&(t, v)| Sample { t, v }).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn rate_extrapolates_to_window_edges() {
        // 0+10x10 at 5m steps, rate over 50m at 50m: samples 5m..50m (0 is outside (0,50m]).
        let s: Vec<Sample> = (1..=10).map(|i| Sample { t: i * 300_000, v: (i * 10) as f64 }).collect();
        let v = extrapolated_rate(&s, 0, 3_000_000, true, false).unwrap();
        // 90 over 45m, extrapolated by 5m to the start (gap 5m < 1.1 × 5m): 100.
        assert!(close(v, 100.0), "{v}");
        let r = extrapolated_rate(&s, 0, 3_000_000, true, true).unwrap();
        assert!(close(r, 100.0 / 3000.0), "{r}");
    }

    #[test]
    fn rate_stops_counter_at_zero() {
        // start="1m": 60+240x10 at 4m, window (-10m, 10m], samples at 0, 4m, 8m.
        let s = ser(&[(0, 60.0), (240_000, 300.0), (480_000, 540.0)]);
        let r = extrapolated_rate(&s, -600_000, 600_000, true, true).unwrap();
        assert!(close(r, 0.55), "{r}");
        // start="5m": 300 at 0; zero point is further than half an interval.
        let s = ser(&[(0, 300.0), (240_000, 540.0), (480_000, 780.0)]);
        let r = extrapolated_rate(&s, -600_000, 600_000, true, true).unwrap();
        assert!(close(r, 0.6), "{r}");
    }

    #[test]
    fn rate_counter_reset_and_gauge_delta() {
        let s = ser(&[
            (300_000, 1.0),
            (600_000, 2.0),
            (900_000, 3.0),
            (1_200_000, 2.0),
            (1_500_000, 3.0),
            (1_800_000, 4.0),
        ]);
        // increase with one reset: 4-1+3 = 6 over 25m, extrapolated to 30m -> 7.2, zero cut at 1 -> ...
        let inc = extrapolated_rate(&s, 0, 1_800_000, true, false).unwrap();
        // to_start: 5m >= 5.5m? no -> 300s; zero point 1500*(1/6)=250s < 300s -> 250s.
        assert!(close(inc, 6.0 * (1500.0 + 250.0) / 1500.0), "{inc}");
        let d = ser(&[(0, 200.0), (300_000, 150.0), (600_000, 100.0)]);
        assert!(close(extrapolated_rate(&d, -1, 600_000, false, false).unwrap(), -100.0 * 600.001 / 600.0));
        assert_eq!(extrapolated_rate(&ser(&[(1, 1.0)]), 0, 10, true, true), None);
    }

    #[test]
    fn rate_with_identical_timestamps_does_not_panic() {
        let s = ser(&[(5, 1.0), (5, 2.0)]);
        let r = extrapolated_rate(&s, 0, 10, true, true);
        assert!(r.is_some());
        assert_eq!(instant_delta(&s, true), None);
    }

    #[test]
    fn irate_and_idelta() {
        let s = ser(&[(0, 10.0), (300_000, 20.0), (600_000, 5.0)]);
        assert!(close(instant_delta(&s, true).unwrap(), 5.0 / 300.0));
        assert!(close(instant_delta(&s, false).unwrap(), -15.0));
    }

    #[test]
    fn deriv_and_predict_linear() {
        // 0+10x4 0+10x5 at 5m: the worked example of the Prometheus tests.
        let vals = [0.0, 10.0, 20.0, 30.0, 40.0, 0.0, 10.0, 20.0, 30.0, 40.0, 50.0];
        let s: Vec<Sample> = vals.iter().enumerate().map(|(i, &v)| Sample { t: i as i64 * 300_000, v }).collect();
        let (slope, _) = linear_regression(&s, 0);
        assert!(close(slope, 0.010606060606060607), "{slope}");
        let (slope, icpt) = linear_regression(&s, 3_000_000);
        assert!(close(icpt + slope * 3600.0, 76.81818181818181), "{icpt}");
        let inf = ser(&[(0, f64::INFINITY), (1000, f64::INFINITY)]);
        assert!(linear_regression(&inf, 0).0.is_nan());
        let c = ser(&[(0, 3.0), (1000, 3.0)]);
        assert_eq!(linear_regression(&c, 0), (0.0, 3.0));
    }

    #[test]
    fn avg_is_exact_and_survives_overflow() {
        let s = ser(&[(0, 52.0); 13]);
        assert_eq!(avg(&s), 52.0);
        let big = 9.988_465_674_311_58e307;
        assert_eq!(avg(&ser(&[(0, big), (1, big)])), big);
        assert_eq!(avg(&ser(&[(0, -big), (1, big)])), 0.0);
        assert_eq!(avg(&ser(&[(0, 1.0), (1, 1e100), (2, 1.0), (3, -1e100)])), 0.5);
        assert_eq!(avg(&ser(&[(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0), (4, f64::INFINITY)])), f64::INFINITY);
        assert!(avg(&ser(&[(0, 1.0), (1, f64::INFINITY), (2, f64::NEG_INFINITY)])).is_nan());
        let v = avg(&ser(&[
            (0, 1.78264e50),
            (1, 0.76342771),
            (2, 1.9592258),
            (3, 2.258e220),
            (4, 7.69805412),
            (5, 458.90154),
        ]));
        assert!(close(v, 3.76333333333333e219), "{v}");
    }

    #[test]
    fn avg_matches_prometheus_extreme_cases() {
        let mk = |vals: &[f64]| -> Vec<Sample> {
            vals.iter().enumerate().map(|(i, &v)| Sample { t: i as i64, v }).collect()
        };
        let cases: [(&[f64], f64); 5] = [
            (&[1e10, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6], 1.6666666666666675e9),
            (&[-1.78264e215, 0.76342771, 1.9592258, 2.258e220, 7.69805412, -458.90154], 3.76330362266667e219),
            (
                &[-1.78264e215, 0.76342771, 1.9592258, 2.258e220, 7.69805412, 1.78264e215, -458.90154],
                3.225714285714286e219,
            ),
            (
                &[
                    -1.78264e219,
                    0.76342771,
                    1.9592258,
                    2.3757689e217,
                    -2.3757689e217,
                    2.258e220,
                    7.69805412,
                    1.78264e219,
                    -458.90154,
                ],
                2.5088888888888888e219,
            ),
            (
                &[
                    -2.258e220,
                    -1.78264e219,
                    0.76342771,
                    1.9592258,
                    2.3757689e217,
                    -2.3757689e217,
                    2.258e220,
                    7.69805412,
                    1.78264e219,
                    -458.90154,
                ],
                0.0,
            ),
        ];
        for (vals, want) in cases {
            let got = avg(&mk(vals));
            assert!((got - want).abs() <= 1e-6 * want.abs(), "{vals:?}: {got} != {want}");
        }
    }

    #[test]
    fn kahan_sum_keeps_small_terms() {
        assert_eq!(kahan_sum([1.0, 1e100, 1.0, -1e100].into_iter()), 2.0);
        assert_eq!(kahan_sum([f64::INFINITY, 1.0].into_iter()), f64::INFINITY);
    }

    #[test]
    fn variance_and_stddev() {
        let s = ser(&[(0, 0.0), (1, 8.0), (2, 8.0), (3, 2.0), (4, 3.0)]);
        assert!(close(variance(&s), 10.56));
        assert!((variance(&s).sqrt() - 3.249615).abs() < 1e-6);
        let c = ser(&[(0, 1.5990505637277868); 3]);
        assert_eq!(variance(&c), 0.0);
    }

    #[test]
    fn quantile_interpolates_and_bounds() {
        assert_eq!(quantile(0.75, &mut [0.0, 1.0, 4.0]), 2.5);
        assert!(close(quantile(0.8, &mut [4.0, 0.0, 1.0]), 2.8));
        assert_eq!(quantile(0.5, &mut [0.0, 1.0]), 0.5);
        assert_eq!(quantile(-1.0, &mut [1.0]), f64::NEG_INFINITY);
        assert_eq!(quantile(2.0, &mut [1.0]), f64::INFINITY);
        assert!(quantile(f64::NAN, &mut [1.0]).is_nan());
        assert!(quantile(0.5, &mut []).is_nan());
        assert_eq!(quantile(1.0, &mut [f64::NAN, 3.0]), 3.0);
    }

    #[test]
    fn mad_of_window() {
        let s = ser(&[(0, 6.0), (1, 2.0), (2, 1.0), (3, 999.0), (4, 1.0), (5, 2.0)]);
        assert_eq!(mad(&s), 1.0);
        assert!(mad(&ser(&[(0, 1.0), (1, f64::NAN)])).is_nan());
    }

    #[test]
    fn min_max_skip_nan() {
        let s = ser(&[(0, f64::NAN), (1, 0.0), (2, 1.0)]);
        assert_eq!(extreme(&s, true).unwrap().v, 0.0);
        assert_eq!(extreme(&s, false).unwrap().v, 1.0);
        assert!(extreme(&ser(&[(0, f64::NAN)]), true).unwrap().v.is_nan());
        let ties = ser(&[(1, 5.0), (2, 5.0)]);
        assert_eq!(extreme(&ties, false).unwrap().t, 2);
    }

    #[test]
    fn holt_linear_trend() {
        let s: Vec<Sample> = (0..7).map(|i| Sample { t: i * 10_000, v: (i * 10) as f64 }).collect();
        assert!(close(double_exponential_smoothing(&s, 0.01, 0.1).unwrap(), 60.0));
    }

    #[test]
    fn calendar_fields() {
        let t = 1136239445.0; // 2006-01-02 22:04:05 UTC, a Monday
        assert_eq!(date_part("year", t), 2006.0);
        assert_eq!(date_part("month", t), 1.0);
        assert_eq!(date_part("day_of_month", t), 2.0);
        assert_eq!(date_part("day_of_week", t), 1.0);
        assert_eq!(date_part("hour", t), 22.0);
        assert_eq!(date_part("minute", t), 4.0);
        assert_eq!(date_part("day_of_year", 1483191420.0), 366.0);
        assert_eq!(date_part("day_of_year", 1672493820.0), 365.0);
        assert_eq!(date_part("days_in_month", 1454284800.0), 29.0);
        assert_eq!(date_part("days_in_month", 1485907200.0), 28.0);
        assert_eq!(date_part("day_of_week", 0.0), 4.0);
        assert_eq!(date_part("year", -1.0), 1969.0);
        assert!(date_part("year", f64::NAN).is_nan());
        assert!(date_part("year", 1e300).is_nan());
        assert!(!date_part("year", 4.6e18).is_nan());
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["100", "10", "2", "1", "21", "0"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["0", "1", "2", "10", "21", "100"]);
        let mut v = vec!["1.111.3", "1.2.3", "1.11.3"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["1.2.3", "1.11.3", "1.111.3"]);
        let mut v = vec!["4m1000", "4m600", "4m5"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["4m5", "4m600", "4m1000"]);
        assert_eq!(natural_cmp("a", "a1"), Ordering::Less);
        assert_eq!(natural_cmp("01", "1"), Ordering::Greater);
    }

    fn b(upper: f64, count: f64) -> Bucket {
        Bucket { upper, count }
    }

    #[test]
    fn bucket_quantile_interpolates() {
        let mut bs = vec![b(f64::INFINITY, 100.0), b(0.1, 50.0), b(0.5, 90.0), b(1.0, 100.0)];
        let (v, forced) = bucket_quantile(0.5, &mut bs.clone());
        assert!(close(v, 0.1) && !forced, "{v}");
        let (v, _) = bucket_quantile(0.7, &mut bs);
        assert!(close(v, 0.1 + 0.4 * (20.0 / 40.0)), "{v}");
        // Rank in the +Inf bucket: the highest finite bound.
        let (v, _) = bucket_quantile(0.99, &mut [b(1.0, 10.0), b(f64::INFINITY, 20.0)]);
        assert_eq!(v, 1.0);
        // Bounds.
        assert_eq!(bucket_quantile(-0.1, &mut [b(f64::INFINITY, 1.0)]).0, f64::NEG_INFINITY);
        assert_eq!(bucket_quantile(1.1, &mut [b(f64::INFINITY, 1.0)]).0, f64::INFINITY);
        assert!(bucket_quantile(0.5, &mut [b(1.0, 1.0)]).0.is_nan(), "no +Inf bucket");
        assert!(bucket_quantile(0.5, &mut [b(1.0, 0.0), b(f64::INFINITY, 0.0)]).0.is_nan(), "empty");
        // First bucket with a non-positive bound returns that bound.
        assert_eq!(bucket_quantile(0.1, &mut [b(-1.0, 5.0), b(f64::INFINITY, 10.0)]).0, -1.0);
    }

    #[test]
    fn bucket_quantile_forces_monotonicity() {
        let mut bs = vec![b(1.0, 10.0), b(2.0, 8.0), b(4.0, 20.0), b(f64::INFINITY, 20.0)];
        let (v, forced) = bucket_quantile(0.75, &mut bs);
        assert!(forced);
        // Counts become 10, 10, 20, 20: rank 15 lies halfway into (2, 4].
        assert!(close(v, 3.0), "{v}");
        let mut bs = vec![b(1.0, 10.0), b(2.0, 10.0 * (1.0 - 1e-15)), b(f64::INFINITY, 10.0)];
        assert!(!bucket_quantile(0.5, &mut bs).1, "precision noise is not a forced fix");
    }

    fn vs(pairs: &[(&str, &str)], v: f64) -> VectorSample {
        VectorSample { labels: Labels::from_pairs(pairs), t: 0, v }
    }

    fn ctx_call(
        name: &str,
        args: Vec<Arg>,
        exprs: &[Box<Expr>],
    ) -> (Result<Value, EvalError>, Vec<String>, Vec<String>) {
        let (mut w, mut i) = (Vec::new(), Vec::new());
        let mut ctx = FnCtx {
            t: 60_000,
            range_start: 0,
            range_end: 60_000,
            args: exprs,
            warnings: &mut w,
            infos: &mut i,
            keep_name: false,
        };
        let r = call(name, args, &mut ctx);
        (r, w, i)
    }

    #[test]
    fn histogram_quantile_groups_by_labels() {
        let input = vec![
            vs(&[("__name__", "x_bucket"), ("le", "1"), ("job", "a")], 5.0),
            vs(&[("__name__", "x_bucket"), ("le", "+Inf"), ("job", "a")], 10.0),
            vs(&[("__name__", "x_bucket"), ("le", "1"), ("job", "b")], 10.0),
            vs(&[("__name__", "x_bucket"), ("le", "+Inf"), ("job", "b")], 10.0),
            vs(&[("__name__", "x_bucket"), ("job", "c")], 10.0),
        ];
        let (r, w, _) = ctx_call("histogram_quantile", vec![Arg::Scalar(0.5), Arg::Vector(input)], &[]);
        let Ok(Value::Vector(out)) = r else { panic!("{r:?}") };
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].labels, Labels::from_pairs(&[("job", "a")]));
        assert!(close(out[0].v, 1.0));
        assert!(close(out[1].v, 0.5));
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn label_functions() {
        let input = vec![vs(&[("__name__", "m"), ("src", "source-value-10")], 1.0)];
        let args = vec![
            Arg::Vector(input.clone()),
            Arg::String("dst".into()),
            Arg::String("destination-value-$1".into()),
            Arg::String("src".into()),
            Arg::String("source-value-(.*)".into()),
        ];
        let (r, _, _) = ctx_call("label_replace", args, &[]);
        let Ok(Value::Vector(out)) = r else { panic!() };
        assert_eq!(out[0].labels.get("dst"), Some("destination-value-10"));
        assert_eq!(out[0].labels.metric_name(), Some("m"));
        let bad = vec![
            Arg::Vector(input.clone()),
            Arg::String("dst".into()),
            Arg::String("".into()),
            Arg::String("src".into()),
            Arg::String("(.*".into()),
        ];
        assert!(ctx_call("label_replace", bad, &[]).0.is_err());
        let join = vec![
            Arg::Vector(input),
            Arg::String("dst".into()),
            Arg::String("-".into()),
            Arg::String("src".into()),
            Arg::String("none".into()),
            Arg::String("__name__".into()),
        ];
        let (r, _, _) = ctx_call("label_join", join, &[]);
        let Ok(Value::Vector(out)) = r else { panic!() };
        assert_eq!(out[0].labels.get("dst"), Some("source-value-10--m"));
    }

    #[test]
    fn absent_takes_unique_equality_matchers() {
        let e = crate::promql::parse(r#"absent(nonexistent{job="a",job=~"b",foo="bar",x=~"y"})"#).unwrap();
        let Expr::Call(c) = e else { panic!() };
        let (r, _, _) = ctx_call("absent", vec![Arg::Vector(vec![])], &c.args.args);
        let Ok(Value::Vector(out)) = r else { panic!() };
        assert_eq!(out[0].labels, Labels::from_pairs(&[("foo", "bar")]));
        assert_eq!(out[0].v, 1.0);
    }

    #[test]
    fn clamp_and_round() {
        let input = vec![vs(&[("a", "1")], -50.0), vs(&[("a", "2")], 100.0)];
        let (r, _, _) = ctx_call("clamp", vec![Arg::Vector(input.clone()), Arg::Scalar(-25.0), Arg::Scalar(75.0)], &[]);
        let Ok(Value::Vector(out)) = r else { panic!() };
        assert_eq!((out[0].v, out[1].v), (-25.0, 75.0));
        let (r, _, _) =
            ctx_call("clamp", vec![Arg::Vector(input.clone()), Arg::Scalar(0.0), Arg::Scalar(f64::NAN)], &[]);
        let Ok(Value::Vector(out)) = r else { panic!() };
        assert!(out[0].v.is_nan());
        let (r, _, _) = ctx_call("clamp", vec![Arg::Vector(input), Arg::Scalar(5.0), Arg::Scalar(-5.0)], &[]);
        assert_eq!(r, Ok(Value::Vector(vec![])));
        let (r, _, _) = ctx_call("round", vec![Arg::Vector(vec![vs(&[], -2.5)]), Arg::Scalar(1.0)], &[]);
        let Ok(Value::Vector(out)) = r else { panic!() };
        assert_eq!(out[0].v, -2.0);
    }

    #[test]
    fn rate_info_for_non_counter_names() {
        let m = vec![RangeSeries {
            labels: Labels::from_pairs(&[("__name__", "requests")]),
            samples: ser(&[(0, 1.0), (30_000, 2.0)]),
        }];
        let (r, _, infos) = ctx_call("rate", vec![Arg::Matrix(m)], &[]);
        assert!(matches!(r, Ok(Value::Vector(ref v)) if v.len() == 1 && v[0].labels.is_empty()));
        assert_eq!(infos.len(), 1);
        assert!(infos[0].contains("\"requests\""), "{infos:?}");
    }

    #[test]
    fn sort_by_label_natural_then_labels() {
        let input = vec![
            vs(&[("cpu", "10"), ("job", "b")], 1.0),
            vs(&[("cpu", "2"), ("job", "a")], 2.0),
            vs(&[("cpu", "10"), ("job", "a")], 3.0),
            vs(&[("job", "z")], 4.0),
        ];
        let (r, _, _) = ctx_call("sort_by_label", vec![Arg::Vector(input.clone()), Arg::String("cpu".into())], &[]);
        let Ok(Value::Vector(out)) = r else { panic!() };
        let got: Vec<f64> = out.iter().map(|s| s.v).collect();
        assert_eq!(got, [4.0, 2.0, 3.0, 1.0]);
        let (r, _, _) = ctx_call("sort_by_label_desc", vec![Arg::Vector(input), Arg::String("cpu".into())], &[]);
        let Ok(Value::Vector(out)) = r else { panic!() };
        let got: Vec<f64> = out.iter().map(|s| s.v).collect();
        assert_eq!(got, [1.0, 3.0, 2.0, 4.0]);
    }

    #[test]
    fn sort_puts_nan_last_both_ways() {
        let input = vec![vs(&[("a", "1")], f64::NAN), vs(&[("a", "2")], 2.0), vs(&[("a", "3")], 1.0)];
        for (name, want) in [("sort", [1.0, 2.0]), ("sort_desc", [2.0, 1.0])] {
            let (r, _, _) = ctx_call(name, vec![Arg::Vector(input.clone())], &[]);
            let Ok(Value::Vector(out)) = r else { panic!() };
            assert_eq!([out[0].v, out[1].v], want);
            assert!(out[2].v.is_nan());
            assert_eq!(out[0].t, 60_000);
        }
    }

    #[test]
    fn scalar_time_timestamp_and_date_defaults() {
        let (r, _, _) = ctx_call("time", vec![], &[]);
        assert_eq!(r, Ok(Value::Scalar { t: 60_000, v: 60.0 }));
        let (r, _, _) = ctx_call("scalar", vec![Arg::Vector(vec![vs(&[], 3.0), vs(&[("a", "b")], 4.0)])], &[]);
        assert!(matches!(r, Ok(Value::Scalar { v, .. }) if v.is_nan()));
        let (r, _, _) = ctx_call("minute", vec![], &[]);
        assert_eq!(r, Ok(Value::Vector(vec![VectorSample { labels: Labels::empty(), t: 60_000, v: 1.0 }])));
        let sample = VectorSample { labels: Labels::from_pairs(&[("__name__", "m"), ("a", "b")]), t: 10_000, v: 7.0 };
        let (r, _, _) = ctx_call("timestamp", vec![Arg::Vector(vec![sample])], &[]);
        let Ok(Value::Vector(out)) = r else { panic!() };
        assert_eq!((out[0].v, out[0].t), (10.0, 60_000));
        assert_eq!(out[0].labels, Labels::from_pairs(&[("a", "b")]));
    }

    #[test]
    fn over_time_name_handling_and_absent_over_time() {
        let m = || {
            vec![RangeSeries {
                labels: Labels::from_pairs(&[("__name__", "m"), ("a", "b")]),
                samples: ser(&[(10_000, 1.0), (20_000, 3.0)]),
            }]
        };
        let (r, _, _) = ctx_call("last_over_time", vec![Arg::Matrix(m())], &[]);
        let Ok(Value::Vector(out)) = r else { panic!() };
        assert_eq!((out[0].labels.metric_name(), out[0].v), (Some("m"), 3.0));
        let (r, _, _) = ctx_call("max_over_time", vec![Arg::Matrix(m())], &[]);
        let Ok(Value::Vector(out)) = r else { panic!() };
        assert_eq!((out[0].labels.metric_name(), out[0].v), (None, 3.0));
        let (r, _, _) = ctx_call("absent_over_time", vec![Arg::Matrix(m())], &[]);
        assert_eq!(r, Ok(Value::Vector(vec![])));
        let e = crate::promql::parse(r#"absent_over_time(x{job="j"}[5m])"#).unwrap();
        let Expr::Call(c) = e else { panic!() };
        let (r, _, _) = ctx_call("absent_over_time", vec![Arg::Matrix(vec![])], &c.args.args);
        let Ok(Value::Vector(out)) = r else { panic!() };
        assert_eq!(out[0].labels, Labels::from_pairs(&[("job", "j")]));
    }

    #[test]
    fn quantile_over_time_warns_out_of_range() {
        let m = vec![RangeSeries { labels: Labels::empty(), samples: ser(&[(1, 0.0), (2, 1.0)]) }];
        let (r, w, _) = ctx_call("quantile_over_time", vec![Arg::Scalar(2.0), Arg::Matrix(m)], &[]);
        let Ok(Value::Vector(out)) = r else { panic!() };
        assert_eq!(out[0].v, f64::INFINITY);
        assert_eq!(w, ["PromQL warning: quantile value should be between 0 and 1, got 2"]);
    }

    /// Every function with hostile arguments: wrong shapes, NaN/Inf, empty and one-sample
    /// windows, duplicate and extreme timestamps. Must return (Ok or Err), never panic.
    #[test]
    fn no_function_panics() {
        let names = [
            "abs",
            "absent",
            "absent_over_time",
            "acos",
            "acosh",
            "asin",
            "asinh",
            "atan",
            "atanh",
            "avg_over_time",
            "ceil",
            "changes",
            "clamp",
            "clamp_max",
            "clamp_min",
            "cos",
            "cosh",
            "count_over_time",
            "days_in_month",
            "day_of_month",
            "day_of_week",
            "day_of_year",
            "deg",
            "delta",
            "deriv",
            "exp",
            "first_over_time",
            "floor",
            "histogram_quantile",
            "histogram_fraction",
            "histogram_quantiles",
            "histogram_count",
            "double_exponential_smoothing",
            "hour",
            "idelta",
            "increase",
            "irate",
            "label_replace",
            "label_join",
            "last_over_time",
            "ln",
            "log10",
            "log2",
            "mad_over_time",
            "max_over_time",
            "min_over_time",
            "minute",
            "month",
            "pi",
            "predict_linear",
            "present_over_time",
            "quantile_over_time",
            "rad",
            "rate",
            "resets",
            "round",
            "scalar",
            "sgn",
            "sin",
            "sinh",
            "sort",
            "sort_desc",
            "sort_by_label",
            "sort_by_label_desc",
            "sqrt",
            "stddev_over_time",
            "stdvar_over_time",
            "sum_over_time",
            "tan",
            "tanh",
            "time",
            "timestamp",
            "vector",
            "year",
            "ts_of_min_over_time",
            "ts_of_max_over_time",
            "ts_of_last_over_time",
            "ts_of_first_over_time",
            "min_of",
            "max_of",
            "nope",
        ];
        let weird = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, f64::MAX, f64::MIN, 1e-308, 0.5];
        let vec_arg = || {
            Arg::Vector(
                weird
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let le = ["+Inf", "x", "NaN", "-Inf", "0", "1e308", "", "1", "0.5"][i];
                        VectorSample {
                            labels: Labels::from_pairs(&[("le", le), ("i", &i.to_string())]),
                            t: i64::MIN,
                            v,
                        }
                    })
                    .collect(),
            )
        };
        let mat_arg = || {
            let mut m: Vec<RangeSeries> = weird
                .iter()
                .map(|&v| RangeSeries { labels: Labels::empty(), samples: vec![Sample { t: 0, v }] })
                .collect();
            m.push(RangeSeries { labels: Labels::empty(), samples: vec![] });
            m.push(RangeSeries {
                labels: Labels::from_pairs(&[("__name__", "x")]),
                samples: weird.iter().map(|&v| Sample { t: 5, v }).collect(),
            });
            m.push(RangeSeries {
                labels: Labels::empty(),
                samples: vec![Sample { t: i64::MIN, v: 1.0 }, Sample { t: i64::MAX, v: 0.0 }],
            });
            Arg::Matrix(m)
        };
        let shapes: Vec<Box<dyn Fn() -> Vec<Arg>>> = vec![
            Box::new(Vec::new),
            Box::new(|| vec![vec_arg()]),
            Box::new(|| vec![mat_arg()]),
            Box::new(|| vec![Arg::Scalar(f64::NAN), vec_arg()]),
            Box::new(|| vec![Arg::Scalar(0.5), mat_arg()]),
            Box::new(|| vec![mat_arg(), Arg::Scalar(f64::NAN), Arg::Scalar(0.5)]),
            Box::new(|| vec![mat_arg(), Arg::Scalar(0.5), Arg::Scalar(0.5)]),
            Box::new(|| vec![vec_arg(), Arg::Scalar(f64::INFINITY), Arg::Scalar(f64::NAN)]),
            Box::new(|| vec![vec_arg(), Arg::Scalar(0.0)]),
            Box::new(|| vec![Arg::Scalar(1.0), Arg::Scalar(f64::NAN)]),
            Box::new(|| {
                vec![
                    vec_arg(),
                    Arg::String("".into()),
                    Arg::String("$1$$${x".into()),
                    Arg::String("le".into()),
                    Arg::String("(.*)".into()),
                ]
            }),
            Box::new(|| vec![vec_arg(), Arg::String("d".into()), Arg::String("".into()), Arg::String("".into())]),
            Box::new(|| vec![Arg::String("x".into())]),
            Box::new(|| vec![Arg::Scalar(f64::NEG_INFINITY), Arg::Scalar(f64::INFINITY), vec_arg()]),
            Box::new(|| vec![Arg::Scalar(f64::NAN), Arg::Scalar(0.5), vec_arg()]),
            Box::new(|| vec![vec_arg(), Arg::String("q".into()), Arg::Scalar(0.5), Arg::Scalar(f64::NAN)]),
        ];
        for name in names {
            for shape in &shapes {
                let (r, _, _) = ctx_call(name, shape(), &[]);
                if let Ok(Value::Vector(v)) = r {
                    assert!(v.iter().all(|s| s.t == 60_000), "{name}");
                }
            }
        }
    }

    #[test]
    fn bucket_fraction_interpolates() {
        let bs = [b(0.1, 50.0), b(0.5, 90.0), b(1.0, 100.0), b(f64::INFINITY, 100.0)];
        let f = |lo: f64, hi: f64| bucket_fraction(lo, hi, &mut bs.clone()).0;
        assert!(close(f(0.0, 0.1), 0.5));
        assert!(close(f(f64::NEG_INFINITY, 0.05), 0.25), "first bucket starts at 0");
        assert!(close(f(0.1, 0.3), 0.2));
        assert!(close(f(f64::NEG_INFINITY, f64::INFINITY), 1.0));
        assert!(close(f(0.5, 5.0), 0.1));
        assert_eq!(f(1.0, 0.5), 0.0);
        assert!(f(f64::NAN, 1.0).is_nan());
        // Observations in the +Inf bucket lie above every finite value.
        let top = [b(1.0, 10.0), b(f64::INFINITY, 20.0)];
        assert!(close(bucket_fraction(1.0, 1e9, &mut top.clone()).0, 0.0));
        assert!(close(bucket_fraction(1.0, f64::INFINITY, &mut top.clone()).0, 0.5));
        // A non-positive lowest bound holds all its observations at that bound.
        let neg = [b(-1.0, 5.0), b(f64::INFINITY, 10.0)];
        assert!(close(bucket_fraction(-2.0, -1.5, &mut neg.clone()).0, 0.0));
        assert!(close(bucket_fraction(-2.0, -1.0, &mut neg.clone()).0, 0.5));
        assert!(bucket_fraction(0.0, 1.0, &mut [b(1.0, 1.0)]).0.is_nan(), "no +Inf bucket");
    }

    #[test]
    fn histogram_quantiles_labels_each_quantile() {
        let input = vec![
            vs(&[("__name__", "x_bucket"), ("le", "1")], 5.0),
            vs(&[("__name__", "x_bucket"), ("le", "+Inf")], 10.0),
        ];
        let args = vec![Arg::Vector(input), Arg::String("q".into()), Arg::Scalar(0.1), Arg::Scalar(0.5)];
        let (r, _, _) = ctx_call("histogram_quantiles", args, &[]);
        let Ok(Value::Vector(out)) = r else { panic!("{r:?}") };
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].labels, Labels::from_pairs(&[("q", "0.1")]));
        assert_eq!((quantile_label_value(1.0), quantile_label_value(0.0)), ("1.0".into(), "0.0".into()));
        assert_eq!(quantile_label_value(f64::NAN), "NaN");
        assert!(close(out[0].v, 0.2) && close(out[1].v, 1.0));
    }

    #[test]
    fn go_number_formats() {
        let cases = [
            (1.1, "1.1"),
            (2.0, "2"),
            (-0.5, "-0.5"),
            (100000.0, "100000"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-1.5e-7, "-1.5e-07"),
            (1e300, "1e+300"),
        ];
        for (v, want) in cases {
            assert_eq!(go_v(v), want, "{v}");
        }
        assert_eq!(go_fixed(1.5), "1.500000");
        assert_eq!(go_fixed(f64::INFINITY), "+Inf");
    }
}
