//! Row 7: the node's memory, run as a process of its own (`exchange node`) on the data the other
//! rows left: idle after it opens the store, then during row 1's Gets and row 2's masked stream.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use exchange_core::identity::Role;
use exchange_proto::node::v1 as npb;
use exchange_proto::node::v1::node_client::NodeClient;

use super::exchange::{Exchange, CONSUMER, PURPOSE, READ_FIELDS};
use super::{reads, Row, Shape};

/// Resident and peak resident memory of a process, in MiB, from `/proc`.
pub(super) fn memory_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// A child process that is killed when dropped, whatever happens in between.
pub(super) struct Process(pub(super) Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    pub(super) fn pid(&self) -> u32 {
        self.0.id()
    }

    pub(super) fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// Stops it gracefully (SIGTERM) and waits for it to exit.
    pub(super) fn terminate(&mut self) -> anyhow::Result<()> {
        Command::new("kill").args(["-TERM", &self.pid().to_string()]).status()?;
        self.0.wait()?;
        Ok(())
    }
}

/// Samples the process's RSS every 50 ms while `work` runs; the largest seen, in MiB.
pub(super) async fn peak_during<F: std::future::Future<Output = anyhow::Result<()>>>(
    pid: u32,
    work: F,
) -> anyhow::Result<f64> {
    let peak = Arc::new(AtomicU64::new(0));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some((rss, _)) = memory_mib(pid) {
                    peak.fetch_max((rss * 1024.0) as u64, Ordering::Relaxed);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stop_rx.changed() => break,
                }
            }
        })
    };
    let result = work.await;
    let _ = stop_tx.send(true);
    let _ = sampler.await;
    result?;
    Ok(peak.load(Ordering::Relaxed) as f64 / 1024.0)
}

/// Row 7. Stops the in-process node first; the node process opens the same data directory.
pub(crate) async fn run(
    ex: &mut Exchange,
    keys: &Arc<Vec<String>>,
    shape: &Shape,
    records: usize,
) -> anyhow::Result<Row> {
    if cfg!(not(target_os = "linux")) {
        anyhow::bail!("row 7 reads memory from /proc, which only Linux has");
    }
    ex.stop_node().await?;
    let listen = ex.node_addr;
    let config = ex.write_node_config(listen)?;
    let child = Command::new(std::env::current_exe()?)
        .args(["--log", "error", "node", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?;
    let node = Process(child);
    let pid = node.pid();
    let started = Instant::now();
    let mut owner = loop {
        if let Ok(channel) = ex.channel(super::exchange::OWNER, Role::System).await {
            let mut client = NodeClient::new(channel);
            if client.status(npb::StatusRequest {}).await.is_ok() {
                break client;
            }
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the node process did not answer within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let first_answer = started.elapsed();
    // Idle: started, caught up with the registry, nothing asked of it for a moment.
    let _ = owner.status(npb::StatusRequest {}).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle, _) = memory_mib(pid).ok_or_else(|| anyhow::anyhow!("cannot read the node process's memory"))?;

    let mut channels = Vec::new();
    for _ in 0..shape.connections {
        channels.push(ex.channel(CONSUMER, Role::System).await?);
    }
    let during_gets = peak_during(pid, async {
        let measured = reads::gets(&channels, shape, keys, shape.seconds).await;
        anyhow::ensure!(measured.calls > 0, "no Get succeeded against the node process");
        Ok(())
    })
    .await?;
    let during_stream = peak_during(pid, async {
        let streamed = super::data::stream_all(&channels[0], &READ_FIELDS, PURPOSE).await?;
        anyhow::ensure!(
            streamed.records as usize == records,
            "the node process streamed {} of {records} records",
            streamed.records
        );
        Ok(())
    })
    .await?;
    let (_, hwm) = memory_mib(pid).unwrap_or_default();
    drop(node);
    let loaded = during_gets.max(during_stream).max(hwm);
    Ok(Row {
        number: 7,
        what: format!(
            "node memory (RSS), `exchange node` as its own process on the {} records of rows 2 and 3",
            super::load::thousands(records as f64)
        ),
        measured: format!(
            "idle {idle:.0} MiB (first answer {:.1} s after start); during row 1 {during_gets:.0} MiB, during row 2 {during_stream:.0} MiB; peak (VmHWM) {hwm:.0} MiB",
            first_answer.as_secs_f64()
        ),
        baseline: "—".into(),
        target: "< 64 MiB idle, < 256 MiB loaded".into(),
        outcome: format!("idle {idle:.0} MiB, loaded {loaded:.0} MiB"),
        met: idle < 64.0 && loaded < 256.0,
        figures: vec![
            ("idle_mib".into(), idle),
            ("gets_mib".into(), during_gets),
            ("stream_mib".into(), during_stream),
            ("peak_mib".into(), hwm),
            ("restart_seconds".into(), first_answer.as_secs_f64()),
        ],
    })
}
