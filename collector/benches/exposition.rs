//! Exposition parsing throughput in samples/s (`Throughput::Elements`): a generated
//! ~50k-sample exposition shaped like a busy service (labelled counters, histograms,
//! summaries, gauges, untyped samples), the same in OpenMetrics, and a node_exporter
//! excerpt; plus the 0.0.4 writer. Target: ≥ 2 M samples/s per core for parsing.
//!
//! `cargo bench -p warden-collector --bench exposition -- --warm-up-time 1 --measurement-time 3`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::fmt::Write as _;
use std::hint::black_box;
use warden_collector::exposition::{Format, Parser, encode_text, parse};

/// A realistic large exposition (~50k samples) in text 0.0.4, or OpenMetrics (counter
/// families without `_total` in the TYPE line, float-second timestamps on some samples,
/// exemplars on some buckets, `# EOF`).
fn large_exposition(om: bool) -> String {
    let mut s = String::with_capacity(4 << 20);
    let methods = ["GET", "POST", "PUT", "DELETE"];
    let statuses = ["200", "201", "400", "404", "500"];
    // 20,000 labelled counter samples.
    let (counter_type, counter_name) =
        if om { ("http_requests", "http_requests_total") } else { ("http_requests_total", "http_requests_total") };
    let _ =
        writeln!(s, "# HELP {counter_type} HTTP requests by method, route and status.\n# TYPE {counter_type} counter");
    for route in 0..1000 {
        for status in &statuses[..4] {
            let method = methods[route % 4];
            let _ = writeln!(
                s,
                "{counter_name}{{method=\"{method}\",route=\"/v1/resource_{route}/{{id}}\",status=\"{status}\"}} {}",
                route * 37 + 11
            );
        }
        let _ = writeln!(
            s,
            "{counter_name}{{method=\"GET\",route=\"/v1/resource_{route}/{{id}}\",status=\"{}\"}} {}",
            statuses[4],
            route % 7
        );
    }
    // 1,000 histogram series × 14 samples = 14,000.
    let buckets = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];
    let _ = writeln!(s, "# HELP request_duration_seconds Request latency.\n# TYPE request_duration_seconds histogram");
    for route in 0..1000 {
        let labels = format!("method=\"{}\",route=\"/v1/resource_{route}/{{id}}\"", methods[route % 4]);
        for (i, le) in buckets.iter().enumerate() {
            let exemplar = if om && i == 3 {
                " # {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"} 0.043 1700000000.123"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}{exemplar}",
                (i + 1) * 100 + route
            );
        }
        let _ = writeln!(s, "request_duration_seconds_sum{{{labels}}} {}.{}", route * 3, route % 1000);
        let _ = writeln!(s, "request_duration_seconds_count{{{labels}}} {}", 1200 + route);
    }
    // 500 summaries × 5 = 2,500.
    let _ = writeln!(s, "# HELP db_query_seconds Query latency.\n# TYPE db_query_seconds summary");
    for q in 0..500 {
        for quantile in ["0.5", "0.9", "0.99"] {
            let _ = writeln!(s, "db_query_seconds{{query=\"query_{q}\",quantile=\"{quantile}\"}} 0.00{}", q % 97 + 1);
        }
        let _ = writeln!(s, "db_query_seconds_sum{{query=\"query_{q}\"}} {}.5", q);
        let _ = writeln!(s, "db_query_seconds_count{{query=\"query_{q}\"}} {}", q * 13);
    }
    // 10,000 gauges with two labels, some with timestamps.
    let _ = writeln!(s, "# HELP queue_depth Items waiting.\n# TYPE queue_depth gauge");
    for i in 0..10_000 {
        let ts = match (om, i % 10) {
            (true, 0) => " 1700000000.250".to_owned(),
            (false, 0) => " 1700000000250".to_owned(),
            _ => String::new(),
        };
        let _ = writeln!(s, "queue_depth{{queue=\"q{}\",shard=\"{}\"}} {}{ts}", i / 16, i % 16, (i as f64) * 1.25e3);
    }
    // 3,500 untyped samples without metadata (OpenMetrics requires a TYPE for them to be
    // "unknown", and accepts none too).
    for i in 0..3_500 {
        let _ = writeln!(s, "legacy_metric_{}{{instance_id=\"i-{i:08x}\"}} {}", i % 50, 1.0 / (i as f64 + 1.0));
    }
    if om {
        s.push_str("# EOF\n");
    }
    s
}

/// A node_exporter-like exposition: the families of node_exporter 1.x on a 16-core host
/// with a few disks, filesystems and interfaces (about 1,900 samples).
fn node_exporter_like() -> String {
    let mut s = String::new();
    let fam = |s: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    fam(&mut s, "go_gc_duration_seconds", "summary", "A summary of the pause duration of garbage collection cycles.");
    for q in ["0", "0.25", "0.5", "0.75", "1"] {
        let _ = writeln!(s, "go_gc_duration_seconds{{quantile=\"{q}\"}} 4.2e-05");
    }
    let _ = writeln!(s, "go_gc_duration_seconds_sum 0.0127\ngo_gc_duration_seconds_count 211");
    fam(&mut s, "node_cpu_seconds_total", "counter", "Seconds the CPUs spent in each mode.");
    for cpu in 0..16 {
        for mode in ["idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"] {
            let _ = writeln!(s, "node_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"{mode}\"}} {}.{}", cpu * 1000 + 7, cpu);
        }
    }
    for (name, kind) in [
        ("node_disk_read_bytes_total", "counter"),
        ("node_disk_written_bytes_total", "counter"),
        ("node_disk_io_time_seconds_total", "counter"),
        ("node_disk_reads_completed_total", "counter"),
        ("node_disk_writes_completed_total", "counter"),
        ("node_disk_io_now", "gauge"),
    ] {
        fam(&mut s, name, kind, "Disk statistic.");
        for dev in ["nvme0n1", "nvme1n1", "sda", "sdb", "dm-0", "dm-1"] {
            let _ = writeln!(s, "{name}{{device=\"{dev}\"}} 9.359442944e+09");
        }
    }
    for name in [
        "node_filesystem_avail_bytes",
        "node_filesystem_free_bytes",
        "node_filesystem_size_bytes",
        "node_filesystem_files",
    ] {
        fam(&mut s, name, "gauge", "Filesystem statistic.");
        for (dev, fs, mp) in [
            ("/dev/nvme0n1p2", "ext4", "/"),
            ("tmpfs", "tmpfs", "/run"),
            ("/dev/sda1", "xfs", "/var/lib/data"),
            ("/dev/nvme0n1p1", "vfat", "/boot/efi"),
        ] {
            let _ = writeln!(s, "{name}{{device=\"{dev}\",fstype=\"{fs}\",mountpoint=\"{mp}\"}} 7.7299183616e+10");
        }
    }
    for i in 0..54 {
        let name = format!("node_memory_Field{i}_bytes");
        fam(&mut s, &name, "gauge", "Memory information field.");
        let _ = writeln!(s, "{name} 2.426079232e+10");
    }
    for i in 0..40 {
        let name = format!("node_netstat_Stat{i}");
        fam(&mut s, &name, "untyped", "Statistic.");
        let _ = writeln!(s, "{name} {}", i * 3);
    }
    for i in 0..36 {
        let name = format!("node_network_stat{i}_total");
        fam(&mut s, &name, "counter", "Network device statistic.");
        for dev in ["eth0", "eth1", "lo", "docker0", "veth1a2b3c", "cni0", "flannel.1", "wg0"] {
            let _ = writeln!(s, "{name}{{device=\"{dev}\"}} 2.81592974e+08");
        }
    }
    fam(&mut s, "node_scrape_collector_success", "gauge", "node_exporter: Whether a collector succeeded.");
    for c in 0..45 {
        let _ = writeln!(s, "node_scrape_collector_success{{collector=\"collector{c}\"}} 1");
    }
    for i in 0..60 {
        let name = format!("node_misc_{i}");
        fam(&mut s, &name, "gauge", "Miscellaneous.");
        let _ = writeln!(s, "{name} 1.795321281e+09");
    }
    fam(&mut s, "node_uname_info", "gauge", "Labeled system information as provided by the uname system call.");
    let _ = writeln!(
        s,
        "node_uname_info{{domainname=\"(none)\",machine=\"x86_64\",nodename=\"node-a\",release=\"6.1.0-18-amd64\",sysname=\"Linux\",version=\"#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)\"}} 1"
    );
    s
}

fn count_samples(text: &str) -> usize {
    text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count()
}

fn bench_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("exposition_parse");
    let inputs = [
        ("text_0.0.4_50k", large_exposition(false), Format::PrometheusText),
        ("openmetrics_50k", large_exposition(true), Format::OpenMetrics),
        ("node_exporter_like", node_exporter_like(), Format::PrometheusText),
    ];
    for (name, text, format) in &inputs {
        let samples = count_samples(text);
        assert_eq!(parse(text.as_bytes(), *format, 0).expect("bench input parses").len(), samples);
        group.throughput(Throughput::Elements(samples as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), text, |b, text| {
            let mut parser = Parser::new(*format);
            let mut out = Vec::with_capacity(samples);
            b.iter(|| {
                out.clear();
                parser.parse_into(black_box(text.as_bytes()), 1_700_000_000_000, &mut out).unwrap();
                black_box(out.len())
            });
        });
    }
    group.finish();

    let points = parse(large_exposition(false).as_bytes(), Format::PrometheusText, 1_700_000_000_000).unwrap();
    let mut group = c.benchmark_group("exposition_encode");
    group.throughput(Throughput::Elements(points.len() as u64));
    group.bench_function("text_0.0.4_50k", |b| b.iter(|| black_box(encode_text(black_box(&points))).len()));
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
