//! The `navet` command line: `serve`, and the authentication helpers `keygen`, `token` and `rotate-key`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use navet::auth::cli::{self as auth_cli, KeyAlg};
use navet::auth::{AuthConfig, PurposeOfUse};
use navet::config::{LogFormat, Overrides, Settings};

#[derive(Parser)]
#[command(
    name = "navet",
    version,
    about = "navet: FHIR R4 gateway for coordinated care in the patient's home"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API. Without --config it runs on the embedded Skåne demo configuration.
    Serve(ServeArgs),
    /// Make a client key pair (written to files) and print the navet.toml snippet that registers it.
    Keygen(KeygenArgs),
    /// Get an access token from a running navet and print only the token (for `TOKEN=$(navet token …)`).
    Token(TokenArgs),
    /// Start signing tokens with a new key; the old key keeps verifying until its tokens have expired.
    /// A running navet picks the new key up on SIGHUP or restart.
    RotateKey(ConfigArgs),
    /// Bring the store's schema up to date and exit (also done at every start; run it before starting
    /// several nodes of a new version at once).
    Migrate(ConfigArgs),
    /// Write every row of the store (resources, history, outbox, messages, the access log) to a dump file, to
    /// move it to another store: SQLite to PostgreSQL or back.
    Export(MoveArgs),
    /// Read a dump made by `navet export` into an empty store (a fresh data directory, or an empty database).
    Import(MoveArgs),
    /// The access log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run a simulated itACiH (spec/itacih.md) for tests and demos, with switchable failure modes
    /// (POST /sim/mode); see the README's hospital story.
    ItacihSim(SimArgs),
}

#[derive(clap::Args)]
struct SimArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:9300")]
    listen: std::net::SocketAddr,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the access log's hash chain offline; exit 0 when intact, 1 naming the first broken record.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// Data directory (SQLite database and keys) [default: ./navet-data]
    #[arg(long, env = "NAVET_DATA_DIR", default_value = "./navet-data")]
    data_dir: PathBuf,
    /// A copy of the checkpoint file kept elsewhere (repeatable): the log must match its checkpoints too.
    #[arg(long)]
    checkpoints: Vec<PathBuf>,
    /// The PostgreSQL database whose log to verify (with the node's data directory for its keys and file)
    #[arg(long, env = "NAVET_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(clap::Args)]
struct DataDirArgs {
    /// Data directory (SQLite database and keys) [default: ./navet-data]
    #[arg(long, env = "NAVET_DATA_DIR", default_value = "./navet-data")]
    data_dir: PathBuf,
}

#[derive(clap::Args)]
struct MoveArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The dump file (JSON lines)
    #[arg(long)]
    file: PathBuf,
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// Data directory (SQLite database and keys) [default: ./navet-data]
    #[arg(long, env = "NAVET_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// navet.toml to use instead of the embedded demo configuration
    #[arg(long, env = "NAVET_CONFIG")]
    config: Option<PathBuf>,
    /// postgres://… database to run on instead of SQLite in the data directory (overrides [store] url)
    #[arg(long, env = "NAVET_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on, host:port [default: 127.0.0.1:8080]
    #[arg(long, env = "NAVET_LISTEN")]
    listen: Option<String>,
    #[command(flatten)]
    config: ConfigArgs,
    /// Public base URL clients use (links, Location headers, token audience) [default: http(s)://{listen}]
    #[arg(long, env = "NAVET_BASE_URL")]
    base_url: Option<String>,
    /// PEM certificate chain: serve HTTPS (needs --tls-key)
    #[arg(long, env = "NAVET_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate
    #[arg(long, env = "NAVET_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificates: require a client certificate signed by one of them (mutual TLS)
    #[arg(long, env = "NAVET_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Alg {
    Es384,
    Rs384,
}

#[derive(clap::Args)]
struct KeygenArgs {
    /// The client id to register (1..=128 of A-Z a-z 0-9 . _ -)
    #[arg(long)]
    client: String,
    /// HSA-id of the principal the client belongs to
    #[arg(long)]
    principal: String,
    /// Signature algorithm of the client assertions
    #[arg(long, value_enum, default_value = "es384")]
    alg: Alg,
    /// Folder to write <client>.key.pem (private, mode 0600) and <client>.pub.pem into
    #[arg(long, default_value = ".")]
    out: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum Purpose {
    #[value(name = "TREAT")]
    Treat,
    #[value(name = "ETREAT")]
    Etreat,
    #[value(name = "HOPERAT")]
    Hoperat,
}

#[derive(clap::Args)]
struct TokenArgs {
    /// navet's base URL
    #[arg(long, env = "NAVET_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The registered client id
    #[arg(long)]
    client: String,
    /// HSA-id of the acting user, one of the configuration's [[users]]
    #[arg(long)]
    user: Option<String>,
    /// Purpose of use for the acting user
    #[arg(long, value_enum, default_value = "TREAT")]
    purpose: Purpose,
    /// The client's private key (PKCS#8 PEM) [default: the demo key of a demo client]
    #[arg(long)]
    key: Option<PathBuf>,
    /// SMART v2 scopes to ask for
    #[arg(long, default_value = "system/*.cruds")]
    scope: String,
    /// navet.toml whose [[users]] --user is looked up in [default: the embedded demo configuration]
    #[arg(long, env = "NAVET_CONFIG")]
    config: Option<PathBuf>,
    /// PEM CA certificate(s) to trust for the server (a private CA), besides the system's
    #[arg(long)]
    ca: Option<PathBuf>,
    /// PEM client certificate to present, for a navet that requires mutual TLS (needs --client-key)
    #[arg(long)]
    client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert
    #[arg(long)]
    client_key: Option<PathBuf>,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NAVET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Serve(args) => serve(args),
        Command::Keygen(args) => keygen(args),
        Command::Token(args) => token(args),
        Command::RotateKey(args) => rotate_key(args),
        Command::Migrate(args) => migrate(args),
        Command::Export(args) => export(args),
        Command::Import(args) => import(args),
        Command::Audit(AuditCommand::Verify(args)) => audit_verify(args),
        Command::ItacihSim(args) => itacih_sim(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("navet: {message}");
            ExitCode::from(code)
        }
    }
}

/// Exit code 2 for configuration and usage errors, 1 for failures while running.
type CmdResult = Result<(), (u8, String)>;

fn load_settings(overrides: &Overrides) -> Result<Settings, (u8, String)> {
    Settings::load(overrides).map_err(|e| (2, e.to_string()))
}

fn itacih_sim(args: SimArgs) -> CmdResult {
    init_logging(LogFormat::Text);
    runtime().map_err(|e| (1, e))?.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| (1, format!("cannot listen on {}: {e}", args.listen)))?;
        tracing::info!(
            "simulated itACiH at http://{}/api/v1 (modes: POST /sim/mode)",
            args.listen
        );
        let state = navet::itacih::sim::Shared::default();
        axum::serve(listener, navet::itacih::sim::app(state))
            .await
            .map_err(|e| (1, e.to_string()))
    })
}

fn serve(args: ServeArgs) -> CmdResult {
    let settings = load_settings(&Overrides {
        listen: args.listen,
        data_dir: args.config.data_dir,
        config: args.config.config,
        database_url: args.config.database_url,
        base_url: args.base_url,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        tls_client_ca: args.tls_client_ca,
    })?;
    init_logging(settings.log_format);
    runtime()
        .map_err(|e| (1, e))?
        .block_on(navet::startup::run(settings))
        .map_err(|e| (1, e))
}

fn keygen(args: KeygenArgs) -> CmdResult {
    let alg = match args.alg {
        Alg::Es384 => KeyAlg::Es384,
        Alg::Rs384 => KeyAlg::Rs384,
    };
    let out =
        auth_cli::keygen(&args.client, &args.principal, alg).map_err(|e| (2, e.to_string()))?;
    std::fs::create_dir_all(&args.out).map_err(|e| (1, format!("{}: {e}", args.out.display())))?;
    let private_path = args.out.join(format!("{}.key.pem", args.client));
    let public_path = args.out.join(format!("{}.pub.pem", args.client));
    write_private(&private_path, &out.private_pem)
        .map_err(|e| (1, format!("{}: {e}", private_path.display())))?;
    std::fs::write(&public_path, &out.public_pem)
        .map_err(|e| (1, format!("{}: {e}", public_path.display())))?;
    eprintln!(
        "wrote {} (keep it with the client) and {} (copy it next to navet.toml)",
        private_path.display(),
        public_path.display()
    );
    println!("{}", out.config_snippet);
    Ok(())
}

/// The private key file is created readable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

fn token(args: TokenArgs) -> CmdResult {
    let key = match &args.key {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| (2, format!("{}: {e}", path.display())))?
        }
        None => auth_cli::demo_private_key(&args.client)
            .map_err(|e| (2, e.to_string()))?
            .to_owned(),
    };
    let user = match &args.user {
        None => None,
        Some(user) => {
            let settings = load_settings(&Overrides {
                config: args.config.clone(),
                ..Overrides::default()
            })?;
            let purpose = match args.purpose {
                Purpose::Treat => PurposeOfUse::Treat,
                Purpose::Etreat => PurposeOfUse::Etreat,
                Purpose::Hoperat => PurposeOfUse::Hoperat,
            };
            Some(
                auth_cli::user_claims(&settings.auth, user, purpose)
                    .map_err(|e| (2, e.to_string()))?,
            )
        }
    };
    let http = token_http_client(&args)?;
    let token = runtime()
        .map_err(|e| (1, e))?
        .block_on(auth_cli::fetch_token_with(
            &http,
            &args.server,
            &args.client,
            &key,
            &args.scope,
            user.as_ref(),
        ))
        .map_err(|e| (1, e.to_string()))?;
    // Only the token on stdout, so `TOKEN=$(navet token …)` works.
    println!("{token}");
    Ok(())
}

/// The HTTP client `navet token` uses: the system's roots plus `--ca`, and `--client-cert` for mutual TLS.
fn token_http_client(args: &TokenArgs) -> Result<reqwest::Client, (u8, String)> {
    let read =
        |path: &PathBuf| std::fs::read(path).map_err(|e| (2, format!("{}: {e}", path.display())));
    let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
    if let Some(ca) = &args.ca {
        for cert in reqwest::Certificate::from_pem_bundle(&read(ca)?)
            .map_err(|e| (2, format!("{}: {e}", ca.display())))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    match (&args.client_cert, &args.client_key) {
        (Some(cert), Some(key)) => {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| (2, format!("{}: {e}", cert.display())))?;
            builder = builder.identity(identity);
        }
        (None, None) => {}
        _ => return Err((2, "--client-cert and --client-key go together".into())),
    }
    builder.build().map_err(|e| (1, e.to_string()))
}

fn migrate(args: ConfigArgs) -> CmdResult {
    let settings = load_settings(&Overrides {
        data_dir: args.data_dir,
        config: args.config,
        database_url: args.database_url,
        ..Overrides::default()
    })?;
    init_logging(settings.log_format);
    let applied = match &settings.database_url {
        Some(url) => {
            navet::store::postgres::migrate::migrate_url(url).map_err(|e| (1, e.to_string()))?
        }
        // SQLite brings its schema up to date whenever it opens; opening and closing is the migration.
        None => {
            let store = navet::store::sqlite::SqliteStore::open(&settings.data_dir)
                .map_err(|e| (1, e.to_string()))?;
            store.shutdown_blocking();
            Vec::new()
        }
    };
    if applied.is_empty() {
        eprintln!("the schema is up to date");
    } else {
        let steps: Vec<String> = applied.iter().map(ToString::to_string).collect();
        eprintln!("applied migration step(s) {}", steps.join(", "));
    }
    Ok(())
}

fn move_settings(args: &MoveArgs) -> Result<Settings, (u8, String)> {
    load_settings(&Overrides {
        data_dir: args.config.data_dir.clone(),
        config: args.config.config.clone(),
        database_url: args.config.database_url.clone(),
        ..Overrides::default()
    })
}

fn export(args: MoveArgs) -> CmdResult {
    let settings = move_settings(&args)?;
    let file = std::fs::File::create_new(&args.file)
        .map_err(|e| (1, format!("{}: {e}", args.file.display())))?;
    let mut out = std::io::BufWriter::new(file);
    let rows = match &settings.database_url {
        Some(url) => navet::store::postgres::dump::export(url, &mut out),
        None => navet::store::dump_sqlite::export(&settings.data_dir, &mut out),
    }
    .map_err(|e| (1, e.to_string()))?;
    std::io::Write::flush(&mut out).map_err(|e| (1, format!("{}: {e}", args.file.display())))?;
    eprintln!("exported {rows} rows to {}", args.file.display());
    Ok(())
}

fn import(args: MoveArgs) -> CmdResult {
    let settings = move_settings(&args)?;
    let file = std::fs::File::open(&args.file)
        .map_err(|e| (1, format!("{}: {e}", args.file.display())))?;
    let mut input = std::io::BufReader::new(file);
    let rows = match &settings.database_url {
        Some(url) => navet::store::postgres::dump::import(url, &mut input),
        None => navet::store::dump_sqlite::import(&settings.data_dir, &mut input),
    }
    .map_err(|e| (1, e.to_string()))?;
    eprintln!("imported {rows} rows from {}", args.file.display());
    Ok(())
}

fn rotate_key(args: ConfigArgs) -> CmdResult {
    let settings = load_settings(&Overrides {
        data_dir: args.data_dir,
        config: args.config,
        database_url: args.database_url,
        ..Overrides::default()
    })?;
    let auth: &AuthConfig = &settings.auth;
    let dir = navet::auth::config::signing_key_dir(auth, &settings.data_dir);
    let now = jiff::Timestamp::now().as_second();
    let ring = navet::auth::keys::KeyRing::rotate(&dir, now, auth.auth.token_lifetime_secs)
        .map_err(|e| (1, e.to_string()))?;
    println!("{}", ring.signing_key().kid());
    eprintln!(
        "new signing key {} in {}; send SIGHUP to (or restart) a running navet to sign with it",
        ring.signing_key().kid(),
        dir.display()
    );
    Ok(())
}

fn audit_verify(args: VerifyArgs) -> CmdResult {
    let report = match args.database_url.as_deref().filter(|u| !u.is_empty()) {
        Some(url) => {
            if !args.checkpoints.is_empty() {
                return Err((
                    2,
                    "--checkpoints copies are checked on SQLite data directories; on PostgreSQL every node's \
                     checkpoints are in the database, each verified against the key it names"
                        .into(),
                ));
            }
            navet::store::postgres::verify_database(url, &args.data_dir).map_err(|e| (2, e))?
        }
        None => navet::audit::chain::verify_data_dir_with(&args.data_dir, &args.checkpoints)
            .map_err(|e| (2, e))?,
    };
    match report.first_broken {
        None => {
            println!(
                "intact: {} records, {} signed checkpoints",
                report.records, report.checkpoints
            );
            Ok(())
        }
        Some(broken) => Err((
            1,
            format!(
                "the access log is broken at record {} of the {} chain (AuditEvent/{}): {}",
                broken.seq,
                broken.chain.name(),
                broken.id,
                broken.reason
            ),
        )),
    }
}
