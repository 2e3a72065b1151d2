//! `warden-collector`: Warden's signal model, sources (host, scrape, file tail, OTLP in),
//! span metrics, the PHI redactor, and the buffers and sinks that deliver redacted data.
//!
//! Data flows source → [`pipeline::BatchSender`] (bounded) → redactor → consumers; see
//! `ARCHITECTURE.md`. This crate never depends on `warden-rules`.

pub mod ack;
pub mod exposition;
pub mod otlp;
pub mod pipeline;
pub mod redact;
pub mod signal;
pub mod sinks;
pub mod sources;
pub mod spanmetrics;
