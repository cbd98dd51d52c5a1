//! `costs()`: against `usage-sim`'s Anthropic, sums per window and agent equal the simulator's
//! cost truth exactly (1 day, 40 days over two requests, agent filters incl. `default`);
//! against wiremock, cents become dollars exactly, descriptions give model and token type,
//! non-day windows and user/model filters are refused, and error envelopes surface.
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
use usage_core::{CostBatch, Dimension, ProviderError, UsageProvider, Window};
use usage_provider_anthropic::{AnthropicProvider, Config, DEFAULT_AGENT};
use usage_sim::{ANTHROPIC_ADMIN_KEY, DataSpec, Dataset, TruthFilter, start_anthropic};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 15, 0, 0, 0).unwrap()
}

fn day(offset: i64) -> DateTime<Utc> {
    now() + TimeDelta::days(offset)
}

fn provider(base: &str, edit: impl FnOnce(&mut Config)) -> AnthropicProvider {
    let mut c = Config::new(SecretString::from(ANTHROPIC_ADMIN_KEY));
    c.base_url = Url::parse(base).unwrap();
    c.rate_limit_per_minute = 100_000;
    c.max_upstream_calls = 1_000;
    edit(&mut c);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    AnthropicProvider::new("an-costs", c, http).unwrap()
}

#[tokio::test]
async fn sums_per_window_and_agent_equal_the_truth_exactly() {
    let data = Arc::new(Dataset::generate(&DataSpec::small(now())));
    let sim = start_anthropic(Arc::clone(&data), None).await.unwrap();
    let p = provider(&sim.base_url, |_| {});
    let agents: Vec<String> = data
        .anthropic
        .workspaces()
        .iter()
        .map(|w| w.id.clone())
        .chain([DEFAULT_AGENT.to_owned()])
        .collect();
    for (windows, requests) in [(daily(now(), -3, 1), 1), (daily(now(), -45, 40), 2)] {
        sim.reset_calls();
        let q = query(
            windows.clone(),
            &[Dimension::Agent, Dimension::Model, Dimension::UsageType],
        );
        let b = costs(&p, &q).await;
        assert_eq!(b.upstream_requests, requests);
        assert_eq!(sim.calls("anthropic.cost_report"), requests);
        let mut nonzero = 0;
        for w in &windows {
            assert_eq!(
                sum(&b, *w, None),
                data.anthropic.cost_truth(&TruthFilter::default(), *w)
            );
            for a in &agents {
                let truth = data.anthropic.cost_truth(&TruthFilter::agent(a), *w);
                nonzero += usize::from(!truth.is_empty());
                assert_eq!(sum(&b, *w, Some(a)), truth, "{a} {w:?}");
            }
        }
        assert!(nonzero > 0);
        assert!(b.points.iter().any(|p| p.key.model.is_some()
            && p.key.usage_type.as_deref() == Some("cache_read_input_tokens")));
    }
    // Model and usage type truth over a week in one window.
    let week = Window::new(day(-10), day(-3));
    let b = costs(
        &p,
        &query(vec![week], &[Dimension::Model, Dimension::UsageType]),
    )
    .await;
    for m in data.anthropic.models() {
        let truth = data.anthropic.cost_truth(
            &TruthFilter {
                model: Some(m.clone()),
                ..TruthFilter::default()
            },
            week,
        );
        assert_eq!(
            b.sum(|p| p.key.model.as_deref() == Some(m.as_str())),
            truth,
            "{m}"
        );
    }
    assert!(b.points.iter().all(|p| p.key.agent.is_none()));
    sim.stop().await;
}

#[tokio::test]
async fn agent_filters_are_applied_here() {
    let data = Arc::new(Dataset::generate(&DataSpec::small(now())));
    let sim = start_anthropic(Arc::clone(&data), None).await.unwrap();
    let p = provider(&sim.base_url, |_| {});
    let windows = daily(now(), -20, 14);
    let a = data.anthropic.workspaces()[0].id.clone();
    for wanted in [vec![a.clone()], vec![DEFAULT_AGENT.to_owned(), a.clone()]] {
        let mut q = query(windows.clone(), &[]);
        q.agents = Some(wanted.iter().cloned().collect());
        let b = costs(&p, &q).await;
        for w in &windows {
            let mut truth = Costs::default();
            for id in &wanted {
                truth.merge(&data.anthropic.cost_truth(&TruthFilter::agent(id), *w));
            }
            assert_eq!(sum(&b, *w, None), truth, "{wanted:?} {w:?}");
        }
    }
    let mut none = query(windows, &[]);
    none.agents = Some(BTreeSet::new());
    assert_eq!(costs(&p, &none).await, CostBatch::default());
    sim.stop().await;
}

async fn mock(body: &str, status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/organizations/cost_report"))
        .respond_with(
            ResponseTemplate::new(status)
                .set_body_raw(body.as_bytes().to_vec(), "application/json"),
        )
        .mount(&server)
        .await;
    server
}

fn aug(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 8, d, 0, 0, 0).unwrap()
}

#[tokio::test]
async fn cents_become_dollars_exactly() {
    // The official example (B.8.3), plus a web search row and the default workspace.
    let body = r#"{"data":[{"starting_at":"2025-08-01T00:00:00Z","ending_at":"2025-08-02T00:00:00Z",
      "results":[{"amount":"123.78912","context_window":"0-200k","cost_type":"tokens","currency":"USD",
        "description":"Claude Sonnet 4 Usage - Input Tokens","inference_geo":"global",
        "model":"claude-opus-4-6","service_tier":"standard","token_type":"uncached_input_tokens",
        "workspace_id":"wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ"},
       {"amount":"0.1","currency":"USD","workspace_id":null,"description":"Web Search Usage",
        "cost_type":"web_search","model":null,"token_type":null}]}],
      "has_more":false,"next_page":null}"#;
    let server = mock(body, 200).await;
    let p = provider(&server.uri(), |_| {});
    let w = Window::new(aug(1), aug(2));
    let b = costs(
        &p,
        &query(
            vec![w],
            &[Dimension::Agent, Dimension::Model, Dimension::UsageType],
        ),
    )
    .await;
    let one = |agent: &str| {
        b.points
            .iter()
            .find(|p| p.key.agent.as_deref() == Some(agent))
            .unwrap()
    };
    let input = one("wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ");
    assert_eq!(input.money.amount.to_string(), "1.2378912");
    assert_eq!(input.money.currency, Currency::USD);
    assert_eq!(input.key.model.as_deref(), Some("claude-opus-4-6"));
    assert_eq!(
        input.key.usage_type.as_deref(),
        Some("uncached_input_tokens")
    );
    let search = one(DEFAULT_AGENT);
    assert_eq!(search.money.amount.to_string(), "0.001");
    assert_eq!(
        (
            search.key.model.as_deref(),
            search.key.usage_type.as_deref()
        ),
        (None, Some("web_search"))
    );
    let mut total = Costs::default();
    total
        .add(Money::from_major("1.2388912", Currency::USD).unwrap())
        .unwrap();
    assert_eq!(sum(&b, w, None), total);
    let sent = server.received_requests().await.unwrap();
    let q = sent[0].url.query().unwrap();
    assert!(
        q.contains("group_by%5B%5D=workspace_id") && q.contains("group_by%5B%5D=description"),
        "{q}"
    );
}

#[tokio::test]
async fn non_day_windows_and_user_or_model_filters_are_refused() {
    let server = mock("{}", 200).await;
    let p = provider(&server.uri(), |_| {});
    assert_refuses_what_a_daily_report_cannot_answer(&p, aug(1), "apikey_1", "claude-opus-4-6")
        .await;
    assert!(
        server.received_requests().await.unwrap().is_empty(),
        "nothing sent"
    );
}

#[tokio::test]
async fn error_envelopes_and_bad_amounts_surface() {
    let w = Window::new(aug(1), aug(2));
    let server = mock(
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"limit: Input should be less than or equal to 31"},"request_id":"req_1"}"#,
        400,
    )
    .await;
    let e = provider(&server.uri(), |_| {})
        .costs(&query(vec![w], &[]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("less than or equal to 31"), "{e}");
    let server = mock(
        r#"{"data":[{"starting_at":"2025-08-01T00:00:00Z","results":[{"amount":"12,5","currency":"USD"}]}],"has_more":false}"#,
        200,
    )
    .await;
    let e = provider(&server.uri(), |_| {})
        .costs(&query(vec![w], &[]))
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Decode { .. }), "{e}");
}
