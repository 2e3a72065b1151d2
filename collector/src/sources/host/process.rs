//! Watched processes, exported with process-exporter's names
//! (`namedprocess_namegroup_*{groupname}`) so its dashboards work unchanged.
//!
//! Each configured group matches processes by `comm`, executable, a command-line regex
//! or a pid file; a process belongs to the first group (in config order) that matches it.
//! Everything is read from `<proc_root>` rather than through sysinfo, because sysinfo
//! always reads the agent's own `/proc` and so cannot follow `proc_root` to the host's.
//! Only what the matchers need is read for unmatched processes (`stat` for `comm`,
//! `exe` or `cmdline`), so the cost is one small read per process per collection.
//!
//! Counters stay monotonic when processes exit, as in process-exporter: a group's CPU and
//! page-fault totals are the sum of its processes' values when first seen plus every
//! later increase, and a process that exits keeps its contribution.

use super::parse;
use super::{Errors, Out, user_hz};
use crate::signal::MetricKind::{Counter, Gauge};
use regex::Regex;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

/// One watched group.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProcessConfig {
    /// The `groupname` label.
    pub name: String,
    /// How its processes are found.
    #[serde(rename = "match")]
    pub matcher: ProcessMatch,
}

/// How a group's processes are found (exactly one).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ProcessMatch {
    /// `comm` equals this (the kernel truncates `comm` to 15 bytes).
    Comm(String),
    /// The executable: with a `/`, its full path; without, its file name. Read from
    /// `<proc_root>/<pid>/exe`, or from `argv[0]` when that link is not readable.
    Exe(String),
    /// A regex searched (unanchored) in the command line, arguments joined by spaces.
    Cmdline(String),
    /// The process whose pid is in this file (as the agent sees the path).
    PidFile(PathBuf),
}

/// Compiled form of [`ProcessMatch`].
#[derive(Debug)]
enum Matcher {
    Comm(String),
    ExePath(String),
    ExeName(String),
    Cmdline(Regex),
    PidFile(PathBuf),
}

/// Compiles a command-line regex with bounded size; the error names the problem only.
pub(super) fn compile_cmdline(re: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(re).size_limit(1 << 20).build().map_err(|e| e.to_string())
}

#[derive(Debug)]
struct Group {
    name: String,
    matcher: Matcher,
    /// Accumulated ticks and faults (monotonic).
    user: u64,
    system: u64,
    minflt: u64,
    majflt: u64,
}

/// Last values seen for one process, keyed by (pid, start time) so a reused pid is a new
/// process.
#[derive(Debug, Clone, Copy)]
struct Seen {
    utime: u64,
    stime: u64,
    minflt: u64,
    majflt: u64,
}

/// The watched groups and their running totals.
#[derive(Debug)]
pub(super) struct Groups {
    groups: Vec<Group>,
    seen: HashMap<(u32, u64), Seen>,
}

/// Per-collection sums for one group.
#[derive(Debug, Default, Clone, Copy)]
struct Snapshot {
    procs: u64,
    threads: u64,
    resident: u64,
    virtual_: u64,
    fds: u64,
    oldest_start_ticks: Option<u64>,
}

/// What is known about one `<proc_root>/<pid>` while matching; each file is read at most
/// once.
struct Candidate {
    dir: PathBuf,
    pid: u32,
    stat: Option<Option<parse::PidStat>>,
    cmdline: Option<Option<String>>,
    exe: Option<Option<String>>,
}

impl Candidate {
    fn stat(&mut self) -> Option<&parse::PidStat> {
        if self.stat.is_none() {
            let s = std::fs::read_to_string(self.dir.join("stat")).ok().and_then(|t| parse::pid_stat(&t));
            self.stat = Some(s);
        }
        self.stat.as_ref().and_then(|s| s.as_ref())
    }

    fn cmdline(&mut self) -> Option<&str> {
        if self.cmdline.is_none() {
            let c = read_capped(&self.dir.join("cmdline"), 64 * 1024).ok().map(|b| parse::cmdline(&b));
            self.cmdline = Some(c);
        }
        self.cmdline.as_ref().and_then(|c| c.as_deref())
    }

    fn exe(&mut self) -> Option<&str> {
        if self.exe.is_none() {
            let from_link = std::fs::read_link(self.dir.join("exe")).ok().map(|p| {
                let s = p.to_string_lossy().into_owned();
                s.strip_suffix(" (deleted)").map(str::to_owned).unwrap_or(s)
            });
            let exe = from_link.or_else(|| {
                let c = self.cmdline()?;
                let argv0 = c.split(' ').next().unwrap_or_default();
                (!argv0.is_empty()).then(|| argv0.to_owned())
            });
            self.exe = Some(exe);
        }
        self.exe.as_ref().and_then(|e| e.as_deref())
    }
}

/// Reads at most `cap` bytes of a file.
fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut buf = Vec::new();
    std::fs::File::open(path)?.take(cap).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Whether an error means the process went away between listing and reading.
fn gone(e: &io::Error) -> bool {
    // ESRCH (3) is what procfs returns for some files of a process that just exited.
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(3)
}

impl Groups {
    /// Compiles the configured groups; the config was validated before.
    pub(super) fn new(config: &[ProcessConfig]) -> Result<Groups, String> {
        let mut groups = Vec::with_capacity(config.len());
        for (i, g) in config.iter().enumerate() {
            let matcher = match &g.matcher {
                ProcessMatch::Comm(c) => Matcher::Comm(c.clone()),
                ProcessMatch::Exe(e) if e.contains('/') => Matcher::ExePath(e.clone()),
                ProcessMatch::Exe(e) => Matcher::ExeName(e.clone()),
                ProcessMatch::Cmdline(re) => Matcher::Cmdline(
                    compile_cmdline(re).map_err(|e| format!("processes[{i}].match.cmdline: invalid regex: {e}"))?,
                ),
                ProcessMatch::PidFile(p) => Matcher::PidFile(p.clone()),
            };
            groups.push(Group { name: g.name.clone(), matcher, user: 0, system: 0, minflt: 0, majflt: 0 });
        }
        Ok(Groups { groups, seen: HashMap::new() })
    }

    /// Whether any group is configured.
    pub(super) fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Finds the groups' processes under `proc_root`, reads their figures and appends the
    /// `namedprocess_namegroup_*` points. `boot_time` (seconds since the epoch) turns
    /// start ticks into `oldest_start_time_seconds`.
    pub(super) fn collect(&mut self, proc_root: &Path, boot_time: Option<u64>, errors: &mut Errors<'_>, out: &mut Out) {
        // Pid files first: they name their process directly.
        let mut pid_files: HashMap<usize, u32> = HashMap::new();
        for (gi, g) in self.groups.iter().enumerate() {
            if let Matcher::PidFile(path) = &g.matcher {
                match std::fs::read_to_string(path) {
                    Ok(text) => match parse::pid_file(&text) {
                        Some(pid) => {
                            pid_files.insert(gi, pid);
                        }
                        None => errors.report("process_pid_file_parse", path, &"not a positive decimal pid"),
                    },
                    // No pid file: the service is not running; num_procs 0 says so.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => errors.report("process_pid_file_read", path, &e),
                }
            }
        }
        let scan = self.groups.iter().any(|g| !matches!(g.matcher, Matcher::PidFile(_)));
        let pids: Vec<u32> = if scan {
            match std::fs::read_dir(proc_root) {
                Ok(dir) => dir
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
                    .collect(),
                Err(e) => {
                    errors.report("process_list", proc_root, &e);
                    Vec::new()
                }
            }
        } else {
            let mut p: Vec<u32> = pid_files.values().copied().collect();
            p.sort_unstable();
            p.dedup();
            p
        };

        let mut snaps = vec![Snapshot::default(); self.groups.len()];
        let mut alive: HashSet<(u32, u64)> = HashSet::new();
        for pid in pids {
            let mut c = Candidate { dir: proc_root.join(pid.to_string()), pid, stat: None, cmdline: None, exe: None };
            let Some(gi) = self.match_group(&mut c, &pid_files) else { continue };
            self.account(gi, &mut c, &mut snaps[gi], &mut alive, errors);
        }
        // Processes that are gone keep their contribution; forget their last values.
        self.seen.retain(|k, _| alive.contains(k));

        for (g, s) in self.groups.iter().zip(&snaps) {
            let group = [("groupname", g.name.as_str())];
            out.push("namedprocess_namegroup_num_procs", &group, Gauge, s.procs as f64);
            out.push("namedprocess_namegroup_num_threads", &group, Gauge, s.threads as f64);
            for (mode, ticks) in [("user", g.user), ("system", g.system)] {
                let labels = [("groupname", g.name.as_str()), ("mode", mode)];
                out.push("namedprocess_namegroup_cpu_seconds_total", &labels, Counter, ticks as f64 / user_hz());
            }
            for (memtype, bytes) in [("resident", s.resident), ("virtual", s.virtual_)] {
                let labels = [("groupname", g.name.as_str()), ("memtype", memtype)];
                out.push("namedprocess_namegroup_memory_bytes", &labels, Gauge, bytes as f64);
            }
            out.push("namedprocess_namegroup_open_filedesc", &group, Gauge, s.fds as f64);
            out.push("namedprocess_namegroup_major_page_faults_total", &group, Counter, g.majflt as f64);
            out.push("namedprocess_namegroup_minor_page_faults_total", &group, Counter, g.minflt as f64);
            let oldest = match (s.oldest_start_ticks, boot_time) {
                (Some(t), Some(boot)) => boot as f64 + t as f64 / user_hz(),
                _ => 0.0,
            };
            out.push("namedprocess_namegroup_oldest_start_time_seconds", &group, Gauge, oldest);
        }
    }

    /// The first group that matches the process, if any.
    fn match_group(&self, c: &mut Candidate, pid_files: &HashMap<usize, u32>) -> Option<usize> {
        for (gi, g) in self.groups.iter().enumerate() {
            let hit = match &g.matcher {
                Matcher::PidFile(_) => pid_files.get(&gi) == Some(&c.pid),
                Matcher::Comm(want) => c.stat().is_some_and(|s| s.comm == *want),
                Matcher::ExePath(want) => c.exe().is_some_and(|e| e == want),
                Matcher::ExeName(want) => c.exe().is_some_and(|e| e.rsplit('/').next() == Some(want.as_str())),
                Matcher::Cmdline(re) => c.cmdline().is_some_and(|l| re.is_match(l)),
            };
            if hit {
                return Some(gi);
            }
        }
        None
    }

    /// Reads a matched process's figures into the group's snapshot and totals.
    fn account(
        &mut self,
        gi: usize,
        c: &mut Candidate,
        snap: &mut Snapshot,
        alive: &mut HashSet<(u32, u64)>,
        errors: &mut Errors<'_>,
    ) {
        let stat_path = c.dir.join("stat");
        // Re-read `stat` if matching did not (exe/cmdline/pid file matchers).
        let stat = match c.stat().cloned() {
            Some(s) => s,
            None => {
                match std::fs::read_to_string(&stat_path) {
                    Err(e) if gone(&e) => {}
                    Err(e) => errors.report("process_stat_read", &stat_path, &e),
                    Ok(_) => errors.report("process_stat_parse", &stat_path, &"malformed"),
                }
                return;
            }
        };
        let status_path = c.dir.join("status");
        let resident = match std::fs::read_to_string(&status_path) {
            Ok(t) => match parse::status_rss(&t) {
                Some(r) => r,
                None => {
                    errors.report("process_status_parse", &status_path, &"malformed VmRSS line");
                    0
                }
            },
            Err(e) if gone(&e) => return,
            Err(e) => {
                errors.report("process_status_read", &status_path, &e);
                0
            }
        };
        let fd_path = c.dir.join("fd");
        let fds = match std::fs::read_dir(&fd_path) {
            Ok(d) => d.count() as u64,
            Err(e) if gone(&e) => return,
            Err(e) => {
                errors.report("process_fd_read", &fd_path, &e);
                0
            }
        };

        snap.procs += 1;
        snap.threads += stat.num_threads;
        snap.resident += resident;
        snap.virtual_ += stat.vsize;
        snap.fds += fds;
        snap.oldest_start_ticks = Some(snap.oldest_start_ticks.map_or(stat.starttime, |t| t.min(stat.starttime)));

        let key = (c.pid, stat.starttime);
        alive.insert(key);
        let now = Seen { utime: stat.utime, stime: stat.stime, minflt: stat.minflt, majflt: stat.majflt };
        let before = self.seen.insert(key, now).unwrap_or(Seen { utime: 0, stime: 0, minflt: 0, majflt: 0 });
        let g = &mut self.groups[gi];
        g.user += now.utime.saturating_sub(before.utime);
        g.system += now.stime.saturating_sub(before.stime);
        g.minflt += now.minflt.saturating_sub(before.minflt);
        g.majflt += now.majflt.saturating_sub(before.majflt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_config_shapes() {
        let cases = [
            (r#"{"name":"pg","match":{"comm":"postgres"}}"#, ProcessMatch::Comm("postgres".into())),
            (
                r#"{"name":"api","match":{"exe":"/usr/bin/platform-api"}}"#,
                ProcessMatch::Exe("/usr/bin/platform-api".into()),
            ),
            (r#"{"name":"w","match":{"cmdline":"worker\\.py"}}"#, ProcessMatch::Cmdline("worker\\.py".into())),
            (r#"{"name":"n","match":{"pid_file":"/run/nginx.pid"}}"#, ProcessMatch::PidFile("/run/nginx.pid".into())),
        ];
        for (json, want) in cases {
            let c: ProcessConfig = serde_json::from_str(json).unwrap();
            assert_eq!(c.matcher, want, "{json}");
        }
        for bad in [
            r#"{"name":"x","match":{"comm":"a","exe":"b"}}"#,
            r#"{"name":"x","match":{"pid":"1"}}"#,
            r#"{"name":"x","match":{}}"#,
            r#"{"name":"x"}"#,
            r#"{"name":"x","match":{"comm":"a"},"extra":1}"#,
        ] {
            assert!(serde_json::from_str::<ProcessConfig>(bad).is_err(), "{bad}");
        }
    }
}
