//! The store's background sync: per stored source, one replica at a time (the holder of the
//! source's lease in the store) fetches the closed hours of the last `store.backfill` that the
//! store lacks, newest first, and writes them.
//!
//! The grain is the UTC hour for every stored source: DigitalOcean answers one request per
//! agent and window whatever its length, and hours line up with the days and hours of every
//! zone with whole-hour offsets, so that any such query's closed part is answered from the
//! store (zones with half-hour offsets get their edge half hours live). Older history is not
//! kept coarser: a day stored as one window would serve UTC days only.
//!
//! Pacing: the syncer spends at most `store.budget_share` of the source's
//! `rate_limit_per_minute` on average (each request it sent delays its next call by
//! `60 s / (share × limit)`), in calls of at most a tenth of that share per minute, and every
//! request also passes the source's own budget, which live queries share, so the vendor's limit
//! is never exceeded. A source without a limit is synced one call at a time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::Serialize;
use tokio::time::Instant;
use usage_core::store::uncovered;
use usage_core::{DynUsageStore, ProviderError, StoreError, UsageQuery, Window};

use crate::fetch::Source;
use crate::obs::names;
use crate::stored::{StoreHandle, full_shape, is_stored};

/// The stored grain.
const GRAIN: TimeDelta = TimeDelta::hours(1);

/// Windows asked for in one provider call at most (a UTC day).
const MAX_CHUNK: usize = 24;

/// How long one provider call of the syncer may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// A source's sync progress, as `GET /v1/sources` shows it (published by the lease holder to
/// the store, so that every replica shows it).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Progress {
    /// The replica syncing the source (host:pid:suffix).
    pub holder: String,
    /// `syncing` (closing the backlog), `idle` (nothing to do until the next hour closes),
    /// `waiting` (the vendor or the store failed; retried after a pause).
    pub state: String,
    /// Start of the range the syncer keeps filled (now minus `store.backfill`, whole hours).
    #[schema(value_type = String, format = DateTime)]
    pub backfill_from: String,
    /// Start of the stored history without gaps up to the newest closed hour; absent while
    /// that hour is not stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub covered_from: Option<String>,
    /// Closed hours of the backfill range not yet stored.
    pub backlog_windows: u64,
    /// Hours stored per minute in this pass, once measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub windows_per_minute: Option<f64>,
    /// Estimated seconds until the backlog is stored, at this pass's pace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<u64>,
    /// Vendor requests this pass sent.
    pub vendor_requests: u64,
    /// When a pass last ended without error.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_success: Option<String>,
    /// The last error of the syncer, with its time (`<RFC 3339>: <message>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When this progress was published.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: String,
}

/// How a sync pass ended.
#[derive(Debug)]
pub enum PassEnd {
    /// The backfill range is stored.
    Done,
    /// Another replica holds the lease now.
    LostLease,
    /// A newer hour closed during the pass: start again from the newest hours.
    NewHour,
}

/// What failed in a sync pass.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The vendor failed.
    #[error(transparent)]
    Vendor(#[from] ProviderError),
    /// The vendor answered without part of its data.
    #[error("{0}")]
    Partial(String),
}

/// One pass's settings.
#[derive(Debug, Clone)]
pub struct PassSettings {
    /// How far back to fill.
    pub backfill: Duration,
    /// A window is closed once it ended before `now - settle`.
    pub settle: Duration,
    /// Requests per minute the syncer may use on average (`None`: no pacing).
    pub per_minute: Option<f64>,
    /// The lease's lifetime; renewed between calls.
    pub lease_ttl: Duration,
}

impl PassSettings {
    /// The settings of `source` under `handle`'s `[store]` and the cache's `settle`.
    pub fn of(handle: &StoreHandle, source: &Source, settle: Duration) -> Self {
        Self {
            backfill: handle.config.backfill.get(),
            settle,
            per_minute: source
                .rate_limit_per_minute
                .map(|r| (f64::from(r) * handle.config.budget_share).max(1.0)),
            lease_ttl: handle.config.lease_ttl,
        }
    }
}

/// The closed hours of `[now - backfill, now - settle)` (whole hours).
pub fn target_range(now: DateTime<Utc>, s: &PassSettings) -> Option<Window> {
    let floor = |t: DateTime<Utc>| t.duration_trunc(GRAIN).unwrap_or(t);
    let settle = TimeDelta::from_std(s.settle).unwrap_or(TimeDelta::zero());
    let back = TimeDelta::from_std(s.backfill).unwrap_or(TimeDelta::zero());
    let end = floor(now - settle);
    let start = floor(end - back);
    // `backfill` shorter than an hour: nothing to fill.
    (start < end).then(|| Window::new(start, end))
}

/// Splits gaps into grain windows, newest first.
fn hours_newest_first(gaps: &[Window]) -> Vec<Window> {
    let mut out = Vec::new();
    for g in gaps.iter().rev() {
        let mut end = g.end;
        while end > g.start {
            let start = (end - GRAIN).max(g.start);
            out.push(Window::new(start, end));
            end = start;
        }
    }
    out
}

/// Start of the stored history without gaps that ends at `range.end`.
async fn covered_from(
    store: &DynUsageStore,
    source: &str,
    range: Window,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let covered = usage_core::store::merge_coverage(&store.coverage(source, range).await?);
    Ok(covered
        .last()
        .filter(|c| c.window.end == range.end)
        .map(|c| c.window.start))
}

/// One source's syncer: what a pass reports as it goes.
pub trait Observer: Send {
    /// The pass starts with `backlog` windows to store.
    fn started(&mut self, backlog: u64);
    /// `windows` more windows were stored, with `requests` vendor requests.
    fn stored(&mut self, windows: u64, requests: u64);
}

impl Observer for () {
    fn started(&mut self, _: u64) {}
    fn stored(&mut self, _: u64, _: u64) {}
}

/// Runs one sync pass of `source` as the lease holder `handle.holder`: stores every missing
/// closed hour of the backfill range, newest first, renewing the lease between calls and
/// publishing progress. Returns when the range is stored, the lease is lost, or a call fails.
pub async fn pass(
    handle: &StoreHandle,
    source: &Arc<Source>,
    settings: &PassSettings,
    observer: &mut dyn Observer,
) -> Result<PassEnd, SyncError> {
    let Some(range) = target_range(Utc::now(), settings) else {
        return Ok(PassEnd::Done);
    };
    // When the next hour closes, the pass ends, so that the syncer starts over from the newest
    // hours instead of leaving them for the end of a long backfill.
    let settle = TimeDelta::from_std(settings.settle).unwrap_or(TimeDelta::zero());
    let next_hour = range.end + GRAIN + settle;
    pass_until(handle, source, range, settings, observer, Some(next_hour)).await
}

/// [`pass`] over the whole hours of `range` (tests and tools choose the range).
pub async fn pass_over(
    handle: &StoreHandle,
    source: &Arc<Source>,
    range: Window,
    settings: &PassSettings,
    observer: &mut dyn Observer,
) -> Result<PassEnd, SyncError> {
    pass_until(handle, source, range, settings, observer, None).await
}

/// [`pass_over`], ending early (`NewHour`) once `until` has passed.
async fn pass_until(
    handle: &StoreHandle,
    source: &Arc<Source>,
    range: Window,
    settings: &PassSettings,
    observer: &mut dyn Observer,
    until: Option<DateTime<Utc>>,
) -> Result<PassEnd, SyncError> {
    let Some(store) = handle.get().cloned() else {
        return Err(StoreError::Unavailable {
            message: "not connected".into(),
        }
        .into());
    };
    let name = source.info.name.as_str();
    // Only the syncer's own hours count: a longer window a query wrote back is replaced by
    // hours (each write replaces the stored windows it overlaps), so that every query whose
    // edges fall on whole UTC hours is served from the store.
    let hours: Vec<_> = store
        .coverage(name, range)
        .await?
        .into_iter()
        .filter(|c| {
            c.window.end - c.window.start == GRAIN
                && c.window.start.duration_trunc(GRAIN).ok() == Some(c.window.start)
        })
        .collect();
    let todo = hours_newest_first(&uncovered(range, &hours));
    let mut progress = Progress {
        holder: handle.holder.clone(),
        state: "syncing".into(),
        backfill_from: crate::render::ts(range.start),
        backlog_windows: todo.len() as u64,
        ..local_progress(handle, name)
    };
    progress.covered_from = covered_from(&store, name, range)
        .await?
        .map(crate::render::ts);
    progress.vendor_requests = 0;
    observer.started(todo.len() as u64);
    metrics::gauge!(names::SYNC_BACKLOG, "source" => name.to_owned()).set(todo.len() as f64);
    publish(handle, &store, name, &mut progress).await?;

    let shape = full_shape(source);
    let started = Instant::now();
    let mut stored = 0u64;
    // Windows per call the source allows (lowered by a `SourceLimit` answer).
    let mut limit = MAX_CHUNK;
    // Requests one window costs, learnt from the last call (`None` before the first).
    let mut per_window: Option<f64> = None;
    let mut next_call = Instant::now();
    let mut i = 0;
    while i < todo.len() {
        if until.is_some_and(|u| Utc::now() >= u) {
            return Ok(PassEnd::NewHour);
        }
        let chunk = match (settings.per_minute, per_window) {
            // The first call asks for one window, to learn what a window costs.
            (Some(_), None) => 1,
            // Calls of at most a tenth of the syncer's minute, so that live queries always
            // find the source's budget mostly free.
            (Some(rate), Some(cost)) => ((rate / 10.0) / cost).floor().max(1.0) as usize,
            (None, _) => limit,
        }
        .min(limit);
        wait_until(handle, &store, name, settings.lease_ttl, next_call).await?;
        if !store
            .try_lease(name, &handle.holder, settings.lease_ttl)
            .await?
        {
            return Ok(PassEnd::LostLease);
        }
        let mut windows: Vec<Window> = todo[i..(i + chunk).min(todo.len())].to_vec();
        windows.sort();
        let query = UsageQuery::new(windows.clone(), shape.dims.clone());
        let call = source
            .resilient
            .usage(&query, Instant::now() + CALL_TIMEOUT);
        let result = renewing(&store, name, &handle.holder, settings.lease_ttl, call).await;
        source.record(result.as_ref().map(|_| ()));
        let batch = match result {
            Ok(b) => b,
            Err(ProviderError::SourceLimit { calls, .. }) if chunk > 1 => {
                // Fewer windows per call: what the source allows per query.
                let per_agent = (calls.max / calls.agents.max(1)).max(1);
                limit = usize::try_from(per_agent).unwrap_or(1).min(chunk - 1);
                continue;
            }
            Err(ProviderError::RateLimited {
                retry_after: Some(after),
                ..
            }) => {
                next_call = Instant::now() + after.max(Duration::from_secs(1));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if batch.partial {
            return Err(SyncError::Partial(format!(
                "{name}: the vendor answered without part of its data ({}); nothing stored for \
                 these hours",
                batch.notes.join("; ")
            )));
        }
        let now = Utc::now();
        let mut per: Vec<(Window, Vec<usage_core::UsagePoint>)> =
            windows.iter().map(|w| (*w, Vec::new())).collect();
        for p in batch.points {
            if let Ok(k) = windows.binary_search(&p.window) {
                per[k].1.push(p);
            }
        }
        store.put_windows(name, &per, now).await?;
        metrics::counter!(names::STORE_WRITES, "source" => name.to_owned(), "origin" => "sync", "outcome" => "ok")
            .increment(windows.len() as u64);
        let requests = batch.upstream_requests;
        per_window = Some((requests as f64 / windows.len() as f64).max(0.01));
        if let Some(rate) = settings.per_minute {
            next_call = Instant::now() + Duration::from_secs_f64(requests as f64 * 60.0 / rate);
        }
        stored += windows.len() as u64;
        i += windows.len();
        observer.stored(windows.len() as u64, requests);
        progress.vendor_requests += requests;
        progress.backlog_windows = (todo.len() - i) as u64;
        let minutes = started.elapsed().as_secs_f64() / 60.0;
        if minutes > 0.0 {
            let pace = stored as f64 / minutes;
            progress.windows_per_minute = Some((pace * 10.0).round() / 10.0);
            progress.eta_seconds = (pace > 0.0)
                .then(|| (progress.backlog_windows as f64 / pace * 60.0).round() as u64);
        }
        metrics::gauge!(names::SYNC_BACKLOG, "source" => name.to_owned())
            .set(progress.backlog_windows as f64);
        progress.covered_from = covered_from(&store, name, range)
            .await?
            .map(crate::render::ts);
        publish(handle, &store, name, &mut progress).await?;
    }
    progress.state = "idle".into();
    progress.eta_seconds = None;
    progress.last_success = Some(crate::render::ts(Utc::now()));
    metrics::gauge!(names::SYNC_LAST_SUCCESS, "source" => name.to_owned())
        .set(Utc::now().timestamp() as f64);
    if let Some(from) = covered_from(&store, name, range).await? {
        metrics::gauge!(names::SYNC_COVERED_FROM, "source" => name.to_owned())
            .set(from.timestamp() as f64);
    }
    publish(handle, &store, name, &mut progress).await?;
    Ok(PassEnd::Done)
}

/// This process's last known progress of `source` (its syncer's), or an empty one.
fn local_progress(handle: &StoreHandle, source: &str) -> Progress {
    handle
        .progress
        .lock()
        .ok()
        .and_then(|p| p.get(source).cloned())
        .unwrap_or_default()
}

/// Keeps `progress` locally and publishes it with the lease.
async fn publish(
    handle: &StoreHandle,
    store: &DynUsageStore,
    source: &str,
    progress: &mut Progress,
) -> Result<(), StoreError> {
    progress.updated_at = crate::render::ts(Utc::now());
    if let Ok(mut p) = handle.progress.lock() {
        p.insert(source.to_owned(), progress.clone());
    }
    let text = serde_json::to_string(progress).unwrap_or_default();
    store
        .publish_progress(source, &handle.holder, &text)
        .await
        .map(|_| ())
}

/// Runs `call` while renewing the lease of `source` every third of its lifetime, so that a
/// call longer than the lease (a slow vendor, a first Kibana scan) does not let another replica
/// take the source and sync it at the same time.
async fn renewing<T>(
    store: &DynUsageStore,
    source: &str,
    holder: &str,
    ttl: Duration,
    call: impl std::future::Future<Output = T>,
) -> T {
    let mut call = std::pin::pin!(call);
    let mut tick = tokio::time::interval(ttl / 3);
    // The first tick is at once; the lease was just taken.
    tick.tick().await;
    loop {
        tokio::select! {
            out = &mut call => return out,
            _ = tick.tick() => {
                if let Err(e) = store.try_lease(source, holder, ttl).await {
                    tracing::warn!(source, error = %e, "renewing the sync lease failed");
                }
            }
        }
    }
}

/// Sleeps until `at`, renewing the lease at least every third of its lifetime.
async fn wait_until(
    handle: &StoreHandle,
    store: &DynUsageStore,
    source: &str,
    ttl: Duration,
    at: Instant,
) -> Result<(), StoreError> {
    while Instant::now() < at {
        let slice = (ttl / 3).min(at.saturating_duration_since(Instant::now()));
        tokio::time::sleep(slice).await;
        if Instant::now() < at {
            store.try_lease(source, &handle.holder, ttl).await?;
        }
    }
    Ok(())
}

/// Runs a source's syncer for as long as the process lives: takes the lease when free, runs a
/// pass every `store.sync_interval` (at once again when a pass was cut short by a new hour
/// closing), and after a failure waits the interval (or the vendor's `Retry-After`).
pub async fn run(handle: Arc<StoreHandle>, source: Arc<Source>, settle: Duration) {
    let name = source.info.name.clone();
    let settings = PassSettings::of(&handle, &source, settle);
    // Sources placing usage by conversation are polled for snapshots; the others stored by
    // the hour.
    let snapshots = !is_stored(&source);
    let interval = handle.config.sync_interval;
    let ttl = settings.lease_ttl;
    metrics::gauge!(names::SYNC_LEADER, "source" => name.clone()).set(0.0);
    metrics::counter!(names::SYNC_ERRORS, "source" => name.clone()).increment(0);
    loop {
        let Some(store) = handle.get().cloned() else {
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        };
        let held = match store.try_lease(&name, &handle.holder, ttl).await {
            Ok(h) => h,
            Err(e) => {
                handle.failed(e.to_string());
                false
            }
        };
        metrics::gauge!(names::SYNC_LEADER, "source" => name.clone()).set(if held {
            1.0
        } else {
            0.0
        });
        if !held {
            // Another replica syncs it; ask again before its lease could have run out.
            tokio::time::sleep(ttl / 2 + Duration::from_millis(fastrand::u64(0..500))).await;
            continue;
        }
        let result = if snapshots {
            match snapshot_pass(&handle, &source, settings.backfill, settle, poll_time()).await {
                Ok(Some(_)) => Ok(PassEnd::Done),
                // The provider has no snapshots after all: nothing to sync.
                Ok(None) => {
                    let _ = store.release_lease(&name, &handle.holder).await;
                    return;
                }
                Err(e) => Err(e),
            }
        } else {
            pass(&handle, &source, &settings, &mut ()).await
        };
        if matches!(result, Ok(PassEnd::Done)) {
            forget_expired(&handle, &store, &name).await;
        }
        let pause = match result {
            Ok(PassEnd::Done) => interval,
            Ok(PassEnd::LostLease | PassEnd::NewHour) => Duration::ZERO,
            Err(e) => {
                tracing::warn!(source = %name, error = %e, "sync pass failed");
                metrics::counter!(names::SYNC_ERRORS, "source" => name.clone()).increment(1);
                let mut p = local_progress(&handle, &name);
                p.holder.clone_from(&handle.holder);
                p.state = "waiting".into();
                p.last_error = Some(format!("{}: {e}", crate::render::ts(Utc::now())));
                let _ = publish(&handle, &store, &name, &mut p).await;
                match &e {
                    SyncError::Vendor(ProviderError::RateLimited {
                        retry_after: Some(after),
                        ..
                    }) => (*after).max(Duration::from_secs(1)),
                    _ => interval.min(Duration::from_secs(60)),
                }
            }
        };
        let _ = wait_until(&handle, &store, &name, ttl, Instant::now() + pause).await;
    }
}

/// Starts a syncer for every source (when `[store] sync` is on): stored sources are synced by
/// the hour, the others polled for conversation snapshots (a provider without them ends its
/// syncer at the first pass).
pub fn spawn_all(
    handle: &Arc<StoreHandle>,
    sources: impl IntoIterator<Item = Arc<Source>>,
    settle: Duration,
) {
    if !handle.config.sync {
        return;
    }
    for source in sources {
        let task = tokio::spawn(run(handle.clone(), source, settle));
        if let Ok(mut syncers) = handle.syncers.lock() {
            syncers.push(task.abort_handle());
        }
    }
}

/// Forgets what `store.retention` no longer keeps of `source` (nothing without retention).
async fn forget_expired(handle: &StoreHandle, store: &DynUsageStore, source: &str) {
    let Some(retention) = &handle.config.retention else {
        return;
    };
    let keep = TimeDelta::from_std(retention.get()).unwrap_or(TimeDelta::MAX);
    let Some(before) = Utc::now().checked_sub_signed(keep) else {
        return;
    };
    match store.forget(source, before).await {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(source, windows = n, before = %before, "retention: forgot stored usage");
        }
        Err(e) => tracing::warn!(source, error = %e, "retention: forgetting stored usage failed"),
    }
}

/// Now, to the millisecond: what the store records instants in.
fn poll_time() -> DateTime<Utc> {
    chrono::SubsecRound::trunc_subsecs(Utc::now(), 3)
}

/// Polls a snapshot source (Kibana) once at `now`: the lifetime totals of every conversation
/// updated since the last poll (less `settle`, for data that shows late; `backfill` back from
/// `now` at the first poll), recorded in the store, which places each conversation's growth
/// at its update time. `None` when the provider has no snapshots.
pub async fn snapshot_pass(
    handle: &StoreHandle,
    source: &Arc<Source>,
    backfill: Duration,
    settle: Duration,
    now: DateTime<Utc>,
) -> Result<Option<usage_core::PollOutcome>, SyncError> {
    let Some(store) = handle.get().cloned() else {
        return Err(StoreError::Unavailable {
            message: "not connected".into(),
        }
        .into());
    };
    let name = source.info.name.as_str();
    let history = store
        .polls(name, Window::new(now, now + TimeDelta::milliseconds(1)))
        .await?;
    let margin = TimeDelta::from_std(settle).unwrap_or(TimeDelta::zero());
    let since = match history {
        Some(h) => h.last - margin,
        None => now - TimeDelta::from_std(backfill).unwrap_or(TimeDelta::zero()),
    };
    let deadline = Instant::now() + CALL_TIMEOUT;
    let call =
        usage_core::budget::with_deadline(deadline, source.provider.conversations(since, true));
    let batch = renewing(&store, name, &handle.holder, handle.config.lease_ttl, call).await;
    source.record(batch.as_ref().map(|_| ()));
    let Some(batch) = batch? else {
        return Ok(None);
    };
    let outcome = store
        .record_poll(name, now, since, &batch.conversations)
        .await?;
    for note in &outcome.shrunk {
        tracing::warn!(source = name, note = %note, "conversation totals shrank");
    }
    let from = history.map_or(since, |h| h.covers_from);
    let mut progress = Progress {
        holder: handle.holder.clone(),
        state: "idle".into(),
        backfill_from: crate::render::ts(from),
        covered_from: Some(crate::render::ts(from)),
        vendor_requests: batch.upstream_requests,
        last_success: Some(crate::render::ts(Utc::now())),
        ..Progress::default()
    };
    metrics::gauge!(names::SYNC_BACKLOG, "source" => name.to_owned()).set(0.0);
    metrics::gauge!(names::SYNC_LAST_SUCCESS, "source" => name.to_owned())
        .set(Utc::now().timestamp() as f64);
    metrics::gauge!(names::SYNC_COVERED_FROM, "source" => name.to_owned())
        .set(from.timestamp() as f64);
    publish(handle, &store, name, &mut progress).await?;
    Ok(Some(outcome))
}

/// What `usage-gateway sync` did for one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSummary {
    /// The source.
    pub source: String,
    /// Hours stored, or (snapshot sources) conversations that were new or grew.
    pub windows: u64,
    /// What `windows` counts: `hours` or `conversations`.
    pub unit: &'static str,
    /// Vendor requests sent.
    pub requests: u64,
    /// How the source ended: `done`, or why it was skipped or stopped.
    pub outcome: String,
}

/// Shows a pass on a progress bar (hidden when stderr is not a terminal).
struct Bar {
    progress: indicatif::ProgressBar,
    windows: u64,
    requests: u64,
}

impl Observer for Bar {
    fn started(&mut self, backlog: u64) {
        self.progress.set_length(backlog);
    }
    fn stored(&mut self, windows: u64, requests: u64) {
        self.windows += windows;
        self.requests += requests;
        self.progress.inc(windows);
        self.progress
            .set_message(format!("{} vendor requests", self.requests));
    }
}

/// `usage-gateway sync`: one backfill pass of each stored source of `state` (or of `only`),
/// `since` back (default `store.backfill`), with a progress bar per source; a source another
/// replica is syncing is skipped, saying so. Errors name the source.
pub async fn one_shot(
    handle: &Arc<StoreHandle>,
    sources: &[Arc<Source>],
    since: Option<Duration>,
    settle: Duration,
) -> Vec<SourceSummary> {
    let mut out = Vec::new();
    for source in sources {
        let name = source.info.name.clone();
        let mut summary = SourceSummary {
            source: name.clone(),
            unit: if is_stored(source) {
                "hours"
            } else {
                "conversations"
            },
            windows: 0,
            requests: 0,
            outcome: String::new(),
        };
        let Some(store) = handle.get().cloned() else {
            summary.outcome = "failed: the store is not connected".into();
            out.push(summary);
            continue;
        };
        let mut settings = PassSettings::of(handle, source, settle);
        if let Some(since) = since {
            settings.backfill = since;
        }
        match store
            .try_lease(&name, &handle.holder, settings.lease_ttl)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                let holder = store
                    .lease(&name)
                    .await
                    .ok()
                    .flatten()
                    .map_or_else(|| "another replica".to_owned(), |l| l.holder);
                summary.outcome = format!("skipped: {holder} is syncing it");
                out.push(summary);
                continue;
            }
            Err(e) => {
                summary.outcome = format!("failed: {e}");
                out.push(summary);
                continue;
            }
        }
        let bar = indicatif::ProgressBar::new(0).with_prefix(name.clone());
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>16} [{bar:32}] {pos}/{len} hours, {elapsed} elapsed, eta {eta} ({msg})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        let mut observer = Bar {
            progress: bar,
            windows: 0,
            requests: 0,
        };
        let result = if is_stored(source) {
            // To the end, however many hours close meanwhile.
            match target_range(Utc::now(), &settings) {
                Some(range) => pass_over(handle, source, range, &settings, &mut observer).await,
                None => Ok(PassEnd::Done),
            }
        } else {
            // A snapshot source: one poll.
            match snapshot_pass(handle, source, settings.backfill, settle, poll_time()).await {
                Ok(Some(outcome)) => {
                    observer.windows = outcome.baselines + outcome.grown;
                    Ok(PassEnd::Done)
                }
                Ok(None) => {
                    let _ = store.release_lease(&name, &handle.holder).await;
                    summary.outcome = "skipped: the provider has no snapshots".into();
                    out.push(summary);
                    continue;
                }
                Err(e) => Err(e),
            }
        };
        observer.progress.finish_and_clear();
        summary.windows = observer.windows;
        summary.requests = observer.requests;
        summary.outcome = match result {
            Ok(PassEnd::Done) => "done".into(),
            Ok(PassEnd::LostLease) => "stopped: another replica took the lease".into(),
            Ok(PassEnd::NewHour) => "stopped: a new hour closed (run it again)".into(),
            Err(e) => format!("failed: {e}"),
        };
        let _ = store.release_lease(&name, &handle.holder).await;
        out.push(summary);
    }
    out
}
