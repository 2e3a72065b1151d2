//! The file/console receiver, the local default: each notification is one JSON line (the
//! Alertmanager v4 payload) appended to a file, or written to stdout (`path: "-"`).
//!
//! ```yaml
//! file_configs:
//!   - path: /var/lib/warden/notifications.jsonl
//!     max_bytes: 67108864     # then the file is moved to <path>.1 (replacing it)
//! ```
//!
//! The file is bounded: when a line would take it past `max_bytes`, it is renamed to
//! `<path>.1` and a new one begun, so at most twice `max_bytes` is kept. Writes of one
//! receiver are serialised, so lines never interleave.

use super::{BuildContext, Receiver, ReceiverError, SendFuture, Who, default_true};
use crate::notify::message::Notification;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Default `max_bytes`: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

fn default_max_bytes() -> u64 {
    DEFAULT_MAX_BYTES
}

/// One `file_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to append to; `-` for stdout.
    pub path: PathBuf,
    /// Rotate to `<path>.1` past this size (default 64 MiB, at least 4096).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Write resolved notifications too (default true).
    #[serde(default = "default_true")]
    pub send_resolved: bool,
}

impl FileConfig {
    pub(crate) fn validate(&self, path: &str, errors: &mut Vec<String>) {
        if self.path.as_os_str().is_empty() {
            errors.push(format!("{path}.path: must not be empty"));
        }
        if self.max_bytes < 4096 {
            errors.push(format!("{path}.max_bytes: must be >= 4096"));
        }
    }

    pub(crate) fn build(
        &self,
        name: &str,
        _ctx: &BuildContext,
        _path: &str,
        _errors: &mut Vec<String>,
    ) -> Option<(Arc<dyn Receiver>, bool)> {
        let target = if self.path == Path::new("-") { Target::Stdout } else { Target::File(self.path.clone()) };
        let r =
            FileReceiver { who: Who::new(name, "file"), target, max_bytes: self.max_bytes, lock: Default::default() };
        Some((Arc::new(r), self.send_resolved))
    }
}

enum Target {
    Stdout,
    File(PathBuf),
}

/// Appends JSON lines.
pub struct FileReceiver {
    who: Who,
    target: Target,
    max_bytes: u64,
    /// Serialises writes (and rotation) of this receiver.
    lock: tokio::sync::Mutex<()>,
}

impl FileReceiver {
    async fn write(&self, n: &Notification) -> Result<(), ReceiverError> {
        let mut line = n.to_json();
        line.push(b'\n');
        let _guard = self.lock.lock().await;
        match &self.target {
            Target::Stdout => {
                let mut out = tokio::io::stdout();
                out.write_all(&line).await.map_err(|e| self.who.retryable(format!("write to stdout: {}", e.kind())))?;
                out.flush().await.map_err(|e| self.who.retryable(format!("write to stdout: {}", e.kind())))
            }
            Target::File(path) => {
                let io = |what: &str, e: std::io::Error| self.who.retryable(format!("{what}: {}", e.kind()));
                let len = match tokio::fs::metadata(path).await {
                    Ok(m) => m.len(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                    Err(e) => return Err(io("stat", e)),
                };
                if len > 0 && len + line.len() as u64 > self.max_bytes {
                    let mut rotated = path.clone().into_os_string();
                    rotated.push(".1");
                    tokio::fs::rename(path, &rotated).await.map_err(|e| io("rotate", e))?;
                }
                let mut f = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await
                    .map_err(|e| io("open", e))?;
                f.write_all(&line).await.map_err(|e| io("write", e))?;
                f.flush().await.map_err(|e| io("write", e))
            }
        }
    }
}

impl Receiver for FileReceiver {
    fn name(&self) -> &str {
        &self.who.receiver
    }

    fn integration(&self) -> &'static str {
        "file"
    }

    fn send<'a>(&'a self, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(self.write(n))
    }
}
