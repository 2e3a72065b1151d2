//! `warden check-rules FILE...`: validates Prometheus rule files the way `promtool check
//! rules` does, with its output shape:
//!
//! ```text
//! Checking rules.yml
//!   SUCCESS: 5 rules found
//!
//! Checking bad.yml
//!   FAILED:
//! bad.yml:7:15: group "g", rule 1 ("x"), could not parse expression: ...
//! ```
//!
//! Every error names the file and line. Duplicate rules (same name and labels) are a lint
//! warning, printed after `SUCCESS` and not failing the file unless `--lint-fatal` is given
//! (exit 3, as promtool). Exit 1 if any file failed.

use std::io::Write;
use std::path::PathBuf;

use warden_rules::rulefile::{self, ParseOptions};

use super::{EXIT_FAILURE, EXIT_LINT, EXIT_OK, write_or_ignore};

/// Which lint checks to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lint {
    /// No lint checks.
    None,
    /// Rules with the same name and labels (the default).
    DuplicateRules,
    /// Every lint check.
    All,
}

/// Arguments of `check-rules`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Rule files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Lint checks to run.
    #[arg(long, value_enum, default_value = "duplicate-rules")]
    pub lint: Lint,
    /// Exit with code 3 when a lint check finds something.
    #[arg(long)]
    pub lint_fatal: bool,
    /// Ignore unknown fields in rule files instead of rejecting them.
    #[arg(long)]
    pub ignore_unknown_fields: bool,
}

/// Checks every file; returns the exit code.
pub fn run(args: &Args, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let opts = ParseOptions { ignore_unknown_fields: args.ignore_unknown_fields, ..ParseOptions::default() };
    let mut failed = false;
    let mut linted = false;
    for path in &args.files {
        write_or_ignore(out, &format!("Checking {}\n", path.display()));
        match rulefile::load_file_with(path, &opts) {
            Ok(rf) => {
                let n: usize = rf.groups.iter().map(|g| g.rules.len()).sum();
                write_or_ignore(out, &format!("  SUCCESS: {n} rules found\n"));
                if args.lint != Lint::None {
                    let warnings = rulefile::lint_duplicates(&rf);
                    linted |= !warnings.is_empty();
                    for w in warnings {
                        write_or_ignore(err, &format!("  WARNING: {w}\n"));
                    }
                }
            }
            Err(errors) => {
                failed = true;
                let mut text = String::from("  FAILED:\n");
                for e in errors {
                    text.push_str(&e.to_string());
                    text.push('\n');
                }
                write_or_ignore(err, &text);
            }
        }
        write_or_ignore(out, "\n");
    }
    if failed {
        EXIT_FAILURE
    } else if linted && args.lint_fatal {
        EXIT_LINT
    } else {
        EXIT_OK
    }
}
