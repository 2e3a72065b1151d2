//! `warden-testkit`: dev-only helpers shared by the workspace's tests.
//!
//! Tests that need an external service (node_exporter, the Python OpenTelemetry SDK,
//! PostgreSQL, ...) call [`require`] or [`find_program`]: when the service is absent they
//! print why they skip to the real stderr (the test harness hides `eprintln!` of passing
//! tests) and return `None`; with `WARDEN_REQUIRE_SERVICES=1` (CI) they panic instead, so
//! CI cannot pass by skipping. [`TempDir`] and [`Child`] clean up after themselves on drop,
//! also when the test panics.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Whether `WARDEN_REQUIRE_SERVICES=1` is set (CI): a missing service is a failure.
pub fn services_required() -> bool {
    std::env::var("WARDEN_REQUIRE_SERVICES").as_deref() == Ok("1")
}

/// Reports a missing external service: panics under `WARDEN_REQUIRE_SERVICES=1`,
/// otherwise prints `skipping <what>: <why>` to the real stderr.
pub fn skip(what: &str, why: &str) {
    if services_required() {
        panic!("WARDEN_REQUIRE_SERVICES=1 but {what} cannot run: {why}");
    }
    let _ = writeln!(std::io::stderr(), "skipping {what}: {why}");
}

/// `Some(value)` when `found` holds one, else [`skip`]s with `why` and returns `None`.
pub fn require<T>(what: &str, found: Option<T>, why: &str) -> Option<T> {
    if found.is_none() {
        skip(what, why);
    }
    found
}

/// The environment variable `var` if set and non-empty, else the first of `candidates`
/// that is an executable file or is found on `PATH`.
pub fn find_program(var: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(v) = std::env::var(var)
        && !v.is_empty()
    {
        return Some(PathBuf::from(v));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for c in candidates {
        let p = Path::new(c);
        if p.is_absolute() {
            if p.is_file() {
                return Some(p.to_path_buf());
            }
            continue;
        }
        for dir in std::env::split_paths(&path) {
            let full = dir.join(c);
            if full.is_file() {
                return Some(full);
            }
        }
    }
    None
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `<prefix>_<pid>_<n>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/<prefix>_<pid>_<n>`.
    pub fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free TCP port on 127.0.0.1 at the time of the call.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().unwrap().port()
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A child process killed (and reaped) on drop.
pub struct Child(pub std::process::Child);

impl Child {
    /// Spawns `program args...` with stdout/stderr discarded.
    pub fn spawn(program: &Path, args: &[&str]) -> std::io::Result<Child> {
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Child)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A binary built by this workspace (`platform-api`, `warden`) in the target directory the
/// running test binary lives in (`<target>/debug/deps/<test>` → `<target>/debug/<name>`).
/// `cargo test --workspace` builds every package's binaries before it runs tests.
pub fn workspace_bin(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let p = profile_dir.join(name);
    p.is_file().then_some(p)
}

impl Child {
    /// Spawns `program args...` with extra environment variables, output discarded.
    pub fn spawn_with_env(program: &Path, args: &[&str], env: &[(&str, &str)]) -> std::io::Result<Child> {
        Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Child)
    }
}
