//! Pure parsers for the procfs files the host source reads. Each takes a file's text and
//! returns what it understood plus the 1-based numbers of the lines it could not parse, so
//! one odd line from a newer kernel costs that line, not the whole file. Nothing here does
//! I/O; the table tests below feed fixture strings.

/// What a parser understood, and the 1-based numbers of the lines it skipped as malformed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed<T> {
    /// The parsed content.
    pub value: T,
    /// Line numbers (1-based) that could not be parsed.
    pub bad_lines: Vec<usize>,
}

/// One per-CPU line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CpuTicks {
    /// The CPU number as written after `cpu` (`"0"`, `"1"`, ...).
    pub cpu: String,
    /// user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice; fields an
    /// older kernel does not write are 0.
    pub ticks: [u64; 10],
}

/// The parts of `/proc/stat` the host source exports.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stat {
    /// Per-CPU lines (the aggregate `cpu` line is skipped, as node_exporter does).
    pub cpus: Vec<CpuTicks>,
    /// `btime`: boot time, seconds since the epoch.
    pub boot_time: Option<u64>,
    /// `ctxt`: context switches since boot.
    pub context_switches: Option<u64>,
    /// `processes`: forks since boot.
    pub forks: Option<u64>,
    /// `intr`: the first number, interrupts serviced since boot.
    pub interrupts: Option<u64>,
    /// `procs_running`.
    pub procs_running: Option<u64>,
    /// `procs_blocked`.
    pub procs_blocked: Option<u64>,
}

/// Parses `/proc/stat`.
pub fn stat(text: &str) -> Parsed<Stat> {
    let mut out = Parsed::<Stat>::default();
    for (i, line) in text.lines().enumerate() {
        let mut fields = line.split_ascii_whitespace();
        let Some(key) = fields.next() else { continue };
        let ok = match key {
            "cpu" => true,
            "btime" => set(&mut out.value.boot_time, fields.next()),
            "ctxt" => set(&mut out.value.context_switches, fields.next()),
            "processes" => set(&mut out.value.forks, fields.next()),
            "intr" => set(&mut out.value.interrupts, fields.next()),
            "procs_running" => set(&mut out.value.procs_running, fields.next()),
            "procs_blocked" => set(&mut out.value.procs_blocked, fields.next()),
            _ => match key.strip_prefix("cpu") {
                Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => match cpu_ticks(fields) {
                    Some(ticks) => {
                        out.value.cpus.push(CpuTicks { cpu: n.to_owned(), ticks });
                        true
                    }
                    None => false,
                },
                // `cpufoo`, and every other line (`page`, `swap`, `softirq`, ...): not ours.
                Some(_) | None => true,
            },
        };
        if !ok {
            out.bad_lines.push(i + 1);
        }
    }
    out
}

fn set(slot: &mut Option<u64>, field: Option<&str>) -> bool {
    match field.and_then(|f| f.parse().ok()) {
        Some(v) => {
            *slot = Some(v);
            true
        }
        None => false,
    }
}

/// At least user, nice, system and idle (Linux 2.4); every field present must be a number.
fn cpu_ticks<'a>(fields: impl Iterator<Item = &'a str>) -> Option<[u64; 10]> {
    let mut ticks = [0u64; 10];
    let mut n = 0;
    for (slot, f) in ticks.iter_mut().zip(fields) {
        *slot = f.parse().ok()?;
        n += 1;
    }
    (n >= 4).then_some(ticks)
}

/// Parses `/proc/meminfo` into `(key, value)` pairs named as node_exporter names them:
/// `Active(anon)` becomes `Active_anon`, a value with a unit (always `kB`) is multiplied
/// by 1024 and its key gets `_bytes`, a value without one (`HugePages_Total`) is kept as
/// is. The metric is `node_memory_<key>`.
pub fn meminfo(text: &str) -> Parsed<Vec<(String, f64)>> {
    let mut out = Parsed::<Vec<(String, f64)>>::default();
    for (i, line) in text.lines().enumerate() {
        let parts: Vec<&str> = line.split_ascii_whitespace().collect();
        if parts.is_empty() {
            continue;
        }
        let entry = (|| {
            let raw = parts[0].strip_suffix(':')?;
            let value: f64 = parts.get(1)?.parse().ok()?;
            let mut key = meminfo_key(raw)?;
            match parts.len() {
                2 => Some((key, value)),
                3 => {
                    key.push_str("_bytes");
                    Some((key, value * 1024.0))
                }
                _ => None,
            }
        })();
        match entry {
            Some(e) => out.value.push(e),
            None => out.bad_lines.push(i + 1),
        }
    }
    out
}

/// node_exporter's `\((.*)\)` → `_$1`, then anything outside `[A-Za-z0-9_]` becomes `_` so
/// the result is always a valid metric-name fragment.
fn meminfo_key(raw: &str) -> Option<String> {
    if raw.is_empty() {
        return None;
    }
    let key = match (raw.find('('), raw.rfind(')')) {
        (Some(open), Some(close)) if close > open => {
            format!("{}_{}{}", &raw[..open], &raw[open + 1..close], &raw[close + 1..])
        }
        _ => raw.to_owned(),
    };
    Some(key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect())
}

/// One line of `/proc/diskstats`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DiskLine {
    /// Major device number.
    pub major: u32,
    /// Minor device number.
    pub minor: u32,
    /// Device name (`vda`, `nvme0n1`).
    pub device: String,
    /// The statistics after the name: 11 (Linux 2.6), 15 (4.18, discards) or 17 (5.5,
    /// flushes) numbers.
    pub stats: Vec<u64>,
}

/// Parses `/proc/diskstats`; a line needs at least the 11 classic statistics.
pub fn diskstats(text: &str) -> Parsed<Vec<DiskLine>> {
    let mut out = Parsed::<Vec<DiskLine>>::default();
    for (i, line) in text.lines().enumerate() {
        let mut fields = line.split_ascii_whitespace();
        let Some(first) = fields.next() else { continue };
        let entry = (|| {
            let major = first.parse().ok()?;
            let minor = fields.next()?.parse().ok()?;
            let device = fields.next()?.to_owned();
            let stats = fields.take(32).map(|f| f.parse().ok()).collect::<Option<Vec<u64>>>()?;
            (stats.len() >= 11).then_some(DiskLine { major, minor, device, stats })
        })();
        match entry {
            Some(e) => out.value.push(e),
            None => out.bad_lines.push(i + 1),
        }
    }
    out
}

/// The receive columns of `/proc/net/dev`, in file order; the metric is
/// `node_network_receive_<name>_total`.
pub const NET_RECEIVE: [&str; 8] = ["bytes", "packets", "errs", "drop", "fifo", "frame", "compressed", "multicast"];
/// The transmit columns of `/proc/net/dev`, in file order; the metric is
/// `node_network_transmit_<name>_total`.
pub const NET_TRANSMIT: [&str; 8] = ["bytes", "packets", "errs", "drop", "fifo", "colls", "carrier", "compressed"];

/// One interface line of `/proc/net/dev`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetDevLine {
    /// Interface name.
    pub device: String,
    /// Values for [`NET_RECEIVE`].
    pub receive: [u64; 8],
    /// Values for [`NET_TRANSMIT`].
    pub transmit: [u64; 8],
}

/// Parses `/proc/net/dev` (two header lines, then `name: 16 numbers`).
pub fn net_dev(text: &str) -> Parsed<Vec<NetDevLine>> {
    let mut out = Parsed::<Vec<NetDevLine>>::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.contains('|') {
            continue; // the two header lines
        }
        let entry = (|| {
            let (name, rest) = line.rsplit_once(':')?;
            let device = name.trim();
            if device.is_empty() {
                return None;
            }
            let nums = rest.split_ascii_whitespace().map(|f| f.parse().ok()).collect::<Option<Vec<u64>>>()?;
            if nums.len() < 16 {
                return None;
            }
            let mut e = NetDevLine { device: device.to_owned(), ..NetDevLine::default() };
            e.receive.copy_from_slice(&nums[..8]);
            e.transmit.copy_from_slice(&nums[8..16]);
            Some(e)
        })();
        match entry {
            Some(e) => out.value.push(e),
            None => out.bad_lines.push(i + 1),
        }
    }
    out
}

/// Parses `/proc/loadavg`: the 1, 5 and 15 minute load averages.
pub fn loadavg(text: &str) -> Option<[f64; 3]> {
    let mut f = text.split_ascii_whitespace().map(|s| s.parse::<f64>().ok().filter(|v| v.is_finite()));
    Some([f.next()??, f.next()??, f.next()??])
}

/// One line of `/proc/<pid>/mounts`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MountLine {
    /// The mounted device (`/dev/vda`, `tmpfs`).
    pub device: String,
    /// Where it is mounted, with the kernel's octal escapes decoded.
    pub mount_point: String,
    /// File system type.
    pub fstype: String,
    /// Mount options (`rw,relatime`).
    pub options: String,
}

impl MountLine {
    /// Whether the options include `ro` (node_exporter's `node_filesystem_readonly`).
    pub fn read_only(&self) -> bool {
        self.options.split(',').any(|o| o == "ro")
    }
}

/// Parses a mounts file (`device mountpoint fstype options dump pass`).
pub fn mounts(text: &str) -> Parsed<Vec<MountLine>> {
    let mut out = Parsed::<Vec<MountLine>>::default();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_ascii_whitespace().take(4).collect();
        if f.is_empty() {
            continue;
        }
        if f.len() < 4 {
            out.bad_lines.push(i + 1);
            continue;
        }
        out.value.push(MountLine {
            device: unescape_mount(f[0]),
            mount_point: unescape_mount(f[1]),
            fstype: f[2].to_owned(),
            options: f[3].to_owned(),
        });
    }
    out
}

/// Decodes the four escapes the kernel writes in mount tables (`\040` space, `\011` tab,
/// `\012` newline, `\134` backslash). node_exporter 1.5 decodes only the first two; the
/// other two occur only in paths that contain a newline or a backslash.
fn unescape_mount(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// The fields of `/proc/<pid>/stat` the process metrics use.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PidStat {
    /// `comm`: the executable name the kernel keeps (at most 15 bytes).
    pub comm: String,
    /// Minor page faults.
    pub minflt: u64,
    /// Major page faults.
    pub majflt: u64,
    /// User-mode CPU time, clock ticks.
    pub utime: u64,
    /// Kernel-mode CPU time, clock ticks.
    pub stime: u64,
    /// Threads.
    pub num_threads: u64,
    /// Start time, clock ticks after boot.
    pub starttime: u64,
    /// Virtual memory size, bytes.
    pub vsize: u64,
}

/// Parses `/proc/<pid>/stat`. `comm` may contain spaces and parentheses, so it is taken
/// between the first `(` and the last `)`.
pub fn pid_stat(text: &str) -> Option<PidStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let comm = text[open + 1..close].to_owned();
    // Field 3 (state) is rest[0]; field k is rest[k - 3] (proc(5) numbering).
    let rest: Vec<&str> = text[close + 1..].split_ascii_whitespace().take(22).collect();
    let num = |k: usize| -> Option<u64> { rest.get(k - 3)?.parse().ok() };
    Some(PidStat {
        comm,
        minflt: num(10)?,
        majflt: num(12)?,
        utime: num(14)?,
        stime: num(15)?,
        num_threads: num(20)?,
        starttime: num(22)?,
        vsize: num(23)?,
    })
}

/// `VmRSS` from `/proc/<pid>/status`, in bytes; `Some(0)` for a kernel thread (no `VmRSS`
/// line), `None` if the line is there but malformed.
pub fn status_rss(text: &str) -> Option<u64> {
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            let mut f = rest.split_ascii_whitespace();
            let kb: u64 = f.next()?.parse().ok()?;
            return match f.next() {
                Some("kB") => Some(kb * 1024),
                _ => None,
            };
        }
    }
    Some(0)
}

/// `/proc/<pid>/cmdline` as process-exporter matches it: arguments joined by one space.
pub fn cmdline(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    String::from_utf8_lossy(raw).replace('\0', " ")
}

/// A pid file: a positive decimal pid, surrounding whitespace ignored.
pub fn pid_file(text: &str) -> Option<u32> {
    text.trim().parse().ok().filter(|&p| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_table() {
        let full = "cpu  34654 0 10356 232789 604 0 129 71 0 0\n\
                    cpu0 16742 1 4700 117525 107 2 19 31 5 6\n\
                    cpu1 17912 0 5655 115263 497 0 110 40 0 0\n\
                    intr 4853271 0 9 0 0\n\
                    ctxt 9874563\n\
                    btime 1795321281\n\
                    processes 40210\n\
                    procs_running 2\n\
                    procs_blocked 1\n\
                    softirq 1 2 3\n";
        let p = stat(full);
        assert!(p.bad_lines.is_empty());
        assert_eq!(p.value.cpus.len(), 2);
        assert_eq!(
            p.value.cpus[0],
            CpuTicks { cpu: "0".into(), ticks: [16742, 1, 4700, 117525, 107, 2, 19, 31, 5, 6] }
        );
        assert_eq!(p.value.cpus[1].cpu, "1");
        assert_eq!(p.value.boot_time, Some(1795321281));
        assert_eq!(p.value.context_switches, Some(9874563));
        assert_eq!(p.value.forks, Some(40210));
        assert_eq!(p.value.interrupts, Some(4853271));
        assert_eq!(p.value.procs_running, Some(2));
        assert_eq!(p.value.procs_blocked, Some(1));

        // (input, cpus parsed, bad lines)
        let cases: &[(&str, usize, &[usize])] = &[
            ("", 0, &[]),
            ("cpu0 1 2 3 4\n", 1, &[]),                  // Linux 2.4: four fields
            ("cpu0 1 2 3\n", 0, &[1]),                   // too few
            ("cpu0 1 2 x 4 5\ncpu1 1 2 3 4\n", 1, &[1]), // garbled field
            ("cpu12 1 2 3 4 5 6 7 8 9 10 11\n", 1, &[]), // extra fields ignored
            ("btime\n", 0, &[1]),
            ("btime notanumber\ncpu0 1 2 3 4\n", 1, &[1]),
            ("cpufreq 1\n\n   \n", 0, &[]),
            ("\u{0}\u{1}garbage\n", 0, &[]),
        ];
        for (input, cpus, bad) in cases {
            let p = stat(input);
            assert_eq!(p.value.cpus.len(), *cpus, "{input:?}");
            assert_eq!(p.bad_lines, *bad, "{input:?}");
        }
        assert_eq!(stat("cpu3 1 2 3 4\n").value.cpus[0].ticks, [1, 2, 3, 4, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn meminfo_table() {
        let cases: &[(&str, &[(&str, f64)], &[usize])] = &[
            ("MemTotal:       24684092 kB\n", &[("MemTotal_bytes", 24684092.0 * 1024.0)], &[]),
            ("Active(anon):     123 kB\n", &[("Active_anon_bytes", 123.0 * 1024.0)], &[]),
            ("Inactive(file):     0 kB\n", &[("Inactive_file_bytes", 0.0)], &[]),
            ("HugePages_Total:       0\n", &[("HugePages_Total", 0.0)], &[]),
            ("HugePages_Free:       7\n", &[("HugePages_Free", 7.0)], &[]),
            ("Hugepagesize:       2048 kB\n", &[("Hugepagesize_bytes", 2048.0 * 1024.0)], &[]),
            ("DirectMap4k:      165696 kB\n", &[("DirectMap4k_bytes", 165696.0 * 1024.0)], &[]),
            ("Weird-Key.x:  1\n", &[("Weird_Key_x", 1.0)], &[]),
            ("\n\nMemFree: 1 kB\n", &[("MemFree_bytes", 1024.0)], &[]),
            ("MemTotal 5 kB\n", &[], &[1]),        // no colon
            ("MemTotal: lots kB\n", &[], &[1]),    // not a number
            ("MemTotal: 1 kB extra\n", &[], &[1]), // too many fields
            ("MemTotal:\nMemFree: 2 kB\n", &[("MemFree_bytes", 2048.0)], &[1]),
            (":  1\n", &[], &[1]),
        ];
        for (input, want, bad) in cases {
            let p = meminfo(input);
            let got: Vec<(&str, f64)> = p.value.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            assert_eq!(got, *want, "{input:?}");
            assert_eq!(p.bad_lines, *bad, "{input:?}");
        }
    }

    #[test]
    fn diskstats_table() {
        let line17 = " 254       0 vda 87373 17565 6035818 59890 33950 44096 11917352 41788 0 16696 102994 11582 88 1307856 1040 5778 276";
        let p = diskstats(line17);
        assert!(p.bad_lines.is_empty());
        assert_eq!(p.value[0].major, 254);
        assert_eq!(p.value[0].minor, 0);
        assert_eq!(p.value[0].device, "vda");
        assert_eq!(p.value[0].stats.len(), 17);
        assert_eq!(p.value[0].stats[2], 6035818);
        assert_eq!(p.value[0].stats[16], 276);

        let cases: &[(&str, usize, &[usize])] = &[
            ("", 0, &[]),
            ("   8 0 sda 1 2 3 4 5 6 7 8 9 10 11\n", 1, &[]), // 2.6: 11 stats
            ("   8 0 sda 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15\n", 1, &[]), // 4.18: 15
            ("   8 0 sda 1 2 3 4 5 6 7 8 9 10\n", 0, &[1]),   // too few
            ("   8 x sda 1 2 3 4 5 6 7 8 9 10 11\n", 0, &[1]), // bad minor
            ("   8 0 sda 1 2 3 4 5 6 -7 8 9 10 11\n", 0, &[1]), // negative
            ("8 0\n   8 1 sda1 1 2 3 4 5 6 7 8 9 10 11\n", 1, &[1]),
        ];
        for (input, n, bad) in cases {
            let p = diskstats(input);
            assert_eq!(p.value.len(), *n, "{input:?}");
            assert_eq!(p.bad_lines, *bad, "{input:?}");
        }
    }

    #[test]
    fn net_dev_table() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:  125381     954    0    0    0     0          0         0   125381     954    0    0    0     0       0          0\n  \
eth0: 261756128    9078    1    2    3     4          5         6   581067    5421    7    8    9     10       11          12\n";
        let p = net_dev(text);
        assert!(p.bad_lines.is_empty(), "{:?}", p.bad_lines);
        assert_eq!(p.value.len(), 2);
        assert_eq!(p.value[0].device, "lo");
        assert_eq!(p.value[0].receive[0], 125381);
        assert_eq!(p.value[1].device, "eth0");
        assert_eq!(p.value[1].receive, [261756128, 9078, 1, 2, 3, 4, 5, 6]);
        assert_eq!(p.value[1].transmit, [581067, 5421, 7, 8, 9, 10, 11, 12]);

        let cases: &[(&str, usize, &[usize])] = &[
            ("", 0, &[]),
            ("eth0:1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", 1, &[]), // no space after colon
            ("eth0: 1 2 3\n", 0, &[1]),
            ("eth0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", 0, &[1]), // no colon
            (": 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n", 0, &[1]),    // no name
            ("eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 x\n", 0, &[1]),
        ];
        for (input, n, bad) in cases {
            let p = net_dev(input);
            assert_eq!(p.value.len(), *n, "{input:?}");
            assert_eq!(p.bad_lines, *bad, "{input:?}");
        }
    }

    #[test]
    fn loadavg_table() {
        let cases: &[(&str, Option<[f64; 3]>)] = &[
            ("0.04 0.57 0.40 1/234 5678\n", Some([0.04, 0.57, 0.40])),
            ("1 2 3", Some([1.0, 2.0, 3.0])),
            ("1 2", None),
            ("", None),
            ("a b c 1/2 3", None),
            ("NaN 1 2 1/2 3", None),
        ];
        for (input, want) in cases {
            assert_eq!(loadavg(input), *want, "{input:?}");
        }
    }

    #[test]
    fn mounts_table() {
        let text = "/dev/vda / ext4 rw,relatime,discard 0 0\n\
                    tmpfs /mnt/with\\040space tmpfs ro,nosuid 0 0\n\
                    short line\n\
                    \n\
                    /dev/sdb1 /a\\134b\\011c xfs rw 0 0\n";
        let p = mounts(text);
        assert_eq!(p.bad_lines, vec![3]);
        assert_eq!(p.value.len(), 3);
        assert_eq!(p.value[0].mount_point, "/");
        assert_eq!(p.value[0].fstype, "ext4");
        assert!(!p.value[0].read_only());
        assert_eq!(p.value[1].mount_point, "/mnt/with space");
        assert!(p.value[1].read_only());
        assert_eq!(p.value[2].mount_point, "/a\\b\tc");
        assert!(!MountLine { options: "rw,errors=remount-ro".into(), ..MountLine::default() }.read_only());
    }

    #[test]
    fn pid_stat_table() {
        let line = "4242 (my (weird) proc) S 1 4242 4242 0 -1 4194560 1500 0 7 0 250 80 0 0 20 0 3 0 12345 104857600 2500 18446744073709551615";
        let s = pid_stat(line).unwrap();
        assert_eq!(s.comm, "my (weird) proc");
        assert_eq!((s.minflt, s.majflt, s.utime, s.stime), (1500, 7, 250, 80));
        assert_eq!((s.num_threads, s.starttime, s.vsize), (3, 12345, 104857600));
        for bad in [
            "",
            "4242 no parens S 1",
            "4242 (x) S 1 2 3",
            "4242 )x( S 1 4242 4242 0 -1 4194560 1500 0 7 0 250 80 0 0 20 0 3 0 12345 1",
        ] {
            assert_eq!(pid_stat(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn status_cmdline_pidfile_table() {
        assert_eq!(status_rss("Name:\tx\nVmSize:\t 100 kB\nVmRSS:\t    2500 kB\n"), Some(2500 * 1024));
        assert_eq!(status_rss("Name:\tkworker/0:1\nThreads:\t1\n"), Some(0));
        assert_eq!(status_rss("VmRSS:\tlots kB\n"), None);
        assert_eq!(status_rss("VmRSS:\t12 pages\n"), None);
        assert_eq!(cmdline(b"python3\0-m\0worker\0"), "python3 -m worker");
        assert_eq!(cmdline(b"nginx: master process"), "nginx: master process");
        assert_eq!(cmdline(b""), "");
        assert_eq!(pid_file("1234\n"), Some(1234));
        assert_eq!(pid_file("  77  "), Some(77));
        for bad in ["", "0", "-5", "12ab", "99999999999"] {
            assert_eq!(pid_file(bad), None, "{bad:?}");
        }
    }
}
