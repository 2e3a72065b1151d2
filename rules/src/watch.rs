//! Watching rule files for changes, to trigger [`crate::manager::RuleManager::reload_if_changed`].
//!
//! The watcher (`notify`, inotify on Linux) watches the *directories* holding the rule
//! files, not the files: editors save by writing a new file and renaming it over the old
//! one, and Kubernetes updates a mounted ConfigMap by swapping a `..data` symlink, and a
//! watch on the old file sees neither. Any event in those directories counts as "maybe
//! changed"; the manager's content fingerprint decides whether anything did. Events are
//! coalesced into a channel of capacity one, so a burst of writes costs one reload check,
//! and [`RuleWatcher::wait`] debounces them. Watching is best effort: the agent also calls
//! `reload_if_changed` on a timer, which catches what a watch misses (e.g. on network
//! filesystems).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};

/// How long after the first event to wait for the burst to settle.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// A watch on the directories of some rule-file patterns.
pub struct RuleWatcher {
    _watcher: RecommendedWatcher,
    rx: Receiver<()>,
    dirs: Vec<PathBuf>,
}

impl RuleWatcher {
    /// Watches the directories that `patterns` (paths or globs) name files in.
    pub fn new(patterns: &[String]) -> Result<RuleWatcher, String> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if ev.is_ok() {
                notify_once(&tx);
            }
        })
        .map_err(|e| format!("cannot start the rule file watcher: {e}"))?;
        let mut dirs: Vec<(PathBuf, RecursiveMode)> = patterns.iter().map(|p| watch_root(p)).collect();
        dirs.sort_by(|a, b| a.0.cmp(&b.0));
        dirs.dedup_by(|a, b| a.0 == b.0);
        for (dir, mode) in &dirs {
            watcher.watch(dir, *mode).map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
        }
        Ok(RuleWatcher { _watcher: watcher, rx, dirs: dirs.into_iter().map(|(d, _)| d).collect() })
    }

    /// The directories watched.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Waits up to `timeout` for a change; on one, waits for the burst to settle and
    /// returns true. Returns false on timeout.
    pub fn wait(&self, timeout: Duration) -> bool {
        match self.rx.recv_timeout(timeout) {
            Ok(()) => {
                std::thread::sleep(DEBOUNCE);
                while self.rx.try_recv().is_ok() {}
                true
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => false,
        }
    }
}

fn notify_once(tx: &SyncSender<()>) {
    match tx.try_send(()) {
        Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
    }
}

/// The directory to watch for a path or glob pattern: the part before the first glob
/// character, cut back to a directory; recursive if the pattern uses `**`.
fn watch_root(pattern: &str) -> (PathBuf, RecursiveMode) {
    let literal = match pattern.find(['*', '?', '[']) {
        Some(i) => &pattern[..i],
        None => pattern,
    };
    let path = Path::new(literal);
    let dir = if literal.ends_with('/') || path.is_dir() && literal != pattern {
        path.to_path_buf()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    let mode = if pattern.contains("**") { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
    (dir, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_roots() {
        assert_eq!(watch_root("/etc/warden/rules/*.yml").0, PathBuf::from("/etc/warden/rules/"));
        assert_eq!(watch_root("/etc/warden/a.yml").0, PathBuf::from("/etc/warden"));
        assert_eq!(watch_root("a.yml").0, PathBuf::from("."));
        assert!(matches!(watch_root("/r/**/*.yml").1, RecursiveMode::Recursive));
    }

    #[test]
    fn a_rename_over_the_file_is_seen() {
        let dir = std::env::temp_dir().join(format!("warden-rules-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.yml");
        std::fs::write(&file, "groups: []\n").unwrap();
        let w = RuleWatcher::new(&[file.display().to_string()]).unwrap();
        assert!(!w.wait(Duration::from_millis(50)), "no event yet");
        // An editor-style save: write a temporary file, rename it over the original.
        let tmp = dir.join(".a.yml.tmp");
        std::fs::write(&tmp, "groups: []\n# changed\n").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        assert!(w.wait(Duration::from_secs(10)), "rename not seen");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
