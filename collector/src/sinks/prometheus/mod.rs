//! Prometheus sinks: the `/federate` endpoint a Prometheus server scrapes ([`federate`])
//! and the remote write 1.0 client that pushes to any remote-write receiver
//! ([`remote_write`]). Both take the flat [`crate::signal::MetricPoint`]s as they are
//! (name, sorted labels, value, millisecond timestamp); logs and spans are ignored.
//!
//! - Pull: [`federate::Federation`] holds the latest sample per series; the agent mounts
//!   [`federate::router`] on its HTTP port and feeds the store through a
//!   [`federate::FederationSink`]. The scrape job needs `honor_labels: true`.
//! - Push: [`remote_write::RemoteWriteSink`] groups a batch per series, splits it into
//!   requests of `max_samples_per_send`, and keeps per-series order across retries.

pub mod federate;
pub mod proto;
pub mod remote_write;

pub use federate::{Federation, FederationConfig, FederationSink, Selector, router};
pub use remote_write::{BasicAuth, RemoteWriteConfig, RemoteWriteSink, RemoteWriteStats};
