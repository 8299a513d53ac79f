//! `exchange`: the one binary of the exchange. It parses arguments, loads configuration and calls
//! the libraries or the gRPC API; the logic lives in the library crates.

mod admin;
mod audit;
mod bench;
mod connect;
mod data;
mod export;
mod import;
mod output;
mod pki;
mod quickstart;
mod samples;
mod statefile;

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
        /// Move the node's store to this engine (fjall or sled) and exit, the node stopped:
        /// every entry is copied and checked, the old store kept as store.<engine>-old.
        #[arg(long, value_parser = ["fjall", "sled"], conflicts_with = "resync_registry_view")]
        convert_store: Option<String>,
    },
    /// Generate valid sample records of a quickstart dataset (correct check digits, every key
    /// different, the same records on every run) as NDJSON or CSV, to publish at scale.
    #[command(alias = "samples")]
    Gen {
        /// population, legal-persons or places (or js.gongan/population, js.scjg/legal-persons,
        /// js.zrzy/places).
        dataset: String,
        /// How many records.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Write to this file instead of standard output (CSV when it ends in .csv).
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Write CSV (a header row of field names) instead of NDJSON.
        #[arg(long)]
        csv: bool,
    },
    /// Measure every performance target beside its baseline on this machine (release build), and
    /// write the table into BENCHMARKS.md.
    Bench(bench::Args),
    /// Verify a node's (or the registry's) audit ledger offline: every entry rehashed, the Merkle tree rebuilt and
    /// checked against the signed checkpoint; names the first broken entry.
    VerifyLedger {
        /// The server's data directory (its `data_dir`), a copy of it, or its ledger directory.
        data_dir: PathBuf,
        /// The node's verifier key (C2SP vkey text) as the registry pinned it. Without it the
        /// key in the data directory is used, which proves nothing against whoever holds it.
        #[arg(long)]
        vkey: Option<String>,
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
    /// A node's audit ledger: checkpoints, proofs, and checking receipts.
    #[command(subcommand)]
    Audit(audit::Command),
}

/// Writes sample records as NDJSON to standard output, one at a time (memory stays flat).
fn write_samples(dataset: &str, count: usize, out: Option<PathBuf>, csv: bool) -> anyhow::Result<()> {
    use anyhow::Context as _;
    match out {
        None => samples::write(dataset, count, csv, std::io::stdout().lock()),
        Some(path) => {
            let csv = csv || path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
            let file = std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
            samples::write(dataset, count, csv, file)?;
            eprintln!("{count} records of {dataset} written to {}", path.display());
            Ok(())
        }
    }
}

/// Printing to a pipe whose reader has gone (`exchange ... | head`) ends the command quietly, as
/// a SIGPIPE would: Rust ignores the signal, so `println!` panics instead, and setting the signal
/// back needs unsafe code, which the workspace forbids.
fn exit_quietly_on_a_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            // 128 + SIGPIPE, what a shell reports for a command ended by it.
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    exit_quietly_on_a_closed_pipe();
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
            Command::Audit(command) => audit::run(command, cli.common).await,
            Command::Node {
                config,
                resync_registry_view,
                convert_store,
            } => match convert_store {
                Some(engine) => convert_node_store(&config, &engine),
                None => run_node(config, resync_registry_view).await,
            },
            Command::Bench(args) => bench::run(args).await,
            Command::VerifyLedger { data_dir, vkey } => verify_ledger(&data_dir, vkey.as_deref()),
            Command::Gen {
                dataset,
                count,
                out,
                csv,
            } => write_samples(&dataset, count, out, csv),
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

fn verify_ledger(path: &std::path::Path, vkey: Option<&str>) -> anyhow::Result<()> {
    // The data directory, as documented, or the ledger directory in it.
    let data_dir = match path.file_name() {
        Some(name) if name == exchange_node::LEDGER_DIR && !path.join(exchange_node::LEDGER_DIR).exists() => {
            path.parent().unwrap_or(path)
        }
        _ => path,
    };
    let ledger = data_dir.join(exchange_node::LEDGER_DIR);
    if !ledger.is_dir() {
        anyhow::bail!(
            "no audit ledger at {}: pass a node's data_dir (the directory holding {}/) or that directory",
            ledger.display(),
            exchange_node::LEDGER_DIR
        );
    }
    let (log, whose) = match vkey {
        Some(text) => (exchange_core::tlog::LogVerifier::parse(text)?, "the key given"),
        None => (
            exchange_node::node_log_verifier(data_dir)?,
            "the node's own key (log.key)",
        ),
    };
    let verified = exchange_core::ledger::verify_dir(&ledger, &log)?;
    println!(
        "ledger verified: {} entries ({} allowed, {} denied)",
        verified.size,
        verified.allowed,
        verified.size - verified.allowed
    );
    match &verified.checkpoint {
        Some(c) => {
            println!(
                "signed: checkpoint of {} entries, root {}, by {}",
                c.size,
                exchange_core::tlog::base64(&c.root.0),
                log.text()
            );
            if verified.size > c.size {
                println!(
                    "{} entries after it are not signed yet (a running node signs within a second)",
                    verified.size - c.size
                );
            }
        }
        None if verified.size == 0 => println!("the ledger is empty"),
        None => anyhow::bail!(
            "the ledger holds {} entries but no signed checkpoint (ledger/checkpoint is missing): nothing proves \
             the entries were not changed or cut. A running node signs within a second; otherwise compare with \
             the checkpoint the registry accepted (exchange dept ledger DEPT)",
            verified.size
        ),
    }
    if verified.torn_bytes > 0 {
        println!(
            "a torn last line of {} bytes was never acknowledged; the node cuts it off when it starts",
            verified.torn_bytes
        );
    }
    if verified.pruned > 0 {
        println!(
            "the first {} entries were pruned (retention): their hashes, checked against the checkpoint, stand for them",
            verified.pruned
        );
    }
    if vkey.is_none() {
        println!("checked against {whose}: pass --vkey with the key the registry pinned to know it was not replaced");
    }
    Ok(())
}

fn convert_node_store(path: &std::path::Path, engine: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use exchange_core::store::Engine;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut config = exchange_node::Config::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let to = if engine == "sled" { Engine::Sled } else { Engine::Fjall };
    let started = std::time::Instant::now();
    let (copied, from) = exchange_node::convert_store(&config.data_dir, to, config.store.cache_mib)?;
    println!(
        "moved the store in {} from {} to {}: {copied} entries copied and checked in {:.1} s; the old store is {}/store.{}-old (remove it once the node runs well)",
        config.data_dir.display(),
        from.name(),
        to.name(),
        started.elapsed().as_secs_f64(),
        config.data_dir.display(),
        from.name()
    );
    if config.store.engine.take().is_some_and(|named| named != to) {
        println!(
            "{} names store.engine = \"{}\": set it to \"{}\" (or remove it) before starting the node",
            path.display(),
            from.name(),
            to.name()
        );
    }
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

    /// An argument named like a global flag (`key`, `node`, `cert`, ...) clashes with it only when
    /// both are read, which debug_assert does not see (`audit who-read DATASET KEY` panicked).
    #[test]
    fn no_argument_shadows_a_global_flag() {
        use clap::Parser as _;
        for args in [
            &[
                "exchange",
                "--key",
                "k.pem",
                "audit",
                "who-read",
                "d/x",
                "320102195001010012",
            ][..],
            &[
                "exchange",
                "--key",
                "k.pem",
                "audit",
                "query",
                "--record",
                "320102195001010012",
            ],
            &["exchange", "--key", "k.pem", "get", "d/x", "k1", "--purpose", "p"],
        ] {
            let cli = super::Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(
                cli.common.connect.key.as_deref(),
                Some(std::path::Path::new("k.pem")),
                "{args:?}"
            );
        }
    }
}
