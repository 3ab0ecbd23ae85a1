//! The gateway's Prometheus metrics and the `/metrics` text encoding shared by every rvdb listener.
//!
//! Everything registers in the `prometheus` crate's default registry, which also carries the process collector
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, open fds…). In `rvdb serve` the node and the
//! gateway live in one process, so the gateway's `/metrics` shows both; in a cluster each service serves its own.
//!
//! Requests are counted per surface (`mcp`, `rest`), operation (the tool name or the REST route template) and
//! store, with the outcome (`ok` or the error kind of [`crate::GatewayError::kind`], `unauthenticated`,
//! `permission_denied`). Latency histograms leave the store out, to bound the number of series.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{Encoder, HistogramVec, IntCounterVec, TextEncoder, register_histogram_vec, register_int_counter_vec};

static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "rvdb_gateway_requests_total",
        "Requests served by the gateway, by surface (mcp, rest), operation, store and outcome.",
        &["surface", "operation", "store", "outcome"]
    )
    .expect("metric registered once")
});

static DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "rvdb_gateway_request_duration_seconds",
        "Time to answer gateway requests, by surface and operation.",
        &["surface", "operation"],
        vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]
    )
    .expect("metric registered once")
});

/// Longest store label kept; longer (invalid) names are counted as `invalid` so a client cannot blow up the
/// number of series with junk.
const MAX_STORE_LABEL: usize = 64;

fn store_label(store: &str) -> &str {
    let valid =
        store.len() <= MAX_STORE_LABEL && store.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid { store } else { "invalid" }
}

/// Records one finished request.
pub fn record(surface: &str, operation: &str, store: &str, outcome: &str, elapsed: Duration) {
    REQUESTS.with_label_values(&[surface, operation, store_label(store), outcome]).inc();
    DURATION.with_label_values(&[surface, operation]).observe(elapsed.as_secs_f64());
}

/// The default registry in Prometheus text format (version 0.0.4).
pub fn encode() -> (String, String) {
    let encoder = TextEncoder::new();
    let mut buf = Vec::new();
    if let Err(e) = encoder.encode(&prometheus::gather(), &mut buf) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    (encoder.format_type().to_string(), String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_labels() {
        record("mcp", "search_vectors", "docs", "ok", Duration::from_millis(2));
        record("mcp", "search_vectors", "docs", "ok", Duration::from_millis(3));
        record("rest", "x", &"y".repeat(100), "invalid_argument", Duration::ZERO);
        let (_, text) = encode();
        assert!(text.contains(
            r#"rvdb_gateway_requests_total{operation="search_vectors",outcome="ok",store="docs",surface="mcp"} 2"#
        ));
        assert!(text.contains(r#"store="invalid""#));
        assert!(text.contains("rvdb_gateway_request_duration_seconds_bucket"));
    }
}
