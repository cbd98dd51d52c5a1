//! DigitalOcean Gen-AI agents as a usage-gateway source (CONTRACTS.md §1).
//!
//! [`DigitaloceanProvider`] answers a query with one `GET /v2/gen-ai/agents/{uuid}/usage` per
//! agent and window, so every bucket is exact. Agents come from the configured list or from
//! `GET /v2/gen-ai/agents` (cached for `discovery_ttl`). Before fanning out it counts the calls
//! a query needs and rejects queries above `max_upstream_calls`, then takes them from the
//! source's [`usage_core::budget::Budget`] (`rate_limit_per_minute`) all at once; each call also
//! takes a concurrency slot (`max_concurrency`). A spent budget answers `RateLimited` with the
//! wait at once rather than waiting past the request deadline.
//!
//! Files: `config.rs` (keys), `client.rs` (HTTP, budget, `parse_error`), `model.rs` (wire
//! types), `error.rs` (private errors → [`usage_core::ProviderError`]), `provider.rs` (the
//! trait implementation and the usage → points mapping).

mod client;
mod config;
mod error;
mod model;
mod provider;

pub use config::{
    Config, DEFAULT_BASE_URL, DEFAULT_DISCOVERY_TTL, DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_UPSTREAM_CALLS, DEFAULT_RATE_LIMIT_PER_MINUTE,
};
pub use provider::{
    DigitaloceanProvider, INPUT_USAGE_TYPE, LOG_INSIGHTS_PREFIX, OUTPUT_USAGE_TYPE,
    UNSPECIFIED_USAGE_TYPE,
};

/// This provider's name: `provider = "digitalocean"` in `[[sources]]`.
pub const KIND: usage_core::ProviderKind = usage_core::ProviderKind::new("digitalocean");

/// This provider's entry in the gateway's registry.
pub const DESCRIPTOR: usage_core::plugin::ProviderDescriptor =
    usage_core::plugin::ProviderDescriptor {
        kind: KIND,
        description: "DigitalOcean Gen-AI agents: token usage per agent (GET /v2/gen-ai/agents/{uuid}/usage), agents discovered or listed",
        billing: usage_core::plugin::Billing {
            provider_name: "DigitalOcean",
            service_name: "DigitalOcean Gen AI Platform",
        },
        defaults: config::SETTINGS,
        build: |ctx, table| usage_core::plugin::build_with(ctx, table, DigitaloceanProvider::new),
    };
