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
use crate::{extract, routes, telemetry};

pub struct Application {
    port: u16,
    server: Server,
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
        let ctx = AppContext::build_with(settings, Metrics::new(), migrations).await?;
        let server = serve(listener, ctx.clone()).map_err(|e| StartError::Bind(bind, e))?;
        Ok(Self { port, server, ctx })
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

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
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
    App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(routes::config)
        .split_for_parts()
}

fn serve(listener: TcpListener, ctx: AppContext) -> std::io::Result<Server> {
    let limit = ctx.max_body_bytes;
    let workers = match ctx.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let data = web::Data::new(ctx);
    let doc = web::Data::new(app_and_openapi().1);
    let server = HttpServer::new(move || {
        app_and_openapi()
            .0
            .app_data(data.clone())
            .app_data(doc.clone())
            .app_data(extract::json_config(limit))
            .app_data(extract::payload_config(limit))
            .app_data(extract::path_config())
            .app_data(extract::query_config())
            .wrap(from_fn(telemetry::observe))
            .wrap(TracingLogger::default())
            .default_service(web::to(routes::not_found))
    })
    .workers(workers)
    .listen(listener)?
    .run();
    Ok(server)
}
