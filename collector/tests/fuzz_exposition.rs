//! Seeded mutation fuzzing of the exposition parser (stable Rust, runs in every
//! `cargo test`; `collector/fuzz` has the libFuzzer target), and two properties:
//! encoding random points and parsing them back gives the same points, and anything
//! the parser accepts survives encode → parse unchanged.
//!
//! `WARDEN_FUZZ_ITERS` sets the mutations per corpus entry (default 3000); the seed is
//! fixed, so a failure reproduces.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use warden_collector::exposition::{Format, encode_text, parse, write_openmetrics_float};
use warden_collector::signal::{Label, MetricKind, MetricPoint};

/// A node_exporter 1.x exposition excerpt (text 0.0.4), with a PHI-like marker in some
/// label values so the fuzzer can check errors never echo values.
const NODE_EXPORTER: &str = r##"# HELP go_gc_duration_seconds A summary of the pause duration of garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.4e-05
go_gc_duration_seconds{quantile="0.25"} 3.1e-05
go_gc_duration_seconds{quantile="0.5"} 4.2e-05
go_gc_duration_seconds{quantile="0.75"} 6.05e-05
go_gc_duration_seconds{quantile="1"} 0.000348
go_gc_duration_seconds_sum 0.0127
go_gc_duration_seconds_count 211
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 8
# HELP go_info Information about the Go environment.
# TYPE go_info gauge
go_info{version="go1.19.8"} 1
# HELP go_memstats_alloc_bytes Number of bytes allocated and still in use.
# TYPE go_memstats_alloc_bytes gauge
go_memstats_alloc_bytes 2.738992e+06
# HELP node_boot_time_seconds Node boot time, in unixtime.
# TYPE node_boot_time_seconds gauge
node_boot_time_seconds 1.795321281e+09
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 1953.4
node_cpu_seconds_total{cpu="0",mode="iowait"} 2.38
node_cpu_seconds_total{cpu="0",mode="irq"} 0
node_cpu_seconds_total{cpu="0",mode="nice"} 0
node_cpu_seconds_total{cpu="0",mode="softirq"} 0.32
node_cpu_seconds_total{cpu="0",mode="steal"} 1.54
node_cpu_seconds_total{cpu="0",mode="system"} 99.79
node_cpu_seconds_total{cpu="0",mode="user"} 417.16
node_cpu_seconds_total{cpu="1",mode="idle"} 1875.62
node_cpu_seconds_total{cpu="1",mode="iowait"} 11.01
node_cpu_seconds_total{cpu="1",mode="system"} 119.87
node_cpu_seconds_total{cpu="1",mode="user"} 471.7
# HELP node_disk_read_bytes_total The total number of bytes read successfully.
# TYPE node_disk_read_bytes_total counter
node_disk_read_bytes_total{device="vda"} 9.359442944e+09
node_disk_read_bytes_total{device="zram0"} 0
# HELP node_disk_io_time_seconds_total Total seconds spent doing I/Os.
# TYPE node_disk_io_time_seconds_total counter
node_disk_io_time_seconds_total{device="vda"} 182.308
node_disk_io_time_seconds_total{device="zram0"} 0.004
# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.
# TYPE node_filesystem_avail_bytes gauge
node_filesystem_avail_bytes{device="/dev/vda",fstype="ext4",mountpoint="/"} 7.7299183616e+10
node_filesystem_avail_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run"} 3.3501184e+09
node_filesystem_avail_bytes{device="/dev/vdb",fstype="xfs",mountpoint="/srv/PHI-SECRET \"quoted\" \\ path"} 1.073741824e+10
# HELP node_filesystem_readonly Filesystem read-only status.
# TYPE node_filesystem_readonly gauge
node_filesystem_readonly{device="/dev/vda",fstype="ext4",mountpoint="/"} 0
node_filesystem_readonly{device="tmpfs",fstype="tmpfs",mountpoint="/run"} 0
# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 1.57
# HELP node_load5 5m load average.
# TYPE node_load5 gauge
node_load5 0.98
# HELP node_memory_MemAvailable_bytes Memory information field MemAvailable_bytes.
# TYPE node_memory_MemAvailable_bytes gauge
node_memory_MemAvailable_bytes 2.426079232e+10
# HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes.
# TYPE node_memory_MemTotal_bytes gauge
node_memory_MemTotal_bytes 3.3651843072e+10
# HELP node_netstat_Tcp_CurrEstab Statistic TcpCurrEstab.
# TYPE node_netstat_Tcp_CurrEstab untyped
node_netstat_Tcp_CurrEstab 4
# HELP node_netstat_TcpExt_ListenDrops Statistic TcpExtListenDrops.
# TYPE node_netstat_TcpExt_ListenDrops untyped
node_netstat_TcpExt_ListenDrops 0
# HELP node_network_receive_bytes_total Network device statistic receive_bytes.
# TYPE node_network_receive_bytes_total counter
node_network_receive_bytes_total{device="eth0"} 2.81592974e+08
node_network_receive_bytes_total{device="lo"} 1.2884901888e+10
# HELP node_network_info Non-numeric data from /sys/class/net/<iface>, value is always 1.
# TYPE node_network_info gauge
node_network_info{address="02:fc:00:00:00:05",broadcast="ff:ff:ff:ff:ff:ff",device="eth0",duplex="",ifalias="PHI-SECRET alias",operstate="up"} 1
# HELP node_scrape_collector_duration_seconds node_exporter: Duration of a collector scrape.
# TYPE node_scrape_collector_duration_seconds gauge
node_scrape_collector_duration_seconds{collector="cpu"} 0.000312705
node_scrape_collector_duration_seconds{collector="diskstats"} 0.000116871
node_scrape_collector_duration_seconds{collector="filesystem"} 0.00109261
# HELP node_scrape_collector_success node_exporter: Whether a collector succeeded.
# TYPE node_scrape_collector_success gauge
node_scrape_collector_success{collector="cpu"} 1
node_scrape_collector_success{collector="diskstats"} 1
node_scrape_collector_success{collector="dmi"} 0
# HELP node_textfile_scrape_error 1 if there was an error opening or reading a file, 0 otherwise
# TYPE node_textfile_scrape_error gauge
node_textfile_scrape_error 0
# HELP node_time_seconds System time in seconds since epoch (1970).
# TYPE node_time_seconds gauge
node_time_seconds 1.7957843294871309e+09
# HELP node_timex_offset_seconds Time offset in between local system and reference clock.
# TYPE node_timex_offset_seconds gauge
node_timex_offset_seconds -1.2e-05
# HELP node_uname_info Labeled system information as provided by the uname system call.
# TYPE node_uname_info gauge
node_uname_info{domainname="(none)",machine="x86_64",nodename="node-a",release="6.1.0-18-amd64",sysname="Linux",version="#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)"} 1
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 0.41
# HELP process_max_fds Maximum number of open file descriptors.
# TYPE process_max_fds gauge
process_max_fds 1.048576e+06
# HELP promhttp_metric_handler_requests_total Total number of scrapes by HTTP status code.
# TYPE promhttp_metric_handler_requests_total counter
promhttp_metric_handler_requests_total{code="200"} 12
promhttp_metric_handler_requests_total{code="500"} 0
promhttp_metric_handler_requests_total{code="503"} 0
# HELP http_request_duration_seconds A histogram with \\ backslash and \n newline in HELP.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{handler="/metrics",le="0.005"} 10
http_request_duration_seconds_bucket{handler="/metrics",le="0.01"} 11
http_request_duration_seconds_bucket{handler="/metrics",le="0.1"} 12
http_request_duration_seconds_bucket{handler="/metrics",le="1"} 12
http_request_duration_seconds_bucket{handler="/metrics",le="+Inf"} 12
http_request_duration_seconds_sum{handler="/metrics"} 0.0731
http_request_duration_seconds_count{handler="/metrics"} 12
weird_values{kind="nan"} NaN
weird_values{kind="inf"} +Inf
weird_values{kind="-inf"} -Inf
with_timestamp 3 1700000000123
"##;

/// A random, valid text 0.0.4 exposition.
fn generated_text(rng: &mut StdRng) -> String {
    let mut s = String::new();
    for f in 0..rng.random_range(3..12) {
        let kind = ["counter", "gauge", "histogram", "summary", "untyped"][rng.random_range(0..5)];
        let name = format!("gen_{f}_{}", ["total", "seconds", "bytes", "x"][rng.random_range(0..4)]);
        s.push_str(&format!("# HELP {name} Generated family {f}.\n# TYPE {name} {kind}\n"));
        for series in 0..rng.random_range(1..4) {
            let labels = format!("a=\"{series}\",b=\"PHI-SECRET \\\"{}\\\\\\n\"", rng.random_range(0..1000));
            let value = rng.random_range(-1e6..1e6f64);
            match kind {
                "histogram" => {
                    for le in ["0.1", "1", "10", "+Inf"] {
                        s.push_str(&format!("{name}_bucket{{{labels},le=\"{le}\"}} {}\n", rng.random_range(0..100)));
                    }
                    s.push_str(&format!("{name}_sum{{{labels}}} {value}\n{name}_count{{{labels}}} 100\n"));
                }
                "summary" => {
                    for q in ["0.5", "0.99"] {
                        s.push_str(&format!("{name}{{{labels},quantile=\"{q}\"}} {value}\n"));
                    }
                    s.push_str(&format!("{name}_sum{{{labels}}} {value}\n{name}_count{{{labels}}} 7\n"));
                }
                _ => s.push_str(&format!("{name}{{{labels}}} {value} {}\n", rng.random_range(0..2_000_000_000_000i64))),
            }
        }
    }
    s
}

/// A random, valid OpenMetrics exposition.
fn generated_openmetrics(rng: &mut StdRng) -> String {
    let mut s = String::new();
    for f in 0..rng.random_range(3..10) {
        let kind = ["counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset", "unknown"]
            [rng.random_range(0..8)];
        let name = format!("om_{f}");
        s.push_str(&format!("# TYPE {name} {kind}\n# HELP {name} Family \\\"{f}\\\".\n"));
        if kind == "gauge" {
            s.push_str(&format!("# UNIT {name} \n"));
        }
        let ts = format!("{}.{:03}", rng.random_range(1_600_000_000..1_800_000_000u64), rng.random_range(0..1000));
        let exemplar = " # {trace_id=\"4bf92f3577b34da6\"} 0.5 1700000000.001";
        match kind {
            "counter" => s.push_str(&format!("{name}_total{{p=\"PHI-SECRET\"}} 5 {ts}{exemplar}\n{name}_created 1.7e9\n")),
            "histogram" => s.push_str(&format!(
                "{name}_bucket{{le=\"1\"}} 1{exemplar}\n{name}_bucket{{le=\"+Inf\"}} 2\n{name}_sum 1.5\n{name}_count 2\n"
            )),
            "gaugehistogram" => {
                s.push_str(&format!("{name}_bucket{{le=\"1\"}} 1\n{name}_bucket{{le=\"+Inf\"}} 2\n{name}_gsum 1\n{name}_gcount 2\n"))
            }
            "summary" => s.push_str(&format!("{name}{{quantile=\"0.9\"}} 1\n{name}_sum 3 {ts}\n{name}_count 2\n")),
            "info" => s.push_str(&format!("{name}_info{{v=\"PHI-SECRET 1\"}} 1\n")),
            "stateset" => s.push_str(&format!("{name}{{{name}=\"a\"}} 1\n{name}{{{name}=\"b\"}} 0\n")),
            _ => s.push_str(&format!("{name}{{x=\"y\"}} {} {ts}\n", rng.random_range(-10.0..10.0f64))),
        }
    }
    s.push_str("# EOF\n");
    s
}

const TOKENS: &[&[u8]] = &[
    b"\\",
    b"\"",
    b"{",
    b"}",
    b"=",
    b",",
    b" ",
    b"\t",
    b"\n",
    b"#",
    b"# EOF\n",
    b"# TYPE x histogram\n",
    b"# UNIT x y\n",
    b"NaN",
    b"+Inf",
    b"-Inf",
    b"1e400",
    b"-",
    b".",
    b"\xff",
    b"\xc3",
    b"le=\"",
    b"__name__=\"a\",",
    b" # {a=\"b\"} 1 ",
    b"_bucket",
    b"_total",
    b"9",
    b"\r",
    b"\0",
    b"PHI-SECRET",
];

fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = v.len();
        let at = if len == 0 { 0 } else { rng.random_range(0..len) };
        match rng.random_range(0..9) {
            0 if len > 0 => v[at] = rng.random(),
            1 => v.insert(at, TOKENS[rng.random_range(0..TOKENS.len())][0]),
            2 if len > 0 => {
                let end = (at + rng.random_range(1..24)).min(len);
                v.drain(at..end);
            }
            3 if len > 0 => {
                let end = (at + rng.random_range(1..64)).min(len);
                let copy = v[at..end].to_vec();
                let to = rng.random_range(0..=len);
                v.splice(to..to, copy);
            }
            4 => v.truncate(at),
            5 => {
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            6 => {
                // Swap two lines.
                let mut lines: Vec<Vec<u8>> = v.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
                if lines.len() > 1 {
                    let (a, b) = (rng.random_range(0..lines.len()), rng.random_range(0..lines.len()));
                    lines.swap(a, b);
                    v = lines.join(&b'\n');
                }
            }
            7 if len > 0 => v[at] = b"0123456789abcXYZ_:"[rng.random_range(0..18)],
            _ => {
                // Duplicate a whole line (repeated series, repeated TYPE lines).
                let lines: Vec<&[u8]> = v.split(|&b| b == b'\n').collect();
                let line = lines[rng.random_range(0..lines.len())].to_vec();
                let to = rng.random_range(0..=len);
                v.splice(to..to, line.into_iter().chain([b'\n']));
            }
        }
    }
    v
}

fn same_value(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn assert_same_points(a: &[MetricPoint], b: &[MetricPoint], context: &dyn Fn() -> String) {
    assert_eq!(a.len(), b.len(), "point count differs\n{}", context());
    for (x, y) in a.iter().zip(b) {
        assert!(
            x.name == y.name
                && x.labels == y.labels
                && x.kind == y.kind
                && x.timestamp_ms == y.timestamp_ms
                && same_value(x.value, y.value),
            "{x:?} != {y:?}\n{}",
            context()
        );
    }
}

fn sort_key(p: &MetricPoint) -> (String, Vec<Label>, u8, i64, u64) {
    (p.name.clone(), p.labels.clone(), p.kind as u8, p.timestamp_ms, p.value.to_bits())
}

fn is_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Parses one (mutated) input and checks the invariants; returns whether it parsed.
fn check_input(input: &[u8], format: Format) -> bool {
    let show = || format!("format {format:?}, input:\n{}", String::from_utf8_lossy(input));
    match parse(input, format, 42) {
        Ok(points) => {
            for p in &points {
                assert!(is_metric_name(&p.name), "bad name {:?}\n{}", p.name, show());
                for w in p.labels.windows(2) {
                    assert!(w[0].name < w[1].name, "labels not sorted/unique in {p:?}\n{}", show());
                }
                for l in &p.labels {
                    assert!(is_label_name(&l.name) && l.name != "__name__", "bad label {:?}\n{}", l.name, show());
                }
            }
            // Whatever parses survives encode → parse unchanged.
            let text = encode_text(&points);
            let back = parse(text.as_bytes(), Format::PrometheusText, 0)
                .unwrap_or_else(|e| panic!("re-parse failed: {e}\nencoded:\n{text}\n{}", show()));
            let mut a: Vec<_> = points.iter().collect();
            let mut b: Vec<_> = back.iter().collect();
            a.sort_by_key(|p| sort_key(p));
            b.sort_by_key(|p| sort_key(p));
            let a: Vec<MetricPoint> = a.into_iter().cloned().collect();
            let b: Vec<MetricPoint> = b.into_iter().cloned().collect();
            assert_same_points(&a, &b, &|| format!("encoded:\n{text}\n{}", show()));
            true
        }
        Err(e) => {
            let lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
            assert!(e.line >= 1 && e.line <= lines.len() + 1, "line {} out of range: {e}\n{}", e.line, show());
            assert!(e.column >= 1, "{e}");
            if let Some(line) = lines.get(e.line - 1) {
                assert!(e.column <= line.len() + 1, "column {} beyond line end: {e}\n{}", e.column, show());
            }
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("line {}, column {}: ", e.line, e.column)), "{msg}");
            assert!(!msg.contains("PHI-SECRET"), "error echoes a label value: {msg}");
            false
        }
    }
}

fn iterations() -> usize {
    std::env::var("WARDEN_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000)
}

#[test]
fn mutated_expositions_never_panic_and_errors_have_positions() {
    let mut rng = StdRng::seed_from_u64(0x5eed_e4b0);
    let mut corpus: Vec<(Vec<u8>, Format)> = vec![(NODE_EXPORTER.as_bytes().to_vec(), Format::PrometheusText)];
    for _ in 0..3 {
        corpus.push((generated_text(&mut rng).into_bytes(), Format::PrometheusText));
        corpus.push((generated_openmetrics(&mut rng).into_bytes(), Format::OpenMetrics));
    }
    let mut accepted = 0;
    let mut rejected = 0;
    for (seed, format) in &corpus {
        assert!(check_input(seed, *format), "seed corpus must parse");
        // Each format's parser also sees the other format's text.
        let other = if *format == Format::OpenMetrics { Format::PrometheusText } else { Format::OpenMetrics };
        check_input(seed, other);
        for _ in 0..iterations() {
            let input = mutate(&mut rng, seed);
            if check_input(&input, *format) {
                accepted += 1;
            } else {
                rejected += 1;
            }
        }
    }
    // The mutations must exercise both paths, or the test proves nothing.
    assert!(accepted > 100 && rejected > 100, "accepted {accepted}, rejected {rejected}");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..iterations() {
        let len = rng.random_range(0..256);
        let alphabet: &[u8] = b"ab_:{}=\",# \n\t\\019.eE+-InfNa\xff";
        let input: Vec<u8> = (0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect();
        check_input(&input, Format::PrometheusText);
        check_input(&input, Format::OpenMetrics);
    }
}

fn random_string(rng: &mut StdRng) -> String {
    const PIECES: &[&str] =
        &["a", "Z", "0", " ", "\\", "\"", "\n", "{", "}", "=", ",", "#", "ü", "✓", "\t", "é", "NaN", "\\n"];
    (0..rng.random_range(0..8)).map(|_| PIECES[rng.random_range(0..PIECES.len())]).collect()
}

fn random_name(rng: &mut StdRng, first: &[u8], rest: &[u8]) -> String {
    let mut s = String::new();
    s.push(first[rng.random_range(0..first.len())] as char);
    for _ in 0..rng.random_range(0..10) {
        s.push(rest[rng.random_range(0..rest.len())] as char);
    }
    s
}

fn random_value(rng: &mut StdRng) -> f64 {
    match rng.random_range(0..8) {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => f64::NEG_INFINITY,
        3 => -0.0,
        4 => rng.random_range(-1000..1000) as f64,
        5 => f64::from_bits(rng.random::<u64>() & !(0x7ff << 52)), // subnormal or tiny
        _ => {
            let f = f64::from_bits(rng.random());
            if f.is_nan() { 1.0 } else { f }
        }
    }
}

#[test]
fn encoded_points_parse_back_to_the_same_points() {
    let mut rng = StdRng::seed_from_u64(0xC0FFEE);
    let metric_first = b"abcxyzABC_:";
    let metric_rest = b"abcxyz_:019";
    let label_first = b"abcxyzABC_";
    let label_rest = b"abcxyz_019";
    for round in 0..iterations() / 10 {
        let mut points = Vec::new();
        for _ in 0..rng.random_range(1..30) {
            let kind = [
                MetricKind::Counter,
                MetricKind::Gauge,
                MetricKind::Histogram,
                MetricKind::Summary,
                MetricKind::Unknown,
            ][rng.random_range(0..5)];
            let mut name = random_name(&mut rng, metric_first, metric_rest);
            let mut labels: Vec<Label> = Vec::new();
            for _ in 0..rng.random_range(0..4) {
                let n = random_name(&mut rng, label_first, label_rest);
                if n != "__name__" && !labels.iter().any(|l| l.name == n) {
                    labels.push(Label::new(n, random_string(&mut rng)));
                }
            }
            // Float labels in canonical form, as the parser produces them.
            let float_label = match kind {
                MetricKind::Histogram => Some("le"),
                MetricKind::Summary => Some("quantile"),
                _ => None,
            };
            if let Some(fl) = float_label {
                labels.retain(|l| l.name != fl);
                if rng.random_bool(0.7) {
                    let mut v = String::new();
                    write_openmetrics_float(&mut v, random_value(&mut rng));
                    labels.push(Label::new(fl, v));
                    if kind == MetricKind::Histogram {
                        name.push_str("_bucket");
                    }
                } else {
                    name.push_str(["_sum", "_count", ""][rng.random_range(0..3)]);
                }
            }
            let ts = rng.random_range(i64::MIN + 1..i64::MAX);
            points.push(MetricPoint::new(name, labels, kind, random_value(&mut rng), ts));
        }
        let text = encode_text(&points);
        let back = parse(text.as_bytes(), Format::PrometheusText, 0)
            .unwrap_or_else(|e| panic!("round {round}: encoded text does not parse: {e}\n{text}"));
        let mut a = points.clone();
        let mut b = back;
        a.sort_by_key(sort_key);
        b.sort_by_key(sort_key);
        assert_same_points(&a, &b, &|| format!("round {round}, encoded:\n{text}"));
    }
}
