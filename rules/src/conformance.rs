//! Locating Prometheus' conformance data (PromQL test scripts, promtool and rulefmt
//! fixtures) for the tests and the `promqltest` example.
//!
//! The data is not part of this repository: it lives in `shared/conformance/` beside the
//! repository's directory (see `../shared/conformance/README.md`). A clone elsewhere sets
//! `WARDEN_CONFORMANCE_DIR` to that directory; `.ci/run` does so.

use std::path::{Path, PathBuf};

/// Environment variable naming the conformance directory.
pub const ENV_DIR: &str = "WARDEN_CONFORMANCE_DIR";

/// The conformance sub-directory `sub` (`promql`, `promtool`, `rulefmt`): under
/// `$WARDEN_CONFORMANCE_DIR` if set, else `../shared/conformance` relative to the
/// repository root. Errors name the path tried.
pub fn data_dir(sub: &str) -> Result<PathBuf, String> {
    let base = match std::env::var_os(ENV_DIR) {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance"),
    };
    let dir = base.join(sub);
    if dir.is_dir() { Ok(dir) } else { Err(format!("conformance data not found at {} (set {ENV_DIR})", dir.display())) }
}

/// For tests: the directory, or `None` after printing why the test is skipped. With
/// `WARDEN_REQUIRE_SERVICES=1` (CI) a missing directory panics instead, so CI cannot pass
/// by skipping. The reason goes to the process's real stderr, which the test harness does
/// not capture.
pub fn data_dir_for_test(sub: &str) -> Option<PathBuf> {
    match data_dir(sub) {
        Ok(d) => Some(d),
        Err(e) if std::env::var("WARDEN_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("WARDEN_REQUIRE_SERVICES=1 but {e}")
        }
        Err(e) => {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "skipping: {e}");
            None
        }
    }
}
