//! `warden-e2e`: end-to-end tests that start Warden's real binaries, the load generator
//! (`src/bin/loadgen.rs`) the scripts under `bench/` use, and `warden-pipeline`
//! (`src/bin/warden-pipeline.rs`), a file tail → redactor → sinks harness that the crash
//! and outage tests (`tests/pipeline_crash.rs`) kill with SIGKILL and `bench/pipeline`
//! measures, until the agent daemon (`warden run`) takes its place.
