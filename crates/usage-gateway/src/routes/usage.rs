//! `GET /v1/usage`: select the caller's sources, fan out concurrently under one deadline,
//! aggregate, render, and answer with ETag/304 and cache headers.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use chrono::Utc;
use usage_core::aggregate::{self, Costing, PointCost, SourcePoints};
use usage_core::{Bucket, CallLimit, Dimension, ProviderError, UsagePoint, Window};
use xxhash_rust::xxh3::Xxh3;

use crate::auth::{Access, AgentScope, Caller};
use crate::error::{ApiError, ParamError, Problem};
use crate::fetch::{Shape, Source, WindowEntry};
use crate::model::{CostSource, QueryEcho, SourceEntry, SourceStatus};
use crate::query::{self, Fill, Format, UsageRequest};
use crate::render;
use crate::state::{AppState, Rendered};

/// One source the query touches, with what to ask of it.
struct Plan {
    source: Arc<Source>,
    /// What to ask the source, or the filter dimension (`user`, `model`) it cannot apply.
    shape: Result<Arc<Shape>, Dimension>,
    /// The dimensions the query keeps of this source (the shape's, before the provider widened
    /// them): what answers from the store are added up to. With prices, also those the prices
    /// match on, so that each point meets its price before the aggregation groups it.
    keep: BTreeSet<Dimension>,
    /// Where this source's cost comes from for this query.
    costing: CostPlan,
}

/// Where a source's cost comes from for one query.
enum CostPlan {
    /// The vendor's cost API, split by these dimensions (agent and model), each day's cost
    /// allocated to the usage of its agent, model and unit; the note says how, when the query
    /// groups finer.
    Vendor(BTreeSet<Dimension>, Option<String>),
    /// The price table; the note says why the vendor's costs are not used, when it has some.
    Prices(Option<String>),
    /// No cost; the note says why the vendor's costs are not used, when it has some.
    None(Option<String>),
}

/// Decides whether a source's cost API can answer the query: it reports whole UTC days split
/// by `cost_dims`, and a share of a day's cost cannot be told for one user without every
/// user's usage. `Ok` holds the note on rows grouped finer than `cost_dims` (their cost is
/// allocated); `Err` says why the cost API cannot answer.
fn vendor_costs(
    vendor: &str,
    cost_dims: &BTreeSet<Dimension>,
    keep: &BTreeSet<Dimension>,
    req: &UsageRequest,
    now: chrono::DateTime<Utc>,
) -> Result<Option<String>, String> {
    if !usage_core::buckets::BucketWidth::Day.fits(&cost_windows(&req.windows, now)) {
        return Err(format!(
            "{vendor}'s costs are reported per UTC day, and this query's windows do not start \
             and end at UTC midnights (use tz=UTC, whole days or up to now, and bucket none, \
             day, week or month)"
        ));
    }
    if !req.users.is_empty() {
        return Err(format!(
            "{vendor}'s costs have no users, and a user's share of them cannot be told under a \
             user filter"
        ));
    }
    let finer: Vec<&str> = keep
        .iter()
        .filter(|d| !cost_dims.contains(d))
        .map(|d| d.as_str())
        .collect();
    let by: Vec<&str> = cost_dims.iter().map(|d| d.as_str()).collect();
    Ok((!finer.is_empty()).then(|| {
        format!(
            "{vendor}'s costs are split by UTC day, {} and unit only: cost by {} is each \
             day's cost of its {} and unit, allocated in proportion to each row's quantity \
             (total_tokens)",
            by.join(", "),
            finer.join(" and "),
            by.join(" and "),
        )
    }))
}

/// Picks the caller's sources after filters and access; 400 for unknown names, 403 for names
/// outside the caller's access. No upstream call happens here.
///
/// A caller who may not see every source gets 403 for an unknown name too, so that 400-vs-403
/// cannot be used to learn which sources exist beyond its access.
fn plan(req: &UsageRequest, access: &Access, state: &AppState) -> Result<Vec<Plan>, ApiError> {
    let now = Utc::now();
    let mut bad = Vec::new();
    let mut forbidden = Vec::new();
    let sees_all = state.sources.keys().all(|s| access.sources.contains_key(s));
    let known = |s: &str| state.sources.contains_key(s) || !sees_all;
    for s in &req.sources {
        if !known(s) {
            bad.push(ParamError::new("source", format!("unknown source `{s}`")));
        } else if !access.sources.contains_key(s) {
            forbidden.push(format!("source `{s}`"));
        }
    }
    // Agent filter: `<source>/<id>` applies to that source, a bare id to every source.
    let mut qualified: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut bare: BTreeSet<String> = BTreeSet::new();
    for a in &req.agents {
        match a.split_once('/') {
            Some((src, id)) if known(src) => {
                if !access.allows_agent(src, id) {
                    forbidden.push(format!("agent `{a}`"));
                }
                qualified.entry(src).or_default().insert(id.to_owned());
            }
            // Agent ids of the supported vendors never contain `/`, so `x/y` always names a source.
            Some((src, _)) => {
                bad.push(ParamError::new(
                    "agent",
                    format!("unknown source `{src}` in `{a}`"),
                ));
            }
            _ => {
                if !access.sources.keys().any(|src| access.allows_agent(src, a)) {
                    forbidden.push(format!("agent `{a}`"));
                }
                bare.insert(a.clone());
            }
        }
    }
    if !bad.is_empty() {
        return Err(ApiError::BadRequest(bad));
    }
    if !forbidden.is_empty() {
        return Err(ApiError::Forbidden(format!(
            "outside this caller's access: {}",
            forbidden.join(", ")
        )));
    }
    let mut out = Vec::new();
    for (name, scope) in &access.sources {
        let Some(source) = state.sources.get(name) else {
            continue;
        };
        if !req.sources.is_empty() && !req.sources.contains(name) {
            continue;
        }
        if !req.providers.is_empty() && !req.providers.contains(&source.info.provider) {
            continue;
        }
        let mut agents: Option<BTreeSet<String>> = if req.agents.is_empty() {
            None
        } else {
            let mut set = bare.clone();
            set.extend(qualified.get(name.as_str()).into_iter().flatten().cloned());
            if set.is_empty() {
                continue; // every agent named belongs to other sources
            }
            Some(set)
        };
        if let AgentScope::Only(allowed) = scope {
            agents = Some(match agents {
                None => allowed.clone(),
                Some(a) => a.intersection(allowed).cloned().collect(),
            });
        }
        let set =
            |v: &[String]| (!v.is_empty()).then(|| v.iter().cloned().collect::<BTreeSet<_>>());
        let (users, models) = (set(&req.users), set(&req.models));
        // A filter the source cannot apply skips it: counting its usage unfiltered would be wrong.
        let unapplicable = [(Dimension::User, &users), (Dimension::Model, &models)]
            .into_iter()
            .find(|(d, f)| f.is_some() && !source.info.filters.contains(d))
            .map(|(d, _)| d);
        let provider = source.info.provider.as_str();
        let mut keep: BTreeSet<Dimension> = req.group_by.iter().copied().collect();
        keep.retain(|d| source.info.dimensions.contains(d));
        // The vendor's costs where its cost API can answer; else the price table, if it
        // covers the source.
        let cost_dims = source.provider.cost_dimensions();
        let vendor = cost_dims
            .as_ref()
            .map(|dims| vendor_costs(provider, dims, &keep, req, now));
        let costing = match (vendor, cost_dims) {
            (Some(Ok(note)), Some(dims)) => {
                // Allocation needs the usage of each agent and model.
                keep.extend(dims.iter().copied());
                keep.retain(|d| source.info.dimensions.contains(d));
                CostPlan::Vendor(dims, note)
            }
            (other, _) => {
                let why = other.and_then(Result::err);
                if state.prices.covers(provider, name) {
                    keep.extend(state.prices.dimensions(provider, name));
                    keep.retain(|d| source.info.dimensions.contains(d));
                    CostPlan::Prices(why.map(|w| {
                        format!("cost from [[prices]], not the vendor's cost report: {w}")
                    }))
                } else {
                    CostPlan::None(why.map(|w| {
                        format!("no cost: {w}; a [[prices]] entry for this source would price it")
                    }))
                }
            }
        };
        let shape = match unapplicable {
            Some(d) => Err(d),
            None => Ok(Arc::new(Shape {
                // Cached by what the vendor requests depend on; the aggregation regroups.
                dims: source.provider.fetch_dimensions(&keep),
                agents,
                users,
                models,
            })),
        };
        out.push(Plan {
            source: source.clone(),
            shape,
            keep,
            costing,
        });
    }
    Ok(out)
}

/// How a source's points are costed in its outcome.
enum Costed {
    /// Not at all.
    None,
    /// By the price table or the vendor's costs: the points, each in its query window (and
    /// points without usage that carry costs no usage took), and what each cost (the outcome's
    /// `points` are then not aggregated).
    Each(Vec<UsagePoint>, Vec<PointCost>),
}

/// The outcome of one source.
struct Outcome {
    source: Arc<Source>,
    entry: SourceEntry,
    points: Vec<Arc<WindowEntry>>,
    /// How the points are costed.
    costed: Costed,
    /// Why the source refused the query as asked (an invalid query, or one above a limit of
    /// the source): a 400 when every touched source refused, the source's error otherwise.
    invalid: Option<String>,
    /// The source answered without part of its data (its notes say what).
    partial: bool,
}

/// `GET /v1/usage`.
#[utoipa::path(
    get,
    path = "/v1/usage",
    tag = "usage",
    operation_id = "getUsage",
    summary = "Token usage across every source the caller may see",
    description = "Fans out to the caller's sources concurrently, normalizes and aggregates. \
A single source failing, or unable to serve the query as asked (e.g. above its per-query limit of \
vendor calls: a `source_limit` problem saying what fits), is reported in `sources[]` (and \
`complete: false`), not as an HTTP error.\n\n\
This operation is documented as JSON only, so that generated clients type its 200 as \
`UsageResponse`; the same data as CSV is `GET /v1/usage.csv` (`getUsageCsv`). For callers of API \
v1, `format=csv` or `Accept: text/csv` still answer the CSV of `getUsageCsv` here too; `format` \
is documented with its JSON value only, so that a client generated from this document never \
receives CSV from this operation.",
    params(
        crate::query::UsageParams,
        ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier answer; 304 when unchanged."),
        ("Cache-Control" = Option<String>, Header, description = "`no-cache` refetches from the vendors (still coalesced), bypassing the providers' own caches (scans, agent lists) too."),
    ),
    responses(
        (status = 200, description = "Usage rows, totals and per-source status", headers(
            ("ETag" = String, description = "Strong entity tag of the answer's data (query, totals, rows, per-source status and attribution), not of its fetch metadata, so replicas with the same data agree"),
            ("Cache-Control" = String, description = "private, max-age=N"),
            ("x-usage-complete" = String, description = "`true` when every touched source is `ok` (the body's `complete`), else `false`"),
        ), content(
            (crate::model::UsageResponseSchema = "application/json", example = json!({
                "query": {"start": "2026-11-01T00:00:00Z", "end": "2026-11-08T00:00:00Z", "tz": "UTC", "bucket": "day", "group_by": ["source", "agent"], "filters": {}, "fill": "none", "bucket_edges": "utc"},
                "complete": true,
                "totals": [{"unit": "tokens", "input_tokens": 1200, "output_tokens": 300, "other_tokens": 0, "total_tokens": 1500}],
                "rows": [{"bucket_start": "2026-11-01T00:00:00Z", "bucket_end": "2026-11-02T00:00:00Z", "source": "do-prod", "agent": "c441bf77-81d6-11ef-bf8f-4e013e2ddde4", "agent_name": "support-agent", "unit": "tokens", "input_tokens": 1000, "output_tokens": 250, "other_tokens": 0, "total_tokens": 1250}],
                "sources": [{"source": "do-prod", "provider": "digitalocean", "status": "ok", "attribution": "exact", "cached": false, "fetched_at": "2026-11-08T10:00:00Z", "upstream_requests": 7, "duration_ms": 41.3}]
            })),
        )),
        (status = 304, description = "Not modified (If-None-Match matched)"),
        (status = 400, description = "Invalid parameters, each named in `errors`; also a query that every touched source refuses (e.g. above each one's call limit)", content((crate::error::Problem = "application/problem+json", examples(
            ("invalid_parameters" = (summary = "Several bad parameters, each named", value = json!({
                "type": "urn:usage-gateway:problem:invalid_parameter",
                "title": "Invalid query parameter",
                "status": 400,
                "detail": "tz: `Mars/Base` is not an IANA time zone name (e.g. `UTC`, `Europe/Berlin`); end: must be after `start`; group_by: unknown dimension `team`; expected one of source, provider, agent, user, conversation, usage_type, model",
                "errors": [
                    {"parameter": "tz", "message": "`Mars/Base` is not an IANA time zone name (e.g. `UTC`, `Europe/Berlin`)"},
                    {"parameter": "end", "message": "must be after `start`"},
                    {"parameter": "group_by", "message": "unknown dimension `team`; expected one of source, provider, agent, user, conversation, usage_type, model"}
                ],
                "instance": "urn:request-id:4f0c2a9e-2b7d-4c1e-9a3f-0d6b8e5c7a21"
            }))),
            ("unknown_source" = (summary = "A source that does not exist (callers who see every source)", value = json!({
                "type": "urn:usage-gateway:problem:invalid_parameter",
                "title": "Invalid query parameter",
                "status": 400,
                "detail": "source: unknown source `do-staging`",
                "errors": [{"parameter": "source", "message": "unknown source `do-staging`"}],
                "instance": "urn:request-id:9b1d7e35-6a0f-4c8e-b2d4-71e3a5c9f086"
            }))),
            ("query_too_long" = (summary = "The query string is longer than `server.max_query_bytes`", value = json!(crate::openapi::examples::query_too_long())))
        )))),
        (status = 401, description = "Missing or invalid bearer token", body = crate::error::Problem, content_type = "application/problem+json", example = crate::openapi::examples::unauthorized),
        (status = 403, description = "Insufficient scope, or a source/agent outside the caller's access. A caller who may not see every source also gets 403 (not 400) for a source name that does not exist, so that the answer never reveals which sources exist.", content((crate::error::Problem = "application/problem+json", examples(
            ("outside_access" = (summary = "A source or agent outside the caller's access", value = json!({
                "type": "urn:usage-gateway:problem:forbidden",
                "title": "Forbidden",
                "status": 403,
                "detail": "outside this caller's access: source `kibana-marketing`, agent `do-prod/d7a2e410-9c3b-11ef-bf8f-4e013e2ddde4`",
                "instance": "urn:request-id:4f0c2a9e-2b7d-4c1e-9a3f-0d6b8e5c7a21"
            }))),
            ("missing_scope" = (summary = "The token lacks the required scope", value = json!(crate::openapi::examples::forbidden())))
        )))),
        (status = 502, description = "Every touched source failed and nothing stale exists", body = crate::error::Problem, content_type = "application/problem+json", example = json!({
            "type": "urn:usage-gateway:problem:all_sources_failed",
            "title": "Every source failed",
            "status": 502,
            "detail": "No source answered and no cached data exists; see `sources` for each failure.",
            "sources": [
                {"source": "do-prod", "provider": "digitalocean", "status": "error", "attribution": "exact", "cached": false, "upstream_requests": 3, "duration_ms": 1412.6, "error": {"type": "urn:usage-gateway:problem:upstream_error", "title": "Vendor request failed", "status": 502, "detail": "do-prod: the vendor answered HTTP 503"}},
                {"source": "kibana-marketing", "provider": "kibana", "status": "error", "attribution": "conversation", "cached": false, "upstream_requests": 0, "duration_ms": 0.1, "error": {"type": "urn:usage-gateway:problem:circuit_open", "title": "Source circuit open", "status": 503, "detail": "kibana-marketing: circuit open after repeated failures; next attempt in 21s", "retry_after": 21}}
            ],
            "instance": "urn:request-id:4f0c2a9e-2b7d-4c1e-9a3f-0d6b8e5c7a21"
        })),
        (status = 504, description = "Every touched source timed out", body = crate::error::Problem, content_type = "application/problem+json", example = json!({
            "type": "urn:usage-gateway:problem:all_sources_timed_out",
            "title": "Every source timed out",
            "status": 504,
            "detail": "No source answered and no cached data exists; see `sources` for each failure.",
            "sources": [
                {"source": "do-prod", "provider": "digitalocean", "status": "timeout", "attribution": "exact", "cached": false, "upstream_requests": 0, "duration_ms": 10000.3, "error": {"type": "urn:usage-gateway:problem:timeout", "title": "Source timed out", "status": 504, "detail": "do-prod: timed out after 10000ms"}},
                {"source": "kibana-marketing", "provider": "kibana", "status": "timeout", "attribution": "conversation", "cached": false, "upstream_requests": 0, "duration_ms": 10000.2, "error": {"type": "urn:usage-gateway:problem:timeout", "title": "Source timed out", "status": 504, "detail": "kibana-marketing: timed out after 10000ms"}}
            ],
            "instance": "urn:request-id:4f0c2a9e-2b7d-4c1e-9a3f-0d6b8e5c7a21"
        })),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn get_usage(
    http: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    usage(http, caller, state, None).await
}

/// `GET /v1/usage.csv`: `GET /v1/usage` with the format fixed to CSV. Its parameters (all but
/// `format`) and its error responses are `getUsage`'s, copied by `crate::openapi`.
#[utoipa::path(
    get,
    path = "/v1/usage.csv",
    tag = "usage",
    operation_id = "getUsageCsv",
    summary = "Token usage as CSV",
    description = "The rows of `GET /v1/usage` as CSV (RFC 4180: a header row, then one line per \
row, the same column names, RFC 3339 times in UTC unless `bucket_edges=local`; text cells starting \
with `=`, `+`, `-`, `@`, a tab or CR get a leading `'` against formula injection); the same query parameters except `format`, the \
same caching, ETag and error responses (problem+json). Answered by the same code as \
`GET /v1/usage?format=csv`, which it exists beside so that generated clients get a JSON type for \
`getUsage` and text for this operation. `x-usage-complete` says whether every touched source \
answered, which the CSV body cannot.",
    responses(
        (status = 200, description = "Usage rows as CSV", headers(
            ("ETag" = String, description = "Strong entity tag of the answer's data (query, totals, rows, per-source status and attribution), not of its fetch metadata, so replicas with the same data agree"),
            ("Cache-Control" = String, description = "private, max-age=N"),
            ("x-usage-complete" = String, description = "`true` when every touched source is `ok`, else `false` (some rows may be missing)"),
            ("Content-Disposition" = String, description = "`attachment; filename=\"usage-<start>-<end>.csv\"`, the range in basic ISO 8601 UTC (e.g. `usage-20261101T000000Z-20261108T000000Z.csv`)"),
        ), content(
            (String = "text/csv", example = "source,agent,agent_name,unit,input_tokens,output_tokens,other_tokens,total_tokens\ndo-prod,c441bf77-81d6-11ef-bf8f-4e013e2ddde4,support-agent,tokens,1000,250,0,1250\n"),
        )),
        (status = 304, description = "Not modified (If-None-Match matched)"),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn get_usage_csv(
    http: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    usage(http, caller, state, Some(Format::Csv)).await
}

/// `GET /v1/usage/focus`: `GET /v1/usage` as a FOCUS 1.2 cost-and-usage CSV. Its parameters
/// (all but `format`) and its error responses are `getUsage`'s, copied by `crate::openapi`.
#[utoipa::path(
    get,
    path = "/v1/usage/focus",
    tag = "usage",
    operation_id = "getUsageFocus",
    summary = "Cost and usage as a FOCUS 1.2 CSV",
    description = "The answer of `GET /v1/usage` as a FinOps FOCUS 1.2 cost-and-usage dataset (CSV \
with a header row; also `GET /v1/usage?format=focus`): one line per row and currency of its \
`cost` — rows without cost are charges of nothing and are left out, their quantities are in \
`x-usage-unpriced`. Rows are grouped by `source` (the billing account) besides `group_by`. \
Columns: BilledCost, EffectiveCost, ListCost and ContractedCost (the same exact amount: no \
discounts are known), BillingCurrency, BillingAccountId/BillingAccountName (the source), \
BillingPeriodStart/End (the UTC month of the charge), ChargePeriodStart/End (the bucket, or the \
range without buckets; UTC), ChargeCategory `Usage`, ChargeFrequency `Usage-Based`, \
ChargeDescription, ConsumedQuantity/ConsumedUnit (the row's `total_tokens` in its unit: \
`Tokens`, `Credits`, ...), PricingQuantity/PricingUnit (the part a cost covers), ProviderName, \
PublisherName and InvoiceIssuerName (the vendor), ServiceName, ServiceCategory `AI and Machine \
Learning`, ServiceSubcategory `Generative AI`, ResourceId (`<source>/<agent>`), ResourceName and \
ResourceType (`Agent`) when `agent` is grouped, Tags (a JSON object of the grouped dimensions, exact), \
x_UnpricedQuantity; empty ChargeClass, CommitmentDiscountStatus and InvoiceId. Text columns are \
ASCII (other characters become `?`; Tags keeps them, escaped).",
    responses(
        (status = 200, description = "FOCUS 1.2 lines", headers(
            ("ETag" = String, description = "Strong entity tag of the answer's data"),
            ("Cache-Control" = String, description = "private, max-age=N"),
            ("x-usage-complete" = String, description = "`true` when every touched source is `ok`, else `false`"),
            ("x-usage-unpriced" = String, description = "Quantities no cost covers, per unit (`200 tokens, 5 images`); absent when everything is costed"),
            ("Content-Disposition" = String, description = "`attachment; filename=\"usage-<start>-<end>-focus.csv\"`"),
        ), content(
            (String = "text/csv", example = "BilledCost,BillingAccountId,BillingAccountName,BillingCurrency,BillingPeriodEnd,BillingPeriodStart,ChargeCategory,ChargeClass,ChargeDescription,ChargeFrequency,ChargePeriodEnd,ChargePeriodStart,CommitmentDiscountStatus,ConsumedQuantity,ConsumedUnit,ContractedCost,EffectiveCost,InvoiceId,InvoiceIssuerName,ListCost,PricingQuantity,PricingUnit,ProviderName,PublisherName,ResourceId,ResourceName,ResourceType,ServiceCategory,ServiceName,ServiceSubcategory,Tags,x_UnpricedQuantity\n1.23456,openai,openai,USD,2026-12-01T00:00:00Z,2026-11-01T00:00:00Z,Usage,,\"OpenAI tokens, agent proj_a\",Usage-Based,2026-11-02T00:00:00Z,2026-11-01T00:00:00Z,,420000.0,Tokens,1.23456,1.23456,,OpenAI,1.23456,420000.0,Tokens,OpenAI,OpenAI,openai/proj_a,proj_a,Agent,AI and Machine Learning,OpenAI API,Generative AI,\"{\"\"agent\"\":\"\"proj_a\"\",\"\"source\"\":\"\"openai\"\"}\",0\n"),
        )),
        (status = 304, description = "Not modified (If-None-Match matched)"),
    ),
    security(("bearer_jwt" = []))
)]
pub async fn get_usage_focus(
    http: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    usage(http, caller, state, Some(Format::Focus)).await
}

/// A query answered: each touched source's entry, whether every one answered in full, and the
/// aggregation.
pub(crate) struct Answer {
    /// One entry per touched source.
    pub entries: Vec<SourceEntry>,
    /// Every touched source answered in full.
    pub complete: bool,
    /// Rows and totals, grouped by the `group_by` asked.
    pub agg: aggregate::Aggregation,
}

/// Answers `req` over the sources `access` may see, grouped by `group_by`: the fan-out, the
/// per-source outcomes and the aggregation. 400 when every touched source refuses the query,
/// 502/504 when every one failed or timed out.
pub(crate) async fn answer(
    req: &UsageRequest,
    access: &Access,
    refresh: bool,
    group_by: &[Dimension],
    state: &AppState,
) -> Result<Answer, ApiError> {
    let plans = plan(req, access, state)?;
    let bucketed = req.bucket != usage_core::Bucket::None;
    answer_planned(plans, req, refresh, group_by, bucketed, state).await
}

async fn answer_planned(
    plans: Vec<Plan>,
    req: &UsageRequest,
    refresh: bool,
    group_by: &[Dimension],
    bucketed: bool,
    state: &AppState,
) -> Result<Answer, ApiError> {
    let deadline = tokio::time::Instant::now() + state.server.request_timeout;
    let outcomes = futures::future::join_all(
        plans
            .into_iter()
            .map(|p| run(p, req, refresh, deadline, state)),
    )
    .await;

    // A source that cannot serve the query as asked is data (its entry says why, `complete`
    // turns false); only a query that no touched source can serve is a 400.
    let refused_by_all = outcomes.iter().any(|o| o.invalid.is_some())
        && outcomes
            .iter()
            .all(|o| o.invalid.is_some() || o.entry.status == SourceStatus::Skipped);
    if refused_by_all {
        return Err(ApiError::BadRequest(
            outcomes
                .iter()
                .filter_map(|o| {
                    o.invalid
                        .as_ref()
                        .map(|m| ParamError::new("bucket", format!("{}: {m}", o.entry.source)))
                })
                .collect(),
        ));
    }

    let touched = outcomes.len();
    let answered = outcomes
        .iter()
        .filter(|o| matches!(o.entry.status, SourceStatus::Ok | SourceStatus::Stale))
        .count();
    let failed: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| matches!(o.entry.status, SourceStatus::Error | SourceStatus::Timeout))
        .collect();
    let entries: Vec<SourceEntry> = outcomes.iter().map(|o| o.entry.clone()).collect();
    if touched > 0 && answered == 0 && !failed.is_empty() {
        let all_timeout = failed
            .iter()
            .all(|o| o.entry.status == SourceStatus::Timeout)
            && failed.len() == touched;
        return Err(ApiError::AllSourcesFailed {
            status: if all_timeout { 504 } else { 502 },
            sources: entries,
        });
    }
    // A source that answered without part of its data leaves the answer incomplete too.
    let complete = outcomes
        .iter()
        .all(|o| o.entry.status == SourceStatus::Ok && !o.partial);

    let mut inputs = Vec::new();
    for o in &outcomes {
        let info = &o.source.info;
        let entries = |costing| {
            o.points.iter().map(move |e| SourcePoints {
                info,
                points: &e.points,
                costing,
            })
        };
        match &o.costed {
            Costed::None => inputs.extend(entries(Costing::None)),
            Costed::Each(points, costs) => inputs.push(SourcePoints {
                info,
                points,
                costing: Costing::Each(costs),
            }),
        }
    }
    let agg = aggregate::aggregate(inputs, group_by, bucketed);
    Ok(Answer {
        entries,
        complete,
        agg,
    })
}

/// Answers a usage request, in `forced` format when the route fixes one (a `format` parameter
/// naming another is a 400), else as `format` or `Accept` ask.
async fn usage(
    http: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    forced: Option<Format>,
) -> Result<HttpResponse, ApiError> {
    let now = Utc::now();
    let raw = http.query_string();
    let req = if let Some(req) = state.parsed.get(raw).await {
        req
    } else {
        let req = Arc::new(query::parse(raw, &state.server, &state.registry, now)?);
        if req.timeless {
            state.parsed.insert(raw.to_owned(), Arc::clone(&req)).await;
        }
        req
    };
    let format = match forced {
        Some(f) if req.format.is_none_or(|asked| asked == f) => f,
        Some(_) => return Err(forced_format_conflict(http.path())),
        None => req.format.unwrap_or_else(|| negotiate(&http)),
    };
    let plans = plan(&req, &caller.access, &state)?;
    let refresh = no_cache(&http);
    let key = response_key(&req, &caller, format);
    if !refresh && let Some(r) = state.responses.get(&key).await {
        remember(&http, &state, &caller, &req, &r);
        return Ok(respond(&http, &r));
    }

    // FOCUS lines belong to a billing account (the source): its rows are grouped by source too.
    let group_by: Vec<Dimension> =
        if format == Format::Focus && !req.group_by.contains(&Dimension::Source) {
            std::iter::once(Dimension::Source)
                .chain(req.group_by.iter().copied())
                .collect()
        } else {
            req.group_by.clone()
        };
    // FOCUS lines lie within one billing period (a UTC month): their windows are cut at the
    // months' starts, and each part is a line's charge period.
    let focus_req;
    let (asked, bucketed): (&UsageRequest, bool) = if format == Format::Focus {
        focus_req = UsageRequest {
            windows: cut(&req.windows, &utc_edges(req.range, Bucket::Month)),
            ..(*req).clone()
        };
        (&focus_req, true)
    } else {
        (&req, req.bucket != usage_core::Bucket::None)
    };
    let Answer {
        entries,
        complete,
        mut agg,
    } = answer_planned(plans, asked, refresh, &group_by, bucketed, &state).await?;
    if bucketed && req.fill == Fill::Zero {
        aggregate::fill_zero(&mut agg, &req.windows, MAX_FILLED_ROWS).map_err(|needed| {
            ApiError::BadRequest(vec![ParamError::new(
                "fill",
                format!(
                    "fill=zero would give {needed} rows (buckets × groups), above {MAX_FILLED_ROWS}; \
                     use a coarser bucket, a shorter range, fewer group_by dimensions or filters"
                ),
            )])
        })?;
    }

    let echo = QueryEcho {
        start: render::ts(req.range.start),
        end: render::ts(req.range.end),
        tz: req.tz.name().to_owned(),
        bucket: req.bucket.as_str().to_owned(),
        group_by: req.group_by.iter().map(|d| d.as_str().to_owned()).collect(),
        filters: req.filters(),
        fill: req.fill.as_str().to_owned(),
        bucket_edges: if req.local_edges { "local" } else { "utc" }.to_owned(),
    };
    let layout = render::Layout {
        group_by: &group_by,
        bucketed,
        local: req.local_edges.then_some(req.tz),
        money: entries
            .iter()
            .any(|e| e.cost_source.is_some_and(|c| c != CostSource::None)),
    };
    let (content_type, body, disposition) = match format {
        Format::Json => (
            "application/json",
            render::json(&echo, complete, &agg, &layout, &entries),
            None,
        ),
        Format::Csv => (
            "text/csv; charset=utf-8",
            render::csv(&agg, &layout).map_err(|e| ApiError::Internal(format!("csv: {e}")))?,
            Some(csv_disposition(&req, "")),
        ),
        Format::Focus => {
            let billing: BTreeMap<String, usage_core::plugin::Billing> = entries
                .iter()
                .filter_map(|e| {
                    let d = state.registry.get(e.provider.as_str())?;
                    Some((e.source.clone(), d.billing))
                })
                .collect();
            let ctx = render::FocusContext {
                range: req.range,
                billing: &billing,
            };
            (
                "text/csv; charset=utf-8",
                render::focus(&agg, &layout, &ctx)
                    .map_err(|e| ApiError::Internal(format!("focus: {e}")))?,
                Some(csv_disposition(&req, "-focus")),
            )
        }
    };
    let unpriced: Vec<String> = agg
        .total_costs
        .iter()
        .filter(|(_, c)| c.unpriced > 0)
        .map(|(unit, c)| format!("{} {}", c.unpriced, unit.as_str()))
        .collect();
    let unpriced = (format == Format::Focus && !unpriced.is_empty())
        .then(|| HeaderValue::from_str(&unpriced.join(", ")).ok())
        .flatten();
    let etag = render::etag(format.as_str(), &echo, complete, &agg, &layout, &entries);
    let open = req.windows.iter().any(|w| !state.cache.is_closed(w, now));
    let max_age = if open {
        state.cache_config.open_ttl
    } else {
        state.cache_config.closed_ttl
    }
    .as_secs()
    .min(state.cache_config.open_ttl.as_secs());
    let rendered = Arc::new(Rendered {
        content_type,
        content_disposition: disposition,
        unpriced,
        etag_header: HeaderValue::from_str(&etag)
            .map_err(|e| ApiError::Internal(format!("etag header: {e}")))?,
        cache_control: HeaderValue::from_str(&format!("private, max-age={max_age}"))
            .map_err(|e| ApiError::Internal(format!("cache-control header: {e}")))?,
        // Without the serializer's unused capacity, which the weigher would not see.
        body: Bytes::from(body.into_boxed_slice()),
        complete,
        expires_at: std::time::Instant::now() + state.cache_config.open_ttl,
        superseded: std::sync::atomic::AtomicBool::new(false),
    });
    if complete {
        if refresh && let Some(old) = state.responses.get(&key).await {
            // Hits remembered from the answer being replaced must not outlive it.
            old.superseded.store(true, Ordering::Release);
        }
        state.responses.insert(key, rendered.clone()).await;
        remember(&http, &state, &caller, &req, &rendered);
    }
    Ok(respond(&http, &rendered))
}

async fn run(
    plan: Plan,
    req: &UsageRequest,
    refresh: bool,
    deadline: tokio::time::Instant,
    state: &AppState,
) -> Outcome {
    let src = plan.source.clone();
    let started = Instant::now();
    let mut outcome = Outcome {
        source: src.clone(),
        entry: SourceEntry {
            source: src.info.name.clone(),
            provider: src.info.provider,
            status: SourceStatus::Ok,
            attribution: src.info.attribution,
            cached: false,
            fetched_at: None,
            upstream_requests: 0,
            duration_ms: 0.0,
            age_seconds: None,
            warnings: None,
            notes: Vec::new(),
            store_coverage: None,
            store_synced_at: None,
            attribution_resolution_seconds: None,
            error: None,
            vendor_bucket_width: None,
            cost_source: Some(match plan.costing {
                CostPlan::Vendor(..) => CostSource::Vendor,
                CostPlan::Prices(_) => CostSource::PriceTable,
                CostPlan::None(_) => CostSource::None,
            }),
        },
        points: Vec::new(),
        costed: Costed::None,
        invalid: None,
        partial: false,
    };
    let shape = match plan.shape {
        Ok(shape) => shape,
        Err(filter) => {
            outcome.entry.status = SourceStatus::Skipped;
            outcome.entry.cost_source = Some(CostSource::None);
            outcome.entry.error = Some(Problem::new(
                "filter_not_supported",
                "Source cannot apply a filter",
                400,
                format!(
                    "`{}` has no {filter}s, so the `{filter}` filter cannot be applied; the source \
                     was skipped",
                    src.info.name
                ),
            ));
            return outcome;
        }
    };
    // Prices change at instants inside the range: the windows are cut there, each part priced
    // by its prices, and the parts added back into their query window.
    let provider = src.info.provider.as_str();
    // So are they at UTC midnights for a vendor's cost report: each day's cost is shared out
    // over that day's usage.
    let changes = match plan.costing {
        CostPlan::Prices(_) => state.prices.changes(
            provider,
            &src.info.name,
            req.range,
            shape.agents.as_ref(),
            shape.models.as_ref(),
        ),
        CostPlan::Vendor(..) => utc_edges(req.range, Bucket::Day),
        CostPlan::None(_) => Vec::new(),
    };
    let agents = shape.agents.clone();
    let windows = cut(&req.windows, &changes);
    let ask = crate::stored::Ask {
        cache: &state.cache,
        source: &src,
        windows: &windows,
        shape,
        keep: &plan.keep,
        refresh,
        deadline,
    };
    // The vendor's costs are asked beside the usage, not after it.
    let vendor_costs = async {
        if let CostPlan::Vendor(dims, _) = &plan.costing {
            Some(
                state
                    .cache
                    // The plan checked that the last window may end with the current day.
                    .costs(
                        &src,
                        &cost_windows(&windows, chrono::DateTime::<Utc>::MIN_UTC),
                        dims.clone(),
                        agents,
                        refresh,
                        deadline,
                    )
                    .await,
            )
        } else {
            None
        }
    };
    let (result, mut vendor_costs) = futures::future::join(
        crate::stored::answer(state.store.as_deref(), ask),
        vendor_costs,
    )
    .await;
    outcome.entry.duration_ms = (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0;
    match result {
        Ok((answer, store_use)) => {
            outcome.entry.store_coverage = store_use
                .coverage
                .map(|c| (c * 10_000.0).round() / 10_000.0);
            outcome.entry.store_synced_at = store_use.synced_at.map(render::ts);
            if let Some(attribution) = store_use.attribution {
                outcome.entry.attribution = attribution;
            }
            if outcome.entry.attribution == usage_core::Attribution::Snapshot {
                outcome.entry.attribution_resolution_seconds =
                    store_use.resolution.map(|r| r.as_secs());
            }
            if let Some(stale) = &answer.stale {
                tracing::warn!(source = %src.info.name, kind = stale.error.kind(), age_s = stale.age.as_secs(), "serving stale data");
                outcome.entry.status = SourceStatus::Stale;
                outcome.entry.age_seconds = Some(stale.age.as_secs());
                outcome.entry.error = Some(Problem::from_provider(&stale.error));
            }
            outcome.entry.cached = answer.cached;
            outcome.entry.upstream_requests = answer.upstream_requests;
            outcome.entry.fetched_at = answer
                .entries
                .iter()
                .map(|e| e.fetched_at)
                .min()
                .map(render::ts);
            if answer.entries.iter().all(|e| e.warnings.is_some()) && !answer.entries.is_empty() {
                outcome.entry.warnings =
                    Some(answer.entries.iter().filter_map(|e| e.warnings).sum());
            }
            let mut notes: Vec<String> = answer
                .entries
                .iter()
                .flat_map(|e| e.notes.iter().cloned())
                .collect();
            notes.extend(store_use.notes);
            notes.sort();
            notes.dedup();
            outcome.entry.notes = notes;
            let mut widths: Vec<&str> = answer
                .entries
                .iter()
                .filter_map(|e| e.bucket_width.as_deref())
                .flat_map(|w| w.split(", "))
                .collect();
            // `1d` < `1h` < `1m` as text: coarsest first (an entry may list several).
            widths.sort_unstable();
            widths.dedup();
            outcome.entry.vendor_bucket_width = (!widths.is_empty()).then(|| widths.join(", "));
            outcome.partial = answer.entries.iter().any(|e| e.partial);
            match &plan.costing {
                CostPlan::Prices(note) => {
                    let (points, costs) = price(
                        state,
                        &src.info.name,
                        provider,
                        &req.windows,
                        &answer.entries,
                    );
                    outcome.entry.notes.extend(note.clone());
                    outcome.entry.notes.extend(unpriced_note(&points, &costs));
                    outcome.costed = Costed::Each(points, costs);
                }
                CostPlan::None(note) => outcome.entry.notes.extend(note.clone()),
                // Asked beside the usage for every vendor plan.
                CostPlan::Vendor(_, note) if let Some(costs) = vendor_costs.take() => match costs {
                    Ok((entry, cached)) => {
                        if !cached {
                            outcome.entry.upstream_requests += entry.batch.upstream_requests;
                            outcome.entry.cached = false;
                        }
                        outcome
                            .entry
                            .notes
                            .extend(entry.batch.notes.iter().cloned());
                        if req.range.end > Utc::now() - chrono::Duration::days(1) {
                            outcome.entry.notes.push(
                                "the vendor posts costs after usage: the cost of the last \
                                     24 hours may still grow"
                                    .to_owned(),
                            );
                        }
                        outcome.entry.notes.extend(note.clone());
                        let models = (!req.models.is_empty()).then_some(req.models.as_slice());
                        let (mut points, costs) = allocate(&answer.entries, &entry.batch, models);
                        fold(&mut points, &req.windows);
                        outcome.costed = Costed::Each(points, costs);
                    }
                    Err(e) => {
                        tracing::warn!(source = %src.info.name, kind = e.kind(), error = %e, "vendor costs failed");
                        let detail = Problem::from_provider(&e).detail;
                        outcome.entry.cost_source = Some(CostSource::None);
                        outcome.entry.notes.push(format!(
                            "no cost: the vendor's costs could not be read ({detail})"
                        ));
                        outcome.partial = true;
                    }
                },
                // Never: the costs are asked for every vendor plan.
                CostPlan::Vendor(..) => {}
            }
            outcome.entry.notes.sort();
            outcome.entry.notes.dedup();
            outcome.points = answer.entries;
        }
        Err(e) => {
            let mut problem = Problem::from_provider(&e);
            match &e {
                ProviderError::InvalidQuery { message, .. } => {
                    outcome.invalid = Some(message.clone());
                }
                ProviderError::SourceLimit { calls, message, .. } => {
                    let detail = if calls.agents_by_windows {
                        limit_detail(calls, req)
                    } else {
                        message.clone()
                    };
                    problem.detail = format!("{}: {detail}", src.info.name);
                    outcome.invalid = Some(detail);
                }
                _ => {}
            }
            tracing::warn!(source = %src.info.name, kind = e.kind(), error = %e, "source failed");
            outcome.entry.cost_source = Some(CostSource::None);
            outcome.entry.status = if matches!(e, ProviderError::Timeout { .. }) {
                src.record(Err(&e));
                SourceStatus::Timeout
            } else {
                SourceStatus::Error
            };
            outcome.entry.error = Some(problem);
        }
    }
    outcome
}

/// Cuts `windows` at `instants` (sorted), so that no part spans one.
fn cut(windows: &[Window], instants: &[chrono::DateTime<Utc>]) -> Vec<Window> {
    let mut out = Vec::with_capacity(windows.len() + instants.len());
    for w in windows {
        let mut start = w.start;
        for t in instants.iter().filter(|t| w.start < **t && **t < w.end) {
            out.push(Window::new(start, *t));
            start = *t;
        }
        out.push(Window::new(start, w.end));
    }
    out
}

/// Prices a source's points, each at its window's start (a window lies within one validity
/// period of every price, see [`cut`]), and puts each back into the query window that holds
/// its part.
fn price(
    state: &AppState,
    source: &str,
    provider: &str,
    windows: &[Window],
    entries: &[Arc<WindowEntry>],
) -> (Vec<UsagePoint>, Vec<PointCost>) {
    let n = entries.iter().map(|e| e.points.len()).sum();
    let (mut points, mut costs) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for p in entries.iter().flat_map(|e| e.points.iter()) {
        costs.push(state.prices.cost(provider, source, p, p.window.start));
        points.push(p.clone());
    }
    fold(&mut points, windows);
    (points, costs)
}

/// Puts each point of a cut window back into the query window that holds its part: the one
/// that starts last at or before the part's start.
fn fold(points: &mut [UsagePoint], windows: &[Window]) {
    for p in points {
        let i = windows.partition_point(|w| w.start <= p.window.start);
        if let Some(w) = i.checked_sub(1).and_then(|i| windows.get(i)) {
            p.window = *w;
        }
    }
}

/// The edges of UTC `bucket`s (days, months) strictly inside `range`: the starts of every
/// bucket of [`usage_core::time::buckets`] but the first.
fn utc_edges(range: Window, bucket: Bucket) -> Vec<chrono::DateTime<Utc>> {
    usage_core::time::buckets(range, chrono_tz::UTC, bucket, usize::MAX)
        .unwrap_or_default()
        .iter()
        .skip(1)
        .map(|w| w.start)
        .collect()
}

/// The windows to ask a daily cost report for, for usage `windows`: the same, but a last window
/// that ends inside a UTC day at most a minute before `now` (a query up to now), or after it,
/// ends at that day's end instead. Nothing after now has been used, so the day's cost so far is
/// the cost of its usage up to now (the cost report's bucket of the current day holds what was
/// posted so far).
fn cost_windows(windows: &[Window], now: chrono::DateTime<Utc>) -> Vec<Window> {
    let mut out = windows.to_vec();
    if let Some(last) = out.last_mut()
        && last.end + chrono::Duration::minutes(1) >= now
    {
        let day = usage_core::time::bucket_of(last.end, chrono_tz::UTC, Bucket::Day);
        if day.start != last.end {
            last.end = day.end;
        }
    }
    out
}

/// Allocates a vendor's costs to the usage points, both in the same windows (UTC days): each
/// cost (a day's, of an agent, a model and a unit) goes to the points of that day, agent, model
/// and unit in proportion to their
/// quantity (counters' total), the last one taking what the others leave, so that the parts add
/// up to the cost exactly; a cost no such usage took rides on a point without usage, and usage
/// no cost reached counts as unpriced. Costs of models outside `models` (a model filter the
/// cost API cannot apply) are left out.
fn allocate(
    entries: &[Arc<WindowEntry>],
    batch: &usage_core::CostBatch,
    models: Option<&[String]>,
) -> (Vec<UsagePoint>, Vec<PointCost>) {
    // By window start: a cost report's last window may end with its day where the usage's ends
    // now (see `cost_windows`).
    type Group<'a> = (
        chrono::DateTime<Utc>,
        Option<&'a str>,
        Option<&'a str>,
        usage_core::Unit,
    );
    let usage: Vec<&UsagePoint> = entries.iter().flat_map(|e| e.points.iter()).collect();
    let mut costs = vec![PointCost::default(); usage.len()];
    let mut groups: std::collections::HashMap<Group<'_>, (Vec<usize>, u64)> =
        std::collections::HashMap::new();
    for (i, p) in usage.iter().enumerate() {
        let g = groups
            .entry((
                p.window.start,
                p.key.agent.as_deref(),
                p.key.model.as_deref(),
                p.unit,
            ))
            .or_default();
        g.0.push(i);
        g.1 = g.1.saturating_add(p.counters.total());
    }
    let mut unallocated = Vec::new();
    for c in &batch.points {
        if models.is_some_and(|m| !c.key.model.as_ref().is_some_and(|x| m.contains(x))) {
            continue;
        }
        let group = (
            c.window.start,
            c.key.agent.as_deref(),
            c.key.model.as_deref(),
            c.unit,
        );
        let Some((members, quantity)) = groups.get(&group).filter(|(_, q)| *q > 0) else {
            unallocated.push(c);
            continue;
        };
        let whole = rust_decimal::Decimal::from(*quantity);
        let mut left = c.money.amount;
        for (n, &i) in members.iter().enumerate() {
            let part = if n + 1 == members.len() {
                Some(left)
            } else {
                c.money
                    .amount
                    .checked_mul(rust_decimal::Decimal::from(usage[i].counters.total()))
                    .and_then(|a| a.checked_div(whole))
            };
            let added = part.and_then(|part| {
                left -= part;
                costs[i].cost.add(usage_core::money::Money {
                    amount: part,
                    currency: c.money.currency,
                })
            });
            if added.is_none() {
                costs[i].overflowed = true;
            }
        }
    }
    // Usage the vendor reported no cost for is unpriced (free usage included: no cost covers it).
    for (c, p) in costs.iter_mut().zip(&usage) {
        if c.cost.is_empty() && !c.overflowed {
            c.unpriced = p.counters.total();
        }
    }
    let mut points: Vec<UsagePoint> = usage.into_iter().cloned().collect();
    for c in unallocated {
        points.push(UsagePoint {
            window: c.window,
            key: c.key.clone(),
            agent_name: None,
            unit: c.unit,
            counters: usage_core::Counters::default(),
        });
        let mut cost = PointCost::default();
        if cost.cost.add(c.money).is_none() {
            cost.overflowed = true;
        }
        costs.push(cost);
    }
    (points, costs)
}

/// Says how much of a source's usage no price covers, per unit, if any.
fn unpriced_note(points: &[UsagePoint], costs: &[PointCost]) -> Option<String> {
    let mut by_unit: BTreeMap<usage_core::Unit, u64> = BTreeMap::new();
    for (p, c) in points.iter().zip(costs) {
        if c.unpriced > 0 {
            let n = by_unit.entry(p.unit).or_default();
            *n = n.saturating_add(c.unpriced);
        }
    }
    if by_unit.is_empty() {
        return None;
    }
    let amounts: Vec<String> = by_unit
        .iter()
        .map(|(unit, n)| format!("{n} {}", unit.as_str()))
        .collect();
    Some(format!(
        "no price in [[prices]] matches {} of this usage: counted in `unpriced`, not in `cost`",
        amounts.join(" and ")
    ))
}

/// Says why a query exceeds a source's per-query limit of vendor calls and what would fit,
/// worked out for this query: the first coarser bucket whose windows fit, the longest range of
/// the same bucket, and the most agents.
fn limit_detail(calls: &CallLimit, req: &UsageRequest) -> String {
    let plural = |n: u64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    let (unit, adjective) = match req.bucket {
        Bucket::Hour => (Some("hour"), "hourly "),
        Bucket::Day => (Some("day"), "daily "),
        Bucket::Week => (Some("week"), "weekly "),
        Bucket::Month => (Some("month"), "monthly "),
        Bucket::None => (None, ""),
    };
    // The provider counts the windows it was asked for: those not in the gateway's cache.
    let uncached = if (calls.windows as usize) < req.windows.len() {
        "uncached "
    } else {
        ""
    };
    let windows_per_agent = calls.max / calls.agents.max(1);
    let mut fits = Vec::new();
    let coarser: &[Bucket] = match req.bucket {
        Bucket::Hour => &[Bucket::Day, Bucket::Week, Bucket::Month, Bucket::None],
        Bucket::Day => &[Bucket::Week, Bucket::Month, Bucket::None],
        Bucket::Week => &[Bucket::Month, Bucket::None],
        Bucket::Month => &[Bucket::None],
        Bucket::None => &[],
    };
    let max_windows = usize::try_from(windows_per_agent).unwrap_or(usize::MAX);
    if let Some(b) = coarser
        .iter()
        .find(|b| usage_core::time::buckets(req.range, req.tz, **b, max_windows).is_ok())
    {
        fits.push(format!("bucket={}", b.as_str()));
    }
    if let Some(unit) = unit
        && windows_per_agent >= 1
    {
        fits.push(format!(
            "a range of at most {}",
            plural(windows_per_agent, unit)
        ));
    }
    let agents_that_fit = calls.max / calls.windows.max(1);
    if agents_that_fit >= 1 && agents_that_fit < calls.agents {
        fits.push(format!(
            "at most {} (an `agent` filter)",
            plural(agents_that_fit, "agent")
        ));
    }
    let advice = match fits.as_slice() {
        [] => "narrow the query".to_owned(),
        [one] => format!("use {one}"),
        [first @ .., last] => format!("use {}, or {last}", first.join(", ")),
    };
    format!(
        "this query needs {} vendor calls ({} × {}), above {} = {} per query: {advice}",
        calls.needed,
        plural(calls.agents, "agent"),
        plural(calls.windows, &format!("{uncached}{adjective}window")),
        calls.setting,
        calls.max,
    )
}

/// The most rows `fill=zero` may give an answer (buckets × groups); above it the query answers
/// 400 naming `fill`, so that a fine bucket over many groups cannot make a huge body.
pub const MAX_FILLED_ROWS: usize = 100_000;

/// `Content-Disposition` of a CSV answer: an attachment named after the range, e.g.
/// `usage-20261101T000000Z-20261108T000000Z.csv` (basic ISO 8601 in UTC: no `:` for file
/// systems that refuse it).
fn csv_disposition(req: &UsageRequest, suffix: &str) -> HeaderValue {
    let basic = |t: chrono::DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
    let value = format!(
        "attachment; filename=\"usage-{}-{}{suffix}.csv\"",
        basic(req.range.start),
        basic(req.range.end)
    );
    // Only ASCII digits, letters and punctuation: always a valid header value.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// The 400 for a `format` that contradicts the route's (`format=json` on `/v1/usage.csv`).
fn forced_format_conflict(path: &str) -> ApiError {
    ApiError::BadRequest(vec![ParamError::new(
        "format",
        format!("`{path}` answers one format only; ask `/v1/usage` for JSON"),
    )])
}

/// Reports whether the request asks for a refetch (`Cache-Control: no-cache`).
fn no_cache(http: &HttpRequest) -> bool {
    http.headers()
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
        })
}

/// The most cache hits a worker remembers, and the most bytes of tokens, query strings and
/// `Accept` headers they may hold (tokens and query strings run up to 8 KiB each); when either
/// is reached, the worker forgets them all and starts over.
const MAX_REMEMBERED: usize = 4096;
const MAX_REMEMBERED_BYTES: usize = 2 * 1024 * 1024;

/// A cache hit a worker remembers, so that the same request again is answered without the
/// token lookup, query parse, access check and response-key hash in between: the exact
/// token, query string and `Accept` header that led to `rendered`.
struct Remembered {
    state: u64,
    token: Box<str>,
    query: Box<str>,
    accept: Box<[u8]>,
    caller: Caller,
    /// Dead once the response cache lets the answer go (evicted, expired or replaced), so a
    /// remembered hit never keeps a body alive or outlives the cache's byte budget.
    rendered: std::sync::Weak<Rendered>,
}

impl Remembered {
    /// What the entry holds beyond its fixed size (the caller's access included, which the
    /// entry keeps alive).
    fn bytes(&self) -> usize {
        self.token.len() + self.query.len() + self.accept.len() + self.caller.weight()
    }
}

/// A worker's remembered hits, bounded by [`MAX_REMEMBERED`] and [`MAX_REMEMBERED_BYTES`].
#[derive(Default)]
struct Hits {
    by_slot: foldhash::HashMap<u64, Remembered>,
    bytes: usize,
}

impl Hits {
    fn insert(&mut self, slot: u64, entry: Remembered) {
        let size = entry.bytes() + std::mem::size_of::<Remembered>();
        if self.by_slot.len() >= MAX_REMEMBERED || self.bytes + size > MAX_REMEMBERED_BYTES {
            self.by_slot.clear();
            self.bytes = 0;
        }
        if let Some(old) = self.by_slot.insert(slot, entry) {
            self.bytes -= old.bytes() + std::mem::size_of::<Remembered>();
        }
        self.bytes += size;
    }

    fn get(&self, slot: u64) -> Option<&Remembered> {
        self.by_slot.get(&slot)
    }
}

thread_local! {
    static REMEMBERED: RefCell<Hits> = RefCell::new(Hits::default());
    static HASHER: foldhash::fast::RandomState = foldhash::fast::RandomState::default();
}

/// Where the request's remembered hit would be: a hash of token, query and `Accept`.
fn slot(token: &str, query: &str, accept: &[u8]) -> u64 {
    HASHER.with(|s| {
        let mut h = s.build_hasher();
        h.write(token.as_bytes());
        h.write_u8(0xff);
        h.write(query.as_bytes());
        h.write_u8(0xff);
        h.write(accept);
        h.finish()
    })
}

fn accept_of(http: &HttpRequest) -> &[u8] {
    http.headers()
        .get(header::ACCEPT)
        .map_or(&[][..], HeaderValue::as_bytes)
}

/// Remembers, in this worker, that `caller`'s request `req` led to `rendered`; only for queries
/// whose meaning does not move with the clock (`req.timeless`).
fn remember(
    http: &HttpRequest,
    state: &AppState,
    caller: &Caller,
    req: &UsageRequest,
    rendered: &Arc<Rendered>,
) {
    // Only `/v1/usage` is answered from memory (`obs::observe` asks for no other path): the
    // CSV that `/v1/usage.csv` answers must never be remembered under a token, query string
    // and `Accept` that `/v1/usage` answers with JSON.
    if !req.timeless || http.path() != "/v1/usage" {
        return;
    }
    let Ok(token) = crate::auth::bearer(http) else {
        return;
    };
    let query = http.query_string();
    let accept = accept_of(http);
    let entry = Remembered {
        state: state.id,
        token: token.into(),
        query: query.into(),
        accept: accept.into(),
        caller: caller.clone(),
        rendered: Arc::downgrade(rendered),
    };
    REMEMBERED.with_borrow_mut(|m| {
        m.insert(slot(token, query, accept), entry);
    });
}

/// Answers a repeated `GET /v1/usage` from the response cache without authentication,
/// parsing or planning, when this worker remembers the very same token, query string and
/// `Accept` header leading to an answer the response cache still holds; `None` sends the
/// request the whole way. The token must still be within its `exp` and its verification
/// younger than `VERIFIED_TTL`, exactly as for the verified-token cache; a `no-cache` request
/// always goes the whole way. Returns the response and the caller's `sub`.
pub fn fast_hit(http: &HttpRequest, state: &AppState) -> Option<(HttpResponse, Arc<str>)> {
    if no_cache(http) {
        return None;
    }
    let token = crate::auth::bearer(http).ok()?;
    let query = http.query_string();
    let accept = accept_of(http);
    let key = slot(token, query, accept);
    let (rendered, sub) = REMEMBERED.with_borrow(|m| {
        let e = m.get(key)?;
        let now = std::time::Instant::now();
        let usable = e.state == state.id
            && *e.token == *token
            && *e.query == *query
            && *e.accept == *accept
            && e.caller.usable_at(Utc::now().timestamp(), now);
        let r = e
            .rendered
            .upgrade()
            .filter(|r| usable && now < r.expires_at && !r.superseded.load(Ordering::Acquire))?;
        Some((r, e.caller.sub.clone()))
    })?;
    Some((respond(http, &rendered), sub))
}

/// Chooses CSV when the client prefers `text/csv` and gave no `format`.
fn negotiate(http: &HttpRequest) -> Format {
    let accept = http
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.split(',').any(|m| m.trim().starts_with("text/csv")) {
        Format::Csv
    } else {
        Format::Json
    }
}

/// Keys a rendered answer by what the caller may see and what it asked (never by caller alone,
/// so a narrower caller can never receive a wider caller's answer).
fn response_key(req: &UsageRequest, caller: &Caller, format: Format) -> u128 {
    // Hashes the values themselves: formatting them (`{:?}`) first cost more than the rest of
    // a cache hit's lookup.
    // Seeded per process, so that nobody can work out offline two queries whose keys collide.
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let mut h = Xxh3::with_seed(*SEED.get_or_init(|| fastrand::u64(..)));
    (&*caller.access, req, format).hash(&mut h);
    h.digest128()
}

fn respond(http: &HttpRequest, r: &Rendered) -> HttpResponse {
    let matches = http
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().as_bytes() == r.etag_header.as_bytes() || t.trim() == "*")
        });
    let mut b = if matches {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    b.insert_header((header::ETAG, r.etag_header.clone()));
    b.insert_header((header::CACHE_CONTROL, r.cache_control.clone()));
    b.insert_header((
        header::VARY,
        HeaderValue::from_static("Authorization, Accept"),
    ));
    b.insert_header((
        "x-usage-complete",
        if r.complete { "true" } else { "false" },
    ));
    if matches {
        return b.finish();
    }
    b.insert_header((header::CONTENT_TYPE, r.content_type));
    if let Some(d) = &r.content_disposition {
        b.insert_header((header::CONTENT_DISPOSITION, d.clone()));
    }
    if let Some(u) = &r.unpriced {
        b.insert_header(("x-usage-unpriced", u.clone()));
    }
    b.body(r.body.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(token_bytes: usize) -> Remembered {
        Remembered {
            state: 0,
            token: "t".repeat(token_bytes).into(),
            query: "end=2026-11-01".into(),
            accept: Box::default(),
            caller: Caller::for_tests("s"),
            rendered: std::sync::Weak::new(),
        }
    }

    #[actix_web::test]
    async fn an_answer_a_refresh_replaced_is_not_answered_from_memory() {
        let text = "[auth]\nalgorithms = [\"HS256\"]\nhs256_secret = \"${S}\"\n\
                    [[access]]\nclaim = \"sub\"\nvalue = \"a\"\nsources = [\"*\"]\n";
        let config = crate::config::Config::parse(text, &|_| Some("s".repeat(40))).expect("config");
        let state = AppState::new(config, Vec::<crate::fetch::SourceSpec>::new()).expect("state");
        let rendered = Arc::new(Rendered {
            content_type: "application/json",
            content_disposition: None,
            unpriced: None,
            body: Bytes::from_static(b"{}"),
            etag_header: HeaderValue::from_static("\"e\""),
            cache_control: HeaderValue::from_static("private, max-age=60"),
            complete: true,
            expires_at: std::time::Instant::now() + std::time::Duration::from_secs(60),
            superseded: std::sync::atomic::AtomicBool::new(false),
        });
        let http = actix_web::test::TestRequest::get()
            .uri("/v1/usage?start=2026-11-01&end=2026-11-02")
            .insert_header((header::AUTHORIZATION, "Bearer t0k3n"))
            .to_http_request();
        let req = query::parse(
            http.query_string(),
            &state.server,
            &state.registry,
            Utc::now(),
        )
        .expect("query");
        remember(&http, &state, &Caller::for_tests("a"), &req, &rendered);
        let (res, sub) = fast_hit(&http, &state).expect("remembered");
        assert_eq!((res.status().as_u16(), &*sub), (200, "a"));
        // Still alive (a response being written holds it), but replaced by a refresh.
        rendered.superseded.store(true, Ordering::Release);
        assert!(fast_hit(&http, &state).is_none());
    }

    #[test]
    fn a_limit_detail_says_what_fits_this_query() {
        let parse = |raw: &str| {
            query::parse(
                raw,
                &crate::config::ServerConfig::default(),
                &crate::registry::Registry::builtin(),
                Utc::now(),
            )
            .expect(raw)
        };
        let limit = |needed, agents, windows| CallLimit {
            needed,
            max: 250,
            setting: "max_upstream_calls",
            agents,
            windows,
            agents_by_windows: true,
        };
        // 14 days by hour: 336 windows; by day 14 × 20 agents = 280 is still too many, by week
        // (3 windows, the range starting mid-week) 60 fits.
        let req = parse("start=2026-11-04&end=2026-11-18&bucket=hour");
        assert_eq!(
            limit_detail(&limit(6720, 20, 336), &req),
            "this query needs 6720 vendor calls (20 agents × 336 hourly windows), above \
             max_upstream_calls = 250 per query: use bucket=week, or a range of at most 12 hours"
        );
        // Cached windows are not counted; more agents than calls: no bucket or range fits.
        assert_eq!(
            limit_detail(&limit(300, 300, 1), &req),
            "this query needs 300 vendor calls (300 agents × 1 uncached hourly window), above \
             max_upstream_calls = 250 per query: use at most 250 agents (an `agent` filter)"
        );
        // Without buckets only fewer agents fit.
        let req = parse("start=2026-11-04&end=2026-11-18");
        assert_eq!(
            limit_detail(&limit(300, 300, 1), &req),
            "this query needs 300 vendor calls (300 agents × 1 window), above \
             max_upstream_calls = 250 per query: use at most 250 agents (an `agent` filter)"
        );
    }

    #[test]
    fn remembered_hits_stay_within_their_count_and_bytes() {
        let mut hits = Hits::default();
        for slot in 0..(MAX_REMEMBERED as u64 * 3) {
            hits.insert(slot, entry(10));
            assert!(hits.by_slot.len() <= MAX_REMEMBERED);
        }
        let mut hits = Hits::default();
        // Tokens of 8 KiB: the byte bound is reached long before the count.
        for slot in 0..2000 {
            hits.insert(slot, entry(8 * 1024));
            assert!(hits.bytes <= MAX_REMEMBERED_BYTES, "{}", hits.bytes);
            assert!(hits.get(slot).is_some(), "the newest entry is kept");
        }
        // Replacing an entry does not count it twice.
        let mut hits = Hits::default();
        for _ in 0..10 {
            hits.insert(7, entry(100));
        }
        assert_eq!(hits.by_slot.len(), 1);
        assert_eq!(
            hits.bytes,
            entry(100).bytes() + std::mem::size_of::<Remembered>()
        );
    }
}
