//! One full host collection (every collector, one watched process: this bench, matched by
//! `comm` so the whole process table is scanned), as the host source runs it every
//! `interval`. Target: at the default 10 s interval at most 0.2 % of one core, i.e.
//! at most 20 ms of CPU per collection.
//!
//! After the criterion run it prints the CPU time the process spent over 100 collections,
//! measured from `/proc/self/stat` (utime + stime, 10 ms ticks) and, where the kernel has
//! schedstats, `/proc/thread-self/schedstat` (nanoseconds on CPU of this thread).

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Instant;
use warden_collector::pipeline::ComponentStats;
use warden_collector::sources::host::{Config, Host, ProcessConfig, ProcessMatch};

fn host() -> Host {
    let comm = std::fs::read_to_string("/proc/self/comm").expect("read /proc/self/comm").trim_end().to_owned();
    let config = Config {
        processes: vec![ProcessConfig { name: "bench".into(), matcher: ProcessMatch::Comm(comm) }],
        ..Config::default()
    };
    Host::new(&config).expect("valid config")
}

/// utime + stime of this process, seconds (USER_HZ = 100).
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    let after = &stat[stat.rfind(')').expect("comm") + 1..];
    let f: Vec<u64> = after.split_whitespace().skip(11).take(2).map(|v| v.parse().expect("ticks")).collect();
    (f[0] + f[1]) as f64 / 100.0
}

/// Nanoseconds this thread has run, if the kernel keeps schedstats.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat").ok()?.split_whitespace().next()?.parse().ok()
}

fn collect(c: &mut Criterion) {
    let stats = ComponentStats::new("source", "host");
    let mut h = host();
    let first = h.collect(&stats);
    assert_eq!(stats.errors.get(), 0, "collection errors on this host");
    let points = first.len();
    c.bench_function("host/collect", |b| b.iter(|| black_box(h.collect(&stats))));

    const N: u32 = 100;
    let (cpu0, ns0, wall0) = (process_cpu_seconds(), thread_cpu_ns(), Instant::now());
    for _ in 0..N {
        black_box(h.collect(&stats));
    }
    let (cpu1, ns1, wall) = (process_cpu_seconds(), thread_cpu_ns(), wall0.elapsed());
    let per_ticks_ms = (cpu1 - cpu0) * 1000.0 / f64::from(N);
    println!("host/collect: {points} points per collection");
    println!(
        "host/collect: over {N} collections: wall {:.2} ms each, process CPU (utime+stime) {per_ticks_ms:.2} ms each \
         = {:.3} % of one core at a 10 s interval (target <= 0.2 %)",
        wall.as_secs_f64() * 1000.0 / f64::from(N),
        per_ticks_ms / 10_000.0 * 100.0,
    );
    if let (Some(a), Some(b)) = (ns0, ns1) {
        let per_ms = (b - a) as f64 / 1e6 / f64::from(N);
        println!(
            "host/collect: thread CPU (schedstat) {per_ms:.3} ms each = {:.4} % of one core at a 10 s interval",
            per_ms / 10_000.0 * 100.0
        );
    }
}

criterion_group!(benches, collect);
criterion_main!(benches);
