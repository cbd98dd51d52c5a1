//! Kibana Agent Builder as a usage-gateway source.
//!
//! Kibana reports consumption per conversation: lifetime input/output token totals, with no time
//! filter (CONTRACTS.md §2). [`KibanaProvider`] pages `POST [/s/{space}]/api/agent_builder/agents/{id}/consumption`
//! sorted by `updated_at desc` back to the start of the asked range, places each conversation's
//! totals at its `updated_at` (attribution `conversation`), and keeps the scan per agent so that
//! later queries inside the scanned range send nothing.
//!
//! Every request first passes the source's [`usage_core::budget::Budget`]:
//! `rate_limit_per_minute` (none by default; Kibana documents no limit) and `max_concurrency`
//! (default 4, also the number of agents one call scans at once).

mod client;
mod config;
mod error;
mod model;
mod provider;
mod scan;

pub use config::{Config, DEFAULT_MAX_CONCURRENCY};
pub use provider::KibanaProvider;

/// This provider's name: `provider = "kibana"` in `[[sources]]`.
pub const KIND: usage_core::ProviderKind = usage_core::ProviderKind::new("kibana");

/// This provider's entry in the gateway's registry.
pub const DESCRIPTOR: usage_core::plugin::ProviderDescriptor =
    usage_core::plugin::ProviderDescriptor {
        kind: KIND,
        description: "Kibana Agent Builder: per-conversation token totals of a space's agents (consumption API), placed at the conversation's last update",
        billing: usage_core::plugin::Billing {
            provider_name: "Elastic",
            service_name: "Kibana Agent Builder",
        },
        defaults: config::SETTINGS,
        build: |ctx, table| usage_core::plugin::build_with(ctx, table, KibanaProvider::new),
    };
