//! `warden`: the agent binary. Today it reports its version, runs the rule tooling
//! (`check-rules` as promtool's `check rules`, `test-rules` as promtool's `test rules`) and
//! the PHI redactor as a line filter (`redact`). The daemon (`run`) and `check-config`
//! arrive with their issues.
//!
//! Exit codes: 0 success; 1 a check or test failed; 3 lint problems with `--lint-fatal`
//! (as promtool); 64 bad usage (`EX_USAGE`, where clap would exit 2).

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Warden: observability and SRE agent with PHI redaction.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version.
    Version,
    /// Check Prometheus rule files (like `promtool check rules`).
    CheckRules(cli::check_rules::Args),
    /// Run rule unit tests in promtool's format (like `promtool test rules`).
    TestRules(cli::test_rules::Args),
    /// Redact PHI from log lines (files or stdin) to stdout, one line out per line in.
    Redact(cli::redact::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version requests are not errors; everything else is bad usage.
            let code = if e.use_stderr() { cli::EXIT_USAGE } else { cli::EXIT_OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let code = match cli.command {
        Command::Version => {
            cli::write_or_ignore(&mut out, &format!("warden {}\n", env!("CARGO_PKG_VERSION")));
            cli::EXIT_OK
        }
        Command::CheckRules(args) => cli::check_rules::run(&args, &mut out, &mut err),
        Command::TestRules(args) => cli::test_rules::run(&args, &mut out, &mut err),
        Command::Redact(args) => cli::redact::run(&args, &mut std::io::stdin().lock(), &mut out, &mut err),
    };
    ExitCode::from(code)
}
