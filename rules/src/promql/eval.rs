//! The step evaluator: evaluates one PromQL expression at one timestamp.
//!
//! A range query is an instant evaluation at every step; a subquery evaluates its inner
//! expression at each of its (absolutely aligned) steps. Invariants: nothing here panics
//! on a parsed expression (time arithmetic saturates, step counts are bounded by
//! `max_samples`), stale markers never leave a selector, and every sample a selector
//! loads is counted against `max_samples`.

/// Hash maps with a fast hasher, seeded at random per map.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::time::{Duration, SystemTime};

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::Expr;
use promql_parser::parser::ast::{
    AggregateExpr, AtModifier, BinaryExpr, Call, LabelModifier, Offset, SubqueryExpr, VectorMatchCardinality,
    VectorSelector,
};

use super::aggregate;
use super::binary;
use super::functions::{self, Arg, FnCtx, RangeSeries};
use super::{EngineOptions, EvalError, Value, VectorSample};
use crate::labels::{Labels, METRIC_NAME};
use crate::storage::{Queryable, Sample, Series, is_stale_nan};

/// An intermediate value during evaluation.
pub(crate) enum Val {
    /// A scalar.
    Scalar(f64),
    /// A string.
    Str(String),
    /// An instant vector. Selector outputs carry the sample's own timestamp in `t`.
    Vector(Vec<VectorSample>),
    /// A range vector.
    Matrix(Vec<RangeSeries>),
}

impl Val {
    fn type_name(&self) -> &'static str {
        match self {
            Val::Scalar(_) => "scalar",
            Val::Str(_) => "string",
            Val::Vector(_) => "vector",
            Val::Matrix(_) => "matrix",
        }
    }
}

/// Per-query evaluation state.
pub(crate) struct Evaluator<'a> {
    store: &'a dyn Queryable,
    opts: &'a EngineOptions,
    /// Query start, for `@ start()`.
    start: i64,
    /// Query end, for `@ end()`.
    end: i64,
    /// Query step (0 for an instant query), for `step()`.
    step: i64,
    /// Warnings collected so far.
    pub warnings: Vec<String>,
    /// Infos collected so far.
    pub infos: Vec<String>,
    /// Samples held by the current step since the last [`Evaluator::reset_loaded`].
    loaded: usize,
    /// Inner evaluations of subqueries during the whole query.
    subquery_points: usize,
    /// How far past a requested window later requests of the same selector may reach:
    /// the rest of a range query plus the rest of enclosing subqueries.
    ahead: i64,
    /// Selector results fetched ahead, keyed by the selector node's address.
    cache: HashMap<usize, CachedSelect>,
}

/// One selector's samples over `[lo, hi]`.
struct CachedSelect {
    lo: i64,
    hi: i64,
    series: Vec<Series>,
}

/// The samples of `series` inside `[mint, maxt]` (only the newest with `last_only`),
/// leaving out series with none.
fn slice_window(series: &[Series], mint: i64, maxt: i64, last_only: bool) -> Vec<Series> {
    series
        .iter()
        .filter_map(|s| {
            let from = s.samples.partition_point(|x| x.t < mint);
            let to = s.samples.partition_point(|x| x.t <= maxt);
            let from = if last_only && from < to { to - 1 } else { from };
            (from < to).then(|| Series { labels: s.labels.clone(), samples: s.samples[from..to].to_vec() })
        })
        .collect()
}

/// Milliseconds of a duration, saturating.
pub(crate) fn dur_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => dur_ms(d),
        Some(Offset::Neg(d)) => dur_ms(d).saturating_neg(),
    }
}

fn system_time_ms(st: &SystemTime) -> i64 {
    match st.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => dur_ms(&d),
        Err(e) => dur_ms(&e.duration()).saturating_neg(),
    }
}

/// The matcher groups of a selector: a series matches if it matches every matcher of
/// any one group. The metric name, if given, is added to every group.
pub(crate) fn matcher_groups(vs: &VectorSelector) -> Vec<Vec<Matcher>> {
    let mut groups: Vec<Vec<Matcher>> = if vs.matchers.or_matchers.is_empty() {
        vec![vs.matchers.matchers.clone()]
    } else {
        vs.matchers
            .or_matchers
            .iter()
            .map(|g| {
                let mut g = g.clone();
                g.extend(vs.matchers.matchers.iter().cloned());
                g
            })
            .collect()
    };
    if let Some(name) = &vs.name {
        for g in &mut groups {
            g.push(Matcher::new(MatchOp::Equal, METRIC_NAME, name));
        }
    }
    groups
}

impl<'a> Evaluator<'a> {
    /// A new evaluator for a query spanning `[start, end]`.
    pub(crate) fn new(store: &'a dyn Queryable, opts: &'a EngineOptions, start: i64, end: i64, step: i64) -> Self {
        Evaluator {
            store,
            opts,
            start,
            end,
            step,
            warnings: Vec::new(),
            infos: Vec::new(),
            loaded: 0,
            subquery_points: 0,
            ahead: end.saturating_sub(start),
            cache: HashMap::default(),
        }
    }

    /// Starts a new count of loaded samples (at each step of a range query).
    pub(crate) fn reset_loaded(&mut self) {
        self.loaded = 0;
    }

    fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.start),
            Some(AtModifier::End) => Some(self.end),
            Some(AtModifier::At(st)) => Some(system_time_ms(st)),
        }
    }

    /// Selects series with samples in `[mint, maxt]`, union over the matcher groups.
    ///
    /// A range query (or a subquery) asks each selector for a window that slides forward
    /// step by step, so the first request fetches the window extended by the time still
    /// ahead, and later ones are served from that copy without touching the store. A
    /// fetch larger than `max_samples` is not cached.
    ///
    /// With `last_only`, each series carries only its newest sample in the window.
    fn select(&mut self, vs: &VectorSelector, mint: i64, maxt: i64, last_only: bool) -> Result<Vec<Series>, EvalError> {
        let key = std::ptr::from_ref(vs) as usize;
        if let Some(c) = self.cache.get(&key)
            && c.lo <= mint
            && maxt <= c.hi
        {
            return Ok(slice_window(&c.series, mint, maxt, last_only));
        }
        if self.ahead > 0 {
            let hi = maxt.saturating_add(self.ahead);
            let series = self.select_uncached(vs, mint, hi);
            let n: usize = series.iter().map(|s| s.samples.len()).sum();
            if n <= self.opts.max_samples {
                let out = slice_window(&series, mint, maxt, last_only);
                self.cache.insert(key, CachedSelect { lo: mint, hi, series });
                return Ok(out);
            }
        }
        let series = self.select_uncached(vs, mint, maxt);
        Ok(if last_only { slice_window(&series, mint, maxt, true) } else { series })
    }

    /// Selects from the store.
    fn select_uncached(&self, vs: &VectorSelector, mint: i64, maxt: i64) -> Vec<Series> {
        let groups = matcher_groups(vs);
        let mut out: Vec<Series> = Vec::new();
        if groups.len() == 1 {
            out = self.store.select(&groups[0], mint, maxt);
        } else {
            let mut seen: HashMap<Labels, ()> = HashMap::default();
            for g in &groups {
                for s in self.store.select(g, mint, maxt) {
                    if seen.insert(s.labels.clone(), ()).is_none() {
                        out.push(s);
                    }
                }
            }
            out.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        out
    }

    /// Counts `n` samples as held by the current step; fails past `max_samples`.
    fn hold(&mut self, n: usize) -> Result<(), EvalError> {
        self.loaded = self.loaded.saturating_add(n);
        if self.loaded > self.opts.max_samples { Err(EvalError::TooManySamples) } else { Ok(()) }
    }

    /// The instant vector of a selector at `t`.
    fn eval_vector_selector(&mut self, vs: &VectorSelector, t: i64) -> Result<Vec<VectorSample>, EvalError> {
        let reft = self.at_ms(&vs.at).unwrap_or(t).saturating_sub(offset_ms(&vs.offset));
        let mint = reft.saturating_sub(self.opts.lookback_delta_ms).saturating_add(1);
        let series = self.select(vs, mint, reft, true)?;
        // An instant selector keeps one sample per series.
        self.hold(series.len())?;
        let mut out = Vec::with_capacity(series.len());
        for s in series {
            if let Some(last) = s.samples.iter().rev().find(|x| x.t <= reft && x.t >= mint)
                && !is_stale_nan(last.v)
            {
                out.push(VectorSample { labels: s.labels, t: last.t, v: last.v });
            }
        }
        Ok(out)
    }

    /// The range vector of a selector at `t`, with its window `(start, end]`.
    fn eval_matrix_selector(
        &mut self,
        vs: &VectorSelector,
        range: i64,
        t: i64,
    ) -> Result<(Vec<RangeSeries>, i64, i64), EvalError> {
        let reft = self.at_ms(&vs.at).unwrap_or(t).saturating_sub(offset_ms(&vs.offset));
        let start = reft.saturating_sub(range);
        let series = self.select(vs, start.saturating_add(1), reft, false)?;
        self.hold(series.iter().map(|s| s.samples.len()).sum())?;
        let out = series
            .into_iter()
            .filter_map(|mut s| {
                // In place: the store's vector is reused rather than copied.
                s.samples.retain(|x| x.t > start && x.t <= reft && !is_stale_nan(x.v));
                (!s.samples.is_empty()).then_some(RangeSeries { labels: s.labels, samples: s.samples })
            })
            .collect();
        Ok((out, start, reft))
    }

    /// The points of a subquery at `t`, with its window `(start, end]`.
    fn eval_subquery(&mut self, sq: &SubqueryExpr, t: i64) -> Result<(Vec<RangeSeries>, i64, i64), EvalError> {
        let reft = self.at_ms(&sq.at).unwrap_or(t).saturating_sub(offset_ms(&sq.offset));
        let range = dur_ms(&sq.range);
        let step = match &sq.step {
            Some(d) => dur_ms(d),
            None => self.opts.default_step_ms,
        };
        if step <= 0 {
            return Err(EvalError::Execution("subquery step must be positive".into()));
        }
        let start = reft.saturating_sub(range);
        // The first absolute multiple of `step` strictly after `start` (left-open window).
        let first = start.div_euclid(step).saturating_add(1).saturating_mul(step);
        if first > reft {
            return Ok((Vec::new(), start, reft));
        }
        let points = (reft.saturating_sub(first) / step).saturating_add(1);
        // Every inner evaluation of the whole query counts, which bounds the work of
        // nested subqueries as well as their memory.
        self.subquery_points = self.subquery_points.saturating_add(usize::try_from(points).unwrap_or(usize::MAX));
        if self.subquery_points > self.opts.max_samples {
            return Err(EvalError::TooManySamples);
        }
        // Inner steps move the window forward by up to `reft - first`.
        let outer_ahead = self.ahead;
        self.ahead = outer_ahead.saturating_add(reft.saturating_sub(first));
        let res = self.subquery_points_loop(sq, first, reft, step);
        self.ahead = outer_ahead;
        let mut out = res?;
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok((out, start, reft))
    }

    /// Evaluates a subquery's inner expression at `first, first + step, ..., <= reft`.
    fn subquery_points_loop(
        &mut self,
        sq: &SubqueryExpr,
        first: i64,
        reft: i64,
        step: i64,
    ) -> Result<Vec<RangeSeries>, EvalError> {
        let mut index: HashMap<Labels, usize> = HashMap::default();
        let mut out: Vec<RangeSeries> = Vec::new();
        let mut total = 0usize;
        let mut ts = first;
        while ts <= reft {
            let v = self.eval(&sq.expr, ts)?;
            let samples: Vec<(Labels, f64)> = match v {
                Val::Scalar(v) => vec![(Labels::empty(), v)],
                Val::Vector(vec) => cleanup_names(vec).into_iter().map(|s| (s.labels, s.v)).collect(),
                other => {
                    return Err(EvalError::Execution(format!(
                        "subquery is only allowed on instant vector or scalar, got {}",
                        other.type_name()
                    )));
                }
            };
            total += samples.len();
            if total > self.opts.max_samples {
                return Err(EvalError::TooManySamples);
            }
            self.hold(samples.len())?;
            for (labels, v) in samples {
                let i = *index.entry(labels.clone()).or_insert_with(|| {
                    out.push(RangeSeries { labels, samples: Vec::new() });
                    out.len() - 1
                });
                out[i].samples.push(Sample { t: ts, v });
            }
            match ts.checked_add(step) {
                Some(n) => ts = n,
                None => break,
            }
        }
        Ok(out)
    }

    /// Evaluates `expr` at `t`.
    pub(crate) fn eval(&mut self, expr: &Expr, t: i64) -> Result<Val, EvalError> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Val::Scalar(v) => Ok(Val::Scalar(-v)),
                Val::Vector(vec) => Ok(Val::Vector(
                    vec.into_iter()
                        .map(|s| VectorSample {
                            labels: drop_name(&s.labels, self.opts.delayed_name_removal),
                            t,
                            v: -s.v,
                        })
                        .collect(),
                )),
                other => Err(EvalError::Execution(format!(
                    "unary expression only allowed on expressions of type scalar or vector, got {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.eval_vector_selector(vs, t)?)),
            Expr::MatrixSelector(ms) => Ok(Val::Matrix(self.eval_matrix_selector(&ms.vs, dur_ms(&ms.range), t)?.0)),
            Expr::Subquery(sq) => Ok(Val::Matrix(self.eval_subquery(sq, t)?.0)),
            Expr::Binary(b) => self.eval_binary(b, t),
            Expr::Aggregate(a) => self.eval_aggregate(a, t),
            Expr::Call(c) => self.eval_call(c, t, false),
            Expr::Extension(_) => Err(EvalError::Unsupported("extension expressions".into())),
        }
    }

    fn eval_binary(&mut self, b: &BinaryExpr, t: i64) -> Result<Val, EvalError> {
        let op = b.op.to_string().to_lowercase();
        let lhs = self.eval(&b.lhs, t)?;
        let rhs = self.eval(&b.rhs, t)?;
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        match (lhs, rhs) {
            (Val::Scalar(l), Val::Scalar(r)) => {
                let (v, keep) = binary::scalar_op(&op, l, r)?;
                if binary::is_comparison(&op) {
                    Ok(Val::Scalar(if keep { 1.0 } else { 0.0 }))
                } else {
                    Ok(Val::Scalar(v))
                }
            }
            (Val::Vector(l), Val::Scalar(r)) => Ok(Val::Vector(binary::vector_scalar(
                &op,
                l,
                r,
                false,
                return_bool,
                t,
                self.opts.delayed_name_removal,
            )?)),
            (Val::Scalar(l), Val::Vector(r)) => {
                Ok(Val::Vector(binary::vector_scalar(&op, r, l, true, return_bool, t, self.opts.delayed_name_removal)?))
            }
            (Val::Vector(l), Val::Vector(r)) => {
                let default_mod;
                let m = match &b.modifier {
                    Some(m) => m,
                    None => {
                        default_mod = promql_parser::parser::ast::BinModifier::default();
                        &default_mod
                    }
                };
                Ok(Val::Vector(binary::vector_vector(&op, l, r, m, t, self.opts.delayed_name_removal)?))
            }
            (l, r) => Err(EvalError::Execution(format!(
                "binary operator {op} not allowed between {} and {}",
                l.type_name(),
                r.type_name()
            ))),
        }
    }

    fn eval_aggregate(&mut self, a: &AggregateExpr, t: i64) -> Result<Val, EvalError> {
        let op = a.op.to_string().to_lowercase();
        let param = match &a.param {
            Some(p) => Some(self.eval(p, t)?),
            None => None,
        };
        // These aggregations output only their group keys; when the grouping leaves
        // `__name__` out, a function argument need not drop it (which copies every label).
        let name_ignored = !self.opts.delayed_name_removal
            && matches!(
                op.as_str(),
                "sum" | "avg" | "count" | "group" | "min" | "max" | "stddev" | "stdvar" | "quantile"
            )
            && match &a.modifier {
                None => true,
                Some(LabelModifier::Include(ls)) => !ls.labels.iter().any(|n| n == METRIC_NAME),
                Some(LabelModifier::Exclude(_)) => true,
            };
        let input = match strip_parens(&a.expr) {
            Expr::Call(c) if name_ignored => self.eval_call(c, t, true)?,
            _ => self.eval(&a.expr, t)?,
        };
        let input = match input {
            Val::Vector(v) => v,
            other => {
                return Err(EvalError::Execution(format!(
                    "expected instant vector in aggregation {op}, got {}",
                    other.type_name()
                )));
            }
        };
        let modifier: Option<&LabelModifier> = a.modifier.as_ref();
        let out = aggregate::aggregate(&op, param, input, modifier, t, &mut self.warnings)?;
        Ok(Val::Vector(out))
    }

    /// Evaluates a function call; with `keep_name`, the caller ignores the outputs'
    /// `__name__` (see [`FnCtx::keep_name`]).
    fn eval_call(&mut self, c: &Call, t: i64, keep_name: bool) -> Result<Val, EvalError> {
        // Functions of the query itself, which only the engine knows.
        if c.args.args.is_empty() {
            let secs = |ms: i64| ms as f64 / 1000.0;
            match c.func.name {
                "start" => return Ok(Val::Scalar(secs(self.start))),
                "end" => return Ok(Val::Scalar(secs(self.end))),
                "step" => return Ok(Val::Scalar(secs(self.step))),
                "range" => return Ok(Val::Scalar(secs(self.end.saturating_sub(self.start)))),
                _ => {}
            }
        }
        let mut args: Vec<Arg> = Vec::with_capacity(c.args.args.len());
        let (mut range_start, mut range_end) = (t, t);
        for e in &c.args.args {
            let arg = match strip_parens(e) {
                Expr::MatrixSelector(ms) => {
                    let (m, s, en) = self.eval_matrix_selector(&ms.vs, dur_ms(&ms.range), t)?;
                    (range_start, range_end) = (s, en);
                    Arg::Matrix(m)
                }
                Expr::Subquery(sq) => {
                    let (m, s, en) = self.eval_subquery(sq, t)?;
                    (range_start, range_end) = (s, en);
                    Arg::Matrix(m)
                }
                _ => match self.eval(e, t)? {
                    Val::Scalar(v) => Arg::Scalar(v),
                    Val::Str(s) => Arg::String(s),
                    Val::Vector(v) => Arg::Vector(v),
                    Val::Matrix(m) => Arg::Matrix(m),
                },
            };
            args.push(arg);
        }
        let delayed = self.opts.delayed_name_removal;
        let label_fn = matches!(c.func.name, "label_replace" | "label_join");
        // Under delayed removal: the names the inputs carry, to re-mark them on outputs.
        let mut hidden_in: Vec<bool> = Vec::new();
        let mut names_in: HashMap<Labels, Vec<String>> = HashMap::default();
        if delayed {
            for a in args.iter_mut() {
                match a {
                    Arg::Vector(v) if label_fn => {
                        for s in v.iter_mut() {
                            hidden_in.push(s.labels.get(HIDDEN_NAME).is_some());
                            s.labels = unhide(&s.labels);
                        }
                    }
                    Arg::Vector(v) => {
                        for s in v.iter() {
                            if let Some(n) = s.labels.metric_name() {
                                names_in.entry(s.labels.without_metric_name()).or_default().push(n.to_owned());
                            }
                        }
                    }
                    Arg::Matrix(m) => {
                        for s in m.iter() {
                            if let Some(n) = s.labels.metric_name() {
                                names_in.entry(s.labels.without_metric_name()).or_default().push(n.to_owned());
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        let dst_is_name = c
            .args
            .args
            .get(1)
            .is_some_and(|e| matches!(strip_parens(e), Expr::StringLiteral(s) if s.val == METRIC_NAME));
        let mut ctx = FnCtx {
            t,
            range_start,
            range_end,
            args: &c.args.args,
            warnings: &mut self.warnings,
            infos: &mut self.infos,
            keep_name,
        };
        match functions::call(c.func.name, args, &mut ctx)? {
            Value::Scalar { v, .. } => Ok(Val::Scalar(v)),
            Value::String { s, .. } => Ok(Val::Str(s)),
            Value::Vector(mut v) => {
                if delayed && label_fn {
                    if v.len() == hidden_in.len() {
                        for (s, hidden) in v.iter_mut().zip(&hidden_in) {
                            if *hidden && !dst_is_name {
                                s.labels = drop_name(&s.labels, true);
                            }
                        }
                    }
                } else if delayed && !names_in.is_empty() {
                    // A function that dropped the name: keep it marked for removal instead.
                    for s in v.iter_mut() {
                        if s.labels.metric_name().is_some() || s.labels.get(HIDDEN_NAME).is_some() {
                            continue;
                        }
                        if let Some(names) = names_in.get_mut(&s.labels)
                            && !names.is_empty()
                        {
                            let n = names.remove(0);
                            s.labels = s.labels.with(HIDDEN_NAME, &n);
                        }
                    }
                }
                Ok(Val::Vector(v))
            }
            Value::Matrix(m) => {
                Ok(Val::Matrix(m.into_iter().map(|s| RangeSeries { labels: s.labels, samples: s.samples }).collect()))
            }
        }
    }
}

fn strip_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => strip_parens(&p.expr),
        other => other,
    }
}

/// Where a to-be-dropped metric name is kept under delayed name removal. The NUL makes
/// it impossible as a real label name; [`cleanup_names`] removes it from every result.
pub(crate) const HIDDEN_NAME: &str = "\u{0}__name__";

/// Drops `__name__` from `labels`, or, under delayed name removal, moves it to
/// [`HIDDEN_NAME`] so that later `by (__name__)` and `label_replace` still see it.
pub(crate) fn drop_name(labels: &Labels, delayed: bool) -> Labels {
    match labels.metric_name() {
        Some(n) if delayed => {
            let n = n.to_owned();
            labels.without(&[METRIC_NAME]).with(HIDDEN_NAME, &n)
        }
        Some(_) => labels.without_metric_name(),
        None => labels.clone(),
    }
}

/// The value of label `name` by a scan from the smallest name, for names that sort
/// before nearly every other (`__name__`, [`HIDDEN_NAME`]): it touches one or two labels
/// where a binary search touches several (each a cache miss on a cold label set).
pub(crate) fn early_label<'a>(labels: &'a Labels, name: &str) -> Option<&'a str> {
    labels.iter().take_while(|l| l.name.as_str() <= name).find(|l| l.name == name).map(|l| l.value.as_str())
}

/// Removes names marked for delayed removal.
pub(crate) fn cleanup_names(v: Vec<VectorSample>) -> Vec<VectorSample> {
    v.into_iter()
        .map(|s| {
            if s.labels.get(HIDDEN_NAME).is_some() {
                VectorSample { labels: s.labels.without(&[HIDDEN_NAME]), ..s }
            } else {
                s
            }
        })
        .collect()
}

/// Moves a hidden (to-be-dropped) name back to `__name__`.
fn unhide(labels: &Labels) -> Labels {
    match labels.get(HIDDEN_NAME) {
        Some(n) if labels.metric_name().is_none() => {
            let n = n.to_owned();
            labels.without(&[HIDDEN_NAME]).with(METRIC_NAME, &n)
        }
        _ => labels.clone(),
    }
}

/// Fails with Prometheus' error if two samples of `v` share a label set.
pub(crate) fn check_unique(v: &[VectorSample]) -> Result<(), EvalError> {
    let mut seen: HashMap<&Labels, ()> = HashMap::with_capacity_and_hasher(v.len(), Default::default());
    for s in v {
        if seen.insert(&s.labels, ()).is_some() {
            return Err(EvalError::Execution("vector cannot contain metrics with the same labelset".into()));
        }
    }
    Ok(())
}

/// Whether a cardinality is one-to-one (used by the binary module).
pub(crate) fn is_one_to_one(c: &VectorMatchCardinality) -> bool {
    matches!(c, VectorMatchCardinality::OneToOne)
}
