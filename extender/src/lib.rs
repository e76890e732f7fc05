//! headroom-extender: a kube-scheduler extender that scores nodes by the
//! headroom left under per-node caps, in percent of allocatable, from
//! requests and measured usage (which covers load outside Kubernetes).
//!
//! - [`wire`]: the extender JSON types, exactly as kube-scheduler speaks them.
//! - [`policy`]: the YAML policy file and its validation.
//! - [`scoring`]: pure headroom arithmetic.
//! - [`view`]: reflector stores and usage turned into node snapshots.
//! - [`routes`]: the HTTP handler; [`explain`]: the per-node table.
//! - [`metrics`], [`config`]: Prometheus metrics and the CLI.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub mod config;
pub mod explain;
pub mod metrics;
pub mod policy;
pub mod routes;
pub mod scoring;
pub mod scrape;
pub mod verbs;
pub mod view;
pub mod wire;

#[cfg(test)]
mod testutil;

use metrics::Metrics;
use policy::Policy;
use view::ClusterView;

/// Default request body limit: an ExtenderArgs with 1,000 full Node objects
/// is about 4.6 MB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;

/// HTTP-level settings of the handler.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Path the scheduler's `urlPrefix` points at, e.g. `` or `/scheduler`;
    /// verbs are served at `{prefix}/filter` and `{prefix}/prioritize`.
    pub url_prefix: String,
    pub max_body_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            url_prefix: String::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl Settings {
    /// `scheduler/` and `/scheduler` both become `/scheduler`; `/` becomes ``.
    pub fn normalize_prefix(prefix: &str) -> String {
        let trimmed = prefix.trim().trim_matches('/');
        if trimmed.is_empty() {
            String::new()
        } else {
            format!("/{trimmed}")
        }
    }
}

/// Everything a request handler needs, shared behind an `Arc`.
pub struct State {
    pub view: ClusterView,
    pub metrics: Metrics,
    pub settings: Settings,
    ready: AtomicBool,
}

impl State {
    /// Not ready until [`State::set_ready`] is called (after the reflector
    /// stores have synced).
    pub fn new(view: ClusterView, settings: Settings) -> Self {
        Self {
            view,
            metrics: Metrics::new(),
            settings,
            ready: AtomicBool::new(false),
        }
    }

    /// The policy in force: the view's, under which node caps are resolved
    /// (it changes when the policy file is reloaded).
    pub fn policy(&self) -> Arc<Policy> {
        self.view.policy()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }
}
