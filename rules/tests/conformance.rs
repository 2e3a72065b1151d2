//! Runs Prometheus' own PromQL test scripts (`shared/conformance/promql/*.test`) through
//! the `promqltest` runner and fails if the pass rate of supported cases drops below
//! [`FLOOR_PERCENT`].
//!
//! Native-histogram cases are reported as unsupported and are not part of the rate. The
//! per-file and total figures are written to the process's real stderr so they show in CI logs
//! even when the test passes.

use std::path::PathBuf;

/// Prints to the real stderr: `eprintln!` output of a passing test is captured and hidden,
/// and these figures must show in CI logs.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

use warden_rules::promqltest::{CaseStatus, run_file};

/// Lowest acceptable pass rate (passed / (passed + failed)), in percent: the rate reached
/// when this was recorded, rounded down.
const FLOOR_PERCENT: f64 = 99.0;

#[test]
fn promql_conformance_pass_rate() {
    let Some(dir) = warden_rules::conformance::data_dir_for_test("promql") else { return };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.test files in {}", dir.display());
    let (mut passed, mut failed, mut unsupported) = (0usize, 0usize, 0usize);
    for f in &files {
        let report = run_file(f).unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
        let (p, fl, u) = (report.passed(), report.failed(), report.unsupported());
        let rate = if p + fl == 0 { 100.0 } else { 100.0 * p as f64 / (p + fl) as f64 };
        say!(
            "{}: {p} passed, {fl} failed, {u} unsupported ({rate:.1}% of supported)",
            f.file_name().unwrap_or_default().to_string_lossy()
        );
        for c in &report.cases {
            if let CaseStatus::Failed(reason) = &c.status {
                say!("  FAIL {reason}");
            }
        }
        passed += p;
        failed += fl;
        unsupported += u;
    }
    let rate = 100.0 * passed as f64 / (passed + failed).max(1) as f64;
    say!("{passed} passed, {failed} failed, {unsupported} unsupported");
    say!("pass rate of supported cases: {rate:.2}% (floor {FLOOR_PERCENT}%)");
    assert!(passed > 0, "no case passed");
    assert!(rate >= FLOOR_PERCENT, "pass rate {rate:.2}% is below the recorded floor {FLOOR_PERCENT}%");
}
