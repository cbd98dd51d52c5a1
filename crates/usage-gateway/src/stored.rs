//! The usage store in the gateway: opening it, and the read path that answers the part of a
//! query the store covers without vendor calls.
//!
//! For each source whose usage is placed exactly in time (`attribution: exact`), a query's
//! windows are split against the store's coverage: the stored windows lying wholly inside a
//! query window are summed from the store, and only the rest (the open tail, history not yet
//! synced, an edge of a window that does not fall on a stored hour) is fetched live through the
//! window cache as today; a window of a day or less that would leave two live parts (an
//! Asia/Kolkata day) is fetched live whole. Closed windows fetched live with every dimension and no filter are written back.
//! When the store fails or is slow, the whole query is answered live with a note saying so.
//!
//! Sources placing usage by conversation (Kibana) are stored as snapshots of their
//! conversations' totals instead (`fetch_snapshots`): a conversation's whole usage moves to a
//! later window when it continues, so stored windows would count it twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::OnceCell;
use usage_core::store::uncovered;
use usage_core::{
    Attribution, Dimension, DynUsageStore, PointFilter, ProviderError, StoreError, UsagePoint,
    Window,
};

use crate::config::StoreConfig;
use crate::fetch::{Shape, Source, SourceAnswer, UsageCache, WindowEntry};
use crate::obs::names;

/// The longest window a query writes back: longer ones (a month, a whole range) would stand
/// for many hours the syncer could not refine without first losing them.
const MAX_WRITE_BACK: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// How often start-up retries a store it could not reach.
const REOPEN_EVERY: Duration = Duration::from_secs(15);

/// The store as the gateway holds it: opened at start-up, or later in the background when the
/// database was unreachable then.
#[derive(Debug)]
pub struct StoreHandle {
    /// `[store]`.
    pub config: StoreConfig,
    /// The engine (`sqlite`, `postgres`).
    pub engine: &'static str,
    /// The location as shown (password replaced).
    pub shown: String,
    store: OnceCell<DynUsageStore>,
    /// The last failure of the store and when (cleared by nothing: shown with its time).
    last_error: Mutex<Option<(DateTime<Utc>, String)>>,
    /// This process's name in sync leases: host, process id and a random suffix.
    pub holder: String,
    /// Per-source sync progress this process knows (its own syncers').
    pub progress: Mutex<BTreeMap<String, crate::sync::Progress>>,
    /// This process's syncers, stopped before their leases are given up at shutdown.
    pub syncers: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl StoreHandle {
    /// Opens the store of `config`, waiting at most `open_timeout`. A store that cannot be
    /// reached in time is opened later in the background (queries are answered live
    /// meanwhile); a schema this build does not know or a wrong location is an error here, so
    /// that start-up fails naming it.
    pub async fn start(config: StoreConfig) -> Result<Arc<Self>, StoreError> {
        let location = config.location()?;
        let handle = Arc::new(Self {
            engine: location.engine(),
            shown: location.to_string(),
            store: OnceCell::new(),
            last_error: Mutex::new(None),
            holder: holder_name(),
            progress: Mutex::new(BTreeMap::new()),
            syncers: Mutex::new(Vec::new()),
            config,
        });
        match tokio::time::timeout(handle.config.open_timeout, location.open()).await {
            Ok(Ok(store)) => {
                let _ = handle.store.set(store);
                tracing::info!(engine = handle.engine, location = %handle.shown, "usage store open");
            }
            Ok(Err(e)) if !e.is_transient() => return Err(e),
            failed => {
                let message = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!(
                        "no connection within store.open_timeout ({:?})",
                        handle.config.open_timeout
                    ),
                };
                tracing::warn!(engine = handle.engine, location = %handle.shown, error = %message,
                    "usage store unreachable; answering live and retrying in the background");
                handle.failed(message);
                let retry = handle.clone();
                tokio::spawn(async move { retry.reopen(location).await });
            }
        }
        Ok(handle)
    }

    async fn reopen(&self, location: usage_store::StoreLocation) {
        loop {
            tokio::time::sleep(REOPEN_EVERY).await;
            match location.open().await {
                Ok(store) => {
                    let _ = self.store.set(store);
                    tracing::info!(engine = self.engine, location = %self.shown, "usage store open");
                    return;
                }
                Err(e) if !e.is_transient() => {
                    // A schema this build does not know: reading or writing it could corrupt
                    // it, so the store stays unused (queries are answered live) until an
                    // operator acts on the logged error.
                    tracing::error!(engine = self.engine, location = %self.shown, error = %e,
                        "usage store refused; answering live without it");
                    self.failed(e.to_string());
                    return;
                }
                Err(e) => self.failed(e.to_string()),
            }
        }
    }

    /// The store, once open.
    pub fn get(&self) -> Option<&DynUsageStore> {
        self.store.get()
    }

    /// Handles a failed or slow read of `source`'s stored usage: logs it, records it, counts it
    /// and returns the note of the answer given live instead.
    fn read_failed(&self, source: &str, message: String) -> String {
        tracing::warn!(source, error = %message, "usage store failed; answering live");
        self.failed(message);
        metrics::counter!(names::STORE_READS, "source" => source.to_owned(), "result" => "error")
            .increment(1);
        format!("usage store ({}) unavailable; answered live", self.engine)
    }

    /// Records a failure of the store.
    pub fn failed(&self, message: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some((Utc::now(), message));
        }
    }

    /// Gives up this process's sync leases of `sources` (at shutdown), so that another replica
    /// takes them over at once instead of after `lease_ttl`.
    pub async fn release_leases(&self, sources: &[String]) {
        // Stopped first: a syncer still running could take a lease again right after.
        if let Ok(mut syncers) = self.syncers.lock() {
            for s in syncers.drain(..) {
                s.abort();
            }
        }
        let Some(store) = self.get() else {
            return;
        };
        for source in sources {
            if let Err(e) = store.release_lease(source, &self.holder).await {
                tracing::warn!(source = %source, error = %e, "releasing the sync lease failed");
            }
        }
    }

    /// The last failure of the store and when.
    pub fn last_error(&self) -> Option<(DateTime<Utc>, String)> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

/// A name for this process in sync leases, unique among replicas.
fn holder_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{}:{:08x}", std::process::id(), fastrand::u32(..))
}

/// Reports whether a source's usage can be stored: only usage placed exactly in time stays
/// where it was placed.
pub fn is_stored(source: &Source) -> bool {
    source.info.attribution == Attribution::Exact
}

/// The shape the store holds a source's points in: every dimension the source fills, no filter.
pub fn full_shape(source: &Source) -> Shape {
    let dims: BTreeSet<Dimension> = source
        .info
        .dimensions
        .iter()
        .copied()
        .filter(|d| d.is_vendor_dimension())
        .collect();
    Shape {
        dims: source.provider.fetch_dimensions(&dims),
        agents: None,
        users: None,
        models: None,
    }
}

/// Where a source's answer came from, for its `sources[]` entry.
#[derive(Debug, Clone, Default)]
pub struct StoreUse {
    /// The share of the queried time answered from the store (0 to 1), when the source is
    /// stored and the store was asked.
    pub coverage: Option<f64>,
    /// When the oldest stored window used was fetched from the vendor.
    pub synced_at: Option<DateTime<Utc>>,
    /// How the answer places usage in time, when the store changed it (snapshots).
    pub attribution: Option<Attribution>,
    /// With snapshots: usage is placed to within this of when it happened.
    pub resolution: Option<Duration>,
    /// Remarks for the answer: why the store was not used (it failed or is not open yet),
    /// snapshot totals that shrank, usage before the first snapshot.
    pub notes: Vec<String>,
}

/// The share (0 to 1) of the time of `windows` that `seconds` are.
fn share_of(windows: &[Window], seconds: i64) -> f64 {
    let total: i64 = windows
        .iter()
        .map(|w| (w.end - w.start).num_seconds())
        .sum();
    if total > 0 {
        seconds as f64 / total as f64
    } else {
        0.0
    }
}

/// The part of a query the store answers: per query window, its stored points.
struct FromStore {
    points: Vec<Vec<UsagePoint>>,
    synced_at: Vec<Option<DateTime<Utc>>>,
    /// Live windows and the query window each belongs to, ascending.
    live: Vec<(Window, usize)>,
    stored_seconds: i64,
}

/// One source's part of a query, as the read path is asked it.
#[derive(Debug)]
pub struct Ask<'a> {
    /// The window cache live answers go through.
    pub cache: &'a UsageCache,
    /// The source.
    pub source: &'a Arc<Source>,
    /// The query's windows.
    pub windows: &'a [Window],
    /// What to ask of the source.
    pub shape: Arc<Shape>,
    /// The dimensions the query keeps of the source (the shape's may be wider): what stored
    /// usage is added up to.
    pub keep: &'a BTreeSet<Dimension>,
    /// `Cache-Control: no-cache`.
    pub refresh: bool,
    /// The request's deadline.
    pub deadline: tokio::time::Instant,
}

/// Answers one source's part of a query: from the store where it holds the source (by the
/// hour for sources placed exactly, from snapshots for sources placed by conversation), the
/// rest live through the window cache; without a store, live.
pub async fn answer(
    handle: Option<&StoreHandle>,
    ask: Ask<'_>,
) -> Result<(SourceAnswer, StoreUse), ProviderError> {
    match handle {
        Some(h) if is_stored(ask.source) => fetch(h, ask).await,
        Some(h) if ask.source.info.attribution == Attribution::Conversation => {
            fetch_snapshots(h, ask).await
        }
        _ => ask
            .cache
            .fetch(
                ask.source,
                ask.windows,
                ask.shape,
                ask.refresh,
                ask.deadline,
            )
            .await
            .map(|a| (a, StoreUse::default())),
    }
}

/// Answers `windows` of a stored source: the store's covered part from the store, the rest
/// through `cache` (live), writing closed live windows back. Falls back to `cache` alone when
/// the store is not open, fails, or takes more than a quarter of the time left.
async fn fetch(
    handle: &StoreHandle,
    ask: Ask<'_>,
) -> Result<(SourceAnswer, StoreUse), ProviderError> {
    let Ask {
        cache,
        source,
        windows,
        shape,
        keep,
        refresh,
        deadline,
    } = ask;
    let name = source.info.name.as_str();
    // Unfiltered queries are fetched with every dimension, so that their closed windows can be
    // written back (the aggregation groups the extra labels away).
    let unfiltered = shape.agents.is_none() && shape.users.is_none() && shape.models.is_none();
    let live_shape = if unfiltered {
        Arc::new(full_shape(source))
    } else {
        shape.clone()
    };
    let Some(store) = handle.get() else {
        let answer = cache
            .fetch(source, windows, live_shape.clone(), refresh, deadline)
            .await?;
        let note = format!(
            "usage store ({}) not connected; answered live",
            handle.engine
        );
        return Ok((
            answer,
            StoreUse {
                notes: vec![note],
                ..StoreUse::default()
            },
        ));
    };
    let planned = if refresh || windows.is_empty() {
        // `no-cache` asks the vendors again; what they answer is written back.
        Ok(None)
    } else {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let read = async {
            // Once more when a write changed the windows while they were read.
            match from_store(store, name, windows, &shape, keep).await {
                Err(StoreError::Unavailable { .. }) => {
                    from_store(store, name, windows, &shape, keep).await
                }
                done => done,
            }
        };
        match tokio::time::timeout(left / 4, read).await {
            Ok(Ok(p)) => Ok(Some(p)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "usage store took more than {} ms",
                (left / 4).as_millis()
            )),
        }
    };
    let planned = match planned {
        Ok(p) => p,
        Err(message) => {
            let note = handle.read_failed(name, message);
            let answer = cache
                .fetch(source, windows, live_shape, refresh, deadline)
                .await?;
            return Ok((
                answer,
                StoreUse {
                    notes: vec![note],
                    ..StoreUse::default()
                },
            ));
        }
    };
    let Some(plan) = planned else {
        let answer = cache
            .fetch(source, windows, live_shape, refresh, deadline)
            .await?;
        write_back(handle, source, windows, &answer, unfiltered);
        return Ok((
            answer,
            StoreUse {
                coverage: Some(0.0),
                ..StoreUse::default()
            },
        ));
    };
    let coverage = share_of(windows, plan.stored_seconds);
    let result = if plan.live.is_empty() {
        "store"
    } else if plan.stored_seconds > 0 {
        "mixed"
    } else {
        "live"
    };
    metrics::counter!(names::STORE_READS, "source" => name.to_owned(), "result" => result)
        .increment(1);
    let live_windows: Vec<Window> = plan.live.iter().map(|(w, _)| *w).collect();
    let live = if live_windows.is_empty() {
        None
    } else {
        let answer = cache
            .fetch(source, &live_windows, live_shape, refresh, deadline)
            .await?;
        write_back(handle, source, &live_windows, &answer, unfiltered);
        Some(answer)
    };
    let synced_at = plan.synced_at.iter().flatten().min().copied();
    let store_use = StoreUse {
        coverage: Some(coverage),
        synced_at,
        ..StoreUse::default()
    };
    Ok((assemble(windows, plan, live, keep), store_use))
}

/// Plans a query against the store: which stored windows lie inside each query window (their
/// points read and moved into the query window, projected to the query's dimensions), and the
/// parts of each query window left to fetch live.
async fn from_store(
    store: &DynUsageStore,
    source: &str,
    windows: &[Window],
    shape: &Shape,
    keep: &BTreeSet<Dimension>,
) -> Result<FromStore, StoreError> {
    let range = Window::new(windows[0].start, windows[windows.len() - 1].end);
    let covered = store.coverage(source, range).await?;
    let mut plan = FromStore {
        points: vec![Vec::new(); windows.len()],
        synced_at: vec![None; windows.len()],
        live: Vec::new(),
        stored_seconds: 0,
    };
    let mut chosen: BTreeMap<Window, usize> = BTreeMap::new();
    let mut next = 0;
    for (i, w) in windows.iter().enumerate() {
        // Stored windows are disjoint and ascending; those starting before this window
        // straddle its start (or belong to a gap between query windows) and cannot be used.
        while next < covered.len() && covered[next].window.start < w.start {
            next += 1;
        }
        let mut inside = Vec::new();
        while next < covered.len() && covered[next].window.start < w.end {
            if covered[next].window.end <= w.end {
                inside.push(covered[next]);
            }
            next += 1;
        }
        let gaps = uncovered(*w, &inside);
        if gaps.len() > 1 && w.end - w.start <= chrono::TimeDelta::days(1) {
            // Vendors such as DigitalOcean charge a request per window: two live parts of a
            // short window (the half hours at both ends of an Asia/Kolkata day) would cost
            // more than the window itself, so it is fetched live whole, as without a store. A
            // longer window (a week, a whole range) keeps its stored part: what it saves
            // outweighs one more request per agent.
            plan.live.push((*w, i));
            continue;
        }
        for c in &inside {
            chosen.insert(c.window, i);
            plan.stored_seconds += (c.window.end - c.window.start).num_seconds();
            plan.synced_at[i] = Some(plan.synced_at[i].map_or(c.synced_at, |s| s.min(c.synced_at)));
        }
        plan.live.extend(gaps.into_iter().map(|g| (g, i)));
    }
    if chosen.is_empty() {
        return Ok(plan);
    }
    let read = Window::new(
        chosen.keys().next().map_or(range.start, |w| w.start),
        chosen.keys().next_back().map_or(range.end, |w| w.end),
    );
    let filter = PointFilter {
        agents: shape.agents.clone(),
        users: shape.users.clone(),
        models: shape.models.clone(),
    };
    // The database adds the points up to the query's dimensions.
    let sums = store.sums(source, read, &filter, keep).await?;
    // The two reads are separate statements: a write between them (the syncer replacing a
    // window a query wrote back) could have removed a chosen window's points. The chosen
    // windows must still be stored, as they were, or the read does not count.
    let again = store.coverage(source, read).await?;
    let still: BTreeSet<(Window, DateTime<Utc>)> =
        again.iter().map(|c| (c.window, c.synced_at)).collect();
    let unchanged = covered
        .iter()
        .filter(|c| chosen.contains_key(&c.window))
        .all(|c| still.contains(&(c.window, c.synced_at)));
    if !unchanged {
        return Err(StoreError::Unavailable {
            message: format!("{source}: stored windows changed while being read"),
        });
    }
    for mut p in sums {
        let Some(&i) = chosen.get(&p.window) else {
            continue; // a stored window straddling a query window's edge
        };
        p.window = windows[i];
        plan.points[i].push(p);
    }
    Ok(plan)
}

/// Puts each query window together from its stored points and the live answers of its parts.
fn assemble(
    windows: &[Window],
    plan: FromStore,
    live: Option<SourceAnswer>,
    keep: &BTreeSet<Dimension>,
) -> SourceAnswer {
    let (live_entries, cached, upstream_requests, stale) = match live {
        Some(a) => (a.entries, a.cached, a.upstream_requests, a.stale),
        None => (Vec::new(), true, 0, None),
    };
    let mut parts: Vec<Vec<(&Window, &Arc<WindowEntry>)>> = vec![Vec::new(); windows.len()];
    for ((w, i), e) in plan.live.iter().zip(live_entries.iter()) {
        parts[*i].push((w, e));
    }
    let mut entries = Vec::with_capacity(windows.len());
    for (i, (window, mut points)) in windows.iter().zip(plan.points).enumerate() {
        // A window answered live as a whole keeps its entry as the cache holds it.
        if let [(w, e)] = parts[i].as_slice()
            && *w == window
            && points.is_empty()
            && plan.synced_at[i].is_none()
        {
            entries.push(Arc::clone(e));
            continue;
        }
        let mut fetched_at = plan.synced_at[i];
        let mut closed = true;
        let mut notes = Vec::new();
        let mut partial = false;
        let mut bucket_width = None;
        for (_, e) in &parts[i] {
            for p in &e.points {
                let mut p = p.clone().project(keep);
                p.window = *window;
                points.push(p);
            }
            fetched_at = Some(fetched_at.map_or(e.fetched_at, |f| f.min(e.fetched_at)));
            closed &= e.closed;
            notes.extend(e.notes.iter().cloned());
            partial |= e.partial;
            bucket_width = bucket_width.or_else(|| e.bucket_width.clone());
        }
        let batch = usage_core::UsageBatch {
            points,
            ..usage_core::UsageBatch::default()
        }
        .compact();
        notes.sort();
        notes.dedup();
        entries.push(Arc::new(WindowEntry {
            points: batch.points,
            fetched_at: fetched_at.unwrap_or_else(Utc::now),
            closed,
            warnings: None,
            notes,
            partial,
            bucket_width,
        }));
    }
    SourceAnswer {
        entries,
        cached,
        upstream_requests,
        stale,
    }
}

/// Writes the closed, complete windows of a live answer fetched with every dimension and no
/// filter to the store, in the background (the answer does not wait for it). Only windows of
/// at most [`MAX_WRITE_BACK`] are written (the syncer later replaces them with its hours), and
/// none that overlaps a stored window other than itself: it would replace the stored windows it
/// overlaps (e.g. an Asia/Kolkata hour replacing two synced UTC hours).
fn write_back(
    handle: &StoreHandle,
    source: &Arc<Source>,
    windows: &[Window],
    answer: &SourceAnswer,
    unfiltered: bool,
) {
    if !unfiltered || !is_stored(source) || answer.stale.is_some() {
        return;
    }
    let Some(store) = handle.get().cloned() else {
        return;
    };
    let closed: Vec<(Window, Arc<WindowEntry>)> = windows
        .iter()
        .zip(&answer.entries)
        .filter(|(w, e)| e.closed && !e.partial && w.end - w.start <= MAX_WRITE_BACK)
        .map(|(w, e)| (*w, Arc::clone(e)))
        .collect();
    let (Some(first), Some(last)) = (closed.first(), closed.last()) else {
        return;
    };
    // Every stored window is at most a day long, so those overlapping the closed windows lie
    // inside this span.
    let span = Window::new(first.0.start - MAX_WRITE_BACK, last.0.end + MAX_WRITE_BACK);
    let name = source.info.name.clone();
    tokio::spawn(async move {
        let outcome = async {
            let stored = store.coverage(&name, span).await?;
            let free: Vec<(Window, Vec<UsagePoint>)> = closed
                .iter()
                .filter(|(w, _)| {
                    !stored
                        .iter()
                        .any(|c| c.window != *w && c.window.start < w.end && w.start < c.window.end)
                })
                .map(|(w, e)| (*w, e.points.clone()))
                .collect();
            let synced_at = closed
                .iter()
                .map(|(_, e)| e.fetched_at)
                .min()
                .unwrap_or_else(Utc::now);
            if !free.is_empty() {
                store.put_windows(&name, &free, synced_at).await?;
            }
            Ok::<u64, StoreError>(free.len() as u64)
        }
        .await;
        let (result, n) = match outcome {
            Ok(n) => ("ok", n),
            Err(err) => {
                tracing::warn!(source = %name, error = %err, "writing windows back to the usage store failed");
                ("error", 1)
            }
        };
        metrics::counter!(names::STORE_WRITES, "source" => name, "origin" => "query", "outcome" => result)
            .increment(n);
    });
}

/// The snapshot part of a query: per query window, its placed usage.
struct FromSnapshots {
    history: usage_core::PollHistory,
    points: Vec<Vec<UsagePoint>>,
    shrunk: Vec<String>,
}

/// Reads what the store's snapshots place in `windows`, or `None` when the source was never
/// polled or the range starts before the first poll looked.
async fn from_snapshots(
    store: &DynUsageStore,
    source: &str,
    windows: &[Window],
    shape: &Shape,
    keep: &BTreeSet<Dimension>,
) -> Result<Option<FromSnapshots>, StoreError> {
    let range = Window::new(windows[0].start, windows[windows.len() - 1].end);
    let Some(history) = store.polls(source, range).await? else {
        return Ok(None);
    };
    if range.start < history.covers_from {
        return Ok(None);
    }
    let filter = PointFilter {
        agents: shape.agents.clone(),
        users: shape.users.clone(),
        models: shape.models.clone(),
    };
    let mut points = vec![Vec::new(); windows.len()];
    for p in store.placed(source, range, &filter).await? {
        let i = windows.partition_point(|w| w.end <= p.at);
        if i >= windows.len() || !windows[i].contains(p.at) {
            continue; // between two query windows
        }
        points[i].push(
            UsagePoint {
                window: windows[i],
                key: usage_core::PointKey {
                    agent: Some(p.agent),
                    user: p.user,
                    conversation: Some(p.conversation),
                    usage_type: None,
                    model: None,
                },
                agent_name: p.agent_name,
                unit: p.unit,
                counters: p.counters,
            }
            .project(keep),
        );
    }
    let shrunk = store.shrunk(source, range).await?;
    Ok(Some(FromSnapshots {
        history,
        points,
        shrunk,
    }))
}

/// Answers `windows` of a snapshot source (Kibana) from the store's snapshots where it has
/// polled the source: the growth it recorded, placed at update times; the time since the last
/// poll is fetched live and each conversation's last recorded totals subtracted, so that
/// nothing is counted twice. Answers live as before (attribution `conversation`) when the
/// source was never polled, the range starts before the first poll looked, or the store fails
/// (with a note).
async fn fetch_snapshots(
    handle: &StoreHandle,
    ask: Ask<'_>,
) -> Result<(SourceAnswer, StoreUse), ProviderError> {
    let Ask {
        cache,
        source,
        windows,
        shape,
        keep,
        refresh,
        deadline,
    } = ask;
    let name = source.info.name.as_str();
    let live = async |note: Option<String>| {
        let answer = cache
            .fetch(source, windows, shape.clone(), refresh, deadline)
            .await?;
        Ok((
            answer,
            StoreUse {
                notes: note.into_iter().collect(),
                ..StoreUse::default()
            },
        ))
    };
    let Some(store) = handle.get() else {
        return live(None).await;
    };
    if windows.is_empty() {
        return live(None).await;
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let read =
        tokio::time::timeout(left / 4, from_snapshots(store, name, windows, &shape, keep)).await;
    let snapshots = match read {
        Ok(Ok(Some(s))) => s,
        Ok(Ok(None)) => return live(None).await,
        failed => {
            let message = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => format!("usage store took more than {} ms", (left / 4).as_millis()),
            };
            return live(Some(handle.read_failed(name, message))).await;
        }
    };
    let FromSnapshots {
        history,
        mut points,
        shrunk,
    } = snapshots;
    let last = history.last;
    // The time since the last poll, fetched live: per conversation, its totals now less the
    // last recorded ones, at its update time.
    let tail: Vec<(Window, usize)> = windows
        .iter()
        .enumerate()
        .filter(|(_, w)| w.end > last)
        .map(|(i, w)| (Window::new(w.start.max(last), w.end), i))
        .collect();
    let mut fetched_at = last;
    let mut upstream_requests = 0;
    let mut cached = true;
    let mut notes = Vec::new();
    let mut partial = false;
    let mut stale = None;
    if !tail.is_empty() {
        let mut dims = shape.dims.clone();
        dims.extend([Dimension::Agent, Dimension::Conversation]);
        let tail_shape = Arc::new(Shape {
            dims,
            agents: shape.agents.clone(),
            users: shape.users.clone(),
            models: shape.models.clone(),
        });
        let tail_windows: Vec<Window> = tail.iter().map(|(w, _)| *w).collect();
        let answer = cache
            .fetch(source, &tail_windows, tail_shape, refresh, deadline)
            .await?;
        let keys: Vec<(String, String)> = answer
            .entries
            .iter()
            .flat_map(|e| &e.points)
            .filter_map(|p| Some((p.key.agent.clone()?, p.key.conversation.clone()?)))
            .collect();
        let recorded = match store.last_totals(name, &keys).await {
            Ok(r) => r,
            Err(e) => {
                // Without the recorded totals the tail cannot be told from what is stored.
                return live(Some(handle.read_failed(name, e.to_string()))).await;
            }
        };
        // A poll recorded meanwhile would be in these totals but not in the usage read
        // before them: the tail would subtract growth not counted. Then the answer is live.
        let polled_again = store
            .polls(
                name,
                Window::new(last, last + chrono::TimeDelta::milliseconds(1)),
            )
            .await
            .ok()
            .flatten()
            .is_none_or(|h| h.last != last);
        if polled_again {
            return live(None).await;
        }
        let before: BTreeMap<(String, String), usage_core::ConversationTotals> = recorded
            .into_iter()
            .map(|t| ((t.agent.clone(), t.conversation.clone()), t))
            .collect();
        for ((_, i), entry) in tail.iter().zip(&answer.entries) {
            fetched_at = fetched_at.min(entry.fetched_at);
            notes.extend(entry.notes.iter().cloned());
            partial |= entry.partial;
            for p in &entry.points {
                let recorded = p
                    .key
                    .agent
                    .clone()
                    .zip(p.key.conversation.clone())
                    .and_then(|k| before.get(&k))
                    .filter(|t| t.unit == p.unit);
                let counters = recorded.map_or(p.counters, |t| usage_core::Counters {
                    input: p.counters.input.saturating_sub(t.counters.input),
                    output: p.counters.output.saturating_sub(t.counters.output),
                    other: p.counters.other.saturating_sub(t.counters.other),
                });
                if counters.is_zero() {
                    continue;
                }
                points[*i].push(
                    UsagePoint {
                        window: windows[*i],
                        counters,
                        ..p.clone()
                    }
                    .project(keep),
                );
            }
        }
        upstream_requests = answer.upstream_requests;
        cached = answer.cached;
        stale = answer.stale;
    }
    notes.sort();
    notes.dedup();
    let entries = windows
        .iter()
        .zip(points)
        .map(|(w, points)| {
            let batch = usage_core::UsageBatch {
                points,
                ..usage_core::UsageBatch::default()
            }
            .compact();
            Arc::new(WindowEntry {
                points: batch.points,
                fetched_at,
                closed: w.end <= last,
                warnings: None,
                notes: notes.clone(),
                partial,
                bucket_width: None,
            })
        })
        .collect();
    let polled: i64 = windows
        .iter()
        .map(|w| (w.end.min(last) - w.start).num_seconds().max(0))
        .sum();
    let range_start = windows[0].start;
    let mut resolution = history.resolution;
    if !tail.is_empty() {
        // Usage since the last poll is placed at its conversations' update time now.
        resolution = resolution.max((Utc::now() - last).to_std().unwrap_or_default());
    }
    let mut store_notes = shrunk;
    let attribution = if range_start >= history.first {
        Attribution::Snapshot
    } else {
        store_notes.push(format!(
            "usage of conversations last updated before the first snapshot ({}) is placed at \
             that update, as conversation attribution places it",
            crate::render::ts(history.first)
        ));
        Attribution::Conversation
    };
    metrics::counter!(names::STORE_READS, "source" => name.to_owned(), "result" => if tail.is_empty() { "store" } else { "mixed" })
        .increment(1);
    Ok((
        SourceAnswer {
            entries,
            cached,
            upstream_requests,
            stale,
        },
        StoreUse {
            coverage: Some(share_of(windows, polled)),
            synced_at: Some(last),
            attribution: Some(attribution),
            resolution: Some(resolution),
            notes: store_notes,
        },
    ))
}
