//! Freshness of a custom metrics server: time from a change of one notebook
//! pod's emulated CPU usage (kwok's usage annotation) to the new value in
//! the custom metrics API, read through the aggregator every 100 ms.
//!
//! Rounds alternate 100m → 1500m (done when the value passes 1.3 cores) and
//! 1500m → 100m (done below 0.3 cores), the thresholds
//! `scripts/measure-freshness` uses. Before the next round every metric
//! must settle near the new usage, so a slow moving average (a Prometheus
//! `rate` over a window) does not start a round half-way.

use std::time::{Duration, Instant};

use super::loadgen::{self, HttpClientHandle};
use crate::{Cluster, Error};

const LOW: &str = "100m";
const HIGH: &str = "1500m";
const POLL: Duration = Duration::from_millis(100);

/// One measured transition of one metric.
#[derive(Clone, Debug)]
pub struct FreshnessRound {
    pub server: String,
    pub metric: String,
    pub round: usize,
    pub from: &'static str,
    pub to: &'static str,
    /// Time from the annotation update to the first reading past the
    /// threshold; `None` if it did not happen within the round's timeout.
    pub after: Option<Duration>,
}

/// What to measure on the server the custom metrics API currently routes to.
pub struct FreshnessSpec<'a> {
    pub server: &'a str,
    pub namespace: &'a str,
    pub pod: &'a str,
    /// Pods metrics read together in every poll (one timing each).
    pub metrics: &'a [&'a str],
    pub rounds: usize,
    /// Per round, and for settling.
    pub timeout: Duration,
}

/// Runs `spec.rounds` transitions, calling `on_round` as each completes.
pub async fn measure(
    cluster: &Cluster,
    client: &HttpClientHandle,
    spec: &FreshnessSpec<'_>,
    mut on_round: impl FnMut(&FreshnessRound),
) -> Result<Vec<FreshnessRound>, Error> {
    let urls: Vec<String> = spec
        .metrics
        .iter()
        .map(|m| {
            format!(
                "{}/apis/custom.metrics.k8s.io/v1beta2/namespaces/{}/pods/{}/{m}",
                cluster.apiserver_url, spec.namespace, spec.pod
            )
        })
        .collect();
    // Start from the low usage, settled, whatever an earlier run left.
    set_usage(cluster, spec, LOW).await?;
    settle(client, &urls, false, spec.timeout).await?;
    let mut out = Vec::new();
    for round in 1..=spec.rounds {
        let rising = round % 2 == 1;
        let (from, to) = if rising { (LOW, HIGH) } else { (HIGH, LOW) };
        set_usage(cluster, spec, to).await?;
        let start = Instant::now();
        let times = crossings(client, &urls, rising, start, spec.timeout).await;
        for (metric, after) in spec.metrics.iter().zip(times) {
            let r = FreshnessRound {
                server: spec.server.to_string(),
                metric: metric.to_string(),
                round,
                from,
                to,
                after,
            };
            on_round(&r);
            out.push(r);
        }
        if round < spec.rounds {
            settle(client, &urls, rising, spec.timeout).await?;
        }
    }
    set_usage(cluster, spec, LOW).await?;
    Ok(out)
}

async fn set_usage(cluster: &Cluster, spec: &FreshnessSpec<'_>, cpu: &str) -> Result<(), Error> {
    cluster
        .set_pod_usage(spec.namespace, spec.pod, cpu, "512Mi")
        .await
}

/// Polls every URL until each has passed the threshold once; the time of
/// each first crossing after `start`.
async fn crossings(
    client: &HttpClientHandle,
    urls: &[String],
    rising: bool,
    start: Instant,
    timeout: Duration,
) -> Vec<Option<Duration>> {
    let mut times = vec![None; urls.len()];
    while start.elapsed() < timeout && times.iter().any(Option::is_none) {
        for (url, time) in urls.iter().zip(times.iter_mut()) {
            if time.is_some() {
                continue;
            }
            let Some(v) = value(client, url).await else {
                continue;
            };
            if (rising && v > 1.3) || (!rising && v < 0.3) {
                *time = Some(start.elapsed());
            }
        }
        tokio::time::sleep(POLL).await;
    }
    times
}

/// Waits until every URL reads within 0.05 cores of the usage just set.
async fn settle(
    client: &HttpClientHandle,
    urls: &[String],
    high: bool,
    timeout: Duration,
) -> Result<(), Error> {
    let target = if high { 1.5 } else { 0.1 };
    crate::wait::until(
        &format!("metrics to settle at {target} cores"),
        timeout,
        Duration::from_millis(500),
        || async {
            for url in urls {
                let v = value(client, url).await?;
                if (v - target).abs() > 0.05 {
                    return None;
                }
            }
            Some(())
        },
    )
    .await
}

/// The value (cores) of the first item of a `MetricValueList`, or of a
/// single `MetricValue`.
async fn value(client: &HttpClientHandle, url: &str) -> Option<f64> {
    let (status, body) = loadgen::exchange(client, http::Method::GET, url, Default::default())
        .await
        .ok()?;
    if !status.is_success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let item = v["items"].get(0).unwrap_or(&v);
    parse_quantity(item["value"].as_str()?)
}

/// A Kubernetes quantity as a number (the suffixes metric values use).
pub fn parse_quantity(q: &str) -> Option<f64> {
    let (digits, scale) = match q.as_bytes().last()? {
        b'n' => (&q[..q.len() - 1], 1e-9),
        b'u' => (&q[..q.len() - 1], 1e-6),
        b'm' => (&q[..q.len() - 1], 1e-3),
        b'k' => (&q[..q.len() - 1], 1e3),
        b'M' => (&q[..q.len() - 1], 1e6),
        b'G' => (&q[..q.len() - 1], 1e9),
        _ => (q, 1.0),
    };
    digits.parse::<f64>().ok().map(|v| v * scale)
}

#[cfg(test)]
mod tests {
    use super::parse_quantity;

    #[test]
    fn quantities_in_cores() {
        assert_eq!(parse_quantity("1500m"), Some(1.5));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert!((parse_quantity("1499999u").unwrap() - 1.499999).abs() < 1e-9);
        assert!((parse_quantity("100000000n").unwrap() - 0.1).abs() < 1e-9);
        assert_eq!(parse_quantity(""), None);
        assert_eq!(parse_quantity("abc"), None);
    }
}
