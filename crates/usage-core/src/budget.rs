//! Vendor budgets (feature `http`): one per source, checked by the provider's HTTP client before
//! every vendor request, because vendor HTTP requests are the unit vendors limit.
//!
//! A [`Budget`] holds an optional outbound rate limit (requests per minute, a GCRA limiter that
//! allows the whole minute's budget as a burst), a concurrency cap, and a block set after the
//! vendor answered 429 with a delay. It waits for the rate budget only while the request keeps
//! at least as much time after the wait as the wait took (the wait is at most half the time left
//! before the request deadline); otherwise it refuses at once with the delay after which a retry
//! may succeed, so that a spent budget never queues a request past the deadline.
//!
//! The deadline is ambient: the gateway runs each provider call inside [`with_deadline`], and
//! every budget check in that call reads it with [`deadline`]. A provider called outside such a
//! scope (unit tests, tools) waits at most [`DEFAULT_MAX_WAIT`].

use std::fmt;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// How long a budget check may wait when no request deadline is in scope.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(2);

/// The retry hint given when no concurrency slot frees up before the deadline.
const SLOT_RETRY_AFTER: Duration = Duration::from_secs(1);

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `call` with `deadline` as the request deadline every budget check inside it honours.
pub async fn with_deadline<F: Future>(deadline: Instant, call: F) -> F::Output {
    DEADLINE.scope(deadline, call).await
}

/// Returns the request deadline in scope, or [`DEFAULT_MAX_WAIT`] from now outside any scope.
pub fn deadline() -> Instant {
    DEADLINE
        .try_with(|d| *d)
        .unwrap_or_else(|_| Instant::now() + DEFAULT_MAX_WAIT)
}

/// Why a budget did not admit a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetError {
    /// The budget is spent until after the deadline; a retry may succeed after `retry_after`
    /// (whole seconds, at least one).
    RateLimited {
        /// When a retry may succeed.
        retry_after: Duration,
    },
    /// More requests were asked for at once than the whole per-minute budget holds.
    ExceedsBudget {
        /// Requests asked for.
        requested: u32,
        /// The per-minute budget.
        per_minute: u32,
    },
}

impl BudgetError {
    /// Returns the retry hint of a spent budget.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => Some(*retry_after),
            Self::ExceedsBudget { .. } => None,
        }
    }
}

impl fmt::Display for BudgetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RateLimited { retry_after } => write!(
                f,
                "the source's outbound budget is spent; retry after {}s",
                retry_after.as_secs()
            ),
            Self::ExceedsBudget {
                requested,
                per_minute,
            } => write!(
                f,
                "{requested} requests exceed the whole per-minute budget ({per_minute}); narrow the query"
            ),
        }
    }
}

impl std::error::Error for BudgetError {}

/// A held concurrency slot; the slot frees when the permit drops.
#[derive(Debug)]
pub struct Permit<'a> {
    _slot: SemaphorePermit<'a>,
}

/// One source's outbound budget: rate limit, concurrency cap and vendor-requested pause.
pub struct Budget {
    limiter: Option<DefaultDirectRateLimiter>,
    per_minute: Option<NonZeroU32>,
    slots: Semaphore,
    max_concurrency: usize,
    /// Set after the vendor answered 429 with a delay: nothing is sent before it passes.
    blocked_until: Mutex<Option<Instant>>,
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("per_minute", &self.per_minute)
            .field("max_concurrency", &self.max_concurrency)
            .field("slots_available", &self.slots.available_permits())
            .finish_non_exhaustive()
    }
}

impl Budget {
    /// Creates a budget of `per_minute` requests (none = no rate limit) with at most
    /// `max_concurrency` (at least 1) in flight.
    pub fn new(per_minute: Option<NonZeroU32>, max_concurrency: usize) -> Self {
        let max_concurrency = max_concurrency.max(1);
        Self {
            limiter: per_minute.map(|n| RateLimiter::direct(Quota::per_minute(n))),
            per_minute,
            slots: Semaphore::new(max_concurrency),
            max_concurrency,
            blocked_until: Mutex::new(None),
        }
    }

    /// Returns the per-minute rate limit, if any.
    pub fn per_minute(&self) -> Option<NonZeroU32> {
        self.per_minute
    }

    /// Takes one request from the rate budget and a concurrency slot, waiting for the rate
    /// budget only while the wait is at most half the time left before the request deadline,
    /// and for a slot at most until the deadline. Call it right before each vendor request and hold
    /// the permit until the response body is read.
    pub async fn admit(&self) -> Result<Permit<'_>, BudgetError> {
        self.reserve(1).await?;
        self.slot().await
    }

    /// Takes `n` requests from the rate budget, all or nothing, waiting only while the wait is
    /// at most half the time left before the request deadline; nothing is taken on failure. For a provider that plans
    /// a fan-out before sending it (each request then takes only a [`slot`](Self::slot)).
    pub async fn reserve(&self, n: u32) -> Result<(), BudgetError> {
        let Some(n) = NonZeroU32::new(n) else {
            return Ok(());
        };
        let deadline = deadline();
        loop {
            let now = Instant::now();
            let wait = match self.blocked_for(now) {
                Some(wait) => wait,
                None => match &self.limiter {
                    None => return Ok(()),
                    Some(limiter) => match limiter.check_n(n) {
                        Ok(Ok(())) => return Ok(()),
                        Ok(Err(not_until)) => not_until.wait_time_from(limiter.clock().now()),
                        Err(_) => {
                            return Err(BudgetError::ExceedsBudget {
                                requested: n.get(),
                                per_minute: self.per_minute.map_or(0, NonZeroU32::get),
                            });
                        }
                    },
                },
            };
            let left = deadline.saturating_duration_since(now);
            if wait > left / 2 {
                return Err(BudgetError::RateLimited {
                    retry_after: ceil_to_second(wait).max(Duration::from_secs(1)),
                });
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes a concurrency slot, waiting at most until the request deadline. Every vendor
    /// request takes one right before it is sent, and is noted for [`crate::requests`] then.
    pub async fn slot(&self) -> Result<Permit<'_>, BudgetError> {
        let refused = BudgetError::RateLimited {
            retry_after: SLOT_RETRY_AFTER,
        };
        match tokio::time::timeout_at(deadline(), self.slots.acquire()).await {
            Ok(Ok(permit)) => {
                // The request is sent right after its slot is taken.
                crate::requests::note();
                Ok(Permit { _slot: permit })
            }
            // The semaphore is never closed; a closed one refuses like a full one.
            Ok(Err(_)) | Err(_) => Err(refused),
        }
    }

    /// Pauses every request of the source for `d` (keeping the later of an existing pause),
    /// after the vendor asked for it (429 with `Retry-After`, or a spent vendor quota).
    pub fn block_for(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut guard = self
            .blocked_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if guard.is_none_or(|u| u < until) {
            *guard = Some(until);
        }
    }

    /// Returns how long requests stay paused, if they still are.
    fn blocked_for(&self, now: Instant) -> Option<Duration> {
        let guard = self
            .blocked_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        guard
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }
}

/// Rounds a delay up to whole seconds (retry hints are in seconds).
pub fn ceil_to_second(d: Duration) -> Duration {
    if d.subsec_nanos() == 0 {
        d
    } else {
        Duration::from_secs(d.as_secs().saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_minute(n: u32) -> Option<NonZeroU32> {
        NonZeroU32::new(n)
    }

    #[tokio::test]
    async fn grants_all_or_nothing_and_reports_the_wait() {
        let b = Budget::new(per_minute(2), 1);
        b.reserve(2).await.unwrap();
        let started = std::time::Instant::now();
        let e = b.reserve(1).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(500), "at once");
        let wait = e.retry_after().unwrap();
        assert!(
            wait > DEFAULT_MAX_WAIT && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert_eq!(
            b.reserve(3).await,
            Err(BudgetError::ExceedsBudget {
                requested: 3,
                per_minute: 2
            })
        );
        b.reserve(0).await.unwrap();
    }

    #[tokio::test]
    async fn never_waits_past_the_deadline_in_scope() {
        // One request every 600 ms after a burst of 100.
        let b = Budget::new(per_minute(100), 4);
        b.reserve(100).await.unwrap();
        let soon = Instant::now() + Duration::from_millis(200);
        let started = std::time::Instant::now();
        let e = with_deadline(soon, b.admit()).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(100), "at once");
        assert_eq!(
            e,
            BudgetError::RateLimited {
                retry_after: Duration::from_secs(1)
            }
        );
        // A deadline far enough away (twice the wait) is waited for.
        let later = Instant::now() + Duration::from_secs(2);
        with_deadline(later, b.admit()).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(500));
    }

    #[tokio::test]
    async fn without_a_rate_limit_only_concurrency_counts() {
        let b = Budget::new(None, 2);
        b.reserve(1_000_000).await.unwrap();
        let first = b.admit().await.unwrap();
        let _second = b.admit().await.unwrap();
        let soon = Instant::now() + Duration::from_millis(100);
        let e = with_deadline(soon, b.admit()).await.unwrap_err();
        assert_eq!(e.retry_after(), Some(SLOT_RETRY_AFTER));
        drop(first);
        with_deadline(soon + Duration::from_secs(1), b.admit())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_vendor_pause_blocks_requests() {
        let b = Budget::new(None, 1);
        b.block_for(Duration::from_secs(29));
        assert_eq!(
            b.admit().await.unwrap_err(),
            BudgetError::RateLimited {
                retry_after: Duration::from_secs(29)
            }
        );
        // A short pause is waited out.
        let b = Budget::new(per_minute(10), 1);
        b.block_for(Duration::from_millis(100));
        b.admit().await.unwrap();
    }
}
