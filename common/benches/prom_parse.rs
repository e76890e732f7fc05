//! Parsing a 10,000-line kubelet-like `/metrics/resource` exposition:
//! headroom's parser against prometheus-parse 0.2.5.
//!
//! Run: `cargo bench -p headroom-common --bench prom_parse`

use std::fmt::Write;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const LINES: usize = 10_000;

/// node_, pod_ and container_ series as the kubelet writes them: HELP/TYPE
/// headers, namespace/pod/container labels, values in exponent form and
/// millisecond timestamps.
fn kubelet_exposition(lines: usize) -> String {
    let mut out = String::with_capacity(lines * 120);
    let mut n = 0usize;
    let mut push = |out: &mut String, line: String| {
        out.push_str(&line);
        out.push('\n');
        n += 1;
        n < lines
    };
    let ts = 1_733_234_567_890i64;
    let mut pod = 0usize;
    let header = |name: &str, kind: &str| {
        format!("# HELP {name} [STABLE] Resource usage\n# TYPE {name} {kind}")
    };
    'outer: loop {
        // Each round: headers for one family, then a block of series.
        for (family, kind) in [
            ("container_cpu_usage_seconds_total", "counter"),
            ("container_memory_working_set_bytes", "gauge"),
            ("container_start_time_seconds", "gauge"),
            ("pod_cpu_usage_seconds_total", "counter"),
            ("pod_memory_working_set_bytes", "gauge"),
            ("node_cpu_usage_seconds_total", "counter"),
            ("node_memory_working_set_bytes", "gauge"),
        ] {
            for line in header(family, kind).lines() {
                if !push(&mut out, line.to_owned()) {
                    break 'outer;
                }
            }
            let block = if family.starts_with("node_") { 1 } else { 200 };
            for i in 0..block {
                let p = pod + i;
                let mut line = String::with_capacity(160);
                match family.split('_').next() {
                    Some("container") => write!(
                        line,
                        "{family}{{container=\"notebook\",namespace=\"jhub-{}\",pod=\"jupyter-user-{p}\"}} {:e} {}",
                        p % 17,
                        (p as f64 + 0.5) * 1234.5678,
                        ts + (p as i64 % 1000)
                    ),
                    Some("pod") => write!(
                        line,
                        "{family}{{namespace=\"jhub-{}\",pod=\"jupyter-user-{p}\"}} {:e} {}",
                        p % 17,
                        (p as f64 + 0.25) * 98765.4321,
                        ts + (p as i64 % 1000)
                    ),
                    _ => write!(line, "{family} {:e} {ts}", 3.5e11),
                }
                .expect("write to String");
                if !push(&mut out, line) {
                    break 'outer;
                }
            }
        }
        pod += 200;
    }
    out
}

fn bench(c: &mut Criterion) {
    let text = kubelet_exposition(LINES);
    let lines = text.lines().count();
    assert_eq!(lines, LINES);
    let samples = headroom_common::prom::parse(&text)
        .expect("valid")
        .samples
        .len();
    let theirs = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("parses")
        .samples
        .len();
    assert_eq!(
        samples, theirs,
        "both parsers see every sample of this input"
    );

    let mut group = c.benchmark_group("prom_parse_kubelet_10k_lines");
    group.throughput(Throughput::Elements(lines as u64));
    group.bench_function("headroom_common::prom", |b| {
        b.iter(|| {
            headroom_common::prom::parse(black_box(&text))
                .unwrap()
                .samples
                .len()
        })
    });
    group.bench_function("prometheus_parse_0.2.5", |b| {
        b.iter(|| {
            prometheus_parse::Scrape::parse(black_box(&text).lines().map(|l| Ok(l.to_owned())))
                .unwrap()
                .samples
                .len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
