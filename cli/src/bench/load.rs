//! Load generation and latency statistics.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

/// Latencies of calls that succeeded, and how many failed, over a measured span.
#[derive(Debug, Clone, Default)]
pub(crate) struct Measured {
    pub(crate) calls: u64,
    pub(crate) errors: u64,
    pub(crate) seconds: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

impl Measured {
    pub(crate) fn rate(&self) -> f64 {
        self.calls as f64 / self.seconds.max(1e-9)
    }

    /// "24,512/s, p50 2.51 ms, p99 4.70 ms" (and the errors, if any).
    pub(crate) fn describe(&self, unit: &str) -> String {
        let errors = match self.errors {
            0 => String::new(),
            n => format!(", {n} failed"),
        };
        format!(
            "{} {unit}/s, p50 {:.2} ms, p99 {:.2} ms{errors}",
            thousands(self.rate()),
            self.p50_ms,
            self.p99_ms
        )
    }
}

/// The q-quantile (nearest rank) of sorted microsecond latencies, in milliseconds.
pub(crate) fn quantile_ms(sorted_us: &[u64], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((sorted_us.len() as f64 * q).ceil() as usize).clamp(1, sorted_us.len());
    sorted_us[rank - 1] as f64 / 1000.0
}

/// p50 and p99 of latencies (any order), in milliseconds.
pub(crate) fn percentiles(mut us: Vec<u64>) -> (f64, f64) {
    us.sort_unstable();
    (quantile_ms(&us, 0.50), quantile_ms(&us, 0.99))
}

/// 1234567.8 as "1,234,568".
pub(crate) fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Runs `call` with `in_flight` calls outstanding at all times, spread over `channels`, for
/// `seconds`; `call` gets a channel and the call's number, and says whether it succeeded.
pub(crate) async fn closed_loop<F, Fut>(channels: &[Channel], in_flight: usize, seconds: f64, call: F) -> Measured
where
    F: Fn(Channel, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let in_flight = in_flight.max(1);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..in_flight)
        .map(|i| {
            let channel = channels[i % channels.len()].clone();
            let call = call.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                let mut n = i;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if call(channel.clone(), n).await {
                        latencies.push(t.elapsed().as_micros() as u64);
                    } else {
                        errors += 1;
                    }
                    n += in_flight;
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        if let Ok((l, e)) = task.await {
            latencies.extend(l);
            errors += e;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let calls = latencies.len() as u64;
    let (p50_ms, p99_ms) = percentiles(latencies);
    Measured {
        calls,
        errors,
        seconds,
        p50_ms,
        p99_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let us: Vec<u64> = (1..=100).map(|n| n * 1000).collect();
        assert_eq!(quantile_ms(&us, 0.50), 50.0);
        assert_eq!(quantile_ms(&us, 0.99), 99.0);
        assert_eq!(quantile_ms(&[7000], 0.99), 7.0);
        assert_eq!(quantile_ms(&[], 0.5), 0.0);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1234567.8), "1,234,568");
    }
}
