//! Filesystems per mount, as node_exporter's `filesystem` collector reports them.
//!
//! The mount list is `<proc_root>/1/mounts` (the host's mount namespace when the host's
//! `/proc` is mounted at `proc_root`), or `<proc_root>/mounts` when pid 1 is hidden
//! (`hidepid`), filtered by node_exporter's default mount-point and fs-type regexes. A
//! mount point is labelled as the host sees it and examined at `<rootfs><mountpoint>`.
//!
//! Sizes come from `statvfs(2)` (through `rustix`, the collector forbids `unsafe`), taken
//! in a helper thread per mount with a 5 s deadline, like node_exporter's stuck-mount
//! guard: a mount whose `statvfs` hangs (a dead NFS server) gets
//! `node_filesystem_device_error 1` and is skipped until that call returns, so one bad
//! mount never stalls the host source. As in node_exporter, block counts are multiplied by
//! `f_bsize`, and `_readonly` comes from the mount options (`ro`).

use super::parse;
use super::{Errors, Out};
use crate::signal::MetricKind::Gauge;
use regex::Regex;
use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// node_exporter 1.5's default `--collector.filesystem.mount-points-exclude`.
pub const DEFAULT_MOUNT_POINTS_EXCLUDE: &str =
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
/// node_exporter 1.5's default `--collector.filesystem.fs-types-exclude`.
pub const DEFAULT_FS_TYPES_EXCLUDE: &str = "^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$";

/// What `statvfs` says about one mount.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FsStat {
    size: u64,
    avail: u64,
    free: u64,
    files: u64,
    files_free: u64,
}

/// How long one mount's `statvfs` may take before the mount counts as stuck.
const STATFS_TIMEOUT: Duration = Duration::from_secs(5);

/// `statvfs` by path, with the stuck-mount guard described in the module docs.
#[derive(Debug, Default)]
pub(super) struct StatFs {
    /// Mount paths whose `statvfs` call has not returned yet.
    stuck: Arc<Mutex<HashSet<PathBuf>>>,
}

impl StatFs {
    pub(super) fn new() -> StatFs {
        StatFs::default()
    }

    fn stat(&self, path: &Path) -> Option<FsStat> {
        let mut stuck = self.stuck.lock().unwrap_or_else(|e| e.into_inner());
        if stuck.contains(path) {
            return None;
        }
        stuck.insert(path.to_path_buf());
        drop(stuck);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let owned = path.to_path_buf();
        let registry = Arc::clone(&self.stuck);
        let spawned = std::thread::Builder::new().name("warden-statfs".into()).spawn(move || {
            let result = rustix::fs::statvfs(&owned);
            registry.lock().unwrap_or_else(|e| e.into_inner()).remove(&owned);
            let _ = tx.send(result);
        });
        if spawned.is_err() {
            self.stuck.lock().unwrap_or_else(|e| e.into_inner()).remove(path);
            return None;
        }
        let st = rx.recv_timeout(STATFS_TIMEOUT).ok()?.ok()?;
        let bsize = st.f_bsize;
        Some(FsStat {
            size: st.f_blocks.saturating_mul(bsize),
            avail: st.f_bavail.saturating_mul(bsize),
            free: st.f_bfree.saturating_mul(bsize),
            files: st.f_files,
            files_free: st.f_ffree,
        })
    }
}

/// The compiled exclude regexes.
#[derive(Debug)]
pub(super) struct Filter {
    pub(super) mount_points: Regex,
    pub(super) fs_types: Regex,
}

/// The mounts node_exporter would report, labelled as the host sees them, first of each
/// (device, mount point, fs type) only.
pub(super) fn select<'a>(
    mounts: &'a [parse::MountLine],
    rootfs: &Path,
    filter: &Filter,
) -> Vec<(String, &'a parse::MountLine)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for m in mounts {
        let mount_point = strip_rootfs(&m.mount_point, rootfs);
        if filter.mount_points.is_match(&mount_point) || filter.fs_types.is_match(&m.fstype) {
            continue;
        }
        if seen.insert((m.device.as_str(), mount_point.clone(), m.fstype.as_str())) {
            out.push((mount_point, m));
        }
    }
    out
}

/// node_exporter's `rootfsStripPrefix`: `/host/var` → `/var` when rootfs is `/host`.
fn strip_rootfs(mount_point: &str, rootfs: &Path) -> String {
    let root = rootfs.to_string_lossy();
    let root = root.trim_end_matches('/');
    if root.is_empty() {
        return mount_point.to_owned();
    }
    match mount_point.strip_prefix(root) {
        Some("") => "/".to_owned(),
        Some(rest) if rest.starts_with('/') => rest.to_owned(),
        _ => mount_point.to_owned(),
    }
}

/// Where to `statvfs` a mount point: `<rootfs><mountpoint>`.
fn stat_path(rootfs: &Path, mount_point: &str) -> PathBuf {
    rootfs.join(mount_point.trim_start_matches('/'))
}

/// Reads the mount table and appends the `node_filesystem_*` points.
pub(super) fn collect(
    proc_root: &Path,
    rootfs: &Path,
    filter: &Filter,
    statfs: &StatFs,
    errors: &mut Errors<'_>,
    out: &mut Out,
) {
    let primary = proc_root.join("1/mounts");
    let (path, text) = match std::fs::read_to_string(&primary) {
        Ok(t) => (primary, t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let fallback = proc_root.join("mounts");
            match std::fs::read_to_string(&fallback) {
                Ok(t) => (fallback, t),
                Err(e) => return errors.report("filesystem_mounts_read", &fallback, &e),
            }
        }
        Err(e) => return errors.report("filesystem_mounts_read", &primary, &e),
    };
    let parsed = parse::mounts(&text);
    errors.bad_lines("filesystem_mounts_parse", &path, &parsed.bad_lines);
    for (mount_point, m) in select(&parsed.value, rootfs, filter) {
        let labels =
            [("device", m.device.as_str()), ("fstype", m.fstype.as_str()), ("mountpoint", mount_point.as_str())];
        let st = statfs.stat(&stat_path(rootfs, &mount_point));
        out.push("node_filesystem_device_error", &labels, Gauge, if st.is_some() { 0.0 } else { 1.0 });
        out.push("node_filesystem_readonly", &labels, Gauge, if m.read_only() { 1.0 } else { 0.0 });
        let Some(st) = st else { continue };
        out.push("node_filesystem_size_bytes", &labels, Gauge, st.size as f64);
        out.push("node_filesystem_avail_bytes", &labels, Gauge, st.avail as f64);
        out.push("node_filesystem_free_bytes", &labels, Gauge, st.free as f64);
        out.push("node_filesystem_files", &labels, Gauge, st.files as f64);
        out.push("node_filesystem_files_free", &labels, Gauge, st.files_free as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> Filter {
        Filter {
            mount_points: Regex::new(DEFAULT_MOUNT_POINTS_EXCLUDE).unwrap(),
            fs_types: Regex::new(DEFAULT_FS_TYPES_EXCLUDE).unwrap(),
        }
    }

    #[test]
    fn select_applies_node_exporter_defaults() {
        let text = "proc /proc proc rw 0 0\n\
                    sysfs /sys sysfs rw 0 0\n\
                    devtmpfs /dev devtmpfs rw 0 0\n\
                    tmpfs /dev/shm tmpfs rw 0 0\n\
                    /dev/vda / ext4 rw,relatime 0 0\n\
                    /dev/vda / ext4 rw,relatime 0 0\n\
                    tmpfs /run tmpfs rw 0 0\n\
                    tmpfs /run/credentials/x.service tmpfs ro 0 0\n\
                    overlay /var/lib/docker/overlay2/abc/merged overlay rw 0 0\n\
                    /dev/sdb1 /var/lib/docker xfs rw 0 0\n\
                    cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n\
                    /dev/sdc1 /data xfs ro 0 0\n\
                    /dev/loop0 /snap/core/1 squashfs ro 0 0\n";
        let mounts = parse::mounts(text).value;
        let got: Vec<(String, &str)> =
            select(&mounts, Path::new("/"), &filter()).into_iter().map(|(mp, m)| (mp, m.fstype.as_str())).collect();
        let want = [("/", "ext4"), ("/run", "tmpfs"), ("/var/lib/docker", "xfs"), ("/data", "xfs")];
        let want: Vec<(String, &str)> = want.iter().map(|(a, b)| (a.to_string(), *b)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn rootfs_prefix_is_stripped_and_restored() {
        let cases = [
            ("/host", "/host", "/"),
            ("/host", "/host/var", "/var"),
            ("/host/", "/host/var", "/var"),
            ("/host", "/hostile", "/hostile"),
            ("/host", "/etc/hosts", "/etc/hosts"),
            ("/", "/var", "/var"),
        ];
        for (root, mp, want) in cases {
            assert_eq!(strip_rootfs(mp, Path::new(root)), want, "{root} {mp}");
        }
        assert_eq!(stat_path(Path::new("/host"), "/var"), PathBuf::from("/host/var"));
        assert_eq!(stat_path(Path::new("/host"), "/"), PathBuf::from("/host/"));
        assert_eq!(stat_path(Path::new("/"), "/var/lib"), PathBuf::from("/var/lib"));
    }
}
