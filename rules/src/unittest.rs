//! Rule unit tests in promtool's format (`promtool test rules`), Prometheus 3.x semantics.
//!
//! A test file names rule files (`rule_files`, relative to the test file, globs allowed)
//! and holds test groups. For each group the runner:
//!
//! 1. loads `input_series` into a fresh in-memory store: sample `i` of a series (expanding
//!    notation, `_` = no sample, `stale` = staleness marker) at `start + i·interval`, where
//!    `interval` defaults to the file's `evaluation_interval` (default 1 m) and `start` is
//!    the group's `start_timestamp` (default 0);
//! 2. evaluates every rule group at `start + k·evaluation_interval` for `k = 0, 1, ...` up
//!    to the largest `eval_time` of the group's tests, groups in `group_eval_order` first
//!    (in that order), the others after in file order; each group's own `interval` is
//!    ignored, as in promtool. A rule evaluation error fails the test group at once
//!    (`rule: NAME, time: T, err: ...`);
//! 3. after the evaluation at `k·evaluation_interval`, checks every `alert_rule_test` whose
//!    `eval_time` falls in `[k·ei, (k+1)·ei)`: the FIRING alerts (pending ones are not
//!    compared, as in promtool) of all alerting rules named `alertname` must equal
//!    `exp_alerts` (labels, with `alertname` added, and annotations exactly; order does
//!    not matter);
//! 4. after the last evaluation, evaluates each `promql_expr_test` at `start + eval_time`
//!    and compares the result (a scalar counts as one sample without labels) with
//!    `exp_samples`, order-insensitively. Values must be equal (NaN equals NaN); with
//!    `fuzzy_compare: true` they may differ in the last bit of the mantissa.
//!
//! Output follows promtool's: `Unit Testing:  FILE`, then `  SUCCESS` or `  FAILED:` and
//! one block per failed check, in promtool's wording ([`FileReport::render`]).
//!
//! Native histograms (`{{...}}` in `values`, or `histogram:` in an expected sample) are out
//! of scope: such a test group is not run and is reported UNSUPPORTED, and a file with an
//! unsupported group never counts as passed ([`Verdict::Unsupported`]).
//!
//! Invariants: no input makes the runner panic or run unbounded: test files are read with
//! a size limit and a YAML budget, the evaluation steps of a group are capped at
//! [`MAX_EVAL_STEPS`] and its input samples at [`MAX_INPUT_SAMPLES`]. Errors in the test
//! file itself (YAML, a bad series, time or limit) name the file and line; rule-file errors
//! are the rule loader's (file, line, group, rule); check failures keep promtool's wording
//! under the report's `Unit Testing:  FILE` header.
//!
//! Differences from promtool, on purpose: rule files load once per test file (promtool
//! reloads them per test group, repeating the same errors); without `group_eval_order`,
//! groups run in file order (promtool's order is unspecified); an expected NaN matches a
//! NaN result.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::alerting::AlertState;
use crate::group::{Group, GroupOptions};
use crate::labels::{Label, Labels};
use crate::promql::{Engine, EngineOptions, Value};
use crate::rulefile::{self, RuleFile};
use crate::storage::{Appendable, Db, DbConfig};

/// The largest test file accepted, in bytes.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Most rule evaluation steps one test group may need (largest `eval_time` divided by
/// `evaluation_interval`, plus one). promtool has no limit; this one only stops hostile or
/// mistaken files (e.g. `eval_time: 10y` with `evaluation_interval: 1s`).
pub const MAX_EVAL_STEPS: i64 = 2_000_000;

/// Most input samples one test group may load.
pub const MAX_INPUT_SAMPLES: usize = 20_000_000;

const DEFAULT_EVALUATION_INTERVAL_MS: i64 = 60_000;

/// The test file as written. Unknown fields are errors, as with promtool's strict reading.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFileSpec {
    #[serde(default)]
    rule_files: Option<Vec<String>>,
    #[serde(default)]
    evaluation_interval: Option<String>,
    #[serde(default)]
    fuzzy_compare: Option<bool>,
    #[serde(default)]
    group_eval_order: Option<Vec<String>>,
    #[serde(default)]
    tests: Option<Vec<Spanned<TestGroupSpec>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroupSpec {
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    input_series: Option<Vec<Spanned<InputSeriesSpec>>>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    start_timestamp: Option<String>,
    #[serde(default)]
    alert_rule_test: Option<Vec<Spanned<AlertTestSpec>>>,
    #[serde(default)]
    promql_expr_test: Option<Vec<Spanned<PromqlTestSpec>>>,
    #[serde(default)]
    external_labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    external_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeriesSpec {
    #[serde(default)]
    series: Option<String>,
    #[serde(default)]
    values: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTestSpec {
    #[serde(default)]
    eval_time: Option<String>,
    #[serde(default)]
    alertname: Option<String>,
    #[serde(default)]
    exp_alerts: Option<Vec<ExpAlertSpec>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlertSpec {
    #[serde(default)]
    exp_labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    exp_annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromqlTestSpec {
    #[serde(default)]
    expr: Option<String>,
    #[serde(default)]
    eval_time: Option<String>,
    #[serde(default)]
    exp_samples: Option<Vec<ExpSampleSpec>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSampleSpec {
    #[serde(default)]
    labels: Option<String>,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    histogram: Option<String>,
}

/// Runner settings.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Only run test groups whose name matches (promtool's `--run`); all if `None`.
    pub run: Option<regex::Regex>,
}

impl RunOptions {
    /// Options running only the test groups whose name matches one of `patterns`
    /// (regular expressions, unanchored, as promtool's repeated `--run`); all groups if
    /// `patterns` is empty.
    pub fn with_run_patterns(patterns: &[String]) -> Result<RunOptions, String> {
        if patterns.is_empty() {
            return Ok(RunOptions::default());
        }
        for p in patterns {
            regex::Regex::new(p).map_err(|e| format!("--run {p:?}: {e}"))?;
        }
        let joined: Vec<String> = patterns.iter().map(|p| format!("(?:{p})")).collect();
        let re = regex::Regex::new(&joined.join("|")).map_err(|e| format!("--run: {e}"))?;
        Ok(RunOptions { run: Some(re) })
    }
}

/// A file's overall result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every test group that ran passed and none was skipped as unsupported.
    Passed,
    /// The file could not be read or a check failed.
    Failed,
    /// No check failed, but at least one test group uses a feature this runner does not
    /// support (native histograms) and was not run.
    Unsupported,
}

/// The result of one test file.
#[derive(Clone, Debug)]
pub struct FileReport {
    /// The test file, as given.
    pub path: PathBuf,
    /// Warnings (e.g. a `rule_files` pattern matching no file).
    pub warnings: Vec<String>,
    /// Failure blocks, in promtool's wording, in the order found.
    pub failures: Vec<String>,
    /// One line per test group not run because it needs an unsupported feature.
    pub unsupported: Vec<String>,
    /// Test groups run (after `--run` filtering, unsupported ones excluded).
    pub groups_run: usize,
    /// Test groups that passed.
    pub groups_passed: usize,
}

impl FileReport {
    fn new(path: &Path) -> Self {
        FileReport {
            path: path.to_owned(),
            warnings: Vec::new(),
            failures: Vec::new(),
            unsupported: Vec::new(),
            groups_run: 0,
            groups_passed: 0,
        }
    }

    /// The overall result: failed if anything failed, else unsupported if any group was
    /// skipped, else passed.
    pub fn verdict(&self) -> Verdict {
        if !self.failures.is_empty() {
            Verdict::Failed
        } else if !self.unsupported.is_empty() {
            Verdict::Unsupported
        } else {
            Verdict::Passed
        }
    }

    /// The report split as promtool writes it: the first part (header, warnings, `SUCCESS`)
    /// goes to standard output, the second (`FAILED:`/`UNSUPPORTED:` blocks) to standard
    /// error. Their concatenation is [`FileReport::render`].
    pub fn render_split(&self) -> (String, String) {
        let full = self.render();
        if self.verdict() == Verdict::Passed {
            return (full, String::new());
        }
        // Everything after the header and warnings is the failure part.
        let mut cut = 0;
        for line in full.split_inclusive('\n') {
            if line.starts_with("Unit Testing:") || line.starts_with("  WARNING:") {
                cut += line.len();
            } else {
                break;
            }
        }
        (full[..cut].to_owned(), full[cut..].to_owned())
    }

    /// The report as promtool prints it (`Unit Testing:  FILE`, warnings, then `  SUCCESS`
    /// or `  FAILED:` with one block per failure), plus an `  UNSUPPORTED:` block listing
    /// test groups that were not run. Ends with a blank line.
    pub fn render(&self) -> String {
        let mut out = format!("Unit Testing:  {}\n", self.path.display());
        for w in &self.warnings {
            let _ = writeln!(out, "  WARNING: {w}");
        }
        if !self.unsupported.is_empty() {
            let _ = writeln!(
                out,
                "  UNSUPPORTED: {} test group(s) not run ({} other(s) passed):",
                self.unsupported.len(),
                self.groups_passed
            );
            for u in &self.unsupported {
                let _ = writeln!(out, "    {u}");
            }
        }
        match self.verdict() {
            Verdict::Passed => out.push_str("  SUCCESS\n"),
            Verdict::Unsupported => {}
            Verdict::Failed => {
                out.push_str("  FAILED:\n");
                for f in &self.failures {
                    out.push_str(f);
                    out.push_str("\n\n");
                }
            }
        }
        out.push('\n');
        out
    }
}

/// Runs the unit-test file at `path`.
pub fn run_file(path: &Path, opts: &RunOptions) -> FileReport {
    let mut report = FileReport::new(path);
    let text = match read_bounded(path) {
        Ok(t) => t,
        Err(e) => {
            report.failures.push(e);
            return report;
        }
    };
    let spec = match parse_spec(&text) {
        Ok(s) => s,
        Err(e) => {
            report.failures.push(format!("{}: {e}", path.display()));
            return report;
        }
    };
    run_spec(path, spec, opts, &mut report);
    report
}

/// Runs a test file given as text; `path` locates the rule files (relative to its
/// directory) and names the file in messages.
pub fn run_str(path: &Path, text: &str, opts: &RunOptions) -> FileReport {
    let mut report = FileReport::new(path);
    match parse_spec(text) {
        Ok(spec) => run_spec(path, spec, opts, &mut report),
        Err(e) => report.failures.push(format!("{}: {e}", path.display())),
    }
    report
}

fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("{}: cannot read file: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("{}: file is larger than {MAX_FILE_BYTES} bytes", path.display()));
    }
    String::from_utf8(bytes).map_err(|_| format!("{}: file is not valid UTF-8", path.display()))
}

fn parse_spec(text: &str) -> Result<TestFileSpec, String> {
    let mut o = serde_saphyr::Options::default();
    o.with_snippet = false;
    // The default budget (250k nodes) is small for test files with many input series; this
    // one still bounds memory well below what the file-size limit allows.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 4_000_000;
    budget.max_events = 8_000_000;
    o.budget = Some(budget);
    let spec: Option<TestFileSpec> = serde_saphyr::from_str_with_options(text, o).map_err(|e| {
        let plain = e.without_snippet().to_string();
        match e.location() {
            // The crate appends " at line L, column C"; print the position in front instead.
            Some(l) => {
                let msg = plain.rfind(" at line ").map(|i| &plain[..i]).unwrap_or(&plain);
                format!("{}:{}: yaml: {msg}", l.line(), l.column())
            }
            None => format!("yaml: {plain}"),
        }
    })?;
    Ok(spec.unwrap_or_default())
}

/// Everything a test group needs from the file level.
struct FileContext<'a> {
    path: &'a Path,
    rule_files: &'a [RuleFile],
    evaluation_interval_ms: i64,
    fuzzy: bool,
    group_eval_order: &'a [String],
}

fn run_spec(path: &Path, spec: TestFileSpec, opts: &RunOptions, report: &mut FileReport) {
    let evaluation_interval_ms = match spec.evaluation_interval.as_deref() {
        None => DEFAULT_EVALUATION_INTERVAL_MS,
        Some(s) => match rulefile::parse_duration(s) {
            Ok(0) => DEFAULT_EVALUATION_INTERVAL_MS,
            Ok(ms) => ms,
            Err(e) => {
                report.failures.push(format!("{}: evaluation_interval: {e}", path.display()));
                return;
            }
        },
    };
    let base = path.parent().unwrap_or(Path::new(""));
    let mut files = Vec::new();
    for pattern in spec.rule_files.unwrap_or_default() {
        match expand_rule_files(base, &pattern) {
            Ok(found) if found.is_empty() => report.warnings.push(format!("no file match pattern {pattern}")),
            Ok(found) => files.extend(found),
            Err(e) => {
                report.failures.push(format!("{}: rule_files: {e}", path.display()));
                return;
            }
        }
    }
    let mut rule_files = Vec::with_capacity(files.len());
    let mut load_errors = Vec::new();
    for f in &files {
        match rulefile::load_file(f) {
            Ok(rf) => rule_files.push(rf),
            Err(errs) => load_errors.extend(errs.iter().map(ToString::to_string)),
        }
    }
    if !load_errors.is_empty() {
        report.failures.extend(load_errors);
        return;
    }
    let group_eval_order = spec.group_eval_order.unwrap_or_default();
    let ctx = FileContext {
        path,
        rule_files: &rule_files,
        evaluation_interval_ms,
        fuzzy: spec.fuzzy_compare.unwrap_or(false),
        group_eval_order: &group_eval_order,
    };
    for (i, tg) in spec.tests.unwrap_or_default().into_iter().enumerate() {
        let line = tg.referenced.line();
        let tg = tg.value;
        let name = tg.name.clone().unwrap_or_default();
        if let Some(re) = &opts.run
            && !re.is_match(&name)
        {
            continue;
        }
        if let Some(why) = native_histogram_use(&tg) {
            let label = if name.is_empty() { format!("test group {}", i + 1) } else { format!("test group {name:?}") };
            report.unsupported.push(format!("{label}: native histograms are not supported ({why})"));
            continue;
        }
        report.groups_run += 1;
        let errs = run_group(&ctx, &tg, line);
        if errs.is_empty() {
            report.groups_passed += 1;
        } else {
            report.failures.extend(errs);
        }
    }
}

/// Resolves one `rule_files` entry against the test file's directory; globs expand to the
/// matching files in sorted order.
fn expand_rule_files(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    // The directory is literal: escape it so a `[` in its name is not a pattern.
    let text = if Path::new(pattern).is_absolute() || base.as_os_str().is_empty() {
        pattern.to_owned()
    } else {
        let dir = glob::Pattern::escape(&base.to_string_lossy());
        format!("{dir}{}{pattern}", std::path::MAIN_SEPARATOR)
    };
    let paths = glob::glob(&text).map_err(|e| format!("bad pattern {pattern:?}: {e}"))?;
    let mut out = Vec::new();
    for p in paths {
        match p {
            Ok(p) if p.is_file() => out.push(p),
            Ok(_) => {}
            Err(e) => return Err(format!("{pattern:?}: {e}")),
        }
    }
    out.sort();
    Ok(out)
}

/// Why a test group needs native histograms, if it does.
fn native_histogram_use(tg: &TestGroupSpec) -> Option<String> {
    for s in tg.input_series.iter().flatten().map(|s| &s.value) {
        if s.values.as_deref().is_some_and(|v| v.contains("{{")) {
            return Some(format!("input series {}", go_quote(s.series.as_deref().unwrap_or(""))));
        }
    }
    for t in tg.promql_expr_test.iter().flatten().map(|t| &t.value) {
        if t.exp_samples.iter().flatten().any(|s| s.histogram.is_some()) {
            return Some(format!("expected histogram sample of {:?}", t.expr.as_deref().unwrap_or("")));
        }
    }
    None
}

fn parse_time(field: &str, s: Option<&str>) -> Result<i64, String> {
    match s {
        None => Ok(0),
        Some(s) => rulefile::parse_duration(s).map_err(|e| format!("{field}: {e}")),
    }
}

/// An alert as compared: labels and annotations, each sorted by name.
type AlertView = (Vec<(String, String)>, Vec<(String, String)>);

struct AlertCheck<'a> {
    eval_time_ms: i64,
    alertname: &'a str,
    expected: Vec<AlertView>,
}

/// Runs one test group; returns its failure blocks (empty = passed).
/// Setup errors (bad series, times, limits) name the file and the line of the item at
/// fault; check failures use promtool's wording.
fn run_group(ctx: &FileContext<'_>, tg: &TestGroupSpec, line: u64) -> Vec<String> {
    let name = tg.name.as_deref().unwrap_or("");
    let prefix = if name.is_empty() { String::new() } else { format!("    name: {name},\n") };
    let file = ctx.path.display();
    let fail_at = |line: u64, msg: String| vec![format!("{prefix}    {file}:{line}: {msg}")];
    let fail = |msg: String| fail_at(line, msg);

    let interval_ms = match tg.interval.as_deref().map(rulefile::parse_duration) {
        None | Some(Ok(0)) => ctx.evaluation_interval_ms,
        Some(Ok(ms)) => ms,
        Some(Err(e)) => return fail(format!("interval: {e}")),
    };
    let start_ms = match tg.start_timestamp.as_deref().map(parse_start_timestamp) {
        None => 0,
        Some(Ok(t)) => t,
        Some(Err(e)) => return fail(format!("start_timestamp: {e}")),
    };

    // Input data.
    let db = Db::new(DbConfig { retention_ms: i64::MAX, max_series: 1_000_000 });
    let mut loaded = 0usize;
    for s in tg.input_series.iter().flatten() {
        let at = s.referenced.line();
        let s = &s.value;
        let series = s.series.as_deref().unwrap_or("");
        let values = s.values.as_deref().unwrap_or("");
        let (labels, points) = match load_series(series, values) {
            Ok(x) => x,
            Err(e) => return fail_at(at, e),
        };
        loaded = loaded.saturating_add(points.len());
        if loaded > MAX_INPUT_SAMPLES {
            return fail_at(at, format!("more than {MAX_INPUT_SAMPLES} input samples"));
        }
        for (i, v) in points.into_iter().enumerate() {
            let Some(v) = v else { continue };
            let t = (i as i64).saturating_mul(interval_ms).saturating_add(start_ms);
            if let Err(e) = db.append(&labels, t, v) {
                return fail_at(at, format!("series {}: {e}", go_quote(series)));
            }
        }
    }

    // Tests, with their times.
    let mut alert_checks = Vec::new();
    for a in tg.alert_rule_test.iter().flatten() {
        let at = a.referenced.line();
        let a = &a.value;
        let eval_time_ms = match parse_time("eval_time", a.eval_time.as_deref()) {
            Ok(t) => t,
            Err(e) => return fail_at(at, e),
        };
        let alertname = a.alertname.as_deref().unwrap_or("");
        let expected = a
            .exp_alerts
            .iter()
            .flatten()
            .map(|e| {
                let mut labels: BTreeMap<String, String> = e.exp_labels.clone().unwrap_or_default();
                labels.insert("alertname".to_owned(), alertname.to_owned());
                let labels = labels.into_iter().filter(|(_, v)| !v.is_empty()).collect();
                let ann = e.exp_annotations.clone().unwrap_or_default().into_iter().collect();
                (labels, ann)
            })
            .collect();
        alert_checks.push(AlertCheck { eval_time_ms, alertname, expected });
    }
    let mut expr_tests = Vec::new();
    for p in tg.promql_expr_test.iter().flatten() {
        match parse_time("eval_time", p.value.eval_time.as_deref()) {
            Ok(t) => expr_tests.push((&p.value, t)),
            Err(e) => return fail_at(p.referenced.line(), e),
        }
    }
    // Stable: checks at the same time keep file order.
    alert_checks.sort_by_key(|c| c.eval_time_ms);
    let max_eval =
        alert_checks.iter().map(|c| c.eval_time_ms).chain(expr_tests.iter().map(|(_, t)| *t)).max().unwrap_or(0);
    let ei = ctx.evaluation_interval_ms;
    let steps = max_eval / ei + 1;
    if steps > MAX_EVAL_STEPS {
        return fail(format!(
            "{steps} rule evaluations needed (largest eval_time {} at evaluation_interval {}); the limit is {MAX_EVAL_STEPS}",
            format_duration(max_eval),
            format_duration(ei)
        ));
    }

    // Rule groups, in evaluation order.
    let gopts = GroupOptions {
        default_interval_ms: ei,
        external_labels: external_labels(tg),
        external_url: tg.external_url.clone().unwrap_or_default(),
        ..GroupOptions::default()
    };
    let mut groups = Vec::new();
    for rf in ctx.rule_files {
        let file = rf.path.to_string_lossy();
        for g in &rf.groups {
            match Group::from_rule_group(&file, g, &gopts) {
                Ok(g) => groups.push(g),
                Err(e) => return fail(e.to_string()),
            }
        }
    }
    order_groups(&mut groups, ctx.group_eval_order);
    let engine = Engine::new(EngineOptions { default_step_ms: ei, ..EngineOptions::default() });

    let mut errs = Vec::new();
    let mut next_check = 0;
    for k in 0..steps {
        let rel = k * ei;
        let t = start_ms.saturating_add(rel);
        let mut rule_errs = Vec::new();
        for g in &mut groups {
            let rep = g.eval(&engine, &db, t);
            for r in rep.rules {
                if let Some(e) = r.error {
                    rule_errs.push(format!("    rule: {}, time: {}, err: {e}", r.name, format_duration(rel)));
                }
            }
        }
        if !rule_errs.is_empty() {
            return rule_errs;
        }
        while next_check < alert_checks.len() && alert_checks[next_check].eval_time_ms < rel.saturating_add(ei) {
            let c = &alert_checks[next_check];
            next_check += 1;
            if c.eval_time_ms < rel {
                continue;
            }
            let mut got = firing_alerts(&groups, c.alertname);
            let mut exp = c.expected.clone();
            got.sort();
            exp.sort();
            if got != exp {
                errs.push(format!(
                    "{prefix}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                    c.alertname,
                    format_duration(c.eval_time_ms),
                    format_alerts(&exp),
                    format_alerts(&got)
                ));
            }
        }
    }

    for (p, eval_time_ms) in expr_tests {
        if let Err(e) = check_expr(&engine, &db, p, start_ms.saturating_add(eval_time_ms), eval_time_ms, ctx.fuzzy) {
            errs.push(e);
        }
    }
    errs
}

fn external_labels(tg: &TestGroupSpec) -> Labels {
    Labels::new(tg.external_labels.iter().flatten().map(|(k, v)| Label { name: k.clone(), value: v.clone() }).collect())
}

/// Puts the groups named in `order` first, in that order; the others keep file order.
/// Names matching no group are ignored, as promtool does.
fn order_groups(groups: &mut [Group], order: &[String]) {
    if order.is_empty() {
        return;
    }
    let rank = |g: &Group| order.iter().position(|n| n == g.name()).unwrap_or(order.len());
    groups.sort_by_key(rank);
}

/// The firing alerts named `alertname` of every group, as compared.
fn firing_alerts(groups: &[Group], alertname: &str) -> Vec<AlertView> {
    let mut out = Vec::new();
    for g in groups {
        for a in g.active_alerts() {
            if a.state == AlertState::Firing && a.labels.get("alertname") == Some(alertname) {
                let labels = a.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
                let mut ann: Vec<(String, String)> =
                    a.annotations.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
                ann.sort();
                out.push((labels, ann));
            }
        }
    }
    out
}

/// Evaluates one `promql_expr_test` at `t` and compares; the error block on failure.
fn check_expr(engine: &Engine, db: &Db, p: &PromqlTestSpec, t: i64, rel: i64, fuzzy: bool) -> Result<(), String> {
    let expr_text = p.expr.as_deref().unwrap_or("");
    let head = format!("    expr: {}, time: {}", go_quote(expr_text), format_duration(rel));
    let expr = crate::promql::parse(expr_text).map_err(|e| format!("{head}, err: {}", parse_error_text(&e)))?;
    let res = engine.instant(db, &expr, t).map_err(|e| format!("{head}, err: {e}"))?;
    let mut got: Vec<(Labels, f64)> = match res.value {
        Value::Vector(v) => v.into_iter().map(|s| (s.labels, s.v)).collect(),
        Value::Scalar { v, .. } => vec![(Labels::empty(), v)],
        Value::String { .. } | Value::Matrix(_) => {
            return Err(format!("{head}, err: rule result is not a vector or scalar"));
        }
    };
    let mut exp = Vec::new();
    for s in p.exp_samples.iter().flatten() {
        let text = s.labels.as_deref().unwrap_or("");
        let labels = parse_metric(text).map_err(|e| format!("{head}, err: labels {}: {e}", go_quote(text)))?;
        exp.push((labels, s.value.unwrap_or(0.0)));
    }
    let by_labels_then_value = |a: &(Labels, f64), b: &(Labels, f64)| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1));
    got.sort_by(by_labels_then_value);
    exp.sort_by(by_labels_then_value);
    let same = got.len() == exp.len() && got.iter().zip(&exp).all(|(g, e)| g.0 == e.0 && values_equal(e.1, g.1, fuzzy));
    if same {
        Ok(())
    } else {
        Err(format!("{head},\n        exp: {}\n        got: {}", format_samples(&exp), format_samples(&got)))
    }
}

fn parse_error_text(e: &crate::promql::EvalError) -> String {
    match e {
        crate::promql::EvalError::Parse(m) => m.clone(),
        other => other.to_string(),
    }
}

/// True if `a` and `b` are the same value: equal, both NaN, or (with `fuzzy`) adjacent
/// floats of the same sign (a difference in the last bit of the mantissa).
fn values_equal(a: f64, b: f64, fuzzy: bool) -> bool {
    if a == b || (a.is_nan() && b.is_nan()) {
        return true;
    }
    fuzzy && a.is_finite() && b.is_finite() && a.is_sign_negative() == b.is_sign_negative() && {
        let (x, y) = (a.to_bits(), b.to_bits());
        x.abs_diff(y) <= 1
    }
}

/// Parses one input series: its labels (series notation) and its expanded values (`None` =
/// no sample).
fn load_series(series: &str, values: &str) -> Result<(Labels, Vec<Option<f64>>), String> {
    // The label parser's errors quote the series text already.
    let labels = parse_metric(series).map_err(|e| format!("input series: {e}"))?;
    let points = crate::promqltest::parse_series_values(values)
        .map_err(|e| format!("input series {}: values {}: {e}", go_quote(series), go_quote(values)))?;
    Ok((labels, points))
}

/// Parses series notation (`name{a="b", ...}`, `{a="b"}` or `name`; empty or `{}` = no
/// labels) into labels, with the PromQL test-script parser.
pub fn parse_metric(text: &str) -> Result<Labels, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "{}" {
        return Ok(Labels::empty());
    }
    let (labels, rest) = crate::promqltest::parse_series_labels(trimmed)?;
    if !rest.trim().is_empty() {
        return Err(format!("unexpected {:?} after the series in {trimmed:?}", rest.trim()));
    }
    Ok(labels)
}

/// Parses `start_timestamp`: Unix seconds (integer or decimal) or RFC 3339. Returns ms.
fn parse_start_timestamp(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<i64>() {
        return secs.checked_mul(1000).ok_or_else(|| format!("{s:?} is out of range"));
    }
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
        && secs.abs() < 9.2e15
    {
        return Ok((secs * 1000.0).round() as i64);
    }
    parse_rfc3339(s).ok_or_else(|| format!("{s:?} is neither a Unix timestamp nor an RFC 3339 time"))
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]` into ms since the epoch.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, min, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut pos = 19;
    let mut frac_ms = 0i64;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos == start {
            return None;
        }
        let digits = &s[start..pos.min(start + 3)];
        frac_ms = digits.parse::<i64>().ok()? * 10i64.pow(3 - digits.len() as u32);
    }
    let offset_min = match b.get(pos)? {
        b'Z' | b'z' if pos + 1 == b.len() => 0,
        c @ (b'+' | b'-') if pos + 6 == b.len() && b[pos + 3] == b':' => {
            let m = num(pos + 1, 2)? * 60 + num(pos + 4, 2)?;
            if *c == b'-' { -m } else { m }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_min * 60;
    Some(secs * 1000 + frac_ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats ms as Prometheus prints durations: `0s`, `90s` → `1m30s`, `14d` → `2w`; years
/// and weeks only when they divide the duration exactly.
pub fn format_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut rest = ms;
    if rest < 0 {
        out.push('-');
        rest = rest.checked_neg().unwrap_or(i64::MAX);
    }
    const DAY: i64 = 24 * 3_600_000;
    let units: [(&str, i64, bool); 7] = [
        ("y", 365 * DAY, true),
        ("w", 7 * DAY, true),
        ("d", DAY, false),
        ("h", 3_600_000, false),
        ("m", 60_000, false),
        ("s", 1000, false),
        ("ms", 1, false),
    ];
    for (unit, mult, exact) in units {
        if exact && rest % mult != 0 {
            continue;
        }
        let v = rest / mult;
        if v > 0 {
            let _ = write!(out, "{v}{unit}");
            rest -= v * mult;
        }
    }
    out
}

/// Quotes `s` as Go's `%q` does for the characters that matter in PromQL and labels.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Labels as Prometheus' `Labels.String()`: `{__name__="up", job="x"}` (`{}` if empty).
fn format_label_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let parts: Vec<String> = pairs.map(|(n, v)| format!("{n}={}", go_quote(v))).collect();
    format!("{{{}}}", parts.join(", "))
}

fn format_labels(l: &Labels) -> String {
    format_label_pairs(l.iter().map(|l| (l.name.as_str(), l.value.as_str())))
}

/// Formats a float as Go's `strconv.FormatFloat(v, 'E', -1, 64)`: `1E+00`, `1.5E-03`.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".to_owned() } else { "-Inf".to_owned() };
    }
    let s = format!("{v:E}");
    match s.split_once('E') {
        Some((mant, exp)) => {
            let e: i32 = exp.parse().unwrap_or(0);
            let sign = if e < 0 { '-' } else { '+' };
            format!("{mant}E{sign}{:02}", e.unsigned_abs())
        }
        None => s,
    }
}

fn format_samples(s: &[(Labels, f64)]) -> String {
    if s.is_empty() {
        return "nil".to_owned();
    }
    let parts: Vec<String> = s.iter().map(|(l, v)| format!("{} {}", format_labels(l), format_value(*v))).collect();
    parts.join(", ")
}

fn format_alerts(alerts: &[AlertView]) -> String {
    if alerts.is_empty() {
        return "[]".to_owned();
    }
    let items: Vec<String> = alerts
        .iter()
        .enumerate()
        .map(|(i, (labels, ann))| {
            format!(
                "            {i}:\n              Labels:{}\n              Annotations:{}",
                format_label_pairs(labels.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
                format_label_pairs(ann.iter().map(|(n, v)| (n.as_str(), v.as_str())))
            )
        })
        .collect();
    format!("[\n{}\n            ]", items.join(",\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_prometheus() {
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(300_000), "5m");
        assert_eq!(format_duration(3_661_000), "1h1m1s");
        assert_eq!(format_duration(14 * 86_400_000), "2w");
        assert_eq!(format_duration(106_700 * 86_400_000), "106700d");
        assert_eq!(format_duration(365 * 86_400_000), "1y");
        assert_eq!(format_duration(179_999), "2m59s999ms");
    }

    #[test]
    fn values_print_like_go() {
        assert_eq!(format_value(1.0), "1E+00");
        assert_eq!(format_value(0.0), "0E+00");
        assert_eq!(format_value(1.5), "1.5E+00");
        assert_eq!(format_value(0.000123), "1.23E-04");
        assert_eq!(format_value(9_218_880_000.0), "9.21888E+09");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(1e300), "1E+300");
    }

    #[test]
    fn labels_print_like_prometheus() {
        let l = parse_metric(r#"up{job="a\"b", instance="x"}"#).unwrap();
        assert_eq!(format_labels(&l), r#"{__name__="up", instance="x", job="a\"b"}"#);
        assert_eq!(format_labels(&Labels::empty()), "{}");
        assert_eq!(parse_metric("").unwrap(), Labels::empty());
        assert!(parse_metric(r#"up{job=~"a"}"#).is_err());
        assert!(parse_metric("up{").is_err());
        assert!(parse_metric("rate(up[1m])").is_err());
        assert!(parse_metric("up 1").is_err());
    }

    #[test]
    fn comparison_is_exact_unless_fuzzy() {
        let a = 0.1 + 0.2;
        let b = 0.3;
        assert!(!values_equal(a, b, false));
        assert!(values_equal(a, b, true));
        assert!(values_equal(f64::NAN, f64::NAN, false));
        assert!(!values_equal(1.0, 1.0000001, true));
    }

    #[test]
    fn start_timestamps() {
        assert_eq!(parse_start_timestamp("1609459200"), Ok(1_609_459_200_000));
        assert_eq!(parse_start_timestamp("2024-01-01T00:00:00Z"), Ok(1_704_067_200_000));
        assert_eq!(parse_start_timestamp("2024-01-01T01:00:00.5+01:00"), Ok(1_704_067_200_500));
        assert!(parse_start_timestamp("yesterday").is_err());
        assert!(parse_start_timestamp("2024-13-01T00:00:00Z").is_err());
    }

    #[test]
    fn alert_lists_print_like_promtool() {
        let a: Vec<AlertView> = vec![
            (vec![("alertname".into(), "A".into())], vec![]),
            (vec![("alertname".into(), "A".into()), ("x".into(), "1".into())], vec![("s".into(), "t".into())]),
        ];
        assert_eq!(
            format_alerts(&a),
            "[\n            0:\n              Labels:{alertname=\"A\"}\n              Annotations:{},\n            1:\n              Labels:{alertname=\"A\", x=\"1\"}\n              Annotations:{s=\"t\"}\n            ]"
        );
        assert_eq!(format_alerts(&[]), "[]");
    }

    #[test]
    fn unknown_fields_are_errors() {
        let r = run_str(Path::new("x.yml"), "groups: []\n", &RunOptions::default());
        assert_eq!(r.verdict(), Verdict::Failed);
        assert!(r.failures[0].contains("groups"), "{:?}", r.failures);
    }

    /// A fresh directory holding `files`; removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str, files: &[(&str, &str)]) -> TempDir {
            let dir = std::env::temp_dir().join(format!("warden-unittest-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, text) in files {
                std::fs::write(dir.join(name), text).unwrap();
            }
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const RULES: &str = r#"
groups:
  - name: a
    rules:
      - record: a_out
        expr: vector(1)
  - name: b
    rules:
      - record: b_out
        expr: a_out + 1
  - name: alerts
    rules:
      - alert: Down
        expr: up == 0
        for: 1m
        labels: {severity: page}
        annotations: {summary: "{{ $labels.job }} down"}
"#;

    fn run_in(dir: &TempDir, test: &str) -> FileReport {
        run_str(&dir.0.join("t.yml"), test, &RunOptions::default())
    }

    #[test]
    fn alerts_are_checked_after_the_last_evaluation_before_eval_time() {
        let dir = TempDir::new("timing", &[("r1.yml", RULES)]);
        let test = r#"
rule_files: ["r*.yml"]
tests:
  - input_series:
      - series: 'up{job="x"}'
        values: 0x5
    alert_rule_test:
      # Pending at 0 and still at 59s (no evaluation in between): pending is not compared.
      - eval_time: 59s
        alertname: Down
        exp_alerts: []
      # Firing from the evaluation at 1m on, also when checked between evaluations.
      - eval_time: 90s
        alertname: Down
        exp_alerts:
          - exp_labels: {job: x, severity: page}
            exp_annotations: {summary: x down}
"#;
        let r = run_in(&dir, test);
        assert_eq!(r.verdict(), Verdict::Passed, "{}", r.render());

        let wrong = test.replace("eval_time: 90s", "eval_time: 30s");
        let r = run_in(&dir, &wrong);
        assert_eq!(r.verdict(), Verdict::Failed, "{}", r.render());
        assert!(r.failures[0].contains("alertname: Down, time: 30s"), "{:?}", r.failures);
        assert!(r.failures[0].contains("got:[]"), "{:?}", r.failures);
    }

    #[test]
    fn group_eval_order_decides_what_later_groups_see() {
        let dir = TempDir::new("order", &[("rules.yml", RULES)]);
        let test = |order: &str| {
            format!(
                r#"
rule_files: [rules.yml]
group_eval_order: {order}
tests:
  - promql_expr_test:
      - expr: b_out
        eval_time: 0s
        exp_samples:
          - labels: b_out
            value: 2
"#
            )
        };
        let r = run_in(&dir, &test("[a, b]"));
        assert_eq!(r.verdict(), Verdict::Passed, "{}", r.render());
        // b first: at 0 it sees no a_out yet, so b_out has no sample at 0.
        let r = run_in(&dir, &test("[b, a]"));
        assert_eq!(r.verdict(), Verdict::Failed, "{}", r.render());
        assert!(r.failures[0].contains("got: nil"), "{:?}", r.failures);
    }

    #[test]
    fn values_compare_exactly_unless_fuzzy() {
        let dir = TempDir::new("fuzzy", &[]);
        let test = |fuzzy: bool| {
            format!(
                r#"
fuzzy_compare: {fuzzy}
tests:
  - promql_expr_test:
      - expr: vector(0.1 + 0.2)
        eval_time: 0s
        exp_samples:
          - value: 0.3
      - expr: vector(NaN)
        eval_time: 0s
        exp_samples:
          - value: .nan
"#
            )
        };
        let r = run_in(&dir, &test(false));
        assert_eq!(r.failures.len(), 1, "{}", r.render());
        assert!(r.failures[0].contains("exp: {} 3E-01\n        got: {} 3.0000000000000004E-01"), "{:?}", r.failures);
        let r = run_in(&dir, &test(true));
        assert_eq!(r.verdict(), Verdict::Passed, "{}", r.render());
    }

    #[test]
    fn hostile_files_fail_fast() {
        let dir = TempDir::new("hostile", &[]);
        let started = std::time::Instant::now();
        let r = run_in(
            &dir,
            "evaluation_interval: 1ms\ntests:\n  - promql_expr_test:\n      - expr: up\n        eval_time: 1000y\n",
        );
        assert_eq!(r.verdict(), Verdict::Failed);
        assert!(r.failures[0].contains("the limit is"), "{:?}", r.failures);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));

        for text in [
            "tests: [{input_series: [{series: 'up', values: '1+1x99999999999'}]}]",
            "tests: [{input_series: [{series: 'up{', values: '1'}]}]",
            "tests: [{interval: -1m}]",
            "tests: [{start_timestamp: never}]",
            "tests: [{promql_expr_test: [{expr: 'up', eval_time: 1x}]}]",
            "tests: [{promql_expr_test: [{expr: 'sum(', eval_time: 1m}]}]",
            "rule_files: ['[']\n",
            "tests: 5",
            "{{{",
            "rule_files: [missing.yml]\ntests: [{}]",
        ] {
            let r = run_in(&dir, text);
            assert!(r.verdict() == Verdict::Failed || !r.warnings.is_empty(), "{text}: {}", r.render());
        }
        let r = run_in(&dir, "rule_files: [missing.yml]\ntests: [{}]");
        assert_eq!(r.warnings, vec!["no file match pattern missing.yml".to_owned()]);
    }

    #[test]
    fn start_timestamp_shifts_samples_and_evaluations() {
        let dir = TempDir::new("start", &[]);
        let r = run_in(
            &dir,
            r#"
tests:
  - start_timestamp: 1000
    input_series:
      - series: m
        values: 5 6
    promql_expr_test:
      - expr: timestamp(m)
        eval_time: 1m
        exp_samples:
          - value: 1060
      - expr: m @ 1000
        eval_time: 1m
        exp_samples:
          - labels: m
            value: 5
"#,
        );
        assert_eq!(r.verdict(), Verdict::Passed, "{}", r.render());
    }

    #[test]
    fn templates_see_external_labels_and_url_and_numbers_read_as_text() {
        let rules = r#"
groups:
  - name: g
    rules:
      - alert: Hi
        expr: vector(1)
        labels: {code: "500"}
        annotations:
          where: "{{ $externalLabels.cluster }} {{ $externalURL }}"
"#;
        let dir = TempDir::new("external", &[("rules.yml", rules)]);
        let r = run_in(
            &dir,
            r#"
rule_files: [rules.yml]
tests:
  - external_labels: {cluster: c1}
    external_url: http://example.org
    alert_rule_test:
      - eval_time: 0s
        alertname: Hi
        exp_alerts:
          - exp_labels: {code: 500}
            exp_annotations: {where: c1 http://example.org}
"#,
        );
        assert_eq!(r.verdict(), Verdict::Passed, "{}", r.render());
    }
}
