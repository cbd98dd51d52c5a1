//! Request shape, paging, caching, mode choice and error mapping against wiremock.
// Helpers outside `#[test]` functions panic on purpose when a test's setup is wrong.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};
use usage_core::{
    Counters, Dimension, ProviderError, UNATTRIBUTED_AGENT, Unit, UsageBatch, UsageProvider,
    UsageQuery, Window,
};
use usage_provider_chatbotkit::{ChatbotkitProvider, Config, RecordTypes};
use wiremock::matchers::{bearer_token, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "sk-test-secret-4711";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
}

fn hours(h: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::hours(h)
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn rec(id: &str, at_ms: i64, count: u64, bot: Option<&str>, contact: Option<&str>) -> Value {
    let mut r = json!({"id": id, "type": "BASE", "count": count, "createdAt": at_ms, "updatedAt": at_ms,
                       "conversationId": format!("conv-{id}"), "meta": {}});
    if let Some(b) = bot {
        r["botId"] = b.into();
    }
    if let Some(c) = contact {
        r["contactId"] = c.into();
    }
    r
}

fn page(items: &[Value], cursor: Option<&str>) -> ResponseTemplate {
    let mut body = json!({ "items": items });
    if let Some(c) = cursor {
        body["cursor"] = c.into();
    }
    ResponseTemplate::new(200).set_body_json(body)
}

fn provider_with(server: &MockServer, f: impl FnOnce(&mut Config)) -> ChatbotkitProvider {
    let mut c = Config::new(TOKEN);
    c.base_url = server.uri().parse().unwrap();
    f(&mut c);
    ChatbotkitProvider::new("cbk", c, reqwest::Client::new()).unwrap()
}

/// Answers `/v1/usage/list` requests carrying `cursor` (`None`: the first page) with `answer`,
/// expected `times` times.
async fn list_answer(
    server: &MockServer,
    cursor: Option<&str>,
    answer: ResponseTemplate,
    times: u64,
) {
    let mock = Mock::given(path("/v1/usage/list"));
    let mock = match cursor {
        Some(c) => mock.and(query_param("cursor", c)),
        None => mock.and(query_param_is_missing("cursor")),
    };
    mock.respond_with(answer).expect(times).mount(server).await;
}

fn dims(d: &[Dimension]) -> BTreeSet<Dimension> {
    d.iter().copied().collect()
}

fn set(items: &[&str]) -> Option<BTreeSet<String>> {
    let ids: BTreeSet<String> = items.iter().map(|s| (*s).to_owned()).collect();
    (!ids.is_empty()).then_some(ids)
}

fn total(b: &UsageBatch) -> u64 {
    b.points.iter().map(|p| p.counters.total()).sum()
}

async fn bot_list(server: &MockServer, expect: u64) {
    Mock::given(method("GET"))
        .and(path("/v1/bot/list"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(include_str!("../../../fixtures/chatbotkit/bot_list.json")),
        )
        .expect(expect)
        .mount(server)
        .await;
}

const BOT: &str = "cmb1y7r0d000008jv2h6c4wq9";

#[tokio::test]
async fn record_scan_sends_the_documented_shape_and_stops_at_an_older_record() {
    let server = MockServer::start().await;
    // With take=2 the two-bot fixture is a full page: a second bot-list page is asked for, and
    // the repeated cursor ends the listing.
    bot_list(&server, 2).await;
    Mock::given(method("GET"))
        .and(path("/v1/usage/list"))
        .and(bearer_token(TOKEN))
        .and(header("accept", "application/json"))
        .and(query_param("take", "2"))
        .and(query_param("order", "desc"))
        .and(query_param("type", "BASE"))
        .and(query_param_is_missing("botId"))
        .and(query_param_is_missing("contactId"))
        .and(query_param_is_missing("cursor"))
        .respond_with(page(
            &[
                rec("r4", ms(hours(1)), 1000, Some(BOT), Some("alice")),
                // The last millisecond of the first hour, then its first: both in window 1.
                rec("r3", ms(hours(1)) - 1, 100, Some(BOT), Some("alice")),
            ],
            Some("c2"),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/usage/list"))
        .and(query_param("cursor", "c2"))
        .respond_with(page(
            &[
                rec("r2", ms(t0()), 10, None, None),
                rec("r1", ms(t0()) - 1, 1, Some(BOT), None),
            ],
            Some("c3"),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/usage/list"))
        .and(query_param("cursor", "c3"))
        .respond_with(page(&[], None))
        .expect(0)
        .mount(&server)
        .await;

    let p = provider_with(&server, |c| c.page_size = 2);
    let w1 = Window::new(t0(), hours(1));
    let w2 = Window::new(hours(1), hours(3));
    let q = UsageQuery::new(vec![w1, w2], dims(&[Dimension::Agent, Dimension::User]));
    let b = p.usage(&q).await.unwrap();
    assert_eq!(
        b.upstream_requests, 4,
        "two bot-list pages + two usage pages"
    );
    let by = |w: Window, agent: &str| -> u64 {
        b.points
            .iter()
            .filter(|p| p.window == w && p.key.agent.as_deref() == Some(agent))
            .map(|p| p.counters.other)
            .sum()
    };
    assert_eq!(by(w1, BOT), 100);
    assert_eq!(
        by(w1, UNATTRIBUTED_AGENT),
        10,
        "records without botId are kept"
    );
    assert_eq!(
        by(w2, BOT),
        1000,
        "a record at the window end belongs to the next window"
    );
    assert_eq!(
        total(&b),
        1110,
        "the record before the start is not counted"
    );
    let named = b
        .points
        .iter()
        .find(|p| p.key.agent.as_deref() == Some(BOT))
        .unwrap();
    assert_eq!(named.agent_name.as_deref(), Some("Support Agent"));
    assert_eq!(named.unit, Unit::Credits);
    assert!(
        b.points
            .iter()
            .all(|p| p.counters.input == 0 && p.counters.output == 0)
    );
    assert!(
        b.points.iter().all(|p| p.key.conversation.is_none()),
        "not asked for"
    );
}

/// How the second page ends the list.
#[derive(Debug, Clone, Copy)]
enum End {
    EmptyPage,
    AbsentCursor,
    EmptyCursor,
    RepeatedCursor,
    ShortPage,
}

async fn end_rule(end: End) {
    let server = MockServer::start().await;
    let first = page(
        &[
            rec("r4", ms(hours(5)), 1, Some("b"), None),
            rec("r3", ms(hours(4)), 2, Some("b"), None),
        ],
        Some("c2"),
    );
    list_answer(&server, None, first, 1).await;
    let full = vec![
        rec("r2", ms(hours(3)), 4, Some("b"), None),
        rec("r1", ms(hours(2)), 8, Some("b"), None),
    ];
    let second = match end {
        End::EmptyPage => page(&[], Some("c3")),
        End::AbsentCursor => page(&full, None),
        End::EmptyCursor => page(&full, Some("")),
        End::RepeatedCursor => page(&full, Some("c2")),
        // A short page with a fresh cursor does not end the list (the server may serve fewer
        // items than asked): the page after it does.
        End::ShortPage => page(&[rec("r2", ms(hours(3)), 4, Some("b"), None)], Some("c3")),
    };
    let short = matches!(end, End::ShortPage);
    list_answer(&server, Some("c2"), second, 1).await;
    let third = page(&[rec("r0", ms(hours(1)), 16, Some("b"), None)], None);
    list_answer(&server, Some("c3"), third, u64::from(short)).await;
    let p = provider_with(&server, |c| c.page_size = 2);
    // The range starts before every record, so only an end rule can stop the scan.
    let q = UsageQuery::new(vec![Window::new(t0(), hours(24))], BTreeSet::new());
    let b = p.usage(&q).await.unwrap();
    assert_eq!(b.upstream_requests, 2 + u64::from(short), "{end:?}");
    let expected = match end {
        End::EmptyPage => 3,
        End::ShortPage => 23,
        _ => 15,
    };
    assert_eq!(total(&b), expected, "{end:?}");
    // The list ended: any older range is known to be empty without a request.
    let older = UsageQuery::new(vec![Window::new(hours(-48), hours(-24))], BTreeSet::new());
    let b = p.usage(&older).await.unwrap();
    assert_eq!((b.upstream_requests, b.points.len()), (0, 0), "{end:?}");
}

#[tokio::test]
async fn paging_stops_at_an_empty_page() {
    end_rule(End::EmptyPage).await;
}

#[tokio::test]
async fn paging_stops_at_an_absent_cursor() {
    end_rule(End::AbsentCursor).await;
}

#[tokio::test]
async fn paging_stops_at_an_empty_cursor() {
    end_rule(End::EmptyCursor).await;
}

#[tokio::test]
async fn paging_stops_at_a_repeated_cursor() {
    end_rule(End::RepeatedCursor).await;
}

#[tokio::test]
async fn paging_goes_on_after_a_short_page_with_a_cursor() {
    end_rule(End::ShortPage).await;
}

#[tokio::test]
async fn cached_records_answer_repeats_and_older_ranges_continue_from_the_saved_cursor() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/usage/list"))
        .and(query_param_is_missing("cursor"))
        .respond_with(page(
            &[
                rec("r4", ms(hours(30)), 1, Some("b"), None),
                rec("r3", ms(hours(12)), 2, Some("b"), None),
            ],
            Some("c2"),
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/v1/usage/list"))
        .and(query_param("cursor", "c2"))
        .respond_with(page(
            &[
                rec("r2", ms(hours(5)), 4, Some("b"), None),
                rec("r1", ms(hours(-1)), 8, Some("b"), None),
            ],
            Some("c3"),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider_with(&server, |c| c.page_size = 2);
    let day2 = UsageQuery::new(vec![Window::new(hours(24), hours(48))], BTreeSet::new());
    let b = p.usage(&day2).await.unwrap();
    assert_eq!((b.upstream_requests, total(&b)), (1, 1));
    let b = p.usage(&day2).await.unwrap();
    assert_eq!(
        (b.upstream_requests, total(&b)),
        (0, 1),
        "a repeat costs nothing"
    );
    let day1 = UsageQuery::new(vec![Window::new(t0(), hours(24))], BTreeSet::new());
    let b = p.usage(&day1).await.unwrap();
    assert_eq!(
        (b.upstream_requests, total(&b)),
        (1, 6),
        "one page below the cache"
    );
    // Both days, any agent filter, hourly windows: all from the cache.
    let windows: Vec<Window> = (0..48)
        .map(|h| Window::new(hours(h), hours(h + 1)))
        .collect();
    let mut all = UsageQuery::new(windows, BTreeSet::new());
    all.agents = set(&["b"]);
    let b = p.usage(&all).await.unwrap();
    assert_eq!((b.upstream_requests, total(&b)), (0, 7));
    assert_eq!(b.points.len(), 3);
}

#[tokio::test]
async fn concurrent_queries_share_one_scan() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/usage/list"))
        .respond_with(
            page(&[rec("r1", ms(hours(1)), 5, Some("b"), None)], None)
                .set_delay(Duration::from_millis(300)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let p = provider_with(&server, |_| {});
    let q = UsageQuery::new(vec![Window::new(t0(), hours(24))], dims(&[Dimension::User]));
    let answers = futures::future::join_all((0..8).map(|_| p.usage(&q))).await;
    let mut requests = 0;
    for a in answers {
        let b = a.unwrap();
        requests += b.upstream_requests;
        assert_eq!(total(&b), 5);
    }
    assert_eq!(requests, 1);
}

#[tokio::test]
async fn a_page_that_fails_part_way_counts_its_skipped_records_once() {
    let server = MockServer::start().await;
    // The second page breaks after a record without a count (skipped) and a good one.
    let no_count = json!({"id": "r2", "type": "BASE", "createdAt": ms(hours(2))});
    let good = rec("r1", ms(hours(1)), 4, Some("b"), None);
    second_page_fails_once(
        &server,
        page(
            &[no_count.clone(), good.clone(), json!({"id": 7})],
            Some("c3"),
        ),
        page(&[no_count, good], None),
    )
    .await;
    let p = provider_with(&server, |c| c.page_size = 2);
    let q = UsageQuery::new(vec![Window::new(t0(), hours(24))], BTreeSet::new());
    let e = p.usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::Decode { .. }), "{e:?}");
    // Read again, the page is whole: its records count once, the skipped one too.
    let b = p.usage(&q).await.unwrap();
    assert_eq!(b.upstream_requests, 1, "resumes at the failed page");
    assert_eq!(total(&b), 7);
    assert_eq!(
        b.notes,
        ["1 usage records without a usable createdAt or count were skipped"]
    );
}

#[tokio::test]
async fn a_refused_page_size_is_asked_again_with_100_and_kept() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/usage/list"))
        .and(query_param("take", "1000"))
        .respond_with(
            ResponseTemplate::new(422)
                .set_body_json(json!({"message": "take is too large", "code": "BAD_REQUEST"})),
        )
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    let one = page(&[rec("r1", ms(hours(2)), 8, Some("b"), None)], None);
    list_answer(&server, None, one, 1).await;
    Mock::given(path("/v1/bot/list"))
        .and(query_param("take", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"items": [{"id": "b"}]})))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider_with(&server, |_| {});
    let q = UsageQuery::new(vec![Window::new(t0(), hours(24))], BTreeSet::new());
    let b = p.usage(&q).await.unwrap();
    assert_eq!((b.upstream_requests, total(&b)), (2, 8));
    // The source keeps 100: the bot list is asked with it at once.
    assert_eq!(p.agents().await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_bad_request_after_the_page_size_was_accepted_is_not_a_refusal() {
    let server = MockServer::start().await;
    // Any request with take=100 would be a wrong fallback.
    Mock::given(path("/v1/usage/list"))
        .and(query_param("take", "100"))
        .respond_with(page(&[], None))
        .with_priority(1)
        .expect(0)
        .mount(&server)
        .await;
    let first = page(
        &[
            rec("r2", ms(hours(5)), 1, Some("b"), None),
            rec("r1", ms(hours(-30)), 2, Some("b"), None),
        ],
        Some("c2"),
    );
    list_answer(&server, None, first, 1).await;
    // The saved cursor is no longer accepted.
    let stale = ResponseTemplate::new(400)
        .set_body_json(json!({"message": "Invalid cursor", "code": "BAD_REQUEST"}));
    list_answer(&server, Some("c2"), stale, 1).await;
    let p = provider_with(&server, |_| {});
    let q = UsageQuery::new(vec![Window::new(t0(), hours(24))], BTreeSet::new());
    assert_eq!(total(&p.usage(&q).await.unwrap()), 1);
    let older = UsageQuery::new(vec![Window::new(hours(-48), hours(24))], BTreeSet::new());
    let e = p.usage(&older).await.unwrap_err();
    assert!(matches!(e, ProviderError::Config { .. }), "{e:?}");
}

#[tokio::test]
async fn range_mode_asks_per_bot_and_window_with_inclusive_millisecond_bounds() {
    let server = MockServer::start().await;
    // The fixture's page carries a cursor, so it is asked for again; the repeated cursor ends
    // the listing.
    bot_list(&server, 2).await;
    let bots = [(BOT, [11_u64, 0]), ("cmb1y7r0d000009jv2sales01", [7, 5])];
    for (bot, tokens) in bots {
        for (h, tok) in tokens.iter().enumerate() {
            let h = i64::try_from(h).unwrap();
            Mock::given(method("GET"))
                .and(path(format!("/v1/bot/{bot}/usage/fetch")))
                .and(bearer_token(TOKEN))
                .and(query_param(
                    "from",
                    hours(h).format("%Y-%m-%dT%H:%M:%S.000Z").to_string(),
                ))
                .and(query_param(
                    "to",
                    hours(h).format("%Y-%m-%dT%H:59:59.999Z").to_string(),
                ))
                .respond_with(
                    ResponseTemplate::new(200)
                        .set_body_json(json!({"tokens": tok, "conversations": 1, "messages": 2})),
                )
                .expect(1)
                .mount(&server)
                .await;
        }
    }
    Mock::given(path("/v1/usage/list"))
        .respond_with(page(&[], None))
        .expect(0)
        .mount(&server)
        .await;
    let p = provider_with(&server, |c| c.max_concurrency = 2);
    let windows = vec![Window::new(t0(), hours(1)), Window::new(hours(1), hours(2))];
    let mut q = UsageQuery::new(windows.clone(), dims(&[Dimension::Agent]));
    q.agents = set(&[BOT, "cmb1y7r0d000009jv2sales01"]);
    let b = p.usage(&q).await.unwrap();
    assert_eq!(b.upstream_requests, 6);
    assert_eq!(b.points.len(), 3, "zero windows give no point");
    let sales: Vec<_> = b
        .points
        .iter()
        .filter(|p| p.key.agent.as_deref() == Some("cmb1y7r0d000009jv2sales01"))
        .collect();
    assert_eq!(sales.len(), 2);
    assert_eq!(
        sales[0].agent_name.as_deref(),
        Some("sales"),
        "alias stands in for a name"
    );
    assert_eq!(sales[1].window, windows[1]);
    assert_eq!(
        sales[1].counters,
        Counters {
            input: 0,
            output: 0,
            other: 5
        }
    );
    assert_eq!(total(&b), 23);
}

#[tokio::test]
async fn range_mode_reports_an_unknown_bot_as_a_note() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/bot/gone/usage/fetch"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(json!({"message": "Bot not found", "code": "NOT_FOUND"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/v1/bot/b1/usage/fetch"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"tokens": 9})))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider_with(&server, |_| {});
    let mut q = UsageQuery::new(vec![Window::new(t0(), hours(1))], BTreeSet::new());
    q.agents = set(&["gone", "b1"]);
    let b = p.usage(&q).await.unwrap();
    assert_eq!(total(&b), 9);
    assert_eq!(b.notes.len(), 1);
    assert!(b.notes[0].contains("gone"), "{:?}", b.notes);
}

#[tokio::test]
async fn failed_discovery_costs_only_the_names() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/bot/list"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(json!({"message": "Not authorized", "code": "NOT_AUTHORIZED"})),
        )
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(path("/v1/usage/list"))
        .respond_with(page(&[rec("r1", ms(hours(1)), 5, Some("b1"), None)], None))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider_with(&server, |_| {});
    let q = UsageQuery::new(
        vec![Window::new(t0(), hours(24))],
        dims(&[Dimension::Agent]),
    );
    let b = p.usage(&q).await.unwrap();
    assert_eq!((b.upstream_requests, total(&b)), (2, 5));
    assert_eq!(b.points[0].key.agent.as_deref(), Some("b1"));
    assert_eq!(b.points[0].agent_name, None);
    assert!(
        b.notes.iter().any(|n| n.contains("bot names")),
        "{:?}",
        b.notes
    );
    assert!(matches!(
        p.agents().await,
        Err(ProviderError::Forbidden { .. })
    ));
}

#[tokio::test]
async fn filters_are_sent_and_applied_again_when_the_server_ignores_them() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/usage/list"))
        .and(query_param("botId", "b1"))
        .and(query_param("contactId", "alice"))
        .and(query_param("type", "BASE"))
        .respond_with(page(&[
                rec("r6", ms(hours(6)), 1, Some("b1"), Some("alice")),
                rec("r5", ms(hours(5)), 2, Some("b2"), Some("alice")),
                rec("r4", ms(hours(4)), 4, Some("b1"), Some("bob")),
                rec("r3", ms(hours(3)), 8, None, Some("alice")),
                rec("r2", ms(hours(2)), 16, Some("b1"), None),
                json!({"id": "r1", "type": "EMBEDDING", "count": 32, "createdAt": ms(hours(1)), "botId": "b1", "contactId": "alice"}),
            ],
            None,
        ))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider_with(&server, |_| {});
    let mut q = UsageQuery::new(
        vec![Window::new(t0(), hours(24))],
        dims(&[Dimension::User, Dimension::UsageType]),
    );
    q.agents = set(&["b1"]);
    q.users = set(&["alice"]);
    let b = p.usage(&q).await.unwrap();
    assert_eq!(total(&b), 1, "only b1 + alice + BASE");
    assert_eq!(b.points[0].key.user.as_deref(), Some("alice"));
    assert_eq!(b.points[0].key.usage_type.as_deref(), Some("BASE"));
    assert_eq!(b.points[0].key.agent, None, "agent not kept");
    assert!(
        b.notes.iter().any(|n| n.contains("other than BASE")),
        "{:?}",
        b.notes
    );
}

#[tokio::test]
async fn record_types_all_counts_every_type_and_never_uses_range_mode() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/usage/list"))
        .and(query_param_is_missing("type"))
        .and(query_param("botId", "b1"))
        .respond_with(page(&[
                rec("r2", ms(hours(2)), 16, Some("b1"), None),
                json!({"id": "r1", "type": "EMBEDDING", "count": 32, "createdAt": ms(hours(1)), "botId": "b1"}),
            ],
            None,
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/v1/bot/b1/usage/fetch"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let p = provider_with(&server, |c| c.record_types = RecordTypes::All);
    let mut q = UsageQuery::new(vec![Window::new(t0(), hours(24))], BTreeSet::new());
    q.agents = set(&["b1"]);
    let b = p.usage(&q).await.unwrap();
    assert_eq!(total(&b), 48);
}

#[tokio::test]
async fn unit_comes_from_config_and_never_touches_input_or_output() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/bot/b1/usage/fetch"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"tokens": 40})))
        .mount(&server)
        .await;
    for unit in [Unit::Credits, Unit::Tokens] {
        let p = provider_with(&server, |c| c.unit = unit);
        let mut q = UsageQuery::new(vec![Window::new(t0(), hours(1))], BTreeSet::new());
        q.agents = set(&["b1"]);
        let b = p.usage(&q).await.unwrap();
        assert_eq!(b.points.len(), 1);
        assert_eq!(b.points[0].unit, unit);
        assert_eq!(
            b.points[0].counters,
            Counters {
                input: 0,
                output: 0,
                other: 40
            }
        );
    }
}

/// Serves a first page (r4 at 4 h, r3 at 3 h, cursor `c2`) once, then `failure` for the first
/// request of page `c2` and `retry` for the next one.
async fn second_page_fails_once(
    server: &MockServer,
    failure: ResponseTemplate,
    retry: ResponseTemplate,
) {
    let first = page(
        &[
            rec("r4", ms(hours(4)), 1, Some("b"), None),
            rec("r3", ms(hours(3)), 2, Some("b"), None),
        ],
        Some("c2"),
    );
    list_answer(server, None, first, 1).await;
    Mock::given(path("/v1/usage/list"))
        .and(query_param("cursor", "c2"))
        .respond_with(failure)
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(server)
        .await;
    Mock::given(path("/v1/usage/list"))
        .and(query_param("cursor", "c2"))
        .respond_with(retry)
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn a_failed_page_keeps_the_pages_before_it() {
    let server = MockServer::start().await;
    second_page_fails_once(
        &server,
        ResponseTemplate::new(500)
            .set_body_json(json!({"message": "boom", "code": "INTERNAL_SERVER_ERROR"})),
        page(&[rec("r2", ms(hours(2)), 4, Some("b"), None)], None),
    )
    .await;
    let p = provider_with(&server, |c| c.page_size = 2);
    let q = UsageQuery::new(vec![Window::new(t0(), hours(24))], BTreeSet::new());
    let sent = usage_core::requests::Counter::default();
    let e = sent.scope(p.usage(&q)).await.unwrap_err();
    assert!(
        matches!(e, ProviderError::Upstream { status: 500, .. }),
        "{e:?}"
    );
    assert!(e.is_transient());
    // The failed call still reports what it sent (for `upstream_requests_total`).
    let received = server.received_requests().await.unwrap().len() as u64;
    assert_eq!((sent.get(), received), (2, 2));
    let b = p.usage(&q).await.unwrap();
    assert_eq!(
        (b.upstream_requests, total(&b)),
        (1, 7),
        "continues at the failed page"
    );
}

#[tokio::test]
async fn a_page_that_fails_part_way_keeps_none_of_its_records() {
    // The failing page's first record is older than the next page would be (out of order):
    // kept, it would make the scan look complete down to it.
    let server = MockServer::start().await;
    second_page_fails_once(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({
            "items": [rec("r1", ms(hours(1)), 8, Some("b"), None), 1],
            "cursor": "c3"
        })),
        page(
            &[
                rec("r2", ms(hours(2)), 4, Some("b"), None),
                rec("r1", ms(hours(1)), 8, Some("b"), None),
            ],
            None,
        ),
    )
    .await;
    let p = provider_with(&server, |c| c.page_size = 2);
    let from = hours(1) + chrono::Duration::milliseconds(1);
    let q = UsageQuery::new(vec![Window::new(from, hours(24))], BTreeSet::new());
    let e = p.usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::Decode { .. }), "{e:?}");
    let b = p.usage(&q).await.unwrap();
    assert_eq!(
        (b.upstream_requests, total(&b)),
        (1, 7),
        "reads the failed page again and counts r2"
    );
}

#[tokio::test]
async fn discovery_follows_cursors_and_is_cached() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/bot/list"))
        .and(query_param_is_missing("cursor"))
        .and(query_param("take", "2"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"items": [{"id": "b1", "name": "One"}, {"id": "b2", "alias": "two"}], "cursor": "b2"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/v1/bot/list"))
        .and(query_param("cursor", "b2"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"items": [{"id": "b3"}, {"name": "no id"}], "cursor": "b3"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/v1/bot/list"))
        .and(query_param("cursor", "b3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"items": []})))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider_with(&server, |c| c.page_size = 2);
    let a = p.agents().await.unwrap();
    let ids: Vec<_> = a
        .iter()
        .map(|a| (a.id.as_str(), a.name.as_deref()))
        .collect();
    assert_eq!(
        ids,
        [("b1", Some("One")), ("b2", Some("two")), ("b3", None)]
    );
    assert_eq!(p.agents().await.unwrap(), a, "cached");
}

#[tokio::test]
async fn a_fixed_bot_list_needs_no_discovery_and_bounds_the_source() {
    let server = MockServer::start().await;
    bot_list(&server, 0).await;
    Mock::given(path("/v1/bot/b1/usage/fetch"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"tokens": 3})))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider_with(&server, |c| c.agents = Some(vec!["b1".into()]));
    let a = p.agents().await.unwrap();
    assert_eq!(a.len(), 1);
    let q = UsageQuery::new(vec![Window::new(t0(), hours(1))], dims(&[Dimension::Agent]));
    let b = p.usage(&q).await.unwrap();
    assert_eq!((b.upstream_requests, total(&b)), (1, 3));
    let mut other = q.clone();
    other.agents = set(&["b2"]);
    let b = p.usage(&other).await.unwrap();
    assert_eq!(
        (b.upstream_requests, b.points.len()),
        (0, 0),
        "outside the configured bots"
    );
}

async fn error_for(status: u16, body: Value, headers: &[(&str, &str)]) -> ProviderError {
    let server = MockServer::start().await;
    let mut t = ResponseTemplate::new(status).set_body_json(body);
    for (k, v) in headers {
        t = t.insert_header(*k, *v);
    }
    Mock::given(path("/v1/usage/list"))
        .respond_with(t)
        .expect(1)
        .mount(&server)
        .await;
    let p = provider_with(&server, |_| {});
    let q = UsageQuery::new(vec![Window::new(t0(), hours(1))], BTreeSet::new());
    let e = p.usage(&q).await.unwrap_err();
    assert!(!format!("{e} {e:?}").contains(TOKEN));
    e
}

#[tokio::test]
async fn vendor_errors_map_to_semantic_variants() {
    let e = error_for(
        401,
        json!({"message": "Not authenticated", "code": "NOT_AUTHENTICATED"}),
        &[],
    )
    .await;
    assert!(
        matches!(&e, ProviderError::Unauthenticated { message, .. } if message == "Not authenticated"),
        "{e:?}"
    );
    let e = error_for(
        429,
        json!({"message": "Too many requests", "code": "TOO_MANY_REQUESTS"}),
        &[("retry-after", "2")],
    )
    .await;
    assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
    assert!(e.is_transient());
    let e = error_for(
        429,
        json!({"message": "Plan limits reached", "code": "LIMITS_REACHED"}),
        &[],
    )
    .await;
    assert!(matches!(e, ProviderError::QuotaExceeded { .. }), "{e:?}");
    assert!(!e.is_transient());
    let e = error_for(
        429,
        json!({"success": false, "error": {"code": "TOO_MANY_REQUESTS", "message": "slow down"}}),
        &[("x-ratelimit-reset", "4")],
    )
    .await;
    assert_eq!(e.retry_after(), Some(Duration::from_secs(4)));
    let e = error_for(
        403,
        json!({"message": "Not authorized", "code": "NOT_AUTHORIZED"}),
        &[],
    )
    .await;
    assert!(matches!(e, ProviderError::Forbidden { .. }), "{e:?}");
    let e = error_for(503, json!({}), &[]).await;
    assert!(
        matches!(e, ProviderError::Upstream { status: 503, .. }),
        "{e:?}"
    );
}

#[tokio::test]
async fn bad_bodies_are_decode_errors_and_slow_answers_time_out() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/usage/list"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"items\": [{\"id\""))
        .mount(&server)
        .await;
    Mock::given(path("/v1/bot/slow/usage/fetch"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"tokens": 1}))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    Mock::given(path("/v1/bot/odd/usage/fetch"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"tokens": "many"})))
        .mount(&server)
        .await;
    let mut c = Config::new(TOKEN);
    c.base_url = server.uri().parse().unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let p = ChatbotkitProvider::new("cbk", c, http).unwrap();
    let q = UsageQuery::new(vec![Window::new(t0(), hours(1))], BTreeSet::new());
    let e = p.usage(&q).await.unwrap_err();
    assert!(matches!(e, ProviderError::Decode { .. }), "{e:?}");
    let mut slow = q.clone();
    slow.agents = set(&["slow"]);
    let e = p.usage(&slow).await.unwrap_err();
    assert!(matches!(e, ProviderError::Timeout { .. }), "{e:?}");
    let mut odd = q.clone();
    odd.agents = set(&["odd"]);
    let e = p.usage(&odd).await.unwrap_err();
    assert!(matches!(e, ProviderError::Decode { .. }), "{e:?}");
}

#[tokio::test]
async fn unreachable_vendor_is_a_transport_error() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = Config::new(TOKEN);
    c.base_url = format!("http://127.0.0.1:{port}").parse().unwrap();
    let p = ChatbotkitProvider::new("cbk", c, reqwest::Client::new()).unwrap();
    let e = p.agents().await.unwrap_err();
    assert!(matches!(e, ProviderError::Transport { .. }), "{e:?}");
}

#[tokio::test]
async fn a_spent_rate_limit_budget_stops_requests_until_reset() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/bot/b1/usage/fetch"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"tokens": 1}))
                .insert_header("x-ratelimit-limit", "10")
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", "30"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let p = provider_with(&server, |_| {});
    let mut q = UsageQuery::new(vec![Window::new(t0(), hours(1))], BTreeSet::new());
    q.agents = set(&["b1"]);
    assert_eq!(total(&p.usage(&q).await.unwrap()), 1);
    let e = p.usage(&q).await.unwrap_err();
    let wait = e.retry_after().unwrap();
    assert!(
        wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
}

#[tokio::test]
async fn a_cached_scan_answers_range_mode_queries_too() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/usage/list"))
        .respond_with(page(
            &[rec("r1", ms(hours(1)), 5, Some("b1"), Some("alice"))],
            None,
        ))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(path("/v1/bot/b1/usage/fetch"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let p = provider_with(&server, |_| {});
    let by_user = UsageQuery::new(vec![Window::new(t0(), hours(24))], dims(&[Dimension::User]));
    assert_eq!(total(&p.usage(&by_user).await.unwrap()), 5);
    let mut per_bot = UsageQuery::new(vec![Window::new(t0(), hours(24))], BTreeSet::new());
    per_bot.agents = set(&["b1"]);
    let b = p.usage(&per_bot).await.unwrap();
    assert_eq!((b.upstream_requests, total(&b)), (0, 5));
}

/// Mounts a two-page list: `first` (no cursor sent) pointing at `second` (cursor `next`).
async fn two_pages(server: &MockServer, first: &[Value], next: &str, second: &[Value]) {
    Mock::given(path("/v1/usage/list"))
        .and(query_param_is_missing("cursor"))
        .respond_with(page(first, Some(next)))
        .mount(server)
        .await;
    Mock::given(path("/v1/usage/list"))
        .and(query_param("cursor", next))
        .respond_with(page(second, Some(&format!("{next}-end"))))
        .mount(server)
        .await;
}

#[tokio::test]
async fn the_open_part_is_re_read_after_open_ttl_and_the_closed_part_is_kept() {
    let server = MockServer::start().await;
    let now = Utc::now();
    let ago = |m: i64| ms(now - chrono::Duration::minutes(m));
    two_pages(
        &server,
        &[
            rec("a", ago(10), 1, Some("b"), None),
            rec("b", ago(90), 2, Some("b"), None),
        ],
        "c2",
        &[
            rec("c", ago(180), 4, Some("b"), None),
            rec("d", ago(240), 16, Some("b"), None),
        ],
    )
    .await;
    let p = provider_with(&server, |c| {
        c.page_size = 2;
        c.open_ttl = Duration::ZERO;
        c.settle = Duration::from_secs(3600);
    });
    let recent = UsageQuery::new(
        vec![Window::new(
            now - chrono::Duration::minutes(210),
            now + chrono::Duration::hours(1),
        )],
        BTreeSet::new(),
    );
    let b = p.usage(&recent).await.unwrap();
    assert_eq!((b.upstream_requests, total(&b)), (2, 7));
    // Upstream changes inside the settle period: a new record, and one gone.
    server.reset().await;
    two_pages(
        &server,
        &[
            rec("e", ago(5), 8, Some("b"), None),
            rec("f", ago(20), 32, Some("b"), None),
        ],
        "x2",
        &[
            rec("b", ago(90), 2, Some("b"), None),
            rec("c", ago(180), 4, Some("b"), None),
        ],
    )
    .await;
    let b = p.usage(&recent).await.unwrap();
    assert_eq!(
        b.upstream_requests, 2,
        "re-read down to the settle edge only"
    );
    assert_eq!(total(&b), 8 + 32 + 2 + 4);
    // A closed window is answered from the cache even with open_ttl = 0.
    let closed = UsageQuery::new(
        vec![Window::new(
            now - chrono::Duration::minutes(210),
            now - chrono::Duration::minutes(120),
        )],
        BTreeSet::new(),
    );
    let b = p.usage(&closed).await.unwrap();
    assert_eq!((b.upstream_requests, total(&b)), (0, 4));
}

#[tokio::test]
async fn closed_ttl_bounds_how_long_a_scan_is_kept() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/usage/list"))
        .respond_with(page(&[rec("r1", ms(hours(1)), 5, Some("b"), None)], None))
        .expect(2)
        .mount(&server)
        .await;
    let p = provider_with(&server, |c| c.closed_ttl = Duration::ZERO);
    let q = UsageQuery::new(vec![Window::new(t0(), hours(24))], BTreeSet::new());
    assert_eq!(p.usage(&q).await.unwrap().upstream_requests, 1);
    assert_eq!(p.usage(&q).await.unwrap().upstream_requests, 1);
}
