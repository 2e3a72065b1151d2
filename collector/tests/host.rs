//! The host source against this machine and a real `prometheus-node-exporter` 1.5: the
//! families, types and label names it emits, the values of key series, and its behaviour
//! with a broken `proc_root` and on shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_collector::pipeline::{ComponentStats, SourceContext, channel};
use warden_collector::signal::{MetricKind, MetricPoint};
use warden_collector::sources::host::{self, Config, Host, ProcessConfig, ProcessMatch};
use warden_testkit::{Child, TempDir, find_program, free_port, require, wait_for_port};

fn collect(config: &Config) -> (Vec<MetricPoint>, Arc<ComponentStats>) {
    let stats = ComponentStats::new("source", "host");
    let mut h = Host::new(config).expect("valid config");
    let points = h.collect(&stats);
    (points, stats)
}

/// All points of family `name`.
fn family<'a>(points: &'a [MetricPoint], name: &str) -> Vec<&'a MetricPoint> {
    points.iter().filter(|p| p.name == name).collect()
}

/// The single point of `name` whose labels include every pair in `labels`.
fn one(points: &[MetricPoint], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let hits: Vec<&MetricPoint> =
        points.iter().filter(|p| p.name == name && labels.iter().all(|(k, v)| p.label(k) == Some(v))).collect();
    assert!(hits.len() <= 1, "{name}{labels:?} matches {} points", hits.len());
    hits.first().map(|p| p.value)
}

fn label_names(p: &MetricPoint) -> BTreeSet<String> {
    p.labels.iter().map(|l| l.name.clone()).collect()
}

/// Asserts a family exists, every point has `kind` and exactly `labels` as label names.
fn check_family(points: &[MetricPoint], name: &str, kind: MetricKind, labels: &[&str]) {
    let fam = family(points, name);
    assert!(!fam.is_empty(), "family {name} missing");
    let want: BTreeSet<String> = labels.iter().map(|s| s.to_string()).collect();
    for p in fam {
        assert_eq!(p.kind, kind, "{name} kind");
        assert_eq!(label_names(p), want, "{name} label names");
        assert!(p.value.is_finite() && p.value >= 0.0, "{name} value {}", p.value);
    }
}

fn self_comm() -> String {
    std::fs::read_to_string("/proc/self/comm").unwrap().trim_end().to_owned()
}

#[test]
fn emits_the_node_exporter_families_with_their_types_and_labels() {
    let config = Config {
        processes: vec![ProcessConfig { name: "me".into(), matcher: ProcessMatch::Comm(self_comm()) }],
        ..Config::default()
    };
    let (points, stats) = collect(&config);
    assert_eq!(stats.errors.get(), 0, "collection errors on a healthy host");
    use MetricKind::{Counter, Gauge};

    check_family(&points, "node_cpu_seconds_total", Counter, &["cpu", "mode"]);
    check_family(&points, "node_cpu_guest_seconds_total", Counter, &["cpu", "mode"]);
    let modes: BTreeSet<&str> =
        family(&points, "node_cpu_seconds_total").iter().filter_map(|p| p.label("mode")).collect();
    let want_modes: BTreeSet<&str> =
        ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"].into_iter().collect();
    assert_eq!(modes, want_modes);
    let cpus: BTreeSet<&str> =
        family(&points, "node_cpu_seconds_total").iter().filter_map(|p| p.label("cpu")).collect();
    assert!(cpus.contains("0"));

    for f in ["MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapTotal", "SwapFree", "Active_anon"] {
        check_family(&points, &format!("node_memory_{f}_bytes"), Gauge, &[]);
    }
    check_family(&points, "node_memory_HugePages_Total", Gauge, &[]);

    for f in ["size_bytes", "free_bytes", "avail_bytes", "files", "files_free", "readonly", "device_error"] {
        check_family(&points, &format!("node_filesystem_{f}"), Gauge, &["device", "fstype", "mountpoint"]);
    }
    assert!(one(&points, "node_filesystem_size_bytes", &[("mountpoint", "/")]).is_some_and(|v| v > 0.0));

    for f in [
        "read_bytes_total",
        "written_bytes_total",
        "reads_completed_total",
        "writes_completed_total",
        "io_time_seconds_total",
        "read_time_seconds_total",
        "io_time_weighted_seconds_total",
    ] {
        if family(&points, "node_disk_reads_completed_total").is_empty() {
            break; // a container with no block devices in diskstats
        }
        check_family(&points, &format!("node_disk_{f}"), Counter, &["device"]);
    }

    for dir in ["receive", "transmit"] {
        for f in ["bytes", "packets", "errs", "drop"] {
            check_family(&points, &format!("node_network_{dir}_{f}_total"), Counter, &["device"]);
        }
    }
    assert!(one(&points, "node_network_receive_bytes_total", &[("device", "lo")]).is_some());
    check_family(&points, "node_network_up", Gauge, &["device"]);
    check_family(&points, "node_network_mtu_bytes", Gauge, &["device"]);

    for f in ["node_load1", "node_load5", "node_load15", "node_boot_time_seconds", "node_time_seconds"] {
        check_family(&points, f, Gauge, &[]);
    }
    for f in ["node_context_switches_total", "node_forks_total", "node_intr_total"] {
        check_family(&points, f, Counter, &[]);
    }
    check_family(
        &points,
        "node_uname_info",
        Gauge,
        &["domainname", "machine", "nodename", "release", "sysname", "version"],
    );
    assert_eq!(one(&points, "node_uname_info", &[("sysname", "Linux")]), Some(1.0));

    // Uptime as documented: node_time_seconds - node_boot_time_seconds.
    let uptime = one(&points, "node_time_seconds", &[]).unwrap() - one(&points, "node_boot_time_seconds", &[]).unwrap();
    let proc_uptime: f64 =
        std::fs::read_to_string("/proc/uptime").unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!((uptime - proc_uptime).abs() < 2.0, "uptime {uptime} vs /proc/uptime {proc_uptime}");

    // The watched process is this test binary.
    check_family(&points, "namedprocess_namegroup_num_procs", Gauge, &["groupname"]);
    check_family(&points, "namedprocess_namegroup_cpu_seconds_total", Counter, &["groupname", "mode"]);
    check_family(&points, "namedprocess_namegroup_memory_bytes", Gauge, &["groupname", "memtype"]);
    check_family(&points, "namedprocess_namegroup_open_filedesc", Gauge, &["groupname"]);
    assert!(one(&points, "namedprocess_namegroup_num_procs", &[("groupname", "me")]).unwrap() >= 1.0);

    // One timestamp per collection.
    let ts: BTreeSet<i64> = points.iter().map(|p| p.timestamp_ms).collect();
    assert_eq!(ts.len(), 1);
    // No duplicate series.
    let mut keys = BTreeSet::new();
    for p in &points {
        assert!(keys.insert((p.name.clone(), p.labels.clone())), "duplicate series {} {:?}", p.name, p.labels);
    }
}

#[test]
fn memory_cpu_load_and_boot_time_agree_with_sysinfo() {
    let config = Config { collectors: vec!["cpu".into(), "stat".into(), "meminfo".into()], ..Config::default() };
    let (points, _) = collect(&config);
    let mut sys = sysinfo::System::new().expect("sysinfo supports this OS");
    sys.refresh_memory();
    assert_eq!(one(&points, "node_memory_MemTotal_bytes", &[]), Some(sys.total_memory() as f64));
    assert_eq!(one(&points, "node_memory_SwapTotal_bytes", &[]), Some(sys.total_swap() as f64));
    let boot = one(&points, "node_boot_time_seconds", &[]).unwrap();
    assert!((boot - sysinfo::System::boot_time().unwrap() as f64).abs() <= 1.0, "boot {boot}");
    sys.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
    let cpus: BTreeSet<&str> =
        family(&points, "node_cpu_seconds_total").iter().filter_map(|p| p.label("cpu")).collect();
    assert_eq!(cpus.len(), sys.cpus().len());
}

/// A parsed Prometheus text exposition: family → (TYPE, series labels → value).
#[derive(Debug, Default)]
struct Exposition {
    types: BTreeMap<String, String>,
    samples: BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut e = Exposition::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut f = rest.split_whitespace();
                e.types.insert(f.next().unwrap().to_owned(), f.next().unwrap().to_owned());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (name, labels, rest) = match line.find('{') {
                Some(open) => {
                    let (labels, end) = parse_labels(&line[open + 1..]);
                    (&line[..open], labels, &line[open + 1 + end..])
                }
                None => {
                    let sp = line.find(' ').unwrap();
                    (&line[..sp], BTreeMap::new(), &line[sp..])
                }
            };
            let value: f64 = rest.split_whitespace().next().unwrap().parse().unwrap();
            e.samples.entry(name.to_owned()).or_default().push((labels, value));
        }
        e
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .get(name)?
            .iter()
            .find(|(l, _)| labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, v)| *v)
    }

    fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.samples.get(name).into_iter().flatten().filter_map(|(l, _)| l.get(label).cloned()).collect()
    }
}

/// Parses `a="x",b="y\"z"}` and returns the labels and the offset just past `}`.
fn parse_labels(s: &str) -> (BTreeMap<String, String>, usize) {
    let b = s.as_bytes();
    let mut out = BTreeMap::new();
    let mut i = 0;
    loop {
        while b[i] == b',' || b[i] == b' ' {
            i += 1;
        }
        if b[i] == b'}' {
            return (out, i + 1);
        }
        let eq = i + s[i..].find('=').unwrap();
        let name = s[i..eq].to_owned();
        i = eq + 2; // past `="`
        let mut value = String::new();
        let mut chars = s[i..].char_indices();
        loop {
            let (off, c) = chars.next().unwrap();
            match c {
                '\\' => {
                    let (_, n) = chars.next().unwrap();
                    value.push(if n == 'n' { '\n' } else { n });
                }
                '"' => {
                    i += off + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(name, value);
    }
}

fn http_get_metrics(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let (head, body) = body.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

fn kind_name(k: MetricKind) -> &'static str {
    k.as_str()
}

#[test]
fn agrees_with_a_real_node_exporter() {
    let Some(program) = require(
        "node_exporter comparison",
        find_program("WARDEN_NODE_EXPORTER", &["prometheus-node-exporter", "/usr/bin/prometheus-node-exporter"]),
        "prometheus-node-exporter not installed (apt install prometheus-node-exporter)",
    ) else {
        return;
    };
    let config = Config::default();
    let port = free_port();
    // Pass our defaults explicitly: distributions patch node_exporter's (Debian excludes
    // `lo` and `/run|/mnt|/media`), and the comparison is of the same selection.
    let args = [
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--no-collector.systemd".to_owned(),
        format!("--collector.filesystem.mount-points-exclude={}", config.filesystem.mount_points_exclude),
        format!("--collector.filesystem.fs-types-exclude={}", config.filesystem.fs_types_exclude),
        format!("--collector.diskstats.device-exclude={}", config.diskstats.device_exclude),
        format!("--collector.netdev.device-exclude={}", config.netdev.device_exclude),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _ne = Child::spawn(&program, &args).expect("spawn node_exporter");
    assert!(wait_for_port(port, Duration::from_secs(15)), "node_exporter did not listen on {port}");

    // node_exporter before and after ours: a counter of ours must lie between the two.
    let before = Exposition::parse(&http_get_metrics(port));
    let (ours, stats) = collect(&config);
    let after = Exposition::parse(&http_get_metrics(port));
    assert_eq!(stats.errors.get(), 0);

    // Every node_* family we emit: same TYPE and same label-name set in node_exporter.
    let mut ours_by_family: BTreeMap<&str, (MetricKind, BTreeSet<BTreeSet<String>>)> = BTreeMap::new();
    for p in ours.iter().filter(|p| p.name.starts_with("node_")) {
        let e = ours_by_family.entry(p.name.as_str()).or_insert((p.kind, BTreeSet::new()));
        assert_eq!(e.0, p.kind, "{} mixes kinds", p.name);
        e.1.insert(label_names(p));
    }
    assert!(ours_by_family.len() > 60, "only {} node_* families", ours_by_family.len());
    for (name, (kind, label_sets)) in &ours_by_family {
        let ne_type = after.types.get(*name).unwrap_or_else(|| panic!("node_exporter has no family {name}"));
        assert_eq!(ne_type, kind_name(*kind), "TYPE of {name}");
        let ne_sets: BTreeSet<BTreeSet<String>> =
            after.samples[*name].iter().map(|(l, _)| l.keys().cloned().collect()).collect();
        assert_eq!(label_sets, &ne_sets, "label names of {name}");
    }

    // Same label values: cpus, interfaces, block devices, mount points.
    let ours_values = |name: &str, label: &str| -> BTreeSet<String> {
        family(&ours, name).iter().filter_map(|p| p.label(label).map(str::to_owned)).collect()
    };
    for (name, label) in [
        ("node_cpu_seconds_total", "cpu"),
        ("node_network_receive_bytes_total", "device"),
        ("node_network_up", "device"),
        ("node_disk_reads_completed_total", "device"),
        ("node_filesystem_readonly", "mountpoint"),
        ("node_filesystem_readonly", "device"),
        ("node_filesystem_readonly", "fstype"),
    ] {
        assert_eq!(ours_values(name, label), after.label_values(name, label), "{label} values of {name}");
    }

    // Key series.
    let bracket = |name: &str, labels: &[(&str, &str)], slack: f64| {
        let v = one(&ours, name, labels).unwrap_or_else(|| panic!("we have no {name}{labels:?}"));
        let lo = before.value(name, labels).unwrap_or_else(|| panic!("node_exporter has no {name}{labels:?}"));
        let hi = after.value(name, labels).unwrap();
        assert!(lo - slack <= v && v <= hi + slack, "{name}{labels:?}: ours {v}, node_exporter {lo}..{hi}");
    };
    bracket("node_cpu_seconds_total", &[("cpu", "0"), ("mode", "idle")], 0.011);
    bracket("node_cpu_seconds_total", &[("cpu", "0"), ("mode", "user")], 0.011);
    bracket("node_network_receive_bytes_total", &[("device", "lo")], 0.0);
    bracket("node_network_transmit_packets_total", &[("device", "lo")], 0.0);
    bracket("node_context_switches_total", &[], 0.0);
    assert_eq!(one(&ours, "node_memory_MemTotal_bytes", &[]), after.value("node_memory_MemTotal_bytes", &[]));
    assert_eq!(one(&ours, "node_memory_SwapTotal_bytes", &[]), after.value("node_memory_SwapTotal_bytes", &[]));
    assert_eq!(one(&ours, "node_boot_time_seconds", &[]), after.value("node_boot_time_seconds", &[]));
    let size = one(&ours, "node_filesystem_size_bytes", &[("mountpoint", "/")]).unwrap();
    let ne_size = after.value("node_filesystem_size_bytes", &[("mountpoint", "/")]).unwrap();
    assert!((size - ne_size).abs() <= ne_size * 1e-4, "size of / {size} vs {ne_size}");
    let avail = one(&ours, "node_filesystem_avail_bytes", &[("mountpoint", "/")]).unwrap();
    let ne_avail = after.value("node_filesystem_avail_bytes", &[("mountpoint", "/")]).unwrap();
    assert!((avail - ne_avail).abs() <= 1e9_f64.max(ne_avail * 0.01), "avail of / {avail} vs {ne_avail}");
    let free = one(&ours, "node_filesystem_free_bytes", &[("mountpoint", "/")]).unwrap();
    let ne_free = after.value("node_filesystem_free_bytes", &[("mountpoint", "/")]).unwrap();
    assert!((free - ne_free).abs() <= 1e9_f64.max(ne_free * 0.01), "free of / {free} vs {ne_free}");
    let files = one(&ours, "node_filesystem_files", &[("mountpoint", "/")]).unwrap();
    assert_eq!(Some(files), after.value("node_filesystem_files", &[("mountpoint", "/")]), "inodes of /");
    let load = one(&ours, "node_load1", &[]).unwrap();
    let (l0, l1) = (before.value("node_load1", &[]).unwrap(), after.value("node_load1", &[]).unwrap());
    assert!(l0.min(l1) - 1.0 <= load && load <= l0.max(l1) + 1.0, "load1 {load} vs {l0}..{l1}");
    let time = one(&ours, "node_time_seconds", &[]).unwrap();
    assert!((time - after.value("node_time_seconds", &[]).unwrap()).abs() < 30.0);
    for (name, labels) in [("node_uname_info", "nodename"), ("node_uname_info", "release")] {
        assert_eq!(ours_values(name, labels), after.label_values(name, labels));
    }
}

/// Writes `rel` under `root`, creating parents.
fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn fake_pid_stat(comm: &str, utime: u64, stime: u64) -> String {
    format!("4242 ({comm}) S 1 4242 4242 0 -1 4194560 1500 0 7 0 {utime} {stime} 0 0 20 0 3 0 5000 104857600 2500 0")
}

#[test]
fn a_broken_proc_root_counts_errors_and_the_other_collectors_still_run() {
    let dir = TempDir::new("host_fake_proc");
    let proc_root = dir.path().join("proc");
    let sys_root = dir.path().join("sys");
    write(
        &proc_root,
        "stat",
        "cpu  1 2 3 4\ncpu0 100 0 50 1000 5 0 1 0 0 0\ncpu1 1 2 garbled\nbtime 1700000000\nctxt 99\n",
    );
    write(&proc_root, "meminfo", "MemTotal:  1000 kB\nMemFree:   500 kB\nActive(anon):  1 kB\nthis line is garbled\n");
    // no loadavg at all
    write(&proc_root, "diskstats", "\u{0}\u{1}binary junk\n1 2\n");
    write(
        &proc_root,
        "net/dev",
        "Inter-|   Receive |  Transmit\n face |bytes packets|bytes\n    lo: 10 1 0 0 0 0 0 0 10 1 0 0 0 0 0 0\n  eth0: 20 2 0 0 0 0 0 0 30 3 0 0 0 0 0 0\n",
    );
    // no 1/mounts and no mounts; no sys/kernel/*
    write(&sys_root, "class/net/eth0/operstate", "up\n");
    write(&sys_root, "class/net/eth0/mtu", "1500\n");
    write(&sys_root, "class/net/lo/operstate", "unknown\n");
    write(&sys_root, "class/net/lo/mtu", "lots\n");
    write(&proc_root, "4242/stat", &fake_pid_stat("fakeproc", 250, 80));
    write(&proc_root, "4242/status", "Name:\tfakeproc\nVmRSS:\t2048 kB\n");
    for fd in ["0", "1", "2"] {
        write(&proc_root, &format!("4242/fd/{fd}"), "");
    }
    write(&proc_root, "4343/stat", "garbage without parens");
    write(dir.path(), "garbage.pid", "not a pid\n");

    let config = Config {
        proc_root: proc_root.clone(),
        sys_root,
        processes: vec![
            ProcessConfig { name: "fake".into(), matcher: ProcessMatch::Comm("fakeproc".into()) },
            ProcessConfig { name: "absent".into(), matcher: ProcessMatch::PidFile(dir.path().join("missing.pid")) },
            ProcessConfig { name: "garbled".into(), matcher: ProcessMatch::PidFile(dir.path().join("garbage.pid")) },
        ],
        ..Config::default()
    };
    let stats = ComponentStats::new("source", "host");
    let mut h = Host::new(&config).unwrap();
    let points = h.collect(&stats);

    // stat (cpu1 line), meminfo (one line), loadavg (missing), diskstats (junk), mounts
    // (missing), uname (missing), netclass (lo mtu), pid file (garbled).
    assert_eq!(stats.errors.get(), 8, "errors");
    assert_eq!(family(&points, "node_cpu_seconds_total").len(), 8, "cpu0's eight modes, not cpu1's");
    assert_eq!(one(&points, "node_cpu_seconds_total", &[("cpu", "0"), ("mode", "user")]), Some(1.0));
    assert_eq!(one(&points, "node_cpu_seconds_total", &[("cpu", "0"), ("mode", "idle")]), Some(10.0));
    assert_eq!(one(&points, "node_boot_time_seconds", &[]), Some(1_700_000_000.0));
    assert_eq!(one(&points, "node_context_switches_total", &[]), Some(99.0));
    assert_eq!(one(&points, "node_memory_MemTotal_bytes", &[]), Some(1000.0 * 1024.0));
    assert_eq!(one(&points, "node_memory_Active_anon_bytes", &[]), Some(1024.0));
    assert!(family(&points, "node_load1").is_empty());
    assert!(points.iter().all(|p| !p.name.starts_with("node_disk_") && !p.name.starts_with("node_filesystem_")));
    assert!(family(&points, "node_uname_info").is_empty());
    assert_eq!(one(&points, "node_network_receive_bytes_total", &[("device", "eth0")]), Some(20.0));
    assert_eq!(one(&points, "node_network_transmit_packets_total", &[("device", "eth0")]), Some(3.0));
    assert_eq!(one(&points, "node_network_up", &[("device", "eth0")]), Some(1.0));
    assert_eq!(one(&points, "node_network_up", &[("device", "lo")]), Some(0.0));
    assert_eq!(one(&points, "node_network_mtu_bytes", &[("device", "lo")]), None);
    assert!(one(&points, "node_time_seconds", &[]).is_some());

    let g = |name: &str, group: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![("groupname", group)];
        labels.extend_from_slice(extra);
        one(&points, name, &labels)
    };
    assert_eq!(g("namedprocess_namegroup_num_procs", "fake", &[]), Some(1.0));
    assert_eq!(g("namedprocess_namegroup_num_threads", "fake", &[]), Some(3.0));
    assert_eq!(g("namedprocess_namegroup_cpu_seconds_total", "fake", &[("mode", "user")]), Some(2.5));
    assert_eq!(g("namedprocess_namegroup_cpu_seconds_total", "fake", &[("mode", "system")]), Some(0.8));
    assert_eq!(g("namedprocess_namegroup_memory_bytes", "fake", &[("memtype", "resident")]), Some(2048.0 * 1024.0));
    assert_eq!(g("namedprocess_namegroup_memory_bytes", "fake", &[("memtype", "virtual")]), Some(104857600.0));
    assert_eq!(g("namedprocess_namegroup_open_filedesc", "fake", &[]), Some(3.0));
    assert_eq!(g("namedprocess_namegroup_minor_page_faults_total", "fake", &[]), Some(1500.0));
    assert_eq!(g("namedprocess_namegroup_oldest_start_time_seconds", "fake", &[]), Some(1_700_000_050.0));
    assert_eq!(g("namedprocess_namegroup_num_procs", "absent", &[]), Some(0.0));
    assert_eq!(g("namedprocess_namegroup_num_procs", "garbled", &[]), Some(0.0));

    // The process runs on, then exits: its CPU stays counted.
    write(&proc_root, "4242/stat", &fake_pid_stat("fakeproc", 400, 90));
    let points2 = h.collect(&stats);
    assert_eq!(stats.errors.get(), 16, "errors are counted on every collection");
    assert_eq!(
        one(&points2, "namedprocess_namegroup_cpu_seconds_total", &[("groupname", "fake"), ("mode", "user")]),
        Some(4.0)
    );
    std::fs::remove_dir_all(proc_root.join("4242")).unwrap();
    let points3 = h.collect(&stats);
    assert_eq!(one(&points3, "namedprocess_namegroup_num_procs", &[("groupname", "fake")]), Some(0.0));
    assert_eq!(
        one(&points3, "namedprocess_namegroup_cpu_seconds_total", &[("groupname", "fake"), ("mode", "user")]),
        Some(4.0)
    );
    assert_eq!(
        one(&points3, "namedprocess_namegroup_memory_bytes", &[("groupname", "fake"), ("memtype", "resident")]),
        Some(0.0)
    );

    // A proc_root that does not exist at all: every file collector errs, nothing panics.
    let empty =
        Config { proc_root: dir.path().join("nowhere"), sys_root: dir.path().join("nowhere"), ..Config::default() };
    let (points, stats) = collect(&empty);
    assert!(stats.errors.get() >= 8, "errors {}", stats.errors.get());
    assert_eq!(points.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), vec!["node_time_seconds"]);
}

#[test]
fn watches_this_process_by_pid_file_comm_exe_and_cmdline() {
    let dir = TempDir::new("host_self_pid");
    let pid_file = dir.path().join("me.pid");
    std::fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();
    let exe = std::env::current_exe().unwrap();
    let exe_name = exe.file_name().unwrap().to_str().unwrap().to_owned();
    let cases = [
        ProcessMatch::PidFile(pid_file),
        ProcessMatch::Comm(self_comm()),
        ProcessMatch::Exe(exe.to_str().unwrap().to_owned()),
        ProcessMatch::Exe(exe_name.clone()),
        ProcessMatch::Cmdline(format!("^{}( |$)", regex::escape(exe.to_str().unwrap()))),
    ];
    // Busy the CPU a little so the counters move.
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < Duration::from_millis(150) {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
    }
    assert_ne!(x, 42);
    for m in cases {
        let config = Config {
            collectors: vec!["processes".into()],
            processes: vec![ProcessConfig { name: "me".into(), matcher: m.clone() }],
            ..Config::default()
        };
        let (points, stats) = collect(&config);
        assert_eq!(stats.errors.get(), 0, "{m:?}");
        let g = |name: &str, extra: &[(&str, &str)]| {
            let mut labels = vec![("groupname", "me")];
            labels.extend_from_slice(extra);
            one(&points, name, &labels).unwrap_or_else(|| panic!("{name} {m:?}"))
        };
        assert!(g("namedprocess_namegroup_num_procs", &[]) >= 1.0, "{m:?}");
        assert!(g("namedprocess_namegroup_memory_bytes", &[("memtype", "resident")]) > 1e6, "{m:?}");
        assert!(g("namedprocess_namegroup_memory_bytes", &[("memtype", "virtual")]) > 1e6, "{m:?}");
        assert!(g("namedprocess_namegroup_open_filedesc", &[]) >= 3.0, "{m:?}");
        assert!(g("namedprocess_namegroup_num_threads", &[]) >= 1.0, "{m:?}");
        let cpu = g("namedprocess_namegroup_cpu_seconds_total", &[("mode", "user")])
            + g("namedprocess_namegroup_cpu_seconds_total", &[("mode", "system")]);
        assert!(cpu >= 0.1, "cpu {cpu} {m:?}");
        let started = g("namedprocess_namegroup_oldest_start_time_seconds", &[]);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(started <= now + 1.0 && started > now - 3600.0, "start {started} now {now} {m:?}");
    }
}

#[tokio::test]
async fn runs_every_interval_and_stops_on_shutdown() {
    let (tx, mut rx) = channel(4);
    let ctx = SourceContext::new("host", tx, std::env::temp_dir());
    let stats = ctx.stats.clone();
    let shutdown = ctx.shutdown.clone();
    let config = Config { interval: Duration::from_millis(100), ..Config::default() };
    let task = tokio::spawn(config.run(ctx));
    let t0 = Instant::now();
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(90), "second batch came after one interval");
    assert!(!first.metrics.is_empty() && !second.metrics.is_empty());
    assert!(second.metrics[0].timestamp_ms > first.metrics[0].timestamp_ms);
    assert!(stats.emitted.get() >= (first.metrics.len() + second.metrics.len()) as u64);
    shutdown.cancel();
    let res = tokio::time::timeout(Duration::from_secs(5), task).await.expect("stops within 5s").unwrap();
    assert!(res.is_ok());
}

#[tokio::test]
async fn stops_on_shutdown_while_the_consumer_is_stuck() {
    let (tx, rx) = channel(1);
    let ctx = SourceContext::new("host", tx, std::env::temp_dir());
    let shutdown = ctx.shutdown.clone();
    let config = Config { interval: Duration::from_millis(100), ..Config::default() };
    let task = tokio::spawn(config.run(ctx));
    // Nobody reads: the first batch fills the channel, the second send waits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.len(), 1);
    shutdown.cancel();
    let res = tokio::time::timeout(Duration::from_secs(5), task).await.expect("stops within 5s").unwrap();
    assert!(res.is_ok());

    // And a consumer that went away ends the source too.
    let (tx, rx) = channel(1);
    drop(rx);
    let ctx = SourceContext::new("host", tx, std::env::temp_dir());
    let config = Config { interval: Duration::from_millis(100), ..Config::default() };
    let res = tokio::time::timeout(Duration::from_secs(10), config.run(ctx)).await.expect("returns when closed");
    assert!(res.is_ok());
}

#[tokio::test]
async fn an_invalid_config_does_not_start() {
    let (tx, _rx) = channel(1);
    let ctx = SourceContext::new("host", tx, std::env::temp_dir());
    let config = Config { collectors: vec!["gpu".into()], ..Config::default() };
    let err = config.run(ctx).await.unwrap_err();
    assert!(matches!(&err, host::Error::Config(e) if e[0].starts_with("collectors[0]")), "{err}");
}
