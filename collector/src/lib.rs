//! `warden-collector`: Warden's signal model, sources (host, scrape, file tail, OTLP in),
//! span metrics, and (later) the PHI redactor, buffers and sinks.
//!
//! Data flows source → [`pipeline::BatchSender`] (bounded) → redactor → consumers; see
//! `ARCHITECTURE.md`. This crate never depends on `warden-rules`.

pub mod ack;
pub mod exposition;
pub mod otlp;
pub mod pipeline;
pub mod redact;
pub mod signal;
pub mod sources;
pub mod spanmetrics;
