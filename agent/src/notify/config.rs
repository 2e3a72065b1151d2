//! The notifier's configuration (the `notify:` section of `warden.yaml`), in Alertmanager's
//! shape:
//!
//! ```yaml
//! route:                       # the root: matches every alert
//!   receiver: oncall           # required at the root; children inherit it
//!   group_by: [alertname, service]   # `[...]` groups by all labels; absent = one group
//!   group_wait: 30s            # default 30s
//!   group_interval: 5m         # default 5m
//!   repeat_interval: 4h        # default 4h
//!   routes:
//!     - matchers: ['severity="critical"', 'team=~"db|api"']
//!       receiver: pager
//!       continue: true         # also try the next siblings
//!     - matchers: ['{env="dev"}']
//!       receiver: devnull
//! inhibit_rules:
//!   - source_matchers: ['severity="critical"']
//!     target_matchers: ['severity="warning"']
//!     equal: [service]
//! receivers:                   # see `receivers` (email, webhook, Slack, ...)
//!   - name: oncall
//!     webhook_configs: [{ url_file: /run/secrets/hook }]
//! limits:
//!   max_groups: 1000
//!   max_alerts_per_group: 1000
//! ```
//!
//! Stricter than Alertmanager: an inhibition rule needs both `source_matchers` and
//! `target_matchers` (an empty list would match every alert, muting everything), and the
//! deprecated `match`/`match_re`/`source_match`/`target_match` forms are not accepted.
//!
//! Durations are written with units (`30s`, `5m`, `4h`, `1d`). `receiver`, `group_by`,
//! `group_wait`, `group_interval` and `repeat_interval` not set on a route are inherited
//! from its parent. Every struct denies unknown fields (so Alertmanager's deprecated
//! `match`/`match_re` are refused, with their path, rather than ignored).
//!
//! Loading is two-phase: serde builds these types, then [`NotifyConfig::validate`] (pure)
//! checks everything and reports every problem with its path
//! (`route.routes[1].receiver: unknown receiver "pager"`); building the routing tree
//! ([`crate::notify::route::RouteTree::build`]) and the receivers does the rest.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::matcher::Matchers;
pub use super::receivers::ReceiverConfig;

/// Default `group_wait` of the root route.
pub const DEFAULT_GROUP_WAIT: Duration = Duration::from_secs(30);
/// Default `group_interval` of the root route.
pub const DEFAULT_GROUP_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Default `repeat_interval` of the root route.
pub const DEFAULT_REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);
/// The `group_by` entry meaning "every label".
pub const GROUP_BY_ALL: &str = "...";
/// Deepest routing tree accepted.
pub const MAX_ROUTE_DEPTH: usize = 32;
/// Most routes in the tree.
pub const MAX_ROUTES: usize = 10_000;

/// The notifier's configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The root of the routing tree.
    pub route: RouteConfig,
    /// Inhibition rules.
    #[serde(default)]
    pub inhibit_rules: Vec<InhibitRuleConfig>,
    /// Receivers, referenced by name from routes.
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
    /// Bounds of the notifier's memory.
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// One node of the routing tree.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Receiver of the alerts this route takes (inherited if absent).
    #[serde(default)]
    pub receiver: Option<String>,
    /// Labels to group by; `["..."]` = all labels; inherited if absent; `[]` = one group.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// Alertmanager matchers the alert must all satisfy (not allowed on the root).
    #[serde(default)]
    pub matchers: Matchers,
    /// Whether matching continues with the next sibling after this route matched.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// How long a new group waits for more alerts before its first notification.
    #[serde(default, deserialize_with = "opt_duration")]
    pub group_wait: Option<Duration>,
    /// How long a group waits before notifying about changes (new or resolved alerts).
    #[serde(default, deserialize_with = "opt_duration")]
    pub group_interval: Option<Duration>,
    /// How long before an unchanged group is notified again.
    #[serde(default, deserialize_with = "opt_duration")]
    pub repeat_interval: Option<Duration>,
    /// Child routes, tried in order.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// An inhibition rule: while an alert matching `source_matchers` fires, alerts matching
/// `target_matchers` with the same values of the `equal` labels are not notified.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRuleConfig {
    /// What the inhibiting (source) alert matches.
    #[serde(default)]
    pub source_matchers: Matchers,
    /// What the inhibited (target) alert matches.
    #[serde(default)]
    pub target_matchers: Matchers,
    /// Labels whose values must be equal in source and target (absent = absent).
    #[serde(default)]
    pub equal: Vec<String>,
}

/// Bounds of the notifier's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most aggregation groups; alerts that would open another are dropped and counted.
    #[serde(default = "default_max_groups")]
    pub max_groups: usize,
    /// Most alerts in one group; further alerts are dropped and counted.
    #[serde(default = "default_max_alerts_per_group")]
    pub max_alerts_per_group: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig { max_groups: default_max_groups(), max_alerts_per_group: default_max_alerts_per_group() }
    }
}

fn default_max_groups() -> usize {
    1000
}

fn default_max_alerts_per_group() -> usize {
    1000
}

/// A humantime duration (`30s`, `5m`, `1h30m`, `1d`) or absent.
fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(s.trim())
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration (e.g. 30s, 5m, 4h): {e}")))
}

impl NotifyConfig {
    /// Checks the configuration without I/O and returns every problem, each prefixed with
    /// its path. Receivers are checked by their own `validate`.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        let mut names = BTreeSet::new();
        for (i, r) in self.receivers.iter().enumerate() {
            if !names.insert(r.name.as_str()) {
                errors.push(format!("receivers[{i}].name: duplicate receiver name {:?}", r.name));
            }
            if let Err(e) = r.validate() {
                errors.extend(e.0);
            }
        }
        let root = &self.route;
        if root.receiver.as_deref().is_none_or(str::is_empty) {
            errors.push("route.receiver: required on the root route".to_owned());
        }
        if !root.matchers.is_empty() {
            errors.push("route.matchers: the root route must match every alert".to_owned());
        }
        if root.continue_matching {
            errors.push("route.continue: not allowed on the root route".to_owned());
        }
        let mut count = 0;
        validate_route(root, "route", 0, &names, &mut count, &mut errors);
        if count > MAX_ROUTES {
            errors.push(format!("route: more than {MAX_ROUTES} routes"));
        }
        for (i, r) in self.inhibit_rules.iter().enumerate() {
            let path = format!("inhibit_rules[{i}]");
            if r.source_matchers.is_empty() {
                errors.push(format!("{path}.source_matchers: at least one matcher is required"));
            }
            if r.target_matchers.is_empty() {
                errors.push(format!("{path}.target_matchers: at least one matcher is required"));
            }
            for (j, l) in r.equal.iter().enumerate() {
                if !is_label_name(l) {
                    errors.push(format!("{path}.equal[{j}]: invalid label name"));
                }
            }
        }
        if self.limits.max_groups == 0 {
            errors.push("limits.max_groups: must be at least 1".to_owned());
        }
        if self.limits.max_alerts_per_group == 0 {
            errors.push("limits.max_alerts_per_group: must be at least 1".to_owned());
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

fn validate_route(
    r: &RouteConfig,
    path: &str,
    depth: usize,
    receivers: &BTreeSet<&str>,
    count: &mut usize,
    errors: &mut Vec<String>,
) {
    *count += 1;
    if depth > MAX_ROUTE_DEPTH {
        errors.push(format!("{path}: routing tree deeper than {MAX_ROUTE_DEPTH}"));
        return;
    }
    if let Some(name) = &r.receiver
        && !receivers.contains(name.as_str())
    {
        errors.push(format!("{path}.receiver: unknown receiver {name:?}"));
    }
    if let Some(group_by) = &r.group_by {
        let mut seen = BTreeSet::new();
        for (i, l) in group_by.iter().enumerate() {
            if l == GROUP_BY_ALL {
                if group_by.len() > 1 {
                    errors.push(format!("{path}.group_by: \"...\" must be the only entry"));
                }
            } else if !is_label_name(l) {
                errors.push(format!("{path}.group_by[{i}]: invalid label name"));
            } else if !seen.insert(l) {
                errors.push(format!("{path}.group_by[{i}]: duplicate label"));
            }
        }
    }
    if r.group_interval == Some(Duration::ZERO) {
        errors.push(format!("{path}.group_interval: must be positive"));
    }
    if r.repeat_interval == Some(Duration::ZERO) {
        errors.push(format!("{path}.repeat_interval: must be positive"));
    }
    for (i, child) in r.routes.iter().enumerate() {
        if *count > MAX_ROUTES {
            return;
        }
        validate_route(child, &format!("{path}.routes[{i}]"), depth + 1, receivers, count, errors);
    }
}

/// A classic label name: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}
