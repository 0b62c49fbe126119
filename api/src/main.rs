//! The Campus Errand server: `demo` (the default `demo` feature), `serve`, `migrate` and
//! `config check`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[cfg(feature = "demo")]
use campus_api::demo;
use campus_api::{Application, telemetry};
use campus_impl::{Migrations, Settings, db};

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
    Serve {
        /// Do not migrate at start; refuse to start while migrations are pending. For
        /// deploys that run `migrate` once before starting the instances.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Applies pending migrations and exits (under a lock: safe to run from several hosts).
    Migrate {
        #[command(subcommand)]
        action: Option<MigrateAction>,
    },
    /// Settings.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum MigrateAction {
    /// Lists the migrations this binary knows, applied and pending.
    Status,
    /// Reverts the last applied migration (runs its down.sql).
    Revert,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Prints the effective settings (secrets as set/unset), names every missing or
    /// invalid one for `serve`, and exits non-zero if there is any.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(&cli.conf_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::Config {
        action: ConfigAction::Check,
    } = cli.command
    {
        return config_check(&settings);
    }
    let _guard = telemetry::init(
        &cli.log_dir,
        telemetry::LogOptions {
            format: settings.log_format,
            keep_days: settings.log_keep_days,
        },
    );
    let result = actix_web::rt::System::new().block_on(async move {
        match cli.command {
            #[cfg(feature = "demo")]
            Command::Demo => demo::run(settings).await,
            Command::Serve { no_migrate } => serve(settings, no_migrate).await,
            Command::Migrate { action } => migrate(settings, action).await,
            Command::Config { .. } => Ok(()),
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

async fn serve(settings: Settings, no_migrate: bool) -> anyhow::Result<()> {
    // First: a backend missing from the build is not fixed by any setting.
    campus_impl::db::check_url(&settings.database_url)?;
    settings.check_for_serve()?;
    let migrations = if no_migrate {
        Migrations::Expect
    } else {
        Migrations::Apply
    };
    let app = Application::build_with(settings, migrations).await?;
    tracing::info!(port = app.port(), "serving");
    let jobs = app.context().start_jobs();
    let r = app.run_until_stopped().await;
    jobs.abort();
    Ok(r?)
}

async fn migrate(settings: Settings, action: Option<MigrateAction>) -> anyhow::Result<()> {
    let url = settings.database_url.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let pools = db::connect_pools(&url, 1)?;
        match action {
            None => {
                let applied = db::migrate(&pools)?;
                if applied.is_empty() {
                    println!("no pending migrations");
                }
                for name in applied {
                    println!("applied {name}");
                }
            }
            Some(MigrateAction::Status) => {
                let all = db::migration_status(&pools)?;
                for m in &all {
                    let state = if m.applied { "applied" } else { "pending" };
                    println!("{state}  {}", m.name);
                }
                let pending = all.iter().filter(|m| !m.applied).count();
                println!("{} applied, {pending} pending", all.len() - pending);
            }
            Some(MigrateAction::Revert) => match db::revert_last_migration(&pools)? {
                Some(name) => println!("reverted {name}"),
                None => println!("nothing to revert"),
            },
        }
        Ok(())
    })
    .await?
}

/// `config check`: the effective settings, then every problem; exit code 1 if any.
fn config_check(settings: &Settings) -> ExitCode {
    for (name, value) in settings.effective() {
        println!("{name}={value}");
    }
    let problems = settings.deploy_problems();
    if problems.is_empty() {
        println!("ok: ready for serve");
        return ExitCode::SUCCESS;
    }
    println!();
    for p in &problems {
        println!("problem: {p}");
    }
    println!("{} problem(s): fix them before serve", problems.len());
    ExitCode::FAILURE
}
