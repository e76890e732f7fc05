//! Markdown tables of the results, and the machine they were measured on.

use std::fmt::Write;
use std::time::Duration;

use super::http_bench::HttpRow;
use super::scheduling::{BESIDE_CONFIG, DEFAULT_CONFIG, EXTENDER_CONFIG, Round};

/// nproc, CPU model, memory, kernel: what BENCHMARKS.md records per run.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, m)| m.trim())
        .to_string();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cpus} CPUs ({model}), {mem_gib:.1} GiB memory, Linux {}",
        kernel.trim()
    )
}

pub fn http_header() -> String {
    "| server | transport | payload | nodes | body | verb | reply | req/s | p50 ms | p99 ms | errors |\n\
     |---|---|---|---:|---:|---|---|---:|---:|---:|---:|\n"
        .to_string()
}

pub fn http_line(r: &HttpRow) -> String {
    let o = &r.outcome;
    let reply = match r.verb {
        super::loadgen::Verb::Filter => {
            format!("{} pass / {} fail", o.reply.passed, o.reply.failed)
        }
        super::loadgen::Verb::Prioritize => format!("{} scores", o.reply.passed),
    };
    let body = if o.body_bytes >= 1 << 20 {
        format!("{:.1} MiB", o.body_bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{:.0} KiB", o.body_bytes as f64 / 1024.0)
    };
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {} |\n",
        r.server,
        r.transport,
        r.payload.as_str(),
        r.nodes,
        body,
        r.verb.as_str(),
        reply,
        o.requests_per_second(),
        o.quantile_ms(0.5),
        o.quantile_ms(0.99),
        if o.errors == 0 {
            "0".to_string()
        } else {
            format!(
                "{} ({})",
                o.errors,
                o.first_error.clone().unwrap_or_default()
            )
        },
    )
}

pub fn http_table(rows: &[HttpRow]) -> String {
    let mut s = http_header();
    for r in rows {
        s.push_str(&http_line(r));
    }
    s
}

pub fn scheduling_header() -> String {
    "| configuration | round | pods | pods/s (first→last binding) | first→last | scheduler start→first binding | extender calls (filter/prioritize) | CPU ms/pod kube-scheduler | CPU ms/pod extender | CPU ms/pod etcd + apiserver + kcm + kwok | CPU ms/pod all | background while idle, cores | CPU ms/pod above background | first binding→all Running | pods Running/s | CPU ms/pod all, to all Running | pods created/s (context) |\n\
     |---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        .to_string()
}

pub fn scheduling_line(r: &Round) -> String {
    // CPU over first → last binding, which spans pods − 1 bindings.
    let bindings = r.pods.saturating_sub(1).max(1) as f64;
    let per_pod = |cpu: Option<Duration>| {
        cpu.map_or("–".to_string(), |c| {
            format!("{:.2}", c.as_secs_f64() * 1000.0 / bindings)
        })
    };
    let rest = r
        .cpu
        .per_process
        .iter()
        .filter(|(n, _)| n != "kube-scheduler" && n != "headroom-extender")
        .map(|(_, d)| *d)
        .sum::<Duration>();
    format!(
        "| {} | {} | {} | {:.1} | {:.2} s | {:.2} s | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} s | {:.1} | {} | {:.0} |\n",
        r.config,
        r.round,
        r.pods,
        r.pods_per_second(),
        r.first_to_last.as_secs_f64(),
        r.start_to_first.as_secs_f64(),
        r.extender_calls
            .map_or("–".to_string(), |(f, p)| format!("{f} / {p}")),
        per_pod(r.cpu.of("kube-scheduler")),
        per_pod(r.cpu.of("headroom-extender")),
        per_pod(Some(rest)),
        per_pod(Some(r.cpu.total())),
        r.idle_cores(),
        r.cpu_per_binding_above_idle().as_secs_f64() * 1000.0,
        r.first_to_all_running.as_secs_f64(),
        r.running_per_second(),
        per_pod(Some(r.cpu_to_all_running.total())),
        r.created_per_second,
    )
}

/// CPU per binding of every process, one line per round (the table keeps
/// only scheduler, extender and the rest).
pub fn scheduling_cpu_detail(rounds: &[Round]) -> String {
    let mut s = String::new();
    for r in rounds {
        let bindings = r.pods.saturating_sub(1).max(1) as f64;
        let parts: Vec<String> = r
            .cpu
            .per_process
            .iter()
            .map(|(n, d)| format!("{n} {:.2}", d.as_secs_f64() * 1000.0 / bindings))
            .collect();
        let idle_secs = r.idle_window.as_secs_f64().max(1e-9);
        let idle: Vec<String> = r
            .idle
            .per_process
            .iter()
            .map(|(n, d)| format!("{n} {:.3}", d.as_secs_f64() / idle_secs))
            .collect();
        let _ = writeln!(
            s,
            "- {} round {}: CPU ms per binding: {}; idle before the scheduler started ({:.0} s), cores: {}",
            r.config,
            r.round,
            parts.join(", "),
            r.idle_window.as_secs_f64(),
            idle.join(", ")
        );
    }
    s
}

/// The rounds and, per round, the ratio (b)/(a).
pub fn scheduling_table(rounds: &[Round]) -> String {
    let mut s = scheduling_header();
    for r in rounds {
        s.push_str(&scheduling_line(r));
    }
    s.push('\n');
    let rate = |config: &str, round: usize| {
        rounds
            .iter()
            .find(|r| r.config == config && r.round == round)
            .map(Round::pods_per_second)
    };
    let max_round = rounds.iter().map(|r| r.round).max().unwrap_or(0);
    for round in 1..=max_round {
        if let (Some(a), Some(b)) = (rate(DEFAULT_CONFIG, round), rate(EXTENDER_CONFIG, round)) {
            let _ = writeln!(
                s,
                "round {round}: ratio (b)/(a) = {b:.1} / {a:.1} = **{:.2}** (aim: at least 0.5)",
                b / a
            );
        }
        if let (Some(a2), Some(b)) = (rate(BESIDE_CONFIG, round), rate(EXTENDER_CONFIG, round)) {
            let _ = writeln!(
                s,
                "round {round}: (b)/(a′) = {b:.1} / {a2:.1} = {:.2} (the calls alone, the extender running in both)",
                b / a2
            );
        }
        let running = |config: &str| {
            rounds
                .iter()
                .find(|r| r.config == config && r.round == round)
                .map(Round::running_per_second)
        };
        if let (Some(a), Some(b)) = (running(DEFAULT_CONFIG), running(EXTENDER_CONFIG)) {
            let _ = writeln!(
                s,
                "round {round}: pods Running/s (first binding → last pod Running), (b)/(a) = {b:.1} / {a:.1} = {:.2}",
                b / a
            );
        }
    }
    s.push('\n');
    s.push_str(&scheduling_cpu_detail(rounds));
    s
}

pub fn adapter_header() -> String {
    "| notebook pods | server | request | reply | window (requests) | req/s | p50 ms | p99 ms | errors | resident memory | listed all pods after |\n\
     |---:|---|---|---|---:|---:|---:|---:|---:|---|---:|\n"
        .to_string()
}

/// Requests per second, with a decimal when below 10.
fn rate(per_second: f64) -> String {
    if per_second < 10.0 {
        format!("{per_second:.1}")
    } else {
        format!("{per_second:.0}")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

/// The memory cell: the adapter, plus Prometheus for the peer.
pub fn adapter_memory(adapter_kib: u64, prometheus_kib: Option<u64>) -> String {
    match prometheus_kib {
        Some(p) => format!(
            "{} + Prometheus {} = {}",
            mib(adapter_kib),
            mib(p),
            mib(adapter_kib + p)
        ),
        None => mib(adapter_kib),
    }
}

pub fn adapter_lines(r: &super::adapter_bench::AdapterRow) -> String {
    let line = |what: &str, o: &super::loadgen::Outcome, unit: &str| {
        format!(
            "| {} | {} | {what} | {} {unit}, {:.0} KiB | {:.0} s ({}) | {} | {:.2} | {:.2} | {} | {} | {} |\n",
            r.pods,
            r.server,
            o.reply.passed,
            o.body_bytes as f64 / 1024.0,
            o.window.as_secs_f64(),
            o.ok,
            rate(o.requests_per_second()),
            o.quantile_ms(0.5),
            o.quantile_ms(0.99),
            if o.errors == 0 {
                "0".to_string()
            } else {
                format!(
                    "{} ({})",
                    o.errors,
                    o.first_error.clone().unwrap_or_default()
                )
            },
            adapter_memory(r.rss_kib, r.prometheus_rss_kib),
            r.ready_after
                .map_or("–".to_string(), |d| format!("{:.0} s", d.as_secs_f64())),
        )
    };
    let mut s = line(
        "Pods metric `notebook_cpu_usage_cores`, all pods by label selector",
        &r.query,
        "items",
    );
    s.push_str(&line(
        "discovery `GET /apis/custom.metrics.k8s.io/v1beta2`",
        &r.discovery,
        "resources",
    ));
    s
}

pub fn freshness_header() -> String {
    "| server | metric | round | emulated usage | change → new value in the API |\n\
     |---|---|---:|---|---:|\n"
        .to_string()
}

pub fn freshness_line(r: &super::freshness::FreshnessRound) -> String {
    format!(
        "| {} | `{}` | {} | {} → {} | {} |\n",
        r.server,
        r.metric,
        r.round,
        r.from,
        r.to,
        r.after
            .map_or("not within the timeout".to_string(), |d| format!(
                "{:.1} s",
                d.as_secs_f64()
            )),
    )
}
