//! `exchange`: the one binary of the exchange. It parses arguments, loads configuration and calls
//! the libraries or the gRPC API; the logic lives in the library crates.

mod admin;
mod bench;
mod connect;
mod data;
mod output;
mod pki;
mod quickstart;
mod samples;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Servers and clients allocate many small, short-lived buffers per request across threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exchange: a cross-department data-sharing exchange.
#[derive(Debug, Parser)]
// `--version` is not propagated: `schema get --version N` is a schema version.
#[command(name = "exchange", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    common: connect::Common,
    /// Log as JSON lines instead of text (servers). The filter is EXCHANGE_LOG, e.g. "info,registry=debug".
    #[arg(long, global = true)]
    log_json: bool,
    /// Log filter, in tracing's EnvFilter syntax.
    #[arg(long, global = true, env = "EXCHANGE_LOG", default_value = "info")]
    log: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a complete local exchange: a dev PKI, a registry and the sample departments and datasets.
    Quickstart(quickstart::Args),
    /// Run a registry from a TOML configuration.
    Registry {
        /// The configuration file (see deploy/registry.toml).
        #[arg(long, short, env = "EXCHANGE_REGISTRY_CONFIG")]
        config: PathBuf,
    },
    /// Run a department's exchange node from a TOML configuration.
    Node {
        /// The configuration file (see deploy/node-gongan.toml).
        #[arg(long, short, env = "EXCHANGE_NODE_CONFIG")]
        config: PathBuf,
        /// Forget the node's view of the registry first and replay the registry's current state
        /// (after the registry was restored from an older backup; records and audit ledger kept).
        #[arg(long)]
        resync_registry_view: bool,
    },
    /// Write generated sample records of a quickstart dataset as NDJSON, to publish at scale.
    Samples {
        /// js.gongan/population, js.scjg/legal-persons or js.zrzy/places.
        dataset: String,
        /// How many records (each with its own key).
        #[arg(long, default_value_t = 1000)]
        count: usize,
    },
    /// Measure audited reads per second through a node, beside a bare-call baseline.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Verify a node's audit ledger offline: every entry's hash chain, from its data directory.
    VerifyLedger {
        /// The node's data directory (its `data_dir`), a copy of it, or its audit.ledger file.
        data_dir: PathBuf,
    },
    /// Create an exchange CA and issue certificates.
    #[command(subcommand)]
    Pki(pki::Command),
    /// Registry operations for admins, departments and auditors.
    #[command(flatten)]
    Admin(admin::Command),
    /// Reading and publishing data at a node.
    #[command(flatten)]
    Data(data::Command),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Audited, authorized Get calls against a bare call over the same connections.
    Reads(bench::Args),
}

/// Writes sample records as NDJSON to standard output, one at a time (memory stays flat).
fn write_samples(dataset: &str, count: usize) -> anyhow::Result<()> {
    use std::io::Write as _;
    let records = samples::records(dataset, count).ok_or_else(|| {
        anyhow::anyhow!(
            "no samples for {dataset}; there are samples for {}",
            samples::DATASETS.join(", ")
        )
    })?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for record in records {
        serde_json::to_writer(&mut out, &record)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Quickstart(args) => quickstart::run(args).await,
            Command::Registry { config } => run_registry(config).await,
            Command::Pki(command) => pki::run(command),
            Command::Admin(command) => admin::run(command, cli.common).await,
            Command::Data(command) => data::run(command, cli.common).await,
            Command::Node {
                config,
                resync_registry_view,
            } => run_node(config, resync_registry_view).await,
            Command::Bench(BenchCommand::Reads(args)) => bench::run(args).await,
            Command::VerifyLedger { data_dir } => verify_ledger(&data_dir),
            Command::Samples { dataset, count } => write_samples(&dataset, count),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `exchange query ... | head`: the reader had enough; that is not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_logging(cli: &Cli) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, not in a log file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run_registry(path: PathBuf) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let config = registry::Config::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    registry::run(config, listener, shutdown_signal()).await?;
    Ok(())
}

fn verify_ledger(path: &std::path::Path) -> anyhow::Result<()> {
    // The data directory, as documented, or the ledger file itself.
    let data_dir = match path.file_name() {
        Some(name) if name == exchange_node::LEDGER_FILE && path.is_file() => path.parent().unwrap_or(path),
        _ => path,
    };
    let ledger = data_dir.join(exchange_node::LEDGER_FILE);
    if !ledger.is_file() {
        anyhow::bail!(
            "no audit ledger at {}: pass a node's data_dir (the directory holding {}) or that file",
            ledger.display(),
            exchange_node::LEDGER_FILE
        );
    }
    let entries = exchange_node::read_ledger(data_dir)?;
    let allowed = entries
        .iter()
        .filter(|e| e.event.decision == exchange_core::ledger::Decision::Allow)
        .count();
    let head = entries.last().map(|e| e.hash.as_str()).unwrap_or("(empty)");
    println!(
        "ledger verified: {} entries ({allowed} allowed, {} denied), head {head}",
        entries.len(),
        entries.len() - allowed
    );
    // A chain proves nothing was changed inside it; only a head known from elsewhere proves
    // nothing was cut from its end.
    println!("compare the head with the node's (`exchange status`: audit head) to know no entry was cut from the end");
    Ok(())
}

async fn run_node(path: PathBuf, resync_registry_view: bool) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let config = exchange_node::Config::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if resync_registry_view {
        let forgotten = exchange_node::reset_registry_view(&config.data_dir)?;
        tracing::warn!(
            entries = forgotten,
            "forgot the registry view; replaying the registry's current state"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    exchange_node::run(config, listener, shutdown_signal()).await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM, so systemd and container runtimes stop the server gracefully.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// clap checks flag clashes only when a command is parsed; this checks every command's
    /// definition at once (a clash made `schema get` panic).
    #[test]
    fn every_command_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
