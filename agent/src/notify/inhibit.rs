//! Inhibition: while a *source* alert fires, *target* alerts with the same values of the
//! rule's `equal` labels are not notified (a critical alert mutes the warnings about the same
//! service).
//!
//! Alertmanager's rules, exactly:
//! - sources are the firing alerts (resolved ones never inhibit) that match every
//!   `source_matchers`; silenced alerts still inhibit;
//! - a target matches every `target_matchers`, and is muted if some source has, for every
//!   name in `equal`, the same value (an absent label equals an absent label);
//! - an alert that matches both the source and the target matchers is not muted by sources
//!   that also match the target matchers (an alert cannot inhibit itself, nor its peers).
//!
//! [`Inhibitor::index`] takes the current firing alerts and builds, per rule, a map from
//! the `equal` values to the number of sources with those values (and how many of them
//! are not targets too), so each target is checked in time proportional to the rules.

use std::collections::HashMap;

use warden_rules::labels::Labels;

use super::alert::{AlertStatus, NotifyAlert};
use super::config::InhibitRuleConfig;
use super::matcher::Matcher;

/// One compiled inhibition rule.
#[derive(Clone, Debug)]
pub struct InhibitRule {
    source: Vec<Matcher>,
    target: Vec<Matcher>,
    equal: Vec<String>,
}

impl InhibitRule {
    /// A rule from its configuration.
    pub fn new(cfg: &InhibitRuleConfig) -> InhibitRule {
        let mut equal = cfg.equal.clone();
        equal.sort();
        equal.dedup();
        InhibitRule { source: cfg.source_matchers.0.clone(), target: cfg.target_matchers.0.clone(), equal }
    }

    fn equal_values(&self, labels: &Labels) -> Vec<String> {
        self.equal.iter().map(|n| labels.get(n).unwrap_or("").to_owned()).collect()
    }
}

/// The inhibition rules.
#[derive(Clone, Debug, Default)]
pub struct Inhibitor {
    rules: Vec<InhibitRule>,
}

/// Sources with one set of `equal` values: how many, and how many do not match the
/// rule's target matchers.
#[derive(Clone, Copy, Debug, Default)]
struct SourceCount {
    all: usize,
    not_target: usize,
}

/// The sources of every rule among one set of alerts (see [`Inhibitor::index`]).
#[derive(Clone, Debug, Default)]
pub struct InhibitIndex {
    per_rule: Vec<HashMap<Vec<String>, SourceCount>>,
}

impl Inhibitor {
    /// The rules from their configurations.
    pub fn new(cfgs: &[InhibitRuleConfig]) -> Inhibitor {
        Inhibitor { rules: cfgs.iter().map(InhibitRule::new).collect() }
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True without rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Indexes the sources among `alerts` (only firing ones count).
    pub fn index<'a>(&self, alerts: impl IntoIterator<Item = &'a NotifyAlert>) -> InhibitIndex {
        let mut per_rule: Vec<HashMap<Vec<String>, SourceCount>> = vec![HashMap::new(); self.rules.len()];
        if self.rules.is_empty() {
            return InhibitIndex { per_rule };
        }
        for a in alerts {
            if a.status != AlertStatus::Firing {
                continue;
            }
            for (rule, map) in self.rules.iter().zip(per_rule.iter_mut()) {
                if !rule.source.iter().all(|m| m.matches(&a.labels)) {
                    continue;
                }
                let c = map.entry(rule.equal_values(&a.labels)).or_default();
                c.all += 1;
                if !rule.target.iter().all(|m| m.matches(&a.labels)) {
                    c.not_target += 1;
                }
            }
        }
        InhibitIndex { per_rule }
    }

    /// Whether an alert with `labels` is inhibited by the sources in `index`.
    pub fn mutes(&self, index: &InhibitIndex, labels: &Labels) -> bool {
        self.rules.iter().zip(&index.per_rule).any(|(rule, map)| {
            if map.is_empty() || !rule.target.iter().all(|m| m.matches(labels)) {
                return false;
            }
            let Some(c) = map.get(&rule.equal_values(labels)) else { return false };
            // A target that is also a source may only be inhibited by sources that are not
            // targets themselves.
            let two_sided = rule.source.iter().all(|m| m.matches(labels));
            if two_sided { c.not_target > 0 } else { c.all > 0 }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::matcher::Matchers;

    fn rule(source: &str, target: &str, equal: &[&str]) -> InhibitRuleConfig {
        InhibitRuleConfig {
            source_matchers: Matchers(Matcher::parse_list(source).unwrap()),
            target_matchers: Matchers(Matcher::parse_list(target).unwrap()),
            equal: equal.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn alert(pairs: &[(&str, &str)], status: AlertStatus) -> NotifyAlert {
        NotifyAlert::new(Labels::from_pairs(pairs), Labels::empty(), status, 0, None)
    }

    #[test]
    fn critical_inhibits_warning_of_same_service_only() {
        let inh = Inhibitor::new(&[rule(r#"severity="critical""#, r#"severity="warning""#, &["service"])]);
        let crit = alert(&[("alertname", "Down"), ("severity", "critical"), ("service", "api")], AlertStatus::Firing);
        let idx = inh.index([&crit]);
        let warn_api = Labels::from_pairs(&[("alertname", "Slow"), ("severity", "warning"), ("service", "api")]);
        let warn_db = Labels::from_pairs(&[("alertname", "Slow"), ("severity", "warning"), ("service", "db")]);
        let warn_none = Labels::from_pairs(&[("alertname", "Slow"), ("severity", "warning")]);
        assert!(inh.mutes(&idx, &warn_api));
        assert!(!inh.mutes(&idx, &warn_db));
        assert!(!inh.mutes(&idx, &warn_none));
        assert!(!inh.mutes(&idx, &crit.labels));
        // A resolved source inhibits nothing.
        let resolved = alert(&[("severity", "critical"), ("service", "api")], AlertStatus::Resolved);
        assert!(!inh.mutes(&inh.index([&resolved]), &warn_api));
        // Absent equals absent.
        let crit_none = alert(&[("severity", "critical")], AlertStatus::Firing);
        assert!(inh.mutes(&inh.index([&crit_none]), &warn_none));
    }

    #[test]
    fn an_alert_matching_both_sides_does_not_inhibit_itself() {
        let inh = Inhibitor::new(&[rule(r#"alertname="A""#, r#"team="x""#, &[])]);
        let both = alert(&[("alertname", "A"), ("team", "x")], AlertStatus::Firing);
        assert!(!inh.mutes(&inh.index([&both]), &both.labels));
        let source_only = alert(&[("alertname", "A"), ("team", "y")], AlertStatus::Firing);
        assert!(inh.mutes(&inh.index([&both, &source_only]), &both.labels));
    }
}
