//! The routing tree: which routes (and so which receivers and groupings) an alert takes.
//!
//! Alertmanager's algorithm: an alert enters at the root, which matches everything. At a
//! route that matches, the children are tried in order; every matching child is descended
//! into, and after a matching child whose `continue` is false the remaining siblings are
//! skipped. If no child matched, the route itself is the match. So one alert can take
//! several routes (with `continue`), and always takes at least one (the root).
//!
//! Settings a route does not set are inherited from its parent (`receiver`, `group_by`,
//! `group_wait`, `group_interval`, `repeat_interval`); the root's defaults are 30 s, 5 m and
//! 4 h, and no `group_by` (one group per route).
//!
//! Each route has Alertmanager's key (`{}` for the root, then the parent's key, `/`, and
//! the route's matchers sorted and printed, e.g. `{}/{severity="critical"}`), which is the
//! first half of a group key (`<route key>:<group labels>`), and an id that adds the
//! route's position among its siblings (two siblings may have equal matchers).
//!
//! The tree is stored flat (index 0 is the root) and built from a configuration that
//! [`NotifyConfig::validate`](super::config::NotifyConfig::validate) accepted; its depth is
//! bounded there, so matching recurses at most that deep.

use std::time::Duration;

use warden_rules::labels::Labels;

use super::config::{DEFAULT_GROUP_INTERVAL, DEFAULT_GROUP_WAIT, DEFAULT_REPEAT_INTERVAL, GROUP_BY_ALL, RouteConfig};
use super::matcher::{Matcher, format_list, matches_all, sort_matchers};

/// How a route groups alerts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupBy {
    /// By every label (`group_by: ['...']`): one group per alert.
    All,
    /// By these labels (sorted; empty = one group for the route).
    Labels(Vec<String>),
}

/// A route's settings after inheritance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteOpts {
    /// Receiver name.
    pub receiver: String,
    /// Grouping.
    pub group_by: GroupBy,
    /// `group_wait` (ms).
    pub group_wait_ms: i64,
    /// `group_interval` (ms).
    pub group_interval_ms: i64,
    /// `repeat_interval` (ms).
    pub repeat_interval_ms: i64,
}

/// One route of the tree.
#[derive(Clone, Debug)]
pub struct Route {
    /// Settings after inheritance.
    pub opts: RouteOpts,
    /// Matchers, sorted as Alertmanager sorts them.
    pub matchers: Vec<Matcher>,
    /// `continue`.
    pub continue_matching: bool,
    /// Indices of the children, in order.
    pub children: Vec<usize>,
    /// Alertmanager's route key (`{}/{a="b"}`).
    pub key: String,
    /// The key with each level's sibling position (`{}/{a="b"}/0`): unique in the tree.
    pub id: String,
}

/// The whole tree; index 0 is the root.
#[derive(Clone, Debug)]
pub struct RouteTree {
    routes: Vec<Route>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl RouteTree {
    /// Builds the tree from a validated root route (inheriting settings downwards).
    pub fn build(root: &RouteConfig) -> RouteTree {
        let opts = RouteOpts {
            receiver: root.receiver.clone().unwrap_or_default(),
            group_by: GroupBy::Labels(Vec::new()),
            group_wait_ms: ms(DEFAULT_GROUP_WAIT),
            group_interval_ms: ms(DEFAULT_GROUP_INTERVAL),
            repeat_interval_ms: ms(DEFAULT_REPEAT_INTERVAL),
        };
        let mut tree = RouteTree { routes: Vec::new() };
        tree.add(root, &opts, None, 0);
        tree
    }

    /// Adds `cfg` (child number `position` of `parent`) and its subtree; returns its index.
    fn add(&mut self, cfg: &RouteConfig, parent_opts: &RouteOpts, parent: Option<usize>, position: usize) -> usize {
        let mut opts = parent_opts.clone();
        if let Some(r) = &cfg.receiver {
            opts.receiver = r.clone();
        }
        if let Some(g) = &cfg.group_by {
            opts.group_by = if g.iter().any(|l| l == GROUP_BY_ALL) {
                GroupBy::All
            } else {
                let mut names = g.clone();
                names.sort();
                names.dedup();
                GroupBy::Labels(names)
            };
        }
        if let Some(d) = cfg.group_wait {
            opts.group_wait_ms = ms(d);
        }
        if let Some(d) = cfg.group_interval {
            opts.group_interval_ms = ms(d).max(1);
        }
        if let Some(d) = cfg.repeat_interval {
            opts.repeat_interval_ms = ms(d).max(1);
        }
        let mut matchers = cfg.matchers.0.clone();
        sort_matchers(&mut matchers);
        let printed = format_list(&matchers);
        let (key, id) = match parent {
            None => (printed.clone(), printed),
            Some(p) => {
                let parent = &self.routes[p];
                (format!("{}/{printed}", parent.key), format!("{}/{printed}/{position}", parent.id))
            }
        };
        let index = self.routes.len();
        self.routes.push(Route {
            opts: opts.clone(),
            matchers,
            continue_matching: cfg.continue_matching,
            children: Vec::new(),
            key,
            id,
        });
        for (i, child) in cfg.routes.iter().enumerate() {
            let c = self.add(child, &opts, Some(index), i);
            self.routes[index].children.push(c);
        }
        index
    }

    /// The route at `index` (0 = root). Panics on an index not from this tree.
    pub fn route(&self, index: usize) -> &Route {
        &self.routes[index]
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Always false: the tree has a root.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The routes an alert with `labels` takes, in tree order (never empty).
    pub fn match_routes(&self, labels: &Labels) -> Vec<usize> {
        let mut out = Vec::new();
        self.match_into(0, labels, &mut out);
        if out.is_empty() {
            // The root matches every alert (validation forbids matchers on it).
            out.push(0);
        }
        out
    }

    fn match_into(&self, index: usize, labels: &Labels, out: &mut Vec<usize>) -> bool {
        let route = &self.routes[index];
        if !matches_all(&route.matchers, labels) {
            return false;
        }
        let before = out.len();
        for &c in &route.children {
            if self.match_into(c, labels, out) && !self.routes[c].continue_matching {
                break;
            }
        }
        if out.len() == before {
            out.push(index);
        }
        true
    }

    /// The labels an alert with `labels` is grouped by on route `index`: those named in
    /// `group_by` that it has (all of them for `...`).
    pub fn group_labels(&self, index: usize, labels: &Labels) -> Labels {
        match &self.routes[index].opts.group_by {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                labels.keep(&names)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::NotifyConfig;

    fn tree(yaml: &str) -> RouteTree {
        let cfg: NotifyConfig = serde_saphyr::from_str(yaml).unwrap();
        RouteTree::build(&cfg.route)
    }

    #[test]
    fn keys_and_ids_as_alertmanager() {
        let t = tree(
            r#"
route:
  receiver: a
  routes:
    - matchers: ['team="x"', 'env=~"prod|stage"']
      routes:
        - matchers: ['sev="page"']
    - matchers: ['team="x"', 'env=~"prod|stage"']
receivers: [{name: a}]
"#,
        );
        assert_eq!(t.route(0).key, "{}");
        assert_eq!(t.route(1).key, r#"{}/{env=~"prod|stage",team="x"}"#);
        assert_eq!(t.route(2).key, r#"{}/{env=~"prod|stage",team="x"}/{sev="page"}"#);
        assert_eq!(t.route(1).id, r#"{}/{env=~"prod|stage",team="x"}/0"#);
        assert_eq!(t.route(3).id, r#"{}/{env=~"prod|stage",team="x"}/1"#);
        assert_eq!(t.route(1).key, t.route(3).key);
    }
}
