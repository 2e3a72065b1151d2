//! `warden-rules`: Prometheus rule files, PromQL evaluation, the in-memory time-series
//! store, the alert state machine and the rule unit-test runner.
//!
//! Not built yet: this crate is reserved by the workspace layout in `DESIGN.md` and holds
//! no code until the rules issue lands. It does no I/O but reading rule files, and never
//! depends on `warden-collector`.
