//! The scrape source: pulls Prometheus text 0.0.4 / OpenMetrics expositions from HTTP
//! targets, each on its own schedule, and emits them as metric points the way
//! Prometheus would store them.
//!
//! Per target (one tokio task each, first scrape at a fixed per-target offset within
//! the interval, then every `interval`; a scrape that overruns skips ticks):
//!
//! - **Request**: `GET url` with Prometheus' `Accept` header
//!   ([`crate::exposition::SCRAPE_ACCEPT_HEADER`]), `Accept-Encoding: gzip` and
//!   `X-Prometheus-Scrape-Timeout-Seconds`; no proxy from the environment. The whole
//!   scrape (connect to last body byte) is bounded by `timeout`; the body by
//!   `body_size_limit` (checked against `Content-Length` first, then while reading, and
//!   again after gunzip). The parser is chosen by the response `Content-Type`
//!   (OpenMetrics for `application/openmetrics-text`, else text 0.0.4). Parsing runs on
//!   the blocking pool so a large body never stalls the runtime.
//! - **Labels**: `job`, `instance` (the URL's `host:port`, default port filled in) and
//!   the static `labels` are attached as in Prometheus, including `honor_labels` and
//!   `exported_<name>` on clashes; empty label values are dropped.
//! - **Timestamps**: samples without one (or all, when `honor_timestamps` is off) get
//!   the scrape start time, snapped to the schedule when it is at most
//!   [`TIMESTAMP_TOLERANCE`] (2 ms, and at most 1 % of the interval) late, as
//!   Prometheus does, so a regular series compresses to one bit per timestamp.
//! - **Synthetic series**, always written with the target labels at the scrape start:
//!   `up` (1 or 0), `scrape_duration_seconds`, `scrape_samples_scraped` (samples in the
//!   body; 0 if it could not be fetched or parsed), `scrape_samples_post_metric_relabeling`
//!   (the same: there is no metric relabeling; 0 on failure except a sample-limit one),
//!   and `scrape_series_added` (series not in the previous successful scrape).
//! - **Staleness**: a series in the previous successful scrape but not in this one gets
//!   a point with value [`crate::exposition::STALE_NAN_BITS`]; a failed scrape makes all
//!   of them stale. Samples carrying their own timestamp are not tracked (as in
//!   Prometheus). Nothing is marked stale when the source shuts down: a reload that
//!   keeps the target continues the series.
//! - **Failures** (down, timeout, non-200, body too large, unreadable or garbage body,
//!   too many samples) never end the task: the scrape yields `up 0`, increments the
//!   component's `errors` and one label-free counter per reason,
//!   `scrape_failures_{connect,timeout,http_status,body_too_large,read,parse,sample_limit,internal}`
//!   (exported as `warden_source_scrape_failures_<reason>_total`), and logs a warning
//!   naming the URL (without credentials) and the reason when a target starts failing
//!   or fails for a new reason (repeats are logged at debug, recovery at info). No log or
//!   error ever contains the response body.
//! - Duplicate series within one scrape keep the first sample; the rest are dropped
//!   and counted (`dropped`, `scrape_duplicate_samples`).
//! - Counters: `received` = samples parsed, `emitted` = points sent downstream
//!   (samples, markers and synthetic series), `dropped` = points discarded (over the
//!   sample limit, duplicates, or in flight at shutdown).
//!
//! Each scrape is one [`crate::signal::Batch`], sent with `send().await`, so a slow
//! consumer delays the next scrape (missed ticks are skipped) instead of queueing.

mod config;
mod scraper;

pub use config::{
    Config, DEFAULT_BODY_SIZE_LIMIT, DEFAULT_INTERVAL, DEFAULT_TIMEOUT, MIN_INTERVAL, TargetConfig, parse_byte_size,
};
pub use scraper::{SYNTHETIC, Scrape, ScrapeError, Scraper, TIMESTAMP_TOLERANCE, http_client};

use crate::pipeline::SourceContext;
use crate::signal::Batch;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::time::MissedTickBehavior;

/// Runs the source: one task per target, until `ctx.shutdown` fires. Targets that fail
/// to start (an invalid URL that skipped validation) are logged and counted as errors.
pub async fn run(config: Config, ctx: SourceContext) {
    let client = match http_client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "scrape source cannot build its HTTP client; no target is scraped");
            ctx.stats.errors.inc();
            ctx.shutdown.cancelled().await;
            return;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (i, target) in config.targets.iter().enumerate() {
        match Scraper::new(target, client.clone(), Arc::clone(&ctx.stats)) {
            Ok(scraper) => {
                tasks.spawn(scrape_loop(scraper, ctx.clone()));
            }
            Err(e) => {
                tracing::error!(target_index = i, job = %target.job, error = %e, "scrape target not started");
                ctx.stats.errors.inc();
            }
        }
    }
    tracing::info!(component = ctx.stats.name(), targets = tasks.len(), "scrape source started");
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined
            && e.is_panic()
        {
            tracing::error!(component = ctx.stats.name(), "a scrape task panicked; its target is no longer scraped");
            ctx.stats.errors.inc();
        }
    }
    ctx.shutdown.cancelled().await;
}

/// One target's loop: tick, scrape, send; every await also watches the shutdown.
async fn scrape_loop(mut scraper: Scraper, ctx: SourceContext) {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let start = tokio::time::Instant::now() + scraper.first_delay(since_epoch);
    let mut ticker = tokio::time::interval_at(start, scraper.interval());
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let scrape = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => return,
            s = scraper.scrape() => s,
        };
        let n = scrape.points.len() as u64;
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => {
                ctx.stats.dropped.add(n);
                return;
            }
            sent = ctx.out.send(Batch::metrics(scrape.points)) => match sent {
                Ok(()) => ctx.stats.emitted.add(n),
                Err(_) => {
                    ctx.stats.dropped.add(n);
                    tracing::debug!(component = ctx.stats.name(), "pipeline closed; scrape loop waits for shutdown");
                    ctx.shutdown.cancelled().await;
                    return;
                }
            }
        }
    }
}
