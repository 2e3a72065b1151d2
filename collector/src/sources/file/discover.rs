//! Discovery: which files match the configured globs, and the `notify` watcher that
//! says when to look again.
//!
//! The watcher (`notify`'s recommended backend: inotify on Linux) watches, without
//! recursion, the fixed directory prefix of every include pattern and the directory of
//! every tailed file. Its events only wake the tailer: data events make it read the file
//! now, create/remove/rename events make it glob again. The periodic scan every
//! `poll_interval` (glob + `stat`) is the source of truth, so a missed event, an
//! overflowed event queue or a platform without `notify` support only delays tailing,
//! never breaks it.

use notify::event::{CreateKind, EventKind, ModifyKind, RemoveKind};
use notify::{RecursiveMode, Watcher as _};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

/// At most this many paths are collected from one glob pass; the rest waits for the
/// next pass (and is counted as an error).
pub(crate) const MAX_MATCHES: usize = 100_000;
/// At most this many directories are watched; beyond that, polling covers the rest.
const MAX_WATCHED_DIRS: usize = 1024;
/// At most this many distinct event paths are kept between two tailer iterations; more
/// turns into "look at everything".
const MAX_EVENT_PATHS: usize = 4096;

/// Compiled include and exclude patterns.
#[derive(Debug)]
pub(crate) struct Patterns {
    include: Vec<String>,
    include_compiled: Vec<glob::Pattern>,
    /// Exclude patterns; `true` when the pattern has no `/` and applies to the file name.
    exclude: Vec<(glob::Pattern, bool)>,
    roots: Vec<PathBuf>,
}

const MATCH: glob::MatchOptions =
    glob::MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: false };

impl Patterns {
    /// Compiles the patterns; the error names the offending field and index.
    pub fn compile(include: &[String], exclude: &[String]) -> Result<Patterns, String> {
        let mut include_compiled = Vec::with_capacity(include.len());
        for (i, p) in include.iter().enumerate() {
            include_compiled
                .push(glob::Pattern::new(p).map_err(|e| format!("include[{i}]: invalid glob pattern: {e}"))?);
        }
        let mut ex = Vec::with_capacity(exclude.len());
        for (i, p) in exclude.iter().enumerate() {
            let pat = glob::Pattern::new(p).map_err(|e| format!("exclude[{i}]: invalid glob pattern: {e}"))?;
            ex.push((pat, !p.contains('/')));
        }
        let roots = include.iter().map(|p| static_prefix(p)).collect();
        Ok(Patterns { include: include.to_vec(), include_compiled, exclude: ex, roots })
    }

    /// Whether `path` is excluded.
    pub fn excluded(&self, path: &Path) -> bool {
        self.exclude.iter().any(|(pat, name_only)| {
            if *name_only {
                path.file_name().is_some_and(|n| pat.matches_with(&n.to_string_lossy(), MATCH))
            } else {
                pat.matches_path_with(path, MATCH)
            }
        })
    }

    /// Whether `path` is one the scan would pick up (included and not excluded).
    pub fn wanted(&self, path: &Path) -> bool {
        self.include_compiled.iter().any(|p| p.matches_path_with(path, MATCH)) && !self.excluded(path)
    }

    /// The fixed directory prefixes of the include patterns (watched for new files).
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }
}

/// The directory part of `pattern` before its first wildcard component.
fn static_prefix(pattern: &str) -> PathBuf {
    let path = Path::new(pattern);
    let mut out = PathBuf::new();
    let comps: Vec<Component<'_>> = path.components().collect();
    for (i, c) in comps.iter().enumerate() {
        let s = c.as_os_str().to_string_lossy();
        // The last component names files, not a directory to watch.
        if s.contains(['*', '?', '[']) || i + 1 == comps.len() {
            break;
        }
        out.push(c);
    }
    out
}

/// One regular file a scan found.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
}

/// The result of one glob pass.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Matching regular files, sorted by path, one per (device, inode).
    pub found: Vec<Found>,
    /// Directories that could not be read, and a pass cut at [`MAX_MATCHES`].
    pub errors: u64,
}

/// Globs every include pattern and `stat`s the matches (blocking).
pub(crate) fn scan(patterns: &Patterns) -> Scan {
    let mut out = Scan::default();
    let mut seen = HashSet::new();
    'patterns: for pattern in &patterns.include {
        let Ok(paths) = glob::glob_with(pattern, MATCH) else {
            out.errors += 1;
            continue;
        };
        for entry in paths {
            let path = match entry {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(path = %e.path().display(), error = %e.error(), "file source: cannot read directory");
                    out.errors += 1;
                    continue;
                }
            };
            if patterns.excluded(&path) {
                continue;
            }
            // Follows symlinks: a link to a log file tails the file.
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if !meta.is_file() || !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            out.found.push(Found { path, dev: meta.dev(), ino: meta.ino(), size: meta.len() });
            if out.found.len() >= MAX_MATCHES {
                out.errors += 1;
                break 'patterns;
            }
        }
    }
    out.found.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Event kinds, as bit flags per path.
pub(crate) const EV_DATA: u8 = 1;
/// A file appeared, disappeared or was renamed.
pub(crate) const EV_STRUCT: u8 = 2;
/// A directory appeared or disappeared.
pub(crate) const EV_DIR: u8 = 4;

/// Events collected since the tailer last looked.
#[derive(Debug, Default)]
pub(crate) struct EventState {
    pub paths: HashMap<PathBuf, u8>,
    /// Events were lost (queue overflow, too many paths, a watcher error): look at
    /// everything.
    pub overflow: bool,
}

/// Where the watcher's callback leaves events, and how it wakes the tailer.
#[derive(Debug, Default)]
pub(crate) struct Events {
    state: Mutex<EventState>,
    pub notify: tokio::sync::Notify,
}

impl Events {
    fn record(&self, res: notify::Result<notify::Event>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match res {
            Ok(ev) => {
                let flags = match ev.kind {
                    EventKind::Access(_) => return,
                    EventKind::Modify(ModifyKind::Name(_)) => EV_STRUCT,
                    EventKind::Modify(_) => EV_DATA,
                    EventKind::Create(CreateKind::Folder) | EventKind::Remove(RemoveKind::Folder) => EV_DIR,
                    EventKind::Create(_) | EventKind::Remove(_) => EV_STRUCT,
                    EventKind::Any | EventKind::Other => {
                        st.overflow = true;
                        0
                    }
                };
                if ev.need_rescan() {
                    st.overflow = true;
                }
                for p in ev.paths {
                    if st.paths.len() >= MAX_EVENT_PATHS && !st.paths.contains_key(&p) {
                        st.overflow = true;
                        break;
                    }
                    *st.paths.entry(p).or_default() |= flags;
                }
            }
            Err(_) => st.overflow = true,
        }
        drop(st);
        self.notify.notify_one();
    }

    /// Takes what was collected.
    pub fn take(&self) -> EventState {
        std::mem::take(&mut *self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The directory watcher; absent when the platform or the process limits refuse it.
pub(crate) struct DirWatcher {
    inner: Option<notify::RecommendedWatcher>,
    dirs: HashSet<PathBuf>,
    pub events: Arc<Events>,
}

impl std::fmt::Debug for DirWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatcher").field("active", &self.inner.is_some()).field("dirs", &self.dirs.len()).finish()
    }
}

impl DirWatcher {
    /// Starts the watcher; on failure logs once and relies on polling.
    pub fn new(component: &str) -> DirWatcher {
        let events = Arc::new(Events::default());
        let sink = Arc::clone(&events);
        let inner = match notify::recommended_watcher(move |res| sink.record(res)) {
            Ok(w) => Some(w),
            Err(error) => {
                tracing::warn!(component, %error, "file source: change notifications unavailable; relying on polling");
                None
            }
        };
        DirWatcher { inner, dirs: HashSet::new(), events }
    }

    /// Watches each of `dirs` not watched yet (errors are left to polling).
    pub fn watch<'a>(&mut self, dirs: impl IntoIterator<Item = &'a Path>) {
        let Some(w) = &mut self.inner else { return };
        for d in dirs {
            if self.dirs.len() >= MAX_WATCHED_DIRS {
                return;
            }
            if d.as_os_str().is_empty() || self.dirs.contains(d) {
                continue;
            }
            match w.watch(d, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.dirs.insert(d.to_path_buf());
                }
                Err(error) => tracing::debug!(dir = %d.display(), %error, "file source: cannot watch directory"),
            }
        }
    }

    /// Stops watching directories not in `keep` (e.g. after the files in them are gone).
    pub fn retain(&mut self, keep: &HashSet<&Path>) {
        let Some(w) = &mut self.inner else { return };
        let drop: Vec<PathBuf> = self.dirs.iter().filter(|d| !keep.contains(d.as_path())).cloned().collect();
        for d in drop {
            let _ = w.unwatch(&d);
            self.dirs.remove(&d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_prefixes() {
        let cases = [
            ("/var/log/app/*.log", "/var/log/app"),
            ("/var/log/*/app.log", "/var/log"),
            ("/var/log/app.log", "/var/log"),
            ("/a/b[0-9]/c", "/a"),
            ("/*.log", "/"),
        ];
        for (pattern, want) in cases {
            assert_eq!(static_prefix(pattern), PathBuf::from(want), "{pattern}");
        }
    }

    #[test]
    fn exclude_by_name_or_path() {
        let p = Patterns::compile(
            &["/logs/*".to_string(), "/logs/**/*.log".to_string()],
            &["*.gz".to_string(), "/logs/secret/*".to_string()],
        )
        .unwrap();
        assert!(p.wanted(Path::new("/logs/a.log")));
        assert!(!p.wanted(Path::new("/logs/a.log.gz")), "name-only exclude");
        assert!(!p.wanted(Path::new("/logs/secret/x.log")), "path exclude");
        assert!(p.wanted(Path::new("/logs/deep/er/x.log")), "** crosses directories");
        assert!(!p.wanted(Path::new("/other/a.log")));
        let err = Patterns::compile(&["/ok".into()], &["/bad/[".into()]).unwrap_err();
        assert!(err.starts_with("exclude[0]: invalid glob pattern"), "{err}");
    }
}
