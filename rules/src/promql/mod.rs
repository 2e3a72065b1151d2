//! PromQL evaluation over a [`Queryable`] store, with Prometheus 3.x semantics.
//!
//! Parsing is `promql-parser`'s; everything after the AST is here. Instant queries
//! evaluate at one timestamp; range queries at every step from start to end (each step
//! an instant evaluation, merged into a matrix sorted by labels). Native histograms are
//! out of scope.
//!
//! Layout: `eval` walks the AST at one step (selectors, subqueries, calls); `binary`
//! holds the operators and vector matching; `aggregate` the aggregation operators;
//! `functions` the function library.
//!
//! Semantics (Prometheus 3.x): instant selectors look back `lookback_delta_ms` over the
//! left-open window `(t - lookback, t]`; range selectors and subqueries are left-open
//! too; a staleness marker hides older samples and never appears in a result; subquery
//! steps are absolute multiples of their step (default `default_step_ms`).
//!
//! Invariants: no parsed expression makes evaluation panic or run unbounded (time
//! arithmetic saturates; range queries have at most [`MAX_RANGE_POINTS`] steps; samples
//! held per step and subquery points per query are bounded by `max_samples`, beyond
//! which the query fails with [`EvalError::TooManySamples`]); a result never holds two
//! series with one label set.

use std::collections::BTreeMap;

use promql_parser::parser::Expr;

use crate::labels::Labels;
use crate::storage::{Queryable, Sample, Series};

mod aggregate;
mod binary;
mod eval;
pub(crate) mod functions;

use eval::{Evaluator, Val};

/// Most steps a range query may have (Prometheus' limit of 11,000 points per series).
pub const MAX_RANGE_POINTS: i64 = 11_000;

/// Evaluation settings.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5 m).
    pub lookback_delta_ms: i64,
    /// Upper bound on samples held in memory by one query; exceeding it fails the query.
    pub max_samples: usize,
    /// Step of a subquery written without one (`expr[5m:]`): the default evaluation
    /// interval (Prometheus: 1 m).
    pub default_step_ms: i64,
    /// Prometheus' `promql-delayed-name-removal` feature (off by default in Prometheus,
    /// on in its PromQL test engine): operators and functions that drop `__name__` only
    /// mark it, and it is removed from the final result, so `label_replace` and
    /// `by (__name__)` still see it.
    pub delayed_name_removal: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            default_step_ms: 60 * 1000,
            delayed_name_removal: false,
        }
    }
}

/// One element of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct VectorSample {
    /// The series' labels (after any label dropping by functions/operators).
    pub labels: Labels,
    /// Evaluation timestamp in ms.
    pub t: i64,
    /// Value.
    pub v: f64,
}

/// A query result.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A scalar at time `t`.
    Scalar {
        /// Evaluation timestamp in ms.
        t: i64,
        /// Value.
        v: f64,
    },
    /// A string at time `t`.
    String {
        /// Evaluation timestamp in ms.
        t: i64,
        /// Value.
        s: String,
    },
    /// An instant vector.
    Vector(Vec<VectorSample>),
    /// A range vector, or the result of a range query (one series per output series,
    /// one sample per step at which it had a value).
    Matrix(Vec<Series>),
}

/// The outcome of a successful query: its value plus Prometheus-style annotations.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    /// The value.
    pub value: Value,
    /// Warnings (Prometheus `expect warn`), e.g. a bucket set that is not monotonic.
    pub warnings: Vec<String>,
    /// Informational annotations (Prometheus `expect info`), e.g. `rate` on a non-counter name.
    pub infos: Vec<String>,
}

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The text did not parse.
    #[error("parse error: {0}")]
    Parse(String),
    /// A runtime error Prometheus also raises (e.g. many-to-many matching, duplicate
    /// series for the same label set, `vector cannot contain metrics with the same labelset`).
    #[error("{0}")]
    Execution(String),
    /// A feature this engine does not implement (e.g. native histograms).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The query would hold more than `max_samples` samples.
    #[error("query processing would load too many samples into memory")]
    TooManySamples,
}

/// The evaluator. Stateless between queries; share it freely.
#[derive(Clone, Debug, Default)]
pub struct Engine {
    opts: EngineOptions,
}

/// The matcher groups of a selector: a series is selected if it matches every matcher
/// of any one group (`{a="1" or b="2"}` has two groups). The metric name, if written
/// outside the braces, is part of every group.
pub fn selector_matcher_groups(vs: &promql_parser::parser::VectorSelector) -> Vec<Vec<promql_parser::label::Matcher>> {
    eval::matcher_groups(vs)
}

/// Longest PromQL text [`parse`] accepts, in bytes. Real rule expressions are far
/// shorter; the bound keeps parse time and tree depth in check.
pub const MAX_EXPR_BYTES: usize = 16 * 1024;

/// Deepest expression [`parse`] accepts: bracket nesting in the text and node depth in
/// the tree (a chain `a + b + c ...` is as deep as it is long). Evaluation recurses once
/// per level, and so does dropping a tree, so without this bound a hostile expression
/// overflows a thread's stack, which aborts the process rather than panicking.
pub const MAX_EXPR_DEPTH: usize = 256;

/// Parses PromQL text, refusing text longer than [`MAX_EXPR_BYTES`] or nested deeper than
/// [`MAX_EXPR_DEPTH`]. Every caller in the crate parses through here.
pub fn parse(text: &str) -> Result<Expr, EvalError> {
    if text.len() > MAX_EXPR_BYTES {
        return Err(EvalError::Parse(format!(
            "expression is {} bytes long, more than the {MAX_EXPR_BYTES} accepted",
            text.len()
        )));
    }
    let nesting = bracket_nesting(text);
    if nesting > MAX_EXPR_DEPTH {
        return Err(EvalError::Parse(format!(
            "expression nests brackets {nesting} deep, more than the {MAX_EXPR_DEPTH} accepted"
        )));
    }
    let expr = promql_parser::parser::parse(text).map_err(EvalError::Parse)?;
    let depth = tree_depth(&expr);
    if depth > MAX_EXPR_DEPTH {
        return Err(EvalError::Parse(format!(
            "expression is {depth} operations deep, more than the {MAX_EXPR_DEPTH} accepted"
        )));
    }
    Ok(expr)
}

/// Deepest nesting of `(`, `[` and `{` outside string literals and comments.
fn bracket_nesting(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                max = max.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '"' | '\'' | '`' => {
                // Skip the string; backslash escapes apply except in raw (backtick) strings.
                while let Some(d) = chars.next() {
                    if d == '\\' && c != '`' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
            }
            '#' => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    max
}

/// The depth of the tree, measured without recursion.
fn tree_depth(expr: &Expr) -> usize {
    let mut max = 0;
    let mut stack: Vec<(&Expr, usize)> = vec![(expr, 1)];
    while let Some((e, d)) = stack.pop() {
        max = max.max(d);
        match e {
            Expr::Aggregate(a) => {
                stack.push((&a.expr, d + 1));
                if let Some(p) = &a.param {
                    stack.push((p, d + 1));
                }
            }
            Expr::Unary(u) => stack.push((&u.expr, d + 1)),
            Expr::Binary(b) => {
                stack.push((&b.lhs, d + 1));
                stack.push((&b.rhs, d + 1));
            }
            Expr::Paren(p) => stack.push((&p.expr, d + 1)),
            Expr::Subquery(q) => stack.push((&q.expr, d + 1)),
            Expr::Call(c) => stack.extend(c.args.args.iter().map(|a| (&**a, d + 1))),
            Expr::NumberLiteral(_)
            | Expr::StringLiteral(_)
            | Expr::VectorSelector(_)
            | Expr::MatrixSelector(_)
            | Expr::Extension(_) => {}
        }
    }
    max
}

impl Engine {
    /// An engine with these options.
    pub fn new(opts: EngineOptions) -> Self {
        Engine { opts }
    }

    /// The options in force.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `expr` at `t` (ms).
    pub fn instant(&self, store: &dyn Queryable, expr: &Expr, t: i64) -> Result<QueryResult, EvalError> {
        let mut ev = Evaluator::new(store, &self.opts, t, t, 0);
        let value = match ev.eval(expr, t)? {
            Val::Scalar(v) => Value::Scalar { t, v },
            Val::Str(s) => Value::String { t, s },
            Val::Vector(v) => {
                let v: Vec<VectorSample> =
                    eval::cleanup_names(v).into_iter().map(|s| VectorSample { t, ..s }).collect();
                eval::check_unique(&v)?;
                Value::Vector(v)
            }
            Val::Matrix(m) => {
                Value::Matrix(m.into_iter().map(|s| Series { labels: s.labels, samples: s.samples }).collect())
            }
        };
        Ok(QueryResult { value, warnings: dedup(ev.warnings), infos: dedup(ev.infos) })
    }

    /// Evaluates `expr` at every `step` from `start` to `end` inclusive (ms); the value is
    /// a [`Value::Matrix`] (or a scalar/vector expression's per-step values as a matrix),
    /// its series sorted by labels.
    pub fn range(
        &self,
        store: &dyn Queryable,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryResult, EvalError> {
        if step <= 0 {
            return Err(EvalError::Execution("zero or negative query resolution step widths are not accepted".into()));
        }
        if end < start {
            return Err(EvalError::Execution("end timestamp must not be before start time".into()));
        }
        if end.checked_sub(start).is_none_or(|span| span / step >= MAX_RANGE_POINTS) {
            return Err(EvalError::Execution(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                    .into(),
            ));
        }
        let mut ev = Evaluator::new(store, &self.opts, start, end, step);
        let mut out: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        let mut total = 0usize;
        let mut t = start;
        while t <= end {
            ev.reset_loaded();
            match ev.eval(expr, t)? {
                Val::Scalar(v) => out.entry(Labels::empty()).or_default().push(Sample { t, v }),
                Val::Vector(v) => {
                    let v = eval::cleanup_names(v);
                    eval::check_unique(&v)?;
                    total += v.len();
                    for s in v {
                        out.entry(s.labels).or_default().push(Sample { t, v: s.v });
                    }
                }
                Val::Str(_) | Val::Matrix(_) => {
                    return Err(EvalError::Execution(
                        "invalid expression type for range query, must be scalar or instant vector".into(),
                    ));
                }
            }
            total += 1;
            if total > self.opts.max_samples {
                return Err(EvalError::TooManySamples);
            }
            match t.checked_add(step) {
                Some(next) => t = next,
                None => break,
            }
        }
        if calls_any(expr, &["sort", "sort_desc", "sort_by_label", "sort_by_label_desc"]) {
            ev.warnings.push(
                "PromQL warning: sort is ineffective for range queries since results are always ordered by labels"
                    .into(),
            );
        }
        let series = out.into_iter().map(|(labels, samples)| Series { labels, samples }).collect();
        Ok(QueryResult { value: Value::Matrix(series), warnings: dedup(ev.warnings), infos: dedup(ev.infos) })
    }
}

/// True if `expr` calls any of the functions `names`.
fn calls_any(expr: &Expr, names: &[&str]) -> bool {
    match expr {
        Expr::Call(c) => names.contains(&c.func.name) || c.args.args.iter().any(|a| calls_any(a, names)),
        Expr::Aggregate(a) => calls_any(&a.expr, names) || a.param.as_ref().is_some_and(|p| calls_any(p, names)),
        Expr::Unary(u) => calls_any(&u.expr, names),
        Expr::Binary(b) => calls_any(&b.lhs, names) || calls_any(&b.rhs, names),
        Expr::Paren(p) => calls_any(&p.expr, names),
        Expr::Subquery(s) => calls_any(&s.expr, names),
        _ => false,
    }
}

/// Removes repeated annotations, keeping first occurrences in order.
fn dedup(v: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(v.len());
    for s in v {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests;
