//! The upstream-answer cache: one entry per source, query shape and window, with long TTLs for
//! closed windows and short ones for open windows; concurrent identical misses are coalesced
//! into one provider call.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use moka::Expiry;
use moka::future::Cache;
use usage_core::{
    Attribution, CostBatch, CostPoint, Dimension, DynUsageProvider, ProviderError, SourceInfo,
    UsagePoint, UsageQuery, Window,
};

use crate::config::CacheConfig;
use crate::error::Problem;
use crate::resilience::{ResilienceConfig, Resilient};

/// What a query asks of one source beyond the windows: the dimensions fetched and the filters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Vendor dimensions to fetch: the query's (intersected with what the source has), widened
    /// by the provider to those its vendor requests split by anyway
    /// ([`usage_core::UsageProvider::fetch_dimensions`]), so that groupings the aggregation
    /// derives from the same vendor requests share one cache entry.
    pub dims: BTreeSet<Dimension>,
    /// Agent filter (from the query and the access policy).
    pub agents: Option<BTreeSet<String>>,
    /// User filter.
    pub users: Option<BTreeSet<String>>,
    /// Model filter.
    pub models: Option<BTreeSet<String>>,
}

/// Cache key of one window's answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WindowKey {
    source: Arc<str>,
    shape: Arc<Shape>,
    window: Window,
}

/// Cache key of one in-flight provider call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BatchKey {
    source: Arc<str>,
    shape: Arc<Shape>,
    windows: Vec<Window>,
    /// Refreshing calls (`Cache-Control: no-cache`) join only each other, never an older call.
    refresh: bool,
}

/// One window's cached answer.
#[derive(Debug)]
pub struct WindowEntry {
    /// The points of this window.
    pub points: Vec<UsagePoint>,
    /// When the vendor was asked.
    pub fetched_at: DateTime<Utc>,
    /// Whether the window was closed (settled) when fetched.
    pub closed: bool,
    /// Vendor-flagged warnings in this window, where the vendor has them.
    pub warnings: Option<u64>,
    /// Remarks from the provider.
    pub notes: Vec<String>,
    /// The provider's answer lacked data the source holds (`notes` say what); such an entry
    /// lives only `open_ttl`, so that the next query asks again soon.
    pub partial: bool,
    /// The vendor bucket width the window was read at ([`usage_core::UsageBatch::bucket_width`]).
    pub bucket_width: Option<String>,
}

/// What one cached window costs besides its points and strings: its key, the
/// `Arc<WindowEntry>` and the cache's own bookkeeping per entry. An estimate checked with
/// `usage-bench` scenario 5, where most windows hold no point or one: with 128 here, a full
/// 64 MiB budget took 217 MiB of RSS; with 640, 102 MiB.
const ENTRY_OVERHEAD: usize = 640;

/// What the allocator adds to every heap string (header and rounding).
const ALLOC_OVERHEAD: usize = 24;

impl WindowEntry {
    /// Estimates the bytes this entry keeps alive, so that `cache.max_bytes` bounds memory.
    fn weight(&self) -> u32 {
        let heap = |s: &Option<String>| s.as_ref().map_or(0, |s| s.capacity() + ALLOC_OVERHEAD);
        let strings: usize = self
            .points
            .iter()
            .map(|p| {
                heap(&p.key.agent)
                    + heap(&p.key.user)
                    + heap(&p.key.conversation)
                    + heap(&p.key.usage_type)
                    + heap(&p.key.model)
                    + heap(&p.agent_name)
            })
            .sum();
        let notes: usize = self
            .notes
            .iter()
            .map(|n| n.capacity() + ALLOC_OVERHEAD)
            .sum();
        let bytes = ENTRY_OVERHEAD
            + self.points.capacity() * std::mem::size_of::<UsagePoint>()
            + strings
            + notes;
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// The per-source health the gateway observed.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Last time the vendor answered.
    pub last_success: Option<DateTime<Utc>>,
    /// Last failure and when.
    pub last_error: Option<(DateTime<Utc>, Problem)>,
}

/// A provider and the resilience settings of its source.
#[derive(Debug)]
pub struct SourceSpec {
    /// The provider.
    pub provider: DynUsageProvider,
    /// Retries and circuit breaker.
    pub resilience: ResilienceConfig,
    /// The source's `rate_limit_per_minute` in force (`None`: no local limit), of which the
    /// store's syncer uses `store.budget_share`.
    pub rate_limit_per_minute: Option<u32>,
}

impl From<DynUsageProvider> for SourceSpec {
    fn from(provider: DynUsageProvider) -> Self {
        Self {
            provider,
            resilience: ResilienceConfig::default(),
            rate_limit_per_minute: None,
        }
    }
}

/// A configured source: its provider, the resilience layer around it, and its health.
#[derive(Debug)]
pub struct Source {
    /// The provider's self-description.
    pub info: SourceInfo,
    /// The provider itself; calls go through `resilient`.
    pub provider: DynUsageProvider,
    /// Retries and circuit breaker around `provider.usage` and `provider.agents`.
    pub resilient: Resilient,
    /// Observed health.
    pub health: Mutex<Health>,
    /// The source's `rate_limit_per_minute` in force, if any.
    pub rate_limit_per_minute: Option<u32>,
    name: Arc<str>,
}

impl Source {
    /// Wraps a provider with its resilience layer.
    pub fn new(spec: SourceSpec) -> Self {
        let info = spec.provider.describe();
        Self {
            name: Arc::from(info.name.as_str()),
            info,
            resilient: Resilient::new(spec.provider.clone(), spec.resilience),
            provider: spec.provider,
            health: Mutex::new(Health::default()),
            rate_limit_per_minute: spec.rate_limit_per_minute,
        }
    }

    /// Records a success or a failure.
    pub fn record(&self, outcome: Result<(), &ProviderError>) {
        let now = Utc::now();
        if let Ok(mut h) = self.health.lock() {
            match outcome {
                Ok(()) => h.last_success = Some(now),
                Err(e) => h.last_error = Some((now, Problem::from_provider(e))),
            }
        }
    }
}

/// A source's answer for a set of windows.
#[derive(Debug)]
pub struct SourceAnswer {
    /// One entry per window, in window order.
    pub entries: Vec<Arc<WindowEntry>>,
    /// True when no provider call was needed.
    pub cached: bool,
    /// HTTP requests the provider sent for this answer.
    pub upstream_requests: u64,
    /// Set when expired entries stand in for a failed refresh.
    pub stale: Option<Stale>,
}

/// Served from expired entries because the refresh failed.
#[derive(Debug)]
pub struct Stale {
    /// Age of the oldest entry served.
    pub age: Duration,
    /// Why the refresh failed.
    pub error: ProviderError,
}

/// Fresh window entries and the upstream requests one provider call needed.
type BatchAnswer = (Vec<Arc<WindowEntry>>, u64);

/// How long entries are fresh, and how long expired ones are kept for stale-if-error.
#[derive(Debug, Clone, Copy)]
struct TtlPolicy {
    open: Duration,
    closed: Duration,
    stale_if_error: Duration,
}

impl TtlPolicy {
    fn ttl(&self, e: &WindowEntry) -> Duration {
        if e.closed { self.closed } else { self.open }
    }

    fn age(e: &WindowEntry, now: DateTime<Utc>) -> Duration {
        (now - e.fetched_at).to_std().unwrap_or_default()
    }

    fn is_fresh(&self, e: &WindowEntry, now: DateTime<Utc>) -> bool {
        Self::age(e, now) < self.ttl(e)
    }
}

impl Expiry<WindowKey, Arc<WindowEntry>> for TtlPolicy {
    fn expire_after_create(
        &self,
        _key: &WindowKey,
        value: &Arc<WindowEntry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        // Kept past freshness so that a failed refresh can still be answered stale.
        Some(self.ttl(value) + self.stale_if_error)
    }
}

/// Cache key of a vendor cost answer: the source, the dimensions and agents asked for, and the
/// query's windows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CostKey {
    source: Arc<str>,
    dims: BTreeSet<Dimension>,
    agents: Option<BTreeSet<String>>,
    windows: Vec<Window>,
}

/// A vendor's cost answer for a set of windows.
#[derive(Debug)]
pub struct CostEntry {
    /// The costs.
    pub batch: CostBatch,
    /// Whether every window had settled a day before it was fetched: the entry then lives
    /// `closed_ttl`, else `open_ttl`.
    pub closed: bool,
}

impl CostEntry {
    fn weight(&self) -> u32 {
        let strings: usize = self
            .batch
            .points
            .iter()
            .map(|p| {
                [&p.key.agent, &p.key.model, &p.key.usage_type]
                    .into_iter()
                    .map(|s| s.as_ref().map_or(0, |s| s.capacity() + ALLOC_OVERHEAD))
                    .sum::<usize>()
            })
            .sum();
        let bytes = ENTRY_OVERHEAD
            + self.batch.points.capacity() * std::mem::size_of::<CostPoint>()
            + strings;
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// Fresh cost entries live by their windows' state, as window entries do.
#[derive(Debug, Clone, Copy)]
struct CostTtl(TtlPolicy);

impl Expiry<CostKey, Arc<CostEntry>> for CostTtl {
    fn expire_after_create(
        &self,
        _key: &CostKey,
        value: &Arc<CostEntry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(if value.closed {
            self.0.closed
        } else {
            self.0.open
        })
    }
}

/// The error of a provider call whose task did not finish (it panicked or was cancelled).
fn task_failed(e: &tokio::task::JoinError) -> ProviderError {
    ProviderError::Transport {
        source_name: "gateway".into(),
        message: format!("provider task failed: {e}"),
    }
}

/// The window cache and the in-flight call coalescer.
#[derive(Debug, Clone)]
pub struct UsageCache {
    windows: Cache<WindowKey, Arc<WindowEntry>>,
    /// Vendor cost answers (OpenAI, Anthropic), by query: concurrent identical misses make one
    /// call.
    costs: Cache<CostKey, Arc<CostEntry>>,
    inflight: Cache<BatchKey, Arc<BatchAnswer>>,
    settle: chrono::Duration,
    ttl: TtlPolicy,
}

impl UsageCache {
    /// Creates the cache with a byte budget and TTLs.
    pub fn new(cfg: &CacheConfig, max_bytes: u64) -> Self {
        let ttl = TtlPolicy {
            open: cfg.open_ttl,
            closed: cfg.closed_ttl,
            stale_if_error: cfg.stale_if_error,
        };
        Self {
            ttl,
            windows: Cache::builder()
                .name("usage-windows")
                .max_capacity(max_bytes / 8 * 7)
                .weigher(|_k: &WindowKey, v: &Arc<WindowEntry>| v.weight())
                .expire_after(ttl)
                .build(),
            costs: Cache::builder()
                .name("vendor-costs")
                .max_capacity(max_bytes / 8)
                .weigher(|_k: &CostKey, v: &Arc<CostEntry>| v.weight())
                .expire_after(CostTtl(ttl))
                .build(),
            // Only joins concurrent identical calls: a finished call is removed by the request
            // that saw it finish (`forget_finished`), its windows live in `windows`; the TTL only
            // bounds what a lost removal could keep.
            inflight: Cache::builder()
                .name("usage-inflight")
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(1))
                .build(),
            settle: chrono::Duration::from_std(cfg.settle).unwrap_or(chrono::Duration::zero()),
        }
    }

    /// Reports whether a window has settled (ended before `now - settle`).
    pub fn is_closed(&self, w: &Window, now: DateTime<Utc>) -> bool {
        w.end <= now - self.settle
    }

    /// Publishes entry counts and weighted bytes as gauges.
    pub fn publish_gauges(&self) {
        metrics::gauge!(crate::obs::names::CACHE_ENTRIES, "cache" => "windows")
            .set(self.windows.entry_count() as f64);
        metrics::gauge!(crate::obs::names::CACHE_BYTES, "cache" => "windows")
            .set(self.windows.weighted_size() as f64);
    }

    /// Drops a finished call from the coalescer, so that the next request (a `no-cache` refresh
    /// above all) makes a new call instead of joining this one; its windows live in `windows`.
    /// Only this very answer is removed, never a newer call that took its key meanwhile.
    async fn forget_finished(&self, key: BatchKey, done: &Arc<BatchAnswer>) {
        self.inflight
            .entry(key)
            .and_compute_with(|current| {
                std::future::ready(match current {
                    Some(e) if Arc::ptr_eq(e.value(), done) => moka::ops::compute::Op::Remove,
                    _ => moka::ops::compute::Op::Nop,
                })
            })
            .await;
    }

    /// Answers a vendor's costs for `windows` (kept by `dims`, for `agents`), from the cache or
    /// with one provider call (joined with an identical call in flight); `refresh` asks anew.
    /// Returns the entry and whether it came from the cache. `Ok(None)`: the provider has no
    /// cost API.
    pub async fn costs(
        &self,
        source: &Arc<Source>,
        windows: &[Window],
        dims: BTreeSet<Dimension>,
        agents: Option<BTreeSet<String>>,
        refresh: bool,
        deadline: tokio::time::Instant,
    ) -> Result<(Arc<CostEntry>, bool), ProviderError> {
        let key = CostKey {
            source: source.name.clone(),
            dims,
            agents,
            windows: windows.to_vec(),
        };
        if refresh {
            self.costs.invalidate(&key).await;
        }
        let fetched = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let src = source.clone();
        let this = self.clone();
        let k = key.clone();
        let flag = fetched.clone();
        let init = async move {
            // Its own task, which fills the cache itself: the answer is kept even when every
            // waiter gave up at its deadline (the coalescer drops its future then).
            let task = tokio::spawn(async move {
                let mut q = UsageQuery::new(k.windows.clone(), k.dims.clone());
                q.agents.clone_from(&k.agents);
                q.refresh = refresh;
                let batch = src.resilient.costs(&q, deadline).await?.unwrap_or_default();
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
                // Vendors post costs later than usage (a day's can grow for hours after it
                // ends): only windows settled a day ago are cached as closed.
                let day_ago = Utc::now() - chrono::Duration::days(1);
                let entry = Arc::new(CostEntry {
                    batch,
                    closed: k.windows.iter().all(|w| this.is_closed(w, day_ago)),
                });
                this.costs.insert(k, entry.clone()).await;
                Ok::<_, ProviderError>(entry)
            });
            task.await.map_err(|e| task_failed(&e))?
        };
        let started = std::time::Instant::now();
        match tokio::time::timeout_at(deadline, self.costs.try_get_with(key, init)).await {
            Ok(Ok(entry)) => Ok((entry, !fetched.load(std::sync::atomic::Ordering::Relaxed))),
            Ok(Err(e)) => Err((*e).clone()),
            Err(_) => Err(ProviderError::Timeout {
                source_name: source.info.name.clone(),
                elapsed: started.elapsed(),
            }),
        }
    }

    /// Answers `windows` for a source from the cache, calling the provider once for the missing
    /// windows (joined with any identical call in flight). `refresh` skips cached windows.
    /// When the call fails and every missing window still has an expired entry younger than
    /// `stale_if_error`, those are served, marked stale.
    pub async fn fetch(
        &self,
        source: &Arc<Source>,
        windows: &[Window],
        shape: Arc<Shape>,
        refresh: bool,
        deadline: tokio::time::Instant,
    ) -> Result<SourceAnswer, ProviderError> {
        let now = Utc::now();
        let mut entries: Vec<Option<Arc<WindowEntry>>> = vec![None; windows.len()];
        let mut expired: Vec<Option<Arc<WindowEntry>>> = vec![None; windows.len()];
        let mut missing = Vec::new();
        for (i, w) in windows.iter().enumerate() {
            let key = WindowKey {
                source: source.name.clone(),
                shape: shape.clone(),
                window: *w,
            };
            match self.windows.get(&key).await {
                Some(e) if !refresh && self.ttl.is_fresh(&e, now) => {
                    metrics::counter!(crate::obs::names::CACHE_LOOKUPS, "result" => "hit")
                        .increment(1);
                    entries[i] = Some(e);
                }
                old => {
                    metrics::counter!(crate::obs::names::CACHE_LOOKUPS, "result" => "miss")
                        .increment(1);
                    expired[i] = old;
                    missing.push(i);
                }
            }
        }
        // A conversation moves to a later window when it continues: windows of one answer must
        // come from one provider call, or it could be counted in an old cached window and a new one.
        let exact = source.info.attribution == Attribution::Exact;
        if !exact && !missing.is_empty() {
            for (e, x) in entries.iter_mut().zip(expired.iter_mut()) {
                if let Some(fresh) = e.take() {
                    *x = Some(fresh);
                }
            }
            missing = (0..windows.len()).collect();
        }
        if missing.is_empty() {
            return Ok(SourceAnswer {
                entries: entries.into_iter().flatten().collect(),
                cached: true,
                upstream_requests: 0,
                stale: None,
            });
        }
        let missing_windows: Vec<Window> = missing.iter().map(|&i| windows[i]).collect();
        let batch_key = BatchKey {
            source: source.name.clone(),
            shape: shape.clone(),
            windows: missing_windows.clone(),
            refresh,
        };
        let src = source.clone();
        let this = self.clone();
        let src_name = source.name.clone();
        let init = async move {
            // Run the call in its own task so it finishes (and fills the cache) even when every
            // waiting request has hit its deadline.
            let task = tokio::spawn(tracing::Instrument::instrument(
                async move {
                    let mut q = UsageQuery::new(missing_windows.clone(), shape.dims.clone());
                    q.agents.clone_from(&shape.agents);
                    q.users.clone_from(&shape.users);
                    q.models.clone_from(&shape.models);
                    // A refresh reaches the provider's own caches too (scans, agent lists).
                    q.refresh = refresh;
                    let result = src.resilient.usage(&q, deadline).await;
                    src.record(result.as_ref().map(|_| ()));
                    let batch = result?;
                    let now = Utc::now();
                    let mut per_window: Vec<Vec<UsagePoint>> =
                        vec![Vec::new(); missing_windows.len()];
                    for p in batch.points {
                        if let Ok(i) = missing_windows.binary_search(&p.window) {
                            per_window[i].push(p);
                        }
                    }
                    let mut out = Vec::with_capacity(per_window.len());
                    for (w, mut points) in missing_windows.iter().zip(per_window) {
                        // Pushing left up to half of each buffer unused.
                        points.shrink_to_fit();
                        let entry = Arc::new(WindowEntry {
                            points,
                            fetched_at: now,
                            // Under conversation attribution a past window changes whenever one of
                            // its conversations continues, so no window of such a source is closed.
                            closed: exact && !batch.partial && this.is_closed(w, now),
                            warnings: batch
                                .warnings
                                .as_ref()
                                .map(|m| m.get(w).copied().unwrap_or(0)),
                            notes: batch.notes.clone(),
                            partial: batch.partial,
                            bucket_width: batch.bucket_width.clone(),
                        });
                        let key = WindowKey {
                            source: src_name.clone(),
                            shape: shape.clone(),
                            window: *w,
                        };
                        this.windows.insert(key, entry.clone()).await;
                        out.push(entry);
                    }
                    Ok::<_, ProviderError>(Arc::new((out, batch.upstream_requests)))
                },
                tracing::Span::current(),
            ));
            task.await.map_err(|e| task_failed(&e))?
        };
        let started = std::time::Instant::now();
        let joined = tokio::time::timeout_at(
            deadline,
            self.inflight.try_get_with(batch_key.clone(), init),
        )
        .await;
        let fresh = match joined {
            Ok(Ok(f)) => {
                self.forget_finished(batch_key, &f).await;
                f
            }
            failed => {
                let error = match failed {
                    Ok(Err(e)) => (*e).clone(),
                    _ => ProviderError::Timeout {
                        source_name: source.info.name.clone(),
                        elapsed: started.elapsed(),
                    },
                };
                // Stale-if-error: every missing window must have an expired entry to stand in.
                let stand_ins: Option<Vec<Arc<WindowEntry>>> =
                    missing.iter().map(|&i| expired[i].clone()).collect();
                let Some(stand_ins) = stand_ins else {
                    return Err(error);
                };
                let age = stand_ins
                    .iter()
                    .map(|e| TtlPolicy::age(e, now))
                    .max()
                    .unwrap_or_default();
                for (slot, entry) in missing.iter().zip(stand_ins) {
                    entries[*slot] = Some(entry);
                }
                return Ok(SourceAnswer {
                    entries: entries.into_iter().flatten().collect(),
                    cached: true,
                    upstream_requests: 0,
                    stale: Some(Stale { age, error }),
                });
            }
        };
        for (slot, entry) in missing.iter().zip(fresh.0.iter()) {
            entries[*slot] = Some(entry.clone());
        }
        Ok(SourceAnswer {
            entries: entries.into_iter().flatten().collect(),
            cached: false,
            upstream_requests: fresh.1,
            stale: None,
        })
    }
}
