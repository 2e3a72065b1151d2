//! `warden-collector`: Warden's signal model, sources (host, scrape, file tail, OTLP in),
//! the PHI redactor, buffers and sinks.
//!
//! Not built yet: this crate is reserved by the workspace layout in `DESIGN.md` and holds
//! no code until the collector issue lands. It must never depend on `warden-rules`.
