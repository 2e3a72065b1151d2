//! libFuzzer target for the OTLP/JSON receive path: any bytes decoded as an OTLP/JSON
//! request of each signal and converted to the signal model. Checks what must always
//! hold: no panic, no more items rejected than received, and anything accepted encodes
//! back to OTLP protobuf that decodes and converts again without rejects.
//! Run with `cargo +nightly fuzz run otlp_json` from `collector/`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_collector::otlp::{self, Encoding, Signal};

fuzz_target!(|data: &[u8]| {
    for signal in [Signal::Traces, Signal::Logs, Signal::Metrics] {
        let Ok(conv) = otlp::decode_and_convert(signal, Encoding::Json, data) else { continue };
        assert!(conv.report.rejected <= conv.received);
        let bytes = otlp::encode_request(signal, &conv.batch);
        let again = otlp::decode_and_convert(signal, Encoding::Protobuf, &bytes).expect("our own encoding decodes");
        assert_eq!(again.report.rejected, 0, "{}", again.report.message());
    }
});
