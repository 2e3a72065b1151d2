//! `warden test-rules FILE...`: runs rule unit tests in promtool's format (see
//! [`warden_rules::unittest`]) and prints each file's report as `promtool test rules`
//! does: `Unit Testing:  FILE` and `  SUCCESS` on standard output, `  FAILED:` with the
//! failed checks on standard error.
//!
//! Exit 0 only if every test group of every file ran and passed. A failed check, an
//! unreadable file, or a test group this runner cannot run (native histograms, reported
//! as `UNSUPPORTED`) gives exit 1: a test that did not run is not a passed test.

use std::io::Write;
use std::path::PathBuf;

use warden_rules::unittest::{self, RunOptions, Verdict};

use super::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE, write_or_ignore};

/// Arguments of `test-rules`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Unit-test files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Only run test groups whose name matches this regular expression (repeatable).
    #[arg(long, value_name = "REGEX")]
    pub run: Vec<String>,
}

/// Runs every file; returns the exit code.
pub fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let opts = match RunOptions::with_run_patterns(&args.run) {
        Ok(o) => o,
        Err(e) => {
            write_or_ignore(err, &format!("error: {e}\n"));
            return EXIT_USAGE;
        }
    };
    let mut all_passed = true;
    for path in &args.files {
        let report = unittest::run_file(path, &opts);
        let (to_out, to_err) = report.render_split();
        write_or_ignore(out, &to_out);
        write_or_ignore(err, &to_err);
        all_passed &= report.verdict() == Verdict::Passed;
    }
    if all_passed { EXIT_OK } else { EXIT_FAILURE }
}
