//! The provider against `usage-sim`'s DigitalOcean: totals equal the simulator's ground truth
//! for any window, bucket and time zone, and the conformance suite passes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers panic on a broken simulator"
)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use secrecy::SecretString;
use url::Url;
use usage_core::time::{buckets, parse_tz};
use usage_core::{
    Bucket, Counters, Dimension, ProviderError, UsageBatch, UsageProvider, UsageQuery, Window,
};
use usage_provider_digitalocean::{Config, DigitaloceanProvider};
use usage_sim::{
    DO_TOKEN, DataSpec, Dataset, DoOptions, SimHandle, TruthFilter, start_digitalocean,
};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()
}

fn http(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

struct Setup {
    data: Arc<Dataset>,
    sim: SimHandle,
    provider: DigitaloceanProvider,
}

async fn setup_with(spec: DataSpec, opts: DoOptions, edit: impl FnOnce(&mut Config)) -> Setup {
    let data = Arc::new(Dataset::generate(&spec));
    let sim = start_digitalocean(Arc::clone(&data), opts, None)
        .await
        .unwrap();
    let mut config = Config::new(SecretString::from(DO_TOKEN));
    config.base_url = Url::parse(&sim.base_url).unwrap();
    edit(&mut config);
    let provider =
        DigitaloceanProvider::new("do-sim", config, http(Duration::from_secs(5))).unwrap();
    Setup {
        data,
        sim,
        provider,
    }
}

async fn setup() -> Setup {
    setup_with(DataSpec::small(now()), DoOptions::default(), |_| {}).await
}

fn all_dims() -> BTreeSet<Dimension> {
    BTreeSet::from([Dimension::Agent, Dimension::UsageType])
}

fn sum<'a>(points: impl Iterator<Item = &'a usage_core::UsagePoint>) -> Counters {
    points.fold(Counters::default(), |mut c, p| {
        c.add(&p.counters);
        c
    })
}

/// Checks every (window, agent) cell of a batch against the simulator's truth.
fn assert_matches_truth(s: &Setup, windows: &[Window], b: &UsageBatch) {
    let do_data = &s.data.digitalocean;
    for w in windows {
        for agent in do_data.agents() {
            let got = sum(b
                .points
                .iter()
                .filter(|p| p.window == *w && p.key.agent.as_deref() == Some(&agent.uuid)));
            let want = do_data.truth(&TruthFilter::agent(agent.uuid.clone()), *w);
            assert_eq!(got, want, "agent {} window {w:?}", agent.uuid);
        }
        let got = sum(b.points.iter().filter(|p| p.window == *w));
        assert_eq!(got, do_data.truth(&TruthFilter::default(), *w), "{w:?}");
    }
    assert!(b.points.iter().all(|p| windows.contains(&p.window)));
}

#[tokio::test]
async fn conformance_suite_passes() {
    let s = setup().await;
    let range = Window::new(now() - TimeDelta::days(30), now());
    usage_core::test_util::conformance(&s.provider, range).await;
    s.sim.stop().await;
}

#[tokio::test]
async fn discovery_matches_the_simulator() {
    let s = setup().await;
    let agents = s.provider.agents().await.unwrap();
    let want: Vec<(String, Option<String>)> = s
        .data
        .digitalocean
        .agents()
        .iter()
        .map(|a| (a.uuid.clone(), Some(a.name.clone())))
        .collect();
    let got: Vec<(String, Option<String>)> = agents.into_iter().map(|a| (a.id, a.name)).collect();
    assert_eq!(got, want);
    assert_eq!(s.sim.calls("do.agents"), 1);
    s.sim.stop().await;

    let s = setup_with(DataSpec::small(now()), DoOptions::default(), |c| {
        c.only_deployed = true;
    })
    .await;
    let got: BTreeSet<String> = s
        .provider
        .agents()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    let want: BTreeSet<String> = s
        .data
        .digitalocean
        .agents()
        .iter()
        .filter(|a| a.deployed)
        .map(|a| a.uuid.clone())
        .collect();
    assert!(!want.is_empty() && want.len() < s.data.digitalocean.agents().len());
    assert_eq!(got, want);
    s.sim.stop().await;
}

#[tokio::test]
async fn usage_is_attributed_to_the_agents_model_and_filtered_by_it() {
    let s = setup().await;
    let agents = s.provider.agents().await.unwrap();
    for a in &agents {
        let sim = s
            .data
            .digitalocean
            .agents()
            .iter()
            .find(|x| x.uuid == a.id)
            .unwrap();
        assert_eq!(a.model.as_deref(), Some(sim.model.as_str()), "{}", a.id);
    }
    let models: BTreeSet<String> = agents.iter().filter_map(|a| a.model.clone()).collect();
    assert!(
        models.len() > 1,
        "the simulator's agents run on several models"
    );
    let w = Window::new(now() - TimeDelta::days(20), now());
    let keep = BTreeSet::from([Dimension::Model]);
    let all = s
        .provider
        .usage(&UsageQuery::new(vec![w], keep.clone()))
        .await
        .unwrap();
    for m in &models {
        let truth = s.data.digitalocean.truth(
            &TruthFilter {
                model: Some(m.clone()),
                ..TruthFilter::default()
            },
            w,
        );
        let grouped = sum(all
            .points
            .iter()
            .filter(|p| p.key.model.as_ref() == Some(m)));
        assert_eq!(grouped, truth, "grouped by model {m}");
        let mut q = UsageQuery::new(vec![w], keep.clone());
        q.models = Some(BTreeSet::from([m.clone()]));
        let filtered = s.provider.usage(&q).await.unwrap();
        assert!(
            filtered
                .points
                .iter()
                .all(|p| p.key.model.as_ref() == Some(m))
        );
        assert_eq!(sum(filtered.points.iter()), truth, "filtered to model {m}");
    }
    assert_eq!(
        sum(all.points.iter()),
        s.data.digitalocean.truth(&TruthFilter::default(), w),
        "the model grouping keeps the total"
    );
    s.sim.stop().await;
}

#[tokio::test]
async fn discovery_pages_through_many_agents() {
    let mut spec = DataSpec::small(now());
    spec.do_agents = 450;
    spec.do_events = 50;
    let s = setup_with(spec, DoOptions::default(), |_| {}).await;
    let agents = s.provider.agents().await.unwrap();
    assert_eq!(agents.len(), 450);
    let ids: BTreeSet<&str> = agents.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), 450, "no agent twice");
    assert_eq!(s.sim.calls("do.agents"), 3, "200 + 200 + 50");
    s.sim.stop().await;
}

#[tokio::test]
async fn every_request_is_noted_once_for_the_gateways_count() {
    // Discovery and a planned fan-out (`reserve(n)` for all, then one slot per request).
    let s = setup().await;
    let range = Window::new(
        Utc.with_ymd_and_hms(2026, 2, 10, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 2, 13, 0, 0, 0).unwrap(),
    );
    let windows = buckets(range, parse_tz("UTC").unwrap(), Bucket::Day, 1000).unwrap();
    let sent = usage_core::requests::Counter::default();
    let b = sent
        .scope(s.provider.usage(&UsageQuery::new(windows, all_dims())))
        .await
        .unwrap();
    assert!(s.sim.calls("do.agents") >= 1 && s.sim.calls("do.usage") >= 3);
    assert_eq!(
        (sent.get(), b.upstream_requests),
        (s.sim.total_calls(), s.sim.total_calls())
    );
    s.sim.stop().await;
}

#[tokio::test]
async fn daily_buckets_in_several_zones_equal_truth() {
    let s = setup().await;
    for tz in ["UTC", "Asia/Kolkata", "America/New_York"] {
        let tz = parse_tz(tz).unwrap();
        // Two weeks around the US DST change of 2026-03-08 would be after `now`; use February.
        let range = Window::new(
            Utc.with_ymd_and_hms(2026, 2, 10, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 2, 20, 0, 0, 0).unwrap(),
        );
        let windows = buckets(range, tz, Bucket::Day, 1000).unwrap();
        let before = s.sim.calls("do.usage");
        let b = s
            .provider
            .usage(&UsageQuery::new(windows.clone(), all_dims()))
            .await
            .unwrap();
        let sent = s.sim.calls("do.usage") - before;
        assert_eq!(
            sent,
            (windows.len() * s.data.digitalocean.agents().len()) as u64
        );
        assert!(b.upstream_requests >= sent, "discovery calls count too");
        assert_matches_truth(&s, &windows, &b);
    }
    s.sim.stop().await;
}

#[tokio::test]
async fn weekly_monthly_and_hourly_buckets_equal_truth() {
    // About 260 calls: more than one minute of DigitalOcean's default budget on both sides.
    let s = setup_with(
        DataSpec::small(now()),
        DoOptions {
            rate_limit_per_minute: 1000,
        },
        |c| c.rate_limit_per_minute = 1000,
    )
    .await;
    let tz = parse_tz("Europe/Berlin").unwrap();
    let cases = [
        (
            Bucket::Week,
            Window::new(now() - TimeDelta::days(84), now()),
        ),
        (
            Bucket::Month,
            Window::new(now() - TimeDelta::days(89), now()),
        ),
        (Bucket::Hour, Window::new(now() - TimeDelta::days(2), now())),
        (
            Bucket::None,
            Window::new(now() - TimeDelta::days(90), now()),
        ),
    ];
    let mut nonzero = 0;
    for (bucket, range) in cases {
        let windows = buckets(range, tz, bucket, 1000).unwrap();
        let b = s
            .provider
            .usage(&UsageQuery::new(windows.clone(), all_dims()))
            .await
            .unwrap();
        assert_matches_truth(&s, &windows, &b);
        nonzero += usize::from(!b.points.is_empty());
    }
    assert!(nonzero >= 3, "the data set has usage in most ranges");
    s.sim.stop().await;
}

#[tokio::test]
async fn two_adjacent_days_sum_to_the_two_day_window() {
    let s = setup().await;
    let dims = BTreeSet::new();
    let mut checked = 0;
    for start_day in [5, 17, 33, 61] {
        let d0 = now() - TimeDelta::days(start_day);
        let (d1, d2) = (d0 + TimeDelta::days(1), d0 + TimeDelta::days(2));
        let days = vec![Window::new(d0, d1), Window::new(d1, d2)];
        let both = Window::new(d0, d2);
        let split = s
            .provider
            .usage(&UsageQuery::new(days.clone(), dims.clone()))
            .await
            .unwrap();
        let whole = s
            .provider
            .usage(&UsageQuery::new(vec![both], dims.clone()))
            .await
            .unwrap();
        let truth = s.data.digitalocean.truth(&TruthFilter::default(), both);
        assert_eq!(sum(split.points.iter()), truth, "days from {d0}");
        assert_eq!(sum(whole.points.iter()), truth, "two days from {d0}");
        for w in &days {
            assert_eq!(
                sum(split.points.iter().filter(|p| p.window == *w)),
                s.data.digitalocean.truth(&TruthFilter::default(), *w)
            );
        }
        checked += usize::from(!truth.is_zero());
    }
    assert!(checked > 0, "some of the sampled days hold usage");
    s.sim.stop().await;
}

#[tokio::test]
async fn events_on_window_edges_land_in_exactly_one_window() {
    let s = setup().await;
    // Windows cut exactly at the instants of real events (floored to the second), so an event
    // on an edge must count in the later window only.
    let agent = s
        .data
        .digitalocean
        .agents()
        .iter()
        .max_by_key(|a| s.data.digitalocean.events(&a.uuid).len())
        .unwrap();
    let events = s.data.digitalocean.events(&agent.uuid);
    let cuts: Vec<DateTime<Utc>> = events
        .iter()
        .step_by(events.len() / 6 + 1)
        .map(|e| e.at - TimeDelta::nanoseconds(i64::from(e.at.timestamp_subsec_nanos())))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(cuts.len() >= 3);
    let windows: Vec<Window> = cuts.windows(2).map(|c| Window::new(c[0], c[1])).collect();
    let mut q = UsageQuery::new(windows.clone(), all_dims());
    q.agents = Some(BTreeSet::from([agent.uuid.clone()]));
    let b = s.provider.usage(&q).await.unwrap();
    for w in &windows {
        assert_eq!(
            sum(b.points.iter().filter(|p| p.window == *w)),
            s.data
                .digitalocean
                .truth(&TruthFilter::agent(agent.uuid.clone()), *w),
            "{w:?}"
        );
    }
    s.sim.stop().await;
}

#[tokio::test]
async fn usage_types_equal_truth_per_type() {
    let s = setup().await;
    let range = Window::new(now() - TimeDelta::days(90), now());
    let b = s
        .provider
        .usage(&UsageQuery::new(
            vec![range],
            BTreeSet::from([Dimension::UsageType]),
        ))
        .await
        .unwrap();
    let types: BTreeSet<&str> = b
        .points
        .iter()
        .filter_map(|p| p.key.usage_type.as_deref())
        .collect();
    assert!(
        types.contains("INPUT") && types.contains("OUTPUT"),
        "{types:?}"
    );
    assert!(
        types.iter().any(|t| t.starts_with("log_insights:")),
        "{types:?}"
    );
    assert!(types.len() >= 4, "an other type is present too: {types:?}");
    for ty in types {
        let f = TruthFilter {
            usage_type: Some(ty.to_owned()),
            ..TruthFilter::default()
        };
        assert_eq!(
            sum(b
                .points
                .iter()
                .filter(|p| p.key.usage_type.as_deref() == Some(ty))),
            s.data.digitalocean.truth(&f, range),
            "{ty}"
        );
    }
    s.sim.stop().await;
}

#[tokio::test]
async fn an_unknown_agent_is_a_note_not_a_failure() {
    let data_agents: Vec<String> = Dataset::generate(&DataSpec::small(now()))
        .digitalocean
        .agents()
        .iter()
        .map(|a| a.uuid.clone())
        .collect();
    let mut fixed = data_agents.clone();
    fixed.push("00000000-0000-0000-0000-000000000000".to_owned());
    let s = setup_with(DataSpec::small(now()), DoOptions::default(), |c| {
        c.agents = Some(fixed);
    })
    .await;
    let range = Window::new(now() - TimeDelta::days(30), now());
    let b = s
        .provider
        .usage(&UsageQuery::new(vec![range], all_dims()))
        .await
        .unwrap();
    assert_eq!(b.notes.len(), 1, "{:?}", b.notes);
    assert!(b.notes[0].contains("00000000-0000-0000-0000-000000000000"));
    assert_eq!(
        sum(b.points.iter()),
        s.data.digitalocean.truth(&TruthFilter::default(), range)
    );
    assert_eq!(
        s.sim.calls("do.agents"),
        0,
        "a fixed list needs no discovery"
    );
    assert_eq!(b.upstream_requests, data_agents.len() as u64 + 1);
    s.sim.stop().await;
}

#[tokio::test]
async fn the_simulators_429_becomes_rate_limited() {
    let s = setup_with(
        DataSpec::small(now()),
        DoOptions {
            rate_limit_per_minute: 5,
        },
        |_| {},
    )
    .await;
    // Discovery (1) + 4 agents fit the budget of 5; the next call is refused by DigitalOcean.
    let day = Window::new(now() - TimeDelta::days(1), now());
    s.provider
        .usage(&UsageQuery::new(vec![day], all_dims()))
        .await
        .unwrap();
    let e = s
        .provider
        .usage(&UsageQuery::new(vec![day], all_dims()))
        .await
        .unwrap_err();
    let ProviderError::RateLimited { retry_after, .. } = &e else {
        panic!("{e:?}")
    };
    let retry = retry_after.expect("the simulator sends retry-after");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(60),
        "{retry:?}"
    );
    // Until then the source does not call again. The refused call returned at its first 429;
    // requests for its other agents that were already on the wire may still land, so the count
    // is read once they have.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = s.sim.calls("do.usage");
    let e = s
        .provider
        .usage(&UsageQuery::new(vec![day], all_dims()))
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::RateLimited { .. }), "{e:?}");
    assert_eq!(s.sim.calls("do.usage"), before);
    s.sim.stop().await;
}

#[tokio::test]
async fn simulator_faults_map_to_errors() {
    let data = Arc::new(Dataset::generate(&DataSpec::small(now())));
    let sim = start_digitalocean(Arc::clone(&data), DoOptions::default(), None)
        .await
        .unwrap();
    let make = |timeout: Duration| {
        let mut c = Config::new(SecretString::from(DO_TOKEN));
        c.base_url = Url::parse(&sim.base_url).unwrap();
        c.agents = Some(vec![data.digitalocean.agents()[0].uuid.clone()]);
        DigitaloceanProvider::new("do-sim", c, http(timeout)).unwrap()
    };
    let p = make(Duration::from_millis(500));
    let q = UsageQuery::new(
        vec![Window::new(now() - TimeDelta::days(1), now())],
        all_dims(),
    );

    sim.faults().force_next(1, 500);
    let e = p.usage(&q).await.unwrap_err();
    assert!(
        matches!(e, ProviderError::Upstream { status: 500, .. }) && e.is_transient(),
        "{e:?}"
    );

    sim.faults().force_next(1, 401);
    let e = p.usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::Unauthenticated { .. }), "{e:?}");

    sim.faults().set_malformed_json(true);
    let e = p.usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::Decode { .. }), "{e:?}");
    sim.faults().clear();

    sim.faults().set_truncated(true);
    let e = p.usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::Decode { .. }), "{e:?}");
    sim.faults().clear();

    sim.faults().set_hang(true);
    let e = p.usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::Timeout { .. }), "{e:?}");
    sim.faults().clear();

    p.usage(&q).await.unwrap();
    sim.stop().await;
}

#[tokio::test]
async fn a_wrong_token_is_unauthenticated_and_never_shown() {
    let data = Arc::new(Dataset::generate(&DataSpec::small(now())));
    let sim = start_digitalocean(Arc::clone(&data), DoOptions::default(), None)
        .await
        .unwrap();
    let mut c = Config::new(SecretString::from("dop_v1_wrong_token_value"));
    c.base_url = Url::parse(&sim.base_url).unwrap();
    let p = DigitaloceanProvider::new("do-sim", c, http(Duration::from_secs(5))).unwrap();
    let e = p.agents().await.unwrap_err();
    assert!(matches!(e, ProviderError::Unauthenticated { .. }), "{e:?}");
    assert!(e.to_string().contains("Unable to authenticate you."), "{e}");
    assert!(!format!("{e} {e:?} {p:?}").contains("wrong_token_value"));
    sim.stop().await;
}
