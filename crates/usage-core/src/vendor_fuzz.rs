//! The vendor fuzz harness every provider's property test shares (feature `test-util`): whatever
//! a vendor answers (mutated fixtures, arbitrary JSON, arbitrary bytes, any status), decoding and
//! mapping must never panic or hang, and a provider answers points inside the asked windows or an
//! error. A provider's `tests/props.rs` supplies its fixtures, its vendor's telling strings and
//! the routes; the strategies, the mutations and the scripted vendor live here.
#![allow(clippy::missing_panics_doc, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestRng, TestRunner};
use serde_json::Value;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Parses a fixture.
pub fn fixture(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap()
}

/// A runner of `cases` cases with a fixed seed (a test's non-vacuity floor must not depend on
/// the draw) and no failure file.
pub fn runner(cases: u32) -> TestRunner {
    TestRunner::new_with_rng(
        RunnerConfig {
            cases,
            failure_persistence: None,
            ..RunnerConfig::default()
        },
        TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    )
}

/// Arbitrary JSON, biased towards values that confuse lenient decoders.
/// `vendor` adds strings that mean something to the vendor at hand (usage types, ids, links).
pub fn arb_json(vendor: &'static [&'static str]) -> impl Strategy<Value = Value> {
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
        ]
        .prop_map(Value::from),
        prop::sample::select(vendor).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

pub fn count(v: &Value) -> usize {
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
pub fn mutate(mut base: Value, edits: Vec<(usize, u8, Value)>) -> Value {
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

/// One vendor answer: a status and a body made from a fixture (`base`), from nothing, or raw
/// bytes; `vendor` as for [`arb_json`].
pub fn reply(
    base: Value,
    vendor: &'static [&'static str],
) -> impl Strategy<Value = (u16, Vec<u8>)> {
    let status = prop_oneof![
        8 => Just(200u16),
        2 => prop::sample::select(vec![400u16, 401, 403, 404, 409, 422, 500, 502, 503]),
    ];
    let body = prop_oneof![
        6 => prop::collection::vec((any::<usize>(), any::<u8>(), arb_json(vendor)), 0..5)
            .prop_map(move |edits| serde_json::to_vec(&mutate(base.clone(), edits)).unwrap()),
        2 => arb_json(vendor).prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ];
    (status, body)
}

/// A path fragment and the status and body answered to requests whose path contains it.
pub type Route = (&'static str, u16, Vec<u8>);

/// Answers each request with the reply of the first route whose path fragment matches.
#[derive(Clone, Default)]
pub struct Replies(Arc<Mutex<Vec<Route>>>);

impl Replies {
    /// Answers with `routes` from now on.
    pub fn set(&self, routes: Vec<Route>) {
        *self.0.lock().unwrap() = routes;
    }

    /// A mock server answering every request from these replies.
    pub async fn serve(&self) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(wiremock::matchers::any())
            .respond_with(self.clone())
            .mount(&server)
            .await;
        server
    }
}

impl std::fmt::Debug for Replies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replies").finish_non_exhaustive()
    }
}

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
