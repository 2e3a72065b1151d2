//! `platform-api`: parse flags, start telemetry, open the database, bind, log the bound
//! address, serve until SIGTERM/SIGINT, drain within the grace period, flush traces.

use clap::Parser;
use platform_api::config::Config;
use platform_api::server::{Service, bind_reuseport, shutdown_signal};
use std::process::ExitCode;

fn main() -> ExitCode {
    let config = Config::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("platform-api: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let telemetry =
            match platform_api::telemetry::init(&config.log, config.log_file.as_deref(), !config.disable_telemetry) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("platform-api: {e:#}");
                    return ExitCode::from(64);
                }
            };
        let code = match run(config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "platform-api failed");
                eprintln!("platform-api: {e:#}");
                ExitCode::FAILURE
            }
        };
        // Flushing blocks on the exporter task, which runs on this runtime's other workers.
        tokio::task::block_in_place(|| telemetry.shutdown());
        code
    })
}

async fn run(config: Config) -> anyhow::Result<()> {
    let service = Service::build(&config).await?;
    let listener = bind_reuseport(config.listen).map_err(|e| anyhow::anyhow!("cannot bind {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, backend = service.state.db.backend().otel_name(), "listening");
    service.serve(listener, shutdown_signal(), config.shutdown_grace).await?;
    tracing::info!("stopped");
    Ok(())
}
