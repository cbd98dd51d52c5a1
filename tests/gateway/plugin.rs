//! The plugin seam: a provider that lives outside the gateway's crates (here, in this test crate)
//! joins the gateway with one registration line, and is built from `[[sources]]`, accepted by the
//! `provider` filter, listed by `GET /v1/sources` and named in the OpenAPI document.

use std::sync::Arc;

use actix_web::web;
use chrono::Duration;
use usage_core::plugin::{ProviderDescriptor, SettingDefaults, parse_keys};
use usage_core::test_util::{StaticEvent, StaticProvider};
use usage_core::{Dimension, ProviderKind};
use usage_gateway::config::Config;
use usage_gateway::registry::Registry;
use usage_gateway::state::AppState;

use crate::common::{SECRET, config_text, get, json_of, t0, token};

/// A provider of this crate: `tokens_per_day` input tokens on each of four days for `agent`.
mod fake {
    use super::*;

    pub const KIND: ProviderKind = ProviderKind::new("fake");

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Keys {
        agent: String,
        tokens_per_day: u64,
    }

    pub const DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
        kind: KIND,
        description: "A test provider: fixed tokens per day",
        billing: usage_core::plugin::Billing {
            provider_name: "Test Vendor",
            service_name: "Test Service",
        },
        // It sends no requests: none of the common settings but the ones every source has.
        defaults: SettingDefaults {
            rate_limit_per_minute: None,
            max_concurrency: 1,
            discovery_ttl: None,
            open_ttl: None,
            closed_ttl: None,
            settle: None,
        },
        build: |ctx, table| {
            let keys: Keys = parse_keys(table)?;
            let events = (0..4).map(|d| {
                StaticEvent::tokens(
                    t0() + Duration::days(d),
                    &keys.agent,
                    None,
                    keys.tokens_per_day,
                    0,
                )
            });
            Ok(Arc::new(
                StaticProvider::new(&ctx.name)
                    .with_kind(KIND)
                    .with_dimensions(&[Dimension::Agent], &[Dimension::Agent])
                    .with_events(events),
            ))
        },
    };
}

/// The shared test config with only its first access rule (`sub: admin` sees every source;
/// the others name the shared harness's sources) and `source`.
fn config(source: &str) -> Config {
    let shared = config_text("2s");
    let second_rule = shared
        .match_indices("[[access]]")
        .nth(1)
        .map_or(shared.len(), |(i, _)| i);
    let text = format!("{}{source}", &shared[..second_rule]);
    Config::parse(&text, &|k| (k == "SECRET").then(|| SECRET.to_owned())).unwrap()
}

#[actix_web::test]
async fn a_provider_from_outside_the_gateway_is_one_line_away() {
    let config = config(
        "[[sources]]\nname = \"f\"\nprovider = \"fake\"\nagent = \"x\"\ntokens_per_day = 7\n",
    );
    // The one line.
    let registry = Registry::builtin().with(fake::DESCRIPTOR);
    let specs = registry.build_providers(&config).unwrap();
    let state = web::Data::new(AppState::with_registry(config, specs, registry).unwrap());
    let app = crate::common::app_of(state.clone(), true).await;
    let admin = token("admin");

    let (status, _, body) = get(
        &app,
        "/v1/usage?start=2026-10-01&end=2026-10-05&provider=fake",
        Some(&admin),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v = json_of(&body);
    assert_eq!(v["totals"][0]["input_tokens"], 28);
    assert_eq!(v["sources"][0]["provider"], "fake");
    assert_eq!(v["rows"][0]["agent"], "x");

    let (status, _, body) = get(&app, "/v1/sources", Some(&admin), &[]).await;
    assert_eq!(status, 200);
    let providers = json_of(&body)["providers"].clone();
    assert_eq!(
        providers[5],
        serde_json::json!({"provider": "fake", "description": "A test provider: fixed tokens per day"})
    );

    let (_, _, body) = get(&app, "/openapi.json", None, &[]).await;
    let doc = json_of(&body);
    let kinds = &doc["components"]["schemas"]["ProviderKind"]["enum"];
    assert_eq!(
        kinds,
        &serde_json::json!([
            "digitalocean",
            "kibana",
            "chatbotkit",
            "openai",
            "anthropic",
            "fake"
        ])
    );
    assert!(
        doc["components"]["schemas"]["ProviderList"]["pattern"]
            .as_str()
            .unwrap()
            .contains("|fake")
    );

    // A provider name no registered provider has is named with the registered ones.
    let (status, _, body) = get(&app, "/v1/usage?provider=fak", Some(&admin), &[]).await;
    assert_eq!(status, 400);
    assert_eq!(
        json_of(&body)["errors"][0]["message"],
        "unknown provider `fak`; expected one of digitalocean, kibana, chatbotkit, openai, anthropic, fake"
    );
}

#[actix_web::test]
async fn configuration_mistakes_name_their_key_path() {
    let bad_own_key = config(
        "[[sources]]\nname = \"f\"\nprovider = \"fake\"\nagent = \"x\"\ntokens_per_day = \"many\"\n",
    );
    // Without the registration the provider is unknown, and the message lists the known ones.
    let e = Registry::builtin()
        .build_providers(&bad_own_key)
        .unwrap_err();
    assert_eq!(e.errors[0].0, "sources[0].provider");
    assert_eq!(
        e.errors[0].1,
        "unknown provider `fake`; expected one of digitalocean, kibana, chatbotkit, openai, anthropic"
    );
    // With it, the provider's own keys are checked with their path.
    let registry = Registry::builtin().with(fake::DESCRIPTOR);
    let e = registry.build_providers(&bad_own_key).unwrap_err();
    assert_eq!(e.errors[0].0, "sources[0].tokens_per_day");
    // Common settings are read by the gateway for every provider: one it has no use for, or a
    // zero count, is named at its path.
    let unused = config(
        "[[sources]]\nname = \"f\"\nprovider = \"fake\"\nagent = \"x\"\ntokens_per_day = 1\n\
         open_ttl = \"1m\"\nmax_concurrency = 0\n",
    );
    let e = registry.build_providers(&unused).unwrap_err();
    assert_eq!(
        e.errors,
        [
            (
                "sources[0].open_ttl".to_owned(),
                "provider `fake` has no `open_ttl` setting".to_owned()
            ),
            (
                "sources[0].max_concurrency".to_owned(),
                "must be at least 1".to_owned()
            ),
        ]
    );
}
