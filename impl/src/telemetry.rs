//! Prometheus collectors shared by the HTTP layer and the WeChat clients.
//! One registry per application instance (tests run several in one process).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// One refused callback in this many is logged.
pub const REJECTED_LOG_EVERY: u64 = 100;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_latency: HistogramVec,
    pub wechat_calls: IntCounterVec,
    pub wechat_errors: IntCounterVec,
    pub pool: IntGaugeVec,
    pub storage_ops: IntCounterVec,
    pub rejected_notifies: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("campus".into()), None)
            .expect("static registry prefix is valid");
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["method", "route", "status"],
        )
        .expect("static metric definition");
        let http_latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP latency by route").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            ),
            &["method", "route", "status"],
        )
        .expect("static metric definition");
        let wechat_calls = IntCounterVec::new(
            Opts::new("wechat_calls_total", "Calls to WeChat's servers by API"),
            &["api"],
        )
        .expect("static metric definition");
        let wechat_errors = IntCounterVec::new(
            Opts::new(
                "wechat_errors_total",
                "Failed calls to WeChat's servers by API and kind",
            ),
            &["api", "kind"],
        )
        .expect("static metric definition");
        let pool = IntGaugeVec::new(
            Opts::new("db_pool_connections", "Database pool connections by state"),
            &["state"],
        )
        .expect("static metric definition");
        let storage_ops = IntCounterVec::new(
            Opts::new(
                "storage_ops_total",
                "Object storage operations by kind and outcome (ok, error)",
            ),
            &["op", "outcome"],
        )
        .expect("static metric definition");
        let rejected_notifies = IntCounterVec::new(
            Opts::new(
                "pay_notifies_rejected_total",
                "WeChat Pay callbacks refused before they named a known order (bad XML, bad signature), by callback and reason",
            ),
            &["callback", "reason"],
        )
        .expect("static metric definition");
        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_latency.clone()),
            Box::new(wechat_calls.clone()),
            Box::new(wechat_errors.clone()),
            Box::new(pool.clone()),
            Box::new(storage_ops.clone()),
            Box::new(rejected_notifies.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Self {
            registry,
            http_requests,
            http_latency,
            wechat_calls,
            wechat_errors,
            pool,
            storage_ops,
            rejected_notifies,
        }
    }

    /// Count one refused callback; true when this one should be logged (the first of its
    /// kind and then one in [`REJECTED_LOG_EVERY`]), so a junk flood cannot flood the logs.
    pub fn rejected_notify(&self, callback: &str, reason: &'static str) -> bool {
        let c = self
            .rejected_notifies
            .with_label_values(&[callback, reason]);
        c.inc();
        (c.get() - 1).is_multiple_of(REJECTED_LOG_EVERY)
    }

    /// Count one object storage operation (`head`, `get`, `put` after its retries).
    pub fn storage_op(&self, op: &str, ok: bool) {
        self.storage_ops
            .with_label_values(&[op, if ok { "ok" } else { "error" }])
            .inc();
    }

    /// Count one call to a WeChat API; `error` names the failure kind, if any.
    pub fn wechat_call(&self, api: &str, error: Option<&str>) {
        self.wechat_calls.with_label_values(&[api]).inc();
        if let Some(kind) = error {
            self.wechat_errors.with_label_values(&[api, kind]).inc();
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
