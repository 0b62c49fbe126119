//! Logging (console plus daily rolling files in `log/`, as text or JSON lines), request
//! ids and HTTP metrics.

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
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, fmt};

use campus_impl::AppContext;
use campus_impl::settings::LogFormat;

/// The log files are `<log_dir>/campus-errand.log.<date>`.
const LOG_FILE_PREFIX: &str = "campus-errand.log";

/// How the logs are written: `LOG_FORMAT` and `LOG_KEEP_DAYS`.
#[derive(Clone, Copy, Debug)]
pub struct LogOptions {
    pub format: LogFormat,
    /// Daily files kept; older ones are deleted at start and at each day's rollover.
    pub keep_days: usize,
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// One output, in the chosen format. In JSON every line is one object: the event's fields
/// at the top level, and the fields of the span it happened in (`request_id` of the HTTP
/// request, among others) under `span`.
fn output<W>(format: LogFormat, writer: W, console: bool) -> BoxedLayer
where
    W: for<'w> fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
        // Colours only on a terminal. Span fields are formatted once, by the first layer,
        // and shared, so colours would put escape codes into the log file; styling also
        // costs CPU on every request (README, Benchmarks).
        LogFormat::Text if console => fmt::layer()
            .with_target(false)
            .with_ansi(std::io::stdout().is_terminal())
            .with_writer(writer)
            .boxed(),
        LogFormat::Text => fmt::layer().with_ansi(false).with_writer(writer).boxed(),
    }
}

/// Installs the global subscriber. Keep the guard alive: it flushes the file on exit.
pub fn init(log_dir: &Path, opts: LogOptions) -> Option<WorkerGuard> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn,h2=warn,rustls=warn"));
    let appender = std::fs::create_dir_all(log_dir)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            RollingFileAppender::builder()
                .rotation(Rotation::DAILY)
                .filename_prefix(LOG_FILE_PREFIX)
                .max_log_files(opts.keep_days.max(1))
                .build(log_dir)
                .map_err(|e| e.to_string())
        });
    let (file_layer, guard, file_error) = match appender {
        Ok(appender) => {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            (Some(output(opts.format, writer, false)), Some(guard), None)
        }
        Err(e) => (None, None, Some(e)),
    };
    let mut layers = vec![output(opts.format, std::io::stdout, true)];
    layers.extend(file_layer);
    let _ = tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init();
    if let Some(e) = file_error {
        tracing::warn!(dir = %log_dir.display(), error = %e, "logging to the console only");
    }
    guard
}

/// The method as a metrics label: the standard ones by name, anything else `OTHER`, so
/// made-up methods cannot grow the label set without bound.
pub fn method_label(m: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Paths whose query strings are credentials or callback payloads: WeChat's signature,
/// timestamp and nonce on `/wechat/mp`, and anything on the pay callbacks.
fn quiet_query(path: &str) -> bool {
    path.starts_with("/wechat/") || path.starts_with("/api/v1/pay/")
}

/// The request span of [`tracing_actix_web::TracingLogger`], without the query string of
/// [`quiet_query`] paths (the default span logs the whole target).
pub struct RootSpan;

impl tracing_actix_web::RootSpanBuilder for RootSpan {
    fn on_request_start(request: &ServiceRequest) -> tracing::Span {
        let path = request.path();
        let target = if quiet_query(path) {
            path.to_string()
        } else {
            request
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default()
        };
        let route = request
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_string());
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(|id| id.to_string())
            .unwrap_or_default();
        tracing::info_span!(
            "HTTP request",
            http.method = method_label(request.method()),
            http.route = %route,
            http.target = %target,
            // The address limits count, not whatever X-Forwarded-For a caller wrote.
            http.client_ip = %crate::extract::client_ip(request.request())
                .map(|ip| ip.to_string())
                .unwrap_or_default(),
            http.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            exception.message = tracing::field::Empty,
            exception.details = tracing::field::Empty,
            request_id = %request_id,
        )
    }

    fn on_request_end<B: MessageBody>(
        span: tracing::Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        tracing_actix_web::DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
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
    let method = method_label(req.method());
    let mut res = next.call(req).await?;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_string());
    let status = res.status().as_u16().to_string();
    if let Some(s) = services {
        let labels = [method, route.as_str(), status.as_str()];
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
