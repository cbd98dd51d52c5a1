//! The usage store: the normalized points of closed windows per source, kept so that queries
//! over settled history need no vendor call.
//!
//! A store holds, per source, the points of each window it was given at the grain the provider
//! fetched (every dimension the provider fills kept, so that any grouping and filter can be
//! answered from it), and which windows it holds with when they were fetched (`synced_at`).
//! Implementations (one per database engine) live in the `usage-store` crate; callers hold a
//! [`DynUsageStore`].
//!
//! The write unit is one window: [`UsageStore::put_window`] replaces everything stored for the
//! source in that window's span, atomically, so writing a window again never counts it twice and
//! a failed write leaves the previous state. [`UsageStore::put_windows`] writes several disjoint
//! windows the same way in one transaction (all or none).
//!
//! Several gateway replicas may share one store: a *sync lease* per source
//! ([`UsageStore::try_lease`]) lets exactly one of them sync a source at a time, and another
//! take over when the holder stops renewing it. Lease times are the database's clock, so that
//! replicas whose clocks disagree still agree on who holds a lease.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::{
    ConversationTotals, Counters, Dimension, PointKey, Unit, UsagePoint, UsageQuery, Window,
};

/// One window a store holds a source's points for, and when they were fetched from the vendor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct CoveredInterval {
    /// The window (half-open), exactly as written.
    pub window: Window,
    /// When the window's points were fetched (to the millisecond).
    pub synced_at: DateTime<Utc>,
}

/// A source's sync lease as the store holds it ([`UsageStore::lease`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseInfo {
    /// Who took it last (a replica's name, as given to [`UsageStore::try_lease`]).
    pub holder: String,
    /// When it runs out unless renewed (to the millisecond, by the database's clock).
    pub expires_at: DateTime<Utc>,
    /// Whether it had run out when read, by the database's clock (then anyone may take it,
    /// and `holder` no longer holds it).
    pub expired: bool,
    /// The opaque progress text the holder published last ([`UsageStore::publish_progress`]);
    /// `None` until it publishes (a new holder starts without its predecessor's).
    pub progress: Option<String>,
    /// When the lease was last taken, renewed or given progress (database clock).
    pub updated_at: DateTime<Utc>,
}

/// Which stored points [`UsageStore::points`] returns; `None` lets every value through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PointFilter {
    /// Only points of these agent ids.
    pub agents: Option<BTreeSet<String>>,
    /// Only points of these users (points without a user never pass).
    pub users: Option<BTreeSet<String>>,
    /// Only points of these models (points without a model never pass).
    pub models: Option<BTreeSet<String>>,
}

impl PointFilter {
    /// Takes the agent, user and model filters of a provider query.
    pub fn from_query(query: &UsageQuery) -> Self {
        Self {
            agents: query.agents.clone(),
            users: query.users.clone(),
            models: query.models.clone(),
        }
    }

    /// Reports whether a point's labels pass the filter, as the store applies it.
    pub fn matches(&self, key: &PointKey) -> bool {
        let passes = |set: &Option<BTreeSet<String>>, label: &Option<String>| {
            set.as_ref()
                .is_none_or(|s| label.as_ref().is_some_and(|l| s.contains(l)))
        };
        passes(&self.agents, &key.agent)
            && passes(&self.users, &key.user)
            && passes(&self.models, &key.model)
    }
}

/// What went wrong in a usage store. Messages never contain credentials: a database URL is
/// shown with its password replaced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database cannot be reached or is busy (connection refused or lost, pool exhausted,
    /// lock timeout, serialization failure); retrying later may succeed.
    #[error("usage store unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
    },
    /// The database's schema does not match this build: a migration applied to it that this
    /// build does not know, one that differs from this build's, or one that failed.
    #[error("usage store schema: migration {migration}: {message}")]
    Schema {
        /// The migration, as `<version>_<description>` (its file name in `migrations/`).
        migration: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The write was refused as given (nothing was written), e.g. a counter above what the
    /// database holds or a point outside the window written.
    #[error("usage store refused the write: {message}")]
    Refused {
        /// Which value and why.
        message: String,
    },
    /// Stored data this build cannot read (e.g. a negative counter or an unknown unit).
    #[error("usage store holds unreadable data: {message}")]
    Corrupt {
        /// What could not be read.
        message: String,
    },
    /// The store's location or settings are wrong.
    #[error("usage store configuration: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// Another database error.
    #[error("usage store: {message}")]
    Database {
        /// The engine's message.
        message: String,
    },
}

impl StoreError {
    /// Reports whether retrying later may succeed (the database was unreachable or busy).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Durable storage of the normalized points of closed windows, per source.
///
/// Instants are stored exactly, to the millisecond: a window whose start or end is not a whole
/// millisecond is refused (`synced_at` is rounded down). Counters are held as signed 64-bit
/// integers: a counter above `i64::MAX` is refused, never wrapped.
#[async_trait]
pub trait UsageStore: Send + Sync + std::fmt::Debug + 'static {
    /// Names the engine (`sqlite`, `postgres`).
    fn engine(&self) -> &'static str;

    /// Writes one closed window of a source: its points (each of whose `window` must be
    /// `window`; points with the same key and unit are added up), and marks the window covered
    /// with `synced_at`, in one transaction. Every window of the source that overlaps `window`
    /// is replaced with its points (writing the same window again replaces it), so nothing is
    /// counted twice; on any error nothing is written and the previous state stays. Writers of
    /// the same source are serialized. The same as [`Self::put_windows`] with one window.
    async fn put_window(
        &self,
        source: &str,
        window: Window,
        points: &[UsagePoint],
        synced_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Writes several closed windows of a source, each with its points, in one transaction:
    /// each window exactly as [`Self::put_window`] writes it (replacing every stored window it
    /// overlaps, its points required to be of it), all marked covered with `synced_at`. The
    /// windows given must be disjoint (touching is fine): overlapping ones are refused, naming
    /// them. On any error (a bad window or point in any of them) nothing of any window is
    /// written. No windows: nothing is done.
    async fn put_windows(
        &self,
        source: &str,
        windows: &[(Window, Vec<UsagePoint>)],
        synced_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Lists the windows of `source` held that lie inside `range`, one entry per written window
    /// (not merged: each has its own `synced_at`), ascending and disjoint. [`merge_coverage`]
    /// joins them into intervals; [`uncovered`] gives the gaps.
    async fn coverage(
        &self,
        source: &str,
        range: Window,
    ) -> Result<Vec<CoveredInterval>, StoreError>;

    /// Returns the stored points of `source` whose window lies inside `range` and that pass
    /// `filter`, with every label, the agent name, the unit and the counters as written: one
    /// point per window, key and unit, sorted by window, key and unit (the order of
    /// [`crate::UsageBatch::compact`], whatever the engine's collation).
    async fn points(
        &self,
        source: &str,
        range: Window,
        filter: &PointFilter,
    ) -> Result<Vec<UsagePoint>, StoreError>;

    /// Returns the stored points of `source` whose window lies inside `range` and that pass
    /// `filter`, added up by the database per window, unit and the labels of `keep` (the other
    /// labels dropped; the agent name kept only with the agent), sorted as [`Self::points`]:
    /// what a query grouping by `keep` needs, without reading every stored label.
    async fn sums(
        &self,
        source: &str,
        range: Window,
        filter: &PointFilter,
        keep: &BTreeSet<Dimension>,
    ) -> Result<Vec<UsagePoint>, StoreError>;

    /// Lists the sources the store holds any window of, sorted.
    async fn sources(&self) -> Result<Vec<String>, StoreError>;

    /// Forgets the windows of `source` that end at or before `before`, with their points, and
    /// the snapshot history before it (usage placed, polls, shrink notes; each conversation's
    /// last totals stay) — retention; returns how many windows were forgotten.
    async fn forget(&self, source: &str, before: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Takes the sync lease of `source` for `holder` for `ttl` (whole milliseconds, rounded
    /// up; at least 1 ms, at most [`MAX_LEASE_TTL`]) when no one holds it, its holder let it
    /// run out, or `holder` already holds it (then it is renewed: it runs out `ttl` from now,
    /// keeping the published progress). Returns whether `holder` holds it afterwards. One
    /// atomic statement on the database's clock, so that of replicas contending at once
    /// exactly one wins, whatever their own clocks say. A new holder starts without progress.
    async fn try_lease(
        &self,
        source: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Gives up the sync lease of `source` if `holder` holds it (anyone may take it at once;
    /// [`Self::lease`] then finds none); does nothing otherwise.
    async fn release_lease(&self, source: &str, holder: &str) -> Result<(), StoreError>;

    /// Stores `progress` (opaque to the store, e.g. JSON) as the published progress of the
    /// sync of `source`, only while `holder` holds its lease (not run out by the database's
    /// clock); returns whether it was stored.
    async fn publish_progress(
        &self,
        source: &str,
        holder: &str,
        progress: &str,
    ) -> Result<bool, StoreError>;

    /// Reads the sync lease of `source`: who took it last, until when, whether it has run out
    /// (by the database's clock) and the progress published; `None` when none was taken or it
    /// was released.
    async fn lease(&self, source: &str) -> Result<Option<LeaseInfo>, StoreError>;

    /// Records one poll of a snapshot source (Kibana): `conversations` are the lifetime totals
    /// of every conversation updated at or after `since`, as seen at `polled_at`. In one
    /// transaction, each is compared with the last totals stored for it: a conversation seen
    /// for the first time places its totals at its `updated_at` (a *baseline*: what happened
    /// before the first poll that saw it is placed as conversation attribution places it); one
    /// that grew places the growth at its new `updated_at`; one whose totals shrank (a reset,
    /// an edited conversation) places nothing for the counters that shrank, is reported in the
    /// outcome and kept as a note, and is measured from its new totals on; its usage recorded
    /// so far stays. Recording the same totals again places nothing; a poll older than one
    /// recorded writes nothing (`superseded`), and a conversation seen older than recorded is
    /// left as recorded.
    async fn record_poll(
        &self,
        source: &str,
        polled_at: DateTime<Utc>,
        since: DateTime<Utc>,
        conversations: &[ConversationTotals],
    ) -> Result<PollOutcome, StoreError>;

    /// Returns the usage of `source` placed from snapshots at instants inside `range` that
    /// passes `filter`, sorted by instant, agent and conversation.
    async fn placed(
        &self,
        source: &str,
        range: Window,
        filter: &PointFilter,
    ) -> Result<Vec<PlacedUsage>, StoreError>;

    /// Returns the last totals stored of the given `(agent, conversation)`s of `source` (those
    /// never seen are absent).
    async fn last_totals(
        &self,
        source: &str,
        conversations: &[(String, String)],
    ) -> Result<Vec<ConversationTotals>, StoreError>;

    /// Describes the polls of `source`: the first and the last, and the longest time between
    /// two consecutive polls that `range` sees (the placement's resolution there); `None`
    /// before the first poll.
    async fn polls(&self, source: &str, range: Window) -> Result<Option<PollHistory>, StoreError>;

    /// Lists the notes of totals that shrank, observed inside `range`.
    async fn shrunk(&self, source: &str, range: Window) -> Result<Vec<String>, StoreError>;
}

/// Usage placed in time from snapshots: one conversation's growth between two polls, at its
/// update time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlacedUsage {
    /// Where it is placed: the conversation's `updated_at` at the poll that saw it grow.
    pub at: DateTime<Utc>,
    /// The agent.
    pub agent: String,
    /// The agent's human name, when known.
    pub agent_name: Option<String>,
    /// The conversation.
    pub conversation: String,
    /// The user, when known.
    pub user: Option<String>,
    /// The unit.
    pub unit: Unit,
    /// The growth (or the baseline totals).
    pub counters: Counters,
    /// The conversation's totals at the first poll that saw it (what happened before that
    /// poll is placed at its update time then, as conversation attribution places it).
    pub baseline: bool,
}

/// What recording one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PollOutcome {
    /// Conversations seen for the first time.
    pub baselines: u64,
    /// Conversations that grew.
    pub grown: u64,
    /// Conversations whose totals shrank, as notes.
    pub shrunk: Vec<String>,
    /// A newer poll was recorded already: this one wrote nothing.
    pub superseded: bool,
}

/// The polls of a snapshot source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PollHistory {
    /// The first poll.
    pub first: DateTime<Utc>,
    /// From where the first poll looked (conversations updated before it were never
    /// recorded).
    pub covers_from: DateTime<Utc>,
    /// The last poll.
    pub last: DateTime<Utc>,
    /// The longest time between two consecutive polls in the range asked (from the last poll
    /// before it to the first after it): usage there is placed to within this.
    pub resolution: Duration,
}

/// The longest sync lease [`UsageStore::try_lease`] grants: a longer one is refused (a lease
/// that outlives a crashed holder by more than this is a mistake, and the bound keeps its
/// expiry far from the database's integer limits).
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// A lease's `ttl` in whole milliseconds (rounded up), as [`UsageStore::try_lease`] takes it:
/// refused when zero or above [`MAX_LEASE_TTL`].
pub fn lease_ttl_ms(ttl: Duration) -> Result<i64, StoreError> {
    if ttl.is_zero() || ttl > MAX_LEASE_TTL {
        return Err(StoreError::Refused {
            message: format!(
                "a lease ttl of {ttl:?} is outside what the store grants (above zero, at most \
                 {MAX_LEASE_TTL:?})"
            ),
        });
    }
    // At most a week of milliseconds: far inside i64.
    Ok(ttl.as_nanos().div_ceil(1_000_000) as i64)
}

/// A shared store handle.
pub type DynUsageStore = Arc<dyn UsageStore>;

/// Joins covered windows that touch or overlap into intervals, ascending; an interval's
/// `synced_at` is the oldest of its windows' (so "synced since T" holds for all of it).
pub fn merge_coverage(covered: &[CoveredInterval]) -> Vec<CoveredInterval> {
    let mut sorted = covered.to_vec();
    sorted.sort();
    let mut merged: Vec<CoveredInterval> = Vec::with_capacity(sorted.len());
    for c in sorted {
        match merged.last_mut() {
            Some(last) if c.window.start <= last.window.end => {
                last.window.end = last.window.end.max(c.window.end);
                last.synced_at = last.synced_at.min(c.synced_at);
            }
            _ => merged.push(c),
        }
    }
    merged
}

/// Returns the parts of `range` no covered window holds, ascending: what a reader still has to
/// fetch live, or a sync still has to write.
pub fn uncovered(range: Window, covered: &[CoveredInterval]) -> Vec<Window> {
    let mut gaps = Vec::new();
    let mut from = range.start;
    for c in merge_coverage(covered) {
        if c.window.end <= from || c.window.start >= range.end {
            continue;
        }
        if c.window.start > from {
            gaps.push(Window::new(from, c.window.start));
        }
        from = from.max(c.window.end);
    }
    if from < range.end {
        gaps.push(Window::new(from, range.end));
    }
    gaps
}

/// Adds up the points of one window that share a key and unit (the first agent name seen
/// kept), borrowing their labels: what [`UsageStore::put_window`] writes.
pub fn merge_points(points: &[UsagePoint]) -> Vec<(&PointKey, Unit, Option<&str>, Counters)> {
    let mut merged: BTreeMap<(&PointKey, Unit), (Option<&str>, Counters)> = BTreeMap::new();
    for p in points {
        let e = merged.entry((&p.key, p.unit)).or_default();
        if e.0.is_none() {
            e.0 = p.agent_name.as_deref();
        }
        e.1.add(&p.counters);
    }
    merged
        .into_iter()
        .map(|((key, unit), (name, counters))| (key, unit, name, counters))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn h(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, hour, 0, 0).unwrap()
    }

    fn cov(a: u32, b: u32, synced: u32) -> CoveredInterval {
        CoveredInterval {
            window: Window::new(h(a), h(b)),
            synced_at: h(synced),
        }
    }

    #[test]
    fn coverage_merges_touching_windows_with_the_oldest_sync() {
        let merged = merge_coverage(&[cov(3, 4, 9), cov(1, 2, 7), cov(2, 3, 6), cov(5, 6, 8)]);
        assert_eq!(merged, vec![cov(1, 4, 6), cov(5, 6, 8)]);
        assert!(merge_coverage(&[]).is_empty());
    }

    #[test]
    fn uncovered_lists_the_gaps_of_a_range() {
        let covered = [cov(1, 2, 9), cov(2, 3, 9), cov(5, 6, 9), cov(8, 10, 9)];
        let gaps = uncovered(Window::new(h(0), h(9)), &covered);
        assert_eq!(
            gaps,
            vec![
                Window::new(h(0), h(1)),
                Window::new(h(3), h(5)),
                Window::new(h(6), h(8)),
            ]
        );
        assert!(uncovered(Window::new(h(1), h(3)), &covered).is_empty());
        assert_eq!(
            uncovered(Window::new(h(11), h(12)), &covered),
            vec![Window::new(h(11), h(12))]
        );
    }

    #[test]
    fn a_lease_ttl_is_whole_milliseconds_within_bounds() {
        assert_eq!(lease_ttl_ms(Duration::from_millis(200)), Ok(200));
        assert_eq!(lease_ttl_ms(Duration::from_nanos(1)), Ok(1));
        assert_eq!(lease_ttl_ms(Duration::from_micros(1_500)), Ok(2));
        assert_eq!(
            lease_ttl_ms(MAX_LEASE_TTL),
            Ok(MAX_LEASE_TTL.as_millis() as i64)
        );
        for ttl in [Duration::ZERO, MAX_LEASE_TTL + Duration::from_nanos(1)] {
            assert!(
                matches!(lease_ttl_ms(ttl), Err(StoreError::Refused { .. })),
                "{ttl:?}"
            );
        }
    }

    #[test]
    fn the_filter_lets_only_named_labels_through() {
        let key = |agent: Option<&str>, user: Option<&str>| PointKey {
            agent: agent.map(str::to_owned),
            user: user.map(str::to_owned),
            ..PointKey::default()
        };
        let all = PointFilter::default();
        assert!(all.matches(&key(None, None)));
        let f = PointFilter {
            agents: Some(BTreeSet::from(["a".to_owned()])),
            users: Some(BTreeSet::from(["u".to_owned()])),
            models: None,
        };
        assert!(f.matches(&key(Some("a"), Some("u"))));
        assert!(!f.matches(&key(Some("a"), None)));
        assert!(!f.matches(&key(Some("b"), Some("u"))));
        assert!(!f.matches(&key(None, Some("u"))));
    }
}
