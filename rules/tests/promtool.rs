//! Conformance with promtool: `test rules` and `check rules` verdicts on Prometheus' own
//! promtool fixtures (`../shared/conformance/promtool`, or `$WARDEN_CONFORMANCE_DIR/promtool`),
//! and the repository's default rule tests (`deploy/rules/tests`), which must pass.
//!
//! The verdict tables were recorded by running the real promtool on every fixture. The
//! installed promtool is 2.42; the fixtures come from Prometheus 3.14, whose own tests
//! (`cmd/promtool/unittest_test.go`) expect a different verdict for three files that use
//! 3.x features. For those the 3.x verdict is the target and both are listed.

use std::path::{Path, PathBuf};

use warden_rules::rulefile;
use warden_rules::unittest::{self, RunOptions, Verdict};

fn conformance_dir() -> Option<PathBuf> {
    warden_rules::conformance::data_dir_for_test("promtool")
}

/// What promtool said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum P {
    Pass,
    Fail,
}

/// `promtool test rules FILE`: (file, promtool 2.42 verdict, verdict we must give).
/// `Unsupported` only where the file's test groups need native histograms.
const TEST_RULES: &[(&str, P, Verdict)] = &[
    ("at-modifier-test.yml", P::Pass, Verdict::Passed),
    ("at-modifier.yml", P::Fail, Verdict::Failed),
    ("bad-input-series.yml", P::Fail, Verdict::Failed),
    ("bad-promql.yml", P::Fail, Verdict::Failed),
    ("bad-rules-error-test.yml", P::Fail, Verdict::Failed),
    ("bad-rules-error.yml", P::Fail, Verdict::Failed),
    ("bad-rules-syntax-test.yml", P::Fail, Verdict::Failed),
    ("bad-rules-syntax.yml", P::Fail, Verdict::Failed),
    ("failing.yml", P::Fail, Verdict::Failed),
    ("long-period.yml", P::Pass, Verdict::Passed),
    ("negative-offset-test.yml", P::Pass, Verdict::Passed),
    ("negative-offset.yml", P::Fail, Verdict::Failed),
    // promtool 2.42 defaults a test group's interval to 0 (all samples at t=0) and fails;
    // 3.x defaults it to evaluation_interval and passes (upstream "No test group interval").
    ("no-test-group-interval.yml", P::Fail, Verdict::Passed),
    ("rules-bad.yml", P::Fail, Verdict::Failed),
    ("rules.yml", P::Fail, Verdict::Failed),
    ("rules_duplicates.yml", P::Fail, Verdict::Failed),
    ("rules_extrafields.yml", P::Fail, Verdict::Failed),
    // `start_timestamp` is 3.x; 2.42 rejects the field. Upstream "Start time tests": pass.
    ("start-time-test.yml", P::Fail, Verdict::Passed),
    // 2.42 rejects `histogram:` in exp_samples; 3.x passes ("Passing Unit Tests"). Its
    // first test group uses native histograms, so we must say unsupported, never passed.
    ("unittest.yml", P::Fail, Verdict::Unsupported),
];

/// `promtool check rules FILE`: (file, promtool verdict, rules found when it passes).
/// `rules_duplicates.yml` passes with a lint warning (promtool exits 0 unless `--lint-fatal`).
const CHECK_RULES: &[(&str, P, usize)] = &[
    ("at-modifier-test.yml", P::Fail, 0),
    ("at-modifier.yml", P::Pass, 1),
    ("bad-input-series.yml", P::Fail, 0),
    ("bad-promql.yml", P::Fail, 0),
    ("bad-rules-error-test.yml", P::Fail, 0),
    ("bad-rules-error.yml", P::Pass, 1),
    ("bad-rules-syntax-test.yml", P::Fail, 0),
    ("bad-rules-syntax.yml", P::Fail, 0),
    ("failing.yml", P::Fail, 0),
    ("long-period.yml", P::Fail, 0),
    ("negative-offset-test.yml", P::Fail, 0),
    ("negative-offset.yml", P::Pass, 1),
    ("no-test-group-interval.yml", P::Fail, 0),
    ("rules-bad.yml", P::Fail, 0),
    ("rules.yml", P::Pass, 5),
    ("rules_duplicates.yml", P::Pass, 5),
    ("rules_extrafields.yml", P::Fail, 0),
    ("start-time-test.yml", P::Fail, 0),
    ("unittest.yml", P::Fail, 0),
];

fn fixture_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml") || n.ends_with(".yaml"))
        .collect();
    names.sort();
    names
}

#[test]
fn every_fixture_is_in_both_tables() {
    let Some(dir) = conformance_dir() else { return };
    let names = fixture_names(&dir);
    let t: Vec<&str> = TEST_RULES.iter().map(|r| r.0).collect();
    let c: Vec<&str> = CHECK_RULES.iter().map(|r| r.0).collect();
    assert_eq!(names, t, "TEST_RULES must list every fixture");
    assert_eq!(names, c, "CHECK_RULES must list every fixture");
}

#[test]
fn test_rules_verdicts_match_promtool() {
    let Some(dir) = conformance_dir() else { return };
    let mut mismatches = Vec::new();
    for &(file, promtool, want) in TEST_RULES {
        let report = unittest::run_file(&dir.join(file), &RunOptions::default());
        let got = report.verdict();
        if got != want {
            mismatches
                .push(format!("{file}: got {got:?}, want {want:?} (promtool 2.42: {promtool:?})\n{}", report.render()));
        }
    }
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
}

#[test]
fn check_rules_verdicts_match_promtool() {
    let Some(dir) = conformance_dir() else { return };
    let mut mismatches = Vec::new();
    for &(file, promtool, rules) in CHECK_RULES {
        match (rulefile::load_file(&dir.join(file)), promtool) {
            (Ok(rf), P::Pass) => {
                let n: usize = rf.groups.iter().map(|g| g.rules.len()).sum();
                if n != rules {
                    mismatches.push(format!("{file}: {n} rules found, promtool found {rules}"));
                }
            }
            (Err(_), P::Fail) => {}
            (Ok(_), P::Fail) => mismatches.push(format!("{file}: accepted, promtool rejects it")),
            (Err(e), P::Pass) => mismatches.push(format!("{file}: rejected ({e:?}), promtool accepts it")),
        }
    }
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
}

#[test]
fn duplicate_rules_are_a_lint_warning() {
    let Some(dir) = conformance_dir() else { return };
    let rf = rulefile::load_file(&dir.join("rules_duplicates.yml")).unwrap();
    let lint = rulefile::lint_duplicates(&rf);
    assert_eq!(lint.len(), 1, "{lint:?}");
    assert!(lint[0].contains("job:test:count_over_time1m"), "{lint:?}");
    let clean = rulefile::load_file(&dir.join("rules.yml")).unwrap();
    assert!(rulefile::lint_duplicates(&clean).is_empty());
}

/// promtool's exact output for `failing.yml` (2.42 and 3.x agree on this file).
#[test]
fn failing_report_reads_like_promtool() {
    let Some(dir) = conformance_dir() else { return };
    let report = unittest::run_file(&dir.join("failing.yml"), &RunOptions::default());
    let got = report.render();
    let body = got.split_once('\n').map(|(_, b)| b).unwrap_or("");
    let want = r#"  FAILED:
    name: Failing test,
    alertname: Test, time: 0s, 
        exp:[
            0:
              Labels:{alertname="Test"}
              Annotations:{}
            ], 
        got:[]

    expr: "test", time: 0s,
        exp: {__name__="test"} 1E+00
        got: {__name__="test"} 0E+00

    name: Failing alert test,
    alertname: InstanceDown, time: 5m, 
        exp:[], 
        got:[
            0:
              Labels:{alertname="InstanceDown", job="test", severity="page"}
              Annotations:{description=" of job test has been down for more than 5 minutes.", summary="Instance  down"}
            ]

    name: Failing alert test,
    alertname: AlwaysFiring, time: 5m, 
        exp:[], 
        got:[
            0:
              Labels:{alertname="AlwaysFiring"}
              Annotations:{}
            ]


"#;
    assert_eq!(body, want, "full report:\n{got}");
    assert!(got.starts_with("Unit Testing:  "), "{got}");
}

#[test]
fn error_reports_name_the_check() {
    let Some(dir) = conformance_dir() else { return };
    let r = unittest::run_file(&dir.join("bad-rules-error-test.yml"), &RunOptions::default());
    assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
    assert!(r.failures[0].starts_with("    rule: joined, time: 0s, err: "), "{:?}", r.failures);
    assert!(r.failures[0].contains("many-to-many matching not allowed"), "{:?}", r.failures);

    let r = unittest::run_file(&dir.join("bad-promql.yml"), &RunOptions::default());
    assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
    assert!(r.failures[0].starts_with(r#"    expr: "join_1 + on(a) join_2", time: 0s, err: "#), "{:?}", r.failures);

    let r = unittest::run_file(&dir.join("bad-rules-syntax-test.yml"), &RunOptions::default());
    assert!(r.failures.iter().any(|f| f.contains("bad-rules-syntax.yml:7")), "{:?}", r.failures);

    let r = unittest::run_file(&dir.join("rules.yml"), &RunOptions::default());
    assert!(r.failures[0].contains("groups"), "{:?}", r.failures);
}

#[test]
fn native_histogram_groups_are_unsupported_not_passed() {
    let Some(dir) = conformance_dir() else { return };
    let r = unittest::run_file(&dir.join("unittest.yml"), &RunOptions::default());
    assert_eq!(r.verdict(), Verdict::Unsupported, "{}", r.render());
    assert_eq!(r.unsupported.len(), 1, "{:?}", r.unsupported);
    // The four other test groups ran and passed.
    assert_eq!((r.groups_run, r.groups_passed), (4, 4), "{}", r.render());
    let text = r.render();
    assert!(text.contains("UNSUPPORTED") && !text.contains("SUCCESS"), "{text}");
}

#[test]
fn run_filter_selects_groups_by_name() {
    let Some(dir) = conformance_dir() else { return };
    let opts = RunOptions { run: Some(regex::Regex::new("^Failing alert").unwrap()) };
    let r = unittest::run_file(&dir.join("failing.yml"), &opts);
    assert_eq!(r.groups_run, 1);
    assert_eq!(r.failures.len(), 2, "{:?}", r.failures);
}

#[test]
fn default_rule_tests_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rules/tests");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml") {
            n += 1;
            let r = unittest::run_file(&path, &RunOptions::default());
            assert_eq!(r.verdict(), Verdict::Passed, "{}", r.render());
            assert!(r.groups_passed > 0);
        }
    }
    assert!(n >= 2, "expected the default rule tests in {}", dir.display());
}

/// Every prefix of two fixtures (truncated files, broken YAML, half-written series) gives a
/// report, never a panic.
#[test]
fn truncated_files_never_panic() {
    let Some(dir) = conformance_dir() else { return };
    for file in ["failing.yml", "no-test-group-interval.yml"] {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        for cut in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            let r = unittest::run_str(&path, &text[..cut], &RunOptions::default());
            let _ = r.render();
        }
    }
}
