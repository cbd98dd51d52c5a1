//! Anthropic's Messages usage as a usage-gateway source (CONTRACTS-openai-anthropic.md part B).
//!
//! [`AnthropicProvider`] answers a query from the Admin API's usage report,
//! `GET /v1/organizations/usage_report/messages`, which sums usage in UTC buckets of `1d`, `1h`
//! or `1m` and groups it by the dimensions asked for. It plans its requests with
//! [`usage_core::buckets::BucketWidth::plan`]: each window in the coarsest buckets that fit inside
//! it (UTC days: `1d`; Berlin days or hour buckets: `1h`; Kolkata days: `1m`; a week from
//! 04:41: minutes and hours at its ends, days between), in request ranges of at most the
//! width's `limit` maximum (31, 168, 1440 buckets). Each range is asked for with `ending_at` a
//! second past its end, so that its last bucket comes back whether the server keeps buckets
//! ending at or strictly before `ending_at`. It follows `next_page` cursors and places each
//! bucket in the window its start lies in, so the answer is exact.
//!
//! # Dimensions
//! - **agent** = workspace (`group_by[]=workspace_id`, filter `workspace_ids[]`). The default
//!   workspace, `workspace_id: null` in a grouped answer, is the agent `default` ("Default
//!   workspace"); a filter naming it cannot be sent, so such queries group by workspace and
//!   filter rows here. Agents come from `GET /v1/organizations/workspaces` (archived ones
//!   included: their usage still counts) or from the configured `agents` list.
//! - **user** = the API key id (`api_key_id`, filter `api_key_ids[]`): Anthropic knows no end
//!   user of API requests (`account_id` is set only for OAuth requests). Console (Workbench)
//!   usage has no key: its user is `null`.
//! - **model** = `model` (filter `models[]`).
//! - **usage_type** = the report's field names: `uncached_input_tokens` (input),
//!   `output_tokens` (output), `cache_read_input_tokens`,
//!   `cache_creation.ephemeral_5m_input_tokens`, `cache_creation.ephemeral_1h_input_tokens`
//!   (other, tokens) and `server_tool_use.web_search_requests` (other, unit `requests`). The
//!   report has no request count.
//!
//! # Limits and freshness
//! Anthropic asks for polling "once per minute for sustained use; for short bursts (e.g.
//! paginated data) more frequent polling is acceptable". The source's budget
//! (`rate_limit_per_minute`, default 10) allows the minute's budget as one burst, and a query
//! needs one request per request range (`max_upstream_calls`, default 10, capped by the
//! budget); the gateway's cache and the usage store's sync keep sustained polling low. A 429
//! pauses the whole source for its `retry-after`, or a minute when it gives none. Usage
//! shows in the report within about five minutes; the gateway's `settle` treats such recent
//! windows as open.
//!
//! Files: `config.rs` (keys), `client.rs` (HTTP on usage-core's transport), `error.rs` (the
//! status → error table), `model.rs` (wire types), `provider.rs` (planning and the mapping).

mod client;
mod config;
mod error;
mod model;
mod provider;

pub use config::{
    Config, DEFAULT_BASE_URL, DEFAULT_DISCOVERY_TTL, DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_UPSTREAM_CALLS, DEFAULT_RATE_LIMIT_PER_MINUTE,
};
pub use provider::{AnthropicProvider, DEFAULT_AGENT, DEFAULT_AGENT_NAME, USAGE_TYPES};

/// This provider's name: `provider = "anthropic"` in `[[sources]]`.
pub const KIND: usage_core::ProviderKind = usage_core::ProviderKind::new("anthropic");

/// This provider's entry in the gateway's registry.
pub const DESCRIPTOR: usage_core::plugin::ProviderDescriptor =
    usage_core::plugin::ProviderDescriptor {
        kind: KIND,
        description: "Anthropic Admin API: Messages token usage per workspace, API key, model and token kind (GET /v1/organizations/usage_report/messages), workspaces discovered or listed",
        billing: usage_core::plugin::Billing {
            provider_name: "Anthropic",
            service_name: "Claude API",
        },
        defaults: config::SETTINGS,
        build: |ctx, table| usage_core::plugin::build_with(ctx, table, AnthropicProvider::new),
    };
