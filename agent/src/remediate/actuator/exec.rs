//! Commands with a timeout and captured output: the `exec` action, and the `exec`
//! actuator whose restart / scale / replica count are commands.
//!
//! A command runs without a shell (its `argv` as given) unless `shell: true`, in its own
//! process group, with stdin closed. On timeout the whole group is killed. stdout and
//! stderr are captured up to `output_limit_bytes` each (the rest is read and discarded so
//! the command never blocks on a full pipe) and end up in the audit entry's detail.
//! Context goes in through the environment (`WARDEN_TARGET`, `WARDEN_POLICY`,
//! `WARDEN_ALERTNAME`, `WARDEN_ALERT_VALUE`, `WARDEN_REPLICAS`, `WARDEN_INSTANCE`), never by
//! splicing alert data into a command line.

use super::{ActionOutcome, Actuator, ActuatorError, BoxFuture};
use crate::remediate::config::{CommandSpec, ExecActuatorConfig};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// How long readers may keep draining after the command exited (a background grandchild
/// holding the pipe open must not hang the action).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

/// What a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code (None: killed by a signal or on timeout).
    pub code: Option<i32>,
    /// Whether it was killed for exceeding its timeout.
    pub timed_out: bool,
    /// Captured stdout (lossy UTF-8, at most the limit).
    pub stdout: String,
    /// Captured stderr (lossy UTF-8, at most the limit).
    pub stderr: String,
    /// Whether either stream was cut at the limit.
    pub truncated: bool,
}

impl ExecOutput {
    /// Exit code 0 and no timeout.
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// The audit detail: status line, then the captured streams.
    pub fn detail(&self) -> String {
        let mut s = match (self.timed_out, self.code) {
            (true, _) => "killed on timeout".to_string(),
            (false, Some(c)) => format!("exit code {c}"),
            (false, None) => "killed by a signal".to_string(),
        };
        for (name, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            if !text.is_empty() {
                s.push_str(&format!("\n{name}:\n{text}"));
            }
        }
        if self.truncated {
            s.push_str("\n[output truncated]");
        }
        s
    }
}

/// Runs `spec` with `env` added (after the spec's own variables). `{key}` in the argv is
/// replaced by the value of `subst` entries (e.g. `{replicas}`).
pub async fn run(
    spec: &CommandSpec,
    env: &[(&str, String)],
    subst: &[(&str, String)],
) -> Result<ExecOutput, ActuatorError> {
    let argv: Vec<String> = spec
        .argv
        .iter()
        .map(|a| subst.iter().fold(a.clone(), |acc, (k, v)| acc.replace(&format!("{{{k}}}"), v)))
        .collect();
    let Some(program) = argv.first() else {
        return Err(ActuatorError::new("exec: empty argv"));
    };
    let mut cmd = if spec.shell {
        let mut c = tokio::process::Command::new("/bin/sh");
        c.arg("-c").arg(program);
        c
    } else {
        let mut c = tokio::process::Command::new(program);
        c.args(&argv[1..]);
        c
    };
    cmd.envs(&spec.env)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let shown = if spec.shell { "/bin/sh" } else { program.as_str() };
    let mut child = cmd.spawn().map_err(|e| ActuatorError::new(format!("exec: cannot start {shown}: {e}")))?;
    let pid = child.id();
    let limit = spec.output_limit_bytes;
    let out = tokio::spawn(capture(child.stdout.take(), limit));
    let err = tokio::spawn(capture(child.stderr.take(), limit));
    let (code, timed_out) = match tokio::time::timeout(spec.timeout, child.wait()).await {
        Ok(Ok(status)) => (status.code(), false),
        Ok(Err(e)) => return Err(ActuatorError::new(format!("exec: waiting for {shown}: {e}"))),
        Err(_) => {
            kill_group(pid);
            let _ = child.kill().await;
            (None, true)
        }
    };
    // Whatever is still running in the group (background children) goes too.
    kill_group(pid);
    let collect = |h: tokio::task::JoinHandle<(Vec<u8>, bool)>| async move {
        let abort = h.abort_handle();
        match tokio::time::timeout(DRAIN_AFTER_EXIT, h).await {
            Ok(Ok(r)) => r,
            _ => {
                abort.abort();
                (Vec::new(), true)
            }
        }
    };
    let (o, ot) = collect(out).await;
    let (e, et) = collect(err).await;
    Ok(ExecOutput {
        code,
        timed_out,
        stdout: String::from_utf8_lossy(&o).into_owned(),
        stderr: String::from_utf8_lossy(&e).into_owned(),
        truncated: ot || et,
    })
}

/// Reads `r` to the end, keeping the first `limit` bytes.
async fn capture<R: AsyncRead + Unpin>(r: Option<R>, limit: usize) -> (Vec<u8>, bool) {
    let Some(mut r) = r else { return (Vec::new(), false) };
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                truncated |= n > room;
            }
        }
    }
    (kept, truncated)
}

/// SIGKILL to the process group led by `pid` (the command was started as its leader).
pub(crate) fn kill_group(pid: Option<u32>) {
    signal_group(pid, rustix::process::Signal::Kill);
}

/// Sends `sig` to the process group led by `pid`.
pub(crate) fn signal_group(pid: Option<u32>, sig: rustix::process::Signal) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()).and_then(rustix::process::Pid::from_raw) else {
        return;
    };
    let _ = rustix::process::kill_process_group(pid, sig);
}

/// The `exec` actuator (see the module docs).
#[derive(Debug)]
pub struct ExecActuator {
    target: String,
    config: ExecActuatorConfig,
}

impl ExecActuator {
    /// An actuator for target `target`.
    pub fn new(target: &str, config: ExecActuatorConfig) -> ExecActuator {
        ExecActuator { target: target.to_string(), config }
    }

    async fn run_checked(
        &self,
        what: &str,
        spec: Option<&CommandSpec>,
        env: Vec<(&str, String)>,
        subst: &[(&str, String)],
    ) -> Result<ExecOutput, ActuatorError> {
        let spec = spec.ok_or_else(|| ActuatorError::new(format!("exec target has no `{what}` command")))?;
        let mut env = env;
        env.push(("WARDEN_TARGET", self.target.clone()));
        let out = run(spec, &env, subst).await?;
        if out.success() {
            Ok(out)
        } else {
            let why = if out.timed_out {
                "timed out".to_string()
            } else {
                out.detail().lines().next().unwrap_or("").to_string()
            };
            Err(ActuatorError { message: format!("{what} command failed: {why}"), detail: Some(out.detail()) })
        }
    }
}

impl Actuator for ExecActuator {
    fn kind(&self) -> &'static str {
        "exec"
    }

    fn current_replicas(&self) -> BoxFuture<'_, Result<i64, ActuatorError>> {
        Box::pin(async move {
            let out = self.run_checked("replicas", self.config.replicas.as_ref(), vec![], &[]).await?;
            out.stdout.trim().parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| ActuatorError {
                message: "replicas command did not print a non-negative integer".to_string(),
                detail: Some(out.detail()),
            })
        })
    }

    fn scale_to(&self, replicas: i64) -> BoxFuture<'_, Result<ActionOutcome, ActuatorError>> {
        Box::pin(async move {
            let n = replicas.to_string();
            let out = self
                .run_checked(
                    "scale",
                    self.config.scale.as_ref(),
                    vec![("WARDEN_REPLICAS", n.clone())],
                    &[("replicas", n)],
                )
                .await?;
            Ok(ActionOutcome { detail: Some(out.detail()) })
        })
    }

    fn restart(&self, instance: Option<String>) -> BoxFuture<'_, Result<ActionOutcome, ActuatorError>> {
        Box::pin(async move {
            let env = instance.map(|i| vec![("WARDEN_INSTANCE", i)]).unwrap_or_default();
            let out = self.run_checked("restart", self.config.restart.as_ref(), env, &[]).await?;
            Ok(ActionOutcome { detail: Some(out.detail()) })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec(argv: &[&str]) -> CommandSpec {
        CommandSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            shell: false,
            timeout: Duration::from_secs(10),
            env: BTreeMap::new(),
            output_limit_bytes: 4096,
        }
    }

    #[tokio::test]
    async fn captures_output_and_exit_code() {
        let out = run(&spec(&["/bin/sh", "-c", "echo out; echo err >&2; exit 3"]), &[], &[]).await.unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert!(!out.success());
        assert_eq!(out.detail(), "exit code 3\nstdout:\nout\n\nstderr:\nerr\n");
    }

    #[tokio::test]
    async fn no_shell_unless_asked() {
        // Without a shell, `$HOME; echo` is one literal argument.
        let out = run(&spec(&["/bin/echo", "$HOME; echo x"]), &[], &[]).await.unwrap();
        assert_eq!(out.stdout, "$HOME; echo x\n");
        let mut s = spec(&["echo \"$WARDEN_TARGET\" {replicas}"]);
        s.shell = true;
        let out = run(&s, &[("WARDEN_TARGET", "api".into())], &[("replicas", "3".into())]).await.unwrap();
        assert_eq!(out.stdout, "api 3\n");
    }

    #[tokio::test]
    async fn kills_on_timeout() {
        let mut s = spec(&["/bin/sh", "-c", "echo started; sleep 30 & sleep 30"]);
        s.timeout = Duration::from_millis(300);
        let t = std::time::Instant::now();
        let out = run(&s, &[], &[]).await.unwrap();
        assert!(out.timed_out);
        assert!(!out.success());
        assert_eq!(out.stdout, "started\n");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }

    #[tokio::test]
    async fn truncates_output() {
        let mut s = spec(&["/bin/sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a"]);
        s.output_limit_bytes = 10;
        let out = run(&s, &[], &[]).await.unwrap();
        assert!(out.success());
        assert_eq!(out.stdout, "aaaaaaaaaa");
        assert!(out.truncated);
        assert!(out.detail().ends_with("[output truncated]"));
    }

    #[tokio::test]
    async fn missing_program_is_an_error() {
        let e = run(&spec(&["/nonexistent/prog"]), &[], &[]).await.unwrap_err();
        assert!(e.message.contains("cannot start /nonexistent/prog"), "{e}");
    }

    #[tokio::test]
    async fn exec_actuator_reads_and_scales() {
        let dir = std::env::temp_dir().join(format!("warden-exec-act-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("n");
        std::fs::write(&f, "2\n").unwrap();
        let path = f.display().to_string();
        let cfg = ExecActuatorConfig {
            replicas: Some(spec(&["/bin/cat", &path])),
            scale: Some(CommandSpec { shell: true, ..spec(&[&format!("echo {{replicas}} > {path}")]) }),
            restart: None,
        };
        let a = ExecActuator::new("svc", cfg);
        assert_eq!(a.current_replicas().await.unwrap(), 2);
        a.scale_to(5).await.unwrap();
        assert_eq!(a.current_replicas().await.unwrap(), 5);
        let e = a.restart(None).await.unwrap_err();
        assert_eq!(e.message, "exec target has no `restart` command");
        std::fs::write(&f, "many\n").unwrap();
        assert!(a.current_replicas().await.is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
