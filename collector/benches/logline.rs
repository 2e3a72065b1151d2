//! Log line parsing of the file-tail source, in lines per second: ~200-byte text lines
//! (leading RFC 3339 timestamp and level word) and ~200-byte JSON lines (structured body,
//! `level` and `ts` extracted), parsed as the tailer does (`format: auto`, body copied
//! into the record). Throughput is reported per line (criterion's elements/s).
//!
//! The end-to-end tailer (read, split, UTF-8 check, parse, batch, acknowledge) is
//! measured by `bench/file-tail` with `examples/tail.rs`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use warden_collector::sources::file::parse::{Format, parse_line};

const LINES: usize = 1000;

/// Pads `s` with `.` to 200 bytes (the lines are ASCII).
fn pad(mut s: String) -> String {
    while s.len() < 200 {
        s.push('.');
    }
    s
}

fn text_lines() -> Vec<String> {
    (0..LINES)
        .map(|i| {
            let level = ["INFO", "WARN", "ERROR", "DEBUG"][i % 4];
            pad(format!(
                "2024-05-01T10:{:02}:{:02}.{:03}Z {level} [req-{i:06}] GET /v1/patients/{:06}/records status=200 \
                 duration_ms={} user=u{} bytes={} ",
                i / 60 % 60,
                i % 60,
                i % 1000,
                i * 7 % 1_000_000,
                i % 250,
                i % 97,
                i * 31 % 9000
            ))
        })
        .collect()
}

fn json_lines() -> Vec<String> {
    (0..LINES)
        .map(|i| {
            let level = ["info", "warn", "error", "debug"][i % 4];
            let mut s = format!(
                r#"{{"ts":"2024-05-01T10:{:02}:{:02}.{:03}Z","level":"{level}","msg":"request handled","route":"/v1/patients/{{id}}/records","status":200,"duration_ms":{},"req":"req-{i:06}","pad":""#,
                i / 60 % 60,
                i % 60,
                i % 1000,
                i % 250
            );
            while s.len() < 198 {
                s.push('x');
            }
            s.push_str(r#""}"#);
            s
        })
        .collect()
}

fn parse(c: &mut Criterion) {
    let text = text_lines();
    let json = json_lines();
    for l in text.iter().take(3) {
        assert!(parse_line(Format::Auto, l).time_unix_nano > 0, "bench text lines carry timestamps");
    }
    for l in json.iter().take(3) {
        let p = parse_line(Format::Auto, l);
        assert!(!p.json_fallback && p.time_unix_nano > 0, "bench JSON lines parse");
    }
    let avg = |v: &[String]| v.iter().map(String::len).sum::<usize>() / v.len();
    println!("logline: text lines {} bytes, JSON lines {} bytes on average", avg(&text), avg(&json));
    let mut g = c.benchmark_group("logline");
    g.throughput(Throughput::Elements(LINES as u64));
    g.bench_function("text_200b", |b| {
        b.iter(|| {
            for l in &text {
                black_box(parse_line(Format::Auto, black_box(l)));
            }
        })
    });
    g.bench_function("json_200b", |b| {
        b.iter(|| {
            for l in &json {
                black_box(parse_line(Format::Auto, black_box(l)));
            }
        })
    });
    g.bench_function("text_200b_format_text", |b| {
        b.iter(|| {
            for l in &text {
                black_box(parse_line(Format::Text, black_box(l)));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
