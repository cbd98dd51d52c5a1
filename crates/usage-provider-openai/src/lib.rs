//! OpenAI organization usage as a usage-gateway source (CONTRACTS-openai-anthropic.md part A).
//!
//! [`OpenaiProvider`] reads the Administration API's usage endpoints
//! (`GET /v1/organization/usage/<endpoint>`, admin key) in UTC buckets of `1d`, `1h` or `1m`,
//! planned by [`usage_core::buckets::BucketWidth::plan`]: each window in the coarsest buckets
//! that fit inside it, finer ones at its edges, so that each bucket lies inside one window and
//! the answer is exact. It asks the vendor to group by exactly the dimensions a query keeps
//! (`group_by[]=project_id|user_id|model`), applies the query's filters upstream
//! (`project_ids[]`, `user_ids[]`, `models[]`), and maps every result row to points through one
//! table of endpoints ([`ENDPOINTS`]) — agent = project, usage type = the kind of usage, units
//! other than tokens (images, characters, seconds, sessions, requests) kept apart. Usage of no
//! project (`project_id: null`) is the agent `(unattributed)`; a filter naming it cannot be
//! sent, so such queries group by project and filter rows here. Projects (agents) come from
//! the configured list or from the Projects admin API, cached for `discovery_ttl`.
//!
//! Before sending it counts the requests a query needs (request ranges × endpoints), refuses
//! queries above `max_upstream_calls`, and takes them from the source's budget all at once. A
//! 429 pauses the whole source for its `Retry-After`, or 10 s when it gives none.
//!
//! Files: `config.rs` (keys), `client.rs` (HTTP on usage-core's transport), `error.rs` (the
//! status table), `model.rs` (wire types), `mapping.rs` (the endpoint table and the result →
//! usage mapping), `provider.rs` (the trait implementation).

mod client;
mod config;
mod error;
mod mapping;
mod model;
mod provider;

pub use config::{
    Config, DEFAULT_BASE_URL, DEFAULT_DISCOVERY_TTL, DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_UPSTREAM_CALLS, DEFAULT_RATE_LIMIT_PER_MINUTE,
};
pub use mapping::{ENDPOINTS, Endpoint, EndpointSpec, Metric};
pub use provider::OpenaiProvider;

/// This provider's name: `provider = "openai"` in `[[sources]]`.
pub const KIND: usage_core::ProviderKind = usage_core::ProviderKind::new("openai");

/// This provider's entry in the gateway's registry.
pub const DESCRIPTOR: usage_core::plugin::ProviderDescriptor =
    usage_core::plugin::ProviderDescriptor {
        kind: KIND,
        description: "OpenAI organization usage (GET /v1/organization/usage/*, admin key): tokens and other units per project, user, model and usage type",
        billing: usage_core::plugin::Billing {
            provider_name: "OpenAI",
            service_name: "OpenAI API",
        },
        defaults: config::SETTINGS,
        build: |ctx, table| usage_core::plugin::build_with(ctx, table, OpenaiProvider::new),
    };
