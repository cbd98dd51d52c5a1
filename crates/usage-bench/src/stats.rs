//! Latency samples, percentiles and the per-run summary every scenario reports.

use std::time::Duration;

/// What one load run measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Requests answered (errors included).
    pub requests: u64,
    /// Requests that failed: transport errors, unexpected statuses or failed body checks.
    pub errors: u64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Requests per second over the run.
    pub rps: f64,
    /// Wall time of the run.
    pub wall: Duration,
}

impl Summary {
    /// Summarizes latency samples taken over `wall`.
    pub fn from_samples(mut samples: Vec<Duration>, errors: u64, wall: Duration) -> Self {
        samples.sort_unstable();
        let requests = samples.len() as u64;
        Self {
            requests,
            errors,
            p50: percentile(&samples, 50.0),
            p99: percentile(&samples, 99.0),
            rps: if wall.is_zero() {
                0.0
            } else {
                requests as f64 / wall.as_secs_f64()
            },
            wall,
        }
    }
}

/// The raw outcome of a load run: every unit's latency, the failures and the wall time. Runs
/// interleaved with those of a reference are pooled before percentiles are taken, so that both
/// sides see the same stretches of the machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    /// Latency of every unit.
    pub latencies: Vec<Duration>,
    /// Units that failed.
    pub errors: u64,
    /// Wall time of the run.
    pub wall: Duration,
}

impl Samples {
    /// Percentiles and rate of these samples.
    pub fn summary(&self) -> Summary {
        Summary::from_samples(self.latencies.clone(), self.errors, self.wall)
    }

    /// Adds another run of the same load: latencies and failures together, wall times summed
    /// (the rate is then over the time spent in these runs only).
    pub fn add(&mut self, other: Self) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.wall += other.wall;
    }
}

/// Returns the nearest-rank percentile `p` (0–100) of sorted samples (zero when empty).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Formats a duration in milliseconds with a precision that suits its size.
pub fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1000.0;
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

/// Formats `a - b` as [`ms`] does, with its sign (`+2.40 ms`, `-0.31 ms`).
pub fn signed_ms(a: Duration, b: Duration) -> String {
    match a.checked_sub(b) {
        Some(d) => format!("+{}", ms(d)),
        None => format!("-{}", ms(b.saturating_sub(a))),
    }
}

/// Formats bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_ms_shows_the_sign() {
        assert_eq!(signed_ms(ms_(55), ms_(52)), "+3.00 ms");
        assert_eq!(signed_ms(ms_(52), ms_(55)), "-3.00 ms");
        assert_eq!(signed_ms(ms_(52), ms_(52)), "+0.00 ms");
    }

    fn ms_(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<Duration> = (1..=100).map(ms_).collect();
        assert_eq!(percentile(&s, 50.0), ms_(50));
        assert_eq!(percentile(&s, 99.0), ms_(99));
        assert_eq!(percentile(&s, 100.0), ms_(100));
        assert_eq!(percentile(&[ms_(7)], 99.0), ms_(7));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
        // Two samples: the median is the lower one, p99 the higher.
        assert_eq!(percentile(&[ms_(1), ms_(9)], 50.0), ms_(1));
        assert_eq!(percentile(&[ms_(1), ms_(9)], 99.0), ms_(9));
    }

    #[test]
    fn summary_sorts_and_rates() {
        let s = Summary::from_samples(vec![ms_(30), ms_(10), ms_(20), ms_(40)], 1, ms_(2000));
        assert_eq!(s.requests, 4);
        assert_eq!(s.errors, 1);
        assert_eq!(s.p50, ms_(20));
        assert_eq!(s.p99, ms_(40));
        assert!((s.rps - 2.0).abs() < 1e-9);
    }

    #[test]
    fn pooled_runs_share_their_percentiles() {
        let mut a = Samples {
            latencies: (1..=50).map(ms_).collect(),
            errors: 1,
            wall: ms_(1000),
        };
        a.add(Samples {
            latencies: (51..=100).rev().map(ms_).collect(),
            errors: 2,
            wall: ms_(1000),
        });
        let s = a.summary();
        assert_eq!((s.requests, s.errors), (100, 3));
        assert_eq!((s.p50, s.p99), (ms_(50), ms_(99)));
        assert!((s.rps - 50.0).abs() < 1e-9);
    }

    #[test]
    fn formats() {
        assert_eq!(ms(Duration::from_micros(1234)), "1.23 ms");
        assert_eq!(ms(Duration::from_micros(52_340)), "52.3 ms");
        assert_eq!(ms(Duration::from_millis(1234)), "1234 ms");
        assert_eq!(mib(3 * 1024 * 1024 / 2), "1.5 MiB");
    }
}
