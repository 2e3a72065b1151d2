//! The host source: every `interval`, one batch of node metrics named and labelled as
//! `prometheus-node-exporter` 1.5 names them (`node_cpu_seconds_total{cpu,mode}`,
//! `node_memory_MemAvailable_bytes`, `node_filesystem_avail_bytes{device,fstype,mountpoint}`,
//! ...), plus process-exporter's `namedprocess_namegroup_*` for watched processes, so
//! existing dashboards and rules work unchanged.
//!
//! Collectors (names as node_exporter's; all enabled by default):
//!
//! | collector | file | families |
//! | --- | --- | --- |
//! | `cpu` | `<proc_root>/stat` | `node_cpu_seconds_total{cpu,mode}`, `node_cpu_guest_seconds_total{cpu,mode}` |
//! | `stat` | `<proc_root>/stat` | `node_boot_time_seconds`, `node_context_switches_total`, `node_forks_total`, `node_intr_total`, `node_procs_running`, `node_procs_blocked` |
//! | `meminfo` | `<proc_root>/meminfo` | `node_memory_<Field>_bytes` (and unit-less `node_memory_HugePages_*`) for every line |
//! | `loadavg` | `<proc_root>/loadavg` | `node_load1`, `node_load5`, `node_load15` |
//! | `filesystem` | `<proc_root>/1/mounts`, `statvfs` | `node_filesystem_{size,free,avail}_bytes`, `_files`, `_files_free`, `_readonly`, `_device_error` (see [`fs`]) |
//! | `diskstats` | `<proc_root>/diskstats` | `node_disk_*` (reads, writes, bytes, times, io_now, discards, flushes) |
//! | `netdev` | `<proc_root>/net/dev` | `node_network_{receive,transmit}_*_total{device}` |
//! | `netclass` | `<sys_root>/class/net` | `node_network_up`, `node_network_mtu_bytes` |
//! | `time` | clock | `node_time_seconds` |
//! | `uname` | `<proc_root>/sys/kernel/*` | `node_uname_info` |
//! | `processes` | `<proc_root>/<pid>/*` | `namedprocess_namegroup_*{groupname}` (see [`process`]) |
//!
//! Uptime is not a series of its own (node_exporter has none): it is
//! `node_time_seconds - node_boot_time_seconds`.
//!
//! Clock ticks are converted with the kernel's `USER_HZ` (`AT_CLKTCK` from the auxiliary
//! vector, through `rustix`), 100 on every mainstream architecture.
//!
//! A missing, unreadable or malformed file costs that collector's points for this round
//! (or one line's): it counts one `errors` and is logged once per kind with its path; the
//! other collectors still run. Collection runs on the blocking pool so a slow procfs or
//! `statvfs` never stalls the runtime, and the source stops as soon as `ctx.shutdown` fires.

mod fs;
mod parse;
pub mod process;

use crate::pipeline::{SendError, SourceContext};
use crate::signal::MetricKind::{self, Counter, Gauge};
use crate::signal::{Batch, Label, MetricPoint};
use regex::Regex;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use fs::{DEFAULT_FS_TYPES_EXCLUDE, DEFAULT_MOUNT_POINTS_EXCLUDE};
pub use process::{ProcessConfig, ProcessMatch};

/// Clock ticks per second (`USER_HZ`); see the module docs.
fn user_hz() -> f64 {
    match rustix::param::clock_ticks_per_second() {
        0 => 100.0,
        hz => hz as f64,
    }
}

/// node_exporter 1.5's default `--collector.diskstats.device-exclude`.
pub const DEFAULT_DISK_DEVICE_EXCLUDE: &str = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$";

/// Every collector name, in the order they run.
pub const COLLECTORS: [&str; 11] = [
    "cpu",
    "stat",
    "meminfo",
    "loadavg",
    "filesystem",
    "diskstats",
    "netdev",
    "netclass",
    "time",
    "uname",
    "processes",
];

/// Most groups a config may watch.
const MAX_PROCESS_GROUPS: usize = 256;

/// The host source's configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How often to collect (humantime, default `10s`, at least `100ms`).
    #[serde(default = "default_interval", deserialize_with = "crate::pipeline::duration::deserialize")]
    pub interval: Duration,
    /// Where procfs is (default `/proc`; `/host/proc` in a DaemonSet mounting the host's).
    #[serde(default = "default_proc_root")]
    pub proc_root: PathBuf,
    /// Where sysfs is (default `/sys`).
    #[serde(default = "default_sys_root")]
    pub sys_root: PathBuf,
    /// Where the host's root filesystem is (default `/`; `/host` in a DaemonSet): mount
    /// points are examined under it and labelled without it, as node_exporter's
    /// `--path.rootfs` does.
    #[serde(default = "default_rootfs")]
    pub rootfs: PathBuf,
    /// Which collectors run (default: all of [`COLLECTORS`]).
    #[serde(default = "default_collectors")]
    pub collectors: Vec<String>,
    /// `filesystem` collector options.
    #[serde(default)]
    pub filesystem: FilesystemConfig,
    /// `diskstats` collector options.
    #[serde(default)]
    pub diskstats: DiskstatsConfig,
    /// `netdev` and `netclass` collector options.
    #[serde(default)]
    pub netdev: NetdevConfig,
    /// Watched process groups (default none).
    #[serde(default)]
    pub processes: Vec<ProcessConfig>,
}

/// Mount selection, as node_exporter's flags of the same names.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilesystemConfig {
    /// Mount points to skip (default [`DEFAULT_MOUNT_POINTS_EXCLUDE`]).
    #[serde(default = "default_mount_points_exclude")]
    pub mount_points_exclude: String,
    /// Filesystem types to skip (default [`DEFAULT_FS_TYPES_EXCLUDE`]).
    #[serde(default = "default_fs_types_exclude")]
    pub fs_types_exclude: String,
}

/// Block device selection.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiskstatsConfig {
    /// Devices to skip (default [`DEFAULT_DISK_DEVICE_EXCLUDE`]: partitions, loop, ram).
    #[serde(default = "default_disk_device_exclude")]
    pub device_exclude: String,
}

/// Network interface selection.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct NetdevConfig {
    /// Interfaces to skip; empty (the default, as upstream node_exporter 1.5) skips none.
    /// Debian's packaged node_exporter defaults to `^lo$`.
    #[serde(default)]
    pub device_exclude: String,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_proc_root() -> PathBuf {
    PathBuf::from("/proc")
}
fn default_sys_root() -> PathBuf {
    PathBuf::from("/sys")
}
fn default_rootfs() -> PathBuf {
    PathBuf::from("/")
}
fn default_collectors() -> Vec<String> {
    COLLECTORS.iter().map(|s| s.to_string()).collect()
}
fn default_mount_points_exclude() -> String {
    DEFAULT_MOUNT_POINTS_EXCLUDE.to_owned()
}
fn default_fs_types_exclude() -> String {
    DEFAULT_FS_TYPES_EXCLUDE.to_owned()
}
fn default_disk_device_exclude() -> String {
    DEFAULT_DISK_DEVICE_EXCLUDE.to_owned()
}

impl Default for FilesystemConfig {
    fn default() -> Self {
        FilesystemConfig {
            mount_points_exclude: default_mount_points_exclude(),
            fs_types_exclude: default_fs_types_exclude(),
        }
    }
}

impl Default for DiskstatsConfig {
    fn default() -> Self {
        DiskstatsConfig { device_exclude: default_disk_device_exclude() }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interval: default_interval(),
            proc_root: default_proc_root(),
            sys_root: default_sys_root(),
            rootfs: default_rootfs(),
            collectors: default_collectors(),
            filesystem: FilesystemConfig::default(),
            diskstats: DiskstatsConfig::default(),
            netdev: NetdevConfig::default(),
            processes: Vec::new(),
        }
    }
}

/// Why the host source cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid; every problem is listed, each naming its field.
    #[error("invalid host source config: {}", .0.join("; "))]
    Config(Vec<String>),
}

fn exclude_regex(field: &str, re: &str, errors: &mut Vec<String>) -> Option<Regex> {
    match regex::RegexBuilder::new(re).size_limit(1 << 20).build() {
        Ok(r) => Some(r),
        Err(e) => {
            errors.push(format!("{field}: invalid regex: {e}"));
            None
        }
    }
}

impl Config {
    /// Checks the whole config and reports every problem, each naming its field.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.interval < Duration::from_millis(100) {
            errors.push(format!("interval: must be at least 100ms, got {}", humantime::format_duration(self.interval)));
        }
        for (field, path) in [("proc_root", &self.proc_root), ("sys_root", &self.sys_root), ("rootfs", &self.rootfs)] {
            if !path.is_absolute() {
                errors.push(format!("{field}: must be an absolute path"));
            }
        }
        let mut seen = HashSet::new();
        for (i, c) in self.collectors.iter().enumerate() {
            if !COLLECTORS.contains(&c.as_str()) {
                errors.push(format!("collectors[{i}]: unknown collector {c:?} (known: {})", COLLECTORS.join(", ")));
            } else if !seen.insert(c.as_str()) {
                errors.push(format!("collectors[{i}]: {c:?} listed twice"));
            }
        }
        exclude_regex("filesystem.mount_points_exclude", &self.filesystem.mount_points_exclude, &mut errors);
        exclude_regex("filesystem.fs_types_exclude", &self.filesystem.fs_types_exclude, &mut errors);
        exclude_regex("diskstats.device_exclude", &self.diskstats.device_exclude, &mut errors);
        exclude_regex("netdev.device_exclude", &self.netdev.device_exclude, &mut errors);
        if self.processes.len() > MAX_PROCESS_GROUPS {
            errors.push(format!("processes: at most {MAX_PROCESS_GROUPS} groups, got {}", self.processes.len()));
        }
        let mut names = HashSet::new();
        for (i, p) in self.processes.iter().enumerate() {
            if p.name.is_empty() {
                errors.push(format!("processes[{i}].name: must not be empty"));
            } else if !names.insert(p.name.as_str()) {
                errors.push(format!("processes[{i}].name: {:?} is used by an earlier group", p.name));
            }
            match &p.matcher {
                ProcessMatch::Comm(c) if c.is_empty() => errors.push(format!("processes[{i}].match.comm: must not be empty")),
                ProcessMatch::Comm(c) if c.len() > 15 => errors.push(format!(
                    "processes[{i}].match.comm: longer than the 15 bytes the kernel keeps, so it never matches; use exe or cmdline"
                )),
                ProcessMatch::Exe(e) if e.is_empty() => errors.push(format!("processes[{i}].match.exe: must not be empty")),
                ProcessMatch::Cmdline(re) => {
                    if let Err(e) = process::compile_cmdline(re) {
                        errors.push(format!("processes[{i}].match.cmdline: invalid regex: {e}"));
                    }
                }
                ProcessMatch::PidFile(p) if !p.is_absolute() => {
                    errors.push(format!("processes[{i}].match.pid_file: must be an absolute path"))
                }
                _ => {}
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// Runs the source: one batch now and one every `interval`, until `ctx.shutdown`
    /// fires or the consumer goes away. Fails only if the config is invalid.
    pub async fn run(self, ctx: SourceContext) -> Result<(), Error> {
        let mut host = Host::new(&self)?;
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => return Ok(()),
                _ = ticker.tick() => {}
            }
            let stats = ctx.stats.clone();
            let job = tokio::task::spawn_blocking(move || {
                let points = host.collect(&stats);
                (host, points)
            });
            let points = tokio::select! {
                biased;
                // A collection stuck in the kernel (a hung mount) is abandoned on shutdown.
                _ = ctx.shutdown.cancelled() => return Ok(()),
                joined = job => match joined {
                    Ok((h, points)) => {
                        host = h;
                        points
                    }
                    Err(e) => {
                        // Only a bug gets here; start over with fresh state.
                        ctx.stats.errors.inc();
                        tracing::error!(error = %e, "host collection panicked; state reset");
                        host = Host::new(&self)?;
                        continue;
                    }
                }
            };
            let n = points.len() as u64;
            ctx.stats.received.add(n);
            tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => return Ok(()),
                sent = ctx.out.send(Batch::metrics(points)) => match sent {
                    Ok(()) => ctx.stats.emitted.add(n),
                    Err(SendError::Closed(_) | SendError::Full(_)) => return Ok(()),
                },
            }
        }
    }
}

/// Points of one collection, all stamped with the same time.
#[derive(Debug)]
struct Out {
    points: Vec<MetricPoint>,
    timestamp_ms: i64,
}

impl Out {
    fn push(&mut self, name: &str, labels: &[(&str, &str)], kind: MetricKind, value: f64) {
        let labels = labels.iter().map(|(n, v)| Label::new(*n, *v)).collect();
        self.points.push(MetricPoint::new(name, labels, kind, value, self.timestamp_ms));
    }
}

/// Counts every failure in `stats.errors` and logs the first of each kind with its path.
struct Errors<'a> {
    stats: &'a crate::pipeline::ComponentStats,
    logged: &'a mut HashSet<&'static str>,
}

impl Errors<'_> {
    fn report(&mut self, kind: &'static str, path: &Path, error: &dyn std::fmt::Display) {
        self.stats.errors.inc();
        if self.logged.insert(kind) {
            tracing::warn!(
                source = self.stats.name(),
                kind,
                path = %path.display(),
                error = %error,
                "host metrics: cannot read; this kind is now only counted in errors"
            );
        }
    }

    /// One error for a file with malformed lines (line numbers only, never contents).
    fn bad_lines(&mut self, kind: &'static str, path: &Path, lines: &[usize]) {
        if let Some(first) = lines.first() {
            let msg = format!("{} malformed line(s), first at line {first}", lines.len());
            self.report(kind, path, &msg);
        }
    }
}

/// A built host source: compiled config plus the state kept between collections. Use
/// [`Config::run`] in the agent; this is public for tests and benchmarks.
#[derive(Debug)]
pub struct Host {
    proc_root: PathBuf,
    sys_root: PathBuf,
    rootfs: PathBuf,
    enabled: HashSet<&'static str>,
    fs_filter: fs::Filter,
    disk_exclude: Regex,
    net_exclude: Option<Regex>,
    statfs: fs::StatFs,
    groups: process::Groups,
    /// Last emitted CPU seconds per (cpu, mode index), to hide small backward jumps.
    cpu_last: HashMap<(String, usize), f64>,
    boot_time: Option<u64>,
    logged: HashSet<&'static str>,
}

/// Mode labels of `node_cpu_seconds_total`, in `/proc/stat` column order.
const CPU_MODES: [&str; 8] = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];

/// `/proc/diskstats` columns after the device name: metric, type, scale to base units.
const DISK_FIELDS: [(&str, MetricKind, f64); 17] = [
    ("node_disk_reads_completed_total", Counter, 1.0),
    ("node_disk_reads_merged_total", Counter, 1.0),
    ("node_disk_read_bytes_total", Counter, 512.0),
    ("node_disk_read_time_seconds_total", Counter, 0.001),
    ("node_disk_writes_completed_total", Counter, 1.0),
    ("node_disk_writes_merged_total", Counter, 1.0),
    ("node_disk_written_bytes_total", Counter, 512.0),
    ("node_disk_write_time_seconds_total", Counter, 0.001),
    ("node_disk_io_now", Gauge, 1.0),
    ("node_disk_io_time_seconds_total", Counter, 0.001),
    ("node_disk_io_time_weighted_seconds_total", Counter, 0.001),
    ("node_disk_discards_completed_total", Counter, 1.0),
    ("node_disk_discards_merged_total", Counter, 1.0),
    ("node_disk_discarded_sectors_total", Counter, 1.0),
    ("node_disk_discard_time_seconds_total", Counter, 0.001),
    ("node_disk_flush_requests_total", Counter, 1.0),
    ("node_disk_flush_requests_time_seconds_total", Counter, 0.001),
];

impl Host {
    /// Validates `config` and builds the source's state.
    pub fn new(config: &Config) -> Result<Host, Error> {
        config.validate().map_err(Error::Config)?;
        let re = |r: &str| Regex::new(r).map_err(|e| Error::Config(vec![e.to_string()]));
        let enabled = COLLECTORS.iter().copied().filter(|c| config.collectors.iter().any(|x| x == c)).collect();
        Ok(Host {
            proc_root: config.proc_root.clone(),
            sys_root: config.sys_root.clone(),
            rootfs: config.rootfs.clone(),
            enabled,
            fs_filter: fs::Filter {
                mount_points: re(&config.filesystem.mount_points_exclude)?,
                fs_types: re(&config.filesystem.fs_types_exclude)?,
            },
            disk_exclude: re(&config.diskstats.device_exclude)?,
            net_exclude: if config.netdev.device_exclude.is_empty() {
                None
            } else {
                Some(re(&config.netdev.device_exclude)?)
            },
            statfs: fs::StatFs::new(),
            groups: process::Groups::new(&config.processes).map_err(|e| Error::Config(vec![e]))?,
            cpu_last: HashMap::new(),
            boot_time: None,
            logged: HashSet::new(),
        })
    }

    /// One collection: every enabled collector, failures counted in `stats.errors`.
    pub fn collect(&mut self, stats: &crate::pipeline::ComponentStats) -> Vec<MetricPoint> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut out = Out { points: Vec::with_capacity(512), timestamp_ms: now.as_millis() as i64 };
        let mut logged = std::mem::take(&mut self.logged);
        let mut errors = Errors { stats, logged: &mut logged };
        let enabled = std::mem::take(&mut self.enabled);
        let on = |c: &str| enabled.contains(c);

        if on("cpu") || on("stat") || (on("processes") && !self.groups.is_empty()) {
            self.collect_stat(on("cpu"), on("stat"), &mut errors, &mut out);
        }
        if on("meminfo") {
            self.collect_meminfo(&mut errors, &mut out);
        }
        if on("loadavg") {
            self.collect_loadavg(&mut errors, &mut out);
        }
        if on("filesystem") {
            fs::collect(&self.proc_root, &self.rootfs, &self.fs_filter, &self.statfs, &mut errors, &mut out);
        }
        if on("diskstats") {
            self.collect_diskstats(&mut errors, &mut out);
        }
        if on("netdev") {
            self.collect_netdev(&mut errors, &mut out);
        }
        if on("netclass") {
            self.collect_netclass(&mut errors, &mut out);
        }
        if on("time") {
            out.push("node_time_seconds", &[], Gauge, now.as_secs_f64());
        }
        if on("uname") {
            self.collect_uname(&mut errors, &mut out);
        }
        if on("processes") && !self.groups.is_empty() {
            self.groups.collect(&self.proc_root, self.boot_time, &mut errors, &mut out);
        }
        self.logged = logged;
        self.enabled = enabled;
        out.points
    }

    fn read(&self, rel: &str, kind: &'static str, errors: &mut Errors<'_>) -> Option<(PathBuf, String)> {
        let path = self.proc_root.join(rel);
        match std::fs::read_to_string(&path) {
            Ok(t) => Some((path, t)),
            Err(e) => {
                errors.report(kind, &path, &e);
                None
            }
        }
    }

    fn collect_stat(&mut self, cpu: bool, stat: bool, errors: &mut Errors<'_>, out: &mut Out) {
        let Some((path, text)) = self.read("stat", "stat_read", errors) else { return };
        let parsed = parse::stat(&text);
        errors.bad_lines("stat_parse", &path, &parsed.bad_lines);
        let s = parsed.value;
        if s.boot_time.is_some() {
            self.boot_time = s.boot_time;
        }
        if cpu {
            if s.cpus.is_empty() {
                errors.report("stat_no_cpus", &path, &"no cpuN lines");
            }
            for c in &s.cpus {
                for (mi, mode) in CPU_MODES.iter().enumerate() {
                    let v = self.monotonic_cpu(&c.cpu, mi, c.ticks[mi] as f64 / user_hz());
                    out.push("node_cpu_seconds_total", &[("cpu", &c.cpu), ("mode", mode)], Counter, v);
                }
                for (mi, mode) in [(8, "user"), (9, "nice")] {
                    let v = self.monotonic_cpu(&c.cpu, mi, c.ticks[mi] as f64 / user_hz());
                    out.push("node_cpu_guest_seconds_total", &[("cpu", &c.cpu), ("mode", mode)], Counter, v);
                }
            }
        }
        if stat {
            let fields = [
                ("node_boot_time_seconds", Gauge, s.boot_time),
                ("node_context_switches_total", Counter, s.context_switches),
                ("node_forks_total", Counter, s.forks),
                ("node_intr_total", Counter, s.interrupts),
                ("node_procs_running", Gauge, s.procs_running),
                ("node_procs_blocked", Gauge, s.procs_blocked),
            ];
            for (name, kind, v) in fields {
                if let Some(v) = v {
                    out.push(name, &[], kind, v as f64);
                }
            }
        }
    }

    /// node_exporter 1.5 keeps a CPU counter from going backwards (the kernel's idle and
    /// iowait can, by a few ticks): a drop under 3 s repeats the last value, a larger one
    /// (CPU hot-plug) is taken as a reset.
    fn monotonic_cpu(&mut self, cpu: &str, mode: usize, v: f64) -> f64 {
        let slot = self.cpu_last.entry((cpu.to_owned(), mode)).or_insert(v);
        if v < *slot && *slot - v < 3.0 {
            return *slot;
        }
        *slot = v;
        v
    }

    fn collect_meminfo(&self, errors: &mut Errors<'_>, out: &mut Out) {
        let Some((path, text)) = self.read("meminfo", "meminfo_read", errors) else { return };
        let parsed = parse::meminfo(&text);
        errors.bad_lines("meminfo_parse", &path, &parsed.bad_lines);
        if parsed.value.is_empty() && parsed.bad_lines.is_empty() {
            errors.report("meminfo_empty", &path, &"no fields");
        }
        let mut name = String::with_capacity(48);
        for (key, v) in &parsed.value {
            name.clear();
            name.push_str("node_memory_");
            name.push_str(key);
            out.push(&name, &[], Gauge, *v);
        }
    }

    fn collect_loadavg(&self, errors: &mut Errors<'_>, out: &mut Out) {
        let Some((path, text)) = self.read("loadavg", "loadavg_read", errors) else { return };
        match parse::loadavg(&text) {
            Some([l1, l5, l15]) => {
                out.push("node_load1", &[], Gauge, l1);
                out.push("node_load5", &[], Gauge, l5);
                out.push("node_load15", &[], Gauge, l15);
            }
            None => errors.report("loadavg_parse", &path, &"expected three load averages"),
        }
    }

    fn collect_diskstats(&self, errors: &mut Errors<'_>, out: &mut Out) {
        let Some((path, text)) = self.read("diskstats", "diskstats_read", errors) else { return };
        let parsed = parse::diskstats(&text);
        errors.bad_lines("diskstats_parse", &path, &parsed.bad_lines);
        for d in parsed.value.iter().filter(|d| !self.disk_exclude.is_match(&d.device)) {
            for ((name, kind, scale), v) in DISK_FIELDS.iter().zip(&d.stats) {
                out.push(name, &[("device", &d.device)], *kind, *v as f64 * scale);
            }
        }
    }

    fn excluded_net(&self, device: &str) -> bool {
        self.net_exclude.as_ref().is_some_and(|r| r.is_match(device))
    }

    fn collect_netdev(&self, errors: &mut Errors<'_>, out: &mut Out) {
        let Some((path, text)) = self.read("net/dev", "netdev_read", errors) else { return };
        let parsed = parse::net_dev(&text);
        errors.bad_lines("netdev_parse", &path, &parsed.bad_lines);
        let mut name = String::with_capacity(48);
        for d in parsed.value.iter().filter(|d| !self.excluded_net(&d.device)) {
            for (dir, fields, values) in
                [("receive", &parse::NET_RECEIVE, &d.receive), ("transmit", &parse::NET_TRANSMIT, &d.transmit)]
            {
                for (field, v) in fields.iter().zip(values) {
                    name.clear();
                    name.push_str("node_network_");
                    name.push_str(dir);
                    name.push('_');
                    name.push_str(field);
                    name.push_str("_total");
                    out.push(&name, &[("device", &d.device)], Counter, *v as f64);
                }
            }
        }
    }

    /// `node_network_up` (operstate is `up`) and `node_network_mtu_bytes` from sysfs, for
    /// the interfaces `netdev` keeps (node_exporter's `netclass` has its own, empty,
    /// exclude list; one list is simpler and the default is the same).
    fn collect_netclass(&self, errors: &mut Errors<'_>, out: &mut Out) {
        let dir = self.sys_root.join("class/net");
        let entries = match std::fs::read_dir(&dir) {
            Ok(d) => d,
            Err(e) => return errors.report("netclass_list", &dir, &e),
        };
        let mut devices: Vec<String> =
            entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|d| !self.excluded_net(d)).collect();
        devices.sort_unstable();
        for dev in &devices {
            let base = dir.join(dev);
            let operstate = base.join("operstate");
            match std::fs::read_to_string(&operstate) {
                Ok(s) => {
                    out.push("node_network_up", &[("device", dev)], Gauge, if s.trim() == "up" { 1.0 } else { 0.0 })
                }
                Err(e) => errors.report("netclass_read", &operstate, &e),
            }
            let mtu = base.join("mtu");
            match std::fs::read_to_string(&mtu).map(|s| s.trim().parse::<u64>()) {
                Ok(Ok(v)) => out.push("node_network_mtu_bytes", &[("device", dev)], Gauge, v as f64),
                Ok(Err(_)) => errors.report("netclass_parse", &mtu, &"not a number"),
                Err(e) => errors.report("netclass_read", &mtu, &e),
            }
        }
    }

    fn collect_uname(&self, errors: &mut Errors<'_>, out: &mut Out) {
        let mut values = Vec::with_capacity(5);
        for (label, file) in [
            ("sysname", "ostype"),
            ("nodename", "hostname"),
            ("release", "osrelease"),
            ("version", "version"),
            ("domainname", "domainname"),
        ] {
            let Some((_, text)) = self.read(&format!("sys/kernel/{file}"), "uname_read", errors) else { return };
            values.push((label, text.trim_end_matches('\n').to_owned()));
        }
        // `arch` exists since Linux 6.1; before that the binary's own architecture is the
        // same answer on every platform Warden ships for.
        let machine = std::fs::read_to_string(self.proc_root.join("sys/kernel/arch"))
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_else(|_| std::env::consts::ARCH.to_owned());
        values.push(("machine", machine));
        let labels: Vec<(&str, &str)> = values.iter().map(|(l, v)| (*l, v.as_str())).collect();
        out.push("node_uname_info", &labels, Gauge, 1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let c: Config = serde_json::from_str("{}").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.interval, Duration::from_secs(10));
        assert_eq!(c.collectors.len(), COLLECTORS.len());
        assert!(c.validate().is_ok());

        let c: Config = serde_json::from_str(r#"{"interval":"1m","proc_root":"/host/proc","rootfs":"/host"}"#).unwrap();
        assert_eq!(c.interval, Duration::from_secs(60));
        assert_eq!(c.proc_root, PathBuf::from("/host/proc"));

        assert!(serde_json::from_str::<Config>(r#"{"intervall":"1s"}"#).is_err());
        assert!(serde_json::from_str::<Config>(r#"{"interval":"soon"}"#).is_err());
        assert!(serde_json::from_str::<Config>(r#"{"filesystem":{"mount_points":"x"}}"#).is_err());

        let bad: Config = serde_json::from_str(
            r#"{
                "interval": "10ms",
                "proc_root": "proc",
                "collectors": ["cpu", "gpu", "cpu"],
                "filesystem": {"fs_types_exclude": "("},
                "diskstats": {"device_exclude": "["},
                "netdev": {"device_exclude": "a{99999999}"},
                "processes": [
                    {"name": "", "match": {"comm": ""}},
                    {"name": "a", "match": {"comm": "a-very-long-comm-name"}},
                    {"name": "a", "match": {"cmdline": "(unclosed"}},
                    {"name": "b", "match": {"pid_file": "run/x.pid"}},
                    {"name": "c", "match": {"exe": ""}}
                ]
            }"#,
        )
        .unwrap();
        let errs = bad.validate().unwrap_err();
        let want_prefixes = [
            "interval:",
            "proc_root:",
            "collectors[1]: unknown collector \"gpu\"",
            "collectors[2]: \"cpu\" listed twice",
            "filesystem.fs_types_exclude: invalid regex",
            "diskstats.device_exclude: invalid regex",
            "netdev.device_exclude: invalid regex",
            "processes[0].name:",
            "processes[0].match.comm:",
            "processes[1].match.comm: longer",
            "processes[2].name: \"a\" is used",
            "processes[2].match.cmdline: invalid regex",
            "processes[3].match.pid_file:",
            "processes[4].match.exe:",
        ];
        for p in want_prefixes {
            assert!(errs.iter().any(|e| e.starts_with(p)), "missing {p:?} in {errs:#?}");
        }
        assert_eq!(errs.len(), want_prefixes.len(), "{errs:#?}");
        assert!(matches!(Host::new(&bad), Err(Error::Config(e)) if e.len() == want_prefixes.len()));
    }

    #[test]
    fn cpu_counters_do_not_go_backwards() {
        let mut h = Host::new(&Config::default()).unwrap();
        assert_eq!(h.monotonic_cpu("0", 3, 100.0), 100.0);
        assert_eq!(h.monotonic_cpu("0", 3, 99.5), 100.0); // small jump back: hold
        assert_eq!(h.monotonic_cpu("0", 3, 101.0), 101.0);
        assert_eq!(h.monotonic_cpu("0", 3, 5.0), 5.0); // hot-plug: reset
        assert_eq!(h.monotonic_cpu("1", 3, 1.0), 1.0); // per cpu
    }
}
