//! `composer serve`, `composer worker`, `composer tenant key new`.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Settings file (default: `composer.toml` in the working directory).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (default: `[server] addr`, 127.0.0.1:8080).
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Serve the API only; `composer worker` processes execute the runs.
    #[arg(long)]
    pub no_worker: bool,
}

#[derive(clap::Subcommand)]
pub enum TenantCommand {
    /// API keys.
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(clap::Subcommand)]
pub enum KeyCommand {
    /// Print a new random key and the `key_sha256` line for composer.toml
    /// (the key itself is never stored).
    New,
}

fn init_logs() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("COMPOSER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn open(
    config: Option<&std::path::Path>,
) -> Option<(
    tokio::runtime::Runtime,
    std::sync::Arc<crate::server::ServerState>,
)> {
    let (settings, warnings) = match crate::config::discover(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return None;
        }
    };
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let runtime = super::run::runtime()?;
    match runtime.block_on(crate::server::ServerState::open(settings)) {
        Ok(state) => Some((runtime, state)),
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

pub fn serve(args: ServeArgs) -> ExitCode {
    init_logs();
    let Some((runtime, state)) = open(args.config.as_deref()) else {
        return ExitCode::from(2);
    };
    let addr = args.addr.unwrap_or_else(|| state.settings.addr.clone());
    // Tests and scripts read this line to learn the port.
    let announce = |local: &str| eprintln!("listening on http://{local}");
    match runtime.block_on(crate::server::serve(
        state,
        &addr,
        !args.no_worker,
        announce,
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(clap::Args)]
pub struct WorkerArgs {
    /// Settings file (default: `composer.toml` in the working directory).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Answer `/metrics`, `/healthz` and `/readyz` on this address (a
    /// worker serves no API).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
}

pub fn worker(args: WorkerArgs) -> ExitCode {
    init_logs();
    let Some((runtime, state)) = open(args.config.as_deref()) else {
        return ExitCode::from(2);
    };
    let announce = |local: &str| eprintln!("listening on http://{local}");
    match runtime.block_on(crate::server::work_only(
        state,
        args.metrics_addr.as_deref(),
        announce,
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn tenant(command: TenantCommand) -> ExitCode {
    match command {
        TenantCommand::Key(KeyCommand::New) => {
            let (key, line) = crate::server::tenants::new_key();
            println!("key:  {key}");
            println!("{line}");
            ExitCode::SUCCESS
        }
    }
}
