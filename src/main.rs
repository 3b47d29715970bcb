//! The `navet` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use navet::config::{LogFormat, Overrides, Settings};

#[derive(Parser)]
#[command(name = "navet", version, about = "navet: FHIR R4 gateway for coordinated care in the patient's home")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API. Without --config it runs on the embedded Skåne demo configuration.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on, host:port [default: 127.0.0.1:8080]
    #[arg(long, env = "NAVET_LISTEN")]
    listen: Option<String>,
    /// Data directory (SQLite database and keys) [default: ./navet-data]
    #[arg(long, env = "NAVET_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// navet.toml to use instead of the embedded demo configuration
    #[arg(long, env = "NAVET_CONFIG")]
    config: Option<PathBuf>,
    /// Public base URL clients use (links, Location headers) [default: http://{listen}]
    #[arg(long, env = "NAVET_BASE_URL")]
    base_url: Option<String>,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NAVET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let overrides = Overrides {
                listen: args.listen,
                data_dir: args.data_dir,
                config: args.config,
                base_url: args.base_url,
            };
            let settings = match Settings::load(&overrides) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("navet: {e}");
                    return ExitCode::from(2);
                }
            };
            init_logging(settings.log_format);
            let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("navet: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(navet::startup::run(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("navet: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
