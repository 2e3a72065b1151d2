//! `platform-api`: the platform's health-records API, the service Warden watches and
//! repairs. Users, roles and grants; vitals, lab results and notes; lab report parsing;
//! risk assessments; an audit trail of every health-record access; Prometheus metrics,
//! OpenTelemetry traces and JSON logs; fault injection for remediation tests.
//!
//! The crate depends on no Warden crate: it is only watched.

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod db;
pub mod error;
pub mod extract;
pub mod faults;
pub mod labparse;
pub mod risk;
pub mod server;
pub mod state;
pub mod telemetry;
