//! Property test: whatever Kibana answers (mutated fixtures, arbitrary JSON, arbitrary
//! bytes, any status), decoding and mapping never panic or hang; the provider answers points
//! inside the asked windows, or an error.
#![allow(clippy::unwrap_used, reason = "test setup panics on broken fixtures")]

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use usage_core::vendor_fuzz::{Replies, fixture, reply, runner};
use usage_core::{Dimension, UsageProvider, UsageQuery, Window};
use usage_provider_kibana::{Config, KibanaProvider};

/// Strings that mean something to kibana (the fuzz strategies mix them in).
const VENDOR: &[&str] = &[
    "2025-03-01T00:00:00Z",
    "2025-03-02T14:30:00.000Z",
    "high_input_tokens",
    "elastic-ai-agent",
];

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
    let replies = Replies::default();
    let server = rt.block_on(replies.serve());
    let mut consumption = fixture(include_str!(
        "../../../fixtures/kibana/consumption_page1.json"
    ));
    // One page (the mock answers every page alike); mutations may still add a cursor.
    consumption.as_object_mut().unwrap().remove("search_after");
    let agents = fixture(include_str!("../../../fixtures/kibana/agents_list.json"));
    let windows = vec![
        Window::new(t("2025-03-01T00:00:00Z"), t("2025-03-02T00:00:00Z")),
        Window::new(t("2025-03-02T00:00:00Z"), t("2025-03-05T00:00:00Z")),
    ];
    let mut runner = runner(300);
    let strategy = (
        reply(consumption, VENDOR),
        reply(agents, VENDOR),
        any::<bool>(),
    );
    let mapped = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&strategy, |(consumption_reply, agents_reply, by_user)| {
            replies.set(vec![
                ("/consumption", consumption_reply.0, consumption_reply.1),
                ("/agents", agents_reply.0, agents_reply.1),
            ]);
            let config = Config {
                page_size: 20,
                ..Config::with_api_key(server.uri().parse().unwrap(), "props-key")
            };
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let provider = KibanaProvider::new("kb-props", config, http).unwrap();
            let mut dims = BTreeSet::from([Dimension::Agent]);
            if by_user {
                dims.extend([Dimension::User, Dimension::Conversation]);
            }
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
        })
        .unwrap();
    // Not vacuous: many cases got through decoding into the mapping.
    let mapped = mapped.into_inner();
    assert!(mapped >= 10, "only {mapped} cases produced points");
}
