//! Alerting rules: the alert state machine, with Prometheus 3.x semantics.
//!
//! Each evaluation at time `t` queries the expression at `t - query_offset`. Every output
//! sample becomes an alert whose labels are the sample's labels without `__name__`, then the
//! rule labels (templated with `$labels`, `$value`, `$externalLabels`; they win, and an
//! empty result removes the label), then `alertname`. Annotations are templated the same
//! way. Alerts are keyed by their label set:
//!
//! - new → **pending** with `active_at = t`; with `for = 0` it fires in the same evaluation;
//! - pending with `t - active_at >= for` → **firing** (`fired_at = t`);
//! - pending and absent from the output → removed;
//! - firing and absent → **inactive** (resolved, `resolved_at = t`), unless
//!   `keep_firing_for > 0`: then `keep_firing_since` is set to the first evaluation at
//!   which the alert was absent, and it keeps firing while `t - keep_firing_since <
//!   keep_firing_for`; seeing it again clears `keep_firing_since`;
//! - a resolved alert is kept (and reported, so the notifier can send the resolution) while
//!   `t - resolved_at <= 15 m`, then dropped; if it comes back it starts pending again;
//! - value and annotations of an active alert are updated every evaluation.
//!
//! Errors, as Prometheus: two alerts with one label set fail the evaluation (nothing
//! changes); more active (pending + firing) alerts than the group `limit` fail it and drop
//! every alert of the rule.
//!
//! Output, written at `t - query_offset` like every rule output: for each pending/firing
//! alert `ALERTS{alertname, alertstate, <labels>} 1` and `ALERTS_FOR_STATE{alertname,
//! <labels>} = active_at` in whole seconds; a series written last time and absent now gets
//! a staleness marker.
//!
//! Restoration of `for` after a restart (see [`RestoreOptions`]): the group loads the
//! rule's [`SavedAlert`]s from an [`AlertStateStore`] before its first evaluation. At that
//! evaluation, each *new* alert whose label set was saved pending or firing, in a rule with
//! `for >= for_grace_period`, has its `active_at` restored, provided the downtime
//! (`t - saved_at`) is at most `outage_tolerance`:
//! - it had already spent `for` pending: `active_at` is the saved one, so it fires at once;
//! - less than `for_grace_period` of pending time was left: `active_at = t + grace - for`,
//!   so it fires after the grace period;
//! - otherwise `active_at = saved active_at + downtime`: it keeps the pending time it had
//!   accumulated, and the downtime does not count as pending.
//!
//! Other alerts start afresh. `fired_at` is not restored (it is the time of the first firing
//! evaluation after the restart). Unlike Prometheus, which restores from the
//! `ALERTS_FOR_STATE` series and only after a first evaluation, restoration happens within
//! the first successful evaluation, so `ALERTS` is written from the first evaluation on.
//!
//! Invariant: no input (vector, saved state, timestamps) makes the rule panic; time
//! arithmetic saturates.
//!
//! Caches (pure speed-ups, invisible in results): when no rule label is a template, an
//! alert's labels depend only on its sample's labels, so they are remembered per sample
//! label set; annotations without templates are built once; each alert's `ALERTS` and
//! `ALERTS_FOR_STATE` label sets are remembered (beside the alert) until its state changes;
//! the permutation that sorted the last output is tried first on the next one. The label
//! cache is emptied when it outgrows twice the rule's latest output (plus a small slack),
//! so memory stays proportional to the output.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use promql_parser::parser::Expr;

use crate::group::{OutputWriter, RuleError, RuleStatus, query_vector};
use crate::labels::{Label, Labels, METRIC_NAME};
use crate::promql::Engine;
use crate::storage::{Appendable, Queryable};
use crate::template::{TemplateData, expand};

/// Maps keyed by label sets, with a fast hasher seeded at random per map.
type LabelMap<V> = HashMap<Labels, V, foldhash::fast::RandomState>;

/// Entries a cache may hold beyond twice the latest output before it is emptied.
const CACHE_SLACK: usize = 64;

/// How long a resolved alert is kept and reported (Prometheus: 15 m).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// Name of the series of active alerts.
pub const ALERTS_METRIC: &str = "ALERTS";

/// Name of the series holding each active alert's `active_at` (seconds).
pub const ALERTS_FOR_STATE_METRIC: &str = "ALERTS_FOR_STATE";

/// Label holding the alert name.
pub const ALERT_NAME_LABEL: &str = "alertname";

/// Label holding the state in `ALERTS`.
pub const ALERT_STATE_LABEL: &str = "alertstate";

/// State of one alert.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertState {
    /// Resolved (kept for [`RESOLVED_RETENTION_MS`]), or a rule with no alert.
    #[default]
    Inactive,
    /// Active for less than `for`.
    Pending,
    /// Firing.
    Firing,
}

impl AlertState {
    /// `inactive`, `pending` or `firing`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }

    /// The state named `s` (as printed by [`AlertState::as_str`]).
    pub fn parse(s: &str) -> Option<AlertState> {
        match s {
            "inactive" => Some(AlertState::Inactive),
            "pending" => Some(AlertState::Pending),
            "firing" => Some(AlertState::Firing),
            _ => None,
        }
    }
}

/// One alert of an alerting rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// Identifying labels (`alertname` included, `__name__` never).
    pub labels: Labels,
    /// Templated annotations (an annotation that expands to nothing is left out).
    pub annotations: Labels,
    /// Current state.
    pub state: AlertState,
    /// The sample value of the last evaluation that saw the alert.
    pub value: f64,
    /// When the alert became pending (ms).
    pub active_at: i64,
    /// When it fired (ms), if it did.
    pub fired_at: Option<i64>,
    /// When it was resolved (ms), if it was.
    pub resolved_at: Option<i64>,
    /// When the notifier last sent it (ms), as set by [`AlertingRule::mark_sent`].
    pub last_sent_at: Option<i64>,
    /// First evaluation (ms) at which a firing alert with `keep_firing_for` was absent.
    pub keep_firing_since: Option<i64>,
}

impl Alert {
    /// Whether the notifier should send this alert at `t`: never while pending; at once if
    /// it was resolved after its last send; else when `resend_delay_ms` has passed since
    /// the last send (Prometheus' rule).
    pub fn needs_sending(&self, t: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        match (self.resolved_at, self.last_sent_at) {
            (Some(_), None) => true,
            (Some(r), Some(s)) if r > s => true,
            (_, None) => true,
            (_, Some(s)) => s.saturating_add(resend_delay_ms) < t,
        }
    }
}

/// An alert as saved for restoration after a restart.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedAlert {
    /// Identifying labels.
    pub labels: Labels,
    /// State when saved.
    pub state: AlertState,
    /// When it became pending (ms).
    pub active_at: i64,
    /// When it fired (ms).
    pub fired_at: Option<i64>,
    /// See [`Alert::keep_firing_since`].
    pub keep_firing_since: Option<i64>,
    /// When it was resolved (ms).
    pub resolved_at: Option<i64>,
    /// Its last value.
    pub value: f64,
    /// The evaluation timestamp (ms) at which this state was saved: the last time the
    /// process was known to be up, from which restoration computes the downtime.
    pub saved_at: i64,
}

/// Where alert state is saved between restarts (the agent's SQL store; tests use
/// [`MemoryAlertStateStore`]). `group` is [`crate::group::Group::key`], `rule` the alert name;
/// `save` replaces everything saved under that pair.
pub trait AlertStateStore: Send + Sync {
    /// Replaces the saved alerts of `rule` in `group`.
    fn save(&self, group: &str, rule: &str, alerts: &[SavedAlert]) -> Result<(), String>;
    /// The saved alerts of `rule` in `group` (empty if none).
    fn load(&self, group: &str, rule: &str) -> Result<Vec<SavedAlert>, String>;
}

impl std::fmt::Debug for dyn AlertStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AlertStateStore")
    }
}

/// An [`AlertStateStore`] in memory.
#[derive(Debug, Default)]
pub struct MemoryAlertStateStore {
    map: Mutex<HashMap<(String, String), Vec<SavedAlert>>>,
}

impl MemoryAlertStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl AlertStateStore for MemoryAlertStateStore {
    fn save(&self, group: &str, rule: &str, alerts: &[SavedAlert]) -> Result<(), String> {
        let mut map = self.map.lock().map_err(|_| "alert state store lock poisoned".to_owned())?;
        map.insert((group.to_owned(), rule.to_owned()), alerts.to_vec());
        Ok(())
    }

    fn load(&self, group: &str, rule: &str) -> Result<Vec<SavedAlert>, String> {
        let map = self.map.lock().map_err(|_| "alert state store lock poisoned".to_owned())?;
        Ok(map.get(&(group.to_owned(), rule.to_owned())).cloned().unwrap_or_default())
    }
}

/// How restoration after a restart treats downtime (Prometheus' flags of the same names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Saved state older than this at the first evaluation is not restored (default 1 h).
    pub outage_tolerance_ms: i64,
    /// Minimum time an alert restored with pending time left waits before firing, and the
    /// minimum `for` of a rule whose alerts are restored (default 10 m).
    pub for_grace_period_ms: i64,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions { outage_tolerance_ms: 3_600_000, for_grace_period_ms: 600_000 }
    }
}

/// What an alerting rule is built from.
#[derive(Clone, Debug)]
pub struct AlertingRuleConfig {
    /// The alert name.
    pub name: String,
    /// The expression.
    pub expr: Expr,
    /// `for` (ms, >= 0).
    pub for_ms: i64,
    /// `keep_firing_for` (ms, >= 0).
    pub keep_firing_for_ms: i64,
    /// Rule labels (templates), group labels included; later pairs win.
    pub labels: Vec<(String, String)>,
    /// Annotations (templates).
    pub annotations: Vec<(String, String)>,
    /// External labels (`$externalLabels`).
    pub external_labels: Labels,
    /// External URL (`$externalURL`).
    pub external_url: String,
    /// How far before the evaluation time the expression is evaluated (ms, >= 0).
    pub query_offset_ms: i64,
    /// Maximum number of active alerts; 0 = unlimited.
    pub limit: usize,
}

/// An alerting rule with its alerts.
#[derive(Debug)]
pub struct AlertingRule {
    cfg: AlertingRuleConfig,
    active: LabelMap<Tracked>,
    restore: Option<(Vec<SavedAlert>, RestoreOptions)>,
    status: RuleStatus,
    output: OutputWriter,
    /// Boxed to keep [`crate::group::GroupRule`]'s variants of similar sizes.
    cache: Box<Caches>,
}

/// An alert with what the state machine keeps beside it.
#[derive(Clone, Debug)]
struct Tracked {
    alert: Alert,
    /// True from the start of an evaluation that saw the alert until the end of it.
    seen: bool,
    /// The state and the `ALERTS` / `ALERTS_FOR_STATE` label sets last built (a cache).
    series: Option<(AlertState, Labels, Labels)>,
}

/// What an alerting rule remembers between evaluations only to go faster.
#[derive(Debug, Default)]
struct Caches {
    /// True if no rule label is a template: alert labels then depend on sample labels only.
    static_labels: bool,
    /// The annotations, if none is a template.
    static_annotations: Option<Labels>,
    /// Sample labels → alert labels (used only with `static_labels`).
    label_cache: LabelMap<Labels>,
    /// The permutation that sorted the last output (positions in the order the alerts
    /// were visited).
    order: Vec<u32>,
    /// The last sorted output's label sets.
    sorted: Vec<Labels>,
}

impl AlertingRule {
    /// A rule with no alert yet.
    pub fn new(cfg: AlertingRuleConfig) -> Self {
        let static_labels = cfg.labels.iter().all(|(_, text)| !is_template(text));
        let static_annotations = cfg.annotations.iter().all(|(_, text)| !is_template(text)).then(|| {
            Labels::new(
                cfg.annotations.iter().map(|(name, text)| Label { name: name.clone(), value: text.clone() }).collect(),
            )
        });
        AlertingRule {
            cfg,
            active: LabelMap::default(),
            restore: None,
            status: RuleStatus::default(),
            output: OutputWriter::default(),
            cache: Box::new(Caches {
                static_labels,
                static_annotations,
                label_cache: LabelMap::default(),
                order: Vec::new(),
                sorted: Vec::new(),
            }),
        }
    }

    /// The alert name.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The rule's configuration.
    pub fn config(&self) -> &AlertingRuleConfig {
        &self.cfg
    }

    /// Health, last error, last evaluation time and duration.
    pub fn status(&self) -> &RuleStatus {
        &self.status
    }

    /// The rule's state: firing if an alert fires, else pending if one is pending, else
    /// inactive.
    pub fn state(&self) -> AlertState {
        self.active.values().map(|e| e.alert.state).max().unwrap_or(AlertState::Inactive)
    }

    /// Every alert held, sorted by labels: pending and firing ones, and resolved ones
    /// (state [`AlertState::Inactive`], `resolved_at` set) for [`RESOLVED_RETENTION_MS`]
    /// after their resolution. What the notifier sends from; see [`Alert::needs_sending`].
    pub fn active_alerts(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self.active.values().map(|e| e.alert.clone()).collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }

    /// Pending and firing alerts only, sorted by labels (Prometheus' `ActiveAlerts`, what
    /// its `/api/v1/alerts` lists).
    pub fn pending_or_firing(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> =
            self.active.values().filter(|e| e.alert.state != AlertState::Inactive).map(|e| e.alert.clone()).collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }

    /// The label sets of the `ALERTS`/`ALERTS_FOR_STATE` series written by the last
    /// successful evaluation.
    pub fn last_series(&self) -> Vec<Labels> {
        self.output.series()
    }

    /// Records that the notifier sent the alert with `labels` at `t`. Returns false if the
    /// rule holds no such alert.
    pub fn mark_sent(&mut self, labels: &Labels, t: i64) -> bool {
        match self.active.get_mut(labels) {
            Some(e) => {
                e.alert.last_sent_at = Some(t);
                true
            }
            None => false,
        }
    }

    /// The rule's alerts as they should be saved at evaluation time `t`.
    pub fn saved_alerts(&self, t: i64) -> Vec<SavedAlert> {
        self.active_alerts()
            .into_iter()
            .map(|a| SavedAlert {
                labels: a.labels,
                state: a.state,
                active_at: a.active_at,
                fired_at: a.fired_at,
                keep_firing_since: a.keep_firing_since,
                resolved_at: a.resolved_at,
                value: a.value,
                saved_at: t,
            })
            .collect()
    }

    /// Restores `for` state from `saved` at the next successful evaluation (see the module
    /// documentation). Replaces any restoration not yet applied.
    pub fn restore_on_next_eval(&mut self, saved: Vec<SavedAlert>, opts: RestoreOptions) {
        self.restore = Some((saved, opts));
    }

    /// Evaluates the rule at `t` with `engine` over `store`, writing `ALERTS` and
    /// `ALERTS_FOR_STATE` to `store`. Returns the number of samples written.
    pub fn eval<S: Queryable + Appendable>(&mut self, engine: &Engine, store: &S, t: i64) -> Result<usize, RuleError> {
        let mut query = |expr: &Expr, ts: i64| query_vector(engine, store, expr, ts);
        self.eval_with(&mut query, store, t)
    }

    /// As [`AlertingRule::eval`], with the query done by `query(expr, ts)`.
    pub fn eval_with<S: Appendable + ?Sized>(
        &mut self,
        query: &mut dyn FnMut(&Expr, i64) -> Result<Vec<(Labels, f64)>, RuleError>,
        store: &S,
        t: i64,
    ) -> Result<usize, RuleError> {
        let started = Instant::now();
        let ts = t.saturating_sub(self.cfg.query_offset_ms);
        let result = query(&self.cfg.expr, ts)
            .and_then(|input| self.apply(&input, t))
            .and_then(|out| self.output.write(store, &out, ts));
        self.status.record(t, started.elapsed(), &result);
        result
    }

    /// The state machine: advances the alerts for the evaluated `input` vector at
    /// evaluation time `t` and returns the `ALERTS`/`ALERTS_FOR_STATE` samples to write,
    /// sorted by labels. Writes nothing and records no status: the seam tests drive.
    pub fn apply(&mut self, input: &[(Labels, f64)], t: i64) -> Result<Vec<(Labels, f64)>, RuleError> {
        if self.cache.label_cache.len() > input.len().saturating_mul(2).saturating_add(CACHE_SLACK) {
            self.cache.label_cache = LabelMap::default();
        }
        let mut fresh: LabelMap<Alert> = LabelMap::with_capacity_and_hasher(input.len(), Default::default());
        for (labels, value) in input {
            let alert = self.new_alert(labels, *value, t);
            if fresh.contains_key(&alert.labels) {
                return Err(RuleError::DuplicateAlertLabelset);
            }
            fresh.insert(alert.labels.clone(), alert);
        }

        let restore = self.restore.take();
        for (labels, mut alert) in fresh {
            match self.active.get_mut(&labels) {
                Some(old) if old.alert.state != AlertState::Inactive => {
                    old.alert.value = alert.value;
                    old.alert.annotations = alert.annotations;
                    old.seen = true;
                }
                _ => {
                    if let Some((saved, opts)) = &restore {
                        self.restore_alert(&mut alert, saved, opts, t);
                    }
                    self.active.insert(labels, Tracked { alert, seen: true, series: None });
                }
            }
        }

        let (for_ms, kff_ms) = (self.cfg.for_ms, self.cfg.keep_firing_for_ms);
        let mut n_active = 0usize;
        let mut out = Vec::with_capacity(self.active.len().saturating_mul(2));
        self.active.retain(|_, e| {
            let a = &mut e.alert;
            if std::mem::take(&mut e.seen) {
                a.keep_firing_since = None;
            } else {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && kff_ms > 0 {
                    let since = *a.keep_firing_since.get_or_insert(t);
                    keep_firing = t.saturating_sub(since) < kff_ms;
                }
                if a.state == AlertState::Pending
                    || a.resolved_at.is_some_and(|r| t.saturating_sub(r) > RESOLVED_RETENTION_MS)
                {
                    return false;
                }
                if !keep_firing {
                    if a.state != AlertState::Inactive {
                        a.state = AlertState::Inactive;
                        a.resolved_at = Some(t);
                    }
                    return true;
                }
            }
            n_active += 1;
            if a.state == AlertState::Pending && t.saturating_sub(a.active_at) >= for_ms {
                a.state = AlertState::Firing;
                a.fired_at = Some(t);
            }
            let (alerts, for_state) = match &e.series {
                Some((state, alerts, for_state)) if *state == a.state => (alerts.clone(), for_state.clone()),
                _ => {
                    let alerts = series(a, ALERTS_METRIC, Some(a.state));
                    let for_state = series(a, ALERTS_FOR_STATE_METRIC, None);
                    e.series = Some((a.state, alerts.clone(), for_state.clone()));
                    (alerts, for_state)
                }
            };
            out.push((alerts, 1.0));
            out.push((for_state, a.active_at.div_euclid(1000) as f64));
            true
        });
        if self.cfg.limit > 0 && n_active > self.cfg.limit {
            self.active.clear();
            return Err(RuleError::AlertLimit { limit: self.cfg.limit, count: n_active });
        }
        Ok(sort_output(out, &mut self.cache))
    }

    /// Writes staleness markers at `t - query_offset` for every series of the last
    /// evaluation, and forgets them (the rule is being removed).
    pub fn mark_stale<S: Appendable + ?Sized>(&mut self, store: &S, t: i64) {
        self.output.mark_all_stale(store, t.saturating_sub(self.cfg.query_offset_ms));
    }

    /// Takes over alerts, status and output memory of `old` (the same rule before a reload).
    pub(crate) fn copy_state_from(&mut self, old: &AlertingRule) {
        self.active = old.active.clone();
        self.status = old.status.clone();
        self.output = old.output.clone();
        self.restore = old.restore.clone();
    }

    /// The alert for one output sample, pending since `t`.
    fn new_alert(&mut self, sample_labels: &Labels, value: f64, t: i64) -> Alert {
        let data = TemplateData {
            labels: sample_labels,
            value,
            external_labels: &self.cfg.external_labels,
            external_url: &self.cfg.external_url,
        };
        let cached = if self.cache.static_labels { self.cache.label_cache.get(sample_labels).cloned() } else { None };
        let labels = match cached {
            Some(l) => l,
            None => {
                let mut ls: Vec<Label> = Vec::with_capacity(sample_labels.len() + self.cfg.labels.len() + 1);
                ls.extend(sample_labels.iter().filter(|l| l.name != METRIC_NAME).cloned());
                for (name, text) in &self.cfg.labels {
                    ls.push(Label { name: name.clone(), value: expand_text(text, &data) });
                }
                ls.push(Label { name: ALERT_NAME_LABEL.to_owned(), value: self.cfg.name.clone() });
                let l = Labels::new(ls);
                if self.cache.static_labels {
                    self.cache.label_cache.insert(sample_labels.clone(), l.clone());
                }
                l
            }
        };
        let annotations = match &self.cache.static_annotations {
            Some(a) => a.clone(),
            None => Labels::new(
                self.cfg
                    .annotations
                    .iter()
                    .map(|(name, text)| Label { name: name.clone(), value: expand_text(text, &data) })
                    .collect(),
            ),
        };
        Alert {
            labels,
            annotations,
            state: AlertState::Pending,
            value,
            active_at: t,
            fired_at: None,
            resolved_at: None,
            last_sent_at: None,
            keep_firing_since: None,
        }
    }

    /// Applies saved state to a new alert at the first evaluation after a restart.
    fn restore_alert(&self, alert: &mut Alert, saved: &[SavedAlert], opts: &RestoreOptions, t: i64) {
        let hold = self.cfg.for_ms;
        if hold <= 0 || hold < opts.for_grace_period_ms {
            return;
        }
        let Some(s) = saved
            .iter()
            .filter(|s| s.labels == alert.labels && s.state != AlertState::Inactive)
            .max_by_key(|s| s.saved_at)
        else {
            return;
        };
        let downtime = t.saturating_sub(s.saved_at).max(0);
        if downtime > opts.outage_tolerance_ms {
            return;
        }
        let spent = s.saved_at.saturating_sub(s.active_at).max(0);
        let remaining = hold.saturating_sub(spent);
        let active_at = if remaining <= 0 {
            s.active_at
        } else if remaining < opts.for_grace_period_ms {
            t.saturating_add(opts.for_grace_period_ms).saturating_sub(hold)
        } else {
            s.active_at.saturating_add(downtime)
        };
        alert.active_at = active_at.min(t);
    }
}

/// Sorts the output by labels. The alerts are visited in the same order from one
/// evaluation to the next while the set of alerts is unchanged, so the last permutation is
/// tried first: it is kept if it leaves the output strictly increasing, which a pair equal
/// to the same pair of the last sorted output is without comparing strings. Label sets are
/// unique here (one alert per set, and the two metrics differ), so strictly increasing is
/// the one sorted order.
fn sort_output(out: Vec<(Labels, f64)>, cache: &mut Caches) -> Vec<(Labels, f64)> {
    let n = out.len();
    let mut order = std::mem::take(&mut cache.order);
    let reusable = order.len() == n && {
        let sorted = &cache.sorted;
        order.windows(2).enumerate().all(|(k, w)| {
            let (a, b) = (&out[w[0] as usize].0, &out[w[1] as usize].0);
            (sorted.get(k) == Some(a) && sorted.get(k + 1) == Some(b)) || a < b
        })
    };
    if !reusable {
        // Outputs are two per alert, far below `u32::MAX`.
        order = (0..n).filter_map(|i| u32::try_from(i).ok()).collect();
        order.sort_unstable_by(|&a, &b| out[a as usize].0.cmp(&out[b as usize].0));
    }
    let mut slots: Vec<Option<(Labels, f64)>> = out.into_iter().map(Some).collect();
    let sorted: Vec<(Labels, f64)> = order.iter().filter_map(|&i| slots.get_mut(i as usize)?.take()).collect();
    cache.sorted = sorted.iter().map(|(l, _)| l.clone()).collect();
    cache.order = order;
    sorted
}

/// True if `text` is a template to expand (it contains `{{`).
fn is_template(text: &str) -> bool {
    text.contains("{{")
}

/// Expands a label or annotation template; text without `{{` is returned as it is.
fn expand_text(text: &str, data: &TemplateData<'_>) -> String {
    if is_template(text) { expand(text, data) } else { text.to_owned() }
}

/// The labels of `ALERTS{...}` or `ALERTS_FOR_STATE{...}` for `alert`.
fn series(alert: &Alert, metric: &str, state: Option<AlertState>) -> Labels {
    let mut ls: Vec<Label> = Vec::with_capacity(alert.labels.len() + 2);
    ls.extend(alert.labels.iter().cloned());
    ls.push(Label { name: METRIC_NAME.to_owned(), value: metric.to_owned() });
    if let Some(s) = state {
        ls.push(Label { name: ALERT_STATE_LABEL.to_owned(), value: s.as_str().to_owned() });
    }
    Labels::new(ls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(name: &str, v: &str) -> Labels {
        Labels::from_pairs(&[("__name__", name), ("alertname", "A"), ("i", v)])
    }

    #[test]
    fn sort_output_reuses_only_a_permutation_that_still_sorts() {
        let mut cache = Caches::default();
        let check = |out: Vec<(Labels, f64)>, cache: &mut Caches| {
            let mut want = out.clone();
            want.sort_by(|a, b| a.0.cmp(&b.0));
            let got = sort_output(out, cache);
            assert_eq!(got, want);
        };
        let a = [ls("ALERTS", "3"), ls("ALERTS", "1"), ls("ALERTS_FOR_STATE", "2"), ls("ALERTS", "2")];
        let out: Vec<(Labels, f64)> = a.iter().enumerate().map(|(i, l)| (l.clone(), i as f64)).collect();
        check(out.clone(), &mut cache);
        assert_eq!(cache.order, [1, 3, 0, 2]);
        // Same visiting order: the permutation is reused and values follow their labels.
        check(out.iter().map(|(l, v)| (l.clone(), v * 10.0)).collect(), &mut cache);
        // Same length, different labels and order: the stale permutation must not be used.
        let b = [ls("ALERTS", "0"), ls("ALERTS", "9"), ls("ALERTS", "5"), ls("ALERTS", "1")];
        check(b.iter().map(|l| (l.clone(), 1.0)).collect(), &mut cache);
        let c = [ls("ALERTS", "9"), ls("ALERTS", "0"), ls("ALERTS", "5"), ls("ALERTS", "1")];
        check(c.iter().map(|l| (l.clone(), 1.0)).collect(), &mut cache);
        check(Vec::new(), &mut cache);
        check(vec![(ls("ALERTS", "x"), 1.0)], &mut cache);
    }
}
