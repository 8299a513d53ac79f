//! Server streams that must not outlive a shutdown.

use tokio::sync::{mpsc, watch};
use tonic::Status;

/// Sends on a server stream unless the server stops first: a caller that stopped reading (the
/// channel full) must not hold up a shutdown. False when the item was not sent, because the caller
/// left or the server is stopping.
pub async fn send_unless_stopping<T>(
    tx: &mpsc::Sender<Result<T, Status>>,
    item: Result<T, Status>,
    stopping: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        sent = tx.send(item) => sent.is_ok(),
        _ = stopping.wait_for(|&s| s) => false,
    }
}
