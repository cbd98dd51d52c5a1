//! Request shape, call counts and error handling against a wiremock DigitalOcean.
#![allow(
    clippy::unwrap_used,
    clippy::many_single_char_names,
    reason = "test helpers panic on broken fixtures; short names read well in tests"
)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;
use url::Url;
use usage_core::{
    Counters, Dimension, ProviderError, UsageBatch, UsageProvider, UsageQuery, Window,
};
use usage_provider_digitalocean::{Config, DigitaloceanProvider};
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "dop_v1_wiremock_secret";
const A: &str = "c441bf77-81d6-11ef-bf8f-4e013e2ddde4";
const B: &str = "1b418231-b7d6-11ef-bf8f-4e013e2ddde4";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A client like the gateway builds: its own timeout, redirects off.
fn http(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn config(base: &str, edit: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::new(SecretString::from(TOKEN));
    c.base_url = Url::parse(base).unwrap();
    edit(&mut c);
    c
}

fn provider(server: &MockServer, edit: impl FnOnce(&mut Config)) -> DigitaloceanProvider {
    DigitaloceanProvider::new(
        "do-test",
        config(&server.uri(), edit),
        http(Duration::from_secs(5)),
    )
    .unwrap()
}

fn fixed(agents: &[&str]) -> impl FnOnce(&mut Config) {
    let agents: Vec<String> = agents.iter().map(|a| (*a).to_owned()).collect();
    move |c: &mut Config| c.agents = Some(agents)
}

fn dims() -> BTreeSet<Dimension> {
    BTreeSet::from([Dimension::Agent, Dimension::UsageType])
}

/// A query for 2024-01-01 (one daily window) with [`dims`].
fn one_day() -> UsageQuery {
    UsageQuery::new(
        vec![Window::new(
            t("2024-01-01T00:00:00Z"),
            t("2024-01-02T00:00:00Z"),
        )],
        dims(),
    )
}

fn usage_body(agent: &str, input: u64, output: u64) -> serde_json::Value {
    serde_json::json!({
        "usage": {
            "resource_uuid": agent,
            "measurements": [
                {"usage_type": "INPUT", "tokens": input},
                {"usage_type": "OUTPUT", "tokens": output}
            ]
        },
        "log_insights_usage": {"resource_uuid": agent, "measurements": []}
    })
}

fn usage_path(agent: &str) -> String {
    format!("/v2/gen-ai/agents/{agent}/usage")
}

fn totals(b: &UsageBatch) -> Counters {
    b.points.iter().fold(Counters::default(), |mut c, p| {
        c.add(&p.counters);
        c
    })
}

/// Asserts that `e` carries a retry delay inside `range`.
fn assert_retry_after(e: &ProviderError, range: std::ops::RangeInclusive<Duration>) {
    let retry = e
        .retry_after()
        .unwrap_or_else(|| panic!("no retry delay: {e:?}"));
    assert!(range.contains(&retry), "{retry:?} not in {range:?}");
}

fn fixture_page(name: &str, base: &str) -> serde_json::Value {
    let raw = match name {
        "agents_page1" => include_str!("../../../fixtures/digitalocean/agents_page1.json"),
        "agents_page2" => include_str!("../../../fixtures/digitalocean/agents_page2.json"),
        _ => unreachable!(),
    };
    serde_json::from_str(&raw.replace("{{BASE}}", base)).unwrap()
}

async fn mount_two_pages(server: &MockServer, times: u64) {
    Mock::given(method("GET"))
        .and(path("/v2/gen-ai/agents"))
        .and(query_param("per_page", "200"))
        .and(query_param_is_missing("page"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture_page("agents_page1", &server.uri())),
        )
        .expect(times)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v2/gen-ai/agents"))
        .and(query_param("page", "2"))
        .and(query_param("per_page", "200"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture_page("agents_page2", &server.uri())),
        )
        .expect(times)
        .mount(server)
        .await;
}

#[tokio::test]
async fn discovery_follows_next_links_and_is_cached() {
    let server = MockServer::start().await;
    mount_two_pages(&server, 1).await;
    let p = provider(&server, |_| {});
    let agents = p.agents().await.unwrap();
    let ids: Vec<&str> = agents.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(
        ids,
        [A, B, "3a0b9d2e-81d7-11ef-bf8f-4e013e2ddde4"],
        "deduplicated, uuid-less entries skipped"
    );
    assert_eq!(agents[0].name.as_deref(), Some("support-agent"));
    assert_eq!(agents[2].name, None, "an empty name is no name");
    // Within discovery_ttl the list is reused: the mocks expect one call each.
    assert_eq!(p.agents().await.unwrap(), agents);
}

#[tokio::test]
async fn discovery_refreshes_after_its_ttl() {
    let server = MockServer::start().await;
    mount_two_pages(&server, 2).await;
    let p = provider(&server, |c| c.discovery_ttl = Duration::from_millis(50));
    p.agents().await.unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(p.agents().await.unwrap().len(), 3);
}

#[tokio::test]
async fn only_deployed_is_sent() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/gen-ai/agents"))
        .and(query_param("only_deployed", "true"))
        .and(query_param("per_page", "200"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "agents": [{"uuid": A, "name": "support-agent"}],
            "meta": {"page": 1, "pages": 1, "total": 1}
        })))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server, |c| c.only_deployed = true);
    assert_eq!(p.agents().await.unwrap().len(), 1);
}

/// Mounts a first agents page listing `agents` whose `links.pages.next` is `next`.
async fn mount_first_page(server: &MockServer, agents: &[&str], next: &str, times: u64) {
    let agents: Vec<serde_json::Value> = agents
        .iter()
        .map(|a| serde_json::json!({"uuid": a}))
        .collect();
    Mock::given(method("GET"))
        .and(path("/v2/gen-ai/agents"))
        .and(query_param_is_missing("page"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "agents": agents,
            "links": {"pages": {"next": next}}
        })))
        .expect(times)
        .mount(server)
        .await;
}

#[tokio::test]
async fn discovery_refuses_next_links_to_another_host() {
    let server = MockServer::start().await;
    mount_first_page(
        &server,
        &[A],
        "https://evil.example/v2/gen-ai/agents?page=2",
        1,
    )
    .await;
    // Only the first page is asked (the mock server is the only host that sees a request).
    let p = provider(&server, |_| {});
    assert_eq!(p.agents().await.unwrap().len(), 1, "the agents listed stay");

    // With no agent listed, the link is the source's error.
    let server = MockServer::start().await;
    mount_first_page(
        &server,
        &[],
        "https://evil.example/v2/gen-ai/agents?page=2",
        1,
    )
    .await;
    let e = provider(&server, |_| {}).agents().await.unwrap_err();
    assert!(matches!(e, ProviderError::Decode { .. }), "{e}");
    assert!(e.to_string().contains("evil.example"), "{e}");
}

#[tokio::test]
async fn a_broken_agents_page_keeps_the_agents_already_listed() {
    for (next, page2, why) in [
        ("?page=2&per_page=200", Some(404), "HTTP 404"),
        ("http://[broken", None, "not a URL"),
    ] {
        let server = MockServer::start().await;
        // Not cached: the second query lists again.
        mount_first_page(&server, &[A, B], next, 2).await;
        if let Some(status) = page2 {
            Mock::given(method("GET"))
                .and(path("/v2/gen-ai/agents"))
                .and(query_param("page", "2"))
                .respond_with(ResponseTemplate::new(status).set_body_json(
                    serde_json::json!({"id": "not_found", "message": "The resource was not found."}),
                ))
                .expect(2)
                .mount(&server)
                .await;
        }
        for (agent, input) in [(A, 10), (B, 20)] {
            Mock::given(method("GET"))
                .and(path(usage_path(agent)))
                .respond_with(ResponseTemplate::new(200).set_body_json(usage_body(agent, input, 1)))
                .expect(2)
                .mount(&server)
                .await;
        }
        let p = provider(&server, |_| {});
        for _ in 0..2 {
            let b = p.usage(&one_day()).await.unwrap();
            assert!(b.partial, "{next}: {b:?}");
            assert_eq!(totals(&b).input, 30, "{next}: both agents listed answer");
            let pages = if page2.is_some() { 2 } else { 1 };
            assert_eq!(b.upstream_requests, pages + 2, "{next}");
            assert_eq!(b.notes.len(), 1, "{next}: {:?}", b.notes);
            let note = &b.notes[0];
            assert!(
                note.contains("stopped at page 2") && note.contains(why),
                "{next}: {note}"
            );
        }
    }
}

#[tokio::test]
async fn a_transient_failure_of_a_later_agents_page_fails_the_listing() {
    let server = MockServer::start().await;
    mount_first_page(&server, &[A], "?page=2&per_page=200", 1).await;
    Mock::given(method("GET"))
        .and(path("/v2/gen-ai/agents"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&server)
        .await;
    // The resilience layer retries the call, from the first page.
    let e = provider(&server, |_| {})
        .usage(&one_day())
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
}

#[tokio::test]
async fn discovery_stops_on_a_next_link_loop() {
    let server = MockServer::start().await;
    let base = server.uri();
    Mock::given(method("GET"))
        .and(path("/v2/gen-ai/agents"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "agents": [{"uuid": A}],
            "links": {"pages": {"next": format!("{base}/v2/gen-ai/agents?page=1&per_page=200")}}
        })))
        .expect(2)
        .mount(&server)
        .await;
    let e = provider(&server, |_| {}).agents().await.unwrap_err();
    assert!(e.to_string().contains("loops"), "{e}");
}

#[tokio::test]
async fn adjacent_windows_send_inclusive_stops_and_tag_points() {
    let server = MockServer::start().await;
    for (start, stop, input) in [
        ("2024-01-01T00:00:00Z", "2024-01-01T23:59:59Z", 10),
        ("2024-01-02T00:00:00Z", "2024-01-02T23:59:59Z", 20),
    ] {
        Mock::given(method("GET"))
            .and(path(usage_path(A)))
            .and(query_param("start", start))
            .and(query_param("stop", stop))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .and(header("accept", "application/json"))
            .respond_with(ResponseTemplate::new(200).set_body_json(usage_body(A, input, 1)))
            .expect(1)
            .mount(&server)
            .await;
    }
    let p = provider(&server, fixed(&[A]));
    let d1 = Window::new(t("2024-01-01T00:00:00Z"), t("2024-01-02T00:00:00Z"));
    let d2 = Window::new(t("2024-01-02T00:00:00Z"), t("2024-01-03T00:00:00Z"));
    let b = p
        .usage(&UsageQuery::new(vec![d1, d2], dims()))
        .await
        .unwrap();
    assert_eq!(b.upstream_requests, 2);
    assert!(b.notes.is_empty(), "{:?}", b.notes);
    let in_window = |w: Window| {
        b.points
            .iter()
            .filter(|p| p.window == w)
            .map(|p| p.counters.input)
            .sum::<u64>()
    };
    assert_eq!((in_window(d1), in_window(d2)), (10, 20));
    assert!(b.points.iter().all(|p| p.key.agent.as_deref() == Some(A)));
    assert_eq!(
        totals(&b),
        Counters {
            input: 30,
            output: 2,
            other: 0
        }
    );
}

#[tokio::test]
async fn agent_uuids_are_path_encoded() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/gen-ai/agents/odd%2Fid%3Fx/usage"))
        .respond_with(ResponseTemplate::new(200).set_body_json(usage_body("odd", 1, 1)))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server, fixed(&["odd/id?x"]));
    let b = p.usage(&one_day()).await.unwrap();
    assert_eq!(totals(&b).total(), 2);
}

#[tokio::test]
async fn discovered_names_ride_along_and_the_agent_filter_holds() {
    let server = MockServer::start().await;
    mount_two_pages(&server, 1).await;
    Mock::given(method("GET"))
        .and(path(usage_path(A)))
        .respond_with(ResponseTemplate::new(200).set_body_json(usage_body(A, 5, 5)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(usage_path(B)))
        .respond_with(ResponseTemplate::new(200).set_body_json(usage_body(B, 1, 1)))
        .expect(0)
        .mount(&server)
        .await;
    let p = provider(&server, |_| {});
    let mut q = one_day();
    q.agents = Some(BTreeSet::from([A.to_owned(), "not-ours".to_owned()]));
    let b = p.usage(&q).await.unwrap();
    assert_eq!(
        b.upstream_requests, 3,
        "two discovery pages and one usage call"
    );
    assert!(b.points.iter().all(|p| p.key.agent.as_deref() == Some(A)));
    assert!(
        b.points
            .iter()
            .all(|p| p.agent_name.as_deref() == Some("support-agent"))
    );
}

#[tokio::test]
async fn call_count_guard_rejects_before_any_call() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(usage_body(A, 1, 1)))
        .expect(0)
        .mount(&server)
        .await;
    let p = provider(&server, |c| {
        c.agents = Some(vec!["a1".into(), "a2".into(), "a3".into()]);
        c.max_upstream_calls = 200;
    });
    let t0 = t("2024-01-01T00:00:00Z");
    let hours: Vec<Window> = (0..100)
        .map(|h| Window::new(t0 + TimeDelta::hours(h), t0 + TimeDelta::hours(h + 1)))
        .collect();
    let e = p
        .usage(&UsageQuery::new(hours.clone(), dims()))
        .await
        .unwrap_err();
    let ProviderError::SourceLimit { message, calls, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(
        (calls.needed, calls.max, calls.agents, calls.windows),
        (300, 200, 3, 100)
    );
    assert_eq!(e.kind(), "source_limit");
    assert!(message.contains("300"), "{message}");
    assert!(message.contains("200"), "{message}");
    assert!(message.contains("coarser bucket"), "{message}");
    assert!(!e.is_transient());

    // An agent filter brings the same windows under the maximum.
    let mut q = UsageQuery::new(hours, dims());
    q.agents = Some(BTreeSet::from(["a1".to_owned()]));
    server.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(usage_body("a1", 1, 0)))
        .expect(100)
        .mount(&server)
        .await;
    let b = p.usage(&q).await.unwrap();
    assert_eq!(b.upstream_requests, 100);
    assert_eq!(totals(&b).input, 100);
}

#[tokio::test]
async fn the_maximum_is_capped_by_the_rate_budget() {
    let server = MockServer::start().await;
    let p = provider(&server, |c| {
        c.agents = Some(vec!["a1".into()]);
        c.max_upstream_calls = 500;
        c.rate_limit_per_minute = 4;
    });
    let t0 = t("2024-01-01T00:00:00Z");
    let w: Vec<Window> = (0..5)
        .map(|h| Window::new(t0 + TimeDelta::hours(h), t0 + TimeDelta::hours(h + 1)))
        .collect();
    let e = p.usage(&UsageQuery::new(w, dims())).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ProviderError::SourceLimit { .. }), "{msg}");
    assert!(
        msg.contains("needs 5") && msg.contains("maximum of 4"),
        "{msg}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
}

#[tokio::test]
async fn local_budget_answers_rate_limited_without_waiting() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(usage_body(A, 1, 0)))
        .expect(3)
        .mount(&server)
        .await;
    let p = provider(&server, |c| {
        c.agents = Some(vec![A.into()]);
        c.rate_limit_per_minute = 3;
    });
    let t0 = t("2024-01-01T00:00:00Z");
    let w: Vec<Window> = (0..3)
        .map(|h| Window::new(t0 + TimeDelta::hours(h), t0 + TimeDelta::hours(h + 1)))
        .collect();
    p.usage(&UsageQuery::new(w, dims())).await.unwrap();
    let started = Instant::now();
    let e = p
        .usage(&UsageQuery::new(
            vec![Window::new(t0, t0 + TimeDelta::days(1))],
            dims(),
        ))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1), "no long wait");
    let retry = e.retry_after().unwrap_or_else(|| panic!("{e:?}"));
    assert!(
        retry >= Duration::from_secs(3) && retry <= Duration::from_secs(20),
        "{retry:?}"
    );
    assert!(e.is_transient());
}

#[tokio::test]
async fn vendor_429_maps_retry_after_and_pauses_the_source() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(usage_path(A)))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "29")
                .insert_header("RateLimit-Limit", "250")
                .insert_header("RateLimit-Remaining", "0")
                .insert_header("rateLimit-reset", "1402425459")
                .set_body_json(serde_json::json!({
                    "id": "too_many_requests", "message": "API rate limit exceeded."
                })),
        )
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server, fixed(&[A]));
    let q = one_day();
    let e = p.usage(&q).await.unwrap_err();
    assert_eq!(
        e,
        ProviderError::RateLimited {
            source_name: "do-test".into(),
            retry_after: Some(Duration::from_secs(29))
        }
    );
    // The next query is refused locally: the mock expects one call only.
    let e = p.usage(&q).await.unwrap_err();
    assert_retry_after(
        &e,
        Duration::from_secs(20) + Duration::from_nanos(1)..=Duration::from_secs(29),
    );
}

#[tokio::test]
async fn a_spent_budget_pauses_the_source_before_any_429() {
    let server = MockServer::start().await;
    let reset = Utc::now().timestamp() + 30;
    Mock::given(method("GET"))
        .and(path(usage_path(A)))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("ratelimit-limit", "5000")
                .insert_header("ratelimit-remaining", "0")
                .insert_header("ratelimit-reset", reset.to_string().as_str())
                .set_body_json(usage_body(A, 10, 2)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server, fixed(&[A]));
    let q = one_day();
    assert_eq!(totals(&p.usage(&q).await.unwrap()).total(), 12);
    // The answer said the hour's budget is spent: the next query is refused locally (the mock
    // expects one call only), with the delay until the reset.
    let w2 = Window::new(t("2024-01-02T00:00:00Z"), t("2024-01-03T00:00:00Z"));
    let e = p
        .usage(&UsageQuery::new(vec![w2], dims()))
        .await
        .unwrap_err();
    assert_retry_after(&e, Duration::from_secs(28)..=Duration::from_secs(31));
}

#[tokio::test]
async fn vendor_429_falls_back_to_ratelimit_reset() {
    let server = MockServer::start().await;
    let reset = Utc::now().timestamp() + 40;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("RATELIMIT-RESET", reset.to_string().as_str())
                .set_body_string(
                    r#"{"id":"too_many_requests","message":"API Rate limit exceeded."}"#,
                ),
        )
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server, fixed(&[A]));
    let e = p.usage(&one_day()).await.unwrap_err();
    assert_retry_after(&e, Duration::from_secs(38)..=Duration::from_secs(41));
}

#[tokio::test]
async fn a_404_agent_is_skipped_with_a_note() {
    let server = MockServer::start().await;
    mount_two_pages(&server, 2).await;
    Mock::given(method("GET"))
        .and(path(usage_path(A)))
        .respond_with(ResponseTemplate::new(404).set_body_string(include_str!(
            "../../../fixtures/digitalocean/error_not_found.json"
        )))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(usage_path(B)))
        .respond_with(ResponseTemplate::new(200).set_body_json(usage_body(B, 7, 3)))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(usage_path("3a0b9d2e-81d7-11ef-bf8f-4e013e2ddde4")))
        .respond_with(ResponseTemplate::new(200).set_body_json(usage_body("x", 0, 0)))
        .expect(2)
        .mount(&server)
        .await;
    // One call at a time: after A's first 404 its second window is not asked.
    let p = provider(&server, |c| c.max_concurrency = 1);
    let t0 = t("2024-01-01T00:00:00Z");
    let w = vec![
        Window::new(t0, t0 + TimeDelta::days(1)),
        Window::new(t0 + TimeDelta::days(1), t0 + TimeDelta::days(2)),
    ];
    let b = p.usage(&UsageQuery::new(w, dims())).await.unwrap();
    assert_eq!(
        totals(&b),
        Counters {
            input: 14,
            output: 6,
            other: 0
        }
    );
    assert_eq!(b.notes.len(), 1, "{:?}", b.notes);
    assert!(
        b.notes[0].contains(A) && b.notes[0].contains("support-agent"),
        "{:?}",
        b.notes
    );
    assert_eq!(b.upstream_requests, 2 + 1 + 2 + 2);
    // The 404 dropped the cached discovery: the next listing asks again (mocks expect 2).
    p.agents().await.unwrap();
}

#[tokio::test]
async fn a_404_from_something_else_fails_the_source() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404).set_body_string("404 page not found"))
        .mount(&server)
        .await;
    let p = provider(&server, fixed(&[A]));
    let e = p.usage(&one_day()).await.unwrap_err();
    assert!(matches!(e, ProviderError::NotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("404 page not found"));
}

#[tokio::test]
async fn statuses_map_to_semantic_errors() {
    let cases: [(u16, &str, &str); 4] = [
        (401, "unauthorized", "upstream_unauthenticated"),
        (403, "forbidden", "upstream_forbidden"),
        (500, "server_error", "upstream_error"),
        (400, "bad_request", "source_config"),
    ];
    for (status, id, kind) in cases {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(status).set_body_json(serde_json::json!({
                    "id": id, "message": format!("vendor says {id}"), "request_id": "r-1"
                })),
            )
            .expect(1)
            .mount(&server)
            .await;
        let p = provider(&server, fixed(&[A]));
        let e = p.usage(&one_day()).await.unwrap_err();
        assert_eq!(e.kind(), kind, "{status}: {e}");
        assert_eq!(e.is_transient(), status >= 500, "{status}");
        let shown = e.to_string();
        assert!(shown.contains(&format!("vendor says {id}")), "{shown}");
        assert!(shown.contains("r-1"), "{shown}");
        assert!(!shown.contains(TOKEN) && !format!("{e:?}").contains(TOKEN));
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(usage_path(A)))
        .respond_with(
            ResponseTemplate::new(302).insert_header("location", "http://127.0.0.1:9/elsewhere"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server, fixed(&[A]));
    let e = p.usage(&one_day()).await.unwrap_err();
    assert!(
        matches!(e, ProviderError::Upstream { status: 302, .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn bad_bodies_decode_errors_timeouts_and_transport() {
    let q = one_day();

    for body in [
        r#"{""#,
        r#"{"usage": {"measurements": [{"tokens": -3}]}}"#,
        "",
    ] {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_string(body))
            .mount(&server)
            .await;
        let e = provider(&server, fixed(&[A])).usage(&q).await.unwrap_err();
        assert!(matches!(e, ProviderError::Decode { .. }), "{body}: {e:?}");
    }

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(usage_body(A, 1, 1))
                .set_delay(Duration::from_secs(2)),
        )
        .mount(&server)
        .await;
    let p = DigitaloceanProvider::new(
        "do-test",
        config(&server.uri(), fixed(&[A])),
        http(Duration::from_millis(200)),
    )
    .unwrap();
    let e = p.usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::Timeout { .. }), "{e:?}");

    // Nothing listens on a port that was just released.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let p = DigitaloceanProvider::new(
        "do-test",
        config(&format!("http://127.0.0.1:{closed}"), fixed(&[A])),
        http(Duration::from_secs(2)),
    )
    .unwrap();
    let e = p.usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::Transport { .. }), "{e:?}");
    assert!(e.to_string().contains("refused"), "the cause is shown: {e}");
    assert!(e.is_transient());
}

#[tokio::test]
async fn fan_out_respects_max_concurrency() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(usage_body(A, 1, 0))
                .set_delay(Duration::from_millis(200)),
        )
        .expect(12)
        .mount(&server)
        .await;
    let t0 = t("2024-01-01T00:00:00Z");
    let w: Vec<Window> = (0..6)
        .map(|h| Window::new(t0 + TimeDelta::hours(h), t0 + TimeDelta::hours(h + 1)))
        .collect();
    let q = UsageQuery::new(w, dims());

    let capped = provider(&server, |c| {
        c.agents = Some(vec![A.into()]);
        c.max_concurrency = 2;
    });
    let started = Instant::now();
    assert_eq!(totals(&capped.usage(&q).await.unwrap()).input, 6);
    let capped_took = started.elapsed();
    assert!(capped_took >= Duration::from_millis(580), "{capped_took:?}");

    let wide = provider(&server, |c| {
        c.agents = Some(vec![A.into()]);
        c.max_concurrency = 6;
    });
    let started = Instant::now();
    assert_eq!(totals(&wide.usage(&q).await.unwrap()).input, 6);
    assert!(started.elapsed() < capped_took, "calls run concurrently");
}

#[tokio::test]
async fn queries_without_whole_seconds_or_with_users_are_handled() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(usage_body(A, 1, 0)))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server, fixed(&[A]));
    let t0 = t("2024-01-01T00:00:00Z");
    // A sub-second window needs no call; an unaligned one is cut to whole seconds, with a note.
    let tiny = Window::new(t0, t0 + TimeDelta::milliseconds(300));
    let b = p.usage(&UsageQuery::new(vec![tiny], dims())).await.unwrap();
    assert_eq!(b.upstream_requests, 0);
    assert!(b.points.is_empty());
    let odd = Window::new(t0 + TimeDelta::milliseconds(300), t0 + TimeDelta::hours(1));
    let b = p.usage(&UsageQuery::new(vec![odd], dims())).await.unwrap();
    assert_eq!(b.upstream_requests, 1);
    assert_eq!(b.notes.len(), 1, "{:?}", b.notes);

    let mut q = UsageQuery::new(vec![Window::new(t0, t0 + TimeDelta::hours(1))], dims());
    q.users = Some(BTreeSet::from(["alice".to_owned()]));
    assert!(matches!(
        p.usage(&q).await,
        Err(ProviderError::InvalidQuery { .. })
    ));
}

#[tokio::test]
async fn describe_and_debug() {
    let server = MockServer::start().await;
    let p = provider(&server, |_| {});
    let info = p.describe();
    assert_eq!(info.name, "do-test");
    assert_eq!(info.provider, usage_provider_digitalocean::KIND);
    assert_eq!(info.attribution, usage_core::Attribution::Exact);
    assert_eq!(
        info.dimensions,
        BTreeSet::from([Dimension::Agent, Dimension::UsageType, Dimension::Model])
    );
    assert_eq!(
        info.filters,
        BTreeSet::from([Dimension::Agent, Dimension::Model])
    );
    let dbg = format!("{p:?}");
    assert!(!dbg.contains(TOKEN), "{dbg}");

    let e = DigitaloceanProvider::new(
        "do-bad",
        config(&server.uri(), |c| c.max_concurrency = 0),
        http(Duration::from_secs(1)),
    )
    .unwrap_err();
    assert!(matches!(e, ProviderError::Config { .. }));
    assert!(e.to_string().contains("max_concurrency"));
}
