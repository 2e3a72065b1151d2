//! `warden`: the agent binary. Today it only reports its version; the daemon (`run`),
//! `check-config`, `redact`, `check-rules` and `test-rules` arrive with their issues.

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
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => println!("warden {}", env!("CARGO_PKG_VERSION")),
    }
}
