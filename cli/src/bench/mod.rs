//! `exchange bench`: every performance target of the exchange measured beside its baseline in
//! one run, on this machine, over loopback with real mutual TLS. Prints a table and writes it
//! into BENCHMARKS.md (between the markers of [`report`]) with the machine, the commit and the
//! command line.
//!
//! Registry, node, baseline server and clients share one tokio runtime (a worker thread per
//! core) plus the node's writer thread, except in row 7, where the node runs as its own process
//! so that its memory is its own.
//!
//! # Layout
//! - `exchange`: the registry and node under test, the population dataset and the grants.
//! - `baseline`: the bare tonic server the read rows are measured against.
//! - `load`: closed-loop load and latency percentiles.
//! - `reads`: rows 1, 4 and 8. `data`: rows 2 and 3. `control`: rows 6 and 9.
//!   `audit`: row 5. `memory`: row 7.
//! - `report`: the table, BENCHMARKS.md and `--json`.

mod audit;
mod baseline;
mod bulk;
mod control;
mod data;
mod exchange;
mod load;
mod memory;
mod reads;
mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use exchange_core::identity::Role;
use exchange_proto::node::v1::node_client::NodeClient;

use crate::output::status_error;

/// Bench flags. The defaults are the targets' sizes.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// Seconds each closed-loop measurement runs (rows 1, 4, 7 and 8).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Client connections for the Gets.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Gets in flight, over all connections.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Records published and streamed (rows 2, 3 and 7).
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Shipped events the auditor queries of row 5 run over.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Nodes watching the registry in row 9.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Samples of each latency in rows 5, 6 and 9.
    #[arg(long, default_value_t = 50)]
    samples: usize,
    /// Where to write the report (its section between the markers is replaced, the rest kept).
    #[arg(long, default_value = "BENCHMARKS.md")]
    report: PathBuf,
    /// Do not write the report, only print the table.
    #[arg(long, conflicts_with = "report")]
    no_report: bool,
    /// Also write the rows as JSON to this file.
    #[arg(long)]
    json_report: Option<PathBuf>,
    /// Instead of the table: a node at province scale, with this many generated records (e.g.
    /// 10000000): import, size on disk, restart, export, memory and CPU, on the default store
    /// engine, and both engines at --bulk-compare records.
    #[arg(long)]
    bulk: Option<usize>,
    /// With --bulk: the node's `store.background_workers` (fjall's flushing and compacting
    /// threads).
    #[arg(long, default_value_t = exchange_core::store::DEFAULT_BACKGROUND_WORKERS, requires = "bulk")]
    bulk_background_workers: usize,
    /// Records both store engines are measured on with --bulk (0: no comparison).
    #[arg(long, default_value_t = 1_000_000, requires = "bulk")]
    bulk_compare: usize,
    /// Where the bench keeps its data while it runs (removed at the end). Default: the system's
    /// temporary directory.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// How the Gets are driven.
pub(crate) struct Shape {
    pub(crate) seconds: f64,
    pub(crate) connections: usize,
    pub(crate) in_flight: usize,
}

/// One row of the table: what was measured, beside its baseline and its target.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Row {
    pub(crate) number: u8,
    pub(crate) what: String,
    pub(crate) measured: String,
    pub(crate) baseline: String,
    pub(crate) target: String,
    /// How the measurement compares with the target, in a few words.
    pub(crate) outcome: String,
    pub(crate) met: bool,
    /// The figures behind the row, by name.
    pub(crate) figures: Vec<(String, f64)>,
}

/// Runs every row.
pub(crate) async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(records) = args.bulk {
        return bulk::run(&args, records, args.bulk_compare.min(records)).await;
    }
    anyhow::ensure!(
        args.records >= 1000,
        "--records must be at least 1000 (one publish batch)"
    );
    anyhow::ensure!(args.seconds > 0.0, "--seconds must be more than 0");
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("exchange-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    let result = rows(&dir, &args).await;
    let _ = std::fs::remove_dir_all(&dir);
    let mut rows = result?;
    rows.sort_by_key(|r| r.number);
    let run = report::Run::describe(&args, started.elapsed());
    println!("{}", report::table(&run, &rows));
    if !args.no_report {
        report::write(&args.report, &run, &rows)?;
        println!("written to {}", args.report.display());
    }
    if let Some(path) = &args.json_report {
        std::fs::write(path, serde_json::to_vec_pretty(&report::json(&run, &rows))?)?;
    }
    Ok(())
}

async fn rows(dir: &std::path::Path, args: &Args) -> anyhow::Result<Vec<Row>> {
    let shape = Shape {
        seconds: args.seconds,
        connections: args.connections.max(1),
        in_flight: args.in_flight.max(1),
    };
    let watchers = control::watcher_departments(args.watchers);
    let step = |what: &str| eprintln!("bench: {what}");
    step("starting a registry and a node");
    let mut ex = exchange::Exchange::start(dir, &watchers).await?;
    let mut rows = Vec::new();
    step("row 9: grant decisions with and without watching nodes");
    rows.push(control::grant_decisions(&mut ex, &watchers, args.samples).await?);
    step("row 6: revocations");
    rows.push(control::revocation(&mut ex, args.samples).await?);

    step("row 3: generating and publishing the records");
    let records = data::Records::generate(args.records);
    let owner_channel = ex.channel(exchange::OWNER, Role::System).await?;
    let mut owner = NodeClient::new(owner_channel.clone());
    rows.push(data::publish(&owner, &records, dir).await?);
    let keys: Arc<Vec<String>> = Arc::new(records.items.iter().map(|(k, _)| k.clone()).collect());

    // The baseline answers with what the node answers: a real Get reply, the owner's stream.
    let mut node_channels = Vec::new();
    for _ in 0..shape.connections {
        node_channels.push(ex.channel(exchange::CONSUMER, Role::System).await?);
    }
    let get_reply = NodeClient::new(node_channels[0].clone())
        .get(exchange::get_request(keys[0].clone(), exchange::PURPOSE))
        .await
        .map_err(status_error)?
        .into_inner();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let baseline_url = format!("https://localhost:{}", listener.local_addr()?.port());
    let (stop_baseline, mut stopped) = tokio::sync::watch::channel(false);
    let baseline_task = tokio::spawn(baseline::serve(
        ex.node_tls()?,
        exchange::TRUST_DOMAIN,
        baseline::Replies {
            get: prost::Message::encode_to_vec(&get_reply).into(),
            query: records.query_messages(),
        },
        listener,
        async move {
            let _ = stopped.wait_for(|&s| s).await;
        },
    ));
    let mut baseline_channels = Vec::new();
    for _ in 0..shape.connections {
        baseline_channels.push(ex.channel_to(&baseline_url, exchange::CONSUMER, Role::System).await?);
    }

    step("row 2: streaming the records");
    rows.push(
        data::query(
            &owner_channel,
            &node_channels[0],
            &baseline_channels[0],
            records.items.len(),
        )
        .await?,
    );
    step("rows 1, 4 and 8: audited Gets, ledger off and on, shipping");
    rows.extend(reads::run(&ex, &node_channels, &baseline_channels, &mut owner, &keys, &shape).await?);
    let _ = stop_baseline.send(true);
    let _ = baseline_task.await;
    drop(records);

    step("row 7: the node's memory as a process of its own");
    rows.push(memory::run(&mut ex, &keys, &shape, keys.len()).await?);
    ex.stop().await?;

    step("row 5: indexing shipped events and querying them");
    let (events, samples) = (args.events, args.samples);
    let audit_dir = dir.to_path_buf();
    rows.push(tokio::task::spawn_blocking(move || audit::run(&audit_dir, events, samples)).await??);
    Ok(rows)
}
