//! Rows 2 and 3: publishing the population dataset in batches (beside a bare sled batch insert
//! of the same bytes), and streaming it back with Query (beside a bare stream of the same
//! pre-serialized messages).

use std::time::Instant;

use bytes::Bytes;
use exchange_core::store::{Batch, SledStore, Store as _, StoreConfig};
use exchange_proto::node::v1 as npb;
use exchange_proto::node::v1::node_client::NodeClient;
use futures_util::StreamExt as _;
use prost::Message as _;
use tonic::transport::Channel;

use super::exchange::{DATASET, PURPOSE, READ_FIELDS};
use super::load::thousands;
use super::Row;
use crate::output::status_error;

/// Records per publish batch (the target's).
const BATCH: usize = 1000;
/// Publish batches in flight at once.
const PUBLISHING: usize = 4;

/// Generated residents, in key order, each once, as the JSON bytes published.
pub(crate) struct Records {
    pub(crate) items: Vec<(String, Vec<u8>)>,
    pub(crate) bytes: usize,
}

impl Records {
    pub(crate) fn generate(count: usize) -> Self {
        let mut items: Vec<(String, Vec<u8>)> = crate::samples::people(count)
            .filter_map(|p| {
                let key = p["id_number"].as_str()?.to_string();
                Some((key, serde_json::to_vec(&p).ok()?))
            })
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        items.dedup_by(|a, b| a.0 == b.0);
        let bytes = items.iter().map(|(_, json)| json.len()).sum();
        Records { items, bytes }
    }

    /// The Query messages the node's owner gets, pre-serialized (what the baseline streams).
    pub(crate) fn query_messages(&self) -> Vec<Bytes> {
        self.items
            .chunks(500)
            .enumerate()
            .map(|(n, chunk)| {
                let records = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, (key, json))| npb::Record {
                        key: key.clone(),
                        json: json.clone(),
                        sequence: (n * 500 + i + 1) as u64,
                        schema_version: 1,
                    })
                    .collect();
                Bytes::from(
                    npb::QueryResponse {
                        records,
                        ..Default::default()
                    }
                    .encode_to_vec(),
                )
            })
            .collect()
    }
}

/// Row 3: publishes `records` to the node, batches of 1,000, a few in flight.
pub(crate) async fn publish(
    owner: &NodeClient<Channel>,
    records: &Records,
    dir: &std::path::Path,
) -> anyhow::Result<Row> {
    // The baseline first: the same bytes in sled batches of 1,000, each flushed, as the node's
    // writer commits a group, with the node's cache setting.
    let baseline_dir = dir.join("baseline-sled");
    let batches: Vec<Batch> = records
        .items
        .chunks(BATCH)
        .map(|chunk| {
            let mut batch = Batch::default();
            for (key, json) in chunk {
                batch.put(format!("r/{DATASET}/{key}"), json.clone());
            }
            batch
        })
        .collect();
    let store_dir = baseline_dir.clone();
    let bare_seconds = tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
        let store = SledStore::open_with(&store_dir, StoreConfig::default())?;
        let start = Instant::now();
        for batch in batches {
            store.commit(batch)?;
        }
        Ok(start.elapsed().as_secs_f64())
    })
    .await??;
    let _ = std::fs::remove_dir_all(&baseline_dir);

    let requests: Vec<npb::PublishRequest> = records
        .items
        .chunks(BATCH)
        .map(|chunk| npb::PublishRequest {
            dataset_id: DATASET.into(),
            changes: chunk
                .iter()
                .map(|(_, json)| npb::Change {
                    op: Some(npb::change::Op::Upsert(json.clone())),
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    let start = Instant::now();
    let results: Vec<_> = futures_util::stream::iter(requests)
        .map(|request| {
            let mut client = owner.clone();
            async move { client.publish(request).await }
        })
        .buffer_unordered(PUBLISHING)
        .collect()
        .await;
    let seconds = start.elapsed().as_secs_f64();
    let mut accepted = 0u64;
    for result in results {
        let reply = result.map_err(status_error)?.into_inner();
        anyhow::ensure!(
            reply.rejected == 0,
            "the node rejected {} benchmark records",
            reply.rejected
        );
        accepted += reply.accepted;
    }
    anyhow::ensure!(
        accepted as usize == records.items.len(),
        "the node accepted {accepted} of {} records",
        records.items.len()
    );
    let n = records.items.len() as f64;
    let (rate, bare_rate) = (n / seconds, n / bare_seconds);
    Ok(Row {
        number: 3,
        what: format!(
            "validated, durable publish of {} residents (~{} bytes each) in batches of {BATCH}, {PUBLISHING} in flight",
            thousands(n),
            records.bytes / records.items.len().max(1)
        ),
        measured: format!("{} records/s ({:.1} s)", thousands(rate), seconds),
        baseline: format!(
            "{} records/s (sled batches of {BATCH} of the same bytes, each flushed)",
            thousands(bare_rate)
        ),
        target: "≥ 70,000 records/s and ≥ 65 % of baseline".into(),
        outcome: format!("{:.0} % of baseline", 100.0 * rate / bare_rate),
        met: rate >= 70_000.0 && rate >= 0.65 * bare_rate,
        figures: vec![
            ("records_per_s".into(), rate),
            ("baseline_records_per_s".into(), bare_rate),
        ],
    })
}

/// How one stream went: records and JSON bytes received, and seconds.
pub(crate) struct Streamed {
    pub(crate) records: u64,
    bytes: u64,
    seconds: f64,
}

impl Streamed {
    fn describe(&self) -> String {
        format!(
            "{} records/s, {:.1} MB/s of JSON ({} records in {:.2} s)",
            thousands(self.records as f64 / self.seconds),
            self.bytes as f64 / self.seconds / 1e6,
            thousands(self.records as f64),
            self.seconds
        )
    }

    pub(crate) fn rate(&self) -> f64 {
        self.records as f64 / self.seconds.max(1e-9)
    }
}

/// Streams every record of the dataset, following page tokens.
pub(crate) async fn stream_all(channel: &Channel, fields: &[&str], purpose: &str) -> anyhow::Result<Streamed> {
    let mut client = NodeClient::new(channel.clone());
    let start = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut page_token = String::new();
    loop {
        let mut stream = client
            .query(npb::QueryRequest {
                dataset_id: DATASET.into(),
                fields: fields.iter().map(|f| f.to_string()).collect(),
                purpose: purpose.into(),
                case_id: "bench".into(),
                page_token: std::mem::take(&mut page_token),
                ..Default::default()
            })
            .await
            .map_err(status_error)?
            .into_inner();
        while let Some(message) = stream.message().await.map_err(status_error)? {
            records += message.records.len() as u64;
            bytes += message.records.iter().map(|r| r.json.len() as u64).sum::<u64>();
            if !message.next_page_token.is_empty() {
                page_token = message.next_page_token;
            }
        }
        if page_token.is_empty() {
            break;
        }
    }
    Ok(Streamed {
        records,
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Row 2: the owner's unmasked stream and the consumer's projected, masked one, beside the
/// baseline's stream of the same records.
pub(crate) async fn query(
    owner: &Channel,
    consumer: &Channel,
    baseline: &Channel,
    expected: usize,
) -> anyhow::Result<Row> {
    let bare = stream_all(baseline, &[], PURPOSE).await?;
    let unmasked = stream_all(owner, &[], "owner").await?;
    let masked = stream_all(consumer, &READ_FIELDS, PURPOSE).await?;
    for (who, s) in [("baseline", &bare), ("owner", &unmasked), ("consumer", &masked)] {
        anyhow::ensure!(
            s.records as usize == expected,
            "the {who}'s query streamed {} of {expected} records",
            s.records
        );
    }
    let ratio = unmasked.rate() / bare.rate();
    Ok(Row {
        number: 2,
        what: format!(
            "Query stream of all {} records: consumer projected to {} fields, name masked; owner unmasked",
            thousands(expected as f64),
            READ_FIELDS.len()
        ),
        measured: format!("masked: {}; owner: {}", masked.describe(), unmasked.describe()),
        baseline: format!(
            "{} (a bare tonic stream of the same pre-serialized messages)",
            bare.describe()
        ),
        target: "≥ 500,000 records/s masked; the owner's unmasked stream ≥ 70 % of baseline".into(),
        outcome: format!(
            "masked {} records/s; owner {:.0} % of baseline",
            thousands(masked.rate()),
            100.0 * ratio
        ),
        met: masked.rate() >= 500_000.0 && ratio >= 0.70,
        figures: vec![
            ("masked_records_per_s".into(), masked.rate()),
            ("owner_records_per_s".into(), unmasked.rate()),
            ("baseline_records_per_s".into(), bare.rate()),
        ],
    })
}
