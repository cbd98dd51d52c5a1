//! Property test: whatever ChatBotKit answers (mutated fixtures, arbitrary JSON, arbitrary
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
use usage_provider_chatbotkit::{ChatbotkitProvider, Config};

/// Strings that mean something to chatbotkit (the fuzz strategies mix them in).
const VENDOR: &[&str] = &["BASE", "cmb1y7r0d000008jv2h6c4wq9", "1751022334512"];

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
    let mut runner = runner(300);
    let strategy = (
        reply(records, VENDOR),
        reply(bots, VENDOR),
        reply(bot_usage, VENDOR),
        0u8..3,
    );
    let mapped = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(
            &strategy,
            |(records_reply, bots_reply, bot_usage_reply, dims_choice)| {
                replies.set(vec![
                    ("/usage/list", records_reply.0, records_reply.1),
                    ("/bot/list", bots_reply.0, bots_reply.1),
                    ("/usage/fetch", bot_usage_reply.0, bot_usage_reply.1),
                ]);
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
