//! Runs Prometheus PromQL test scripts (`*.test`) against warden's evaluator.
//!
//! Usage: `promqltest [-v|-vv] FILE...`. Prints `FILE: P passed, F failed, U unsupported`
//! per file (with `-v`, each failure and its reason; with `-vv`, unsupported cases too),
//! then `N passed, M failed, K unsupported`. `--immediate-name-removal` runs the engine
//! with Prometheus' server default instead of the test engine's delayed name removal.
//! Exits 1 if any case failed, 2 on a usage or I/O error.

use std::path::Path;
use std::process::ExitCode;

use warden_rules::promqltest::{CaseStatus, default_options, run_file_with};

fn main() -> ExitCode {
    let mut verbose = false;
    let mut verbose_unsupported = false;
    let mut opts = default_options();
    let mut files = Vec::new();
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "-v" | "--verbose" => verbose = true,
            "-vv" => (verbose, verbose_unsupported) = (true, true),
            "--immediate-name-removal" => opts.delayed_name_removal = false,
            _ => files.push(a),
        }
    }
    if files.is_empty() {
        eprintln!("usage: promqltest [-v|-vv] [--immediate-name-removal] FILE...");
        return ExitCode::from(2);
    }
    let (mut p, mut f, mut u) = (0, 0, 0);
    for file in &files {
        let report = match run_file_with(Path::new(file), opts.clone()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{file}: {e}");
                return ExitCode::from(2);
            }
        };
        println!("{report}");
        if verbose {
            for c in &report.cases {
                match &c.status {
                    CaseStatus::Failed(reason) => println!("  FAIL {reason}\n       expr: {}", c.expr),
                    CaseStatus::Unsupported(reason) if verbose_unsupported => {
                        println!("  UNSUPPORTED {}:{}: {reason}\n       expr: {}", report.name, c.line, c.expr)
                    }
                    _ => {}
                }
            }
        }
        p += report.passed();
        f += report.failed();
        u += report.unsupported();
    }
    println!("{p} passed, {f} failed, {u} unsupported");
    if f > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS }
}
