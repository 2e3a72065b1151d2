//! `warden-e2e`: end-to-end tests that start Warden's real binaries, and the load
//! generator (`src/bin/loadgen.rs`) the scripts under `bench/` use.
//!
//! The end-to-end tests arrive with the agent daemon; today this crate holds the load
//! generator only.
