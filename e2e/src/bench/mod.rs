//! Benchmarks (issue 6): the load generator for extender verbs, the
//! scheduling-throughput run with the real kube-scheduler, the Go peers
//! (Intel's TAS extender; prometheus-adapter with Prometheus beside the
//! metrics adapter). Driven by the `headroom-loadgen` binary and
//! `scripts/bench`; figures go to BENCHMARKS.md. Nothing here asserts a
//! timing: these measure, tests check.

pub mod adapter_bench;
pub mod extender;
pub mod freshness;
pub mod http_bench;
pub mod loadgen;
pub mod payload;
pub mod prometheus_adapter;
pub mod report;
pub mod scheduler;
pub mod scheduling;
pub mod tas;
