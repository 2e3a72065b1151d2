//! The sources: each has a serde `Config` (`deny_unknown_fields`), a pure `validate`,
//! and a `run(self, SourceContext)` future that emits batches until the context's
//! shutdown token fires, then returns.

pub mod file;
pub mod host;
pub mod otlp;
pub mod scrape;
