//! Recording rules: evaluate an expression and store its result under a new metric name.
//!
//! Semantics follow Prometheus 3.x:
//! - the expression is evaluated at `t - query_offset`, and the output samples are written
//!   at that same timestamp (so a later rule of the group, which also evaluates at
//!   `t - query_offset`, reads them);
//! - every output series gets `__name__` = the record name, then the rule labels are set
//!   (no templating; an empty value removes the label);
//! - a scalar result becomes one series with only `__name__`;
//! - two outputs with the same label set fail the evaluation with
//!   `vector contains metrics with the same labelset after applying rule labels`;
//! - more outputs than the group limit (if non-zero) fail it with
//!   `exceeded limit of N with M series`;
//! - a series written by the previous evaluation and absent from this one gets a
//!   staleness marker. A failed evaluation writes nothing and leaves that memory as it was.
//!
//! Invariant: the rule never panics on any expression result or store error; failures are
//! returned as [`RuleError`] and recorded in the rule's [`RuleStatus`].

use std::time::Instant;

use promql_parser::parser::Expr;

use crate::group::{OutputWriter, RuleError, RuleStatus, query_vector};
use crate::labels::{Label, Labels, METRIC_NAME};
use crate::promql::Engine;
use crate::storage::{Appendable, Queryable};

/// What a recording rule is built from.
#[derive(Clone, Debug)]
pub struct RecordingRuleConfig {
    /// The recorded metric name.
    pub name: String,
    /// The expression.
    pub expr: Expr,
    /// Labels set on every output series (rule labels win over the result's labels).
    pub labels: Vec<(String, String)>,
    /// How far before the evaluation time the expression is evaluated (ms, >= 0).
    pub query_offset_ms: i64,
    /// Maximum number of output series; 0 = unlimited.
    pub limit: usize,
}

/// A recording rule with its evaluation status and the series it wrote last time.
#[derive(Debug)]
pub struct RecordingRule {
    cfg: RecordingRuleConfig,
    status: RuleStatus,
    output: OutputWriter,
}

impl RecordingRule {
    /// A rule that has not been evaluated yet.
    pub fn new(cfg: RecordingRuleConfig) -> Self {
        RecordingRule { cfg, status: RuleStatus::default(), output: OutputWriter::default() }
    }

    /// The recorded metric name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The rule's configuration.
    pub fn config(&self) -> &RecordingRuleConfig {
        &self.cfg
    }

    /// Health, last error, last evaluation time and duration.
    pub fn status(&self) -> &RuleStatus {
        &self.status
    }

    /// The label sets written by the last successful evaluation.
    pub fn last_series(&self) -> Vec<Labels> {
        self.output.series()
    }

    /// Evaluates the rule at `t` with `engine` over `store` and writes the result to `store`.
    /// Returns the number of samples written.
    pub fn eval<S: Queryable + Appendable>(&mut self, engine: &Engine, store: &S, t: i64) -> Result<usize, RuleError> {
        let mut query = |expr: &Expr, ts: i64| query_vector(engine, store, expr, ts);
        self.eval_with(&mut query, store, t)
    }

    /// As [`RecordingRule::eval`], with the query done by `query(expr, ts)`: the seam the group
    /// uses, and tests use to feed vectors directly.
    pub fn eval_with<S: Appendable + ?Sized>(
        &mut self,
        query: &mut dyn FnMut(&Expr, i64) -> Result<Vec<(Labels, f64)>, RuleError>,
        store: &S,
        t: i64,
    ) -> Result<usize, RuleError> {
        let started = Instant::now();
        let ts = t.saturating_sub(self.cfg.query_offset_ms);
        let result = query(&self.cfg.expr, ts)
            .and_then(|input| self.apply(input))
            .and_then(|out| self.output.write(store, &out, ts));
        self.status.record(t, started.elapsed(), &result);
        result
    }

    /// The pure part of an evaluation: the output series for an evaluated `input` vector,
    /// sorted by labels, or the error Prometheus raises for it. Writes nothing.
    pub fn apply(&self, input: Vec<(Labels, f64)>) -> Result<Vec<(Labels, f64)>, RuleError> {
        let mut out: Vec<(Labels, f64)> = Vec::with_capacity(input.len());
        for (labels, v) in input {
            let mut ls: Vec<Label> = Vec::with_capacity(labels.len() + self.cfg.labels.len() + 1);
            ls.extend(labels.iter().cloned());
            ls.push(Label { name: METRIC_NAME.to_owned(), value: self.cfg.name.clone() });
            for (n, val) in &self.cfg.labels {
                ls.push(Label { name: n.clone(), value: val.clone() });
            }
            out.push((Labels::new(ls), v));
        }
        // Sorted output makes writes (and which series a full store refuses) deterministic.
        out.sort_by(|a, b| a.0.cmp(&b.0));
        if out.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(RuleError::DuplicateRuleLabelset);
        }
        if self.cfg.limit > 0 && out.len() > self.cfg.limit {
            return Err(RuleError::SeriesLimit { limit: self.cfg.limit, count: out.len() });
        }
        Ok(out)
    }

    /// Writes staleness markers at `t - query_offset` for every series of the last
    /// evaluation, and forgets them (the rule is being removed).
    pub fn mark_stale<S: Appendable + ?Sized>(&mut self, store: &S, t: i64) {
        self.output.mark_all_stale(store, t.saturating_sub(self.cfg.query_offset_ms));
    }

    /// Takes over the status and output memory of `old` (the same rule before a reload), so
    /// series it wrote still get staleness markers when they disappear.
    pub(crate) fn copy_state_from(&mut self, old: &RecordingRule) {
        self.status = old.status.clone();
        self.output = old.output.clone();
    }
}
