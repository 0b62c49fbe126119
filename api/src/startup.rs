//! `Application::build(settings)`: the one way the server is put together, used by
//! `main`, the demo and the tests.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use tracing_actix_web::TracingLogger;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

use campus_impl::telemetry::Metrics;
use campus_impl::{AppContext, BuildError, Migrations, Settings};

use crate::openapi::ApiDoc;
use crate::routes::health::MetricsAccess;
use crate::{extract, routes, telemetry};

pub struct Application {
    port: u16,
    server: Server,
    /// `/metrics` on `METRICS_BIND`, when set.
    metrics_server: Option<(u16, Server)>,
    ctx: AppContext,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
}

impl Application {
    /// Connects everything (applying pending migrations) and binds the listener (port 0
    /// picks a free port).
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        Self::build_with(settings, Migrations::Apply).await
    }

    /// As [`Application::build`], with the choice of migrating at start.
    pub async fn build_with(
        settings: Settings,
        migrations: Migrations,
    ) -> Result<Self, StartError> {
        let bind = settings.bind.clone();
        let listener = TcpListener::bind(&bind).map_err(|e| StartError::Bind(bind.clone(), e))?;
        let port = listener
            .local_addr()
            .map_err(|e| StartError::Bind(bind.clone(), e))?
            .port();
        let metrics_listener = match &settings.metrics_bind {
            Some(b) => Some(TcpListener::bind(b).map_err(|e| StartError::Bind(b.clone(), e))?),
            None => None,
        };
        let access = MetricsAccess {
            served_here: metrics_listener.is_none(),
            token: settings.metrics_token.clone(),
        };
        let ctx = AppContext::build_with(settings, Metrics::new(), migrations).await?;
        let metrics_server = match metrics_listener {
            Some(l) => {
                let port = l
                    .local_addr()
                    .map_err(|e| StartError::Bind(bind.clone(), e))?
                    .port();
                let access = MetricsAccess {
                    served_here: true,
                    ..access.clone()
                };
                let server = serve_metrics(l, ctx.clone(), access)
                    .map_err(|e| StartError::Bind(bind.clone(), e))?;
                Some((port, server))
            }
            None => None,
        };
        let server = serve(listener, ctx.clone(), access).map_err(|e| StartError::Bind(bind, e))?;
        Ok(Self {
            port,
            server,
            metrics_server,
            ctx,
        })
    }

    /// The port of the `METRICS_BIND` listener, when there is one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_server.as_ref().map(|(p, _)| *p)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn context(&self) -> &AppContext {
        &self.ctx
    }

    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Runs until the main server stops; the metrics listener stops with it.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let metrics = self.metrics_server.map(|(_, s)| {
            let handle = s.handle();
            actix_web::rt::spawn(s);
            handle
        });
        let r = self.server.await;
        if let Some(h) = metrics {
            h.stop(true).await;
        }
        r
    }
}

/// The routes and the OpenAPI document they describe, collected in one pass.
pub fn app_and_openapi() -> (
    App<
        impl actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Response = actix_web::dev::ServiceResponse,
            Error = actix_web::Error,
            InitError = (),
        >,
    >,
    utoipa::openapi::OpenApi,
) {
    let (app, mut doc) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(routes::config)
        .split_for_parts();
    crate::openapi::add_common_responses(&mut doc);
    (app, doc)
}

/// Only `/metrics`, on its own listener (`METRICS_BIND`).
fn serve_metrics(
    listener: TcpListener,
    ctx: AppContext,
    access: MetricsAccess,
) -> std::io::Result<Server> {
    let data = web::Data::new(ctx);
    let access = web::Data::new(access);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(access.clone())
            .service(routes::health::metrics)
            .default_service(web::to(routes::not_found))
    })
    .workers(1)
    .listen(listener)?
    .run();
    Ok(server)
}

fn serve(listener: TcpListener, ctx: AppContext, access: MetricsAccess) -> std::io::Result<Server> {
    let limit = ctx.max_body_bytes;
    let workers = match ctx.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let data = web::Data::new(ctx);
    let access = web::Data::new(access);
    let doc = web::Data::new(app_and_openapi().1);
    let server = HttpServer::new(move || {
        app_and_openapi()
            .0
            .app_data(data.clone())
            .app_data(doc.clone())
            .app_data(access.clone())
            .app_data(extract::json_config(limit))
            .app_data(extract::payload_config(limit))
            .app_data(extract::path_config())
            .app_data(extract::query_config())
            .wrap(from_fn(telemetry::observe))
            .wrap(TracingLogger::<telemetry::RootSpan>::new())
            .default_service(web::to(routes::not_found))
    })
    .workers(workers)
    .listen(listener)?
    .run();
    Ok(server)
}
