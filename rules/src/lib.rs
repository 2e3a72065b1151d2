//! `warden-rules`: Prometheus rule files, PromQL evaluation, the in-memory time-series
//! store, the alert state machine and the rule unit-test runner.
//!
//! It does no I/O but reading rule files, and never depends on `warden-collector`.
//!
//! - [`conformance`]: where Prometheus' conformance data is, for tests.
//! - [`labels`]: label sets, the identity of a series.
//! - [`storage`]: the store the rules read ([`storage::Queryable`]) and write
//!   ([`storage::Appendable`]), and its in-memory implementation [`storage::Db`].
//! - [`promql`]: the PromQL evaluator.
//! - [`promqltest`]: the runner for Prometheus' PromQL test scripts.
//! - [`alerting`]: alerting rules, the alert state machine and its restoration.
//! - [`recording`]: recording rules.
//! - [`group`]: rule groups, their evaluation and schedule.
//! - [`rulefile`]: loading and validating Prometheus rule files.
//! - [`template`]: the Go-template subset of alert labels and annotations.
//! - [`manager`]: the rule files in force, their schedules, and reloads that keep the
//!   last good rules.
//! - [`watch`]: file watching that triggers reloads.
//! - [`unittest`]: rule unit tests in promtool's format (`warden test-rules`).

pub mod alerting;
pub mod conformance;
pub mod group;
pub mod labels;
pub mod manager;
pub mod promql;
pub mod promqltest;
pub mod recording;
pub mod rulefile;
pub mod storage;
pub mod template;
pub mod unittest;
pub mod watch;
