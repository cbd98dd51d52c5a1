//! The provider against `usage-sim`'s OpenAI: for windows cut as the gateway cuts them, every
//! kept subset of {agent, user, model, usage_type} and every filter, the points equal the
//! simulator's ground truth; the conformance suite passes; paging, discovery, auth and 429s.
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
    Bucket, Counters, Dimension, PointKey, ProviderError, UNATTRIBUTED_AGENT, Unit, UsageBatch,
    UsageProvider, UsageQuery, Window,
};
use usage_provider_openai::{Config, OpenaiProvider};
use usage_sim::{
    DataSpec, Dataset, OPENAI_ADMIN_KEY, OPENAI_PROJECT_KEY, RateLimit, SimHandle, TruthFilter,
    start_openai,
};

/// After the EU DST change of 2026-03-29, so that Berlin days around it hold usage.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 15, 0, 0, 0).unwrap()
}

fn utc(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

struct Setup {
    data: Arc<Dataset>,
    sim: SimHandle,
    provider: OpenaiProvider,
}

async fn setup_with(edit_data: impl FnOnce(&mut Dataset), edit: impl FnOnce(&mut Config)) -> Setup {
    let mut data = Dataset::generate(&DataSpec::small(now()));
    edit_data(&mut data);
    let data = Arc::new(data);
    let sim = start_openai(Arc::clone(&data), None).await.unwrap();
    let mut config = Config::new(SecretString::from(OPENAI_ADMIN_KEY));
    config.base_url = Url::parse(&sim.base_url).unwrap();
    config.rate_limit_per_minute = 100_000;
    config.max_upstream_calls = 10_000;
    edit(&mut config);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let provider = OpenaiProvider::new("oa-sim", config, http).unwrap();
    Setup {
        data,
        sim,
        provider,
    }
}

async fn setup() -> Setup {
    setup_with(|_| {}, |_| {}).await
}

const DIMS: [Dimension; 4] = [
    Dimension::Agent,
    Dimension::User,
    Dimension::Model,
    Dimension::UsageType,
];

fn subsets() -> Vec<BTreeSet<Dimension>> {
    (0..16_u8)
        .map(|m| {
            DIMS.iter()
                .enumerate()
                .filter(|(i, _)| m & (1 << i) != 0)
                .map(|(_, d)| *d)
                .collect()
        })
        .collect()
}

type Cells = BTreeMap<(Window, PointKey, Unit), Counters>;

fn cells(b: &UsageBatch) -> Cells {
    let mut out = Cells::new();
    for p in &b.points {
        assert!(!p.counters.is_zero(), "no zero points: {p:?}");
        *out.entry((p.window, p.key.clone(), p.unit)).or_default() = p.counters;
    }
    out
}

fn truth_cells(
    data: &Dataset,
    f: &TruthFilter,
    windows: &[Window],
    dims: &BTreeSet<Dimension>,
) -> Cells {
    let mut out = Cells::new();
    for w in windows {
        for ((key, unit), c) in data.openai.truth_by(f, *w, dims) {
            out.insert((*w, key, unit), c);
        }
    }
    out
}

/// Windows as the gateway cuts them.
fn cut(range: Window, tz: &str, bucket: Bucket) -> Vec<Window> {
    buckets(range, parse_tz(tz).unwrap(), bucket, 10_000).unwrap()
}

#[tokio::test]
async fn conformance_suite_passes() {
    let s = setup().await;
    usage_core::test_util::conformance(&s.provider, Window::new(now() - TimeDelta::days(3), now()))
        .await;
    s.sim.stop().await;
}

#[tokio::test]
async fn every_kept_subset_equals_truth_in_every_zone() {
    let s = setup().await;
    let cases = [
        // UTC days → 1d buckets.
        (
            Window::new(utc(2026, 3, 1, 0), utc(2026, 3, 8, 0)),
            "UTC",
            Bucket::Day,
        ),
        // Berlin days across the DST change → 1h buckets.
        (
            Window::new(utc(2026, 3, 26, 23), utc(2026, 3, 31, 22)),
            "Europe/Berlin",
            Bucket::Day,
        ),
        // Kolkata days (edges at :30) → 1m buckets.
        (
            Window::new(utc(2026, 4, 10, 0), utc(2026, 4, 12, 0)),
            "Asia/Kolkata",
            Bucket::Day,
        ),
        // Hours, and one window over a whole range.
        (
            Window::new(utc(2026, 4, 1, 5), utc(2026, 4, 2, 5)),
            "UTC",
            Bucket::Hour,
        ),
        (
            Window::new(utc(2026, 2, 1, 0), utc(2026, 3, 1, 0)),
            "UTC",
            Bucket::None,
        ),
    ];
    for (range, tz, bucket) in cases {
        let windows = cut(range, tz, bucket);
        for dims in subsets() {
            let b = s
                .provider
                .usage(&UsageQuery::new(windows.clone(), dims.clone()))
                .await
                .unwrap();
            let want = truth_cells(&s.data, &TruthFilter::default(), &windows, &dims);
            assert!(!want.is_empty());
            assert_eq!(cells(&b), want, "{tz} {bucket:?} {dims:?}");
            if dims.contains(&Dimension::Agent) {
                let p = b
                    .points
                    .iter()
                    .find(|p| {
                        p.key
                            .agent
                            .as_deref()
                            .is_some_and(|a| a != UNATTRIBUTED_AGENT)
                    })
                    .unwrap();
                let project = s
                    .data
                    .openai
                    .projects()
                    .iter()
                    .find(|x| Some(&x.id) == p.key.agent.as_ref())
                    .unwrap();
                assert_eq!(p.agent_name.as_ref(), Some(&project.name));
            }
        }
    }
    s.sim.stop().await;
}

#[tokio::test]
async fn widths_follow_the_window_edges() {
    let s = setup().await;
    for (tz, width) in [
        ("UTC", "1d"),
        ("Europe/Berlin", "1h"),
        ("Asia/Kolkata", "1m"),
    ] {
        let windows = cut(
            Window::new(utc(2026, 4, 1, 0), utc(2026, 4, 2, 0)),
            tz,
            Bucket::Day,
        );
        s.sim.reset_calls();
        let b = s
            .provider
            .usage(&UsageQuery::new(windows, BTreeSet::new()))
            .await
            .unwrap();
        // One request per endpoint: every range fits one page.
        assert_eq!(s.sim.calls("openai.usage.completions"), 1, "{tz}");
        assert_eq!(b.upstream_requests, 9, "{tz} {width}");
        assert_eq!(s.sim.total_calls(), 9);
        assert!(b.notes.is_empty(), "{:?}", b.notes);
    }
    // Edges between minutes: counted where each minute starts, and said so.
    let odd = vec![Window::new(
        utc(2026, 4, 1, 0) + TimeDelta::seconds(30),
        utc(2026, 4, 1, 6) + TimeDelta::seconds(30),
    )];
    let b = s
        .provider
        .usage(&UsageQuery::new(odd, BTreeSet::new()))
        .await
        .unwrap();
    assert!(b.notes.iter().any(|n| n.contains("`1m`")), "{:?}", b.notes);
    s.sim.stop().await;
}

#[tokio::test]
async fn a_week_to_an_odd_now_reads_mixed_widths_within_the_default_maximum() {
    // The default per-query maximum (60): a week read in minutes alone would take 7 ranges × 9
    // endpoints = 63 requests; days with hours and minutes at the ends take 5 × 9.
    let s = setup_with(|_| {}, |c| c.max_upstream_calls = 60).await;
    let now = Utc.with_ymd_and_hms(2026, 4, 14, 4, 41, 23).unwrap();
    let dims: BTreeSet<Dimension> = DIMS.into_iter().collect();
    for bucket in [Bucket::None, Bucket::Day] {
        let windows = cut(Window::new(now - TimeDelta::days(7), now), "UTC", bucket);
        s.sim.reset_calls();
        let b = s
            .provider
            .usage(&UsageQuery::new(windows.clone(), dims.clone()))
            .await
            .unwrap();
        assert_eq!(b.bucket_width.as_deref(), Some("1d, 1h, 1m"), "{bucket:?}");
        let listing = s.sim.calls("openai.projects");
        assert_eq!(b.upstream_requests, 45 + listing, "{bucket:?}");
        assert_eq!(s.sim.total_calls(), 45 + listing, "{bucket:?}");
        assert_eq!(s.sim.calls("openai.usage.completions"), 5, "{bucket:?}");
        assert_eq!(
            cells(&b),
            truth_cells(&s.data, &TruthFilter::default(), &windows, &dims),
            "{bucket:?}"
        );
    }
    s.sim.stop().await;
}

#[tokio::test]
async fn usage_of_no_project_is_unattributed_and_can_be_filtered() {
    let s = setup().await;
    let windows = cut(
        Window::new(utc(2026, 3, 1, 0), utc(2026, 3, 11, 0)),
        "Europe/Berlin",
        Bucket::Day,
    );
    let all: BTreeSet<Dimension> = DIMS.into_iter().collect();
    let unattributed = TruthFilter::agent(UNATTRIBUTED_AGENT);
    let project = s.data.openai.projects()[1].id.clone();
    // Grouped by agent, usage of no project is its own agent.
    let b = s
        .provider
        .usage(&UsageQuery::new(windows.clone(), all.clone()))
        .await
        .unwrap();
    let own = truth_cells(&s.data, &unattributed, &windows, &all);
    assert!(!own.is_empty(), "the simulator has usage of no project");
    assert!(
        cells(&b)
            .keys()
            .any(|(_, k, _)| k.agent.as_deref() == Some(UNATTRIBUTED_AGENT))
    );
    // Filtered by it, with or without the agent dimension, and together with a project.
    for dims in [
        all.clone(),
        BTreeSet::from([Dimension::UsageType]),
        BTreeSet::new(),
    ] {
        let mut q = UsageQuery::new(windows.clone(), dims.clone());
        q.agents = Some(BTreeSet::from([UNATTRIBUTED_AGENT.to_owned()]));
        let b = s.provider.usage(&q).await.unwrap();
        assert_eq!(
            cells(&b),
            truth_cells(&s.data, &unattributed, &windows, &dims),
            "{dims:?}"
        );
    }
    let mut q = UsageQuery::new(windows.clone(), all.clone());
    q.agents = Some(BTreeSet::from([
        UNATTRIBUTED_AGENT.to_owned(),
        project.clone(),
    ]));
    let b = s.provider.usage(&q).await.unwrap();
    let mut want = own.clone();
    want.extend(truth_cells(
        &s.data,
        &TruthFilter::agent(project.clone()),
        &windows,
        &all,
    ));
    assert_eq!(cells(&b), want);
    s.sim.stop().await;

    // A fixed `agents` list naming it.
    let s = setup_with(
        |_| {},
        |c| c.agents = Some(vec![UNATTRIBUTED_AGENT.to_owned(), project.clone()]),
    )
    .await;
    let b = s
        .provider
        .usage(&UsageQuery::new(windows.clone(), all.clone()))
        .await
        .unwrap();
    assert_eq!(cells(&b), want);
    s.sim.stop().await;
}

#[tokio::test]
async fn filters_by_agent_user_and_model_equal_truth() {
    let s = setup().await;
    let windows = cut(
        Window::new(utc(2026, 3, 1, 0), utc(2026, 3, 11, 0)),
        "UTC",
        Bucket::Day,
    );
    let dims: BTreeSet<Dimension> = DIMS.into_iter().collect();
    let archived = s
        .data
        .openai
        .projects()
        .iter()
        .find(|p| p.archived_at.is_some())
        .unwrap();
    let project = s.data.openai.projects()[1].id.clone();
    let user = s.data.openai.users()[2].clone();
    let model = s
        .data
        .openai
        .models()
        .into_iter()
        .find(|m| m.contains("audio"))
        .unwrap()
        .to_owned();

    let mut q = UsageQuery::new(windows.clone(), dims.clone());
    q.agents = Some(BTreeSet::from([project.clone()]));
    let b = s.provider.usage(&q).await.unwrap();
    assert_eq!(
        cells(&b),
        truth_cells(
            &s.data,
            &TruthFilter::agent(project.clone()),
            &windows,
            &dims
        )
    );
    assert!(b.notes.iter().all(|n| !n.contains("left out")));

    let mut q = UsageQuery::new(windows.clone(), dims.clone());
    q.users = Some(BTreeSet::from([user.clone()]));
    let b = s.provider.usage(&q).await.unwrap();
    let f = TruthFilter {
        user: Some(user.clone()),
        ..TruthFilter::default()
    };
    assert_eq!(cells(&b), truth_cells(&s.data, &f, &windows, &dims));
    assert!(
        b.notes
            .iter()
            .any(|n| n.contains("`code_interpreter_sessions` usage is left out")),
        "{:?}",
        b.notes
    );

    let mut q = UsageQuery::new(windows.clone(), dims.clone());
    q.models = Some(BTreeSet::from([model.clone()]));
    let b = s.provider.usage(&q).await.unwrap();
    let f = TruthFilter {
        model: Some(model.clone()),
        ..TruthFilter::default()
    };
    let want = truth_cells(&s.data, &f, &windows, &dims);
    assert!(
        want.keys()
            .any(|(_, k, _)| k.usage_type.as_deref() == Some("output_audio"))
    );
    assert_eq!(cells(&b), want);
    assert!(
        b.notes
            .iter()
            .any(|n| n.contains("`file_search_calls` usage is left out"))
    );

    // All three, and the archived project's usage (before it was archived) counts.
    let mut q = UsageQuery::new(
        vec![Window::new(s.data.openai.origin(), now())],
        BTreeSet::new(),
    );
    q.agents = Some(BTreeSet::from([archived.id.clone()]));
    let b = s.provider.usage(&q).await.unwrap();
    let want = s
        .data
        .openai
        .truth(&TruthFilter::agent(archived.id.clone()), q.windows[0]);
    assert!(!want.is_empty());
    let got: BTreeMap<Unit, Counters> =
        cells(&b).into_iter().map(|((_, _, u), c)| (u, c)).collect();
    assert_eq!(got, want);
    s.sim.stop().await;
}

#[tokio::test]
async fn legacy_completions_count_the_same_tokens() {
    let legacy = setup_with(|d| d.openai.legacy_completions = true, |_| {}).await;
    let current = setup().await;
    let windows = cut(
        Window::new(utc(2026, 3, 1, 0), utc(2026, 3, 5, 0)),
        "UTC",
        Bucket::Day,
    );
    let dims = BTreeSet::from([Dimension::Agent, Dimension::User, Dimension::Model]);
    let totals = |c: Cells| -> BTreeMap<(Window, PointKey, Unit), u64> {
        c.into_iter().map(|(k, v)| (k, v.total())).collect()
    };
    let q = UsageQuery::new(windows.clone(), dims.clone());
    let l = legacy.provider.usage(&q).await.unwrap();
    let c = current.provider.usage(&q).await.unwrap();
    assert_eq!(totals(cells(&l)), totals(cells(&c)));
    assert_eq!(
        cells(&c),
        truth_cells(&current.data, &TruthFilter::default(), &windows, &dims)
    );
    // The legacy form has no cache-write or image split.
    let by_type = legacy
        .provider
        .usage(&UsageQuery::new(
            windows,
            BTreeSet::from([Dimension::UsageType]),
        ))
        .await
        .unwrap();
    let types: BTreeSet<&str> = by_type
        .points
        .iter()
        .filter_map(|p| p.key.usage_type.as_deref())
        .collect();
    assert!(
        types.contains("input_audio")
            && !types.contains("input_cache_write")
            && !types.contains("input_image"),
        "{types:?}"
    );
    legacy.sim.stop().await;
    current.sim.stop().await;
}

#[tokio::test]
async fn long_ranges_are_cut_at_the_limit_and_requests_are_counted() {
    let s = setup().await;
    // 40 UTC days → 31 + 9 buckets per endpoint.
    let windows = cut(
        Window::new(utc(2026, 2, 1, 0), utc(2026, 3, 13, 0)),
        "UTC",
        Bucket::Day,
    );
    let sent = usage_core::requests::Counter::default();
    let dims = BTreeSet::from([Dimension::Agent, Dimension::UsageType]);
    let b = sent
        .scope(
            s.provider
                .usage(&UsageQuery::new(windows.clone(), dims.clone())),
        )
        .await
        .unwrap();
    assert_eq!(s.sim.calls("openai.usage.completions"), 2);
    assert_eq!(
        s.sim.calls("openai.projects"),
        1,
        "names for the agent dimension"
    );
    assert_eq!(
        (sent.get(), b.upstream_requests),
        (s.sim.total_calls(), s.sim.total_calls())
    );
    assert_eq!(
        cells(&b),
        truth_cells(&s.data, &TruthFilter::default(), &windows, &dims)
    );
    // 8 days of hours → 192 hours → 168 + 24.
    s.sim.reset_calls();
    let windows = cut(
        Window::new(utc(2026, 3, 1, 0), utc(2026, 3, 9, 0)),
        "Europe/Berlin",
        Bucket::Day,
    );
    let b = s
        .provider
        .usage(&UsageQuery::new(windows.clone(), dims.clone()))
        .await
        .unwrap();
    assert_eq!(s.sim.calls("openai.usage.embeddings"), 2);
    assert_eq!(s.sim.calls("openai.projects"), 0, "the listing is cached");
    assert_eq!(
        cells(&b),
        truth_cells(&s.data, &TruthFilter::default(), &windows, &dims)
    );
    s.sim.stop().await;
}

#[tokio::test]
async fn the_call_limit_is_checked_before_sending() {
    let s = setup_with(|_| {}, |c| c.max_upstream_calls = 10).await;
    let windows = cut(
        Window::new(utc(2026, 2, 1, 0), utc(2026, 3, 13, 0)),
        "UTC",
        Bucket::Day,
    );
    let e = s
        .provider
        .usage(&UsageQuery::new(windows, BTreeSet::new()))
        .await
        .unwrap_err();
    let ProviderError::SourceLimit { calls, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!((calls.needed, calls.max), (18, 10));
    assert_eq!(s.sim.total_calls(), 0);
    s.sim.stop().await;
}

#[tokio::test]
async fn discovery_lists_archived_projects_pages_and_caches() {
    let s = setup_with(|_| {}, |c| c.discovery_ttl = Duration::from_secs(600)).await;
    let got: Vec<(String, Option<String>)> = s
        .provider
        .agents()
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.id, a.name))
        .collect();
    let want: Vec<(String, Option<String>)> = s
        .data
        .openai
        .projects()
        .iter()
        .map(|p| (p.id.clone(), Some(p.name.clone())))
        .collect();
    assert_eq!(got, want);
    assert!(
        s.data
            .openai
            .projects()
            .iter()
            .any(|p| p.archived_at.is_some())
    );
    s.provider.agents().await.unwrap();
    assert_eq!(s.sim.calls("openai.projects"), 1);
    let mut q = UsageQuery::new(
        vec![Window::new(utc(2026, 4, 1, 0), utc(2026, 4, 2, 0))],
        BTreeSet::from([Dimension::Agent]),
    );
    q.refresh = true;
    s.provider.usage(&q).await.unwrap();
    assert_eq!(s.sim.calls("openai.projects"), 2, "a refresh lists again");
    s.sim.stop().await;

    let mut spec = DataSpec::small(now());
    spec.openai_projects = 230;
    spec.openai_events = 100;
    let data = Arc::new(Dataset::generate(&spec));
    let sim = start_openai(Arc::clone(&data), None).await.unwrap();
    let mut config = Config::new(SecretString::from(OPENAI_ADMIN_KEY));
    config.base_url = Url::parse(&sim.base_url).unwrap();
    let p = OpenaiProvider::new("oa", config, reqwest::Client::new()).unwrap();
    assert_eq!(p.agents().await.unwrap().len(), 230);
    assert_eq!(sim.calls("openai.projects"), 3, "100 + 100 + 30");
    sim.stop().await;
}

#[tokio::test]
async fn keys_and_429s() {
    let s = setup_with(
        |_| {},
        |c| c.admin_key = SecretString::from(OPENAI_PROJECT_KEY),
    )
    .await;
    let q = UsageQuery::new(
        vec![Window::new(utc(2026, 4, 1, 0), utc(2026, 4, 2, 0))],
        BTreeSet::new(),
    );
    let e = s.provider.usage(&q).await.unwrap_err();
    assert_eq!(e.kind(), "upstream_forbidden", "{e}");
    assert!(!format!("{e:?}").contains(OPENAI_PROJECT_KEY));
    s.sim.stop().await;
    let s = setup_with(|_| {}, |c| c.admin_key = SecretString::from("sk-wrong")).await;
    assert_eq!(
        s.provider.usage(&q).await.unwrap_err().kind(),
        "upstream_unauthenticated"
    );
    s.sim.stop().await;

    for retry_after in [true, false] {
        let s = setup().await;
        s.sim.faults().set_rate_limit(Some(RateLimit {
            per_minute: 3,
            retry_after,
        }));
        let e = s.provider.usage(&q).await.unwrap_err();
        let ProviderError::RateLimited {
            retry_after: got, ..
        } = e
        else {
            panic!("{e:?}")
        };
        assert_eq!(got.is_some(), retry_after);
        if let Some(d) = got {
            assert!(
                d > Duration::from_secs(50) && d <= Duration::from_secs(60),
                "{d:?}"
            );
        }
        assert!(s.sim.total_calls() <= 9, "no retry storm");
        s.sim.stop().await;
    }

    // A 429 without `Retry-After` pauses the source for 10 s: the next query is refused here,
    // without a request.
    let s = setup().await;
    s.sim.faults().set_omit_retry_after(true);
    s.sim.faults().force_next(1, 429);
    usage_core::test_util::assert_429_pauses(&s.provider, &q, Duration::from_secs(10), || {
        s.sim.total_calls()
    })
    .await;
    s.sim.stop().await;
}
