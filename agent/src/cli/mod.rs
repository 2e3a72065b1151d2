//! The tooling subcommands of `warden`: [`check_rules`] and [`test_rules`] for rule files,
//! [`redact`] for the PHI redactor as a line filter.
//!
//! Each subcommand writes to the `out`/`err` writers it is given (standard output and
//! error in the binary) and returns the process exit code; a closed pipe never makes it
//! panic, the output is simply lost.

use std::io::Write;

pub mod check_rules;
pub mod redact;
pub mod test_rules;

/// Everything passed.
pub const EXIT_OK: u8 = 0;
/// A check or a test failed (or a test could not run).
pub const EXIT_FAILURE: u8 = 1;
/// Lint problems found with `--lint-fatal` (promtool's code).
pub const EXIT_LINT: u8 = 3;
/// Bad command-line usage (`EX_USAGE` from sysexits.h).
pub const EXIT_USAGE: u8 = 64;

/// Writes `text`, ignoring write errors (a closed pipe must not abort the run).
pub fn write_or_ignore(w: &mut dyn Write, text: &str) {
    let _ = w.write_all(text.as_bytes());
    let _ = w.flush();
}
