//! [`AnthropicProvider`]: workspace discovery, request planning, paging, and the mapping from
//! usage report rows to normalized points.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{SecondsFormat, TimeDelta};
use futures::{StreamExt, TryStreamExt, stream};
use usage_core::buckets::{
    BucketWidth, CursorPage, PagingStop, Piece, check_daily_cost_query, follow_cursor,
    follow_planned_range, plan_limits, usage_report_limit,
};
use usage_core::money::{Currency, Money};
use usage_core::plugin::{AgentList, Discovery};
use usage_core::{
    Agent, Attribution, CallLimit, CostBatch, CostPoint, Counters, Dimension, PointKey,
    ProviderError, SourceInfo, Unit, UsageBatch, UsagePoint, UsageProvider, UsageQuery,
};

use crate::client::AnthropicClient;
use crate::config::Config;
use crate::model::{CostBucket, Report, Starting, UsageBucket, UsageRow};
use serde::de::DeserializeOwned;

/// The agent id of the default workspace (`workspace_id: null` in a grouped answer).
pub const DEFAULT_AGENT: &str = "default";

/// The default workspace's name.
pub const DEFAULT_AGENT_NAME: &str = "Default workspace";

/// The usage types, as the report names its fields: input, output, three kinds of cache
/// tokens (other), web search requests (other, unit `requests`).
pub const USAGE_TYPES: [&str; 6] = [
    "uncached_input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation.ephemeral_5m_input_tokens",
    "cache_creation.ephemeral_1h_input_tokens",
    "server_tool_use.web_search_requests",
];

/// The widths the usage report offers.
const WIDTHS: [BucketWidth; 3] = BucketWidth::COARSEST_FIRST;

/// The vendor dimensions this source fills.
const DIMENSIONS: [Dimension; 4] = [
    Dimension::Agent,
    Dimension::User,
    Dimension::Model,
    Dimension::UsageType,
];

/// Pages followed for one request range (one page is expected: `limit` covers the range).
const MAX_PAGES_PER_RANGE: usize = 64;

/// Workspace list pages followed in one discovery (100 workspaces each).
const MAX_WORKSPACE_PAGES: usize = 100;

/// An Anthropic organization: one Admin key, its workspaces, and the Messages usage report.
pub struct AnthropicProvider {
    name: String,
    client: AnthropicClient,
    /// The workspaces: fixed, or discovered and kept for `discovery_ttl`.
    agents: AgentList,
    max_calls_configured: u32,
    /// The configured maximum, capped by the per-minute budget.
    max_calls: u32,
    max_concurrency: usize,
}

impl fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicProvider")
            .field("name", &self.name)
            .field("client", &self.client)
            .field("agents", &self.agents)
            .field("max_calls", &self.max_calls)
            .field("max_concurrency", &self.max_concurrency)
            .finish_non_exhaustive()
    }
}

/// The default workspace as an agent.
fn default_agent() -> Agent {
    Agent {
        id: DEFAULT_AGENT.to_owned(),
        name: Some(DEFAULT_AGENT_NAME.to_owned()),
        model: None,
    }
}

/// What one query sends and how rows come back.
struct Plan {
    /// The parameters every request range shares (besides its width, times and `limit`).
    params: Vec<(&'static str, String)>,
    by_workspace: bool,
    by_key: bool,
    by_model: bool,
    /// Agents whose rows are kept, when the filter is applied here (it names `default`).
    local_agents: Option<BTreeSet<String>>,
}

impl AnthropicProvider {
    /// Creates the provider for source `name`, sending every request through `http`.
    pub fn new(
        name: impl Into<String>,
        config: Config,
        http: reqwest::Client,
    ) -> Result<Self, ProviderError> {
        let name = name.into();
        config.validate().map_err(|message| ProviderError::Config {
            source_name: name.clone(),
            message,
        })?;
        let per_minute = NonZeroU32::new(config.rate_limit_per_minute).unwrap_or(NonZeroU32::MIN);
        let fixed_agents = config.agents.map(|ids| {
            ids.iter()
                .map(|id| id.trim())
                .map(|id| {
                    if id == DEFAULT_AGENT {
                        default_agent()
                    } else {
                        Agent {
                            id: id.to_owned(),
                            name: None,
                            model: None,
                        }
                    }
                })
                .collect()
        });
        Ok(Self {
            client: AnthropicClient::new(
                &name,
                http,
                config.base_url,
                config.admin_key,
                per_minute,
                config.max_concurrency,
                config.max_body_bytes,
            ),
            name,
            agents: AgentList::new(fixed_agents, config.discovery_ttl),
            max_calls_configured: config.max_upstream_calls,
            max_calls: config.max_upstream_calls.min(per_minute.get()),
            max_concurrency: config.max_concurrency,
        })
    }

    fn decode(&self, message: String) -> ProviderError {
        ProviderError::Decode {
            source_name: self.name.clone(),
            message,
        }
    }

    fn paging(&self, stop: PagingStop<ProviderError>) -> ProviderError {
        match stop {
            PagingStop::Page(e) => e,
            other => self.decode(other.message()),
        }
    }

    /// The agents (fixed, or `default` and every workspace listed, cached for `discovery_ttl`;
    /// `refresh` lists again) and the requests listing took.
    async fn agent_list(&self, refresh: bool) -> Result<(Arc<Vec<Agent>>, u64), ProviderError> {
        let (agents, pages) = self
            .agents
            .get(refresh, || async {
                let (workspaces, pages) =
                    follow_cursor(MAX_WORKSPACE_PAGES, |after: Option<String>| {
                        let client = &self.client;
                        async move {
                            let page = client.workspaces_page(after.as_deref()).await?;
                            let next = page
                                .has_more
                                .then_some(page.last_id)
                                .flatten()
                                .filter(|id| !id.is_empty());
                            Ok((page.data.unwrap_or_default(), next))
                        }
                    })
                    .await
                    .map_err(|e| self.paging(e))?;
                let mut seen = BTreeSet::from([DEFAULT_AGENT.to_owned()]);
                let mut agents = vec![default_agent()];
                for w in workspaces {
                    if let Some(id) = w.id.filter(|id| seen.insert(id.clone())) {
                        agents.push(Agent {
                            id,
                            name: w.name.filter(|n| !n.trim().is_empty()),
                            model: None,
                        });
                    }
                }
                Ok::<_, ProviderError>(Discovery {
                    agents,
                    keep: true,
                    report: pages as u64,
                })
            })
            .await?;
        Ok((agents, pages.unwrap_or(0)))
    }

    /// Plans a query: shared parameters, grouping; `None` when a filter (agent, user or model)
    /// leaves nothing to ask for.
    fn plan(&self, query: &UsageQuery) -> Option<Plan> {
        let agents = self.agent_filter(query);
        // An empty set (agent, user or model) leaves nothing to ask for.
        if [agents.as_ref(), query.users.as_ref(), query.models.as_ref()]
            .into_iter()
            .any(|set| set.is_some_and(BTreeSet::is_empty))
        {
            return None;
        }
        let local = agents.as_ref().is_some_and(|a| a.contains(DEFAULT_AGENT));
        let by_workspace = query.keeps(Dimension::Agent) || local;
        let by_key = query.keeps(Dimension::User);
        let by_model = query.keeps(Dimension::Model);
        let mut params: Vec<(&'static str, String)> = Vec::new();
        for (on, name) in [
            (by_workspace, "workspace_id"),
            (by_key, "api_key_id"),
            (by_model, "model"),
        ] {
            if on {
                params.push(("group_by[]", name.to_owned()));
            }
        }
        if !local && let Some(ids) = &agents {
            params.extend(ids.iter().map(|id| ("workspace_ids[]", id.clone())));
        }
        for (name, set) in [("api_key_ids[]", &query.users), ("models[]", &query.models)] {
            params.extend(set.iter().flatten().map(|v| (name, v.clone())));
        }
        Some(Plan {
            params,
            by_workspace,
            by_key,
            by_model,
            local_agents: agents.filter(|_| local),
        })
    }

    /// Every bucket of one request range of `report`, following `next_page`: the first page
    /// was reserved with the query's others; a further page takes its own place in the budget.
    async fn range<B: Starting + DeserializeOwned>(
        &self,
        report: ReportKind,
        base: &[(&'static str, String)],
        (width, range): Piece,
        sent: &AtomicU64,
    ) -> Result<Vec<B>, ProviderError> {
        let mut params = base.to_vec();
        let time = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        params.push(("bucket_width", width.as_str().to_owned()));
        params.push(("starting_at", time(range.start)));
        // "Buckets that end before this": a second past the range's end, so that its last
        // bucket comes back whether the server keeps buckets ending at or before `ending_at`
        // or strictly before it; `limit` keeps the answer to the range's buckets either way.
        params.push(("ending_at", time(range.end + TimeDelta::seconds(1))));
        params.push(("limit", width.count(range).max(1).to_string()));
        let params = &params;
        let no_cursor = || {
            self.decode(format!(
                "the {} says has_more but gives no next_page",
                report.name
            ))
        };
        let (buckets, _) = follow_planned_range(
            MAX_PAGES_PER_RANGE,
            no_cursor,
            |page: Option<String>, admission| async move {
                let answer: Report<B> = self
                    .client
                    .report_page(report.segments, params, page.as_deref(), admission, sent)
                    .await?;
                Ok(CursorPage {
                    items: answer.data.unwrap_or_default(),
                    has_more: answer.has_more,
                    next_page: answer.next_page,
                })
            },
        )
        .await
        .map_err(|e| self.paging(e))?;
        // A bucket past the range (a server reading `ending_at` as "starting before") belongs
        // to another range, or to none.
        Ok(buckets
            .into_iter()
            .filter(|b| b.starting_at() < range.end)
            .collect())
    }

    async fn answer(&self, query: &UsageQuery) -> Result<UsageBatch, ProviderError> {
        let Some(plan) = self.plan(query).filter(|_| !query.windows.is_empty()) else {
            return Ok(UsageBatch::default());
        };
        let ranges = BucketWidth::plan(&query.windows, &WIDTHS, usage_report_limit);
        let needed = ranges.len();
        if needed > self.max_calls as usize {
            return Err(self.too_many(&ranges, false));
        }
        let (agents, discovery_calls) = if query.keeps(Dimension::Agent) {
            self.agent_list(query.refresh).await?
        } else {
            (Arc::new(Vec::new()), 0)
        };
        let names: BTreeMap<&str, &str> = agents
            .iter()
            .filter_map(|a| Some((a.id.as_str(), a.name.as_deref()?)))
            .chain([(DEFAULT_AGENT, DEFAULT_AGENT_NAME)])
            .collect();
        self.client
            .reserve(u32::try_from(needed).unwrap_or(u32::MAX))
            .await?;
        let sent = AtomicU64::new(0);
        let pages: Vec<Vec<UsageBucket>> = stream::iter(ranges.clone())
            .map(|r| self.range(USAGE_REPORT, &plan.params, r, &sent))
            .buffer_unordered(self.max_concurrency)
            .try_collect()
            .await?;

        let keep: BTreeSet<Dimension> = query
            .dimensions
            .iter()
            .copied()
            .filter(|d| DIMENSIONS.contains(d))
            .collect();
        let mut points = Vec::new();
        for bucket in pages.into_iter().flatten() {
            let Some(wi) = query.window_index_of(bucket.starting_at) else {
                continue;
            };
            let window = query.windows[wi];
            for row in bucket.results.into_iter().flatten() {
                let agent = plan
                    .by_workspace
                    .then(|| row.workspace_id.as_deref().unwrap_or(DEFAULT_AGENT));
                if let (Some(wanted), Some(agent)) = (&plan.local_agents, agent)
                    && !wanted.contains(agent)
                {
                    continue;
                }
                let key = PointKey {
                    agent: agent.map(str::to_owned),
                    user: row.api_key_id.clone().filter(|_| plan.by_key),
                    model: row.model.clone().filter(|_| plan.by_model),
                    ..PointKey::default()
                };
                let agent_name = agent.and_then(|a| names.get(a)).map(|n| (*n).to_owned());
                for (usage_type, unit, counters) in row_usage(&row) {
                    if counters.is_zero() {
                        continue;
                    }
                    points.push(
                        UsagePoint {
                            window,
                            key: PointKey {
                                usage_type: Some(usage_type.to_owned()),
                                ..key.clone()
                            },
                            agent_name: agent_name.clone(),
                            unit,
                            counters,
                        }
                        .project(&keep),
                    );
                }
            }
        }
        Ok(UsageBatch {
            points,
            upstream_requests: discovery_calls + sent.load(Ordering::Relaxed),
            warnings: None,
            notes: BucketWidth::Minute
                .edge_note(&query.windows)
                .into_iter()
                .collect(),
            partial: false,
            bucket_width: BucketWidth::plan_label(&ranges),
        }
        .compact())
    }

    /// `costs`: the ranges read the cost report (31 days a request).
    fn too_many(&self, ranges: &[Piece], costs: bool) -> ProviderError {
        let needed = ranges.len();
        let capped = self.max_calls < self.max_calls_configured;
        let cap = if capped {
            format!(
                " (max_upstream_calls {} capped by rate_limit_per_minute)",
                self.max_calls_configured
            )
        } else {
            String::new()
        };
        let message = if costs {
            format!(
                "this query needs {needed} Anthropic cost report requests (one per range of at \
                 most {}), above this source's maximum of {}{cap} per query; use a shorter \
                 range",
                plan_limits(ranges, cost_report_limit),
                self.max_calls
            )
        } else {
            format!(
                "this query needs {needed} Anthropic usage report requests (one per range of at \
                 most {}), above this source's maximum of {}{cap} per query; use a shorter \
                 range, or window edges on whole UTC days (1d buckets) or hours (1h buckets)",
                plan_limits(ranges, usage_report_limit),
                self.max_calls
            )
        };
        ProviderError::SourceLimit {
            source_name: self.name.clone(),
            message,
            calls: CallLimit {
                needed: needed as u64,
                max: u64::from(self.max_calls),
                setting: if capped {
                    "rate_limit_per_minute"
                } else {
                    "max_upstream_calls"
                },
                agents: 1,
                windows: needed as u64,
                agents_by_windows: false,
            },
        }
    }
}

/// A report read in ranges: its path under `/v1/organizations/` and its name for messages.
#[derive(Debug, Clone, Copy)]
struct ReportKind {
    segments: &'static [&'static str],
    name: &'static str,
}

/// The Messages usage report.
const USAGE_REPORT: ReportKind = ReportKind {
    segments: &["usage_report", "messages"],
    name: "usage report",
};

/// The cost report.
const COST_REPORT: ReportKind = ReportKind {
    segments: &["cost_report"],
    name: "cost report",
};

/// The most daily buckets one cost report request may ask for (`limit` 1..=31).
fn cost_report_limit(_: BucketWidth) -> u32 {
    31
}

impl AnthropicProvider {
    /// The agents a query reads: its filter, within the configured agents; `None` = all.
    fn agent_filter(&self, query: &UsageQuery) -> Option<BTreeSet<String>> {
        let fixed: Option<BTreeSet<String>> = self
            .agents
            .fixed()
            .map(|a| a.iter().map(|a| a.id.clone()).collect());
        match (&query.agents, fixed) {
            (None, f) => f,
            (Some(q), None) => Some(q.clone()),
            (Some(q), Some(f)) => Some(q.intersection(&f).cloned().collect()),
        }
    }

    /// Costs from `GET /v1/organizations/cost_report`: daily ranges of at most 31 days,
    /// grouped by workspace and description; the report takes no filters, so the agent filter
    /// is applied here.
    async fn cost_answer(&self, query: &UsageQuery) -> Result<CostBatch, ProviderError> {
        check_daily_cost_query(&self.name, "Anthropic", query)?;
        let agents = self.agent_filter(query);
        if query.windows.is_empty() || agents.as_ref().is_some_and(BTreeSet::is_empty) {
            return Ok(CostBatch::default());
        }
        let ranges = BucketWidth::plan(&query.windows, &[BucketWidth::Day], cost_report_limit);
        if ranges.len() > self.max_calls as usize {
            return Err(self.too_many(&ranges, true));
        }
        self.client
            .reserve(u32::try_from(ranges.len()).unwrap_or(u32::MAX))
            .await?;
        let sent = AtomicU64::new(0);
        // By workspace, and by description (model, token type).
        let base = [
            ("group_by[]", "workspace_id".to_owned()),
            ("group_by[]", "description".to_owned()),
        ];
        let pages: Vec<Vec<CostBucket>> = stream::iter(ranges)
            .map(|r| self.range(COST_REPORT, &base, r, &sent))
            .buffer_unordered(self.max_concurrency)
            .try_collect()
            .await?;
        let mut points = Vec::new();
        for bucket in pages.into_iter().flatten() {
            let Some(wi) = query.window_index_of(bucket.starting_at) else {
                continue;
            };
            for row in bucket.results.into_iter().flatten() {
                let agent = row.workspace_id.as_deref().unwrap_or(DEFAULT_AGENT);
                if agents.as_ref().is_some_and(|a| !a.contains(agent)) {
                    continue;
                }
                let currency = Currency::parse(row.currency.as_deref().unwrap_or_default())
                    .map_err(|e| self.decode(format!("cost report currency: {e}")))?;
                let amount = row
                    .amount
                    .as_deref()
                    .ok_or_else(|| self.decode("a cost report row has no `amount`".to_owned()))?;
                let money = Money::from_minor(amount, currency, 2)
                    .map_err(|e| self.decode(format!("cost report amount: {e}")))?;
                // Token costs join the token rows, web search the `requests` row as the usage
                // report counts it; other cost types count with tokens.
                let unit = match (row.token_type.as_deref(), row.cost_type.as_deref()) {
                    (None, Some("web_search")) => Unit::Requests,
                    _ => Unit::Tokens,
                };
                let usage_type = row.token_type.or(row.cost_type).or(row.description);
                points.push(CostPoint {
                    window: query.windows[wi],
                    key: PointKey {
                        agent: Some(agent.to_owned()),
                        usage_type,
                        model: row.model,
                        ..PointKey::default()
                    }
                    .project(&query.dimensions),
                    unit,
                    money,
                });
            }
        }
        CostBatch {
            points,
            upstream_requests: sent.load(Ordering::Relaxed),
            notes: Vec::new(),
        }
        .compact()
        .ok_or_else(|| {
            self.decode("the cost report's amounts add up beyond what a decimal holds".to_owned())
        })
    }
}

/// One row's usage per usage type: `(name, unit, counters)`, in [`USAGE_TYPES`] order.
///
/// `uncached_input_tokens` → input, `output_tokens` → output, cache reads and both cache
/// creations → other (tokens), web search requests → other (unit `requests`). Each token is
/// counted once: the report's kinds are disjoint.
pub(crate) fn row_usage(row: &UsageRow) -> [(&'static str, Unit, Counters); 6] {
    let cache = row.cache_creation.clone().unwrap_or_default();
    let tools = row.server_tool_use.clone().unwrap_or_default();
    let input = |n| Counters {
        input: n,
        ..Counters::default()
    };
    let output = |n| Counters {
        output: n,
        ..Counters::default()
    };
    let other = |n| Counters {
        other: n,
        ..Counters::default()
    };
    [
        (
            USAGE_TYPES[0],
            Unit::Tokens,
            input(row.uncached_input_tokens),
        ),
        (USAGE_TYPES[1], Unit::Tokens, output(row.output_tokens)),
        (
            USAGE_TYPES[2],
            Unit::Tokens,
            other(row.cache_read_input_tokens),
        ),
        (
            USAGE_TYPES[3],
            Unit::Tokens,
            other(cache.ephemeral_5m_input_tokens),
        ),
        (
            USAGE_TYPES[4],
            Unit::Tokens,
            other(cache.ephemeral_1h_input_tokens),
        ),
        (
            USAGE_TYPES[5],
            Unit::Requests,
            other(tools.web_search_requests),
        ),
    ]
}

#[async_trait]
impl UsageProvider for AnthropicProvider {
    fn describe(&self) -> SourceInfo {
        SourceInfo {
            name: self.name.clone(),
            provider: crate::KIND,
            attribution: Attribution::Exact,
            dimensions: DIMENSIONS.into_iter().collect(),
            filters: BTreeSet::from([Dimension::Agent, Dimension::User, Dimension::Model]),
        }
    }

    /// The usage types come with every row the vendor sends (they are fields of a result, not a
    /// grouping), so queries that differ only in `usage_type` share one vendor request and one
    /// cache entry; the aggregation adds the types up when the query does not keep them.
    fn fetch_dimensions(&self, dims: &BTreeSet<Dimension>) -> BTreeSet<Dimension> {
        let mut d = dims.clone();
        d.insert(Dimension::UsageType);
        d
    }

    /// Lists `default` (the default workspace, which the workspaces list omits) and every
    /// workspace, archived ones included (their usage still counts); or the configured list.
    async fn agents(&self) -> Result<Vec<Agent>, ProviderError> {
        Ok(self.agent_list(false).await?.0.as_ref().clone())
    }

    /// Costs split by workspace (agent) and model.
    fn cost_dimensions(&self) -> Option<BTreeSet<Dimension>> {
        Some(BTreeSet::from([Dimension::Agent, Dimension::Model]))
    }

    async fn costs(&self, query: &UsageQuery) -> Result<Option<CostBatch>, ProviderError> {
        self.cost_answer(query).await.map(Some)
    }

    async fn usage(&self, query: &UsageQuery) -> Result<UsageBatch, ProviderError> {
        self.answer(query).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CacheCreation, ServerToolUse};

    fn full_row() -> UsageRow {
        UsageRow {
            uncached_input_tokens: 1500,
            output_tokens: 500,
            cache_read_input_tokens: 200,
            cache_creation: Some(CacheCreation {
                ephemeral_5m_input_tokens: 500,
                ephemeral_1h_input_tokens: 1000,
            }),
            server_tool_use: Some(ServerToolUse {
                web_search_requests: 10,
            }),
            ..UsageRow::default()
        }
    }

    #[test]
    fn every_kind_lands_in_one_slot_once() {
        let got = row_usage(&full_row());
        let c = |input, output, other| Counters {
            input,
            output,
            other,
        };
        assert_eq!(
            got,
            [
                ("uncached_input_tokens", Unit::Tokens, c(1500, 0, 0)),
                ("output_tokens", Unit::Tokens, c(0, 500, 0)),
                ("cache_read_input_tokens", Unit::Tokens, c(0, 0, 200)),
                (
                    "cache_creation.ephemeral_5m_input_tokens",
                    Unit::Tokens,
                    c(0, 0, 500)
                ),
                (
                    "cache_creation.ephemeral_1h_input_tokens",
                    Unit::Tokens,
                    c(0, 0, 1000)
                ),
                (
                    "server_tool_use.web_search_requests",
                    Unit::Requests,
                    c(0, 0, 10)
                ),
            ]
        );
        let tokens: u64 = got
            .iter()
            .filter(|(_, u, _)| *u == Unit::Tokens)
            .map(|(_, _, c)| c.total())
            .sum();
        assert_eq!(tokens, 1500 + 500 + 200 + 500 + 1000, "no token twice");
        // Missing blocks count nothing.
        let bare = UsageRow {
            output_tokens: 3,
            ..UsageRow::default()
        };
        let total: u64 = row_usage(&bare).iter().map(|(_, _, c)| c.total()).sum();
        assert_eq!(total, 3);
    }
}
