//! Fuzzes the Prometheus text parser: any input must give samples or an
//! error naming a line, never a panic.
//!
//! Run: `cargo +nightly fuzz run prom_parse -- -max_total_time=60`
#![no_main]

// The parser module is compiled in directly: it needs only std and
// thiserror, while depending on the whole headroom-common crate would
// rebuild kube, k8s-openapi and rustls with sanitizer instrumentation.
#[path = "../../common/src/prom.rs"]
#[allow(dead_code)]
mod prom;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match prom::parse(text) {
        Ok(exposition) => {
            for sample in &exposition.samples {
                assert!(!sample.name.is_empty(), "empty sample name from {text:?}");
                for (label, _) in &sample.labels {
                    assert!(!label.is_empty(), "empty label name from {text:?}");
                }
            }
            for family in &exposition.families {
                assert!(!family.name.is_empty());
            }
        }
        Err(e) => {
            let lines = text.split('\n').count();
            assert!(e.line >= 1 && e.line <= lines, "line {} of {lines}", e.line);
        }
    }
});
