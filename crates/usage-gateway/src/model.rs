//! Response bodies of the public API (and their OpenAPI schemas).

use std::collections::BTreeMap;

use serde::Serialize;
use usage_core::{Attribution, ProviderKind};
use utoipa::ToSchema;

use crate::error::Problem;

/// The outcome of one source within a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceStatus {
    /// Answered (fresh or from cache).
    Ok,
    /// Served from an expired cache entry because the vendor failed.
    Stale,
    /// Failed; see `error`.
    Error,
    /// Did not answer before the request deadline.
    Timeout,
    /// Cannot apply a filter of this query (e.g. `user` on DigitalOcean).
    Skipped,
}

/// Where a source's `cost` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CostSource {
    /// The vendor's cost API (OpenAI's costs, Anthropic's cost report).
    Vendor,
    /// The configured price table (`[[prices]]`) applied to the usage.
    PriceTable,
    /// No cost: the vendor has no cost API usable for this query and no price applies.
    None,
}

/// An amount of money: a decimal string with four places (rounded half away from zero from the
/// exact sum) and its ISO 4217 currency. Amounts of different currencies are never added.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MoneyAmount {
    /// The amount in major units (dollars), e.g. `12.3400`.
    #[schema(example = "12.3400", pattern = r"^-?[0-9]+\.[0-9]{4}$")]
    pub amount: String,
    /// ISO 4217 code.
    #[schema(example = "USD")]
    pub currency: String,
}

/// One source's entry in `sources[]`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SourceEntry {
    /// The configured source name.
    #[schema(example = "do-prod")]
    pub source: String,
    /// The provider behind it.
    pub provider: ProviderKind,
    /// How the source fared.
    pub status: SourceStatus,
    /// How exactly the source places usage in time: `exact` (usage counted in the window it
    /// happened in), `conversation` (a conversation's lifetime totals placed at its last
    /// update: Kibana answered live), `snapshot` (each conversation's growth between two polls
    /// of the usage store placed at its update time, to within
    /// `attribution_resolution_seconds`: Kibana answered from the store).
    pub attribution: Attribution,
    /// True when every window came from the gateway's cache.
    pub cached: bool,
    /// When the oldest data in this answer was fetched from the vendor.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub fetched_at: Option<String>,
    /// HTTP requests sent to the vendor for this answer.
    pub upstream_requests: u64,
    /// Time spent on this source, in milliseconds.
    pub duration_ms: f64,
    /// With `stale`: how old the served data is, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<u64>,
    /// Kibana only: how many `high_input_tokens` warnings the conversations placed in range
    /// carry. Kibana flags single conversation rounds, so this counts flagged rounds, not
    /// conversations (one conversation can add several). Absent for other vendors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warnings: Option<u64>,
    /// Remarks on data the answer lacks although the source answered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// With a usage store, for a stored source: the share of the queried time (0 to 1)
    /// answered from the store without vendor calls; the rest was fetched live. Absent when
    /// no store is configured, for sources the store does not hold, or when the store failed
    /// (`notes` then say so).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0, maximum = 1.0, example = 0.96)]
    pub store_coverage: Option<f64>,
    /// With `attribution: snapshot`: usage in this answer is placed to within this many
    /// seconds of when it happened (the longest time between two polls of the source over the
    /// range, or since the last poll for the part fetched live).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribution_resolution_seconds: Option<u64>,
    /// For vendors that report usage in fixed UTC buckets (OpenAI, Anthropic): the bucket
    /// widths the live part of this answer was read at, coarsest first, joined by `, ` (`1d`
    /// for UTC days; `1h` for days of zones an hour off UTC or for hour buckets; `1m` for zones
    /// with non-hour offsets; several when a long range's edges fall inside days or hours:
    /// `1d, 1h, 1m` for the last seven days, read in days with hours and minutes at the ends).
    /// Absent when nothing was read live.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "1h")]
    pub vendor_bucket_width: Option<String>,
    /// When the oldest stored window used in this answer was fetched from the vendor.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub store_synced_at: Option<String>,
    /// Where this source's `cost` in rows and totals came from: `vendor`, `price_table`
    /// (`[[prices]]` applied to its usage; usage no price matches counts in `unpriced`) or
    /// `none`. Present in `GET /v1/usage` answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_source: Option<CostSource>,
    /// The problem, when the status is not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub error: Option<Problem>,
}

/// Totals of one unit.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UnitTotals {
    /// `tokens`, `credits`, or a unit that is not tokens (`images`, `characters`, `seconds`,
    /// `sessions`, `requests`: then the counters count that unit). Units are never added up.
    #[schema(example = "tokens")]
    pub unit: String,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Neither input nor output (or no split given by the vendor).
    pub other_tokens: u64,
    /// `input_tokens + output_tokens + other_tokens`.
    pub total_tokens: u64,
    /// What this unit's usage cost, one amount per currency (exact sums, each rounded once).
    /// Present when some touched source has a cost (`sources[].cost_source` not `none`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<MoneyAmount>>)]
    pub cost: Option<Vec<usage_core::money::Money>>,
    /// Of `total_tokens`, the quantity no cost covers (no price matches, or its source has no
    /// cost): `cost` leaves it out rather than pricing it at 0. Present when not 0 and some
    /// touched source has a cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unpriced: Option<u64>,
}

/// The query as the gateway understood it (defaults filled in).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QueryEcho {
    /// Inclusive start, UTC.
    #[schema(example = "2026-11-01T00:00:00Z")]
    pub start: String,
    /// Exclusive end, UTC.
    #[schema(example = "2026-11-08T00:00:00Z")]
    pub end: String,
    /// IANA zone of bucket edges.
    #[schema(example = "UTC")]
    pub tz: String,
    /// `none`, `hour`, `day`, `week`, `month`.
    #[schema(example = "day")]
    pub bucket: String,
    /// The grouping dimensions, in order.
    #[schema(example = json!(["source", "agent"]))]
    pub group_by: Vec<String>,
    /// The filters given (`source`, `provider`, `agent`, `user`).
    pub filters: BTreeMap<String, Vec<String>>,
    /// `none` or `zero`: rows for buckets without usage.
    #[schema(example = "none")]
    pub fill: String,
    /// `utc` or `local`: how bucket edges are written.
    #[schema(example = "utc")]
    pub bucket_edges: String,
}

/// One row of `rows`. Only the `group_by` dimensions appear (null where a source has no such
/// dimension); bucket edges appear only when `bucket` is not `none`, written in UTC, or with the
/// offset of `tz` when `bucket_edges=local`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageRowSchema {
    /// Bucket start (UTC, or with the zone's offset when `bucket_edges=local`).
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-11-01T00:00:00Z")]
    pub bucket_start: Option<String>,
    /// Bucket end (exclusive; UTC, or with the zone's offset when `bucket_edges=local`).
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-11-02T00:00:00Z")]
    pub bucket_end: Option<String>,
    /// Source name.
    #[schema(example = "do-prod")]
    pub source: Option<String>,
    /// Provider name.
    #[schema(example = "digitalocean")]
    pub provider: Option<String>,
    /// Vendor agent id.
    #[schema(example = "c441bf77-81d6-11ef-bf8f-4e013e2ddde4")]
    pub agent: Option<String>,
    /// Agent name, when known (rides along with `agent`).
    #[schema(example = "support-agent")]
    pub agent_name: Option<String>,
    /// End user.
    pub user: Option<String>,
    /// Conversation id.
    pub conversation: Option<String>,
    /// Vendor usage type.
    pub usage_type: Option<String>,
    /// Model, where the vendor says (OpenAI, Anthropic; DigitalOcean: the agent's model).
    #[schema(example = "gpt-4o-mini-2024-07-18")]
    pub model: Option<String>,
    /// `tokens`, `credits`, or a unit that is not tokens (`images`, `characters`, `seconds`,
    /// `sessions`, `requests`: then the counters count that unit).
    #[schema(example = "tokens")]
    pub unit: String,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Other tokens.
    pub other_tokens: u64,
    /// Sum of the three.
    pub total_tokens: u64,
    /// What the row's usage cost, one amount per currency (never added across currencies).
    /// Present when some touched source has a cost (`sources[].cost_source` not `none`); empty
    /// when none of the row's usage is costed. With `cost_source: vendor` (OpenAI, Anthropic),
    /// cost by agent and model is the vendor's own; by user, usage type or conversation it is
    /// each UTC day's cost of the agent, model and unit allocated in proportion to the rows'
    /// `total_tokens`. With `price_table`, each counter is priced by the configured prices
    /// valid when the usage happened.
    pub cost: Option<Vec<MoneyAmount>>,
    /// Of `total_tokens`, the quantity no cost covers. Present when not 0 and some touched
    /// source has a cost.
    pub unpriced: Option<u64>,
}

/// The body of `GET /v1/usage`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageResponseSchema {
    /// The query as understood.
    pub query: QueryEcho,
    /// True only when every touched source is `ok`.
    pub complete: bool,
    /// Totals per unit.
    pub totals: Vec<UnitTotals>,
    /// Rows, sorted by bucket then dimensions.
    pub rows: Vec<UsageRowSchema>,
    /// One entry per touched source.
    pub sources: Vec<SourceEntry>,
}

/// One agent in `GET /v1/agents`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgentEntry {
    /// The source.
    pub source: String,
    /// The provider.
    pub provider: ProviderKind,
    /// The vendor agent id.
    pub agent: String,
    /// The agent's name, when known.
    pub agent_name: Option<String>,
    /// The model the agent runs on, when the vendor's agent list says (DigitalOcean); its
    /// usage is attributed to it under `group_by=model`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// The body of `GET /v1/agents`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgentsResponse {
    /// Agents, sorted by source then id.
    pub agents: Vec<AgentEntry>,
    /// Sources that could not list their agents.
    pub sources: Vec<SourceEntry>,
}

/// The health of one source, as seen by this gateway process.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SourceHealth {
    /// The source name.
    pub source: String,
    /// The provider.
    pub provider: ProviderKind,
    /// How time placement works for it.
    pub attribution: Attribution,
    /// Dimensions it can fill.
    pub dimensions: Vec<String>,
    /// Dimensions it can filter by.
    pub filters: Vec<String>,
    /// Last successful upstream answer.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_success: Option<String>,
    /// Last failure.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_error_at: Option<String>,
    /// Last failure's problem.
    pub last_error: Option<Problem>,
    /// Circuit breaker state: `closed`, `open` (calls refused at once) or `half_open` (probing).
    #[schema(example = "closed")]
    pub circuit: String,
    /// The usage store's view of the source, when a store is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<SourceStore>,
}

/// A source in the usage store: whether it is stored, and its syncer's progress.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SourceStore {
    /// The store's engine: `sqlite` or `postgres`.
    #[schema(example = "postgres")]
    pub engine: String,
    /// Whether the store holds this source's usage: by the hour for sources placed exactly,
    /// as snapshots of each conversation's totals for sources placed by conversation (Kibana),
    /// whose growth between two polls is placed at its update time.
    pub stored: bool,
    /// Whether the store is connected in this replica (queries are answered live while not).
    pub connected: bool,
    /// The syncer's progress as its replica (the lease holder) last published it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<crate::sync::Progress>,
    /// Whether the syncer's lease has run out (its replica stopped; another takes over).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_expired: Option<bool>,
    /// The store's last failure in this replica, with its time (`<RFC 3339>: <message>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One provider the gateway knows (its registry).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProviderEntry {
    /// The provider's name.
    pub provider: ProviderKind,
    /// What it reads.
    pub description: String,
}

/// The body of `GET /v1/sources`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SourcesResponse {
    /// The caller's sources.
    pub sources: Vec<SourceHealth>,
    /// Every provider this gateway can build sources of, whatever the caller's access (the
    /// values `provider` filters and `[[sources]] provider` accept).
    pub providers: Vec<ProviderEntry>,
}

/// The body of `/healthz` and `/readyz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok` or `ready`.
    #[schema(example = "ok")]
    pub status: String,
}
