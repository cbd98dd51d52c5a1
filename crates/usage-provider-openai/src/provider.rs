//! [`OpenaiProvider`]: project listing, request planning (width, ranges, budget), the fan-out
//! over endpoints × ranges with cursor paging, and the bucket → point mapping.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::DateTime;
use futures::{StreamExt, TryStreamExt, stream};
use usage_core::buckets::{
    BucketWidth, CursorPage, PagingStop, Piece, check_daily_cost_query, follow_cursor,
    follow_planned_range, plan_limits, usage_report_limit,
};
use usage_core::money::{Currency, Money};
use usage_core::plugin::{AgentList, Discovery};
use usage_core::transport::Admission;
use usage_core::{
    Agent, Attribution, CallLimit, CostBatch, CostPoint, Dimension, PointKey, ProviderError,
    SourceInfo, UNATTRIBUTED_AGENT, Unit, UsageBatch, UsagePoint, UsageProvider, UsageQuery,
};

use crate::client::OaClient;
use crate::config::Config;
use crate::mapping::{Endpoint, EndpointSpec, result_usage};
use crate::model::{BucketPage, CostsBucket, ProjectList, UsageBucket};
use serde::de::DeserializeOwned;

/// The widths the usage endpoints offer, coarsest first.
const WIDTHS: [BucketWidth; 3] = BucketWidth::COARSEST_FIRST;

/// Upper bound on project list pages (100 projects each) in one listing.
const MAX_LIST_PAGES: usize = 1000;

/// An OpenAI organization source: one admin key, its projects as agents, and the usage
/// endpoints chosen by `endpoints`.
///
/// Projects come from the configured `agents` list (usage is then read for those projects
/// only) or from `GET /v1/organization/projects?include_archived=true` (OpenAI's Projects admin
/// API, not part of the usage contract), paged with `after`, cached for `discovery_ttl`.
/// Archived projects are listed too: their usage still counts.
pub struct OpenaiProvider {
    name: String,
    client: OaClient,
    endpoints: Vec<&'static EndpointSpec>,
    /// The projects: fixed, or listed and kept for `discovery_ttl`.
    agents: AgentList,
    /// The configured `max_upstream_calls`.
    max_calls_configured: u32,
    /// The per-query maximum in force: the configured one, capped by the per-minute budget.
    max_calls: u32,
    max_concurrency: usize,
}

impl fmt::Debug for OpenaiProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenaiProvider")
            .field("name", &self.name)
            .field("client", &self.client)
            .field(
                "endpoints",
                &self.endpoints.iter().map(|e| e.path).collect::<Vec<_>>(),
            )
            .field("agents", &self.agents)
            .field("max_calls", &self.max_calls)
            .field("max_concurrency", &self.max_concurrency)
            .finish_non_exhaustive()
    }
}

impl OpenaiProvider {
    /// Creates the provider for source `name`, sending every request through `http`.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "the registry's build_with hands the configuration over by value"
    )]
    pub fn new(
        name: impl Into<String>,
        config: Config,
        http: reqwest::Client,
    ) -> Result<Self, ProviderError> {
        let name = name.into();
        let invalid = |message| ProviderError::Config {
            source_name: name.clone(),
            message,
        };
        config.validate().map_err(invalid)?;
        let endpoints = config
            .endpoint_list()
            .map_err(|e| invalid(e.join("; ")))?
            .into_iter()
            .map(crate::Endpoint::spec)
            .collect();
        let per_minute = NonZeroU32::new(config.rate_limit_per_minute).unwrap_or(NonZeroU32::MIN);
        Ok(Self {
            client: OaClient::new(&name, http, &config, per_minute),
            name,
            endpoints,
            agents: AgentList::from_ids(config.agents.as_deref(), config.discovery_ttl),
            max_calls_configured: config.max_upstream_calls,
            max_calls: config.max_upstream_calls.min(per_minute.get()),
            max_concurrency: config.max_concurrency,
        })
    }

    /// Every bucket of one request range at `/v1/organization/<path>` (`params` without
    /// `page`), following `next_page`: the first page was reserved with the query's plan, each
    /// further one takes its own place in the budget.
    async fn read_pages<B: DeserializeOwned + Send>(
        &self,
        path: &[&str],
        params: &[(&str, String)],
        max_pages: usize,
        sent: &AtomicU64,
    ) -> Result<Vec<B>, ProviderError> {
        let no_cursor = || ProviderError::Decode {
            source_name: self.name.clone(),
            message: "OpenAI answered has_more without a next_page cursor".to_owned(),
        };
        let (buckets, _pages) =
            follow_planned_range(max_pages, no_cursor, |cursor: Option<String>, admission| {
                let mut params = params.to_vec();
                params.extend(cursor.map(|c| ("page", c)));
                let url = self.client.url(path, &params);
                async move {
                    let page: BucketPage<B> = self.client.get_json(url, admission, sent).await?;
                    Ok(CursorPage {
                        items: page.data,
                        has_more: page.has_more,
                        next_page: page.next_page,
                    })
                }
            })
            .await
            .map_err(|stop| self.paging_error(stop))?;
        Ok(buckets)
    }

    fn paging_error(&self, stop: PagingStop<ProviderError>) -> ProviderError {
        match stop {
            PagingStop::Page(e) => e,
            stop => ProviderError::Decode {
                source_name: self.name.clone(),
                message: stop.message(),
            },
        }
    }

    /// The projects: fixed, or listed (cached for `discovery_ttl`; `refresh` lists again).
    async fn agent_list(
        &self,
        refresh: bool,
        sent: &AtomicU64,
    ) -> Result<Arc<Vec<Agent>>, ProviderError> {
        let discover = || async {
            let (projects, _pages) = follow_cursor(MAX_LIST_PAGES, |after: Option<String>| {
                let mut q = vec![
                    ("limit", "100".to_owned()),
                    ("include_archived", "true".to_owned()),
                ];
                q.extend(after.map(|a| ("after", a)));
                let url = self.client.url(&["projects"], &q);
                async move {
                    let page: ProjectList =
                        self.client.get_json(url, Admission::Admit, sent).await?;
                    let last = page
                        .last_id
                        .clone()
                        .or_else(|| page.data.last()?.id.clone());
                    let next = if page.has_more { last } else { None };
                    Ok((page.data, next))
                }
            })
            .await
            .map_err(|stop| self.paging_error(stop))?;
            let mut seen = HashSet::new();
            let agents = projects
                .into_iter()
                .filter_map(|p| {
                    let id = p.id?.trim().to_owned();
                    (!id.is_empty() && seen.insert(id.clone())).then(|| Agent {
                        id,
                        name: p.name.filter(|n| !n.trim().is_empty()),
                        model: None,
                    })
                })
                .collect();
            Ok::<_, ProviderError>(Discovery {
                agents,
                keep: true,
                report: (),
            })
        };
        Ok(self.agents.get(refresh, discover).await?.0)
    }

    /// The projects usage is read for: the query's agent filter, within the fixed list when
    /// there is one; `None` = every project.
    fn project_filter(&self, query: &UsageQuery) -> Option<BTreeSet<String>> {
        let fixed = self
            .agents
            .fixed()
            .map(|f| f.iter().map(|a| a.id.clone()).collect::<BTreeSet<_>>());
        match (fixed, &query.agents) {
            (None, None) => None,
            (Some(f), None) => Some(f),
            (None, Some(q)) => Some(q.clone()),
            (Some(f), Some(q)) => Some(f.intersection(q).cloned().collect()),
        }
    }

    async fn answer(
        &self,
        query: &UsageQuery,
        sent: &AtomicU64,
    ) -> Result<UsageBatch, ProviderError> {
        let mut notes = Vec::new();
        let mut endpoints = Vec::new();
        for spec in &self.endpoints {
            let unfiltered: Vec<&str> = [
                (query.users.is_some() && !spec.user, "user"),
                (query.models.is_some() && !spec.model, "model"),
            ]
            .into_iter()
            .filter_map(|(missing, d)| missing.then_some(d))
            .collect();
            if unfiltered.is_empty() {
                endpoints.push(*spec);
            } else {
                let dims = unfiltered.join(" or ");
                notes.push(format!(
                    "OpenAI's `{}` usage is left out: it has no {dims}, so none of it can match \
                     the {dims} filter",
                    spec.path,
                ));
            }
        }
        // An endpoint without users or models (code interpreter sessions, file search) gives
        // its usage `null` there when the query keeps that dimension, as any source without
        // the dimension does (API.md): no note, since nothing is missing — and notes must not
        // depend on the dimensions fetched, which the gateway may widen.
        let projects = self.project_filter(query);
        let nothing_wanted = projects.as_ref().is_some_and(BTreeSet::is_empty)
            || query.users.as_ref().is_some_and(BTreeSet::is_empty)
            || query.models.as_ref().is_some_and(BTreeSet::is_empty);
        if endpoints.is_empty() || query.windows.is_empty() || nothing_wanted {
            return Ok(UsageBatch {
                notes,
                ..UsageBatch::default()
            });
        }

        let ranges = BucketWidth::plan(&query.windows, &WIDTHS, usage_report_limit);
        let needed = ranges.len() * endpoints.len();
        if needed > self.max_calls as usize {
            return Err(self.too_many_calls(needed, &ranges, endpoints.len(), None));
        }
        let names: HashMap<String, Option<String>> = if query.keeps(Dimension::Agent) {
            self.agent_list(query.refresh, sent)
                .await?
                .iter()
                .map(|a| (a.id.clone(), a.name.clone()))
                .collect()
        } else {
            HashMap::new()
        };
        self.client
            .reserve(u32::try_from(needed).unwrap_or(u32::MAX))
            .await?;
        notes.extend(BucketWidth::Minute.edge_note(&query.windows));

        // Usage of no project (`project_id: null`, agent `(unattributed)`) cannot be asked for
        // by id: a filter naming it is applied here, to rows grouped by project.
        let local_projects = projects.clone().filter(|p| p.contains(UNATTRIBUTED_AGENT));
        let sent_projects = projects.filter(|_| local_projects.is_none());
        let mut filters: Vec<(&'static str, bool, String)> = Vec::new();
        for (name, applies_everywhere, set) in [
            ("project_ids[]", true, &sent_projects),
            ("user_ids[]", false, &query.users),
            ("models[]", false, &query.models),
        ] {
            filters.extend(
                set.iter()
                    .flatten()
                    .map(|v| (name, applies_everywhere, v.clone())),
            );
        }
        let plan = Plan {
            query,
            filters: &filters,
            local_projects: local_projects.as_ref(),
            names: &names,
            sent,
        };
        // Owned items (not references): a stream of closures over borrowed items trips rustc's
        // `Send` check of the async-trait future.
        let calls: Vec<(Endpoint, Piece)> = endpoints
            .iter()
            .flat_map(|spec| ranges.iter().map(move |r| (spec.endpoint, *r)))
            .collect();
        let pages: Vec<Vec<UsagePoint>> = stream::iter(calls)
            .map(|(endpoint, piece)| self.read_range(&plan, endpoint.spec(), piece))
            .buffer_unordered(self.max_concurrency)
            .try_collect()
            .await?;
        Ok(UsageBatch {
            points: pages.into_iter().flatten().collect(),
            upstream_requests: sent.load(Ordering::Relaxed),
            warnings: None,
            notes,
            partial: false,
            bucket_width: BucketWidth::plan_label(&ranges),
        }
        .compact())
    }

    /// Reads one endpoint over one request range at its width, following `next_page`, and
    /// maps its buckets.
    async fn read_range(
        &self,
        plan: &Plan<'_>,
        spec: &'static EndpointSpec,
        (width, range): Piece,
    ) -> Result<Vec<UsagePoint>, ProviderError> {
        let q = plan.query;
        let mut params: Vec<(&str, String)> = vec![
            ("start_time", range.start.timestamp().to_string()),
            ("end_time", range.end.timestamp().to_string()),
            ("bucket_width", width.as_str().to_owned()),
            ("limit", usage_report_limit(width).to_string()),
        ];
        let keep_user = q.keeps(Dimension::User) && spec.user;
        let keep_model = q.keeps(Dimension::Model) && spec.model;
        for (keep, g) in [
            (
                q.keeps(Dimension::Agent) || plan.local_projects.is_some(),
                "project_id",
            ),
            (keep_user, "user_id"),
            (keep_model, "model"),
        ] {
            if keep {
                params.push(("group_by[]", g.to_owned()));
            }
        }
        // Endpoints that cannot filter by user or model were left out of such queries.
        params.extend(
            plan.filters
                .iter()
                .filter(|(name, everywhere, _)| {
                    *everywhere
                        || (*name == "user_ids[]" && spec.user)
                        || (*name == "models[]" && spec.model)
                })
                .map(|(name, _, v)| (*name, v.clone())),
        );
        let max_pages = usize::try_from(width.count(range))
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let buckets: Vec<UsageBucket> = self
            .read_pages(&["usage", spec.path], &params, max_pages, plan.sent)
            .await?;

        let mut points = Vec::new();
        for bucket in buckets {
            let Some(window) = window_at(q, bucket.start_time) else {
                continue;
            };
            for r in &bucket.results {
                let project = r
                    .project_id
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .unwrap_or(UNATTRIBUTED_AGENT);
                if plan
                    .local_projects
                    .is_some_and(|wanted| !wanted.contains(project))
                {
                    continue;
                }
                let agent = q.keeps(Dimension::Agent).then(|| project.to_owned());
                let agent_name = agent
                    .as_ref()
                    .and_then(|a| plan.names.get(a).cloned().flatten());
                for (usage_type, unit, counters) in result_usage(spec, r) {
                    points.push(UsagePoint {
                        window,
                        key: PointKey {
                            agent: agent.clone(),
                            user: r.user_id.clone().filter(|_| keep_user),
                            conversation: None,
                            usage_type: q
                                .keeps(Dimension::UsageType)
                                .then(|| usage_type.to_owned()),
                            model: r.model.clone().filter(|_| keep_model),
                        },
                        agent_name: agent_name.clone(),
                        unit,
                        counters,
                    });
                }
            }
        }
        Ok(points)
    }

    /// `costs`: the query reads the costs endpoint (180 days a request), not usage endpoints.
    fn too_many_calls(
        &self,
        needed: usize,
        ranges: &[Piece],
        endpoints: usize,
        costs: Option<()>,
    ) -> ProviderError {
        let capped = self.max_calls < self.max_calls_configured;
        let cap = if capped {
            format!(
                " (max_upstream_calls {} capped by rate_limit_per_minute)",
                self.max_calls_configured
            )
        } else {
            String::new()
        };
        let message = if costs.is_some() {
            format!(
                "this query needs {needed} OpenAI cost requests ({} range(s) of at most {}), \
                 above this source's maximum of {}{cap} per query; use a shorter range",
                ranges.len(),
                plan_limits(ranges, cost_limit),
                self.max_calls
            )
        } else {
            format!(
                "this query needs {needed} OpenAI usage requests ({} range(s) of at most {} \
                 × {endpoints} endpoint(s)), above this source's maximum of {}{cap} per query; \
                 use a shorter range, windows on UTC hours or days (coarser vendor buckets), or \
                 fewer `endpoints`",
                ranges.len(),
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
                agents: endpoints as u64,
                windows: ranges.len() as u64,
                agents_by_windows: false,
            },
        }
    }
}

/// The query window a bucket starting at `start_time` (Unix seconds) falls in.
fn window_at(q: &UsageQuery, start_time: i64) -> Option<usage_core::Window> {
    DateTime::from_timestamp(start_time, 0)
        .and_then(|t| q.window_index_of(t))
        .map(|i| q.windows[i])
}

/// The most daily buckets one costs request may ask for (`limit` 1..=180).
fn cost_limit(_: BucketWidth) -> u32 {
    180
}

/// The model and usage type of a line item: `<model>, <kind>` gives both; any other line item
/// is the usage type as a whole, with no model.
/// The unit of the usage a cost line item's kind is for: token kinds (`input`, `cached input`,
/// `audio output`, ...) are tokens; `images`, `characters`, `audio seconds`, `... sessions` and
/// `... tool calls` their own units, as the usage reports count them. A kind not known here
/// counts with tokens.
pub(crate) fn line_item_unit(kind: &str) -> Unit {
    let kind = kind.to_ascii_lowercase();
    if kind.ends_with("input") || kind.ends_with("output") {
        Unit::Tokens
    } else if kind == "images" {
        Unit::Images
    } else if kind == "characters" {
        Unit::Characters
    } else if kind.ends_with("seconds") {
        Unit::Seconds
    } else if kind.ends_with("sessions") {
        Unit::Sessions
    } else if kind.ends_with("calls") {
        Unit::Requests
    } else {
        Unit::Tokens
    }
}

pub(crate) fn split_line_item(item: &str) -> (Option<String>, String) {
    match item.split_once(", ") {
        Some((model, kind)) if !model.trim().is_empty() && !kind.trim().is_empty() => {
            (Some(model.trim().to_owned()), kind.trim().to_owned())
        }
        _ => (None, item.to_owned()),
    }
}

impl OpenaiProvider {
    /// Costs from `GET /v1/organization/costs`: daily buckets grouped by project and line
    /// item, the agent filter sent as `project_ids[]` (or applied here when it names
    /// [`UNATTRIBUTED_AGENT`]).
    async fn cost_answer(
        &self,
        query: &UsageQuery,
        sent: &AtomicU64,
    ) -> Result<CostBatch, ProviderError> {
        check_daily_cost_query(&self.name, "OpenAI", query)?;
        let projects = self.project_filter(query);
        if query.windows.is_empty() || projects.as_ref().is_some_and(BTreeSet::is_empty) {
            return Ok(CostBatch::default());
        }
        let ranges = BucketWidth::plan(&query.windows, &[BucketWidth::Day], cost_limit);
        if ranges.len() > self.max_calls as usize {
            return Err(self.too_many_calls(ranges.len(), &ranges, 1, Some(())));
        }
        self.client
            .reserve(u32::try_from(ranges.len()).unwrap_or(u32::MAX))
            .await?;
        let local_projects = projects.clone().filter(|p| p.contains(UNATTRIBUTED_AGENT));
        let sent_projects = projects.filter(|_| local_projects.is_none());
        let local = local_projects.as_ref();
        let mut base: Vec<(&str, String)> = vec![
            ("bucket_width", "1d".to_owned()),
            ("group_by[]", "project_id".to_owned()),
            ("group_by[]", "line_item".to_owned()),
        ];
        base.extend(
            sent_projects
                .iter()
                .flatten()
                .map(|p| ("project_ids[]", p.clone())),
        );
        let base = &base;
        let pages: Vec<Vec<CostPoint>> = stream::iter(ranges.clone())
            .map(|piece| self.read_cost_range(query, base, local, piece, sent))
            .buffer_unordered(self.max_concurrency)
            .try_collect()
            .await?;
        CostBatch {
            points: pages.into_iter().flatten().collect(),
            upstream_requests: sent.load(Ordering::Relaxed),
            notes: Vec::new(),
        }
        .compact()
        .ok_or_else(|| ProviderError::Decode {
            source_name: self.name.clone(),
            message: "OpenAI's cost amounts add up beyond what a decimal holds".to_owned(),
        })
    }

    /// Reads the costs of one request range, following `next_page`, and maps its rows.
    async fn read_cost_range(
        &self,
        q: &UsageQuery,
        base: &[(&str, String)],
        local: Option<&BTreeSet<String>>,
        (width, range): Piece,
        sent: &AtomicU64,
    ) -> Result<Vec<CostPoint>, ProviderError> {
        let mut params: Vec<(&str, String)> = vec![
            ("start_time", range.start.timestamp().to_string()),
            ("end_time", range.end.timestamp().to_string()),
            ("limit", width.count(range).clamp(1, 180).to_string()),
        ];
        params.extend(base.iter().cloned());
        let max_pages = usize::try_from(width.count(range))
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let decode = |message: String| ProviderError::Decode {
            source_name: self.name.clone(),
            message,
        };
        let buckets: Vec<CostsBucket> = self
            .read_pages(&["costs"], &params, max_pages, sent)
            .await?;
        let mut points = Vec::new();
        for bucket in buckets {
            let Some(window) = window_at(q, bucket.start_time) else {
                continue;
            };
            for r in bucket.results {
                let project = r
                    .project_id
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .unwrap_or(UNATTRIBUTED_AGENT);
                if local.is_some_and(|wanted| !wanted.contains(project)) {
                    continue;
                }
                let amount = r
                    .amount
                    .ok_or_else(|| decode("an OpenAI cost result has no `amount`".to_owned()))?;
                let currency = amount
                    .currency
                    .as_deref()
                    .map(Currency::parse)
                    .transpose()
                    .map_err(|e| decode(format!("OpenAI cost currency: {e}")))?
                    .ok_or_else(|| decode("an OpenAI cost amount has no `currency`".to_owned()))?;
                let Some(value) = amount.value else {
                    return Err(decode("an OpenAI cost amount has no `value`".to_owned()));
                };
                let money = Money::from_major(value.get(), currency)
                    .map_err(|e| decode(format!("OpenAI cost amount: {e}")))?;
                let (model, usage_type) = match r.line_item.as_deref() {
                    Some(item) => {
                        let (m, t) = split_line_item(item);
                        (m, Some(t))
                    }
                    None => (None, None),
                };
                let unit = usage_type.as_deref().map_or(Unit::Tokens, line_item_unit);
                points.push(CostPoint {
                    window,
                    key: PointKey {
                        agent: Some(project.to_owned()),
                        user: None,
                        conversation: None,
                        usage_type,
                        model,
                    }
                    .project(&q.dimensions),
                    unit,
                    money,
                });
            }
        }
        Ok(points)
    }
}

/// What every request of one query shares.
struct Plan<'a> {
    query: &'a UsageQuery,
    /// `(parameter, applies to every endpoint, value)`.
    filters: &'a [(&'static str, bool, String)],
    /// The projects whose rows are kept, when the agent filter is applied here (it names
    /// [`UNATTRIBUTED_AGENT`]); no `project_ids[]` is sent then.
    local_projects: Option<&'a BTreeSet<String>>,
    names: &'a HashMap<String, Option<String>>,
    sent: &'a AtomicU64,
}

#[async_trait]
impl UsageProvider for OpenaiProvider {
    fn describe(&self) -> SourceInfo {
        SourceInfo {
            name: self.name.clone(),
            provider: crate::KIND,
            attribution: Attribution::Exact,
            dimensions: BTreeSet::from([
                Dimension::Agent,
                Dimension::User,
                Dimension::Model,
                Dimension::UsageType,
            ]),
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

    /// Costs split by project (agent) and the model named in the line item.
    fn cost_dimensions(&self) -> Option<BTreeSet<Dimension>> {
        Some(BTreeSet::from([Dimension::Agent, Dimension::Model]))
    }

    async fn agents(&self) -> Result<Vec<Agent>, ProviderError> {
        let sent = AtomicU64::new(0);
        Ok(self.agent_list(false, &sent).await?.as_ref().clone())
    }

    async fn usage(&self, query: &UsageQuery) -> Result<UsageBatch, ProviderError> {
        let sent = AtomicU64::new(0);
        self.answer(query, &sent).await
    }

    async fn costs(&self, query: &UsageQuery) -> Result<Option<CostBatch>, ProviderError> {
        let sent = AtomicU64::new(0);
        self.cost_answer(query, &sent).await.map(Some)
    }
}
