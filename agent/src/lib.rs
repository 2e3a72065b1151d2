//! The `warden` agent library: the parts of the daemon that sit above the collector and
//! the rules engine. The `warden` binary (`main.rs`, `cli/`) is a thin layer over it.
//!
//! - [`store`]: the agent's state store (sqlx; SQLite by default, PostgreSQL by URL):
//!   alert state, the notification log, silences, the remediation audit log.
//! - [`notify`]: the notifier (Alertmanager semantics: routing tree, grouping, inhibition,
//!   silences, repeat and resolve) and its receivers (email, webhook, Slack, PagerDuty,
//!   Alertmanager, file).
//! - [`remediate`]: remediation policies, guardrails, leader election and actuators
//!   (process, kubernetes, exec).

pub mod notify;
pub mod remediate;
pub mod store;
