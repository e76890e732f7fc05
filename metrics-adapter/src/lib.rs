//! headroom-metrics-adapter: the custom.metrics.k8s.io (v1beta2, v1beta1)
//! and external.metrics.k8s.io (v1beta1) APIs for per-user JupyterHub
//! notebook metrics, served to the aggregation layer over HTTPS.
//!
//! # Metrics (a stable contract)
//!
//! Notebook pods are the non-terminal pods matching `notebooks.selector`
//! (default `component=singleuser-server`); the user is the raw
//! `hub.jupyter.org/username` annotation. Series labels: `user` (raw name)
//! and `user_label` (the pod's `hub.jupyter.org/username` label, a valid
//! label value even for names like `user@example.com`).
//!
//! | name | kind | unit | meaning |
//! |---|---|---|---|
//! | `notebook_cpu_usage_cores` | pod | cores | CPU rate over the kubelet window (`windowSeconds`) |
//! | `notebook_memory_working_set_bytes` | pod | bytes | memory working set |
//! | `notebook_cpu_limit_fraction` | pod | ratio | CPU usage / limit (else request, else node allocatable) |
//! | `notebook_memory_limit_fraction` | pod | ratio | memory / limit (else request, else node allocatable) |
//! | `notebook_kernels_running` | pod | count | jupyter_server `kernel_currently_running_total`, summed over kernel types |
//! | `notebook_idle_seconds` | pod | seconds | scrape time − `jupyter_server_last_activity_timestamp_seconds` |
//! | `user_cpu_usage_cores` | user | cores | Σ over the user's notebooks |
//! | `user_memory_working_set_bytes` | user | bytes | Σ |
//! | `user_cpu_limit_fraction` | user | ratio | Σ usage / Σ limit (same fallbacks) |
//! | `user_memory_limit_fraction` | user | ratio | Σ usage / Σ limit |
//! | `user_kernels_running` | user | count | Σ |
//! | `user_idle_seconds` | user | seconds | minimum (the most recently active server) |
//! | `user_running_servers` | user | count | the user's Running notebook pods |
//! | `jupyterhub_active_users` | namespace | count | users with a Running notebook using ≥ `activity.cpuCores` or active in jupyter_server within `activity.window` |
//! | `jupyterhub_running_servers` | namespace | count | Running notebook pods |
//! | `jupyterhub_cpu_usage_cores` | namespace | cores | Σ over notebook pods |
//! | `jupyterhub_memory_working_set_bytes` | namespace | bytes | Σ over notebook pods |
//!
//! Where they are served:
//! - pod metrics: `custom.metrics/…/namespaces/{ns}/pods/{name|*}/{metric}`
//!   (`labelSelector` selects pods, `metricLabelSelector` matches `user`/`user_label`);
//! - user and namespace metrics: on the namespace
//!   (`…/namespaces/{ns}/metrics/{metric}`, one item; `user_*` restricted to the
//!   series matching `metricLabelSelector`, all users when empty), on a named
//!   StatefulSet, Deployment, ReplicaSet or Service of the namespace (same
//!   value, that object as `describedObject`), and as external metrics
//!   (`external.metrics/v1beta1/namespaces/{ns}/{metric}?labelSelector=user=alice`:
//!   one series per matching user; `jupyterhub_*` one unlabelled series).
//!
//! Values: an idle notebook is 0, a Pending one 0 (timestamp now); a user
//! named by `user=<name>` without servers gets a 0 series. `timestamp` is the
//! sample's own time (the oldest one for sums), `windowSeconds` the real
//! kubelet rate window (absent for gauges). A sample older than
//! `freshness.maxAge` is an error, never a number: 503 ServiceUnavailable
//! (the HPA treats any error as "metric unavailable" and holds its scale);
//! a metric that does not apply (no jupyter_server scraping for a pod) is
//! 404. In `pods/*` lists, pods in error are left out (the HPA counts missing
//! pods conservatively) and only an all-error list fails.
//!
//! # Modules
//!
//! - [`api`]: wire types, field for field as the upstream Go types.
//! - [`routes`]: paths and query strings → routes (pure).
//! - [`selector`]: Kubernetes label selectors (pure).
//! - [`auth`]: front-proxy authentication, SubjectAccessReview authorization.
//! - [`provider`]: notebook pods → users → values (pure).
//! - [`sources`]: jupyter_server scraping and the live observations.
//! - [`config`]: the validated YAML configuration.
//! - [`app`]: shared state and the request handler.
//! - [`watch`]: reflectors for pods and nodes, the requestheader ConfigMap.
//! - [`telemetry`]: the adapter's own metrics.
//! - [`cli`]: the command line.
//! - [`fixtures`]: pod and node builders for tests and benchmarks.

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod fixtures;
pub mod provider;
pub mod routes;
pub mod selector;
pub mod sources;
pub mod telemetry;
pub mod watch;
