//! The layer around every provider: deadline-aware retries with capped exponential backoff and
//! full jitter (honouring the vendor's `Retry-After`), and a circuit breaker per source. Both
//! `usage` and `agents` calls pass through it.
//!
//! Vendor budgets (per-minute rate limits and concurrency caps, `rate_limit_per_minute` and
//! `max_concurrency` of each source) are [`usage_core::budget::Budget`]s that each provider's
//! HTTP client checks before every vendor request, because vendors limit HTTP requests and one
//! provider call may send many; this layer sees whole provider calls. It runs every provider call
//! inside [`usage_core::budget::with_deadline`], so a budget waits only while the wait ends before
//! the request deadline and otherwise refuses at once with `rate_limited` and a retry hint.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::time::Instant;
use usage_core::budget::with_deadline;
use usage_core::requests;
use usage_core::{Agent, DynUsageProvider, ProviderError, UsageBatch, UsageQuery};

/// Retry and breaker settings of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResilienceConfig {
    /// Attempts per provider call, the first included (1 = no retry).
    pub max_attempts: usize,
    /// The first backoff ceiling.
    pub min_delay: Duration,
    /// The largest backoff ceiling.
    pub max_delay: Duration,
    /// Consecutive vendor faults that open the circuit.
    pub breaker_failures: u32,
    /// How long an open circuit answers at once before a probe is let through.
    pub breaker_cooldown: Duration,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the cool-down ends.
    Open,
    /// One probe is (or may be) in flight; its outcome closes or re-opens the circuit.
    HalfOpen,
}

impl CircuitState {
    /// Returns the wire name (`closed`, `open`, `half_open`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum Breaker {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Retries and a circuit breaker around one provider.
#[derive(Debug)]
pub struct Resilient {
    provider: DynUsageProvider,
    name: String,
    config: ResilienceConfig,
    breaker: Mutex<Breaker>,
}

/// Draws a full-jitter delay: uniform in `[0, ceiling]`.
fn full_jitter(ceiling: Duration) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

impl Resilient {
    /// Wraps a provider.
    pub fn new(provider: DynUsageProvider, config: ResilienceConfig) -> Self {
        Self {
            name: provider.describe().name,
            provider,
            config,
            breaker: Mutex::new(Breaker::Closed { failures: 0 }),
        }
    }

    /// Returns the circuit state now.
    pub fn circuit(&self) -> CircuitState {
        match self.breaker.lock().as_deref() {
            Ok(Breaker::Open { until }) if Instant::now() < *until => CircuitState::Open,
            Ok(Breaker::Open { .. } | Breaker::HalfOpen { .. }) => CircuitState::HalfOpen,
            _ => CircuitState::Closed,
        }
    }

    /// Lets a call through, or says how long the circuit stays open.
    fn admit(&self) -> Result<(), Duration> {
        let Ok(mut b) = self.breaker.lock() else {
            return Ok(());
        };
        match *b {
            Breaker::Closed { .. } => Ok(()),
            Breaker::Open { until } => {
                let now = Instant::now();
                if now < until {
                    Err(until - now)
                } else {
                    *b = Breaker::HalfOpen { probing: true };
                    tracing::info!(source = %self.name, "circuit half-open: probing");
                    Ok(())
                }
            }
            Breaker::HalfOpen { probing: true } => Err(Duration::from_secs(1)),
            Breaker::HalfOpen { probing: false } => {
                *b = Breaker::HalfOpen { probing: true };
                Ok(())
            }
        }
    }

    fn record(&self, outcome: Result<(), &ProviderError>) {
        let Ok(mut b) = self.breaker.lock() else {
            return;
        };
        match (outcome, &*b) {
            (Ok(()), Breaker::HalfOpen { .. }) => {
                tracing::info!(source = %self.name, "circuit closed");
                *b = Breaker::Closed { failures: 0 };
            }
            (Ok(()), _) => *b = Breaker::Closed { failures: 0 },
            (Err(e), Breaker::HalfOpen { .. }) if e.is_vendor_fault() => {
                tracing::warn!(source = %self.name, "probe failed: circuit open again");
                *b = Breaker::Open {
                    until: Instant::now() + self.config.breaker_cooldown,
                };
            }
            (Err(e), Breaker::Closed { failures }) if e.is_vendor_fault() => {
                let failures = failures + 1;
                *b = if failures >= self.config.breaker_failures {
                    tracing::warn!(source = %self.name, failures, "circuit open");
                    Breaker::Open {
                        until: Instant::now() + self.config.breaker_cooldown,
                    }
                } else {
                    Breaker::Closed { failures }
                };
            }
            // Not the vendor's fault (throttling, our request): a probe ends without a verdict.
            (Err(_), Breaker::HalfOpen { .. }) => *b = Breaker::HalfOpen { probing: false },
            (Err(_), _) => {}
        }
    }

    /// Asks the provider for usage: refused at once while the circuit is open, retried on
    /// transient failures with capped exponential backoff and full jitter (never shorter than the
    /// vendor's `Retry-After`), and only when the retried attempt still has at least as long as
    /// its delay before `deadline`, which the provider's budget also honours.
    pub async fn usage(
        &self,
        q: &UsageQuery,
        deadline: Instant,
    ) -> Result<UsageBatch, ProviderError> {
        self.call(
            deadline,
            Call::Usage {
                windows: q.windows.len(),
            },
            || self.provider.usage(q),
        )
        .await
    }

    /// Asks the provider for its vendor's costs under the same breaker, retries and deadline as
    /// [`usage`]; `None` when it has no cost API.
    ///
    /// [`usage`]: Self::usage
    pub async fn costs(
        &self,
        q: &UsageQuery,
        deadline: Instant,
    ) -> Result<Option<usage_core::CostBatch>, ProviderError> {
        self.call(
            deadline,
            Call::Costs {
                windows: q.windows.len(),
            },
            || self.provider.costs(q),
        )
        .await
    }

    /// Lists the provider's agents under the same breaker, retries and deadline as [`usage`].
    ///
    /// [`usage`]: Self::usage
    pub async fn agents(&self, deadline: Instant) -> Result<Vec<Agent>, ProviderError> {
        self.call(deadline, Call::Agents, || self.provider.agents())
            .await
    }

    async fn call<T, F, Fut>(
        &self,
        deadline: Instant,
        what: Call,
        op: F,
    ) -> Result<T, ProviderError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        if let Err(wait) = self.admit() {
            return Err(ProviderError::CircuitOpen {
                source_name: self.name.clone(),
                retry_after: wait,
            });
        }
        let mut ceilings = ExponentialBuilder::default()
            .with_min_delay(self.config.min_delay)
            .with_max_delay(self.config.max_delay)
            .with_factor(2.0)
            .with_max_times(self.config.max_attempts.saturating_sub(1))
            .build();
        let mut attempt = 1_usize;
        loop {
            // Every vendor request the attempt sends, whether it then succeeds or not; also
            // when the caller stops waiting for it (the guard reports it as `cancelled`).
            let sent = requests::Counter::default();
            let guard = Attempt {
                source: self,
                what,
                number: attempt,
                started: Instant::now(),
                sent: sent.clone(),
                open: true,
            };
            let result = sent.scope(with_deadline(deadline, op())).await;
            guard.finish(result.as_ref().err());
            let err = match result {
                Ok(value) => {
                    self.record(Ok(()));
                    return Ok(value);
                }
                Err(e) => e,
            };
            self.record(Err(&err));
            let retryable = err.is_transient();
            let Some(ceiling) = ceilings.next().filter(|_| retryable) else {
                return Err(err);
            };
            let delay = full_jitter(ceiling).max(err.retry_after().unwrap_or_default());
            // The retried attempt must keep at least as much time as the wait before it.
            if Instant::now() + delay * 2 >= deadline {
                return Err(err);
            }
            if self.admit().is_err() {
                return Err(err);
            }
            metrics::counter!(crate::obs::names::UPSTREAM_RETRIES, "source" => self.name.clone())
                .increment(1);
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    fn observe(
        &self,
        what: Call,
        attempt: usize,
        started: Instant,
        sent: u64,
        outcome: &'static str,
    ) {
        use crate::obs::names;
        let elapsed = started.elapsed();
        let source = self.name.clone();
        metrics::counter!(names::UPSTREAM_CALLS, "source" => source.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!(names::UPSTREAM_DURATION, "source" => source.clone(), "outcome" => outcome)
            .record(elapsed.as_secs_f64());
        metrics::counter!(names::UPSTREAM_REQUESTS, "source" => source.clone(), "outcome" => outcome)
            .increment(sent);
        let (call, windows) = match what {
            Call::Usage { windows } => ("usage", windows),
            Call::Costs { windows } => ("costs", windows),
            Call::Agents => ("agents", 0),
        };
        tracing::info!(
            source = %source,
            call,
            outcome,
            attempt,
            windows,
            upstream_requests = sent,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "upstream call"
        );
    }
}

/// One attempt of a provider call, observed once: with its outcome when it ends, or as
/// `cancelled` when its future is dropped first (a caller that stopped waiting, such as
/// `/v1/agents` at its deadline), so that the requests it sent are still counted.
struct Attempt<'a> {
    source: &'a Resilient,
    what: Call,
    /// 1 for the first attempt.
    number: usize,
    started: Instant,
    sent: requests::Counter,
    open: bool,
}

impl Attempt<'_> {
    /// Observes the attempt's end.
    fn finish(mut self, error: Option<&ProviderError>) {
        self.open = false;
        let outcome = error.map_or("ok", ProviderError::kind);
        self.source.observe(
            self.what,
            self.number,
            self.started,
            self.sent.get(),
            outcome,
        );
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.open {
            self.source.observe(
                self.what,
                self.number,
                self.started,
                self.sent.get(),
                "cancelled",
            );
        }
    }
}

/// Which provider method a call is, for logs.
#[derive(Debug, Clone, Copy)]
enum Call {
    /// `usage` over this many windows.
    Usage { windows: usize },
    /// `costs` over this many windows.
    Costs { windows: usize },
    /// `agents`.
    Agents,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};
    use usage_core::test_util::StaticProvider;
    use usage_core::{UsageProvider, Window};

    use super::*;

    fn query() -> UsageQuery {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        UsageQuery::new(
            vec![Window::new(t, t + chrono::Duration::hours(1))],
            std::collections::BTreeSet::default(),
        )
    }

    fn fast() -> ResilienceConfig {
        ResilienceConfig {
            max_attempts: 3,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            breaker_failures: 2,
            breaker_cooldown: Duration::from_millis(200),
        }
    }

    fn down(name: &str) -> ProviderError {
        ProviderError::Upstream {
            source_name: name.into(),
            status: 503,
            message: "down".into(),
        }
    }

    #[tokio::test]
    async fn retries_transient_errors_up_to_the_limit() {
        let p = Arc::new(StaticProvider::new("s"));
        p.set_failure(Some(down("s")));
        let r = Resilient::new(
            p.clone(),
            ResilienceConfig {
                breaker_failures: 100,
                ..fast()
            },
        );
        let far = Instant::now() + Duration::from_secs(10);
        assert!(r.usage(&query(), far).await.is_err());
        assert_eq!(p.calls(), 3);
        // Not transient: no retry.
        p.set_failure(Some(ProviderError::QuotaExceeded {
            source_name: "s".into(),
            message: "x".into(),
        }));
        assert!(r.usage(&query(), far).await.is_err());
        assert_eq!(p.calls(), 4);
        p.set_failure(Some(ProviderError::Decode {
            source_name: "s".into(),
            message: "x".into(),
        }));
        assert!(r.usage(&query(), far).await.is_err());
        assert_eq!(p.calls(), 5);
        p.set_failure(None);
        assert!(r.usage(&query(), far).await.is_ok());
    }

    #[tokio::test]
    async fn never_sleeps_past_the_deadline_and_honours_retry_after() {
        let p = Arc::new(StaticProvider::new("s"));
        p.set_failure(Some(ProviderError::RateLimited {
            source_name: "s".into(),
            retry_after: Some(Duration::from_secs(30)),
        }));
        let r = Resilient::new(p.clone(), fast());
        let started = Instant::now();
        let e = r
            .usage(&query(), Instant::now() + Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(e, ProviderError::RateLimited { .. }));
        assert_eq!(
            p.calls(),
            1,
            "a 30 s Retry-After does not fit a 2 s deadline"
        );
        assert!(started.elapsed() < Duration::from_millis(500));
        p.set_failure(Some(ProviderError::RateLimited {
            source_name: "s".into(),
            retry_after: Some(Duration::from_millis(150)),
        }));
        let started = Instant::now();
        let _ = r
            .usage(&query(), Instant::now() + Duration::from_secs(5))
            .await;
        assert_eq!(p.calls(), 4);
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "waited Retry-After twice"
        );
    }

    #[tokio::test]
    async fn breaker_opens_answers_at_once_and_probes_after_cooldown() {
        let p = Arc::new(StaticProvider::new("s"));
        let r = Resilient::new(
            p.clone(),
            ResilienceConfig {
                max_attempts: 1,
                ..fast()
            },
        );
        let far = Instant::now() + Duration::from_secs(10);
        p.set_failure(Some(down("s")));
        let _ = r.usage(&query(), far).await;
        assert_eq!(r.circuit(), CircuitState::Closed);
        let _ = r.usage(&query(), far).await;
        assert_eq!(r.circuit(), CircuitState::Open);
        let calls = p.calls();
        let e = r.usage(&query(), far).await.unwrap_err();
        assert!(matches!(e, ProviderError::CircuitOpen { .. }), "{e:?}");
        assert_eq!(e.kind(), "circuit_open");
        assert_eq!(p.calls(), calls, "an open circuit makes no call");
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(r.circuit(), CircuitState::HalfOpen);
        // The probe fails: open again.
        let _ = r.usage(&query(), far).await;
        assert_eq!(p.calls(), calls + 1);
        assert_eq!(r.circuit(), CircuitState::Open);
        tokio::time::sleep(Duration::from_millis(250)).await;
        p.set_failure(None);
        assert!(r.usage(&query(), far).await.is_ok());
        assert_eq!(r.circuit(), CircuitState::Closed);
        // Caller-side errors never open the circuit.
        p.set_failure(Some(ProviderError::InvalidQuery {
            source_name: "s".into(),
            message: "x".into(),
        }));
        for _ in 0..5 {
            let _ = r.usage(&query(), far).await;
        }
        assert_eq!(r.circuit(), CircuitState::Closed);
        let _ = p.describe();
    }
}
