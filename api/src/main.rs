//! The Campus Errand server: `demo` (the default `demo` feature), `serve` or `migrate`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[cfg(feature = "demo")]
use campus_api::demo;
use campus_api::{Application, telemetry};
use campus_impl::Settings;

#[derive(Parser)]
#[command(
    version,
    about = "Campus Errand: the backend of a campus delivery mini-program"
)]
struct Cli {
    /// Folder holding default.toml and <CAMPUS_ENV>.toml.
    #[arg(long, default_value = "conf", global = true)]
    conf_dir: PathBuf,
    /// Folder for the daily rolling log files.
    #[arg(long, default_value = "log", global = true)]
    log_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// SQLite, in-process cache, local storage and the built-in WeChat simulator; prints a walkthrough.
    #[cfg(feature = "demo")]
    Demo,
    /// The production server; refuses to start without WeChat credentials.
    Serve,
    /// Applies pending migrations and exits.
    Migrate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _guard = telemetry::init(&cli.log_dir);
    let settings = match Settings::load(&cli.conf_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = actix_web::rt::System::new().block_on(async move {
        match cli.command {
            #[cfg(feature = "demo")]
            Command::Demo => demo::run(settings).await,
            Command::Serve => serve(settings).await,
            Command::Migrate => migrate(settings).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "exiting");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    // First: a backend missing from the build is not fixed by any setting.
    campus_impl::db::check_url(&settings.database_url)?;
    settings.check_for_serve()?;
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "serving");
    let jobs = app.context().start_jobs();
    let r = app.run_until_stopped().await;
    jobs.abort();
    Ok(r?)
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let url = settings.database_url.clone();
    let applied = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<String>> {
        let pools = campus_impl::db::connect_pools(&url, 1)?;
        Ok(campus_impl::db::migrate(&pools)?)
    })
    .await??;
    if applied.is_empty() {
        println!("no pending migrations");
    } else {
        for v in applied {
            println!("applied {v}");
        }
    }
    Ok(())
}
