//! Totals against `usage-sim`'s ground truth, page economy, caching, faults and the conformance
//! suite.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on unexpected values"
)]

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use usage_core::test_util::{batch_totals, conformance};
use usage_core::{
    Counters, Dimension, ProviderError, Unit, UsageBatch, UsageProvider, UsageQuery, Window,
};
use usage_provider_kibana::{Config, KibanaProvider};
use usage_sim::{DataSpec, Dataset, SimHandle, TruthFilter};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

async fn sim() -> (Arc<Dataset>, SimHandle) {
    let data = Arc::new(Dataset::generate(&DataSpec::small(now())));
    let handle = usage_sim::start_kibana(Arc::clone(&data), None)
        .await
        .unwrap();
    (data, handle)
}

fn api_key(sim: &SimHandle, space: &str, page_size: u32) -> Config {
    Config {
        space: Some(space.to_owned()),
        page_size,
        ..Config::with_api_key(sim.base_url.parse().unwrap(), usage_sim::KIBANA_API_KEY)
    }
}

fn provider(config: Config) -> KibanaProvider {
    KibanaProvider::new("kibana", config, reqwest::Client::new()).unwrap()
}

fn days(n: i64) -> Vec<Window> {
    let end = now() - Duration::hours(12);
    (0..n)
        .rev()
        .map(|i| Window::new(end - Duration::days(i + 1), end - Duration::days(i)))
        .collect()
}

fn all_dims() -> BTreeSet<Dimension> {
    Dimension::ALL.into_iter().collect()
}

fn tokens(points: impl IntoIterator<Item = Counters>) -> Counters {
    let mut c = Counters::default();
    for p in points {
        c.add(&p);
    }
    c
}

fn total(batch: &UsageBatch) -> Counters {
    batch_totals(batch)
        .get(&Unit::Tokens)
        .copied()
        .unwrap_or_default()
}

/// Compares every window, and every (agent, user) cell, to the simulator's truth.
fn assert_matches_truth(data: &Dataset, space: &str, q: &UsageQuery, batch: &UsageBatch) {
    let all = TruthFilter::default();
    for w in &q.windows {
        let got = tokens(
            batch
                .points
                .iter()
                .filter(|p| p.window == *w)
                .map(|p| p.counters),
        );
        assert_eq!(got, data.kibana.truth(space, &all, *w), "window {w:?}");
    }
    let range = Window::new(q.windows[0].start, q.windows.last().unwrap().end);
    let mut warnings = 0;
    for w in &q.windows {
        warnings += data.kibana.warnings(space, &all, *w);
    }
    assert_eq!(batch.warnings_total(), Some(warnings));
    for agent in data.kibana.agents(space) {
        for user in [
            "elastic", "admin", "analyst", "alice", "bob", "carol", "dana",
        ] {
            let f = TruthFilter {
                agent: Some(agent.id.clone()),
                user: Some(user.to_owned()),
                ..TruthFilter::default()
            };
            let got = tokens(
                batch
                    .points
                    .iter()
                    .filter(|p| p.key.agent.as_deref() == Some(agent.id.as_str()))
                    .filter(|p| p.key.user.as_deref() == Some(user))
                    .map(|p| p.counters),
            );
            assert_eq!(
                got,
                data.kibana.truth(space, &f, range),
                "{space}/{}/{user}",
                agent.id
            );
        }
    }
}

#[tokio::test]
async fn totals_equal_the_ground_truth_in_both_spaces() {
    let (data, sim) = sim().await;
    for (space, config) in [
        ("default", api_key(&sim, "default", 7)),
        (
            "marketing",
            Config {
                space: Some("marketing".into()),
                page_size: 100,
                ..Config::with_basic(
                    sim.base_url.parse().unwrap(),
                    usage_sim::KIBANA_USERNAME,
                    usage_sim::KIBANA_PASSWORD,
                )
            },
        ),
    ] {
        let p = provider(config);
        let agents = p.agents().await.unwrap();
        let expected: Vec<String> = data
            .kibana
            .agents(space)
            .into_iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(
            agents.iter().map(|a| a.id.clone()).collect::<Vec<_>>(),
            expected
        );
        for windows in [
            days(1),
            days(7),
            days(30),
            vec![Window::new(now() - Duration::days(120), now())],
        ] {
            let q = UsageQuery::new(windows, all_dims());
            let batch = p.usage(&q).await.unwrap();
            assert!(batch.points.iter().all(|p| q.windows.contains(&p.window)));
            assert_matches_truth(&data, space, &q, &batch);
        }
    }
    // Spaces hold different data.
    let range = Window::new(now() - Duration::days(120), now());
    assert_ne!(
        data.kibana.truth("default", &TruthFilter::default(), range),
        data.kibana
            .truth("marketing", &TruthFilter::default(), range)
    );
    sim.stop().await;
}

#[tokio::test]
async fn fetches_no_more_pages_than_the_range_needs_and_then_none() {
    let (data, sim) = sim().await;
    let size = 5_usize;
    let p = provider(api_key(&sim, "default", size as u32));
    let windows = days(10);
    let start = windows[0].start;
    let q = UsageQuery::new(windows, BTreeSet::from([Dimension::Agent]));
    let batch = p.usage(&q).await.unwrap();
    // Per agent: the pages holding every conversation updated since `start`, plus the page
    // holding the first older one (or the closing short/empty page).
    let expected: u64 = data
        .kibana
        .agents("default")
        .iter()
        .map(|a| {
            let n = data
                .kibana
                .conversations("default", &a.id)
                .iter()
                .filter(|c| c.updated_at >= start)
                .count();
            (n / size + 1) as u64
        })
        .sum();
    assert_eq!(sim.calls("kibana.consumption"), expected);
    assert_eq!(sim.calls("kibana.agents"), 1);
    assert_eq!(batch.upstream_requests, expected + 1);
    let all = data
        .kibana
        .conversations("default", "elastic-ai-agent")
        .len();
    assert!(
        expected < 3 * (all / size + 1) as u64,
        "the walk stopped early"
    );

    // Any range inside the scanned one is answered from the scan.
    sim.reset_calls();
    for windows in [days(3), days(10)] {
        let mut q = UsageQuery::new(windows, all_dims());
        let batch = p.usage(&q).await.unwrap();
        assert_eq!(batch.upstream_requests, 0);
        q.users = Some(BTreeSet::from(["admin".to_owned()]));
        let batch = p.usage(&q).await.unwrap();
        assert_eq!(batch.upstream_requests, 0);
        let f = TruthFilter {
            user: Some("admin".into()),
            ..TruthFilter::default()
        };
        let range = Window::new(q.windows[0].start, q.windows.last().unwrap().end);
        assert_eq!(total(&batch), data.kibana.truth("default", &f, range));
    }
    assert_eq!(sim.total_calls(), 0);
    sim.stop().await;
}

#[tokio::test]
async fn user_and_agent_filters_match_the_truth() {
    let (data, sim) = sim().await;
    let p = provider(api_key(&sim, "marketing", 10));
    let range = Window::new(now() - Duration::days(60), now());
    let agent = data.kibana.agents("marketing")[1].id.clone();
    let mut q = UsageQuery::new(
        vec![range],
        BTreeSet::from([Dimension::User, Dimension::Conversation]),
    );
    q.users = Some(BTreeSet::from(["alice".to_owned(), "bob".to_owned()]));
    q.agents = Some(BTreeSet::from([agent.clone()]));
    let batch = p.usage(&q).await.unwrap();
    assert_eq!(sim.calls("kibana.agents"), 1);
    assert!(sim.calls("kibana.consumption") >= 1);
    let mut expected = Counters::default();
    for user in ["alice", "bob"] {
        let f = TruthFilter {
            agent: Some(agent.clone()),
            user: Some(user.into()),
            ..TruthFilter::default()
        };
        expected.add(&data.kibana.truth("marketing", &f, range));
    }
    assert_eq!(total(&batch), expected);
    assert!(
        batch
            .points
            .iter()
            .all(|p| p.key.agent.is_none() && p.key.conversation.is_some())
    );
    // One conversation's point equals that conversation's truth.
    let point = &batch.points[0];
    let f = TruthFilter {
        conversation: point.key.conversation.clone(),
        ..TruthFilter::default()
    };
    assert_eq!(point.counters, data.kibana.truth("marketing", &f, range));
    sim.stop().await;
}

#[tokio::test]
async fn unknown_space_and_agent() {
    let (_data, sim) = sim().await;
    let p = provider(api_key(&sim, "nowhere", 100));
    let e = p.agents().await.unwrap_err();
    assert!(matches!(e, ProviderError::NotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("space `nowhere`"), "{e}");

    let p = provider(Config {
        agents: Some(vec!["no-such-agent".into()]),
        ..api_key(&sim, "default", 100)
    });
    let batch = p
        .usage(&UsageQuery::new(days(30), all_dims()))
        .await
        .unwrap();
    assert!(batch.points.is_empty());
    assert_eq!(batch.warnings_total(), Some(0));
    assert_eq!(sim.calls("kibana.consumption"), 1);
    sim.stop().await;
}

#[tokio::test]
async fn faults_map_to_errors_and_do_not_poison_the_cache() {
    let (data, sim) = sim().await;
    let p = provider(api_key(&sim, "default", 20));
    let q = UsageQuery::new(days(20), all_dims());

    sim.faults().force_next(1, 500);
    let e = p.usage(&q).await.unwrap_err();
    assert!(
        matches!(e, ProviderError::Upstream { status: 500, .. }),
        "{e:?}"
    );
    assert!(e.is_transient());

    sim.faults().force_next(1, 403);
    let e = p.usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::Forbidden { .. }), "{e:?}");

    sim.faults().set_malformed_json(true);
    let e = p.usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::Decode { .. }), "{e:?}");
    sim.faults().clear();

    sim.faults().set_truncated(true);
    let e = p.usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::Decode { .. }), "{e:?}");
    sim.faults().clear();

    let bad = Config {
        api_key: Some("wrong-key".to_owned().into()),
        ..api_key(&sim, "default", 20)
    };
    let e = provider(bad).usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::Unauthenticated { .. }), "{e:?}");

    let batch = p.usage(&q).await.unwrap();
    assert_matches_truth(&data, "default", &q, &batch);
    sim.stop().await;
}

#[tokio::test]
async fn passes_the_conformance_suite() {
    let (_data, sim) = sim().await;
    let p = provider(api_key(&sim, "default", 9));
    conformance(&p, Window::new(now() - Duration::days(30), now())).await;
    let p = provider(Config {
        agents: Some(vec!["elastic-ai-agent".into()]),
        ..api_key(&sim, "marketing", 100)
    });
    conformance(&p, Window::new(now() - Duration::days(90), now())).await;
    sim.stop().await;
}
