//! Prometheus collectors shared by the HTTP layer, the WeChat clients and the jobs.
//! One registry per application instance (tests run several in one process).

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// One refused callback in this many is logged.
pub const REJECTED_LOG_EVERY: u64 = 100;
/// The commit this binary was built from (`build.rs`), when git could tell.
const GIT_COMMIT: Option<&str> = option_env!("CAMPUS_GIT_COMMIT");

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_latency: HistogramVec,
    pub wechat_calls: IntCounterVec,
    pub wechat_errors: IntCounterVec,
    pub wechat_latency: HistogramVec,
    pub pool: IntGaugeVec,
    pub storage_ops: IntCounterVec,
    pub rejected_notifies: IntCounterVec,
    pub job_runs: IntCounterVec,
    pub job_failures: IntCounterVec,
    /// The standard `process_*` metrics (CPU, memory, open files), kept without the
    /// `campus_` prefix so that stock dashboards find them.
    process: Registry,
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
        let wechat_latency = HistogramVec::new(
            HistogramOpts::new(
                "wechat_call_duration_seconds",
                "Latency of calls to WeChat's servers by API, failed ones included",
            )
            .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["api"],
        )
        .expect("static metric definition");
        let job_runs = IntCounterVec::new(
            Opts::new("job_runs_total", "Background job ticks run, by job"),
            &["job"],
        )
        .expect("static metric definition");
        let job_failures = IntCounterVec::new(
            Opts::new(
                "job_failures_total",
                "Background job ticks that failed or panicked, by job",
            ),
            &["job"],
        )
        .expect("static metric definition");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "build_info",
                "Always 1; the labels tell the version and git commit of this binary",
            ),
            &["version", "git_commit"],
        )
        .expect("static metric definition");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), GIT_COMMIT.unwrap_or("unknown")])
            .set(1);
        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_latency.clone()),
            Box::new(wechat_calls.clone()),
            Box::new(wechat_errors.clone()),
            Box::new(wechat_latency.clone()),
            Box::new(pool.clone()),
            Box::new(storage_ops.clone()),
            Box::new(rejected_notifies.clone()),
            Box::new(job_runs.clone()),
            Box::new(job_failures.clone()),
            Box::new(build_info),
        ] {
            registry.register(c).expect("metric registered once");
        }
        let process = Registry::new();
        process
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process collector registered once");
        Self {
            registry,
            http_requests,
            http_latency,
            wechat_calls,
            wechat_errors,
            wechat_latency,
            pool,
            storage_ops,
            rejected_notifies,
            job_runs,
            job_failures,
            process,
        }
    }

    /// Count one tick of a background job; `ok` is false when it failed or panicked.
    pub fn job_run(&self, job: &str, ok: bool) {
        self.job_runs.with_label_values(&[job]).inc();
        if !ok {
            self.job_failures.with_label_values(&[job]).inc();
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

    /// Count one call to a WeChat API that took `took`; `error` names the failure kind,
    /// if any.
    pub fn wechat_call(&self, api: &str, took: Duration, error: Option<&str>) {
        self.wechat_calls.with_label_values(&[api]).inc();
        self.wechat_latency
            .with_label_values(&[api])
            .observe(took.as_secs_f64());
        if let Some(kind) = error {
            self.wechat_errors.with_label_values(&[api, kind]).inc();
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let mut families = self.registry.gather();
        families.extend(self.process.gather());
        let _ = TextEncoder::new().encode(&families, &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
