//! The Campus Errand server: `demo` (the default `demo` feature), `serve`, `migrate` and
//! `config check`; and the operators' `backup`, `restore` and `draw replay`.

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
    /// Writes a consistent backup of every table to STORAGE_URL (backups/<date>/…), or
    /// lists the backups there.
    Backup {
        /// List the backups instead (key, size, time).
        #[arg(long)]
        list: bool,
    },
    /// Restores a backup into the database at DATABASE_URL, which must hold no data
    /// (an empty or new database of either backend; the schema is created).
    Restore {
        /// The backup's key as `backup --list` shows it, or `latest`.
        key: String,
    },
    /// Lucky draws.
    Draw {
        #[command(subcommand)]
        action: DrawAction,
    },
    /// Creates the official account's menu from a file of WeChat's menu JSON
    /// (`cgi-bin/menu/create`, with WECHAT_MP_APPID and WECHAT_MP_SECRET); a click
    /// button's key is the text command its tap sends.
    MpMenu {
        /// The menu file.
        #[arg(long, default_value = "conf/mp_menu.json")]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum DrawAction {
    /// Re-runs a drawn draw from its stored seed and participants (DATABASE_URL),
    /// prints the winners and whether they match the stored ones; exits non-zero when
    /// they do not.
    Replay {
        /// The draw's id.
        id: i64,
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
            Command::Backup { list } => backup(settings, list).await,
            Command::Restore { key } => restore(settings, key).await,
            Command::Draw {
                action: DrawAction::Replay { id },
            } => draw_replay(settings, id).await,
            Command::MpMenu { file } => mp_menu(settings, &file).await,
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

async fn mp_menu(settings: Settings, file: &std::path::Path) -> anyhow::Result<()> {
    let menu = campus_impl::mp_menu::load(file)?;
    campus_impl::mp_menu::create(&settings, &menu).await?;
    println!(
        "menu created from {} (click keys: {})",
        file.display(),
        menu.click_keys.join(", ")
    );
    Ok(())
}

async fn draw_replay(settings: Settings, id: i64) -> anyhow::Result<()> {
    use campus_impl::promotions::draws::{ALGORITHM, Draws};
    campus_impl::db::check_url(&settings.database_url)?;
    let url = settings.database_url.clone();
    let pools =
        tokio::task::spawn_blocking(move || campus_impl::db::connect_pools(&url, 2)).await??;
    let draws = Draws::new(db::Db::new(pools), settings.draw_lock_secs);
    let r = draws.replay(campus_impl::DrawId(id)).await?;
    println!("draw {}", r.draw);
    println!("seed {}", r.seed);
    println!("algorithm {ALGORITHM}");
    println!("participants {}", r.participants.len());
    for (user, prize) in &r.computed {
        println!("winner {user} {prize}");
    }
    if r.matches() {
        println!("matches stored winners: yes");
        Ok(())
    } else {
        for (user, prize) in &r.stored {
            println!("stored {user} {prize}");
        }
        println!("matches stored winners: no");
        anyhow::bail!("the stored winners differ from the replay")
    }
}

/// The backup service over the configured database and object store (no server, no WeChat).
async fn backups(settings: &Settings) -> anyhow::Result<campus_impl::backups::Backups> {
    campus_impl::db::check_url(&settings.database_url)?;
    let url = settings.database_url.clone();
    let pools =
        tokio::task::spawn_blocking(move || campus_impl::db::connect_pools(&url, 2)).await??;
    let storage =
        campus_impl::storage::Storage::build(settings, campus_impl::telemetry::Metrics::new())?;
    Ok(campus_impl::backups::Backups::new(
        pools,
        storage,
        settings.backup_hour_beijing,
        settings.backup_keep_days,
    ))
}

async fn backup(settings: Settings, list: bool) -> anyhow::Result<()> {
    let backups = backups(&settings).await?;
    if list {
        for o in backups.list().await? {
            println!(
                "{}\t{}\t{}",
                o.key,
                o.size,
                o.last_modified
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
        }
        return Ok(());
    }
    let written = backups.backup(progress::for_stderr()).await?;
    println!(
        "{}\t{} bytes\t{} rows in {} tables",
        written.key,
        written.bytes,
        written.rows(),
        written.tables.len()
    );
    Ok(())
}

async fn restore(settings: Settings, key: String) -> anyhow::Result<()> {
    let backups = backups(&settings).await?;
    let summary = backups.restore(&key, progress::for_stderr()).await?;
    println!(
        "restored {key} ({} backup of {}): {} rows in {} tables",
        summary.header.backend,
        summary
            .header
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        summary.rows(),
        summary.tables.len()
    );
    Ok(())
}

/// Progress of a backup or restore on stderr: a bar on a terminal, plain lines otherwise
/// (logs and CI keep no carriage-return animations).
mod progress {
    use std::io::IsTerminal;
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use campus_impl::backups::Progress;
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

    pub fn for_stderr() -> Arc<dyn Progress> {
        if std::io::stderr().is_terminal() {
            Arc::new(Bar(Mutex::new(None)))
        } else {
            Arc::new(Lines {
                phase: Mutex::new(""),
                rows: AtomicU64::new(0),
            })
        }
    }

    struct Bar(Mutex<Option<ProgressBar>>);

    impl Bar {
        fn with(&self, f: impl FnOnce(&ProgressBar)) {
            if let Ok(guard) = self.0.lock()
                && let Some(bar) = guard.as_ref()
            {
                f(bar);
            }
        }
    }

    impl Progress for Bar {
        fn start(&self, phase: &'static str, rows: Option<u64>) {
            let bar = match rows {
                Some(n) => {
                    let bar = ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr());
                    if let Ok(style) = ProgressStyle::with_template(
                        "{prefix} {elapsed_precise} [{bar:30}] {pos}/{len} rows ({per_sec}) {msg}",
                    ) {
                        bar.set_style(style.progress_chars("=> "));
                    }
                    bar
                }
                None => ProgressBar::new_spinner(),
            };
            bar.set_prefix(phase);
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            if let Ok(mut guard) = self.0.lock()
                && let Some(old) = guard.replace(bar)
            {
                old.finish();
            }
        }
        fn table(&self, name: &'static str) {
            self.with(|b| b.set_message(name));
        }
        fn rows(&self, n: u64) {
            self.with(|b| b.inc(n));
        }
        fn finish(&self) {
            self.with(|b| b.finish_with_message("done"));
        }
    }

    /// One line per phase and table, and one per 100 000 rows.
    struct Lines {
        phase: Mutex<&'static str>,
        rows: AtomicU64,
    }

    const EVERY: u64 = 100_000;

    impl Progress for Lines {
        fn start(&self, phase: &'static str, rows: Option<u64>) {
            if let Ok(mut p) = self.phase.lock() {
                *p = phase;
            }
            self.rows.store(0, Ordering::Relaxed);
            match rows {
                Some(n) => eprintln!("{phase}: {n} rows"),
                None => eprintln!("{phase}"),
            }
        }
        fn table(&self, name: &'static str) {
            let phase = self.phase.lock().map(|p| *p).unwrap_or("");
            eprintln!("{phase}: {name}");
        }
        fn rows(&self, n: u64) {
            let before = self.rows.fetch_add(n, Ordering::Relaxed);
            if (before + n) / EVERY > before / EVERY {
                eprintln!("  {} rows", before + n);
            }
        }
        fn finish(&self) {
            eprintln!("done: {} rows", self.rows.load(Ordering::Relaxed));
        }
    }
}
