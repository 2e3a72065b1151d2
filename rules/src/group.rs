//! Rule groups: evaluating a group's rules in order, and scheduling the evaluations.
//!
//! A [`Group`] holds the rules of one `groups[]` entry of a rule file. [`Group::eval`]
//! evaluates them in file order at one timestamp `t`; every rule queries at
//! `t - query_offset` and writes its output at that timestamp, so a recording rule's output
//! is visible to the rules after it in the same evaluation (Prometheus 3.x semantics).
//! Group labels are added to every rule's labels; a rule's own label of the same name wins.
//!
//! This crate has no async runtime: the agent runs the loop. [`Schedule`] gives it the
//! timestamps: evaluation times are aligned to `interval` plus a per-group offset derived
//! from a hash of the file and group name (so groups with the same interval are spread
//! over it, as Prometheus does), and late polls count missed iterations instead of
//! evaluating every slot they skipped.
//!
//! Alert state survives restarts through an [`AlertStateStore`]: when the group has one,
//! its alerting rules load their saved state before their first evaluation and save it
//! after every evaluation (see [`crate::alerting`] for how `for` is restored).
//!
//! Also here, shared by [`crate::alerting`] and [`crate::recording`]: rule health and
//! status, the rule error type, and the output writer that remembers which series a rule
//! wrote so it can write staleness markers when they disappear.
//!
//! Invariants: evaluation never panics (hostile timestamps saturate); memory is bounded by
//! the rules' output sizes (bounded in turn by the group `limit` when set).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use promql_parser::parser::Expr;

use crate::alerting::{Alert, AlertStateStore, AlertingRule, AlertingRuleConfig, RestoreOptions, SavedAlert};
use crate::labels::Labels;
use crate::promql::{Engine, EvalError, Value};
use crate::recording::{RecordingRule, RecordingRuleConfig};
use crate::rulefile::{RuleGroup, RuleKind};
use crate::storage::{AppendError, Appendable, Queryable, SeriesHandle, stale_nan};

/// Health of a rule after its last evaluation (Prometheus' `unknown`/`ok`/`err`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RuleHealth {
    /// Not evaluated yet.
    #[default]
    Unknown,
    /// The last evaluation succeeded.
    Ok,
    /// The last evaluation failed.
    Err,
}

impl RuleHealth {
    /// `unknown`, `ok` or `err`, as the Prometheus API prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleHealth::Unknown => "unknown",
            RuleHealth::Ok => "ok",
            RuleHealth::Err => "err",
        }
    }
}

/// What a rule's last evaluation did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleStatus {
    /// Health after the last evaluation.
    pub health: RuleHealth,
    /// The last evaluation's error, if it failed.
    pub last_error: Option<String>,
    /// Timestamp (ms) of the last evaluation (the group's `t`, before the query offset).
    pub last_evaluation: Option<i64>,
    /// Wall-clock time the last evaluation took.
    pub evaluation_duration: Duration,
    /// Samples written by the last evaluation (0 if it failed).
    pub samples: usize,
}

impl RuleStatus {
    pub(crate) fn record(&mut self, t: i64, took: Duration, result: &Result<usize, RuleError>) {
        self.last_evaluation = Some(t);
        self.evaluation_duration = took;
        match result {
            Ok(n) => {
                self.health = RuleHealth::Ok;
                self.last_error = None;
                self.samples = *n;
            }
            Err(e) => {
                self.health = RuleHealth::Err;
                self.last_error = Some(e.to_string());
                self.samples = 0;
            }
        }
    }
}

/// Why a rule evaluation failed. Messages match Prometheus' where it has one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    /// The query failed.
    #[error("{0}")]
    Query(#[from] EvalError),
    /// The expression gave a string or range vector.
    #[error("rule result is not a vector or scalar: got {0}")]
    NotVector(&'static str),
    /// Two alerts of one alerting rule got the same label set.
    #[error("vector contains metrics with the same labelset after applying alert labels")]
    DuplicateAlertLabelset,
    /// Two output series of one recording rule got the same label set.
    #[error("vector contains metrics with the same labelset after applying rule labels")]
    DuplicateRuleLabelset,
    /// An alerting rule has more pending/firing alerts than the group limit.
    #[error("exceeded limit of {limit} with {count} alerts")]
    AlertLimit {
        /// The group limit.
        limit: usize,
        /// Active alerts counted.
        count: usize,
    },
    /// A recording rule produced more series than the group limit.
    #[error("exceeded limit of {limit} with {count} series")]
    SeriesLimit {
        /// The group limit.
        limit: usize,
        /// Series produced.
        count: usize,
    },
    /// Some output samples were refused by the store (the others were written).
    #[error("{failed} of {total} output samples not stored: {first}")]
    Append {
        /// Samples refused.
        failed: usize,
        /// Samples the rule produced.
        total: usize,
        /// The first refusal.
        first: AppendError,
    },
}

/// Evaluates `expr` at `t` and turns the result into the vector rules work on: a vector as
/// it is, a scalar as one sample with no labels; anything else is an error.
pub fn query_vector<S: Queryable>(
    engine: &Engine,
    store: &S,
    expr: &Expr,
    t: i64,
) -> Result<Vec<(Labels, f64)>, RuleError> {
    let res = engine.instant(store, expr, t)?;
    match res.value {
        Value::Vector(v) => Ok(v.into_iter().map(|s| (s.labels, s.v)).collect()),
        Value::Scalar { v, .. } => Ok(vec![(Labels::empty(), v)]),
        Value::String { .. } => Err(RuleError::NotVector("string")),
        Value::Matrix(_) => Err(RuleError::NotVector("range vector")),
    }
}

/// Writes a rule's output and remembers which series it wrote, so a series absent from the
/// next output gets a staleness marker (once). It keeps the store's [`SeriesHandle`] of
/// each series it writes, so a rule writing the same series every round (an alert's
/// `ALERTS` sample) skips the store's lookup by labels, and reuses the remembered label
/// set instead of cloning it each round.
#[derive(Clone, Debug, Default)]
pub(crate) struct OutputWriter {
    prev: SeriesMap,
}

/// Label sets with the store's handle on their series, with a fast hasher seeded at
/// random per map.
type SeriesMap = HashMap<Labels, SeriesHandle, foldhash::fast::RandomState>;

impl OutputWriter {
    /// Appends `out` at `t`, then staleness markers at `t` for last time's series missing
    /// from `out`. Series the store refused are not remembered. Returns the samples written.
    pub(crate) fn write<S: Appendable + ?Sized>(
        &mut self,
        store: &S,
        out: &[(Labels, f64)],
        t: i64,
    ) -> Result<usize, RuleError> {
        let mut written = SeriesMap::with_capacity_and_hasher(out.len(), Default::default());
        let mut failed = 0;
        let mut first = None;
        for (labels, v) in out {
            let (key, mut handle) =
                self.prev.remove_entry(labels).unwrap_or_else(|| (labels.clone(), SeriesHandle::default()));
            match store.append_with_handle(&key, t, *v, &mut handle) {
                Ok(()) => {
                    written.insert(key, handle);
                }
                Err(e) => {
                    failed += 1;
                    first.get_or_insert(e);
                }
            }
        }
        for (gone, mut handle) in self.prev.drain() {
            // Out-of-order or duplicate refusals are expected when another rule now writes
            // the series; other refusals lose only the marker, and lookback ends the series.
            let _ = store.append_with_handle(&gone, t, stale_nan(), &mut handle);
        }
        self.prev = written;
        match first {
            None => Ok(out.len()),
            Some(first) => Err(RuleError::Append { failed, total: out.len(), first }),
        }
    }

    /// Writes staleness markers at `t` for every remembered series and forgets them.
    pub(crate) fn mark_all_stale<S: Appendable + ?Sized>(&mut self, store: &S, t: i64) {
        for (l, mut handle) in self.prev.drain() {
            let _ = store.append_with_handle(&l, t, stale_nan(), &mut handle);
        }
    }

    /// The remembered series, sorted.
    pub(crate) fn series(&self) -> Vec<Labels> {
        let mut v: Vec<Labels> = self.prev.keys().cloned().collect();
        v.sort();
        v
    }
}

/// Settings a group takes from the global configuration.
#[derive(Clone, Debug)]
pub struct GroupOptions {
    /// Interval used when the group sets none (Prometheus `evaluation_interval`, default 1 m).
    pub default_interval_ms: i64,
    /// Query offset used when the group sets none (Prometheus `rule_query_offset`, default 0).
    pub default_query_offset_ms: i64,
    /// External labels (`$externalLabels` in templates).
    pub external_labels: Labels,
    /// External URL (`$externalURL` in templates).
    pub external_url: String,
    /// Where alert state is saved and restored from, if anywhere.
    pub state_store: Option<Arc<dyn AlertStateStore>>,
    /// How restoration treats downtime.
    pub restore: RestoreOptions,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            default_interval_ms: 60_000,
            default_query_offset_ms: 0,
            external_labels: Labels::empty(),
            external_url: String::new(),
            state_store: None,
            restore: RestoreOptions::default(),
        }
    }
}

/// Why a group could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The interval is not positive.
    #[error("group {group:?} in {file}: evaluation interval must be positive, got {interval_ms}ms")]
    Interval {
        /// The file.
        file: String,
        /// The group.
        group: String,
        /// The interval given.
        interval_ms: i64,
    },
    /// The query offset is negative.
    #[error("group {group:?} in {file}: query offset must not be negative, got {offset_ms}ms")]
    QueryOffset {
        /// The file.
        file: String,
        /// The group.
        group: String,
        /// The offset given.
        offset_ms: i64,
    },
}

/// One rule of a group.
#[derive(Debug)]
pub enum GroupRule {
    /// An alerting rule.
    Alerting(AlertingRule),
    /// A recording rule.
    Recording(RecordingRule),
}

impl GroupRule {
    /// The alert name or recorded metric name.
    pub fn name(&self) -> &str {
        match self {
            GroupRule::Alerting(r) => r.name(),
            GroupRule::Recording(r) => r.name(),
        }
    }

    /// The rule's status.
    pub fn status(&self) -> &RuleStatus {
        match self {
            GroupRule::Alerting(r) => r.status(),
            GroupRule::Recording(r) => r.status(),
        }
    }

    /// The alerting rule, if it is one.
    pub fn as_alerting(&self) -> Option<&AlertingRule> {
        match self {
            GroupRule::Alerting(r) => Some(r),
            GroupRule::Recording(_) => None,
        }
    }

    /// The alerting rule, if it is one, mutably.
    pub fn as_alerting_mut(&mut self) -> Option<&mut AlertingRule> {
        match self {
            GroupRule::Alerting(r) => Some(r),
            GroupRule::Recording(_) => None,
        }
    }
}

/// What one rule did in a group evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleEvalReport {
    /// The rule's name.
    pub name: String,
    /// True for alerting rules.
    pub alerting: bool,
    /// Samples written (0 on error).
    pub samples: usize,
    /// The error, if the evaluation failed.
    pub error: Option<String>,
    /// Wall-clock time the evaluation took.
    pub duration: Duration,
}

/// What a group evaluation did.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupEvalReport {
    /// The evaluation timestamp (ms).
    pub t: i64,
    /// Wall-clock time the whole evaluation took.
    pub duration: Duration,
    /// One entry per rule, in file order.
    pub rules: Vec<RuleEvalReport>,
    /// Loading saved alert state failed (restoration skipped), if it did.
    pub restore_error: Option<String>,
    /// Saving alert state failed, if it did (first failure).
    pub save_error: Option<String>,
}

impl GroupEvalReport {
    /// Samples written by all rules.
    pub fn samples(&self) -> usize {
        self.rules.iter().map(|r| r.samples).sum()
    }

    /// Rules whose evaluation failed.
    pub fn failed(&self) -> usize {
        self.rules.iter().filter(|r| r.error.is_some()).count()
    }
}

/// A rule group ready to evaluate.
#[derive(Debug)]
pub struct Group {
    name: String,
    file: String,
    interval_ms: i64,
    query_offset_ms: i64,
    limit: usize,
    rules: Vec<GroupRule>,
    state_store: Option<Arc<dyn AlertStateStore>>,
    restore: RestoreOptions,
    restore_pending: bool,
    /// Series of rules dropped by a reload, marked stale at the next evaluation.
    stale_series: Vec<Labels>,
    last_evaluation: Option<i64>,
    evaluation_duration: Duration,
}

impl Group {
    /// Builds the group `g` of rule file `file` (its path as given to the agent; part of
    /// the group's identity and schedule offset).
    pub fn from_rule_group(file: &str, g: &RuleGroup, opts: &GroupOptions) -> Result<Group, GroupError> {
        let interval_ms = g.interval_ms.unwrap_or(opts.default_interval_ms);
        if interval_ms <= 0 {
            return Err(GroupError::Interval { file: file.to_owned(), group: g.name.clone(), interval_ms });
        }
        let query_offset_ms = g.query_offset_ms.unwrap_or(opts.default_query_offset_ms);
        if query_offset_ms < 0 {
            return Err(GroupError::QueryOffset {
                file: file.to_owned(),
                group: g.name.clone(),
                offset_ms: query_offset_ms,
            });
        }
        let rules = g
            .rules
            .iter()
            .map(|r| {
                // Group labels first, rule labels after: later pairs win when labels are built.
                let mut labels = g.labels.clone();
                labels.retain(|(n, _)| !r.labels.iter().any(|(rn, _)| rn == n));
                labels.extend(r.labels.iter().cloned());
                match r.kind {
                    RuleKind::Alert => GroupRule::Alerting(AlertingRule::new(AlertingRuleConfig {
                        name: r.name.clone(),
                        expr: r.expr.clone(),
                        for_ms: r.for_ms.max(0),
                        keep_firing_for_ms: r.keep_firing_for_ms.max(0),
                        labels,
                        annotations: r.annotations.clone(),
                        external_labels: opts.external_labels.clone(),
                        external_url: opts.external_url.clone(),
                        query_offset_ms,
                        limit: g.limit,
                    })),
                    RuleKind::Record => GroupRule::Recording(RecordingRule::new(RecordingRuleConfig {
                        name: r.name.clone(),
                        expr: r.expr.clone(),
                        labels,
                        query_offset_ms,
                        limit: g.limit,
                    })),
                }
            })
            .collect();
        Ok(Group {
            name: g.name.clone(),
            file: file.to_owned(),
            interval_ms,
            query_offset_ms,
            limit: g.limit,
            rules,
            restore_pending: opts.state_store.is_some(),
            stale_series: Vec::new(),
            state_store: opts.state_store.clone(),
            restore: opts.restore.clone(),
            last_evaluation: None,
            evaluation_duration: Duration::ZERO,
        })
    }

    /// A group from rules built by hand (tests, or an agent building rules itself).
    /// Interval values below 1 ms are raised to 1 ms.
    pub fn new(name: &str, file: &str, interval_ms: i64, rules: Vec<GroupRule>, opts: &GroupOptions) -> Group {
        Group {
            name: name.to_owned(),
            file: file.to_owned(),
            interval_ms: interval_ms.max(1),
            query_offset_ms: opts.default_query_offset_ms.max(0),
            limit: 0,
            rules,
            restore_pending: opts.state_store.is_some(),
            stale_series: Vec::new(),
            state_store: opts.state_store.clone(),
            restore: opts.restore.clone(),
            last_evaluation: None,
            evaluation_duration: Duration::ZERO,
        }
    }

    /// The group name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rule file it came from.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The key its alert state is saved under: `file;name`, as Prometheus keys groups.
    pub fn key(&self) -> String {
        format!("{};{}", self.file, self.name)
    }

    /// Evaluation interval (ms).
    pub fn interval_ms(&self) -> i64 {
        self.interval_ms
    }

    /// Query offset (ms).
    pub fn query_offset_ms(&self) -> i64 {
        self.query_offset_ms
    }

    /// The group's limit on alerts/series per rule (0 = none).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[GroupRule] {
        &self.rules
    }

    /// Mutable access to the rules (e.g. for the notifier to mark alerts sent).
    pub fn rules_mut(&mut self) -> &mut [GroupRule] {
        &mut self.rules
    }

    /// Timestamp of the last evaluation.
    pub fn last_evaluation(&self) -> Option<i64> {
        self.last_evaluation
    }

    /// Wall-clock time the last evaluation took.
    pub fn evaluation_duration(&self) -> Duration {
        self.evaluation_duration
    }

    /// Every alert of every alerting rule, in rule order, resolved ones within their
    /// retention included (see [`AlertingRule::active_alerts`]).
    pub fn active_alerts(&self) -> Vec<Alert> {
        let mut out = Vec::new();
        for r in &self.rules {
            if let GroupRule::Alerting(a) = r {
                out.extend(a.active_alerts());
            }
        }
        out
    }

    /// Records that the notifier sent the alert with `labels` at `t` (see
    /// [`AlertingRule::mark_sent`]). Returns false if no rule of the group holds it.
    pub fn mark_sent(&mut self, labels: &Labels, t: i64) -> bool {
        let mut found = false;
        for r in self.rules.iter_mut().filter_map(GroupRule::as_alerting_mut) {
            found |= r.mark_sent(labels, t);
        }
        found
    }

    /// The schedule of this group's evaluations, starting after `now`.
    pub fn schedule(&self, now: i64) -> Schedule {
        Schedule::new(self.interval_ms, group_offset(&self.file, &self.name, self.interval_ms), now)
    }

    /// Evaluates every rule at `t` with `engine` over `store`, writing outputs to `store`.
    pub fn eval<S: Queryable + Appendable>(&mut self, engine: &Engine, store: &S, t: i64) -> GroupEvalReport {
        let mut query = |expr: &Expr, ts: i64| query_vector(engine, store, expr, ts);
        self.eval_with(&mut query, store, t)
    }

    /// As [`Group::eval`], with queries done by `query(expr, ts)`.
    pub fn eval_with<S: Appendable + ?Sized>(
        &mut self,
        query: &mut dyn FnMut(&Expr, i64) -> Result<Vec<(Labels, f64)>, RuleError>,
        store: &S,
        t: i64,
    ) -> GroupEvalReport {
        let started = Instant::now();
        let mut report = GroupEvalReport {
            t,
            duration: Duration::ZERO,
            rules: Vec::with_capacity(self.rules.len()),
            restore_error: None,
            save_error: None,
        };
        if self.restore_pending {
            self.restore_pending = false;
            report.restore_error = self.load_state();
        }
        for rule in &mut self.rules {
            let rule_started = Instant::now();
            let (alerting, res) = match rule {
                GroupRule::Alerting(r) => (true, r.eval_with(query, store, t)),
                GroupRule::Recording(r) => (false, r.eval_with(query, store, t)),
            };
            report.rules.push(RuleEvalReport {
                name: rule.name().to_owned(),
                alerting,
                samples: *res.as_ref().unwrap_or(&0),
                error: res.err().map(|e| e.to_string()),
                duration: rule_started.elapsed(),
            });
        }
        if !self.stale_series.is_empty() {
            let ts = t.saturating_sub(self.query_offset_ms);
            for l in std::mem::take(&mut self.stale_series) {
                // Refused if a rule wrote the series at this timestamp: then it is not stale.
                let _ = store.append(&l, ts, stale_nan());
            }
        }
        report.save_error = self.save_state(t);
        self.last_evaluation = Some(t);
        self.evaluation_duration = started.elapsed();
        report.duration = self.evaluation_duration;
        report
    }

    /// Loads saved alert state into the alerting rules; returns the first error.
    fn load_state(&mut self) -> Option<String> {
        let store = self.state_store.clone()?;
        let key = self.key();
        let mut loaded: BTreeMap<String, Result<Vec<SavedAlert>, String>> = BTreeMap::new();
        let mut first_err = None;
        for rule in &mut self.rules {
            if let GroupRule::Alerting(r) = rule {
                let saved = loaded.entry(r.name().to_owned()).or_insert_with(|| store.load(&key, r.name()));
                match saved {
                    Ok(s) => r.restore_on_next_eval(s.clone(), self.restore.clone()),
                    Err(e) => {
                        first_err.get_or_insert_with(|| format!("loading alert state of {:?}: {e}", r.name()));
                    }
                }
            }
        }
        first_err
    }

    /// Saves the alerting rules' state (rules sharing a name are saved together, since
    /// their alerts differ by labels); returns the first error.
    fn save_state(&self, t: i64) -> Option<String> {
        let store = self.state_store.as_ref()?;
        let key = self.key();
        let mut by_name: BTreeMap<&str, Vec<SavedAlert>> = BTreeMap::new();
        for rule in &self.rules {
            if let GroupRule::Alerting(r) = rule {
                by_name.entry(r.name()).or_default().extend(r.saved_alerts(t));
            }
        }
        let mut first_err = None;
        for (name, alerts) in by_name {
            if let Err(e) = store.save(&key, name, &alerts) {
                first_err.get_or_insert_with(|| format!("saving alert state of {name:?}: {e}"));
            }
        }
        first_err
    }

    /// Writes staleness markers for every series the group's rules wrote last (the group is
    /// being removed or the agent is stopping), at `t` minus the query offset.
    pub fn mark_stale<S: Appendable + ?Sized>(&mut self, store: &S, t: i64) {
        // Series of rules an earlier reload dropped, still waiting for their marker.
        let ts = t.saturating_sub(self.query_offset_ms);
        for l in std::mem::take(&mut self.stale_series) {
            let _ = store.append(&l, ts, stale_nan());
        }
        for rule in &mut self.rules {
            match rule {
                GroupRule::Alerting(r) => r.mark_stale(store, t),
                GroupRule::Recording(r) => r.mark_stale(store, t),
            }
        }
    }

    /// Takes over the state of `old`, the same group before a reload: rules are matched by
    /// kind, name and labels, in order (the n-th such rule gets the n-th old one), and keep
    /// their alerts, status and output memory. The series last written by old rules without
    /// a match get staleness markers at this group's next evaluation. The restore step is
    /// skipped if the old group had already evaluated (its state is live), and still done
    /// if it had not (a reload before the first evaluation must not lose the saved state).
    /// (A group removed by a reload: [`Group::mark_stale`].)
    pub fn copy_state_from(&mut self, old: &Group) {
        self.last_evaluation = old.last_evaluation;
        self.evaluation_duration = old.evaluation_duration;
        self.restore_pending = old.restore_pending && self.state_store.is_some();
        self.stale_series = old.stale_series.clone();
        let mut used = vec![false; old.rules.len()];
        for rule in &mut self.rules {
            let found = old.rules.iter().enumerate().find(|(i, o)| !used[*i] && same_rule(rule, o)).map(|(i, _)| i);
            if let Some(i) = found {
                used[i] = true;
                match (rule, &old.rules[i]) {
                    (GroupRule::Alerting(n), GroupRule::Alerting(o)) => n.copy_state_from(o),
                    (GroupRule::Recording(n), GroupRule::Recording(o)) => n.copy_state_from(o),
                    _ => {}
                }
            }
        }
        for (i, o) in old.rules.iter().enumerate() {
            if !used[i] {
                match o {
                    GroupRule::Alerting(r) => self.stale_series.extend(r.last_series()),
                    GroupRule::Recording(r) => self.stale_series.extend(r.last_series()),
                }
            }
        }
    }
}

fn same_rule(a: &GroupRule, b: &GroupRule) -> bool {
    match (a, b) {
        (GroupRule::Alerting(x), GroupRule::Alerting(y)) => {
            x.name() == y.name() && x.config().labels == y.config().labels
        }
        (GroupRule::Recording(x), GroupRule::Recording(y)) => {
            x.name() == y.name() && x.config().labels == y.config().labels
        }
        _ => false,
    }
}

/// The per-group offset within `interval_ms`: FNV-1a over the file and the group name,
/// modulo the interval. Deterministic across runs and machines.
pub fn group_offset(file: &str, name: &str, interval_ms: i64) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in file.bytes().chain(std::iter::once(0xff)).chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let interval = interval_ms.max(1) as u64;
    (h % interval) as i64
}

/// One evaluation the schedule says is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tick {
    /// The timestamp to evaluate at (ms): the latest slot not after the poll time.
    pub t: i64,
    /// Slots skipped since the previous tick (the loop was late).
    pub missed: u64,
}

/// Aligned evaluation timestamps for a group: `k * interval + offset` for integer `k`.
///
/// The first evaluation is the first slot after the schedule was created; each
/// [`Schedule::poll`] at or after the next slot returns the latest slot not after `now`,
/// counting the slots in between as missed (Prometheus' `missed iterations`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    interval_ms: i64,
    offset_ms: i64,
    next: i64,
    iterations: u64,
    missed_iterations: u64,
}

impl Schedule {
    /// A schedule of period `interval_ms` (raised to at least 1 ms) shifted by `offset_ms`
    /// (taken modulo the interval), whose first slot is the first one after `now`.
    pub fn new(interval_ms: i64, offset_ms: i64, now: i64) -> Schedule {
        let interval_ms = interval_ms.max(1);
        let offset_ms = offset_ms.rem_euclid(interval_ms);
        let mut s = Schedule { interval_ms, offset_ms, next: 0, iterations: 0, missed_iterations: 0 };
        s.next = s.slot_at_or_before(now).saturating_add(interval_ms);
        s
    }

    /// The latest slot at or before `t`.
    pub fn slot_at_or_before(&self, t: i64) -> i64 {
        let (i, o) = (i128::from(self.interval_ms), i128::from(self.offset_ms));
        let adj = i128::from(t) - o;
        let slot = adj - adj.rem_euclid(i) + o;
        slot.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// The period (ms).
    pub fn interval_ms(&self) -> i64 {
        self.interval_ms
    }

    /// The offset within the period (ms).
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms
    }

    /// When the next evaluation is due (ms): sleep until then, then [`Schedule::poll`].
    pub fn next_eval(&self) -> i64 {
        self.next
    }

    /// If an evaluation is due at `now`, the timestamp to evaluate at and the slots missed
    /// since the previous one; `None` if `now` is before [`Schedule::next_eval`].
    pub fn poll(&mut self, now: i64) -> Option<Tick> {
        if now < self.next {
            return None;
        }
        let behind = (i128::from(now) - i128::from(self.next)) / i128::from(self.interval_ms);
        let missed = u64::try_from(behind).unwrap_or(u64::MAX);
        let t = i128::from(self.next) + behind * i128::from(self.interval_ms);
        let t = t.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        self.next = t.saturating_add(self.interval_ms);
        self.iterations = self.iterations.saturating_add(1);
        self.missed_iterations = self.missed_iterations.saturating_add(missed);
        Some(Tick { t, missed })
    }

    /// Evaluations returned by [`Schedule::poll`] so far.
    pub fn iterations(&self) -> u64 {
        self.iterations
    }

    /// Slots skipped so far, in total.
    pub fn missed_iterations(&self) -> u64 {
        self.missed_iterations
    }
}
