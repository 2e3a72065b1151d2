//! The notifier core: aggregation groups, their timers, muting, deduplication through the
//! notification log, and the hand-off to receivers ([`Dispatch`]).
//!
//! # Input
//! [`Notifier::update`] takes the current set of firing and resolved alerts (all of them,
//! every time: the rules manager's active alerts after an evaluation). An alert is known by
//! its label set. A new alert takes the routes the tree gives it and joins, on each, the
//! aggregation group of its group labels (created if needed). An alert that was firing and
//! is absent from the next set is treated as resolved at that moment. A resolved alert
//! stays in its groups until a notification that included it as resolved succeeded (or
//! until a flush found nothing to send), then leaves them; a group left empty is deleted.
//!
//! # Timing (Alertmanager's)
//! - A new group flushes `group_wait` after it was created, or at once if one of its
//!   alerts started more than `group_wait` ago (while it has not flushed yet).
//! - After each flush the next is `group_interval` later, whether anything was sent or not.
//! - Restarts and configuration reloads: a new group whose receiver was notified less than
//!   `group_interval` ago (per the notification log) flushes no earlier than
//!   `group_interval` after that notification, so a restart never makes a group notify
//!   faster than `group_interval`.
//!
//! # A flush
//! 1. Alerts muted by a silence ([`Silencer`], re-read from the store before each flush
//!    round) or by inhibition ([`Inhibitor`], over all current firing alerts) are left out.
//! 2. For each integration of the route's receiver ([`Dispatch::integrations`]), the
//!    deduplication rule of Alertmanager decides against the notification log entry of
//!    (group, receiver, integration), read from the store (a read failure falls back to the
//!    entry this process last wrote or read):
//!    - no entry: send if anything fires;
//!    - some firing alert was not in the last notification: send;
//!    - nothing fires: send if the last notification had firing alerts (the "all
//!      resolved" notification), else not;
//!    - `send_resolved` and some resolved alert was not notified as resolved yet: send;
//!    - otherwise send only if the last notification is older than `repeat_interval`
//!      (strictly), which is checked at flushes, so a repeat comes at the first flush
//!      after `repeat_interval` has passed.
//! 3. The notification (Alertmanager's webhook v4 shape, redacted: [`Notification::build`])
//!    goes to the integration within a deadline of `group_interval` (at most
//!    [`NotifierOptions::send_timeout`]); retries with backoff are the receiver's. On
//!    success the entry (firing and resolved fingerprints, time) is written to the store. An
//!    integration with `send_resolved: false` whose group has nothing firing is not sent
//!    anything, but the entry is still written (so the next firing alert is seen as new).
//! 4. If no integration failed, the resolved alerts of the flush leave the group. A failed
//!    integration is tried again at the next flush (`group_interval` later).
//!
//! Flushes run as tasks, at most [`NotifierOptions::max_concurrent_flushes`] at once; a group
//! has at most one flush in flight, and a slow receiver delays only its own groups.
//!
//! # Bounds
//! At most `limits.max_groups` groups and `limits.max_alerts_per_group` alerts per group;
//! alerts beyond are dropped (counted once per alert, retried on every update). The alerts
//! held are those of the last input plus resolved ones awaiting notification.
//!
//! # Time
//! Every method takes `now` in Unix milliseconds, so tests drive hours of simulated time
//! without sleeping; [`Notifier::run`] is the real loop over a [`Clock`] and tokio timers.
//!
//! Invariant: nothing here logs or returns a label value, annotation or matcher: logs name
//! the receiver, the integration and counts; errors come from the store (operation and
//! table) and from receivers (integration and status).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use warden_collector::redact::Redactor;
use warden_rules::labels::Labels;

use super::alert::{AlertStatus, NotifyAlert};
use super::config::{LimitsConfig, NotifyConfig};
use super::inhibit::{InhibitIndex, Inhibitor};
use super::message::Notification;
use super::receivers::{Receiver, SendFuture};
use super::route::RouteTree;
use super::silence::Silencer;
use crate::store::{NflogEntry, Store, StoreError};

/// One integration of a receiver, as deduplication sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Integration {
    /// Unique within the receiver and stable across restarts (e.g. `webhook[0]`): the
    /// notification log is keyed by it.
    pub name: String,
    /// Whether resolved alerts are sent to it.
    pub send_resolved: bool,
}

/// Where notifications go: the receivers.
pub trait Dispatch: Send + Sync + 'static {
    /// The integrations of `receiver`, in a stable order. None (or an unknown receiver):
    /// alerts routed to it are not sent anywhere.
    fn integrations(&self, receiver: &str) -> Vec<Integration>;

    /// Sends `n` through integration number `integration` of `receiver` (retries
    /// included). An error means it was not delivered.
    fn send<'a>(&'a self, receiver: &'a str, integration: usize, n: &'a Notification) -> SendFuture<'a>;
}

/// [`Dispatch`] over built receivers ([`super::receivers::ReceiverConfig::build`]).
#[derive(Default)]
pub struct ReceiverSet {
    receivers: BTreeMap<String, Vec<(Integration, Arc<dyn Receiver>)>>,
}

impl ReceiverSet {
    /// No receiver.
    pub fn new() -> ReceiverSet {
        ReceiverSet::default()
    }

    /// Adds receiver `name` with its integrations (each with its `send_resolved`), named
    /// `<integration>[<n>]` by their position among those of the same kind.
    pub fn insert(&mut self, name: &str, integrations: Vec<(Arc<dyn Receiver>, bool)>) {
        let mut per_kind: HashMap<&'static str, usize> = HashMap::new();
        let list = integrations
            .into_iter()
            .map(|(r, send_resolved)| {
                let n = per_kind.entry(r.integration()).or_default();
                let name = format!("{}[{n}]", r.integration());
                *n += 1;
                (Integration { name, send_resolved }, r)
            })
            .collect();
        self.receivers.insert(name.to_owned(), list);
    }
}

impl Dispatch for ReceiverSet {
    fn integrations(&self, receiver: &str) -> Vec<Integration> {
        self.receivers.get(receiver).map(|v| v.iter().map(|(i, _)| i.clone()).collect()).unwrap_or_default()
    }

    fn send<'a>(&'a self, receiver: &'a str, integration: usize, n: &'a Notification) -> SendFuture<'a> {
        match self.receivers.get(receiver).and_then(|v| v.get(integration)) {
            Some((_, r)) => r.send(n),
            None => Box::pin(async {
                Err(super::receivers::ReceiverError::Permanent("no such receiver integration".to_owned()))
            }),
        }
    }
}

/// The current time, in Unix milliseconds.
pub trait Clock: Send + Sync {
    /// Now.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::store::now_ms()
    }
}

/// Settings of the notifier besides its configuration.
#[derive(Clone, Debug)]
pub struct NotifierOptions {
    /// The agent's URL (`externalURL` of notifications).
    pub external_url: String,
    /// How long notification-log entries count (Alertmanager: 120 h); must exceed every
    /// `repeat_interval`.
    pub nflog_retention: Duration,
    /// The longest one send (with its retries) may take; the deadline is the smaller of
    /// this and the route's `group_interval`.
    pub send_timeout: Duration,
    /// Most group flushes in flight at once.
    pub max_concurrent_flushes: usize,
}

impl Default for NotifierOptions {
    fn default() -> Self {
        NotifierOptions {
            external_url: String::new(),
            nflog_retention: Duration::from_secs(120 * 3600),
            send_timeout: Duration::from_secs(5 * 60),
            max_concurrent_flushes: 32,
        }
    }
}

/// Why the notifier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    /// The configuration is invalid (every problem, with its path).
    #[error("invalid notify configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    /// Reading the notification log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An aggregation group's identity: the route's index and the group labels.
type GroupId = (usize, Labels);

/// One aggregation group.
struct AggrGroup {
    /// Alertmanager's group key: `<route key>:<group labels>`.
    key: String,
    /// The notification log's key: `<route id>:<group labels>`.
    log_key: String,
    labels: Labels,
    alerts: BTreeMap<Labels, NotifyAlert>,
    next_flush: i64,
    /// No flush before this (a notification of the same group in a previous life).
    floor: i64,
    has_flushed: bool,
    flushing: bool,
}

/// An alert of the last input (or resolved and awaiting notification).
struct Tracked {
    alert: NotifyAlert,
    /// The groups holding it; empty once its resolution was dealt with, or if the limits
    /// dropped it.
    groups: Vec<GroupId>,
    /// Whether a limit dropped it (counted once).
    dropped: bool,
}

/// What one integration's part of a flush came to.
#[derive(Debug)]
enum Outcome {
    /// Sent; the entry was logged (or logging failed: `log_failed`).
    Sent(NflogEntry),
    /// Nothing to send, entry logged (`send_resolved: false` and all resolved).
    Logged(NflogEntry),
    /// Deduplicated; the entry read, if any.
    Skipped(Option<NflogEntry>),
    /// Not delivered.
    Failed,
}

struct IntegrationResult {
    integration: String,
    outcome: Outcome,
    read_failed: bool,
    log_failed: bool,
}

struct FlushResult {
    id: GroupId,
    /// Resolved alerts of the flush: (labels, ends_at), removed if unchanged on success.
    resolved: Vec<(Labels, Option<i64>)>,
    integrations: Vec<IntegrationResult>,
}

/// Per (receiver, integration) counters.
#[derive(Clone, Copy, Debug, Default)]
struct IntegrationCounters {
    sent: u64,
    failed: u64,
    deduplicated: u64,
}

/// The notifier's own metrics.
#[derive(Debug, Default)]
pub struct NotifierStats {
    integrations: Mutex<BTreeMap<(String, String), IntegrationCounters>>,
    dropped_max_groups: AtomicU64,
    dropped_max_alerts: AtomicU64,
    nflog_read_errors: AtomicU64,
    nflog_write_errors: AtomicU64,
    silence_read_errors: AtomicU64,
    groups: AtomicU64,
    alerts_firing: AtomicU64,
    alerts_resolved: AtomicU64,
}

impl NotifierStats {
    fn count(&self, receiver: &str, integration: &str, f: impl FnOnce(&mut IntegrationCounters)) {
        let mut m = self.integrations.lock().unwrap_or_else(|p| p.into_inner());
        f(m.entry((receiver.to_owned(), integration.to_owned())).or_default());
    }

    /// Notifications sent by `receiver`'s `integration`.
    pub fn sent(&self, receiver: &str, integration: &str) -> u64 {
        self.get(receiver, integration).sent
    }

    /// Notifications `receiver`'s `integration` failed to deliver.
    pub fn failed(&self, receiver: &str, integration: &str) -> u64 {
        self.get(receiver, integration).failed
    }

    /// Flushes of `receiver`'s `integration` that deduplication suppressed.
    pub fn deduplicated(&self, receiver: &str, integration: &str) -> u64 {
        self.get(receiver, integration).deduplicated
    }

    /// Alerts dropped by `max_groups` and by `max_alerts_per_group`.
    pub fn dropped(&self) -> (u64, u64) {
        (self.dropped_max_groups.load(Ordering::Relaxed), self.dropped_max_alerts.load(Ordering::Relaxed))
    }

    fn get(&self, receiver: &str, integration: &str) -> IntegrationCounters {
        let m = self.integrations.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&(receiver.to_owned(), integration.to_owned())).copied().unwrap_or_default()
    }

    /// The metrics in the Prometheus text format (0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let m = self.integrations.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let series = |out: &mut String, name: &str, help: &str, f: &dyn Fn(&IntegrationCounters) -> u64| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for ((r, i), c) in &m {
                out.push_str(&format!("{name}{{receiver=\"{}\",integration=\"{}\"}} {}\n", escape(r), escape(i), f(c)));
            }
        };
        series(&mut out, "warden_notifier_notifications_total", "Notifications delivered.", &|c| c.sent);
        series(
            &mut out,
            "warden_notifier_notifications_failed_total",
            "Notifications not delivered (after the receiver's retries, or timed out).",
            &|c| c.failed,
        );
        series(
            &mut out,
            "warden_notifier_notifications_deduplicated_total",
            "Flushes not sent because the notification log showed nothing new.",
            &|c| c.deduplicated,
        );
        let (g, a) = self.dropped();
        out.push_str(
            "# HELP warden_notifier_alerts_dropped_total Alerts dropped by a notifier limit.\n\
             # TYPE warden_notifier_alerts_dropped_total counter\n",
        );
        out.push_str(&format!("warden_notifier_alerts_dropped_total{{reason=\"max_groups\"}} {g}\n"));
        out.push_str(&format!("warden_notifier_alerts_dropped_total{{reason=\"max_alerts_per_group\"}} {a}\n"));
        out.push_str(
            "# HELP warden_notifier_store_errors_total Failed reads and writes of the state store.\n\
             # TYPE warden_notifier_store_errors_total counter\n",
        );
        for (op, c) in [
            ("nflog_read", &self.nflog_read_errors),
            ("nflog_write", &self.nflog_write_errors),
            ("silences_read", &self.silence_read_errors),
        ] {
            out.push_str(&format!("warden_notifier_store_errors_total{{op=\"{op}\"}} {}\n", c.load(Ordering::Relaxed)));
        }
        out.push_str(&format!(
            "# HELP warden_notifier_aggregation_groups Aggregation groups held.\n\
             # TYPE warden_notifier_aggregation_groups gauge\nwarden_notifier_aggregation_groups {}\n",
            self.groups.load(Ordering::Relaxed)
        ));
        out.push_str(&format!(
            "# HELP warden_notifier_alerts Alerts held, by state.\n# TYPE warden_notifier_alerts gauge\n\
             warden_notifier_alerts{{state=\"firing\"}} {}\nwarden_notifier_alerts{{state=\"resolved\"}} {}\n",
            self.alerts_firing.load(Ordering::Relaxed),
            self.alerts_resolved.load(Ordering::Relaxed)
        ));
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// One aggregation group as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupStatus {
    /// Alertmanager's group key.
    pub group_key: String,
    /// The route's id.
    pub route_id: String,
    /// The receiver.
    pub receiver: String,
    /// The group labels (from already-redacted alert labels).
    pub labels: BTreeMap<String, String>,
    /// Firing alerts in the group.
    pub firing: usize,
    /// Resolved alerts awaiting notification.
    pub resolved: usize,
    /// When the group flushes next (ms).
    pub next_flush_ms: i64,
    /// When an integration of the receiver was last notified about the group (ms).
    pub last_notified_ms: Option<i64>,
}

/// What other tasks (the HTTP API, `/metrics`) may read of a running notifier.
#[derive(Clone, Debug)]
pub struct NotifierHandle {
    status: watch::Receiver<Arc<Vec<GroupStatus>>>,
    stats: Arc<NotifierStats>,
}

impl NotifierHandle {
    /// The aggregation groups as of the last update or flush.
    pub fn groups(&self) -> Arc<Vec<GroupStatus>> {
        self.status.borrow().clone()
    }

    /// The notifier's metrics.
    pub fn stats(&self) -> &Arc<NotifierStats> {
        &self.stats
    }
}

/// Key of the in-memory notification log: (group log key, receiver, integration).
type NflogKey = (String, String, String);

/// The notifier. See the module documentation.
pub struct Notifier<D: Dispatch> {
    tree: RouteTree,
    inhibitor: Inhibitor,
    limits: LimitsConfig,
    opts: NotifierOptions,
    dispatch: Arc<D>,
    store: Store,
    redactor: Arc<Redactor>,
    silencer: Silencer,
    alerts: HashMap<Labels, Tracked>,
    groups: BTreeMap<GroupId, AggrGroup>,
    inhibit_index: InhibitIndex,
    inhibit_dirty: bool,
    nflog: HashMap<NflogKey, NflogEntry>,
    nflog_pruned_at: i64,
    in_flight: JoinSet<FlushResult>,
    in_flight_ids: HashMap<tokio::task::Id, GroupId>,
    permits: Arc<Semaphore>,
    stats: Arc<NotifierStats>,
    status: watch::Sender<Arc<Vec<GroupStatus>>>,
}

impl<D: Dispatch> Notifier<D> {
    /// A notifier for `cfg` (validated here), sending through `dispatch`, building
    /// notifications with `redactor`, and reading the notification log of `store` as of
    /// `now_ms`.
    pub async fn new(
        cfg: &NotifyConfig,
        dispatch: Arc<D>,
        store: Store,
        redactor: Arc<Redactor>,
        opts: NotifierOptions,
        now_ms: i64,
    ) -> Result<Notifier<D>, NotifierError> {
        cfg.validate().map_err(NotifierError::Config)?;
        let mut nflog = HashMap::new();
        for e in store.notification_log(now_ms).await? {
            nflog.insert((e.group_key.clone(), e.receiver.clone(), e.integration.clone()), e);
        }
        let (status, _) = watch::channel(Arc::new(Vec::new()));
        let permits = Arc::new(Semaphore::new(opts.max_concurrent_flushes.max(1)));
        Ok(Notifier {
            tree: RouteTree::build(&cfg.route),
            inhibitor: Inhibitor::new(&cfg.inhibit_rules),
            limits: cfg.limits,
            opts,
            dispatch,
            store,
            redactor,
            silencer: Silencer::new(),
            alerts: HashMap::new(),
            groups: BTreeMap::new(),
            inhibit_index: InhibitIndex::default(),
            inhibit_dirty: true,
            nflog,
            nflog_pruned_at: now_ms,
            in_flight: JoinSet::new(),
            in_flight_ids: HashMap::new(),
            permits,
            stats: Arc::default(),
            status,
        })
    }

    /// A handle for the API and metrics.
    pub fn handle(&self) -> NotifierHandle {
        NotifierHandle { status: self.status.subscribe(), stats: Arc::clone(&self.stats) }
    }

    /// The metrics.
    pub fn stats(&self) -> &Arc<NotifierStats> {
        &self.stats
    }

    /// The routing tree.
    pub fn routes(&self) -> &RouteTree {
        &self.tree
    }

    /// The earliest time a group is due to flush, if any group is idle.
    pub fn next_deadline(&self) -> Option<i64> {
        self.groups.values().filter(|g| !g.flushing).map(|g| g.next_flush).min()
    }

    /// Number of flushes in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Takes the current set of firing and resolved alerts (see the module documentation).
    pub fn update(&mut self, now: i64, alerts: &[NotifyAlert]) {
        let mut seen: HashSet<Labels> = HashSet::with_capacity(alerts.len());
        let mut to_route = Vec::new();
        for a in alerts {
            if !seen.insert(a.labels.clone()) {
                continue;
            }
            match self.alerts.get_mut(&a.labels) {
                Some(t) => {
                    t.alert = a.clone();
                    if t.groups.is_empty() {
                        // Resolved and dealt with: only firing again brings it back. A
                        // dropped one is retried.
                        if a.status == AlertStatus::Firing {
                            to_route.push(a.labels.clone());
                        }
                    } else {
                        for id in &t.groups {
                            if let Some(g) = self.groups.get_mut(id) {
                                g.alerts.insert(a.labels.clone(), a.clone());
                            }
                        }
                    }
                }
                None => {
                    self.alerts
                        .insert(a.labels.clone(), Tracked { alert: a.clone(), groups: Vec::new(), dropped: false });
                    to_route.push(a.labels.clone());
                }
            }
        }
        for labels in to_route {
            self.route_alert(now, &labels);
        }
        let mut gone = Vec::new();
        for (labels, t) in self.alerts.iter_mut() {
            if seen.contains(labels) {
                continue;
            }
            if t.alert.status == AlertStatus::Firing {
                t.alert.status = AlertStatus::Resolved;
                t.alert.ends_at = Some(now);
                for id in &t.groups {
                    if let Some(g) = self.groups.get_mut(id) {
                        g.alerts.insert(labels.clone(), t.alert.clone());
                    }
                }
            }
            if t.groups.is_empty() {
                gone.push(labels.clone());
            }
        }
        for labels in gone {
            self.alerts.remove(&labels);
        }
        self.inhibit_dirty = true;
        self.publish();
    }

    /// Puts the alert with `labels` into the groups of its routes, creating groups.
    fn route_alert(&mut self, now: i64, labels: &Labels) {
        let Some(t) = self.alerts.get_mut(labels) else { return };
        let alert = t.alert.clone();
        let mut joined = Vec::new();
        let mut dropped = false;
        for route in self.tree.match_routes(labels) {
            let group_labels = self.tree.group_labels(route, labels);
            let id: GroupId = (route, group_labels);
            let r = self.tree.route(route);
            if !self.groups.contains_key(&id) {
                if self.groups.len() >= self.limits.max_groups {
                    if !t.dropped {
                        self.stats.dropped_max_groups.fetch_add(1, Ordering::Relaxed);
                    }
                    dropped = true;
                    continue;
                }
                let key = format!("{}:{}", r.key, id.1);
                let log_key = format!("{}:{}", r.id, id.1);
                // A notification of this group in a previous life (restart, reload) delays
                // the first flush to `group_interval` after it.
                let last_sent = self
                    .dispatch
                    .integrations(&r.opts.receiver)
                    .iter()
                    .filter_map(|i| self.nflog.get(&(log_key.clone(), r.opts.receiver.clone(), i.name.clone())))
                    .map(|e| e.sent_at)
                    .max();
                let floor = last_sent.map_or(i64::MIN, |s| s.saturating_add(r.opts.group_interval_ms));
                let next_flush = now.saturating_add(r.opts.group_wait_ms).max(floor);
                self.groups.insert(
                    id.clone(),
                    AggrGroup {
                        key,
                        log_key,
                        labels: id.1.clone(),
                        alerts: BTreeMap::new(),
                        next_flush,
                        floor,
                        has_flushed: false,
                        flushing: false,
                    },
                );
            }
            let Some(g) = self.groups.get_mut(&id) else { continue };
            if g.alerts.len() >= self.limits.max_alerts_per_group && !g.alerts.contains_key(labels) {
                if !t.dropped {
                    self.stats.dropped_max_alerts.fetch_add(1, Ordering::Relaxed);
                }
                dropped = true;
                continue;
            }
            g.alerts.insert(labels.clone(), alert.clone());
            if !g.has_flushed && alert.starts_at.saturating_add(r.opts.group_wait_ms) < now {
                g.next_flush = g.next_flush.min(now.max(g.floor));
            }
            if !t.groups.contains(&id) {
                joined.push(id);
            }
        }
        t.groups.extend(joined);
        t.dropped = dropped;
    }

    /// Starts the flush of every idle group due at `now` (see the module documentation)
    /// and returns how many started. Results are applied by [`Notifier::wait_idle`] or by
    /// [`Notifier::run`].
    pub async fn start_due(&mut self, now: i64) -> usize {
        let due: Vec<GroupId> =
            self.groups.iter().filter(|(_, g)| !g.flushing && g.next_flush <= now).map(|(id, _)| id.clone()).collect();
        if due.is_empty() {
            return 0;
        }
        if let Err(e) = self.silencer.refresh(&self.store, now).await {
            self.stats.silence_read_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "reading silences failed; using the last list");
        }
        if self.inhibit_dirty {
            self.inhibit_index = self.inhibitor.index(self.alerts.values().map(|t| &t.alert));
            self.inhibit_dirty = false;
        }
        self.prune_nflog(now);
        let mut started = 0;
        let mut nothing_to_send = Vec::new();
        for id in due {
            let route = self.tree.route(id.0);
            let Some(g) = self.groups.get_mut(&id) else { continue };
            g.next_flush = now.saturating_add(route.opts.group_interval_ms);
            g.has_flushed = true;
            let resolved: Vec<(Labels, Option<i64>)> =
                g.alerts.values().filter(|a| a.is_resolved()).map(|a| (a.labels.clone(), a.ends_at)).collect();
            let mut alerts: Vec<&NotifyAlert> = g
                .alerts
                .values()
                .filter(|a| {
                    !self.silencer.mutes(&a.labels, now) && !self.inhibitor.mutes(&self.inhibit_index, &a.labels)
                })
                .collect();
            let receiver = route.opts.receiver.clone();
            let integrations = self.dispatch.integrations(&receiver);
            if alerts.is_empty() || integrations.is_empty() {
                // Nothing to send: the flush succeeds at once (resolved alerts leave).
                nothing_to_send.push(FlushResult { id, resolved, integrations: Vec::new() });
                continue;
            }
            alerts.sort_by(|a, b| alert_order(a, b));
            let mut firing: Vec<u64> = alerts.iter().filter(|a| !a.is_resolved()).map(|a| a.fingerprint).collect();
            let mut resolved_fps: Vec<u64> = alerts.iter().filter(|a| a.is_resolved()).map(|a| a.fingerprint).collect();
            firing.sort_unstable();
            firing.dedup();
            resolved_fps.sort_unstable();
            resolved_fps.dedup();
            let n = Arc::new(Notification::build(
                &self.redactor,
                &receiver,
                &g.key,
                &g.labels,
                alerts.iter().copied(),
                &self.opts.external_url,
            ));
            let cached: Vec<Option<NflogEntry>> = integrations
                .iter()
                .map(|i| self.nflog.get(&(g.log_key.clone(), receiver.clone(), i.name.clone())).cloned())
                .collect();
            let deadline = Duration::from_millis(u64::try_from(route.opts.group_interval_ms).unwrap_or(0))
                .min(self.opts.send_timeout);
            let job = FlushJob {
                log_key: g.log_key.clone(),
                receiver,
                integrations,
                cached,
                notification: n,
                firing,
                resolved: resolved_fps,
                repeat_ms: route.opts.repeat_interval_ms,
                now,
                retention_ms: i64::try_from(self.opts.nflog_retention.as_millis()).unwrap_or(i64::MAX),
                deadline,
                store: self.store.clone(),
                dispatch: Arc::clone(&self.dispatch),
            };
            g.flushing = true;
            let permits = Arc::clone(&self.permits);
            let task_id = id.clone();
            let handle = self.in_flight.spawn(async move {
                // The semaphore is never closed; without a permit the flush runs anyway.
                let _permit = permits.acquire_owned().await.ok();
                FlushResult { id: task_id, resolved, integrations: job.run().await }
            });
            self.in_flight_ids.insert(handle.id(), id);
            started += 1;
        }
        for res in nothing_to_send {
            self.finish(res);
        }
        self.publish();
        started
    }

    /// Waits for every flush in flight and applies the results.
    pub async fn wait_idle(&mut self) {
        while let Some(r) = self.in_flight.join_next_with_id().await {
            self.complete(r);
        }
    }

    /// [`Notifier::start_due`] then [`Notifier::wait_idle`]: one step of simulated time.
    pub async fn tick(&mut self, now: i64) -> usize {
        let n = self.start_due(now).await;
        self.wait_idle().await;
        n
    }

    fn complete(&mut self, r: Result<(tokio::task::Id, FlushResult), tokio::task::JoinError>) {
        match r {
            Ok((task, res)) => {
                self.in_flight_ids.remove(&task);
                self.finish(res);
            }
            Err(e) => {
                // A flush task panicked or was aborted: the group flushes again later.
                if let Some(id) = self.in_flight_ids.remove(&e.id())
                    && let Some(g) = self.groups.get_mut(&id)
                {
                    g.flushing = false;
                }
                tracing::error!(panicked = e.is_panic(), "notification flush task ended abnormally");
            }
        }
        self.publish();
    }

    /// Applies a flush's result to its group.
    fn finish(&mut self, res: FlushResult) {
        let receiver = self.tree.route(res.id.0).opts.receiver.clone();
        let Some(g) = self.groups.get_mut(&res.id) else { return };
        g.flushing = false;
        let mut ok = true;
        for ir in res.integrations {
            if ir.read_failed {
                self.stats.nflog_read_errors.fetch_add(1, Ordering::Relaxed);
            }
            if ir.log_failed {
                self.stats.nflog_write_errors.fetch_add(1, Ordering::Relaxed);
            }
            let key = (g.log_key.clone(), receiver.clone(), ir.integration.clone());
            match ir.outcome {
                Outcome::Sent(e) => {
                    self.stats.count(&receiver, &ir.integration, |c| c.sent += 1);
                    self.nflog.insert(key, e);
                }
                Outcome::Logged(e) => {
                    self.nflog.insert(key, e);
                }
                Outcome::Skipped(e) => {
                    self.stats.count(&receiver, &ir.integration, |c| c.deduplicated += 1);
                    if let Some(e) = e {
                        let newer = self.nflog.get(&key).is_none_or(|c| c.sent_at < e.sent_at);
                        if newer {
                            self.nflog.insert(key, e);
                        }
                    }
                }
                Outcome::Failed => {
                    ok = false;
                    self.stats.count(&receiver, &ir.integration, |c| c.failed += 1);
                }
            }
        }
        if ok {
            for (labels, ends_at) in res.resolved {
                let unchanged = g.alerts.get(&labels).is_some_and(|a| a.is_resolved() && a.ends_at == ends_at);
                if unchanged {
                    g.alerts.remove(&labels);
                    if let Some(t) = self.alerts.get_mut(&labels) {
                        t.groups.retain(|id| *id != res.id);
                    }
                }
            }
        }
        if g.alerts.is_empty() {
            self.groups.remove(&res.id);
        }
    }

    /// Forgets expired notification-log entries (at most once a minute).
    fn prune_nflog(&mut self, now: i64) {
        if now.saturating_sub(self.nflog_pruned_at) < 60_000 {
            return;
        }
        self.nflog_pruned_at = now;
        self.nflog.retain(|_, e| e.expires_at > now);
    }

    /// Publishes the groups' status for [`NotifierHandle::groups`] and the gauges.
    fn publish(&self) {
        let mut list = Vec::with_capacity(self.groups.len());
        let (mut firing, mut resolved) = (0u64, 0u64);
        for t in self.alerts.values() {
            if t.groups.is_empty() {
                continue;
            }
            match t.alert.status {
                AlertStatus::Firing => firing += 1,
                AlertStatus::Resolved => resolved += 1,
            }
        }
        // Last notification per (group log key, receiver), in one pass over the log.
        let mut last_sent: HashMap<(&str, &str), i64> = HashMap::with_capacity(self.nflog.len());
        for ((k, rc, _), e) in &self.nflog {
            let v = last_sent.entry((k.as_str(), rc.as_str())).or_insert(e.sent_at);
            *v = (*v).max(e.sent_at);
        }
        for ((route, _), g) in &self.groups {
            let r = self.tree.route(*route);
            let last = last_sent.get(&(g.log_key.as_str(), r.opts.receiver.as_str())).copied();
            list.push(GroupStatus {
                group_key: g.key.clone(),
                route_id: r.id.clone(),
                receiver: r.opts.receiver.clone(),
                labels: g.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect(),
                firing: g.alerts.values().filter(|a| !a.is_resolved()).count(),
                resolved: g.alerts.values().filter(|a| a.is_resolved()).count(),
                next_flush_ms: g.next_flush,
                last_notified_ms: last,
            });
        }
        self.stats.groups.store(self.groups.len() as u64, Ordering::Relaxed);
        self.stats.alerts_firing.store(firing, Ordering::Relaxed);
        self.stats.alerts_resolved.store(resolved, Ordering::Relaxed);
        self.status.send_replace(Arc::new(list));
    }

    /// The real loop: takes alert sets from `alerts` (the latest replaces any not yet
    /// taken), flushes groups when due by `clock` (sleeping with tokio timers), applies
    /// flush results as they come, and stops on `shutdown` (flushes in flight get 5 s, then
    /// are aborted; the notification log makes the next start resume where this one left).
    pub async fn run<C: Clock>(
        mut self,
        clock: C,
        mut alerts: watch::Receiver<Arc<Vec<NotifyAlert>>>,
        shutdown: CancellationToken,
    ) {
        let mut input_open = true;
        loop {
            let now = clock.now_ms();
            self.start_due(now).await;
            // Wake at the next deadline, and at least once a minute (a clock that jumps).
            let wait_ms = self.next_deadline().map_or(60_000, |d| d.saturating_sub(now).clamp(0, 60_000));
            let sleep = tokio::time::sleep(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(r) = self.in_flight.join_next_with_id(), if !self.in_flight.is_empty() => self.complete(r),
                changed = alerts.changed(), if input_open => match changed {
                    Ok(()) => {
                        let set = alerts.borrow_and_update().clone();
                        self.update(clock.now_ms(), &set);
                    }
                    Err(_) => input_open = false,
                },
                _ = sleep => {}
            }
        }
        let drain = async {
            while let Some(r) = self.in_flight.join_next_with_id().await {
                self.complete(r);
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), drain).await.is_err() {
            self.in_flight.abort_all();
            tracing::warn!("notifier stopped with flushes in flight; they resume after restart");
        }
    }
}

/// Everything one group's flush needs, owned (it runs as a task).
struct FlushJob<D: Dispatch> {
    log_key: String,
    receiver: String,
    integrations: Vec<Integration>,
    cached: Vec<Option<NflogEntry>>,
    notification: Arc<Notification>,
    firing: Vec<u64>,
    resolved: Vec<u64>,
    repeat_ms: i64,
    now: i64,
    retention_ms: i64,
    deadline: Duration,
    store: Store,
    dispatch: Arc<D>,
}

impl<D: Dispatch> FlushJob<D> {
    /// Runs every integration at once; results in integration order.
    async fn run(self) -> Vec<IntegrationResult> {
        let job = Arc::new(self);
        let mut set = JoinSet::new();
        for index in 0..job.integrations.len() {
            let job = Arc::clone(&job);
            set.spawn(async move { (index, job.integration(index).await) });
        }
        let mut out: Vec<Option<IntegrationResult>> = (0..job.integrations.len()).map(|_| None).collect();
        while let Some(r) = set.join_next().await {
            if let Ok((i, res)) = r
                && let Some(slot) = out.get_mut(i)
            {
                *slot = Some(res);
            }
        }
        // A panicked integration counts as failed.
        out.into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.unwrap_or_else(|| IntegrationResult {
                    integration: job.integrations[i].name.clone(),
                    outcome: Outcome::Failed,
                    read_failed: false,
                    log_failed: false,
                })
            })
            .collect()
    }

    async fn integration(&self, index: usize) -> IntegrationResult {
        let integ = &self.integrations[index];
        let cached = self.cached[index].clone();
        let mut res = IntegrationResult {
            integration: integ.name.clone(),
            outcome: Outcome::Failed,
            read_failed: false,
            log_failed: false,
        };
        // The store is the authority (another agent may have notified); if it cannot be
        // read, or lags what this process wrote, the newer entry wins.
        let stored = match self.store.notification_entry(&self.log_key, &self.receiver, &integ.name, self.now).await {
            Ok(e) => e,
            Err(e) => {
                res.read_failed = true;
                tracing::warn!(error = %e, receiver = %self.receiver, integration = %integ.name,
                    "reading the notification log failed; using the last known entry");
                None
            }
        };
        let entry = match (stored, cached) {
            (Some(s), Some(c)) => Some(if c.sent_at > s.sent_at { c } else { s }),
            (s, c) => s.or(c).filter(|e| e.expires_at > self.now),
        };
        if !needs_update(entry.as_ref(), &self.firing, &self.resolved, integ.send_resolved, self.repeat_ms, self.now) {
            res.outcome = Outcome::Skipped(entry);
            return res;
        }
        let new_entry = NflogEntry::new(
            &self.log_key,
            &self.receiver,
            &integ.name,
            self.firing.clone(),
            self.resolved.clone(),
            self.now,
            self.now.saturating_add(self.retention_ms),
        );
        if !integ.send_resolved && self.firing.is_empty() {
            res.log_failed = self.log(&new_entry).await;
            res.outcome = Outcome::Logged(new_entry);
            return res;
        }
        match tokio::time::timeout(self.deadline, self.dispatch.send(&self.receiver, index, &self.notification)).await {
            Ok(Ok(())) => {
                res.log_failed = self.log(&new_entry).await;
                res.outcome = Outcome::Sent(new_entry);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, receiver = %self.receiver, integration = %integ.name, "notification failed");
            }
            Err(_) => {
                tracing::warn!(receiver = %self.receiver, integration = %integ.name, "notification timed out");
            }
        }
        res
    }

    /// Writes `e` to the notification log; true if that failed.
    async fn log(&self, e: &NflogEntry) -> bool {
        match self.store.log_notification(e).await {
            Ok(()) => false,
            Err(err) => {
                tracing::warn!(error = %err, receiver = %self.receiver, integration = %e.integration,
                    "writing the notification log failed");
                true
            }
        }
    }
}

/// Alertmanager's deduplication rule (`DedupStage.needsUpdate`); see the module
/// documentation. `firing` and `resolved` are sorted fingerprints.
pub fn needs_update(
    entry: Option<&NflogEntry>,
    firing: &[u64],
    resolved: &[u64],
    send_resolved: bool,
    repeat_ms: i64,
    now: i64,
) -> bool {
    let Some(e) = entry else { return !firing.is_empty() };
    if !e.is_firing_subset(firing) {
        return true;
    }
    if firing.is_empty() {
        return !e.firing.is_empty();
    }
    if send_resolved && !e.is_resolved_subset(resolved) {
        return true;
    }
    e.sent_at < now.saturating_sub(repeat_ms)
}

/// Alertmanager's order of alerts in a notification: by `job`, then `instance` (alerts
/// with the label first), then by label set.
fn alert_order(a: &NotifyAlert, b: &NotifyAlert) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    for key in ["job", "instance"] {
        match (a.labels.get(key), b.labels.get(key)) {
            (None, None) => continue,
            (None, Some(_)) => return Ordering::Greater,
            (Some(_), None) => return Ordering::Less,
            (Some(x), Some(y)) if x != y => return x.cmp(y),
            _ => {}
        }
    }
    a.labels.cmp(&b.labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(firing: &[u64], resolved: &[u64], sent_at: i64) -> NflogEntry {
        NflogEntry::new("g", "r", "i", firing.to_vec(), resolved.to_vec(), sent_at, i64::MAX)
    }

    #[test]
    fn dedup_rule_is_alertmanagers() {
        let h = 3_600_000;
        // No entry: only firing alerts are worth a first notification.
        assert!(needs_update(None, &[1], &[], true, 4 * h, 0));
        assert!(!needs_update(None, &[], &[1], true, 4 * h, 0));
        let e = entry(&[1, 2], &[], 0);
        // A new firing alert.
        assert!(needs_update(Some(&e), &[1, 3], &[], true, 4 * h, 1));
        // Fewer firing, the other resolved: only with send_resolved.
        assert!(needs_update(Some(&e), &[1], &[2], true, 4 * h, 1));
        assert!(!needs_update(Some(&e), &[1], &[2], false, 4 * h, 1));
        // All resolved: always (clears the log), even without send_resolved.
        assert!(needs_update(Some(&e), &[], &[1, 2], false, 4 * h, 1));
        let all_resolved = entry(&[], &[1, 2], 0);
        assert!(!needs_update(Some(&all_resolved), &[], &[1, 2], true, 4 * h, 5 * h));
        // Unchanged: repeat strictly after repeat_interval.
        assert!(!needs_update(Some(&e), &[1, 2], &[], true, 4 * h, 4 * h));
        assert!(needs_update(Some(&e), &[1, 2], &[], true, 4 * h, 4 * h + 1));
    }

    #[test]
    fn alerts_ordered_by_job_instance_then_labels() {
        let a =
            |p: &[(&str, &str)]| NotifyAlert::new(Labels::from_pairs(p), Labels::empty(), AlertStatus::Firing, 0, None);
        let mut v = [
            a(&[("alertname", "Z")]),
            a(&[("alertname", "Y"), ("job", "b")]),
            a(&[("alertname", "X"), ("job", "a"), ("instance", "2")]),
            a(&[("alertname", "X"), ("job", "a"), ("instance", "1")]),
        ];
        v.sort_by(alert_order);
        let names: Vec<String> = v.iter().map(|a| a.labels.to_string()).collect();
        assert_eq!(
            names,
            [
                r#"{alertname="X", instance="1", job="a"}"#,
                r#"{alertname="X", instance="2", job="a"}"#,
                r#"{alertname="Y", job="b"}"#,
                r#"{alertname="Z"}"#
            ]
        );
    }
}
