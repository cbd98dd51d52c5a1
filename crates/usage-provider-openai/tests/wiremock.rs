//! Request shape and the contract's quirks against a wiremock OpenAI: bracket arrays, auth and
//! organization headers, paging with `next_page`, empty buckets, missing and unknown fields,
//! null dimensions, error envelopes, 429s, and the width and limit chosen per window edges.
#![allow(clippy::unwrap_used, reason = "test helpers panic on broken fixtures")]

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;
use usage_core::{
    Counters, Dimension, ProviderError, UNATTRIBUTED_AGENT, Unit, UsageBatch, UsageProvider,
    UsageQuery, Window,
};
use usage_provider_openai::{Config, OpenaiProvider};
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "sk-admin-wiremock-secret";

fn t(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
}

fn provider(server: &MockServer, edit: impl FnOnce(&mut Config)) -> OpenaiProvider {
    let mut c = Config::new(SecretString::from(KEY));
    c.base_url = Url::parse(&server.uri()).unwrap();
    c.endpoints = Some(vec!["completions".into()]);
    c.agents = Some(vec!["proj_a".into(), "proj_b".into()]);
    edit(&mut c);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    OpenaiProvider::new("oa-test", c, http).unwrap()
}

fn page(buckets: Vec<Value>, next: Option<&str>) -> Value {
    json!({"object": "page", "data": Value::Array(buckets), "has_more": next.is_some(), "next_page": next})
}

fn bucket(start: DateTime<Utc>, width: i64, results: Vec<Value>) -> Value {
    let s = start.timestamp();
    json!({"object": "bucket", "start_time": s, "end_time": s + width, "results": Value::Array(results)})
}

fn totals(b: &UsageBatch) -> Counters {
    b.points.iter().fold(Counters::default(), |mut c, p| {
        c.add(&p.counters);
        c
    })
}

fn day_query(dims: &[Dimension]) -> UsageQuery {
    UsageQuery::new(
        vec![Window::new(t(2026, 11, 1, 0, 0), t(2026, 11, 2, 0, 0))],
        dims.iter().copied().collect(),
    )
}

/// The raw query string of a received request.
fn query_of(r: &Request) -> String {
    r.url.query().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn request_shape_brackets_headers_and_paging() {
    let server = MockServer::start().await;
    let d1 = t(2026, 11, 1, 0, 0);
    Mock::given(method("GET"))
        .and(path("/v1/organization/usage/completions"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("openai-organization", "org-xyz"))
        .and(query_param("start_time", d1.timestamp().to_string()))
        .and(query_param(
            "end_time",
            (d1.timestamp() + 2 * 86_400).to_string(),
        ))
        .and(query_param("bucket_width", "1d"))
        .and(query_param("limit", "31"))
        .and(query_param("group_by[]", "project_id"))
        .and(query_param("group_by[]", "model"))
        .and(query_param("project_ids[]", "proj_a"))
        .and(query_param_is_missing("page"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(
            vec![bucket(
                d1,
                86_400,
                vec![json!({
                    "object": "organization.usage.completions.result",
                    "input_tokens": 10, "output_tokens": 4, "input_uncached_tokens": 10,
                    "project_id": "proj_a", "model": "gpt-x", "user_id": null,
                    "brand_new_metric": 5, "service_tier": "flex_v2"
                })],
            )],
            Some("page_AAAA"),
        )))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/organization/usage/completions"))
        .and(query_param("page", "page_AAAA"))
        .and(query_param("group_by[]", "project_id"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(
            // An empty bucket, and a row missing every optional field.
            vec![
                bucket(d1 + TimeDelta::days(1), 86_400, vec![]),
                bucket(
                    d1 + TimeDelta::days(1),
                    86_400,
                    vec![json!({"project_id": "proj_a", "model": "gpt-x"})],
                ),
            ],
            None,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server, |c| {
        c.organization = Some("org-xyz".into());
        c.agents = Some(vec!["proj_a".into()]);
    });
    let windows = vec![
        Window::new(d1, d1 + TimeDelta::days(1)),
        Window::new(d1 + TimeDelta::days(1), d1 + TimeDelta::days(2)),
    ];
    let b = p
        .usage(&UsageQuery::new(
            windows.clone(),
            BTreeSet::from([Dimension::Agent, Dimension::Model]),
        ))
        .await
        .unwrap();
    assert_eq!(b.upstream_requests, 2);
    assert_eq!(b.points.len(), 1, "{:?}", b.points);
    assert_eq!(b.points[0].window, windows[0]);
    assert_eq!(b.points[0].key.agent.as_deref(), Some("proj_a"));
    assert_eq!(b.points[0].key.model.as_deref(), Some("gpt-x"));
    assert_eq!(
        totals(&b),
        Counters {
            input: 10,
            output: 4,
            other: 0
        }
    );
    // Arrays go out in bracket form, and the key never in the URL.
    for r in server.received_requests().await.unwrap() {
        let q = query_of(&r);
        assert!(q.contains("group_by%5B%5D=project_id"), "{q}");
        assert!(!q.contains("group_by=") && !q.contains(KEY), "{q}");
    }
}

#[tokio::test]
async fn null_dimensions_and_collapsed_queries() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/organization/usage/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(
            vec![bucket(t(2026, 11, 1, 0, 0), 86_400, vec![
                json!({"project_id": null, "user_id": null, "model": null, "input_tokens": 5, "output_tokens": 1}),
                json!({"project_id": "proj_b", "user_id": "user-1", "model": "m", "input_tokens": 7}),
            ])],
            None,
        )))
        .mount(&server)
        .await;
    let p = provider(&server, |c| c.agents = None);
    // The project listing only gives names.
    Mock::given(method("GET"))
        .and(path("/v1/organization/projects"))
        .and(query_param("include_archived", "true"))
        .and(query_param("limit", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list", "data": [{"id": "proj_b", "object": "organization.project", "name": "Bee",
            "created_at": 1, "archived_at": 2, "status": "archived"}], "first_id": "proj_b",
            "last_id": "proj_b", "has_more": false})))
        .expect(1)
        .mount(&server)
        .await;
    let b = p
        .usage(&day_query(&[
            Dimension::Agent,
            Dimension::User,
            Dimension::Model,
        ]))
        .await
        .unwrap();
    let un = b
        .points
        .iter()
        .find(|p| p.key.agent.as_deref() == Some(UNATTRIBUTED_AGENT))
        .unwrap();
    assert_eq!((un.key.user.as_ref(), un.key.model.as_ref()), (None, None));
    let bee = b
        .points
        .iter()
        .find(|p| p.key.agent.as_deref() == Some("proj_b"))
        .unwrap();
    assert_eq!(bee.agent_name.as_deref(), Some("Bee"));
    assert_eq!(bee.key.user.as_deref(), Some("user-1"));
    // Without dimensions, the same rows collapse into one point per unit.
    let b = p.usage(&day_query(&[])).await.unwrap();
    assert_eq!(b.points.len(), 1);
    assert_eq!(b.points[0].unit, Unit::Tokens);
    assert_eq!(
        totals(&b),
        Counters {
            input: 12,
            output: 1,
            other: 0
        }
    );
}

#[tokio::test]
async fn widths_and_limits_follow_the_window_edges() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(vec![], None)))
        .mount(&server)
        .await;
    let p = provider(&server, |_| {});
    let berlin = Window::new(t(2026, 10, 31, 23, 0), t(2026, 11, 1, 23, 0));
    let kolkata = Window::new(t(2026, 10, 31, 18, 30), t(2026, 11, 1, 18, 30));
    let odd = Window::new(
        t(2026, 11, 1, 0, 0) + TimeDelta::seconds(30),
        t(2026, 11, 1, 1, 0),
    );
    let utc_days = Window::new(t(2026, 11, 1, 0, 0), t(2026, 11, 3, 0, 0));
    for (w, width, limit, note) in [
        (utc_days, "1d", "31", false),
        (berlin, "1h", "168", false),
        (kolkata, "1m", "1440", false),
        (odd, "1m", "1440", true),
    ] {
        let before = server.received_requests().await.unwrap().len();
        let b = p
            .usage(&UsageQuery::new(vec![w], BTreeSet::new()))
            .await
            .unwrap();
        let reqs = server.received_requests().await.unwrap();
        let r = &reqs[before];
        let q: Vec<(String, String)> = r.url.query_pairs().into_owned().collect();
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("bucket_width").as_deref(), Some(width));
        assert_eq!(get("limit").as_deref(), Some(limit));
        assert_eq!(
            b.notes.iter().any(|n| n.contains("`1m`")),
            note,
            "{:?}",
            b.notes
        );
        // The fixed agents go out as a project filter.
        assert_eq!(q.iter().filter(|(k, _)| k == "project_ids[]").count(), 2);
    }
    // The odd window asks from the first minute starting inside it.
    let last = server.received_requests().await.unwrap().pop().unwrap();
    assert!(query_of(&last).contains(&format!("start_time={}", t(2026, 11, 1, 0, 1).timestamp())));
}

async fn answer_with(status: u16, body: Value, headers: &[(&str, &str)]) -> ProviderError {
    let server = MockServer::start().await;
    let mut resp = ResponseTemplate::new(status).set_body_json(body);
    for (k, v) in headers {
        resp = resp.insert_header(*k, *v);
    }
    Mock::given(method("GET"))
        .respond_with(resp)
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server, |_| {});
    let e = p.usage(&day_query(&[])).await.unwrap_err();
    assert!(!format!("{e:?}{e}").contains(KEY), "{e:?}");
    e
}

fn envelope(kind: &str, code: Option<&str>, message: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

#[tokio::test]
async fn error_envelopes_map_to_provider_errors() {
    let e = answer_with(400, json!({"error": {"message": "Invalid 'limit': 32.", "type": "invalid_request_error", "param": "limit", "code": null}}), &[]).await;
    assert_eq!(e.kind(), "invalid_query");
    assert!(e.to_string().contains("Invalid 'limit': 32."), "{e}");
    let e = answer_with(
        401,
        envelope(
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided",
        ),
        &[],
    )
    .await;
    assert_eq!(e.kind(), "upstream_unauthenticated");
    let e = answer_with(
        403,
        envelope("invalid_request_error", None, "insufficient permissions"),
        &[],
    )
    .await;
    assert_eq!(e.kind(), "upstream_forbidden");
    let e = answer_with(
        404,
        envelope(
            "invalid_request_error",
            Some("unknown_url"),
            "Unknown request URL",
        ),
        &[],
    )
    .await;
    assert_eq!(e.kind(), "upstream_not_found");
    let e = answer_with(
        500,
        envelope("server_error", None, "The server had an error"),
        &[],
    )
    .await;
    assert!(matches!(e, ProviderError::Upstream { status: 500, .. }) && e.is_transient());
    let e = answer_with(
        429,
        envelope(
            "requests",
            Some("rate_limit_exceeded"),
            "Rate limit reached",
        ),
        &[("retry-after", "17")],
    )
    .await;
    assert_eq!(e.retry_after(), Some(Duration::from_secs(17)));
    let e = answer_with(
        429,
        envelope(
            "requests",
            Some("rate_limit_exceeded"),
            "Rate limit reached",
        ),
        &[],
    )
    .await;
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
    let e = answer_with(200, json!({"data": [{"start_time": "yesterday"}]}), &[]).await;
    assert_eq!(e.kind(), "upstream_decode");
    let e = answer_with(
        200,
        json!({"object": "page", "data": [], "has_more": true, "next_page": null}),
        &[],
    )
    .await;
    assert_eq!(e.kind(), "upstream_decode");
}

#[tokio::test]
async fn a_429_with_retry_after_pauses_the_source() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(429)
                .set_body_json(envelope("requests", None, "slow down"))
                .insert_header("retry-after", "30"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server, |_| {});
    assert!(p.usage(&day_query(&[])).await.is_err());
    // The next query waits for the pause instead of earning another 429.
    let e = p.usage(&day_query(&[])).await.unwrap_err();
    assert_eq!(e.kind(), "rate_limited");
}

#[tokio::test]
async fn filters_that_an_endpoint_cannot_apply_leave_it_out() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/organization/usage/completions"))
        .and(query_param("user_ids[]", "user-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(vec![], None)))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/organization/usage/file_search_calls"))
        .and(query_param("user_ids[]", "user-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(vec![], None)))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server, |c| {
        c.endpoints = Some(vec![
            "completions".into(),
            "code_interpreter_sessions".into(),
            "file_search_calls".into(),
        ]);
    });
    let mut q = day_query(&[]);
    q.users = Some(BTreeSet::from(["user-1".to_owned()]));
    q.models = Some(BTreeSet::from(["m".to_owned()]));
    let b = p.usage(&q).await.unwrap();
    assert!(
        b.notes.iter().any(|n| n
            == "OpenAI's `code_interpreter_sessions` usage is left out: it has no user or model, \
                so none of it can match the user or model filter"),
        "{:?}",
        b.notes
    );
    assert!(
        b.notes.iter().any(|n| n
            == "OpenAI's `file_search_calls` usage is left out: it has no model, so none of it \
                can match the model filter"),
        "{:?}",
        b.notes
    );
    let first = server.received_requests().await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(query_of(&first[0]).contains("models%5B%5D=m"));
    q.models = None;
    let b = p.usage(&q).await.unwrap();
    assert_eq!(b.notes.len(), 1, "{:?}", b.notes);
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}
