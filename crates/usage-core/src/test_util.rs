//! Test helpers (feature `test-util`): a static in-memory provider with configurable data,
//! latency and failure, and the conformance suite every provider runs.
#![allow(clippy::missing_panics_doc, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::ProviderError;
use crate::model::{
    Agent, Attribution, Counters, Dimension, PointKey, ProviderKind, SourceInfo, Unit, UsageBatch,
    UsagePoint, UsageQuery, Window,
};
use crate::provider::UsageProvider;

/// Checks the pause after a 429 without a delay: `provider`, whose vendor answers the next
/// request 429 without `Retry-After`, answers `query` rate limited with no delay; a query right
/// after is refused here, rate limited with a wait in (`pause` − 5 s, `pause`], without a vendor
/// request (`vendor_calls` counts them).
pub async fn assert_429_pauses(
    provider: &dyn UsageProvider,
    query: &UsageQuery,
    pause: Duration,
    vendor_calls: impl Fn() -> u64,
) {
    let e = provider.usage(query).await.unwrap_err();
    assert!(
        matches!(
            e,
            ProviderError::RateLimited {
                retry_after: None,
                ..
            }
        ),
        "{e:?}"
    );
    let sent = vendor_calls();
    let again = provider.usage(query).await.unwrap_err();
    let wait = again.retry_after().expect("a local refusal gives its wait");
    assert!(
        wait > pause.saturating_sub(Duration::from_secs(5)) && wait <= pause,
        "{again:?}"
    );
    assert_eq!(vendor_calls(), sent, "refused without a vendor request");
}

/// One usage event of the static provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticEvent {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Its labels.
    pub key: PointKey,
    /// Its unit.
    pub unit: Unit,
    /// Its counters.
    pub counters: Counters,
}

impl StaticEvent {
    /// Creates a token event for an agent and optional user.
    pub fn tokens(
        at: DateTime<Utc>,
        agent: &str,
        user: Option<&str>,
        input: u64,
        output: u64,
    ) -> Self {
        Self {
            at,
            key: PointKey {
                agent: Some(agent.to_owned()),
                user: user.map(str::to_owned),
                conversation: None,
                usage_type: None,
                model: None,
            },
            unit: Unit::Tokens,
            counters: Counters {
                input,
                output,
                other: 0,
            },
        }
    }
}

/// An in-memory provider answering from a fixed list of events.
#[derive(Debug)]
pub struct StaticProvider {
    info: SourceInfo,
    agents: Vec<Agent>,
    events: Vec<StaticEvent>,
    latency: Mutex<Duration>,
    failure: Mutex<Option<ProviderError>>,
    calls: AtomicU64,
}

impl StaticProvider {
    /// Creates a provider named `name` with agent and user dimensions and no events.
    pub fn new(name: &str) -> Self {
        Self {
            info: SourceInfo {
                name: name.to_owned(),
                provider: ProviderKind::STATIC,
                attribution: Attribution::Exact,
                dimensions: BTreeSet::from([Dimension::Agent, Dimension::User]),
                filters: BTreeSet::from([Dimension::Agent, Dimension::User]),
            },
            agents: Vec::new(),
            events: Vec::new(),
            latency: Mutex::new(Duration::ZERO),
            failure: Mutex::new(None),
            calls: AtomicU64::new(0),
        }
    }

    /// Sets which vendor dimensions the source has and can filter by.
    #[must_use]
    pub fn with_dimensions(mut self, dims: &[Dimension], filters: &[Dimension]) -> Self {
        self.info.dimensions = dims.iter().copied().collect();
        self.info.filters = filters.iter().copied().collect();
        self
    }

    /// Sets the provider kind it reports (to stand in for a vendor in gateway tests).
    #[must_use]
    pub fn with_kind(mut self, kind: ProviderKind) -> Self {
        self.info.provider = kind;
        self
    }

    /// Adds agents with names.
    #[must_use]
    pub fn with_agents(mut self, agents: &[(&str, &str)]) -> Self {
        self.agents.extend(agents.iter().map(|(id, name)| Agent {
            id: (*id).to_owned(),
            name: Some((*name).to_owned()),
            model: None,
        }));
        self
    }

    /// Adds events.
    #[must_use]
    pub fn with_events(mut self, events: impl IntoIterator<Item = StaticEvent>) -> Self {
        self.events.extend(events);
        self
    }

    /// Sets a latency applied to every call.
    pub fn set_latency(&self, d: Duration) {
        *self.latency.lock().unwrap() = d;
    }

    /// Makes every following call fail with `err` (or succeed again with `None`).
    pub fn set_failure(&self, err: Option<ProviderError>) {
        *self.failure.lock().unwrap() = err;
    }

    /// Returns how many `usage` calls were made.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Returns the expected totals per unit over `range` (the ground truth for tests).
    pub fn expected_totals(&self, range: Window) -> BTreeMap<Unit, Counters> {
        let mut out: BTreeMap<Unit, Counters> = BTreeMap::new();
        for e in self.events.iter().filter(|e| range.contains(e.at)) {
            out.entry(e.unit).or_default().add(&e.counters);
        }
        out
    }
}

#[async_trait]
impl UsageProvider for StaticProvider {
    fn describe(&self) -> SourceInfo {
        self.info.clone()
    }

    async fn agents(&self) -> Result<Vec<Agent>, ProviderError> {
        // One vendor request, answered (or failed) after the latency.
        crate::requests::note();
        let latency = *self.latency.lock().unwrap();
        tokio::time::sleep(latency).await;
        if let Some(e) = self.failure.lock().unwrap().clone() {
            return Err(e);
        }
        Ok(self.agents.clone())
    }

    async fn usage(&self, query: &UsageQuery) -> Result<UsageBatch, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        // One vendor request, as `upstream_requests` below reports.
        crate::requests::note();
        let latency = *self.latency.lock().unwrap();
        tokio::time::sleep(latency).await;
        if let Some(e) = self.failure.lock().unwrap().clone() {
            return Err(e);
        }
        let keep: BTreeSet<Dimension> = query
            .dimensions
            .intersection(&self.info.dimensions)
            .copied()
            .collect();
        let names: BTreeMap<&str, &str> = self
            .agents
            .iter()
            .filter_map(|a| Some((a.id.as_str(), a.name.as_deref()?)))
            .collect();
        let points = self
            .events
            .iter()
            .filter(|e| e.key.agent.as_deref().is_none_or(|a| query.wants_agent(a)))
            .filter(|e| query.wants_user(e.key.user.as_deref()))
            .filter_map(|e| {
                let window = query.window_of(e.at)?;
                Some(UsagePoint {
                    window,
                    agent_name: e
                        .key
                        .agent
                        .as_deref()
                        .and_then(|a| names.get(a))
                        .map(|n| (*n).to_owned())
                        .filter(|_| keep.contains(&Dimension::Agent)),
                    key: e.key.clone().project(&keep),
                    unit: e.unit,
                    counters: e.counters,
                })
            })
            .collect();
        Ok(UsageBatch {
            points,
            upstream_requests: 1,
            warnings: None,
            notes: Vec::new(),
            partial: false,
            bucket_width: None,
        }
        .compact())
    }
}

/// Sums a batch per unit.
pub fn batch_totals(batch: &UsageBatch) -> BTreeMap<Unit, Counters> {
    let mut out: BTreeMap<Unit, Counters> = BTreeMap::new();
    for p in &batch.points {
        out.entry(p.unit).or_default().add(&p.counters);
    }
    out
}

/// The conformance suite every provider runs: shape of `describe`, agent listing, points kept
/// inside the asked windows and dimensions, additivity across windows, and the agent filter.
///
/// `range` must hold some usage, and be at least two seconds long.
pub async fn conformance(provider: &dyn UsageProvider, range: Window) {
    let info = provider.describe();
    assert!(!info.name.is_empty(), "a source has a name");
    assert!(
        info.dimensions.iter().all(|d| d.is_vendor_dimension()),
        "describe() lists only vendor dimensions: {:?}",
        info.dimensions
    );
    assert!(
        info.filters.is_subset(&info.dimensions),
        "a source filters only by dimensions it has"
    );

    let agents = provider.agents().await.expect("agents() answers");
    let all_dims: BTreeSet<Dimension> = Dimension::ALL.into_iter().collect();

    let whole = provider
        .usage(&UsageQuery::new(vec![range], all_dims.clone()))
        .await
        .expect("usage() answers for the whole range");
    assert!(
        !whole.points.is_empty(),
        "the conformance range holds usage"
    );
    for p in &whole.points {
        assert_eq!(p.window, range, "points carry the asked window");
        for d in Dimension::ALL {
            if p.key.get(d).is_some() {
                assert!(info.dimensions.contains(&d), "point has undeclared {d}");
            }
        }
    }

    // Additivity: two adjacent windows add up to the whole range.
    let mid = range.start + (range.end - range.start) / 2;
    let halves = vec![Window::new(range.start, mid), Window::new(mid, range.end)];
    let split = provider
        .usage(&UsageQuery::new(halves.clone(), all_dims.clone()))
        .await
        .expect("usage() answers for two windows");
    assert!(split.points.iter().all(|p| halves.contains(&p.window)));
    assert_eq!(
        batch_totals(&split),
        batch_totals(&whole),
        "adjacent windows add up to the whole range"
    );

    // Dropping every dimension keeps the totals.
    let bare = provider
        .usage(&UsageQuery::new(vec![range], BTreeSet::new()))
        .await
        .expect("usage() answers with no dimensions");
    assert!(
        bare.points.iter().all(|p| p.key == PointKey::default()),
        "dimensions not asked for are collapsed"
    );
    assert_eq!(batch_totals(&bare), batch_totals(&whole));

    // The agent filter keeps only that agent's usage.
    if let Some(agent) = agents.first() {
        let mut q = UsageQuery::new(vec![range], BTreeSet::from([Dimension::Agent]));
        q.agents = Some(BTreeSet::from([agent.id.clone()]));
        let one = provider
            .usage(&q)
            .await
            .expect("usage() with an agent filter");
        assert!(
            one.points
                .iter()
                .all(|p| p.key.agent.as_deref() == Some(agent.id.as_str())),
            "the agent filter holds"
        );
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration as CDuration, TimeZone};

    use super::*;

    #[tokio::test]
    async fn static_provider_passes_conformance() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        let events = (0..48).map(|h| {
            StaticEvent::tokens(
                t0 + CDuration::hours(h),
                if h % 2 == 0 { "a1" } else { "a2" },
                Some("alice"),
                10,
                5,
            )
        });
        let p = StaticProvider::new("s")
            .with_agents(&[("a1", "Agent one"), ("a2", "Agent two")])
            .with_events(events);
        conformance(&p, Window::new(t0, t0 + CDuration::days(2))).await;
        let totals = p.expected_totals(Window::new(t0, t0 + CDuration::days(2)));
        assert_eq!(totals[&Unit::Tokens].total(), 48 * 15);
    }
}

/// Helpers for tests of a provider's daily cost API ([`UsageProvider::costs`]).
pub mod costs {
    use chrono::{DateTime, TimeDelta, Utc};

    use crate::error::ProviderError;
    use crate::model::{CostBatch, Dimension, UsageQuery, Window};
    use crate::money::Costs;
    use crate::provider::UsageProvider;

    /// `days` UTC-day windows, the first starting `from` days after `start` (a midnight).
    pub fn daily(start: DateTime<Utc>, from: i64, days: i64) -> Vec<Window> {
        (from..from + days)
            .map(|i| Window::new(start + TimeDelta::days(i), start + TimeDelta::days(i + 1)))
            .collect()
    }

    /// A query of `windows` keeping `dims`.
    pub fn query(windows: Vec<Window>, dims: &[Dimension]) -> UsageQuery {
        UsageQuery::new(windows, dims.iter().copied().collect())
    }

    /// The provider's costs for `q`, which it must answer.
    pub async fn costs(p: &dyn UsageProvider, q: &UsageQuery) -> CostBatch {
        p.costs(q)
            .await
            .unwrap()
            .expect("the provider has a cost API")
    }

    /// The amounts of the points in `w` (of `agent`, when given), per currency.
    pub fn sum(b: &CostBatch, w: Window, agent: Option<&str>) -> Costs {
        b.sum(|p| p.window == w && agent.is_none_or(|a| p.key.agent.as_deref() == Some(a)))
    }

    /// Checks the refusals every daily cost report owes, each an
    /// [`ProviderError::InvalidQuery`] before any request: windows inside a UTC day, a day
    /// of a zone an hour off UTC, and the `user` (`user`) and `model` (`model`) filters it
    /// cannot apply. `midnight` is any UTC midnight.
    pub async fn assert_refuses_what_a_daily_report_cannot_answer(
        p: &dyn UsageProvider,
        midnight: DateTime<Utc>,
        user: &str,
        model: &str,
    ) {
        let day = Window::new(midnight, midnight + TimeDelta::days(1));
        let hour = TimeDelta::hours(1);
        for windows in [
            vec![Window::new(day.start, day.start + hour * 5)],
            vec![Window::new(day.start - hour, day.end - hour)],
        ] {
            let e = p.costs(&query(windows, &[])).await.unwrap_err();
            assert!(
                matches!(&e, ProviderError::InvalidQuery { message, .. } if message.contains("per day in UTC")),
                "{e}"
            );
        }
        let mut users = query(vec![day], &[]);
        users.users = Some([user.to_owned()].into());
        let e = p.costs(&users).await.unwrap_err();
        assert!(
            matches!(&e, ProviderError::InvalidQuery { message, .. } if message.contains("user")),
            "{e}"
        );
        let mut models = query(vec![day], &[]);
        models.models = Some([model.to_owned()].into());
        let e = p.costs(&models).await.unwrap_err();
        assert!(
            matches!(&e, ProviderError::InvalidQuery { message, .. } if message.contains("model")),
            "{e}"
        );
    }
}
