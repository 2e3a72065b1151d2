//! The rule manager: the set of rule files in force, their groups and schedules, and
//! reloading them without ever dropping the last good rules.
//!
//! [`RuleManager::reload`] reads every file named by the configured paths and glob
//! patterns. Only if every file loads and every group builds does the new set replace
//! the old one; otherwise the old groups keep running and the errors (file, line, group,
//! rule) are returned and kept in [`ReloadStatus`]. A group that survives a reload (same
//! file and name) keeps its alerts, rule outputs and schedule; a removed group writes
//! staleness markers for its outputs. [`RuleManager::reload_if_changed`] reloads only when
//! the files' contents changed (a fingerprint over paths and bytes), so watchers may fire
//! freely: see [`crate::watch`].
//!
//! [`RuleManager::encode_metrics`] renders the manager's own metrics in Prometheus' text
//! format (`warden_rules_last_reload_success`, `warden_rules_reload_errors_total`, and per
//! group evaluations, failures, missed iterations and last duration) for the agent's
//! `/metrics`.
//!
//! The manager is synchronous; the agent runs its loop (sleep until
//! [`RuleManager::next_due`], then [`RuleManager::eval_due`]) and holds it behind a mutex
//! that reloads also take, so an evaluation never sees half a reload.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use crate::group::{Group, GroupEvalReport, GroupOptions, Schedule};
use crate::promql::Engine;
use crate::rulefile;
use crate::storage::{Appendable, Queryable};

/// Largest rule file read (the loader enforces its own bound too; this one keeps the
/// fingerprint pass from reading a huge file the loader would refuse anyway).
const MAX_FILE_BYTES: u64 = 16 << 20;

/// The outcome of reloads so far, for `/metrics` and the API.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReloadStatus {
    /// Whether the last reload succeeded (`warden_rules_last_reload_success`).
    pub last_reload_success: bool,
    /// When the last successful reload happened (ms), if any.
    pub last_success_ms: Option<i64>,
    /// Reloads attempted.
    pub reloads_total: u64,
    /// Reloads refused because a file was bad (`warden_rules_reload_errors_total`).
    pub reload_errors_total: u64,
    /// The errors of the last failed reload, one per line; `None` after a success.
    pub last_error: Option<String>,
    /// Files in force (those of the last successful reload).
    pub files: Vec<PathBuf>,
}

/// Why a reload was refused; the previous rules keep running.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rule reload refused, previous rules kept:\n{}", .errors.join("\n"))]
pub struct ReloadError {
    /// Every problem found, each naming its file (and line, group and rule where known).
    pub errors: Vec<String>,
}

/// The groups in force and their schedules.
pub struct RuleManager {
    patterns: Vec<String>,
    opts: GroupOptions,
    groups: Vec<(Group, Schedule)>,
    status: ReloadStatus,
    fingerprint: Option<u64>,
    /// Per group key: (evaluations, evaluations with a failed rule). Kept across reloads
    /// for groups that survive; counters of removed groups go with them.
    counts: HashMap<String, (u64, u64)>,
}

impl RuleManager {
    /// A manager for `patterns` (paths or glob patterns), holding no rules until the first
    /// [`RuleManager::reload`].
    pub fn new(patterns: Vec<String>, opts: GroupOptions) -> Self {
        RuleManager {
            patterns,
            opts,
            groups: Vec::new(),
            status: ReloadStatus::default(),
            fingerprint: None,
            counts: HashMap::new(),
        }
    }

    /// The groups in force, in file order then group order.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.iter().map(|(g, _)| g)
    }

    /// The outcome of reloads so far.
    pub fn status(&self) -> &ReloadStatus {
        &self.status
    }

    /// Evaluation slots skipped so far by all groups in force.
    pub fn missed_iterations(&self) -> u64 {
        self.groups.iter().map(|(_, s)| s.missed_iterations()).sum()
    }

    /// When the next group evaluation is due (ms), if any group is loaded.
    pub fn next_due(&self) -> Option<i64> {
        self.groups.iter().map(|(_, s)| s.next_eval()).min()
    }

    /// Evaluates every group whose slot has come at `now`, at its slot's timestamp.
    pub fn eval_due<S: Queryable + Appendable>(
        &mut self,
        engine: &Engine,
        store: &S,
        now: i64,
    ) -> Vec<GroupEvalReport> {
        let mut reports = Vec::new();
        for (group, schedule) in &mut self.groups {
            if let Some(tick) = schedule.poll(now) {
                let report = group.eval(engine, store, tick.t);
                let c = self.counts.entry(group.key()).or_default();
                c.0 += 1;
                c.1 += u64::from(report.failed() > 0);
                reports.push(report);
            }
        }
        reports
    }

    /// Appends the manager's metrics to `out` in Prometheus' text format 0.0.4.
    pub fn encode_metrics(&self, out: &mut String) {
        let st = &self.status;
        let gauge = |out: &mut String, name: &str, help: &str, kind: &str, v: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        gauge(
            out,
            "warden_rules_last_reload_success",
            "Whether the last rule reload succeeded.",
            "gauge",
            f64::from(u8::from(st.last_reload_success)),
        );
        gauge(
            out,
            "warden_rules_last_reload_success_timestamp_seconds",
            "When the rules were last reloaded successfully.",
            "gauge",
            st.last_success_ms.map_or(0.0, |ms| ms as f64 / 1000.0),
        );
        gauge(out, "warden_rules_reloads_total", "Rule reloads attempted.", "counter", st.reloads_total as f64);
        gauge(
            out,
            "warden_rules_reload_errors_total",
            "Rule reloads refused because a file was invalid.",
            "counter",
            st.reload_errors_total as f64,
        );
        let families: [(&str, &str, &str); 5] = [
            ("warden_rules_group_evaluations_total", "counter", "Evaluations of the group."),
            (
                "warden_rules_group_evaluation_failures_total",
                "counter",
                "Evaluations in which a rule of the group failed.",
            ),
            (
                "warden_rules_group_iterations_missed_total",
                "counter",
                "Evaluation slots skipped because the loop was late.",
            ),
            ("warden_rules_group_last_duration_seconds", "gauge", "Duration of the group's last evaluation."),
            ("warden_rules_group_rules", "gauge", "Rules in the group."),
        ];
        for (i, (name, kind, help)) in families.iter().enumerate() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (g, sched) in &self.groups {
                let key = g.key();
                let (evals, failures) = self.counts.get(&key).copied().unwrap_or_default();
                let v = match i {
                    0 => evals as f64,
                    1 => failures as f64,
                    2 => sched.missed_iterations() as f64,
                    3 => g.evaluation_duration().as_secs_f64(),
                    _ => g.rules().len() as f64,
                };
                let _ = writeln!(out, "{name}{{rule_group=\"{}\"}} {v}", escape_label_value(&key));
            }
        }
    }

    /// A loader for this manager's files, to read and build them without holding the
    /// manager (see [`RuleLoader`]).
    pub fn loader(&self) -> RuleLoader {
        RuleLoader { patterns: self.patterns.clone(), opts: self.opts.clone() }
    }

    /// The fingerprint of the files at the last reload attempt, if any.
    pub fn fingerprint(&self) -> Option<u64> {
        self.fingerprint
    }

    /// Reloads if the files' paths or contents changed since the last attempt; `None` if
    /// nothing changed. Reads the files while holding `self`; an agent that evaluates
    /// concurrently uses [`RuleLoader`] and [`RuleManager::install`] instead.
    pub fn reload_if_changed<S: Appendable>(&mut self, store: &S, now: i64) -> Option<Result<usize, ReloadError>> {
        let loader = self.loader();
        if self.fingerprint == Some(loader.fingerprint()) {
            return None;
        }
        Some(self.install(loader.load(), store, now))
    }

    /// Loads every file and installs the result: see [`RuleManager::install`].
    pub fn reload<S: Appendable>(&mut self, store: &S, now: i64) -> Result<usize, ReloadError> {
        let prepared = self.loader().load();
        self.install(prepared, store, now)
    }

    /// Installs rules loaded by [`RuleLoader::load`]: if every file was good, replaces the
    /// groups in force (surviving groups keep their state and schedule; removed groups
    /// write staleness markers) and returns their number. On any error nothing changes but
    /// [`ReloadStatus`]. Cheap: no file is read here.
    pub fn install<S: Appendable>(
        &mut self,
        prepared: PreparedRules,
        store: &S,
        now: i64,
    ) -> Result<usize, ReloadError> {
        self.status.reloads_total += 1;
        self.fingerprint = Some(prepared.fingerprint);
        let built = match prepared.outcome {
            Ok(built) => built,
            Err(errors) => {
                self.status.last_reload_success = false;
                self.status.reload_errors_total += 1;
                self.status.last_error = Some(errors.join("\n"));
                return Err(ReloadError { errors });
            }
        };

        let mut old: HashMap<String, (Group, Schedule)> =
            std::mem::take(&mut self.groups).into_iter().map(|(g, s)| (g.key(), (g, s))).collect();
        for mut group in built {
            let entry = match old.remove(&group.key()) {
                Some((prev, schedule)) if prev.interval_ms() == group.interval_ms() => {
                    group.copy_state_from(&prev);
                    (group, schedule)
                }
                Some((prev, _)) => {
                    group.copy_state_from(&prev);
                    let schedule = group.schedule(now);
                    (group, schedule)
                }
                None => {
                    let schedule = group.schedule(now);
                    (group, schedule)
                }
            };
            self.groups.push(entry);
        }
        for (key, (mut gone, _)) in old {
            gone.mark_stale(store, now);
            self.counts.remove(&key);
        }
        self.status.last_reload_success = true;
        self.status.last_success_ms = Some(now);
        self.status.last_error = None;
        self.status.files = prepared.files;
        Ok(self.groups.len())
    }
}

/// Rule files read and groups built, ready for [`RuleManager::install`].
pub struct PreparedRules {
    fingerprint: u64,
    files: Vec<PathBuf>,
    outcome: Result<Vec<Group>, Vec<String>>,
}

impl PreparedRules {
    /// True if every file loaded and every group built.
    pub fn is_ok(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// Reads and builds a manager's rule files without holding the manager, so that file I/O
/// and PromQL parsing never block evaluation: `let p = loader.load();` outside the lock,
/// then `manager.install(p, ..)` under it.
#[derive(Clone)]
pub struct RuleLoader {
    patterns: Vec<String>,
    opts: GroupOptions,
}

impl RuleLoader {
    /// The fingerprint of the files as they are now: their paths and bytes, and the
    /// patterns that are invalid or name a missing file (so an unchanged broken set is not
    /// reloaded, and counted as an error, on every poll).
    pub fn fingerprint(&self) -> u64 {
        let (files, errors) = self.expand();
        fingerprint(&files, &errors)
    }

    /// Reads every file and builds every group, collecting all errors.
    pub fn load(&self) -> PreparedRules {
        let (files, mut errors) = self.expand();
        let fp = fingerprint(&files, &errors);
        let mut built: Vec<Group> = Vec::new();
        for path in &files {
            match rulefile::load_file(path) {
                Ok(file) => {
                    let name = path.display().to_string();
                    for g in &file.groups {
                        match Group::from_rule_group(&name, g, &self.opts) {
                            Ok(group) => built.push(group),
                            Err(e) => errors.push(e.to_string()),
                        }
                    }
                }
                Err(errs) => errors.extend(errs.iter().map(ToString::to_string)),
            }
        }
        let outcome = if errors.is_empty() { Ok(built) } else { Err(errors) };
        PreparedRules { fingerprint: fp, files, outcome }
    }

    /// The files the patterns name now, sorted and deduplicated, and the patterns that are
    /// invalid or name a missing file. A glob that matches nothing is not an error (as in
    /// Prometheus); a plain path that does not exist is.
    fn expand(&self) -> (Vec<PathBuf>, Vec<String>) {
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for p in &self.patterns {
            if !p.contains(['*', '?', '[']) {
                if Path::new(p).is_file() {
                    files.push(PathBuf::from(p));
                } else {
                    errors.push(format!("{p}: rule file not found"));
                }
                continue;
            }
            match glob::glob(p) {
                Ok(paths) => {
                    for entry in paths {
                        match entry {
                            Ok(path) if path.is_file() => files.push(path),
                            Ok(_) => {}
                            Err(e) => errors.push(format!("{p}: {e}")),
                        }
                    }
                }
                Err(e) => errors.push(format!("{p}: invalid glob pattern: {e}")),
            }
        }
        files.sort();
        files.dedup();
        (files, errors)
    }
}

/// Escapes a label value for the text format: backslash, double quote and newline.
fn escape_label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A hash of the file list, each file's bytes (unreadable or oversized files hash by
/// their error, so they still count as a change when they become readable) and the
/// pattern errors.
fn fingerprint(files: &[PathBuf], errors: &[String]) -> u64 {
    let mut h = DefaultHasher::new();
    errors.hash(&mut h);
    for f in files {
        f.hash(&mut h);
        match std::fs::metadata(f) {
            Ok(m) if m.len() <= MAX_FILE_BYTES => match std::fs::read(f) {
                Ok(bytes) => bytes.hash(&mut h),
                Err(e) => e.kind().hash(&mut h),
            },
            Ok(m) => m.len().hash(&mut h),
            Err(e) => e.kind().hash(&mut h),
        }
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;
    use crate::storage::{Db, DbConfig};

    const GOOD: &str = "groups:\n- name: g\n  interval: 10s\n  rules:\n  - alert: High\n    expr: x > 5\n";
    const GOOD2: &str = "groups:\n- name: g\n  interval: 10s\n  rules:\n  - alert: High\n    expr: x > 5\n  - record: x:doubled\n    expr: x * 2\n";
    const BAD: &str = "groups:\n- name: g\n  rules:\n  - alert: High\n    expr: x >\n";

    fn write(dir: &Path, name: &str, text: &str) -> String {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("warden-rules-manager-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn bad_file_keeps_last_good_rules_and_counts_the_error() {
        let dir = tempdir("bad");
        let path = write(&dir, "a.yml", GOOD);
        let db = Db::new(DbConfig::default());
        let mut m = RuleManager::new(vec![path.clone()], GroupOptions::default());
        assert_eq!(m.reload(&db, 0).unwrap(), 1);
        assert!(m.status().last_reload_success);

        write(&dir, "a.yml", BAD);
        let err = m.reload_if_changed(&db, 1_000).expect("content changed").unwrap_err();
        assert!(err.errors[0].contains("a.yml"), "{err}");
        assert!(!m.status().last_reload_success);
        assert_eq!(m.status().reload_errors_total, 1);
        assert_eq!(m.groups().count(), 1, "last good group still in force");

        write(&dir, "a.yml", GOOD2);
        assert_eq!(m.reload_if_changed(&db, 2_000).unwrap().unwrap(), 1);
        assert_eq!(m.groups().next().unwrap().rules().len(), 2);
        assert!(m.status().last_reload_success && m.status().last_error.is_none());
        assert!(m.reload_if_changed(&db, 3_000).is_none(), "unchanged files are not reloaded");
        let mut text = String::new();
        m.encode_metrics(&mut text);
        assert!(text.contains("\nwarden_rules_last_reload_success 1\n"), "{text}");
        assert!(text.contains("\nwarden_rules_reload_errors_total 1\n"), "{text}");
        assert!(text.contains("\nwarden_rules_reloads_total 3\n"), "{text}");
        let group_line = format!("warden_rules_group_rules{{rule_group=\"{};g\"}} 2", escape_label_value(&path));
        assert!(text.contains(&group_line), "{text}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_plain_path_is_an_error_but_empty_glob_is_not() {
        let dir = tempdir("glob");
        let db = Db::new(DbConfig::default());
        let mut m = RuleManager::new(vec![dir.join("*.yml").display().to_string()], GroupOptions::default());
        assert_eq!(m.reload(&db, 0).unwrap(), 0);
        let mut m = RuleManager::new(vec![dir.join("nope.yml").display().to_string()], GroupOptions::default());
        assert!(m.reload(&db, 0).unwrap_err().errors[0].contains("not found"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn surviving_group_keeps_its_firing_alert_across_a_reload() {
        let dir = tempdir("state");
        let path = write(&dir, "a.yml", GOOD);
        let db = Db::new(DbConfig::default());
        let engine = Engine::default();
        let x = Labels::from_pairs(&[("__name__", "x")]);
        let mut m = RuleManager::new(vec![path], GroupOptions::default());
        m.reload(&db, 0).unwrap();
        let mut now = 0;
        for _ in 0..3 {
            now = m.next_due().unwrap();
            db.append(&x, now, 10.0).unwrap();
            for r in m.eval_due(&engine, &db, now) {
                assert_eq!(r.failed(), 0, "{r:?}");
            }
        }
        let firing = |m: &RuleManager| m.groups().flat_map(|g| g.active_alerts()).collect::<Vec<_>>();
        let before = firing(&m);
        assert_eq!(before.len(), 1);
        write(&dir, "a.yml", GOOD2);
        m.reload_if_changed(&db, now + 1).unwrap().unwrap();
        let after = firing(&m);
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].active_at, before[0].active_at, "alert state carried over");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
