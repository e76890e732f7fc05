//! Benchmarks (issue 6): the load generator for extender verbs, the
//! scheduling-throughput run with the real kube-scheduler, and the Go peer
//! (Intel's TAS extender). Driven by the `headroom-loadgen` binary and
//! `scripts/bench`; figures go to BENCHMARKS.md. Nothing here asserts a
//! timing: these measure, tests check.

pub mod adapter_bench;
pub mod extender;
pub mod http_bench;
pub mod loadgen;
pub mod payload;
pub mod report;
pub mod scheduler;
pub mod scheduling;
pub mod tas;
