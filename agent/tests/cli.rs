//! End-to-end tests of the `warden` binary's rule tooling: `check-rules` and `test-rules`
//! on promtool's fixtures (`../shared/conformance/promtool`, or
//! `$WARDEN_CONFORMANCE_DIR/promtool`) and on the default rules under `deploy/rules`,
//! checking exit codes and the key lines of the output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn warden(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden")).args(args).current_dir(dir).output().expect("run warden")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn fixtures() -> Option<PathBuf> {
    warden_rules::conformance::data_dir_for_test("promtool")
}

fn deploy_rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rules")
}

#[test]
fn version_still_works() {
    let o = warden(Path::new("."), &["version"]);
    assert_eq!(code(&o), 0);
    assert_eq!(stdout(&o), format!("warden {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_usage_exits_64() {
    let dir = Path::new(".");
    for args in [
        &[][..],
        &["no-such-command"][..],
        &["check-rules"][..],
        &["test-rules"][..],
        &["check-rules", "--no-such-flag", "x.yml"][..],
        &["check-rules", "--lint", "bogus", "x.yml"][..],
        &["test-rules", "--run", "(", "x.yml"][..],
    ] {
        let o = warden(dir, args);
        assert_eq!(code(&o), 64, "warden {args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty(), "warden {args:?} explains the error");
    }
    let o = warden(dir, &["--help"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("check-rules") && stdout(&o).contains("test-rules"), "{}", stdout(&o));
}

#[test]
fn default_rules_check_and_pass_their_tests() {
    let dir = deploy_rules();
    let o = warden(&dir, &["check-rules", "node.yml", "platform-api.yml"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("Checking node.yml\n  SUCCESS: 7 rules found\n"), "{out}");
    assert!(out.contains("Checking platform-api.yml\n  SUCCESS: 8 rules found\n"), "{out}");

    let o = warden(&dir, &["test-rules", "tests/node.test.yml", "tests/platform-api.test.yml"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("Unit Testing:  tests/node.test.yml\n  SUCCESS\n"), "{out}");
    assert!(out.contains("Unit Testing:  tests/platform-api.test.yml\n  SUCCESS\n"), "{out}");
}

/// `promtool check rules` exit codes on its fixtures, one file at a time.
#[test]
fn check_rules_exit_codes_match_promtool() {
    let Some(dir) = fixtures() else { return };
    let cases: &[(&str, i32)] = &[
        ("rules.yml", 0),
        ("at-modifier.yml", 0),
        ("negative-offset.yml", 0),
        ("bad-rules-error.yml", 0),
        ("rules_duplicates.yml", 0),
        ("rules-bad.yml", 1),
        ("bad-rules-syntax.yml", 1),
        ("rules_extrafields.yml", 1),
        ("unittest.yml", 1),
        ("failing.yml", 1),
    ];
    for &(file, want) in cases {
        let o = warden(&dir, &["check-rules", file]);
        assert_eq!(code(&o), want, "check-rules {file}:\n{}{}", stdout(&o), stderr(&o));
        assert!(stdout(&o).starts_with(&format!("Checking {file}\n")), "{}", stdout(&o));
        if want == 0 {
            assert!(stdout(&o).contains("  SUCCESS: "), "{}", stdout(&o));
        } else {
            assert!(stderr(&o).contains("  FAILED:\n"), "{}", stderr(&o));
            // Errors name the file and a line.
            assert!(stderr(&o).contains(&format!("{file}:")), "{}", stderr(&o));
        }
    }
}

#[test]
fn check_rules_errors_and_lint() {
    let Some(dir) = fixtures() else { return };
    let o = warden(&dir, &["check-rules", "rules-bad.yml"]);
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    assert!(err.contains("rules-bad.yml:12"), "{err}");
    assert!(err.contains("InstanceDown") && err.contains("$label"), "{err}");

    // Duplicates warn; with --lint-fatal they give promtool's exit code 3; --lint none hides them.
    let o = warden(&dir, &["check-rules", "rules_duplicates.yml"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("  SUCCESS: 5 rules found"), "{}", stdout(&o));
    assert!(stderr(&o).contains("WARNING") && stderr(&o).contains("job:test:count_over_time1m"), "{}", stderr(&o));
    let o = warden(&dir, &["check-rules", "--lint-fatal", "rules_duplicates.yml"]);
    assert_eq!(code(&o), 3);
    let o = warden(&dir, &["check-rules", "--lint", "none", "--lint-fatal", "rules_duplicates.yml"]);
    assert_eq!(code(&o), 0);
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));

    // Unknown fields can be ignored, as with promtool's --ignore-unknown-fields.
    let o = warden(&dir, &["check-rules", "--ignore-unknown-fields", "rules_extrafields.yml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    // One bad file fails the run; the good ones are still checked.
    let o = warden(&dir, &["check-rules", "rules.yml", "rules-bad.yml", "at-modifier.yml"]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("Checking at-modifier.yml\n  SUCCESS: 1 rules found"), "{}", stdout(&o));

    let o = warden(&dir, &["check-rules", "no-such-file.yml"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("no-such-file.yml"), "{}", stderr(&o));
}

/// `promtool test rules` verdicts (Prometheus 3.x) as exit codes.
#[test]
fn test_rules_exit_codes_match_promtool() {
    let Some(dir) = fixtures() else { return };
    let cases: &[(&str, i32)] = &[
        ("at-modifier-test.yml", 0),
        ("negative-offset-test.yml", 0),
        ("long-period.yml", 0),
        ("no-test-group-interval.yml", 0),
        ("start-time-test.yml", 0),
        ("failing.yml", 1),
        ("bad-input-series.yml", 1),
        ("bad-promql.yml", 1),
        ("bad-rules-error-test.yml", 1),
        ("bad-rules-syntax-test.yml", 1),
        ("rules.yml", 1),
    ];
    for &(file, want) in cases {
        let o = warden(&dir, &["test-rules", file]);
        assert_eq!(code(&o), want, "test-rules {file}:\n{}{}", stdout(&o), stderr(&o));
        assert!(stdout(&o).starts_with(&format!("Unit Testing:  {file}\n")), "{}", stdout(&o));
        if want == 0 {
            assert!(stdout(&o).contains("  SUCCESS\n"), "{}", stdout(&o));
        } else {
            assert!(stderr(&o).starts_with("  FAILED:\n"), "{}", stderr(&o));
        }
    }
}

#[test]
fn test_rules_failure_details() {
    let Some(dir) = fixtures() else { return };
    let o = warden(&dir, &["test-rules", "failing.yml"]);
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    assert!(err.contains("    name: Failing alert test,\n    alertname: InstanceDown, time: 5m, \n"), "{err}");
    assert!(err.contains("    expr: \"test\", time: 0s,\n        exp: {__name__=\"test\"} 1E+00\n"), "{err}");

    // --run selects test groups by name: only the alert group runs.
    let o = warden(&dir, &["test-rules", "--run", "alert", "failing.yml"]);
    assert_eq!(code(&o), 1);
    assert!(!stderr(&o).contains("expr: \"test\""), "{}", stderr(&o));
    let o = warden(&dir, &["test-rules", "--run", "^nothing$", "failing.yml"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    let o = warden(&dir, &["test-rules", "bad-rules-syntax-test.yml"]);
    assert!(stderr(&o).contains("bad-rules-syntax.yml:7"), "{}", stderr(&o));

    let o = warden(&dir, &["test-rules", "no-such-test.yml"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("no-such-test.yml"), "{}", stderr(&o));
}

#[test]
fn native_histograms_are_unsupported_and_fail_the_run() {
    let Some(dir) = fixtures() else { return };
    let o = warden(&dir, &["test-rules", "unittest.yml"]);
    assert_eq!(code(&o), 1, "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("UNSUPPORTED") && stderr(&o).contains("native histograms"), "{}", stderr(&o));
    assert!(!stdout(&o).contains("SUCCESS"), "{}", stdout(&o));

    // A passing file next to a failing one: exit 1, both reported.
    let o = warden(&dir, &["test-rules", "long-period.yml", "failing.yml"]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("Unit Testing:  long-period.yml\n  SUCCESS\n"), "{}", stdout(&o));
}
