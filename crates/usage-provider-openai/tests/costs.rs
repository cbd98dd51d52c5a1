//! `costs()`: against `usage-sim`'s OpenAI, sums per window and agent equal the simulator's
//! cost truth exactly (1 day, 40 days, agent filters); against wiremock, amounts are read from
//! the JSON number's text, line items split into model and usage type, non-day windows and
//! user/model filters are refused, and error envelopes surface.
#![allow(clippy::unwrap_used, reason = "test helpers panic on broken fixtures")]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use secrecy::SecretString;
use url::Url;
use usage_core::money::{Costs, Currency, Money};
use usage_core::test_util::costs::{
    assert_refuses_what_a_daily_report_cannot_answer, costs, daily, query, sum,
};
use usage_core::{
    CostBatch, Dimension, PointKey, ProviderError, UNATTRIBUTED_AGENT, UsageProvider, Window,
};
use usage_provider_openai::{Config, OpenaiProvider};
use usage_sim::{DataSpec, Dataset, OPENAI_ADMIN_KEY, TruthFilter, start_openai};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 15, 0, 0, 0).unwrap()
}

fn day(offset: i64) -> DateTime<Utc> {
    now() + TimeDelta::days(offset)
}

fn provider(base: &str, edit: impl FnOnce(&mut Config)) -> OpenaiProvider {
    let mut c = Config::new(SecretString::from(OPENAI_ADMIN_KEY));
    c.base_url = Url::parse(base).unwrap();
    c.rate_limit_per_minute = 100_000;
    c.max_upstream_calls = 10_000;
    edit(&mut c);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    OpenaiProvider::new("oa-costs", c, http).unwrap()
}

#[tokio::test]
async fn sums_per_window_and_agent_equal_the_truth_exactly() {
    let data = Arc::new(Dataset::generate(&DataSpec::small(now())));
    let sim = start_openai(Arc::clone(&data), None).await.unwrap();
    let p = provider(&sim.base_url, |_| {});
    let projects: Vec<String> = data
        .openai
        .projects()
        .iter()
        .map(|p| p.id.clone())
        .chain([UNATTRIBUTED_AGENT.to_owned()])
        .collect();
    for (windows, requests) in [
        (daily(now(), -3, 1), 1),
        (daily(now(), -45, 40), 1),
        (daily(now(), -89, 89), 1),
    ] {
        let q = query(
            windows.clone(),
            &[Dimension::Agent, Dimension::UsageType, Dimension::Model],
        );
        sim.reset_calls();
        let b = costs(&p, &q).await;
        assert_eq!(b.upstream_requests, requests);
        assert_eq!(sim.calls("openai.costs"), requests);
        let mut nonzero = 0;
        for w in &windows {
            let truth = data.openai.cost_truth(&TruthFilter::default(), *w);
            assert_eq!(sum(&b, *w, None), truth, "{w:?}");
            for a in &projects {
                let truth = data.openai.cost_truth(&TruthFilter::agent(a), *w);
                nonzero += usize::from(!truth.is_empty());
                assert_eq!(sum(&b, *w, Some(a)), truth, "{a} {w:?}");
            }
        }
        assert!(nonzero > 0);
        // Model and usage type come from the line items.
        assert!(
            b.points
                .iter()
                .any(|p| p.key.model.as_deref() == Some("gpt-4o-mini-2024-07-18")
                    && p.key.usage_type.as_deref() == Some("cached input"))
        );
        assert!(b.points.iter().all(|p| p.money.currency == Currency::USD));
    }
    // A week in one window; collapsed dimensions: one point per unit of the line items.
    let week = Window::new(day(-10), day(-3));
    let b = costs(&p, &query(vec![week], &[])).await;
    let units: std::collections::BTreeSet<_> = b.points.iter().map(|p| p.unit).collect();
    assert_eq!(b.points.len(), units.len());
    assert!(
        units.contains(&usage_core::Unit::Tokens) && units.len() > 1,
        "{units:?}"
    );
    assert!(b.points.iter().all(|p| p.key == PointKey::default()));
    assert_eq!(
        sum(&b, week, None),
        data.openai.cost_truth(&TruthFilter::default(), week)
    );
    // 181 days: two requests (180 a request).
    sim.reset_calls();
    let long = Window::new(day(-181), day(0));
    let b = costs(&p, &query(vec![long], &[])).await;
    assert_eq!((b.upstream_requests, sim.calls("openai.costs")), (2, 2));
    assert_eq!(
        sum(&b, long, None),
        data.openai.cost_truth(&TruthFilter::default(), long)
    );
    sim.stop().await;
}

#[tokio::test]
async fn agent_filters_are_sent_or_applied_here() {
    let data = Arc::new(Dataset::generate(&DataSpec::small(now())));
    let sim = start_openai(Arc::clone(&data), None).await.unwrap();
    let p = provider(&sim.base_url, |_| {});
    let windows = daily(now(), -20, 14);
    let a = data.openai.projects()[1].id.clone();
    for wanted in [
        vec![a.clone()],
        vec![a.clone(), UNATTRIBUTED_AGENT.to_owned()],
        vec![UNATTRIBUTED_AGENT.to_owned()],
    ] {
        let mut q = query(windows.clone(), &[Dimension::Agent]);
        q.agents = Some(wanted.iter().cloned().collect());
        let b = costs(&p, &q).await;
        assert!(
            b.points
                .iter()
                .all(|p| wanted.contains(p.key.agent.as_ref().unwrap()))
        );
        for w in &windows {
            let mut truth = Costs::default();
            for id in &wanted {
                truth.merge(&data.openai.cost_truth(&TruthFilter::agent(id), *w));
            }
            assert_eq!(sum(&b, *w, None), truth, "{wanted:?} {w:?}");
        }
    }
    // Configured agents bound the costs too; an empty filter asks nothing.
    let fixed = provider(&sim.base_url, |c| c.agents = Some(vec![a.clone()]));
    let b = costs(&fixed, &query(windows.clone(), &[])).await;
    let w = windows[3];
    assert_eq!(
        sum(&b, w, None),
        data.openai.cost_truth(&TruthFilter::agent(&a), w)
    );
    let mut none = query(windows, &[]);
    none.agents = Some(BTreeSet::new());
    assert_eq!(costs(&p, &none).await, CostBatch::default());
    sim.stop().await;
}

fn usd(v: &str) -> Costs {
    let mut c = Costs::default();
    c.add(Money::from_major(v, Currency::USD).unwrap()).unwrap();
    c
}

async fn mock(body: &str, status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/organization/costs"))
        .respond_with(
            ResponseTemplate::new(status)
                .set_body_raw(body.as_bytes().to_vec(), "application/json"),
        )
        .mount(&server)
        .await;
    server
}

const NOV1: i64 = 1_793_491_200; // 2026-11-01T00:00:00Z

fn nov(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, d, 0, 0, 0).unwrap()
}

#[tokio::test]
async fn amounts_are_read_from_the_numbers_text() {
    let body = format!(
        r#"{{"object":"page","has_more":false,"next_page":null,"data":[{{"object":"bucket",
        "start_time":{NOV1},"end_time":{},"results":[
        {{"object":"organization.costs.result","amount":{{"value":0.1,"currency":"usd"}},
          "line_item":"gpt-4o-mini-2024-07-18, input","project_id":"proj_a","api_key_id":null,
          "quantity":1000,"quantity_unit":"tokens"}},
        {{"object":"organization.costs.result","amount":{{"value":0.2,"currency":"usd"}},
          "line_item":"Code interpreter sessions","project_id":null,"quantity":null}},
        {{"object":"organization.costs.result","amount":{{"value":1.5e-7,"currency":"usd"}},
          "line_item":null,"project_id":"proj_a","new_field":true}}]}}]}}"#,
        NOV1 + 86_400
    );
    let server = mock(&body, 200).await;
    let p = provider(&server.uri(), |_| {});
    let w = Window::new(nov(1), nov(2));
    let b = costs(
        &p,
        &query(
            vec![w],
            &[Dimension::Agent, Dimension::Model, Dimension::UsageType],
        ),
    )
    .await;
    assert_eq!(
        b.sum(|p| p.money.amount.scale() <= 1),
        usd("0.3"),
        "0.1 + 0.2 is 0.3"
    );
    assert_eq!(sum(&b, w, None), usd("0.30000015"));
    let keys: Vec<(Option<&str>, Option<&str>, Option<&str>)> = b
        .points
        .iter()
        .map(|p| {
            (
                p.key.agent.as_deref(),
                p.key.model.as_deref(),
                p.key.usage_type.as_deref(),
            )
        })
        .collect();
    assert!(keys.contains(&(
        Some("proj_a"),
        Some("gpt-4o-mini-2024-07-18"),
        Some("input")
    )));
    assert!(keys.contains(&(
        Some(UNATTRIBUTED_AGENT),
        None,
        Some("Code interpreter sessions")
    )));
    assert!(keys.contains(&(Some("proj_a"), None, None)));
    // Collapsed: one point per unit (the sessions' line item apart), 0.30000015 in all exactly.
    let b = costs(&p, &query(vec![w], &[])).await;
    assert_eq!(b.points.len(), 2);
    assert_eq!(
        b.sum(|_| true).iter().next().unwrap().amount.to_string(),
        "0.30000015"
    );
}

#[tokio::test]
async fn non_day_windows_and_user_or_model_filters_are_refused() {
    let server = mock("{}", 200).await;
    let p = provider(&server.uri(), |_| {});
    assert_refuses_what_a_daily_report_cannot_answer(&p, nov(1), "user-1", "gpt-4o").await;
    assert!(
        server.received_requests().await.unwrap().is_empty(),
        "nothing sent"
    );
}

#[tokio::test]
async fn error_envelopes_and_bad_amounts_surface() {
    let w = Window::new(nov(1), nov(2));
    let server = mock(
        r#"{"error":{"message":"Invalid value for 'limit'.","type":"invalid_request_error","param":"limit","code":null}}"#,
        400,
    )
    .await;
    let e = provider(&server.uri(), |_| {})
        .costs(&query(vec![w], &[]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Invalid value for 'limit'"), "{e}");
    let server = mock(
        r#"{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
        401,
    )
    .await;
    let e = provider(&server.uri(), |_| {})
        .costs(&query(vec![w], &[]))
        .await
        .unwrap_err();
    assert!(!e.is_transient(), "{e}");
    let bad = format!(
        r#"{{"object":"page","has_more":false,"next_page":null,"data":[{{"start_time":{NOV1},
        "results":[{{"amount":{{"value":"0.1","currency":"usd"}}}}]}}]}}"#
    );
    let server = mock(&bad, 200).await;
    let e = provider(&server.uri(), |_| {})
        .costs(&query(vec![w], &[]))
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Decode { .. }), "{e}");
}
