//! Logging (console plus a daily rolling file in `log/`), request ids and HTTP metrics.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use tracing_actix_web::RequestId;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, fmt};

use campus_impl::AppContext;

/// Installs the global subscriber. Keep the guard alive: it flushes the file on exit.
pub fn init(log_dir: &Path) -> Option<WorkerGuard> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn,h2=warn,rustls=warn"));
    let (file_layer, guard) = match std::fs::create_dir_all(log_dir) {
        Ok(()) => {
            let appender = tracing_appender::rolling::daily(log_dir, "campus-errand.log");
            let (writer, guard) = tracing_appender::non_blocking(appender);
            (
                Some(fmt::layer().with_ansi(false).with_writer(writer)),
                Some(guard),
            )
        }
        Err(_) => (None, None),
    };
    // Colours only on a terminal. Span fields are formatted once, by the first layer, and
    // shared, so colours would put escape codes into the log file; styling also costs CPU on
    // every request (README, Benchmarks).
    let console = fmt::layer()
        .with_target(false)
        .with_ansi(std::io::stdout().is_terminal());
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(console)
        .with(file_layer)
        .try_init();
    guard
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Returns the request id (made by `TracingLogger`, and in every log line of the
/// request's span) as `X-Request-Id`, and records the request in the metrics by
/// route pattern, so ids in paths do not explode the label set.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let services = req.app_data::<web::Data<AppContext>>().cloned();
    let request_id = req.extensions().get::<RequestId>().copied();
    let method = req.method().to_string();
    let mut res = next.call(req).await?;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    let status = res.status().as_u16().to_string();
    if let Some(s) = services {
        let labels = [method.as_str(), route.as_str(), status.as_str()];
        s.metrics.http_requests.with_label_values(&labels).inc();
        s.metrics
            .http_latency
            .with_label_values(&labels)
            .observe(start.elapsed().as_secs_f64());
    }
    if let Some(id) = request_id
        && let Ok(v) = HeaderValue::from_str(&id.to_string())
    {
        res.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    Ok(res)
}
