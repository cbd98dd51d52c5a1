//! Property test: whatever ChatBotKit answers (mutated fixtures, arbitrary JSON, arbitrary
//! bytes, any status), decoding and mapping never panic or hang; the provider answers points
//! inside the asked windows, or an error.
#![allow(clippy::unwrap_used, reason = "test setup panics on broken fixtures")]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::{
    Config as RunnerConfig, RngAlgorithm, TestCaseError, TestRng, TestRunner,
};
use serde_json::Value;
use usage_core::{Dimension, UsageProvider, UsageQuery, Window};
use usage_provider_chatbotkit::{ChatbotkitProvider, Config};
use wiremock::matchers::any as any_request;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn fixture(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap()
}

/// Arbitrary JSON, biased towards values that confuse lenient decoders.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        "\\PC{0,24}".prop_map(Value::from),
        prop_oneof![
            Just("2024-01-01T00:00:00Z"),
            Just("0001-01-01T00:00:00Z"),
            Just("9999-12-31T23:59:59Z"),
            Just("-1"),
            Just("1e400"),
            Just("18446744073709551616"),
            Just("BASE"),
            Just("cmb1y7r0d000008jv2h6c4wq9"),
            Just("1751022334512"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(m) => m.values().map(count).sum(),
        _ => 0,
    }
}

fn nth<'a>(v: &'a mut Value, target: usize, i: &mut usize) -> Option<&'a mut Value> {
    if *i == target {
        return Some(v);
    }
    *i += 1;
    match v {
        Value::Array(a) => a.iter_mut().find_map(|c| nth(c, target, i)),
        Value::Object(m) => m.values_mut().find_map(|c| nth(c, target, i)),
        _ => None,
    }
}

/// Replaces, removes or multiplies nodes of `base`.
fn mutate(mut base: Value, edits: Vec<(usize, u8, Value)>) -> Value {
    for (at, op, new) in edits {
        let n = count(&base);
        let Some(node) = nth(&mut base, at % n, &mut 0) else {
            continue;
        };
        match (op % 4, node) {
            (2, Value::Object(m)) if !m.is_empty() => {
                let k = m.keys().nth(at % m.len()).cloned().unwrap();
                m.remove(&k);
            }
            (3, Value::Array(a)) if !a.is_empty() => {
                let first = a[0].clone();
                a.extend(std::iter::repeat_n(first, 3));
            }
            (_, node) => *node = new,
        }
    }
    base
}

/// One vendor answer: a status and a body made from a fixture, from nothing, or raw bytes.
fn reply(base: Value) -> impl Strategy<Value = (u16, Vec<u8>)> {
    let status = prop_oneof![
        8 => Just(200u16),
        2 => prop::sample::select(vec![400u16, 401, 403, 404, 409, 422, 500, 502, 503]),
    ];
    let body = prop_oneof![
        6 => prop::collection::vec((any::<usize>(), any::<u8>(), arb_json()), 0..5)
            .prop_map(move |edits| serde_json::to_vec(&mutate(base.clone(), edits)).unwrap()),
        2 => arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ];
    (status, body)
}

/// A path fragment and the status and body answered to requests whose path contains it.
type Route = (&'static str, u16, Vec<u8>);

/// Answers each request with the reply of the first route whose path fragment matches.
#[derive(Clone, Default)]
struct Replies(Arc<Mutex<Vec<Route>>>);

impl Respond for Replies {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let routes = self.0.lock().unwrap();
        let path = request.url.path();
        routes
            .iter()
            .find(|(fragment, _, _)| path.contains(fragment))
            .map_or_else(
                || ResponseTemplate::new(404),
                |(_, status, body)| {
                    ResponseTemplate::new(*status).set_body_raw(body.clone(), "application/json")
                },
            )
    }
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn arbitrary_vendor_answers_never_panic() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(MockServer::start());
    let replies = Replies::default();
    rt.block_on(
        Mock::given(any_request())
            .respond_with(replies.clone())
            .mount(&server),
    );
    let mut records = fixture(include_str!(
        "../../../fixtures/chatbotkit/usage_list_page1.json"
    ));
    // One page (the mock answers every page alike); mutations may still add a cursor.
    records.as_object_mut().unwrap().remove("cursor");
    let mut bots = fixture(include_str!("../../../fixtures/chatbotkit/bot_list.json"));
    bots.as_object_mut().unwrap().remove("cursor");
    let bot_usage = fixture(include_str!("../../../fixtures/chatbotkit/bot_usage.json"));
    let windows = vec![
        Window::new(t("2025-06-27T00:00:00Z"), t("2025-06-28T00:00:00Z")),
        Window::new(t("2025-06-28T00:00:00Z"), t("2025-07-05T00:00:00Z")),
    ];
    let mut runner = TestRunner::new_with_rng(
        RunnerConfig {
            cases: 300,
            failure_persistence: None,
            ..RunnerConfig::default()
        },
        // A fixed seed: the non-vacuity floor below must not depend on the draw.
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    );
    let strategy = (reply(records), reply(bots), reply(bot_usage), 0u8..3);
    let mapped = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(
            &strategy,
            |(records_reply, bots_reply, bot_usage_reply, dims_choice)| {
                *replies.0.lock().unwrap() = vec![
                    ("/usage/list", records_reply.0, records_reply.1),
                    ("/bot/list", bots_reply.0, bots_reply.1),
                    ("/usage/fetch", bot_usage_reply.0, bot_usage_reply.1),
                ];
                let mut config = Config::new("props-token");
                config.base_url = server.uri().parse().unwrap();
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(2))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap();
                let provider = ChatbotkitProvider::new("cbk-props", config, http).unwrap();
                let dims = match dims_choice {
                    0 => BTreeSet::from([Dimension::Agent]),
                    1 => BTreeSet::new(),
                    _ => {
                        BTreeSet::from([Dimension::Agent, Dimension::User, Dimension::Conversation])
                    }
                };
                let query = UsageQuery::new(windows.clone(), dims);
                let (agents, answer) = rt.block_on(async {
                    tokio::time::timeout(Duration::from_secs(10), async {
                        (provider.agents().await, provider.usage(&query).await)
                    })
                    .await
                    .map_err(|_| TestCaseError::fail("the provider hung"))
                })?;
                if let Ok(list) = agents {
                    prop_assert!(list.iter().all(|a| !a.id.is_empty()));
                }
                if let Ok(batch) = answer {
                    for p in &batch.points {
                        prop_assert!(windows.contains(&p.window), "point outside the windows");
                    }
                    if !batch.points.is_empty() {
                        mapped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Ok(())
            },
        )
        .unwrap();
    // Not vacuous: many cases got through decoding into the mapping.
    let mapped = mapped.into_inner();
    assert!(mapped >= 10, "only {mapped} cases produced points");
}
