//! `exchange bench --bulk N`: a node at province scale. Generates N population records, then,
//! with the node as a process of its own on a fresh store, imports them with `exchange publish`,
//! measures the store on disk, stops and restarts the node (time to its first read), and exports
//! them all with `exchange export`, sampling the node's and the client's memory and CPU all the
//! while. The default engine runs at N; both engines run at the comparison size, on the same
//! records, in the same run. Only Linux: memory and CPU come from `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use exchange_core::identity::Role;
use exchange_core::store::Engine;
use exchange_proto::node::v1 as npb;
use exchange_proto::node::v1::node_client::NodeClient;

use super::exchange::{Exchange, DATASET, OWNER};
use super::load::thousands;
use super::memory::{memory_mib, peak_during, Process};

/// The owner's purpose for its own reads here.
const PURPOSE: &str = "bulk-check";

/// User and system CPU seconds of a process so far (`/proc/<pid>/stat`, in USER_HZ = 100).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Bytes a directory takes on disk (allocated blocks, so preallocated or sparse files count as
/// what they hold).
fn disk_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// What a command cost while it ran: its wall time, and the peaks and CPU of the node and of
/// the client process (when there is one).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
struct Phase {
    seconds: f64,
    node_peak_mib: f64,
    node_cpu_seconds: f64,
    client_peak_mib: f64,
    client_cpu_seconds: f64,
}

impl Phase {
    fn node_cores(&self) -> f64 {
        self.node_cpu_seconds / self.seconds.max(1e-9)
    }
}

/// Runs `client` to its end, sampling it and the node every 50 ms.
async fn watch(node: u32, mut client: Process) -> anyhow::Result<Phase> {
    let started = Instant::now();
    let node_cpu = cpu_seconds(node).unwrap_or(0.0);
    let mut phase = Phase::default();
    loop {
        if let Some((rss, _)) = memory_mib(node) {
            phase.node_peak_mib = phase.node_peak_mib.max(rss);
        }
        // The client's own peak (VmHWM) and CPU, read while it still exists.
        if let Some((_, hwm)) = memory_mib(client.pid()) {
            phase.client_peak_mib = phase.client_peak_mib.max(hwm);
        }
        if let Some(cpu) = cpu_seconds(client.pid()) {
            phase.client_cpu_seconds = cpu;
        }
        if !client.running() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    phase.seconds = started.elapsed().as_secs_f64();
    phase.node_cpu_seconds = cpu_seconds(node).unwrap_or(0.0) - node_cpu;
    let status = client.0.wait()?;
    anyhow::ensure!(status.success(), "the client command failed ({status})");
    Ok(phase)
}

/// One engine at one size.
#[derive(Debug, Clone, serde::Serialize)]
struct Measured {
    engine: &'static str,
    records: usize,
    /// The records' own size: their compact JSON, as the node stores it.
    record_bytes: u64,
    import: Phase,
    disk_bytes: u64,
    stop_seconds: f64,
    restart_to_first_read_seconds: f64,
    idle_mib: f64,
    export: Phase,
    /// The node's own Query rate, to a client that keeps nothing.
    stream_records_per_s: f64,
    stream_node_peak_mib: f64,
}

impl Measured {
    fn disk_ratio(&self) -> f64 {
        self.disk_bytes as f64 / self.record_bytes.max(1) as f64
    }

    fn peak_serving(&self) -> f64 {
        self.export.node_peak_mib.max(self.stream_node_peak_mib)
    }
}

/// The bench's files: its PKI, the owner's client certificate, the generated records.
struct Setup<'a> {
    ex: &'a Exchange,
    dir: &'a Path,
    /// The node's `store.background_workers`.
    background_workers: usize,
}

impl Setup<'_> {
    fn cli(&self, args: &[&str]) -> Command {
        let mut command = Command::new(std::env::current_exe().unwrap_or_else(|_| "exchange".into()));
        let file = |name: &str| self.dir.join(name);
        command
            .args(["--log", "error", "--registry", &self.ex.registry_url, "--ca"])
            .arg(file("ca.pem"))
            .arg("--cert")
            .arg(file("owner.pem"))
            .arg("--key")
            .arg(file("owner-key.pem"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    fn spawn_node(&self, config: &Path) -> anyhow::Result<Process> {
        let child = Command::new(std::env::current_exe()?)
            .args(["--log", "error", "node", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()?;
        Ok(Process(child))
    }

    /// Waits until the node answers the owner and knows the dataset's schema.
    async fn owner_of(&self, url: &str, started: Instant) -> anyhow::Result<NodeClient<tonic::transport::Channel>> {
        loop {
            if let Ok(channel) = self.ex.channel_to(url, OWNER, Role::System).await {
                let mut client = NodeClient::new(channel);
                if let Ok(status) = client.status(npb::StatusRequest {}).await {
                    if status
                        .into_inner()
                        .datasets
                        .iter()
                        .any(|d| d.dataset_id == DATASET && d.latest_version > 0)
                    {
                        return Ok(client);
                    }
                }
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(300),
                "the node at {url} did not serve within 300 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn measure(&self, engine: Engine, file: &Path, records: usize, first_key: &str) -> anyhow::Result<Measured> {
        let name = match engine {
            Engine::Fjall => "fjall",
            Engine::Sled => "sled",
        };
        eprintln!("bench --bulk: {name}, {} records", thousands(records as f64));
        let data_dir = self.dir.join(format!("node-{name}-{records}"));
        let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let config = self.dir.join(format!("node-{name}.toml"));
        self.ex.write_node_config_at(&config, listen, &data_dir, Some(name))?;
        if self.background_workers != exchange_core::store::DEFAULT_BACKGROUND_WORKERS {
            let mut text = std::fs::read_to_string(&config)?;
            text.push_str(&format!("background_workers = {}\n", self.background_workers));
            std::fs::write(&config, text)?;
        }
        seed_data_dir(&self.dir.join("node"), &data_dir)?;
        let url = format!("https://localhost:{}", listen.port());
        let node = self.spawn_node(&config)?;
        self.owner_of(&url, Instant::now()).await?;

        let file_arg = file.display().to_string();
        let import = self
            .cli(&["--node", &url, "publish", DATASET, &file_arg, "--batch", "1000"])
            .spawn()
            .context("cannot start exchange publish")?;
        let import = watch(node.pid(), Process(import)).await.context("the import")?;
        let disk = disk_bytes(&data_dir.join("store"));

        // A graceful stop (SIGTERM), then a start on the same store.
        let stopping = Instant::now();
        let mut node = node;
        node.terminate()?;
        let stop_seconds = stopping.elapsed().as_secs_f64();
        let started = Instant::now();
        let node = self.spawn_node(&config)?;
        let mut owner = self.owner_of(&url, started).await?;
        loop {
            let got = owner
                .get(npb::GetRequest {
                    dataset_id: DATASET.into(),
                    keys: vec![first_key.to_string()],
                    purpose: PURPOSE.into(),
                    case_id: "bench".into(),
                    ..Default::default()
                })
                .await;
            if got.is_ok_and(|r| r.into_inner().records.len() == 1) {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(300),
                "no first read within 300 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let restart = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (idle, _) = memory_mib(node.pid()).unwrap_or_default();

        let out = self.dir.join(format!("export-{name}.ndjson"));
        let out_arg = out.display().to_string();
        let export = self
            .cli(&[
                "--node",
                &url,
                "export",
                DATASET,
                "--out",
                &out_arg,
                "--purpose",
                PURPOSE,
            ])
            .spawn()
            .context("cannot start exchange export")?;
        let export = watch(node.pid(), Process(export)).await.context("the export")?;
        let exported = count_lines(&out)?;
        let _ = std::fs::remove_file(&out);
        anyhow::ensure!(exported == records, "the export wrote {exported} of {records} records");

        let streamed = {
            let channel = self.ex.channel_to(&url, OWNER, Role::System).await?;
            let mut rate = 0.0;
            let peak = peak_during(node.pid(), async {
                let streamed = super::data::stream_all(&channel, &[], PURPOSE).await?;
                anyhow::ensure!(
                    streamed.records as usize == records,
                    "the stream sent {} of {records}",
                    streamed.records
                );
                rate = streamed.rate();
                Ok(())
            })
            .await?;
            (rate, peak)
        };
        // What the export and the stream read goes on in the ledger the next node continues.
        let mut node = node;
        node.terminate()?;
        seed_data_dir(&data_dir, &self.dir.join("node"))?;
        let record_bytes = std::fs::metadata(file)?.len() - records as u64;
        let _ = std::fs::remove_dir_all(&data_dir);
        Ok(Measured {
            engine: name,
            records,
            record_bytes,
            import,
            disk_bytes: disk,
            stop_seconds,
            restart_to_first_read_seconds: restart,
            idle_mib: idle,
            export,
            stream_records_per_s: streamed.0,
            stream_node_peak_mib: streamed.1,
        })
    }
}

/// Gives a fresh data directory the stopped in-process node's log key and audit ledger, so the
/// node process goes on with the ledger the registry has pinned (a new key would be refused).
fn seed_data_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let private_dir = |dir: &Path| -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(())
    };
    private_dir(to)?;
    private_dir(&to.join("ledger"))?;
    std::fs::copy(from.join("log.key"), to.join("log.key"))?;
    for entry in std::fs::read_dir(from.join("ledger"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join("ledger").join(entry.file_name()))?;
    }
    Ok(())
}

fn count_lines(path: &Path) -> anyhow::Result<usize> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut buffer = vec![0u8; 1 << 20];
    let mut lines = 0;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buffer[..n].iter().filter(|&&b| b == b'\n').count();
    }
}

fn generate(dir: &Path, records: usize) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("people-{records}.ndjson"));
    let file = std::fs::File::create(&path)?;
    crate::samples::write("population", records, false, file)?;
    Ok(path)
}

/// Where the bulk section of BENCHMARKS.md begins and ends.
const BEGIN: &str = "<!-- exchange bench --bulk: the latest run begins here; written by `exchange bench --bulk` -->";
const END: &str = "<!-- exchange bench --bulk: the latest run ends here -->";

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn table(run: &super::report::Run, measured: &[Measured], background_workers: usize) -> String {
    let mut out = format!(
        "Run of {} from commit {}, {:.1} minutes: `{}`\n\nMachine: {}.\nThe node runs as a process of its own (`exchange node`, 64 MiB cache, {} fjall background worker(s)) on a fresh store; `exchange publish` (batches of 1,000, 4 in flight) and `exchange export` run as processes beside it; memory (RSS) and CPU are sampled from /proc every 50 ms. \"Records' own size\" is their compact JSON as stored. The node's Query rate is a client that keeps nothing, streaming every record.\n\n",
        run.date, run.commit, run.minutes, run.command, run.machine, background_workers
    );
    out.push_str("| engine | records (own size) | import | node while importing | client while importing | store on disk after the import | stop; restart to first read | idle after restart | export to NDJSON | node while exporting | node's Query rate |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for m in measured {
        out.push_str(&format!(
            "| {} | {} ({:.0} MiB) | {:.1} s, {} records/s | {:.0} MiB peak, {:.2} cores | {:.0} MiB peak, {:.2} cores | {:.0} MiB, {:.2} × the records, {:.0} bytes a record | {:.1} s; {:.1} s | {:.0} MiB | {:.1} s, {} records/s | {:.0} MiB peak, {:.2} cores | {} records/s ({:.0} MiB peak) |\n",
            m.engine,
            thousands(m.records as f64),
            mib(m.record_bytes),
            m.import.seconds,
            thousands(m.records as f64 / m.import.seconds),
            m.import.node_peak_mib,
            m.import.node_cores(),
            m.import.client_peak_mib,
            m.import.client_cpu_seconds / m.import.seconds.max(1e-9),
            mib(m.disk_bytes),
            m.disk_ratio(),
            m.disk_bytes as f64 / m.records.max(1) as f64,
            m.stop_seconds,
            m.restart_to_first_read_seconds,
            m.idle_mib,
            m.export.seconds,
            thousands(m.records as f64 / m.export.seconds),
            m.export.node_peak_mib,
            m.export.node_cores(),
            thousands(m.stream_records_per_s),
            m.stream_node_peak_mib,
        ));
    }
    out.push_str("\nGoals (issue 11): at most 2 × the records' own size on disk; node RSS under 256 MiB importing and serving; client RSS under 100 MB.\n\n");
    for m in measured {
        let importing = m.import.node_peak_mib;
        let serving = m.peak_serving();
        let client = m.import.client_peak_mib.max(m.export.client_peak_mib);
        let verdict = |ok: bool| if ok { "met" } else { "missed" };
        out.push_str(&format!(
            "- {} at {}: disk {:.2} × ({}); node {importing:.0} MiB importing, {serving:.0} MiB serving ({}); client {client:.0} MiB ({}).\n",
            m.engine,
            thousands(m.records as f64),
            m.disk_ratio(),
            verdict(m.disk_ratio() <= 2.0),
            verdict(importing < 256.0 && serving < 256.0),
            verdict(client < 100.0 * 1e6 / (1024.0 * 1024.0)),
        ));
    }
    out
}

/// Runs the bulk measurement and writes its section of the report.
pub(crate) async fn run(args: &super::Args, records: usize, compare: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        cfg!(target_os = "linux"),
        "--bulk reads memory and CPU from /proc, which only Linux has"
    );
    anyhow::ensure!(
        records >= 1000 && (compare == 0 || compare >= 1000),
        "--bulk must be at least 1000, and --bulk-compare 0 (no comparison) or at least 1000"
    );
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("exchange-bench-bulk-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let started = Instant::now();
    let result = async {
        let mut ex = Exchange::start(&dir, &[]).await?;
        ex.stop_node().await?;
        ex.issue(OWNER, Role::System, "owner")?;
        let setup = Setup {
            ex: &ex,
            dir: &dir,
            background_workers: args.bulk_background_workers,
        };
        let first_key = crate::samples::people(1)
            .next()
            .and_then(|p| p["id_number"].as_str().map(str::to_string))
            .unwrap_or_default();
        let mut measured = Vec::new();
        if compare > 0 {
            eprintln!("bench --bulk: generating {} records", thousands(compare as f64));
            let small = generate(&dir, compare)?;
            for engine in [Engine::Fjall, Engine::Sled] {
                measured.push(setup.measure(engine, &small, compare, &first_key).await?);
            }
            let _ = std::fs::remove_file(&small);
        }
        if records != compare {
            eprintln!("bench --bulk: generating {} records", thousands(records as f64));
            let large = generate(&dir, records)?;
            measured.push(setup.measure(Engine::Fjall, &large, records, &first_key).await?);
            let _ = std::fs::remove_file(&large);
        }
        ex.stop().await?;
        anyhow::Ok(measured)
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let measured = result?;
    let run = super::report::Run::describe(args, started.elapsed());
    let text = table(&run, &measured, args.bulk_background_workers);
    println!("{text}");
    if !args.no_report {
        let section = format!("{BEGIN}\n## The latest run of `exchange bench --bulk`\n\n{text}{END}\n");
        super::report::write_section(&args.report, BEGIN, END, &section)?;
        println!("written to {}", args.report.display());
    }
    if let Some(path) = &args.json_report {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&serde_json::json!({"run": run, "bulk": measured}))?,
        )?;
    }
    Ok(())
}
