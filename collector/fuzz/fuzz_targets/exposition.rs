//! libFuzzer target for the exposition parser: any bytes parsed as text 0.0.4 and as
//! OpenMetrics. Checks what must always hold: no panic, an error names a line and
//! column inside (or just past) the input, and whatever parses survives
//! `encode_text` → parse unchanged.
//! Run with `cargo +nightly fuzz run exposition` from `collector/`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_collector::exposition::{Format, encode_text, parse};

fuzz_target!(|data: &[u8]| {
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        match parse(data, format, 0) {
            Ok(points) => {
                let text = encode_text(&points);
                let mut back = parse(text.as_bytes(), Format::PrometheusText, 0).expect("encoded text parses");
                let mut points = points;
                let key = |p: &warden_collector::signal::MetricPoint| {
                    (p.name.clone(), p.labels.clone(), p.kind as u8, p.timestamp_ms, p.value.to_bits())
                };
                points.sort_by_key(key);
                back.sort_by_key(key);
                assert_eq!(points.len(), back.len());
                for (a, b) in points.iter().zip(&back) {
                    assert_eq!(
                        (&a.name, &a.labels, a.kind, a.timestamp_ms),
                        (&b.name, &b.labels, b.kind, b.timestamp_ms)
                    );
                    assert!(a.value.to_bits() == b.value.to_bits() || (a.value.is_nan() && b.value.is_nan()));
                }
            }
            Err(e) => {
                let lines = data.split(|&b| b == b'\n').count();
                assert!(e.line >= 1 && e.line <= lines + 1, "{e}");
                assert!(e.column >= 1, "{e}");
            }
        }
    }
});
