//! Request shape, paging, tolerance and error handling against a wiremock Anthropic, one test
//! per quirk the provider relies on (CONTRACTS-openai-anthropic.md part B).
#![allow(
    clippy::unwrap_used,
    clippy::needless_pass_by_value,
    clippy::type_complexity,
    reason = "test helpers panic on broken fixtures and take JSON by value; case tables are tuples"
)]

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;
use usage_core::{Counters, Dimension, ProviderError, Unit, UsageProvider, UsageQuery, Window};
use usage_provider_anthropic::{AnthropicProvider, Config};
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "sk-ant-admin01-wiremock-secret";
const USAGE: &str = "/v1/organizations/usage_report/messages";
const WORKSPACES: &str = "/v1/organizations/workspaces";

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn provider(server: &MockServer, edit: impl FnOnce(&mut Config)) -> AnthropicProvider {
    let mut c = Config::new(SecretString::from(KEY));
    c.base_url = Url::parse(&server.uri()).unwrap();
    c.rate_limit_per_minute = 1000;
    c.max_upstream_calls = 100;
    edit(&mut c);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    AnthropicProvider::new("an", c, http).unwrap()
}

fn day_query(dims: &[Dimension]) -> UsageQuery {
    UsageQuery::new(
        vec![Window::new(
            t("2026-11-01T00:00:00Z"),
            t("2026-11-02T00:00:00Z"),
        )],
        dims.iter().copied().collect(),
    )
}

fn bucket(start: &str, end: &str, results: Value) -> Value {
    json!({"starting_at": start, "ending_at": end, "results": results})
}

fn page(data: Vec<Value>, next: Option<&str>) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"data": data, "has_more": next.is_some(), "next_page": next}))
}

/// A last page of buckets `(start, end, output tokens)`.
fn output_buckets(buckets: &[(&str, &str, u64)]) -> ResponseTemplate {
    page(
        buckets
            .iter()
            .map(|(start, end, n)| bucket(start, end, json!([{ "output_tokens": n }])))
            .collect(),
        None,
    )
}

fn one_day(results: Value) -> ResponseTemplate {
    page(
        vec![bucket(
            "2026-11-01T00:00:00Z",
            "2026-11-02T00:00:00Z",
            results,
        )],
        None,
    )
}

fn tokens(b: &usage_core::UsageBatch) -> Counters {
    b.points
        .iter()
        .filter(|p| p.unit == Unit::Tokens)
        .fold(Counters::default(), |mut c, p| {
            c.add(&p.counters);
            c
        })
}

/// The query pairs of a received request, as sent (names undecoded from `%5B%5D`).
fn pairs(r: &Request) -> Vec<(String, String)> {
    r.url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn envelope(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_01"})
}

#[tokio::test]
async fn headers_bracket_arrays_and_filters_on_the_wire() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USAGE))
        .and(header("x-api-key", KEY))
        .and(header("anthropic-version", "2023-06-01"))
        .and(query_param("starting_at", "2026-11-01T00:00:00Z"))
        // A second past the range: its last bucket comes back under either reading of "end
        // before".
        .and(query_param("ending_at", "2026-11-02T00:00:01Z"))
        .and(query_param("bucket_width", "1d"))
        .and(query_param("limit", "1"))
        .and(query_param("api_key_ids[]", "apikey_1"))
        .and(query_param("models[]", "claude-opus-4-6"))
        .and(query_param("workspace_ids[]", "wrkspc_a"))
        .respond_with(one_day(json!([])))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server, |c| c.agents = Some(vec!["wrkspc_a".into()]));
    let mut q = day_query(&[Dimension::User, Dimension::Model]);
    q.users = Some(BTreeSet::from(["apikey_1".to_owned()]));
    q.models = Some(BTreeSet::from(["claude-opus-4-6".to_owned()]));
    let b = p.usage(&q).await.unwrap();
    assert!(b.points.is_empty());
    assert_eq!(b.upstream_requests, 1);
    let sent = &server.received_requests().await.unwrap()[0];
    let groups: BTreeSet<String> = pairs(sent)
        .into_iter()
        .filter(|(k, _)| k == "group_by[]")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        groups,
        BTreeSet::from(["api_key_id".to_owned(), "model".to_owned()]),
        "only the kept dimensions, in bracket form"
    );
    assert!(pairs(sent).iter().all(|(k, _)| k != "group_by"));
    assert!(
        !format!("{p:?}").contains("wiremock-secret"),
        "Debug hides the key"
    );
}

#[tokio::test]
async fn a_filter_naming_the_default_workspace_groups_and_filters_rows_here() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USAGE))
        .and(query_param("group_by[]", "workspace_id"))
        .and(query_param_is_missing("workspace_ids[]"))
        .respond_with(one_day(json!([
            {"uncached_input_tokens": 10, "output_tokens": 1, "workspace_id": null},
            {"uncached_input_tokens": 20, "output_tokens": 2, "workspace_id": "wrkspc_a"},
            {"uncached_input_tokens": 40, "output_tokens": 4, "workspace_id": "wrkspc_b"}
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server, |_| {});
    let mut q = day_query(&[]);
    q.agents = Some(BTreeSet::from([
        "default".to_owned(),
        "wrkspc_b".to_owned(),
    ]));
    let b = p.usage(&q).await.unwrap();
    assert_eq!(
        tokens(&b),
        Counters {
            input: 50,
            output: 5,
            other: 0
        }
    );
    assert!(
        b.points.iter().all(|p| p.key.agent.is_none()),
        "agent not kept"
    );
}

#[tokio::test]
async fn null_dimensions_of_grouped_rows_are_the_default_workspace_and_console() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USAGE))
        .respond_with(one_day(json!([
            {"uncached_input_tokens": 7, "workspace_id": null, "api_key_id": null, "model": "m"},
            {"output_tokens": 3, "workspace_id": "wrkspc_a", "api_key_id": "apikey_1", "model": "m"}
        ])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(WORKSPACES))
        .and(query_param("include_archived", "true"))
        .and(query_param("limit", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"id": "wrkspc_a", "type": "workspace", "name": "Prod",
                      "created_at": "2024-10-30T23:58:27.427722Z", "archived_at": null,
                      "display_color": "#6C5BB9"}],
            "has_more": false, "first_id": "wrkspc_a", "last_id": "wrkspc_a"})))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server, |_| {});
    let b = p
        .usage(&day_query(&[
            Dimension::Agent,
            Dimension::User,
            Dimension::Model,
        ]))
        .await
        .unwrap();
    let rows: Vec<_> = b
        .points
        .iter()
        .map(|p| {
            (
                p.key.agent.as_deref(),
                p.agent_name.as_deref(),
                p.key.user.as_deref(),
                p.key.model.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (Some("default"), Some("Default workspace"), None, Some("m")),
            (Some("wrkspc_a"), Some("Prod"), Some("apikey_1"), Some("m")),
        ]
    );
    assert_eq!(b.upstream_requests, 2);
}

#[tokio::test]
async fn pages_are_followed_with_next_page_and_empty_buckets_are_fine() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USAGE))
        .and(query_param("page", "page_MjAyNi0xMS0wMlQwMDowMDowMFo="))
        .respond_with(page(
            vec![bucket(
                "2026-11-02T00:00:00Z",
                "2026-11-03T00:00:00Z",
                json!([{"uncached_input_tokens": 5, "output_tokens": 6}]),
            )],
            None,
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(USAGE))
        .and(query_param_is_missing("page"))
        .respond_with(page(
            vec![bucket(
                "2026-11-01T00:00:00Z",
                "2026-11-02T00:00:00Z",
                json!([]),
            )],
            Some("page_MjAyNi0xMS0wMlQwMDowMDowMFo="),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server, |_| {});
    let windows = vec![
        Window::new(t("2026-11-01T00:00:00Z"), t("2026-11-02T00:00:00Z")),
        Window::new(t("2026-11-02T00:00:00Z"), t("2026-11-03T00:00:00Z")),
    ];
    let b = p
        .usage(&UsageQuery::new(windows.clone(), BTreeSet::new()))
        .await
        .unwrap();
    assert_eq!(b.upstream_requests, 2);
    assert_eq!(b.points.len(), 1);
    assert_eq!(b.points[0].window, windows[1]);
    assert_eq!(tokens(&b).total(), 11);
}

#[tokio::test]
async fn a_looping_cursor_stops() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USAGE))
        .respond_with(page(vec![], Some("page_same")))
        .mount(&server)
        .await;
    let e = provider(&server, |_| {})
        .usage(&day_query(&[]))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "upstream_decode", "{e}");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn missing_fields_unknown_fields_and_values_are_tolerated() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USAGE))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"starting_at": "2026-11-01T00:00:00Z", "ending_at": "2026-11-02T00:00:00Z",
                "new_field": 1,
                "results": [
                    {"uncached_input_tokens": 100, "cache_creation": null, "server_tool_use": null,
                     "service_tier": "hyperspeed", "speed": "fast", "brand_new": {"x": 1}},
                    {"output_tokens": 9, "cache_read_input_tokens": 4,
                     "cache_creation": {"ephemeral_5m_input_tokens": 2},
                     "server_tool_use": {"web_search_requests": 3}},
                    {}
                ]}],
            "has_more": false
        })))
        .mount(&server)
        .await;
    let b = provider(&server, |_| {})
        .usage(&day_query(&[Dimension::UsageType]))
        .await
        .unwrap();
    let by_type = |ty: &str| {
        b.points
            .iter()
            .find(|p| p.key.usage_type.as_deref() == Some(ty))
            .map(|p| (p.unit, p.counters))
    };
    let c = |input, output, other| Counters {
        input,
        output,
        other,
    };
    assert_eq!(
        by_type("uncached_input_tokens"),
        Some((Unit::Tokens, c(100, 0, 0)))
    );
    assert_eq!(by_type("output_tokens"), Some((Unit::Tokens, c(0, 9, 0))));
    assert_eq!(
        by_type("cache_read_input_tokens"),
        Some((Unit::Tokens, c(0, 0, 4)))
    );
    assert_eq!(
        by_type("cache_creation.ephemeral_5m_input_tokens"),
        Some((Unit::Tokens, c(0, 0, 2)))
    );
    assert_eq!(
        by_type("cache_creation.ephemeral_1h_input_tokens"),
        None,
        "zero: no point"
    );
    assert_eq!(
        by_type("server_tool_use.web_search_requests"),
        Some((Unit::Requests, c(0, 0, 3)))
    );
    assert_eq!(b.points.len(), 5);
}

#[tokio::test]
async fn the_width_and_limit_follow_the_windows() {
    let cases: Vec<(&str, Vec<Window>, Vec<(&str, &str, &str, &str)>, bool)> = vec![
        (
            "UTC days",
            vec![Window::new(
                t("2026-11-01T00:00:00Z"),
                t("2026-11-03T00:00:00Z"),
            )],
            vec![("1d", "2", "2026-11-01T00:00:00Z", "2026-11-03T00:00:00Z")],
            false,
        ),
        (
            "Berlin days",
            vec![
                Window::new(t("2026-10-31T23:00:00Z"), t("2026-11-01T23:00:00Z")),
                Window::new(t("2026-11-01T23:00:00Z"), t("2026-11-02T23:00:00Z")),
            ],
            vec![("1h", "48", "2026-10-31T23:00:00Z", "2026-11-02T23:00:00Z")],
            false,
        ),
        (
            "Kolkata days",
            vec![Window::new(
                t("2026-10-31T18:30:00Z"),
                t("2026-11-01T18:30:00Z"),
            )],
            vec![("1m", "1440", "2026-10-31T18:30:00Z", "2026-11-01T18:30:00Z")],
            false,
        ),
        (
            "40 UTC days: 31 + 9",
            vec![Window::new(
                t("2026-10-01T00:00:00Z"),
                t("2026-11-10T00:00:00Z"),
            )],
            vec![
                ("1d", "31", "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"),
                ("1d", "9", "2026-11-01T00:00:00Z", "2026-11-10T00:00:00Z"),
            ],
            false,
        ),
        (
            "8 days of hours: 168 + 24",
            vec![Window::new(
                t("2026-11-01T01:00:00Z"),
                t("2026-11-09T01:00:00Z"),
            )],
            vec![
                ("1h", "168", "2026-11-01T01:00:00Z", "2026-11-08T01:00:00Z"),
                ("1h", "24", "2026-11-08T01:00:00Z", "2026-11-09T01:00:00Z"),
            ],
            false,
        ),
        (
            "a week to 04:41:23: days, hours and minutes at the ends",
            vec![Window::new(
                t("2026-11-02T04:41:23Z"),
                t("2026-11-09T04:41:23Z"),
            )],
            vec![
                ("1d", "6", "2026-11-03T00:00:00Z", "2026-11-09T00:00:00Z"),
                ("1h", "19", "2026-11-02T05:00:00Z", "2026-11-03T00:00:00Z"),
                ("1h", "4", "2026-11-09T00:00:00Z", "2026-11-09T04:00:00Z"),
                ("1m", "18", "2026-11-02T04:42:00Z", "2026-11-02T05:00:00Z"),
                ("1m", "42", "2026-11-09T04:00:00Z", "2026-11-09T04:42:00Z"),
            ],
            true,
        ),
        (
            "odd edges: minutes, with a note",
            vec![Window::new(
                t("2026-11-01T12:00:30Z"),
                t("2026-11-01T12:03:30Z"),
            )],
            vec![("1m", "3", "2026-11-01T12:01:00Z", "2026-11-01T12:04:00Z")],
            true,
        ),
    ];
    for (name, windows, want, note) in cases {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(USAGE))
            .respond_with(page(vec![], None))
            .mount(&server)
            .await;
        let b = provider(&server, |_| {})
            .usage(&UsageQuery::new(windows, BTreeSet::new()))
            .await
            .unwrap();
        let mut got: Vec<(String, String, String, String)> = server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| {
                let q = pairs(r);
                let get = |k: &str| q.iter().find(|(n, _)| n == k).unwrap().1.clone();
                (
                    get("bucket_width"),
                    get("limit"),
                    get("starting_at"),
                    get("ending_at"),
                )
            })
            .collect();
        got.sort();
        let want: Vec<(String, String, String, String)> = want
            .into_iter()
            .map(|(a, b, c, d)| {
                // `ending_at` is sent a second past the range's end.
                let d = (t(d) + chrono::TimeDelta::seconds(1))
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                (a.into(), b.into(), c.into(), d)
            })
            .collect();
        assert_eq!(got, want, "{name}");
        assert_eq!(b.notes.len(), usize::from(note), "{name}: {:?}", b.notes);
    }
}

#[tokio::test]
async fn buckets_outside_every_window_are_dropped() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USAGE))
        .respond_with(output_buckets(&[
            ("2026-10-31T00:00:00Z", "2026-11-01T00:00:00Z", 1),
            ("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z", 2),
        ]))
        .mount(&server)
        .await;
    let b = provider(&server, |_| {})
        .usage(&day_query(&[]))
        .await
        .unwrap();
    assert_eq!(tokens(&b).output, 2);
}

#[tokio::test]
async fn a_bucket_past_its_range_is_not_counted_twice() {
    // Two ranges of minutes (1,440 + 30); a server that also returns the bucket starting at
    // the first range's end must not have it counted with both.
    let server = MockServer::start().await;
    for (starting_at, answer) in [
        (
            "2026-11-01T00:00:00Z",
            vec![
                ("2026-11-01T23:59:00Z", "2026-11-02T00:00:00Z", 1),
                ("2026-11-02T00:00:00Z", "2026-11-02T00:01:00Z", 5),
            ],
        ),
        (
            "2026-11-02T00:00:00Z",
            vec![("2026-11-02T00:00:00Z", "2026-11-02T00:01:00Z", 5)],
        ),
    ] {
        Mock::given(method("GET"))
            .and(path(USAGE))
            .and(query_param("starting_at", starting_at))
            .respond_with(output_buckets(&answer))
            .expect(1)
            .mount(&server)
            .await;
    }
    let windows = vec![
        Window::new(t("2026-11-01T00:00:00Z"), t("2026-11-02T00:00:00Z")),
        Window::new(t("2026-11-02T00:00:00Z"), t("2026-11-02T00:30:00Z")),
    ];
    let b = provider(&server, |_| {})
        .usage(&UsageQuery::new(windows, BTreeSet::new()))
        .await
        .unwrap();
    assert_eq!(b.bucket_width.as_deref(), Some("1m"));
    assert_eq!(tokens(&b).output, 6);
}

#[tokio::test]
async fn an_empty_filter_set_asks_nothing() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(one_day(json!([{"output_tokens": 1}])))
        .expect(0)
        .mount(&server)
        .await;
    let p = provider(&server, |_| {});
    for set in ["agents", "users", "models"] {
        let mut q = day_query(&[Dimension::Agent]);
        match set {
            "agents" => q.agents = Some(BTreeSet::new()),
            "users" => q.users = Some(BTreeSet::new()),
            _ => q.models = Some(BTreeSet::new()),
        }
        let b = p.usage(&q).await.unwrap();
        assert!(b.points.is_empty(), "{set}");
        assert_eq!(b.upstream_requests, 0, "{set}");
    }
    server.verify().await;
}

#[tokio::test]
async fn error_envelopes_map_to_provider_errors() {
    let cases: Vec<(u16, &str, &str)> = vec![
        (400, "invalid_request_error", "invalid_query"),
        (401, "authentication_error", "upstream_unauthenticated"),
        (403, "permission_error", "upstream_forbidden"),
        (404, "not_found_error", "upstream_not_found"),
        (500, "api_error", "upstream_error"),
        (529, "overloaded_error", "upstream_error"),
    ];
    for (status, kind, want) in cases {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(USAGE))
            .respond_with(
                ResponseTemplate::new(status).set_body_json(envelope(kind, "vendor says no")),
            )
            .expect(1)
            .mount(&server)
            .await;
        let e = provider(&server, |_| {})
            .usage(&day_query(&[]))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), want, "{status}: {e}");
        assert!(!e.to_string().contains("wiremock-secret"));
        if status == 400 {
            assert!(e.to_string().contains("vendor says no"), "{e}");
        }
        if status >= 500 {
            assert!(e.is_transient(), "{status}");
        }
    }
}

#[tokio::test]
async fn a_429_pauses_the_source_for_its_delay_or_a_minute() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USAGE))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "30")
                .set_body_json(envelope("rate_limit_error", "slow down")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server, |_| {});
    let e = p.usage(&day_query(&[])).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
    let again = p.usage(&day_query(&[])).await.unwrap_err();
    assert!(
        matches!(again, ProviderError::RateLimited { .. }),
        "{again:?}"
    );
    drop(p);
    server.verify().await;

    // Without a delay: a minute's pause (Anthropic's guidance is one poll a minute).
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USAGE))
        .respond_with(
            ResponseTemplate::new(429).set_body_json(envelope("rate_limit_error", "slow down")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server, |_| {});
    let e = p.usage(&day_query(&[])).await.unwrap_err();
    assert_eq!(
        e,
        ProviderError::RateLimited {
            source_name: "an".into(),
            retry_after: None
        }
    );
    let again = p.usage(&day_query(&[])).await.unwrap_err();
    let wait = again.retry_after().unwrap();
    assert!(
        wait > Duration::from_secs(55) && wait <= Duration::from_secs(60),
        "{again:?}"
    );
    drop(p);
    server.verify().await;
}

#[tokio::test]
async fn workspaces_are_paged_with_after_id() {
    let server = MockServer::start().await;
    let ws = |id: &str, archived: Option<&str>| {
        json!({"id": id, "type": "workspace", "name": format!("name {id}"),
               "created_at": "2024-10-30T23:58:27.427722Z", "archived_at": archived,
               "display_color": "#6C5BB9"})
    };
    Mock::given(method("GET"))
        .and(path(WORKSPACES))
        .and(query_param("after_id", "wrkspc_b"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [ws("wrkspc_c", Some("2025-01-01T00:00:00Z"))],
            "has_more": false, "first_id": "wrkspc_c", "last_id": "wrkspc_c"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(WORKSPACES))
        .and(query_param_is_missing("after_id"))
        .and(header("anthropic-version", "2023-06-01"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [ws("wrkspc_a", None), ws("wrkspc_b", None)],
            "has_more": true, "first_id": "wrkspc_a", "last_id": "wrkspc_b"})))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server, |_| {});
    let ids: Vec<String> = p
        .agents()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, ["default", "wrkspc_a", "wrkspc_b", "wrkspc_c"]);
    // Cached for discovery_ttl.
    p.agents().await.unwrap();
}

#[tokio::test]
async fn an_agent_filter_outside_a_fixed_list_sends_nothing() {
    let server = MockServer::start().await;
    let p = provider(&server, |c| c.agents = Some(vec!["wrkspc_a".into()]));
    let mut q = day_query(&[Dimension::Agent]);
    q.agents = Some(BTreeSet::from(["wrkspc_z".to_owned()]));
    let b = p.usage(&q).await.unwrap();
    assert!(b.points.is_empty());
    assert_eq!(b.upstream_requests, 0);
    assert!(server.received_requests().await.unwrap().is_empty());
}
