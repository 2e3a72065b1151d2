//! The `process` actuator: Warden supervises N replicas of one command, the way a kubelet
//! supervises a pod's containers.
//!
//! - The replicas share the service port: the command binds it with SO_REUSEPORT
//!   (`platform-api --listen` does), so the kernel spreads connections over them.
//! - Each replica runs in its own process group with stdin closed; its stdout and stderr
//!   are appended, line by line with a `[replica N pid P]` prefix, to
//!   `<data_dir>/logs/<target>.log` (rotated once past `log_max_bytes`), together with
//!   Warden's own lines about starts, exits and restarts.
//! - Probes as Kubernetes': an HTTP GET, 200–399 is success, every probe bounded by its
//!   `timeout`, first after `initial_delay`, then every `period`. `failure_threshold`
//!   liveness failures in a row restart the replica; readiness is tracked and awaited by
//!   a rolling restart.
//! - Stopping a replica is SIGTERM to its group, `termination_grace`, then SIGKILL.
//! - A replica that exited or failed liveness restarts after a backoff doubling from
//!   `crash_backoff.initial` to `.max` (kubelet's CrashLoopBackOff), reset once a replica
//!   ran for `backoff_reset_after`. A restart asked for by remediation starts at once.
//! - Scale-up starts replicas in the lowest free slots; scale-down stops the newest.
//! - Everything stops with the shutdown token (or [`ProcessActuator::shutdown`]).
//!
//! In `args` and `env`, `{replica}` is the slot, `{replica_port}` the slot's own port and
//! `{target}` the target name; `WARDEN_TARGET` and `WARDEN_REPLICA` are set too.

use super::exec::signal_group;
use super::{ActionOutcome, Actuator, ActuatorError, BoxFuture};
use crate::remediate::config::{ProbeConfig, ProbePort, ProcessConfig};
use rustix::process::Signal;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// Lines queued for the log file before the output readers wait.
const LOG_QUEUE: usize = 1024;
/// Longest log line written; longer output is split.
const MAX_LINE: usize = 16 * 1024;
/// How long a rolling restart waits for a replica to come back (beyond its grace).
const RESTART_WAIT: Duration = Duration::from_secs(120);

/// What one replica is doing now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    /// Its slot (0-based; `{replica}`).
    pub slot: u32,
    /// The running process, if any.
    pub pid: Option<u32>,
    /// Whether the readiness probe passes (true without a probe while running).
    pub ready: bool,
    /// Restarts after an exit or a liveness failure.
    pub restarts: u32,
    /// Processes started for this replica so far.
    pub starts: u64,
}

#[derive(Debug, Default)]
struct ReplicaState {
    pid: AtomicU32,
    ready: AtomicBool,
    restarts: AtomicU32,
    starts: AtomicU64,
}

struct Replica {
    slot: u32,
    id: u64,
    stop: CancellationToken,
    restart: Arc<Notify>,
    state: Arc<ReplicaState>,
    task: tokio::task::JoinHandle<()>,
}

struct Inner {
    target: String,
    config: ProcessConfig,
    shutdown: CancellationToken,
    log: mpsc::Sender<Vec<u8>>,
    log_closed: CancellationToken,
    http: reqwest::Client,
}

/// The `process` actuator (see the module docs).
pub struct ProcessActuator {
    inner: Arc<Inner>,
    replicas: tokio::sync::Mutex<Vec<Replica>>,
    next_id: AtomicU64,
    log_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    log_path: PathBuf,
}

impl ProcessActuator {
    /// Starts `initial` replicas of target `target`. Replicas stop when `shutdown` fires.
    pub async fn start(
        target: &str,
        config: ProcessConfig,
        data_dir: &Path,
        initial: i64,
        shutdown: CancellationToken,
    ) -> Result<ProcessActuator, ActuatorError> {
        let dir = data_dir.join("logs");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| ActuatorError::new(format!("cannot create {}: {e}", dir.display())))?;
        let log_path = dir.join(format!("{target}.log"));
        let file = open_append(&log_path).await?;
        let (tx, rx) = mpsc::channel(LOG_QUEUE);
        let log_closed = CancellationToken::new();
        let log_task = tokio::spawn(write_log(file, log_path.clone(), config.log_max_bytes, rx, log_closed.clone()));
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ActuatorError::new(format!("probe client: {e}")))?;
        let a = ProcessActuator {
            inner: Arc::new(Inner { target: target.to_string(), config, shutdown, log: tx, log_closed, http }),
            replicas: tokio::sync::Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            log_task: std::sync::Mutex::new(Some(log_task)),
            log_path,
        };
        a.set_replicas(initial).await?;
        Ok(a)
    }

    /// The per-target log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Every replica's state, by slot.
    pub async fn status(&self) -> Vec<ReplicaStatus> {
        let reps = self.replicas.lock().await;
        let mut out: Vec<ReplicaStatus> = reps.iter().map(|r| status_of(r, self.has_readiness())).collect();
        out.sort_by_key(|s| s.slot);
        out
    }

    fn has_readiness(&self) -> bool {
        self.inner.config.readiness_probe.is_some()
    }

    async fn set_replicas(&self, n: i64) -> Result<(), ActuatorError> {
        let n = usize::try_from(n).map_err(|_| ActuatorError::new("replica count must be >= 0"))?;
        let mut reps = self.replicas.lock().await;
        while reps.len() < n {
            let slot = (0u32..).find(|s| !reps.iter().any(|r| r.slot == *s)).unwrap_or(0);
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let stop = self.inner.shutdown.child_token();
            let restart = Arc::new(Notify::new());
            let state = Arc::new(ReplicaState::default());
            let task = tokio::spawn(run_replica(
                Arc::clone(&self.inner),
                slot,
                stop.clone(),
                Arc::clone(&restart),
                Arc::clone(&state),
            ));
            reps.push(Replica { slot, id, stop, restart, state, task });
        }
        if reps.len() > n {
            // Newest first, as a ReplicaSet scaling down prefers the youngest pods.
            reps.sort_by_key(|r| r.id);
            let victims = reps.split_off(n);
            for v in &victims {
                v.stop.cancel();
            }
            for v in victims {
                let _ = v.task.await;
            }
        }
        Ok(())
    }

    async fn restart_one(&self, slot: u32) -> Result<(), ActuatorError> {
        let (restart, state) = {
            let reps = self.replicas.lock().await;
            let r = reps
                .iter()
                .find(|r| r.slot == slot)
                .ok_or_else(|| ActuatorError::new(format!("no replica in slot {slot}")))?;
            (Arc::clone(&r.restart), Arc::clone(&r.state))
        };
        let before = state.starts.load(Ordering::SeqCst);
        restart.notify_one();
        let deadline = Instant::now() + self.inner.config.termination_grace + RESTART_WAIT;
        let readiness = self.has_readiness();
        loop {
            let started = state.starts.load(Ordering::SeqCst) > before && state.pid.load(Ordering::SeqCst) != 0;
            if started && (!readiness || state.ready.load(Ordering::SeqCst)) {
                return Ok(());
            }
            if Instant::now() >= deadline || self.inner.shutdown.is_cancelled() {
                return Err(ActuatorError::new(format!("replica {slot} did not come back ready after its restart")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every replica (SIGTERM, grace, SIGKILL) and closes the log.
    pub async fn stop_all(&self) {
        let victims: Vec<Replica> = std::mem::take(&mut *self.replicas.lock().await);
        for v in &victims {
            v.stop.cancel();
        }
        for v in victims {
            let _ = v.task.await;
        }
        self.inner.log_closed.cancel();
        let task = self.log_task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

fn status_of(r: &Replica, readiness: bool) -> ReplicaStatus {
    let pid = r.state.pid.load(Ordering::SeqCst);
    ReplicaStatus {
        slot: r.slot,
        pid: (pid != 0).then_some(pid),
        ready: pid != 0 && (!readiness || r.state.ready.load(Ordering::SeqCst)),
        restarts: r.state.restarts.load(Ordering::SeqCst),
        starts: r.state.starts.load(Ordering::SeqCst),
    }
}

impl Actuator for ProcessActuator {
    fn kind(&self) -> &'static str {
        "process"
    }

    fn current_replicas(&self) -> BoxFuture<'_, Result<i64, ActuatorError>> {
        Box::pin(async move { Ok(self.replicas.lock().await.len() as i64) })
    }

    fn scale_to(&self, replicas: i64) -> BoxFuture<'_, Result<ActionOutcome, ActuatorError>> {
        Box::pin(async move {
            let before = self.replicas.lock().await.len();
            self.set_replicas(replicas).await?;
            Ok(ActionOutcome { detail: Some(format!("replicas {before} -> {replicas}")) })
        })
    }

    fn restart(&self, instance: Option<String>) -> BoxFuture<'_, Result<ActionOutcome, ActuatorError>> {
        Box::pin(async move {
            match instance {
                Some(i) => {
                    let slot: u32 =
                        i.parse().map_err(|_| ActuatorError::new("instance is not a replica slot number"))?;
                    self.restart_one(slot).await?;
                    Ok(ActionOutcome { detail: Some(format!("restarted replica {slot}")) })
                }
                None => {
                    // Rolling: one replica at a time, each back (and ready) before the next.
                    let mut slots: Vec<u32> = self.replicas.lock().await.iter().map(|r| r.slot).collect();
                    slots.sort_unstable();
                    for s in &slots {
                        self.restart_one(*s).await?;
                    }
                    Ok(ActionOutcome { detail: Some(format!("rolling restart of {} replicas", slots.len())) })
                }
            }
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.stop_all())
    }
}

enum Ended {
    Exited(String),
    Unhealthy,
    Requested,
    Stopped,
}

async fn run_replica(
    inner: Arc<Inner>,
    slot: u32,
    stop: CancellationToken,
    restart: Arc<Notify>,
    state: Arc<ReplicaState>,
) {
    let cfg = &inner.config;
    let target = inner.target.as_str();
    let port = cfg.replica_port_base.map(|b| u32::from(b) + slot);
    let mut backoff: Option<Duration> = None;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let started = Instant::now();
        let ended = match spawn_child(&inner, slot, port) {
            Err(e) => {
                tracing::warn!(target = %target, replica = slot, error = %e, "cannot start replica");
                log_line(&inner, format!("[warden] replica {slot}: cannot start {}: {e}\n", cfg.command)).await;
                Ended::Exited("could not start".to_string())
            }
            Ok(mut child) => {
                let pid = child.id().unwrap_or(0);
                state.pid.store(pid, Ordering::SeqCst);
                state.ready.store(false, Ordering::SeqCst);
                state.starts.fetch_add(1, Ordering::SeqCst);
                tracing::info!(target = %target, replica = slot, pid, "replica started");
                log_line(&inner, format!("[warden] replica {slot} started (pid {pid})\n")).await;
                for (stream, name) in
                    [(child.stdout.take().map(boxed), "stdout"), (child.stderr.take().map(boxed), "stderr")]
                {
                    if let Some(s) = stream {
                        let prefix = if name == "stdout" {
                            format!("[replica {slot} pid {pid}] ")
                        } else {
                            format!("[replica {slot} pid {pid} stderr] ")
                        };
                        tokio::spawn(pump(s, prefix, inner.log.clone()));
                    }
                }
                let liveness = async {
                    match &cfg.liveness_probe {
                        Some(p) => liveness(&inner.http, p, port).await,
                        None => std::future::pending().await,
                    }
                };
                let readiness = async {
                    match &cfg.readiness_probe {
                        Some(p) => readiness(&inner.http, p, port, &state.ready).await,
                        None => std::future::pending().await,
                    }
                };
                let ended = tokio::select! {
                    status = child.wait() => Ended::Exited(match status {
                        Ok(s) => s.to_string(),
                        Err(e) => format!("wait failed: {e}"),
                    }),
                    _ = liveness => Ended::Unhealthy,
                    _ = readiness => Ended::Stopped,
                    _ = restart.notified() => Ended::Requested,
                    _ = stop.cancelled() => Ended::Stopped,
                };
                if !matches!(ended, Ended::Exited(_)) {
                    let how = terminate(&mut child, cfg.termination_grace).await;
                    let why = match ended {
                        Ended::Unhealthy => "failed its liveness probe",
                        Ended::Requested => "restart requested",
                        _ => "stopping",
                    };
                    tracing::info!(target = %target, replica = slot, pid, reason = why, how, "replica stopped");
                    log_line(&inner, format!("[warden] replica {slot} (pid {pid}) {why}: {how}\n")).await;
                }
                state.pid.store(0, Ordering::SeqCst);
                state.ready.store(false, Ordering::SeqCst);
                ended
            }
        };
        match ended {
            Ended::Stopped => return,
            Ended::Requested => {
                backoff = None;
                continue;
            }
            Ended::Exited(ref s) => {
                tracing::warn!(target = %target, replica = slot, status = %s, "replica exited");
                log_line(&inner, format!("[warden] replica {slot} exited: {s}\n")).await;
            }
            Ended::Unhealthy => {}
        }
        if started.elapsed() >= cfg.backoff_reset_after {
            backoff = None;
        }
        let delay = cfg.crash_backoff.next(backoff);
        backoff = Some(delay);
        state.restarts.fetch_add(1, Ordering::SeqCst);
        log_line(&inner, format!("[warden] replica {slot} restarts in {}\n", humantime::format_duration(delay))).await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
            _ = restart.notified() => backoff = None,
        }
    }
}

type BoxRead = std::pin::Pin<Box<dyn AsyncRead + Send>>;

fn boxed<R: AsyncRead + Send + 'static>(r: R) -> BoxRead {
    Box::pin(r)
}

fn spawn_child(inner: &Inner, slot: u32, port: Option<u32>) -> std::io::Result<tokio::process::Child> {
    let cfg = &inner.config;
    let slot_s = slot.to_string();
    let port_s = port.map(|p| p.to_string()).unwrap_or_default();
    let subst =
        |s: &str| s.replace("{replica_port}", &port_s).replace("{replica}", &slot_s).replace("{target}", &inner.target);
    let mut cmd = tokio::process::Command::new(&cfg.command);
    cmd.args(cfg.args.iter().map(|a| subst(a)))
        .envs(cfg.env.iter().map(|(k, v)| (k.clone(), subst(v))))
        .env("WARDEN_TARGET", &inner.target)
        .env("WARDEN_REPLICA", &slot_s)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if let Some(d) = &cfg.working_dir {
        cmd.current_dir(d);
    }
    cmd.spawn()
}

/// SIGTERM to the group, up to `grace` for it to exit, then SIGKILL. Says which it took.
async fn terminate(child: &mut tokio::process::Child, grace: Duration) -> &'static str {
    let pid = child.id();
    signal_group(pid, Signal::Term);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(_) => {
            // Leftovers of the group (children of the replica) go with it.
            signal_group(pid, Signal::Kill);
            "exited after SIGTERM"
        }
        Err(_) => {
            signal_group(pid, Signal::Kill);
            let _ = child.kill().await;
            "killed after the grace period"
        }
    }
}

fn probe_url(p: &ProbeConfig, port: Option<u32>) -> Option<String> {
    let port = match p.http_get.port {
        ProbePort::Fixed(n) => u32::from(n),
        ProbePort::Replica => port?,
    };
    let host = &p.http_get.host;
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.clone() };
    Some(format!("http://{host}:{port}{}", p.http_get.path))
}

async fn probe_once(http: &reqwest::Client, url: &str, timeout: Duration) -> bool {
    match tokio::time::timeout(timeout, http.get(url).timeout(timeout).send()).await {
        Ok(Ok(r)) => (200..400).contains(&r.status().as_u16()),
        _ => false,
    }
}

/// Returns when `failure_threshold` probes in a row failed.
async fn liveness(http: &reqwest::Client, p: &ProbeConfig, port: Option<u32>) {
    let Some(url) = probe_url(p, port) else { return std::future::pending().await };
    tokio::time::sleep(p.initial_delay).await;
    let mut failures = 0;
    loop {
        let t = Instant::now();
        if probe_once(http, &url, p.timeout).await {
            failures = 0;
        } else {
            failures += 1;
            if failures >= p.failure_threshold {
                return;
            }
        }
        tokio::time::sleep(p.period.saturating_sub(t.elapsed())).await;
    }
}

/// Keeps `ready` up to date; never returns.
async fn readiness(http: &reqwest::Client, p: &ProbeConfig, port: Option<u32>, ready: &AtomicBool) {
    let Some(url) = probe_url(p, port) else { return std::future::pending().await };
    tokio::time::sleep(p.initial_delay).await;
    let mut failures = 0;
    loop {
        let t = Instant::now();
        if probe_once(http, &url, p.timeout).await {
            failures = 0;
            ready.store(true, Ordering::SeqCst);
        } else {
            failures += 1;
            if failures >= p.failure_threshold {
                ready.store(false, Ordering::SeqCst);
            }
        }
        tokio::time::sleep(p.period.saturating_sub(t.elapsed())).await;
    }
}

async fn log_line(inner: &Inner, line: String) {
    let _ = inner.log.send(line.into_bytes()).await;
}

/// Copies a child's stream to the log, line by line with `prefix` (lines longer than
/// [`MAX_LINE`] are split). Ends at EOF.
async fn pump(mut r: BoxRead, prefix: String, log: mpsc::Sender<Vec<u8>>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    let emit = |line: &[u8]| {
        let mut out = Vec::with_capacity(prefix.len() + line.len() + 1);
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(line);
        if !line.ends_with(b"\n") {
            out.push(b'\n');
        }
        out
    };
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(i) = memchr::memchr(b'\n', &pending).or((pending.len() >= MAX_LINE).then_some(MAX_LINE - 1)) {
            let rest = pending.split_off(i + 1);
            let line = std::mem::replace(&mut pending, rest);
            if log.send(emit(&line)).await.is_err() {
                return;
            }
        }
    }
    if !pending.is_empty() {
        let _ = log.send(emit(&pending)).await;
    }
}

async fn open_append(path: &Path) -> Result<tokio::fs::File, ActuatorError> {
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(|e| ActuatorError::new(format!("cannot open {}: {e}", path.display())))
}

/// Writes queued lines to the log, rotating to `<path>.1` past `max_bytes`. Ends when
/// `closed` fires (after draining what is queued).
async fn write_log(
    mut file: tokio::fs::File,
    path: PathBuf,
    max_bytes: u64,
    mut rx: mpsc::Receiver<Vec<u8>>,
    closed: CancellationToken,
) {
    let mut size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let mut failed = false;
    loop {
        let line = tokio::select! {
            l = rx.recv() => match l { Some(l) => l, None => break },
            _ = closed.cancelled() => match rx.try_recv() { Ok(l) => l, Err(_) => break },
        };
        if size + line.len() as u64 > max_bytes && size > 0 {
            let _ = file.flush().await;
            let mut rotated = path.clone().into_os_string();
            rotated.push(".1");
            let _ = tokio::fs::rename(&path, &rotated).await;
            match open_append(&path).await {
                Ok(f) => {
                    file = f;
                    size = 0;
                }
                Err(e) => {
                    tracing::error!(error = %e, "process log: cannot reopen after rotation; output is dropped");
                    failed = true;
                }
            }
        }
        if failed {
            continue;
        }
        if let Err(e) = file.write_all(&line).await {
            tracing::error!(path = %path.display(), error = %e, "process log: write failed; output is dropped");
            failed = true;
            continue;
        }
        size += line.len() as u64;
    }
    let _ = file.flush().await;
}
