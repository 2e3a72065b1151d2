//! libFuzzer target for the PHI redactor: any bytes, as a text line and as a JSON line.
//! Checks what must always hold: no panic, JSON output parses, redaction is idempotent.
//! Run with `cargo +nightly fuzz run redact` from `collector/`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use warden_collector::redact::{Line, Redactor};

fn redactor() -> &'static Redactor {
    static R: OnceLock<Redactor> = OnceLock::new();
    R.get_or_init(Redactor::default_mask)
}

fuzz_target!(|data: &[u8]| {
    let r = redactor();
    let text = String::from_utf8_lossy(data);
    match r.redact_line(&text) {
        Line::Text(t) => assert_eq!(r.redact_str(&t), t),
        Line::Json(j) => assert_eq!(r.redact_json_line(&j).as_deref(), Some(j.as_str())),
        Line::Dropped => {}
    }
    let _ = r.findings(&text);
});
