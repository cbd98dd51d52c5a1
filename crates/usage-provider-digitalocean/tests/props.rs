//! Property test: whatever DigitalOcean answers (mutated fixtures, arbitrary JSON, arbitrary
//! bytes, any status), decoding and mapping never panic or hang; the provider answers points
//! inside the asked windows, or an error.
#![allow(clippy::unwrap_used, reason = "test setup panics on broken fixtures")]

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use secrecy::SecretString;
use usage_core::vendor_fuzz::{Replies, fixture, reply, runner};
use usage_core::{Dimension, UsageProvider, UsageQuery, Window};
use usage_provider_digitalocean::{Config, DigitaloceanProvider};

/// Strings that mean something to digitalocean (the fuzz strategies mix them in).
const VENDOR: &[&str] = &[
    "INPUT",
    "OUTPUT",
    "log_insights:INPUT",
    "http://127.0.0.1:1/v2/gen-ai/agents?page=2",
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
    let usage = fixture(include_str!(
        "../../../fixtures/digitalocean/usage_mixed_types.json"
    ));
    // One page (the mock answers every page alike, so a `next` link would loop; mutations may
    // still add one).
    let mut agents = fixture(
        &include_str!("../../../fixtures/digitalocean/agents_page1.json")
            .replace("{{BASE}}", &server.uri()),
    );
    agents.as_object_mut().unwrap().remove("links");
    let windows = vec![
        Window::new(t("2024-01-01T00:00:00Z"), t("2024-01-02T00:00:00Z")),
        Window::new(t("2024-01-02T00:00:00Z"), t("2024-02-01T00:00:00Z")),
    ];
    let mut runner = runner(300);
    let strategy = (reply(usage, VENDOR), reply(agents, VENDOR), any::<bool>());
    let mapped = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&strategy, |(usage_reply, agents_reply, by_type)| {
            replies.set(vec![
                ("/usage", usage_reply.0, usage_reply.1),
                ("/agents", agents_reply.0, agents_reply.1),
            ]);
            let mut config = Config::new(SecretString::from("props-token"));
            config.base_url = server.uri().parse().unwrap();
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let provider = DigitaloceanProvider::new("do-props", config, http).unwrap();
            let mut dims = BTreeSet::from([Dimension::Agent]);
            if by_type {
                dims.insert(Dimension::UsageType);
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
