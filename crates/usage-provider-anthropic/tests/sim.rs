//! The provider against `usage-sim`'s Anthropic: for windows cut as the gateway cuts them (UTC,
//! Berlin across a DST change, Kolkata; no, hour and day buckets) and every subset of the
//! dimensions, each window's points equal the simulator's ground truth per key and unit; filters,
//! paging across the `limit` maximum, 429s, and the conformance suite.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers panic on a broken simulator"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use secrecy::SecretString;
use url::Url;
use usage_core::time::{buckets, parse_tz};
use usage_core::{
    Bucket, Counters, Dimension, PointKey, ProviderError, Unit, UsageBatch, UsageProvider,
    UsageQuery, Window,
};
use usage_provider_anthropic::{AnthropicProvider, Config, DEFAULT_AGENT};
use usage_sim::{
    ANTHROPIC_ADMIN_KEY, AnthropicOptions, DataSpec, Dataset, SimHandle, TruthFilter,
    start_anthropic_with,
};

/// After Berlin's DST change of 2026-03-29, so that the span holds it.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 15, 0, 0, 0).unwrap()
}

struct Setup {
    data: Arc<Dataset>,
    sim: SimHandle,
    provider: AnthropicProvider,
}

async fn setup_with(sim_limit: u32, edit: impl FnOnce(&mut Config)) -> Setup {
    let opts = AnthropicOptions {
        rate_limit_per_minute: sim_limit,
        ..AnthropicOptions::default()
    };
    setup_opts(opts, edit).await
}

async fn setup_opts(opts: AnthropicOptions, edit: impl FnOnce(&mut Config)) -> Setup {
    let data = Arc::new(Dataset::generate(&DataSpec::small(now())));
    let sim = start_anthropic_with(Arc::clone(&data), opts, None)
        .await
        .unwrap();
    let mut config = Config::new(SecretString::from(ANTHROPIC_ADMIN_KEY));
    config.base_url = Url::parse(&sim.base_url).unwrap();
    config.rate_limit_per_minute = 100_000;
    config.max_upstream_calls = 1_000;
    config.max_concurrency = 4;
    edit(&mut config);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let provider = AnthropicProvider::new("an-sim", config, http).unwrap();
    Setup {
        data,
        sim,
        provider,
    }
}

async fn setup() -> Setup {
    setup_with(0, |_| {}).await
}

fn dims_all() -> [Dimension; 4] {
    [
        Dimension::Agent,
        Dimension::User,
        Dimension::Model,
        Dimension::UsageType,
    ]
}

fn subsets() -> Vec<BTreeSet<Dimension>> {
    (0..16_u32)
        .map(|mask| {
            dims_all()
                .into_iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, d)| d)
                .collect()
        })
        .collect()
}

fn per_unit<'a>(
    points: impl Iterator<Item = &'a usage_core::UsagePoint>,
) -> BTreeMap<Unit, Counters> {
    let mut out: BTreeMap<Unit, Counters> = BTreeMap::new();
    for p in points {
        out.entry(p.unit).or_default().add(&p.counters);
    }
    out
}

fn minus(a: &mut BTreeMap<Unit, Counters>, b: &BTreeMap<Unit, Counters>) {
    for (u, c) in b {
        let e = a.entry(*u).or_default();
        e.input -= c.input;
        e.output -= c.output;
        e.other -= c.other;
    }
    a.retain(|_, c| !c.is_zero());
}

/// The truth of one point key: the kept labels as a filter; a kept user that is `None`
/// (Console usage) is everything minus every API key's usage.
fn truth_of(
    s: &Setup,
    key: &PointKey,
    dims: &BTreeSet<Dimension>,
    w: Window,
) -> BTreeMap<Unit, Counters> {
    let an = &s.data.anthropic;
    let f = TruthFilter {
        agent: key.agent.clone(),
        user: key.user.clone(),
        model: key.model.clone(),
        usage_type: key.usage_type.clone(),
        conversation: None,
    };
    let mut t = an.truth(&f, w);
    if dims.contains(&Dimension::User) && key.user.is_none() {
        for k in an.api_keys() {
            let with_key = TruthFilter {
                user: Some(k.id.clone()),
                ..f.clone()
            };
            minus(&mut t, &an.truth(&with_key, w));
        }
    }
    t
}

fn assert_matches_truth(s: &Setup, windows: &[Window], dims: &BTreeSet<Dimension>, b: &UsageBatch) {
    assert!(b.points.iter().all(|p| windows.contains(&p.window)));
    for w in windows {
        let in_w: Vec<_> = b.points.iter().filter(|p| p.window == *w).collect();
        assert_eq!(
            per_unit(in_w.iter().copied()),
            s.data.anthropic.truth(&TruthFilter::default(), *w),
            "window total {w:?} dims {dims:?}"
        );
        let keys: BTreeSet<&PointKey> = in_w.iter().map(|p| &p.key).collect();
        for key in keys {
            for d in dims_all() {
                if !dims.contains(&d) {
                    assert_eq!(key.get(d), None, "{d} not kept: {key:?}");
                }
            }
            let got = per_unit(in_w.iter().copied().filter(|p| p.key == *key));
            assert_eq!(got, truth_of(s, key, dims, *w), "{key:?} {w:?}");
        }
    }
}

/// The windows of each way the gateway cuts a query, with the width they need.
fn cuts() -> Vec<(&'static str, Vec<Window>)> {
    let day = |d: u32| Utc.with_ymd_and_hms(2026, 3, d, 0, 0, 0).unwrap();
    let utc = parse_tz("UTC").unwrap();
    let berlin = parse_tz("Europe/Berlin").unwrap();
    let kolkata = parse_tz("Asia/Kolkata").unwrap();
    vec![
        ("utc none", vec![Window::new(day(2), day(12))]),
        (
            "utc days",
            buckets(Window::new(day(1), day(11)), utc, Bucket::Day, 1000).unwrap(),
        ),
        (
            "utc hours",
            buckets(Window::new(day(5), day(7)), utc, Bucket::Hour, 1000).unwrap(),
        ),
        (
            "berlin days across DST",
            buckets(
                Window::new(day(27) - TimeDelta::hours(1), day(31) - TimeDelta::hours(2)),
                berlin,
                Bucket::Day,
                1000,
            )
            .unwrap(),
        ),
        (
            "kolkata days",
            buckets(
                Window::new(
                    day(3) - TimeDelta::minutes(330),
                    day(6) - TimeDelta::minutes(330),
                ),
                kolkata,
                Bucket::Day,
                1000,
            )
            .unwrap(),
        ),
    ]
}

#[tokio::test]
async fn every_grouping_of_every_cut_equals_truth() {
    let s = setup().await;
    for (name, windows) in cuts() {
        for dims in subsets() {
            let b = s
                .provider
                .usage(&UsageQuery::new(windows.clone(), dims.clone()))
                .await
                .unwrap_or_else(|e| panic!("{name} {dims:?}: {e}"));
            assert!(b.notes.is_empty(), "{name}: {:?}", b.notes);
            assert!(!b.points.is_empty(), "{name}");
            assert_matches_truth(&s, &windows, &dims, &b);
        }
    }
    s.sim.stop().await;
}

#[tokio::test]
async fn both_readings_of_ending_at_give_the_same_answer() {
    // "Buckets that end before `ending_at`": at or before it (the simulator's default), or
    // strictly before.
    let inclusive = setup().await;
    let strict = setup_opts(
        AnthropicOptions {
            rate_limit_per_minute: 0,
            strict_ending_at: true,
        },
        |_| {},
    )
    .await;
    let now = Utc.with_ymd_and_hms(2026, 4, 10, 4, 41, 23).unwrap();
    let mut cases = cuts();
    cases.push((
        "a week to 04:41:23",
        vec![Window::new(now - TimeDelta::days(7), now)],
    ));
    let dims: BTreeSet<Dimension> = dims_all().into_iter().collect();
    let cells = |b: &UsageBatch| -> BTreeMap<(Window, PointKey, Unit), Counters> {
        b.points
            .iter()
            .map(|p| ((p.window, p.key.clone(), p.unit), p.counters))
            .collect()
    };
    for (name, windows) in cases {
        let q = UsageQuery::new(windows.clone(), dims.clone());
        let a = inclusive.provider.usage(&q).await.unwrap();
        let b = strict.provider.usage(&q).await.unwrap();
        assert_eq!(cells(&a), cells(&b), "{name}");
        assert_eq!(a.upstream_requests, b.upstream_requests, "{name}");
        assert_eq!(a.bucket_width, b.bucket_width, "{name}");
        assert_matches_truth(&strict, &windows, &dims, &b);
    }
    inclusive.sim.stop().await;
    strict.sim.stop().await;
}

#[tokio::test]
async fn conformance_suite_passes() {
    let s = setup().await;
    let end = Utc.with_ymd_and_hms(2026, 4, 14, 0, 0, 0).unwrap();
    usage_core::test_util::conformance(&s.provider, Window::new(end - TimeDelta::days(30), end))
        .await;
    s.sim.stop().await;
}

#[tokio::test]
async fn workspaces_are_listed_once_with_default_first_and_archived_included() {
    let s = setup().await;
    let agents = s.provider.agents().await.unwrap();
    let mut want = vec![(
        DEFAULT_AGENT.to_owned(),
        Some("Default workspace".to_owned()),
    )];
    want.extend(
        s.data
            .anthropic
            .workspaces()
            .iter()
            .map(|w| (w.id.clone(), Some(w.name.clone()))),
    );
    let got: Vec<_> = agents.into_iter().map(|a| (a.id, a.name)).collect();
    assert_eq!(got, want);
    assert!(
        s.data
            .anthropic
            .workspaces()
            .iter()
            .any(|w| w.archived_at.is_some())
    );
    s.provider.agents().await.unwrap();
    assert_eq!(s.sim.calls("anthropic.workspaces"), 1, "cached");
    // A refresh lists again; names ride along with the agent dimension.
    let day = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
    let mut q = UsageQuery::new(
        vec![Window::new(day, day + TimeDelta::days(3))],
        BTreeSet::from([Dimension::Agent]),
    );
    q.refresh = true;
    let b = s.provider.usage(&q).await.unwrap();
    assert_eq!(s.sim.calls("anthropic.workspaces"), 2);
    assert!(b.points.iter().all(|p| p.agent_name.is_some()));
    assert_eq!(b.upstream_requests, 2, "one listing, one usage request");
    s.sim.stop().await;
}

#[tokio::test]
async fn filters_by_agent_default_user_and_model_equal_truth() {
    let s = setup().await;
    let an = &s.data.anthropic;
    let w = Window::new(
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 4, 1, 0, 0, 0).unwrap(),
    );
    let dims = BTreeSet::from([Dimension::Agent, Dimension::User]);
    let ws = an.workspaces()[0].id.clone();
    let key = an.api_keys()[3].id.clone();
    let model = an.models()[1].clone();
    let cases: Vec<(UsageQuery, TruthFilter)> = vec![
        {
            let mut q = UsageQuery::new(vec![w], dims.clone());
            q.agents = Some(BTreeSet::from([ws.clone()]));
            (q, TruthFilter::agent(ws.clone()))
        },
        {
            let mut q = UsageQuery::new(vec![w], BTreeSet::new());
            q.agents = Some(BTreeSet::from([DEFAULT_AGENT.to_owned()]));
            (q, TruthFilter::agent(DEFAULT_AGENT))
        },
        {
            let mut q = UsageQuery::new(vec![w], dims.clone());
            q.users = Some(BTreeSet::from([key.clone()]));
            (
                q,
                TruthFilter {
                    user: Some(key.clone()),
                    ..TruthFilter::default()
                },
            )
        },
        {
            let mut q = UsageQuery::new(vec![w], BTreeSet::from([Dimension::UsageType]));
            q.models = Some(BTreeSet::from([model.clone()]));
            (
                q,
                TruthFilter {
                    model: Some(model.clone()),
                    ..TruthFilter::default()
                },
            )
        },
    ];
    for (q, f) in cases {
        let b = s.provider.usage(&q).await.unwrap();
        let want = an.truth(&f, w);
        assert!(!want.is_empty(), "{f:?}");
        assert_eq!(per_unit(b.points.iter()), want, "{f:?}");
        if q.keeps(Dimension::Agent) {
            assert!(
                b.points
                    .iter()
                    .all(|p| q.wants_agent(p.key.agent.as_deref().unwrap()))
            );
        }
    }
    // Both the default workspace and a real one: filtered here, by workspace.
    let mut q = UsageQuery::new(vec![w], BTreeSet::new());
    q.agents = Some(BTreeSet::from([DEFAULT_AGENT.to_owned(), ws.clone()]));
    let b = s.provider.usage(&q).await.unwrap();
    let mut want = an.truth(&TruthFilter::agent(DEFAULT_AGENT), w);
    for (u, c) in an.truth(&TruthFilter::agent(ws), w) {
        want.entry(u).or_default().add(&c);
    }
    assert_eq!(per_unit(b.points.iter()), want);
    s.sim.stop().await;
}

#[tokio::test]
async fn a_fixed_agent_list_skips_discovery_and_limits_usage() {
    let data = Dataset::generate(&DataSpec::small(now()));
    let ws = data.anthropic.workspaces()[1].id.clone();
    let s = setup_with(0, |c| {
        c.agents = Some(vec![ws.clone(), DEFAULT_AGENT.to_owned()]);
    })
    .await;
    let agents = s.provider.agents().await.unwrap();
    assert_eq!(
        agents.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        [ws.as_str(), DEFAULT_AGENT]
    );
    let w = Window::new(
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 3, 20, 0, 0, 0).unwrap(),
    );
    let b = s
        .provider
        .usage(&UsageQuery::new(
            vec![w],
            BTreeSet::from([Dimension::Agent]),
        ))
        .await
        .unwrap();
    let got: BTreeSet<&str> = b
        .points
        .iter()
        .filter_map(|p| p.key.agent.as_deref())
        .collect();
    assert_eq!(got, BTreeSet::from([ws.as_str(), DEFAULT_AGENT]));
    assert_eq!(s.sim.calls("anthropic.workspaces"), 0);
    s.sim.stop().await;
}

#[tokio::test]
async fn ranges_above_the_limit_maximum_take_several_requests() {
    let s = setup().await;
    // 40 UTC days: 31 + 9 daily buckets.
    let start = Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap();
    let windows = buckets(
        Window::new(start, start + TimeDelta::days(40)),
        parse_tz("UTC").unwrap(),
        Bucket::Day,
        1000,
    )
    .unwrap();
    let dims = BTreeSet::from([Dimension::Model]);
    let b = s
        .provider
        .usage(&UsageQuery::new(windows.clone(), dims.clone()))
        .await
        .unwrap();
    assert_eq!(s.sim.calls("anthropic.usage"), 2);
    assert_eq!(b.upstream_requests, 2);
    assert_matches_truth(&s, &windows, &dims, &b);
    // Kolkata days over 3 days: minutes, 1440 a request.
    s.sim.reset_calls();
    let (_, kolkata) = cuts().pop().unwrap();
    s.provider
        .usage(&UsageQuery::new(kolkata, BTreeSet::new()))
        .await
        .unwrap();
    assert_eq!(s.sim.calls("anthropic.usage"), 3);
    s.sim.stop().await;
}

#[tokio::test]
async fn too_many_requests_for_the_source_are_refused_before_sending() {
    let s = setup_with(0, |c| c.max_upstream_calls = 2).await;
    let (_, kolkata) = cuts().pop().unwrap();
    let e = s
        .provider
        .usage(&UsageQuery::new(kolkata, BTreeSet::new()))
        .await
        .unwrap_err();
    let ProviderError::SourceLimit { calls, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!((calls.needed, calls.max), (3, 2));
    assert_eq!(s.sim.total_calls(), 0);
    s.sim.stop().await;
}

#[tokio::test]
async fn the_simulators_429_is_rate_limited_with_and_without_a_delay() {
    let s = setup_with(1, |_| {}).await;
    let day = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
    let q = UsageQuery::new(
        vec![Window::new(day, day + TimeDelta::days(1))],
        BTreeSet::new(),
    );
    s.provider.usage(&q).await.unwrap();
    let e = s.provider.usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::RateLimited { .. }), "{e:?}");
    let wait = e.retry_after().unwrap();
    assert!(
        wait >= Duration::from_secs(1) && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    assert_eq!(s.sim.calls("anthropic.usage"), 2);
    // The source now waits instead of sending again.
    let again = s.provider.usage(&q).await.unwrap_err();
    assert!(matches!(again, ProviderError::RateLimited { .. }));
    assert_eq!(s.sim.calls("anthropic.usage"), 2, "no retry storm");
    s.sim.stop().await;

    // A 429 without `retry-after` pauses the source too (a minute): the next query is
    // refused here, without a request.
    let s = setup().await;
    s.sim.faults().set_omit_retry_after(true);
    s.sim.faults().force_next(1, 429);
    usage_core::test_util::assert_429_pauses(&s.provider, &q, Duration::from_secs(60), || {
        s.sim.total_calls()
    })
    .await;
    s.sim.stop().await;
}
