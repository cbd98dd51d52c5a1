//! Request shape, paging, caching and error mapping against a wiremock Kibana.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic on unexpected values"
)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use usage_core::test_util::batch_totals;
use usage_core::{
    Counters, Dimension, ProviderError, Unit, UsageBatch, UsageProvider, UsageQuery, Window,
};
use usage_provider_kibana::{Config, KibanaProvider};
use wiremock::matchers::{body_json, body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "test-api-key-6f2d";
const CONSUMPTION: &str = "/api/agent_builder/agents/elastic-ai-agent/consumption";

fn fixture(name: &str) -> Value {
    let text = match name {
        "page1" => include_str!("../../../fixtures/kibana/consumption_page1.json"),
        "page2" => include_str!("../../../fixtures/kibana/consumption_page2.json"),
        "empty" => include_str!("../../../fixtures/kibana/consumption_empty.json"),
        "agents" => include_str!("../../../fixtures/kibana/agents_list.json"),
        "license" => include_str!("../../../fixtures/kibana/error_license.json"),
        "privilege" => include_str!("../../../fixtures/kibana/error_privilege.json"),
        "size" => include_str!("../../../fixtures/kibana/error_size.json"),
        "not_found" => include_str!("../../../fixtures/kibana/error_not_found.json"),
        "es_rejected" => include_str!("../../../fixtures/kibana/error_es_rejected.json"),
        "unauthorized" => include_str!("../../../fixtures/kibana/error_unauthorized.json"),
        other => panic!("no fixture {other}"),
    };
    serde_json::from_str(text).unwrap()
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn window(a: &str, b: &str) -> Window {
    Window::new(utc(a), utc(b))
}

fn dims(d: &[Dimension]) -> BTreeSet<Dimension> {
    d.iter().copied().collect()
}

fn all_dims() -> BTreeSet<Dimension> {
    dims(&[Dimension::Agent, Dimension::User, Dimension::Conversation])
}

/// A config with a fixed agent list (no discovery) and pages of 3.
fn config(server: &MockServer) -> Config {
    Config {
        agents: Some(vec!["elastic-ai-agent".into()]),
        page_size: 3,
        ..Config::with_api_key(server.uri().parse().unwrap(), KEY)
    }
}

fn provider(config: Config) -> KibanaProvider {
    KibanaProvider::new("kb", config, reqwest::Client::new()).unwrap()
}

fn first_page_body(size: u32) -> Value {
    json!({"size": size, "sort_field": "updated_at", "sort_order": "desc"})
}

/// Mounts page1 (3 hits) → page2 (2 hits, with `search_after`: the last page still has one).
async fn mount_two_pages(server: &MockServer, expect1: u64, expect2: u64) {
    Mock::given(method("POST"))
        .and(path(CONSUMPTION))
        .and(body_json(first_page_body(3)))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("page1")))
        .expect(expect1)
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(CONSUMPTION))
        .and(body_json(
            json!({"size": 3, "sort_field": "updated_at", "sort_order": "desc",
                              "search_after": [1_740_787_199_999_u64, 1_740_733_200_000_u64]}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("page2")))
        .expect(expect2)
        .mount(server)
        .await;
}

fn total(batch: &UsageBatch) -> Counters {
    batch_totals(batch)
        .get(&Unit::Tokens)
        .copied()
        .unwrap_or_default()
}

#[tokio::test]
async fn sends_the_documented_request_with_an_api_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CONSUMPTION))
        .and(header("authorization", format!("ApiKey {KEY}").as_str()))
        .and(header("kbn-xsrf", "true"))
        .and(header("elastic-api-version", "2023-10-31"))
        .and(header("content-type", "application/json"))
        .and(body_json(first_page_body(100)))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("page2")))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(Config {
        page_size: 100,
        ..config(&server)
    });
    let q = UsageQuery::new(
        vec![window("2025-01-01T00:00:00Z", "2025-04-01T00:00:00Z")],
        all_dims(),
    );
    let batch = p.usage(&q).await.unwrap();
    assert_eq!(batch.upstream_requests, 1);
    assert_eq!(
        total(&batch),
        Counters {
            input: 5900,
            output: 820,
            other: 0
        }
    );
    assert_eq!(batch.warnings_total(), Some(0));
}

#[tokio::test]
async fn basic_auth_and_a_space_prefix() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/s/marketing/api/agent_builder/agents"))
        .and(header("authorization", "Basic ZWxhc3RpYzpjaGFuZ2VtZQ=="))
        .and(header("elastic-api-version", "2023-10-31"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("agents")))
        .expect(1)
        .mount(&server)
        .await;
    for agent in ["elastic-ai-agent", "created-agent-id"] {
        Mock::given(method("POST"))
            .and(path(format!(
                "/s/marketing/api/agent_builder/agents/{agent}/consumption"
            )))
            .and(header("authorization", "Basic ZWxhc3RpYzpjaGFuZ2VtZQ=="))
            .and(header("kbn-xsrf", "true"))
            .respond_with(ResponseTemplate::new(200).set_body_json(fixture("page2")))
            .expect(1)
            .mount(&server)
            .await;
    }
    let p = provider(Config {
        space: Some("marketing".into()),
        ..Config::with_basic(server.uri().parse().unwrap(), "elastic", "changeme")
    });
    let agents = p.agents().await.unwrap();
    assert_eq!(agents.len(), 2);
    assert_eq!(agents[1].name.as_deref(), Some("Search Index Helper"));
    let q = UsageQuery::new(
        vec![window("2025-01-01T00:00:00Z", "2025-04-01T00:00:00Z")],
        dims(&[Dimension::Agent]),
    );
    let batch = p.usage(&q).await.unwrap();
    assert_eq!(
        batch.upstream_requests, 2,
        "the agent list is cached from agents()"
    );
    assert_eq!(batch.points.len(), 2);
    let helper = batch
        .points
        .iter()
        .find(|p| p.key.agent.as_deref() == Some("created-agent-id"))
        .unwrap();
    assert_eq!(helper.agent_name.as_deref(), Some("Search Index Helper"));
}

#[tokio::test]
async fn the_default_space_has_no_prefix() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CONSUMPTION))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("empty")))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(Config {
        space: Some("default".into()),
        ..config(&server)
    });
    let q = UsageQuery::new(
        vec![window("2025-01-01T00:00:00Z", "2025-04-01T00:00:00Z")],
        all_dims(),
    );
    assert!(p.usage(&q).await.unwrap().points.is_empty());
}

#[tokio::test]
async fn a_short_last_page_ends_the_walk_despite_its_cursor() {
    let server = MockServer::start().await;
    mount_two_pages(&server, 1, 1).await;
    let p = provider(config(&server));
    let q = UsageQuery::new(
        vec![window("2025-01-01T00:00:00Z", "2025-04-01T00:00:00Z")],
        all_dims(),
    );
    let batch = p.usage(&q).await.unwrap();
    assert_eq!(batch.upstream_requests, 2);
    assert_eq!(batch.points.len(), 5);
    assert_eq!(
        total(&batch),
        Counters {
            input: 250_000 + 15_000 + 420_000 + 900 + 5000,
            output: 8000 + 3000 + 2100 + 120 + 700,
            other: 0
        }
    );
    assert_eq!(batch.warnings_total(), Some(3));
}

#[tokio::test]
async fn a_full_page_followed_by_an_empty_one() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CONSUMPTION))
        .and(body_json(first_page_body(2)))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("page2")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(CONSUMPTION))
        .and(body_partial_json(
            json!({"search_after": [1_740_040_200_000_u64, 1_740_038_400_000_u64]}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("empty")))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(Config {
        page_size: 2,
        ..config(&server)
    });
    let q = UsageQuery::new(
        vec![window("2025-01-01T00:00:00Z", "2025-04-01T00:00:00Z")],
        all_dims(),
    );
    let batch = p.usage(&q).await.unwrap();
    assert_eq!(batch.upstream_requests, 2);
    assert_eq!(total(&batch).input, 5900);
    // The walk saw everything: any earlier range is served without a request.
    let q = UsageQuery::new(
        vec![window("2000-01-01T00:00:00Z", "2025-01-01T00:00:00Z")],
        all_dims(),
    );
    let batch = p.usage(&q).await.unwrap();
    assert_eq!(batch.upstream_requests, 0);
    assert!(batch.points.is_empty());
}

#[tokio::test]
async fn stops_once_a_page_reaches_before_the_range_and_extends_later() {
    let server = MockServer::start().await;
    mount_two_pages(&server, 1, 1).await;
    let p = provider(config(&server));
    // page1's oldest conversation (Feb 28) is before the range start: no second page.
    let recent = UsageQuery::new(
        vec![
            window("2025-03-01T00:00:00Z", "2025-03-02T00:00:00Z"),
            window("2025-03-02T00:00:00Z", "2025-03-03T00:00:00Z"),
        ],
        all_dims(),
    );
    let batch = p.usage(&recent).await.unwrap();
    assert_eq!(batch.upstream_requests, 1);
    assert_eq!(
        batch.points.len(),
        2,
        "only conversations inside the windows"
    );
    assert_eq!(
        batch.warnings_total(),
        Some(1),
        "warnings of conversations inside the windows only"
    );
    // Covered again: nothing is sent.
    let again = p.usage(&recent).await.unwrap();
    assert_eq!(again.upstream_requests, 0);
    assert_eq!(
        again,
        UsageBatch {
            upstream_requests: 0,
            ..batch
        }
    );
    let inside = UsageQuery::new(
        vec![window("2025-03-01T12:00:00Z", "2025-03-02T00:00:00Z")],
        all_dims(),
    );
    assert_eq!(p.usage(&inside).await.unwrap().upstream_requests, 0);
    // A deeper range continues from the stored cursor (page2 only).
    let deeper = UsageQuery::new(
        vec![window("2025-02-01T00:00:00Z", "2025-03-03T00:00:00Z")],
        all_dims(),
    );
    let batch = p.usage(&deeper).await.unwrap();
    assert_eq!(batch.upstream_requests, 1);
    assert_eq!(batch.points.len(), 5);
}

#[tokio::test]
async fn a_failed_walk_keeps_the_pages_it_got() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CONSUMPTION))
        .and(body_partial_json(
            json!({"search_after": [1_740_787_199_999_u64, 1_740_733_200_000_u64]}),
        ))
        .respond_with(ResponseTemplate::new(500).set_body_json(fixture("es_rejected")))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    mount_two_pages(&server, 1, 1).await;
    let p = provider(config(&server));
    let q = UsageQuery::new(
        vec![window("2025-01-01T00:00:00Z", "2025-04-01T00:00:00Z")],
        all_dims(),
    );
    let e = p.usage(&q).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    // The retry asks only for the page that failed.
    let batch = p.usage(&q).await.unwrap();
    assert_eq!(batch.upstream_requests, 1);
    assert_eq!(batch.points.len(), 5);
    assert_eq!(batch.warnings_total(), Some(3));
}

#[tokio::test]
async fn user_filters_are_pushed_down_as_usernames() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CONSUMPTION))
        .and(body_json(json!({"size": 3, "sort_field": "updated_at", "sort_order": "desc",
                              "usernames": ["admin", "analyst"]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "results": [fixture("page1")["results"][0].clone(), fixture("page2")["results"][0].clone()],
            "total": 2, "search_after": [1, 2]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(config(&server));
    let mut q = UsageQuery::new(
        vec![window("2025-01-01T00:00:00Z", "2025-04-01T00:00:00Z")],
        dims(&[Dimension::User]),
    );
    q.users = Some(BTreeSet::from(["analyst".to_owned(), "admin".to_owned()]));
    let batch = p.usage(&q).await.unwrap();
    assert_eq!(batch.upstream_requests, 1);
    let users: Vec<_> = batch
        .points
        .iter()
        .map(|p| p.key.user.clone().unwrap())
        .collect();
    assert_eq!(users, ["admin", "analyst"]);
    // An empty user set asks nothing.
    q.users = Some(BTreeSet::new());
    let batch = p.usage(&q).await.unwrap();
    assert_eq!((batch.upstream_requests, batch.points.len()), (0, 0));
}

#[tokio::test]
async fn an_unfiltered_scan_answers_user_filters_without_requests() {
    let server = MockServer::start().await;
    mount_two_pages(&server, 1, 1).await;
    let p = provider(config(&server));
    let range = window("2025-01-01T00:00:00Z", "2025-04-01T00:00:00Z");
    p.usage(&UsageQuery::new(vec![range], all_dims()))
        .await
        .unwrap();
    let mut q = UsageQuery::new(vec![range], dims(&[Dimension::User]));
    q.users = Some(BTreeSet::from(["elastic".to_owned()]));
    let batch = p.usage(&q).await.unwrap();
    assert_eq!(batch.upstream_requests, 0);
    assert_eq!(batch.points.len(), 1);
    assert_eq!(
        total(&batch),
        Counters {
            input: 20_000,
            output: 3700,
            other: 0
        }
    );
}

#[tokio::test]
async fn unknown_agents_give_no_rows() {
    let server = MockServer::start().await;
    // A configured agent Kibana does not know: 200, no results.
    Mock::given(method("POST"))
        .and(path("/api/agent_builder/agents/ghost/consumption"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"results": [], "total": 0,
            "aggregations": {"usernames": [], "total_with_warnings": 0}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(Config {
        agents: Some(vec!["ghost".into()]),
        ..config(&server)
    });
    let q = UsageQuery::new(
        vec![window("2025-01-01T00:00:00Z", "2025-04-01T00:00:00Z")],
        all_dims(),
    );
    let batch = p.usage(&q).await.unwrap();
    assert!(batch.points.is_empty());
    assert_eq!(batch.warnings_total(), Some(0));

    // A filter naming an agent discovery does not list: only the discovery request.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/agent_builder/agents"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("agents")))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(Config {
        agents: None,
        ..config(&server)
    });
    let mut q = q.clone();
    q.agents = Some(BTreeSet::from(["nope".to_owned()]));
    let batch = p.usage(&q).await.unwrap();
    assert_eq!((batch.upstream_requests, batch.points.len()), (1, 0));
}

#[tokio::test]
async fn concurrent_calls_for_one_agent_share_one_walk() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CONSUMPTION))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture("page2"))
                .set_delay(Duration::from_millis(300)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(config(&server));
    let q = UsageQuery::new(
        vec![window("2025-01-01T00:00:00Z", "2025-04-01T00:00:00Z")],
        all_dims(),
    );
    let (one, two, three) = tokio::join!(p.usage(&q), p.usage(&q), p.usage(&q));
    let (one, two, three) = (one.unwrap(), two.unwrap(), three.unwrap());
    assert_eq!(
        one.upstream_requests + two.upstream_requests + three.upstream_requests,
        1
    );
    assert_eq!(one.points, two.points);
    assert_eq!(two.points, three.points);
}

#[tokio::test]
async fn agents_are_scanned_concurrently() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture("page2"))
                .set_delay(Duration::from_millis(600)),
        )
        .expect(4)
        .mount(&server)
        .await;
    let p = provider(Config {
        agents: Some(vec!["a".into(), "b".into(), "c".into(), "d".into()]),
        ..config(&server)
    });
    let q = UsageQuery::new(
        vec![window("2025-01-01T00:00:00Z", "2025-04-01T00:00:00Z")],
        dims(&[Dimension::Agent]),
    );
    let started = Instant::now();
    let batch = p.usage(&q).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1800),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(batch.points.len(), 4);
    assert_eq!(batch.upstream_requests, 4);
}

fn conv(id: &str, user: &str, updated_at: DateTime<Utc>, input: u64) -> Value {
    json!({
        "conversation_id": id, "title": id, "user": {"username": user},
        "created_at": (updated_at - chrono::Duration::hours(1)).to_rfc3339(),
        "updated_at": updated_at.to_rfc3339(),
        "token_usage": {"input_tokens": input, "output_tokens": 1, "total_tokens": input + 1},
        "round_count": 1, "llm_calls": 1, "warnings": []
    })
}

fn page_of(convs: &[Value], cursor: i64) -> Value {
    json!({"results": convs, "total": 99, "search_after": [cursor, 0]})
}

#[tokio::test]
async fn open_data_expires_on_the_short_ttl_and_merges_by_conversation() {
    let now = Utc::now();
    let min = chrono::Duration::minutes;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_json(first_page_body(2)))
        .respond_with(ResponseTemplate::new(200).set_body_json(page_of(
            &[
                conv("a", "u", now - min(2), 1),
                conv("b", "u", now - min(5), 10),
            ],
            1,
        )))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"search_after": [1, 0]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(page_of(
            &[
                conv("c", "u", now - min(30), 100),
                conv("d", "u", now - min(40), 1000),
            ],
            2,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(Config {
        page_size: 2,
        open_ttl: Duration::from_millis(300),
        settle: Duration::from_secs(60),
        ..config(&server)
    });
    let q = UsageQuery::new(
        vec![Window::new(now - min(20), now + min(5))],
        BTreeSet::new(),
    );
    let batch = p.usage(&q).await.unwrap();
    assert_eq!(batch.upstream_requests, 2);
    assert_eq!(total(&batch).input, 11);
    assert_eq!(
        p.usage(&q).await.unwrap().upstream_requests,
        0,
        "fresh open data is served"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    // "b" continued (moved to now, grew); the refresh walks only the open top of the list.
    server.verify().await;
    server.reset().await;
    Mock::given(method("POST"))
        .and(body_json(first_page_body(2)))
        .respond_with(ResponseTemplate::new(200).set_body_json(page_of(
            &[conv("b", "u", now, 20), conv("a", "u", now - min(2), 1)],
            3,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let batch = p.usage(&q).await.unwrap();
    assert_eq!(batch.upstream_requests, 1);
    assert_eq!(
        total(&batch).input,
        21,
        "b counted once, at its new updated_at"
    );
    // The older part of the scan is kept: a closed range it covers needs nothing.
    let old = UsageQuery::new(
        vec![Window::new(now - min(39), now - min(25))],
        BTreeSet::new(),
    );
    let batch = p.usage(&old).await.unwrap();
    assert_eq!(batch.upstream_requests, 0);
    assert_eq!(total(&batch).input, 100);
    // A deeper one continues from the kept cursor.
    Mock::given(method("POST"))
        .and(body_partial_json(json!({"search_after": [2, 0]})))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(page_of(&[conv("e", "u", now - min(50), 10_000)], 4)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let old = UsageQuery::new(
        vec![Window::new(now - min(45), now - min(25))],
        BTreeSet::new(),
    );
    let batch = p.usage(&old).await.unwrap();
    assert_eq!(batch.upstream_requests, 1);
    assert_eq!(total(&batch).input, 1100);
}

#[tokio::test]
async fn closed_data_expires_on_the_long_ttl() {
    let server = MockServer::start().await;
    mount_two_pages(&server, 2, 2).await;
    let p = provider(Config {
        open_ttl: Duration::from_millis(100),
        closed_ttl: Duration::from_millis(400),
        ..config(&server)
    });
    let q = UsageQuery::new(
        vec![window("2025-01-01T00:00:00Z", "2025-04-01T00:00:00Z")],
        all_dims(),
    );
    assert_eq!(p.usage(&q).await.unwrap().upstream_requests, 2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        p.usage(&q).await.unwrap().upstream_requests,
        0,
        "closed data outlives the open TTL"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(p.usage(&q).await.unwrap().upstream_requests, 2);
}

async fn error_for(status: u16, body: Value) -> ProviderError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CONSUMPTION))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(config(&server));
    let q = UsageQuery::new(
        vec![window("2025-01-01T00:00:00Z", "2025-04-01T00:00:00Z")],
        all_dims(),
    );
    p.usage(&q).await.unwrap_err()
}

#[tokio::test]
async fn errors_map_to_semantic_variants() {
    let e = error_for(403, fixture("license")).await;
    assert!(matches!(e, ProviderError::Forbidden { .. }), "{e:?}");
    assert!(e.to_string().contains("Enterprise license"), "{e}");
    assert!(!e.is_transient());
    let e = error_for(403, fixture("privilege")).await;
    assert!(e.to_string().contains("agentBuilder:manageAgents"), "{e}");
    let e = error_for(400, fixture("size")).await;
    assert!(matches!(e, ProviderError::Config { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("[request body.size]: Value must be equal to or lower than [100].")
    );
    let e = error_for(401, fixture("unauthorized")).await;
    assert!(matches!(e, ProviderError::Unauthenticated { .. }), "{e:?}");
    let e = error_for(404, fixture("not_found")).await;
    assert!(matches!(e, ProviderError::NotFound { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("Agent Builder consumption API not available (Kibana < 9.4?)")
    );
    // The provider's hint reaches API callers; Kibana's own words stay in the logs.
    let public = e.public_detail();
    assert!(
        public.ends_with(": Agent Builder consumption API not available (Kibana < 9.4?)"),
        "{public}"
    );
    assert!(!public.contains("Kibana said"), "{public}");
    assert!(!public.contains(KEY), "{public}");
    let e = error_for(500, fixture("es_rejected")).await;
    assert!(
        matches!(e, ProviderError::Upstream { status: 500, .. }),
        "{e:?}"
    );
    assert!(e.is_transient());
    for e in [e, error_for(403, fixture("license")).await] {
        assert!(!e.to_string().contains(KEY));
    }
}

#[tokio::test]
async fn undecodable_bodies_and_timeouts() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CONSUMPTION))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"results\": [{\"conv"))
        .mount(&server)
        .await;
    let p = provider(config(&server));
    let q = UsageQuery::new(
        vec![window("2025-01-01T00:00:00Z", "2025-04-01T00:00:00Z")],
        all_dims(),
    );
    let e = p.usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::Decode { .. }), "{e:?}");

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture("empty"))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let p = KibanaProvider::new("kb", config(&server), http).unwrap();
    let e = p.usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::Timeout { .. }), "{e:?}");
    assert!(e.is_transient());

    // Nothing listens on a closed port.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let p = provider(Config::with_api_key(
        format!("http://{closed}").parse().unwrap(),
        KEY,
    ));
    let e = p.agents().await.unwrap_err();
    assert!(matches!(e, ProviderError::Transport { .. }), "{e:?}");
}

#[tokio::test]
async fn a_full_page_must_carry_a_cursor_that_advances() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(|req: &Request| {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            let page = fixture("page1");
            // First page fine; the second repeats the same cursor.
            if body.get("search_after").is_none() {
                ResponseTemplate::new(200).set_body_json(page)
            } else {
                ResponseTemplate::new(200).set_body_json(json!({
                    "results": page["results"], "search_after": body["search_after"]
                }))
            }
        })
        .expect(2)
        .mount(&server)
        .await;
    let p = provider(config(&server));
    let q = UsageQuery::new(
        vec![window("2024-01-01T00:00:00Z", "2025-04-01T00:00:00Z")],
        all_dims(),
    );
    let e = p.usage(&q).await.unwrap_err();
    assert!(e.to_string().contains("did not advance"), "{e}");

    let server = MockServer::start().await;
    let mut page = fixture("page1");
    page.as_object_mut().unwrap().remove("search_after");
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(config(&server));
    let e = p.usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::Decode { .. }), "{e:?}");
}

#[tokio::test]
async fn new_rejects_bad_configs_and_hides_secrets() {
    let url: url::Url = "http://127.0.0.1:9".parse().unwrap();
    let none = Config {
        api_key: None,
        ..Config::with_api_key(url.clone(), KEY)
    };
    let e = KibanaProvider::new("kb", none, reqwest::Client::new()).unwrap_err();
    assert!(matches!(e, ProviderError::Config { .. }), "{e:?}");
    assert!(e.to_string().contains("api_key"), "{e}");
    let both = Config {
        username: Some("elastic".into()),
        ..Config::with_basic(url.clone(), "elastic", "pw-secret-1")
    };
    let both = Config {
        api_key: Some(KEY.to_owned().into()),
        ..both
    };
    let e = KibanaProvider::new("kb", both, reqwest::Client::new()).unwrap_err();
    assert!(e.to_string().contains("not both"), "{e}");
    assert!(!e.to_string().contains(KEY) && !e.to_string().contains("pw-secret-1"));

    let p = provider(Config::with_basic(url.clone(), "elastic", "pw-secret-1"));
    let debug = format!("{p:?}");
    assert!(!debug.contains("pw-secret-1"), "{debug}");
    let p = provider(Config::with_api_key(url, KEY));
    assert!(!format!("{p:?}").contains(KEY));
    let info = p.describe();
    assert_eq!(info.provider, usage_provider_kibana::KIND);
    assert_eq!(info.attribution, usage_core::Attribution::Conversation);
    assert_eq!(info.dimensions, all_dims());
    assert_eq!(info.filters, dims(&[Dimension::Agent, Dimension::User]));
}
