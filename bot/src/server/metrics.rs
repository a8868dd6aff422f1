//! Prometheus metrics: webhook replies by status and their latency.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Status {
    status: u16,
}

pub struct Metrics {
    registry: Registry,
    replies: Family<Status, Counter>,
    latency: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("karpa");
        let replies = Family::<Status, Counter>::default();
        registry.register("webhook_replies", "Webhook replies by HTTP status", replies.clone());
        // 0.1 ms … ~1.6 s.
        let latency = Histogram::new(exponential_buckets(0.0001, 2.0, 15));
        registry.register("webhook_seconds", "Time to answer a webhook delivery", latency.clone());
        Metrics { registry, replies, latency }
    }

    pub fn observe(&self, status: axum::http::StatusCode, took: Duration) {
        self.replies.get_or_create(&Status { status: status.as_u16() }).inc();
        self.latency.observe(took.as_secs_f64());
    }

    /// The text exposition format, with `extra` lines (gauges read at scrape time).
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode_registry(&mut out, &self.registry).expect("writing to a String");
        out.push_str(extra);
        prometheus_client::encoding::text::encode_eof(&mut out).expect("writing to a String");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
