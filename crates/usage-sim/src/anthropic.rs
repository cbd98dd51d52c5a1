//! The Anthropic Admin API simulator: the Messages usage report, the cost report
//! (`GET /v1/organizations/cost_report`, daily, amounts in cents as decimal strings priced from
//! the events by `data/costs.rs`) and the workspaces list
//! (CONTRACTS-openai-anthropic.md part B, simulator guidance in part D).
//!
//! - Auth: `x-api-key` must be [`crate::ANTHROPIC_ADMIN_KEY`] (401 `authentication_error`
//!   otherwise; 403 `permission_error` for a regular `sk-ant-api…` key); `anthropic-version`
//!   is required (400 without it).
//! - Buckets: `starting_at` floored to the UTC unit of `bucket_width`; a bucket is returned when
//!   it ends at or before `ending_at` (strictly before with
//!   [`crate::AnthropicOptions::strict_ending_at`]; default: the end of the bucket holding the
//!   clock, as if at or before); empty
//!   buckets are returned; at most `limit` per page (default and maximum per width: 7/31,
//!   24/168, 60/1440; above the maximum: 400). `next_page` is `page_` + base64 of the next
//!   bucket start and a hash of the query (`#…`); a cursor used with another query is refused.
//! - Arrays are read as `name[]=` or repeated `name=`. Grouped rows carry every dimension
//!   field, `null` when not grouped, and also `null` for the default workspace and Console
//!   usage when grouped.
//! - Freshness: an event shows once the clock ([`crate::SimHandle::set_clock`], default the
//!   data's `now`) is [`crate::ANTHROPIC_FRESHNESS`] past it.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use usage_core::buckets::BucketWidth;

use crate::data::{ANTHROPIC_FRESHNESS, AnthropicData, AnthropicEvent};
use crate::server::{Reply, SimState, Vendor, query_get, query_pairs};

/// The only `anthropic-version` there is.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

const GROUP_BY: [&str; 9] = [
    "api_key_id",
    "workspace_id",
    "model",
    "service_tier",
    "context_window",
    "inference_geo",
    "speed",
    "account_id",
    "service_account_id",
];

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/organizations/usage_report/messages")
            .route(web::get().to(usage))
            .default_service(web::to(not_found)),
    )
    .service(
        web::resource("/v1/organizations/cost_report")
            .route(web::get().to(cost_report))
            .default_service(web::to(not_found)),
    )
    .service(
        web::resource("/v1/organizations/workspaces")
            .route(web::get().to(workspaces))
            .default_service(web::to(not_found)),
    );
}

async fn not_found(st: web::Data<SimState>) -> HttpResponse {
    st.serve("unknown", || Vendor::Anthropic.error(404, None))
        .await
}

async fn usage(req: HttpRequest, st: web::Data<SimState>) -> HttpResponse {
    st.serve("anthropic.usage", || {
        guarded(&st, &req, |st| usage_report(st, &req))
    })
    .await
}

async fn workspaces(req: HttpRequest, st: web::Data<SimState>) -> HttpResponse {
    st.serve("anthropic.workspaces", || {
        guarded(&st, &req, |st| list_workspaces(st, &req))
    })
    .await
}

fn bad(message: &str) -> Reply {
    Vendor::Anthropic.error(400, Some(message))
}

/// Checks the admin key, the rate limit and the version header, then runs `f`.
fn guarded(st: &SimState, req: &HttpRequest, f: impl FnOnce(&SimState) -> Reply) -> Reply {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    match header("x-api-key") {
        Some(crate::ANTHROPIC_ADMIN_KEY) => {}
        Some(k) if k.starts_with("sk-ant-api") => {
            return Vendor::Anthropic.error(
                403,
                Some("This endpoint requires an Admin API key (sk-ant-admin…)."),
            );
        }
        _ => return Vendor::Anthropic.error(401, None),
    }
    if let Some(limiter) = &st.limiter
        && let Err(info) = limiter.acquire(crate::ANTHROPIC_ADMIN_KEY)
    {
        return Vendor::Anthropic
            .error(429, None)
            .header("retry-after", info.retry_after.unwrap_or(1).max(1));
    }
    match header("anthropic-version") {
        Some(ANTHROPIC_VERSION) => f(st),
        Some(v) => bad(&format!("anthropic-version: unknown version `{v}`")),
        None => bad("anthropic-version: header is required"),
    }
}

/// The values of an array parameter, given as `name[]=` or repeated `name=`.
fn array<'a>(q: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    let bracketed = format!("{name}[]");
    q.iter()
        .filter(|(k, _)| *k == name || *k == bracketed)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn parse_time(q: &[(String, String)], name: &str) -> Result<Option<DateTime<Utc>>, Reply> {
    query_get(q, name)
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    bad(&format!(
                        "{name}: Input should be a valid RFC 3339 datetime"
                    ))
                })
        })
        .transpose()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A hash of the query without `page` and `limit`, names without `[]`, in sorted order.
fn query_hash(q: &[(String, String)]) -> u64 {
    let mut pairs: Vec<(&str, &str)> = q
        .iter()
        .map(|(k, v)| (k.strip_suffix("[]").unwrap_or(k), v.as_str()))
        .filter(|(k, _)| *k != "page" && *k != "limit")
        .collect();
    pairs.sort_unstable();
    let mut h = DefaultHasher::new();
    pairs.hash(&mut h);
    h.finish()
}

fn cursor(start: DateTime<Utc>, hash: u64) -> String {
    format!(
        "page_{}",
        BASE64.encode(format!("{}#{hash:016x}", rfc3339(start)))
    )
}

fn read_cursor(page: &str, hash: u64) -> Result<DateTime<Utc>, Reply> {
    let invalid = || bad("page: invalid page token");
    let raw = page
        .strip_prefix("page_")
        .and_then(|b| BASE64.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(invalid)?;
    let (start, h) = raw.split_once('#').ok_or_else(invalid)?;
    if u64::from_str_radix(h, 16).ok() != Some(hash) {
        return Err(bad(
            "page: the page token belongs to a different query; repeat the query's parameters",
        ));
    }
    DateTime::parse_from_rfc3339(start)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| invalid())
}

/// The grouping key of a row: workspace, API key and model, each `Some` only when grouped
/// (the inner `None` is the default workspace / Console usage).
type RowKey = (
    Option<Option<String>>,
    Option<Option<String>>,
    Option<String>,
);

#[derive(Default)]
struct Sums {
    uncached: u64,
    output: u64,
    cache_read: u64,
    cache_5m: u64,
    cache_1h: u64,
    web_search: u64,
}

impl Sums {
    fn add(&mut self, e: &AnthropicEvent) {
        self.uncached += e.uncached_input_tokens;
        self.output += e.output_tokens;
        self.cache_read += e.cache_read_input_tokens;
        self.cache_5m += e.cache_5m_input_tokens;
        self.cache_1h += e.cache_1h_input_tokens;
        self.web_search += e.web_search_requests;
    }
}

fn row(key: &RowKey, s: &Sums) -> Value {
    json!({
        "uncached_input_tokens": s.uncached,
        "cache_creation": {
            "ephemeral_1h_input_tokens": s.cache_1h,
            "ephemeral_5m_input_tokens": s.cache_5m,
        },
        "cache_read_input_tokens": s.cache_read,
        "output_tokens": s.output,
        "server_tool_use": {"web_search_requests": s.web_search},
        "workspace_id": key.0.clone().flatten(),
        "api_key_id": key.1.clone().flatten(),
        "model": key.2,
        "service_tier": null,
        "context_window": null,
        "inference_geo": null,
        "account_id": null,
        "service_account_id": null,
    })
}

/// A report bucket.
fn bucket(at: DateTime<Utc>, end: DateTime<Utc>, results: Vec<Value>) -> Value {
    json!({
        "starting_at": rfc3339(at),
        "ending_at": rfc3339(end),
        "results": Value::Array(results),
    })
}

/// A report page whose buckets end at `next`: `has_more` when another whole bucket fits
/// before `horizon`, with the cursor continuing at `next`.
fn report(
    buckets: Vec<Value>,
    next: DateTime<Utc>,
    width: BucketWidth,
    horizon: DateTime<Utc>,
    hash: u64,
) -> Reply {
    let has_more = next + width.delta() <= horizon;
    Reply::ok(&json!({
        "data": Value::Array(buckets),
        "has_more": has_more,
        "next_page": has_more.then(|| cursor(next, hash)),
    }))
}

/// The buckets a report request covers, read from its times, cursor and the clock.
struct Span {
    /// The first bucket's start: `starting_at` floored, or where the cursor continues.
    start: DateTime<Utc>,
    /// A bucket is returned when its end is at most this.
    horizon: DateTime<Utc>,
    /// Events after this are not visible yet.
    visible_until: DateTime<Utc>,
    /// The query's hash, for cursors.
    hash: u64,
}

/// Reads `starting_at`, `ending_at` and `page` of a report request at `width`.
fn span(st: &SimState, q: &[(String, String)], width: BucketWidth) -> Result<Span, Reply> {
    let starting_at =
        parse_time(q, "starting_at")?.ok_or_else(|| bad("starting_at: Field required"))?;
    let ending_at = parse_time(q, "ending_at")?;
    if ending_at.is_some_and(|e| e <= starting_at) {
        return Err(bad("ending_at: must be after starting_at"));
    }
    let hash = query_hash(q);
    let start = match query_get(q, "page") {
        Some(page) => read_cursor(page, hash)?,
        None => width.floor(starting_at),
    };
    let clock = st.clock.get().unwrap_or_else(|| st.data.anthropic.now());
    // A bucket is returned when its end is at most `horizon`; the strict rule keeps those
    // ending before `ending_at` (bucket ends are whole minutes, so a nanosecond earlier).
    let horizon = match ending_at {
        Some(e) if st.strict_ending_at => e - chrono::TimeDelta::nanoseconds(1),
        Some(e) => e,
        None => width.ceil(clock),
    };
    Ok(Span {
        start,
        horizon,
        visible_until: clock - ANTHROPIC_FRESHNESS,
        hash,
    })
}

impl Span {
    /// A report page: up to `limit` whole buckets of `width` from the span's start, each with
    /// the rows `results(start, end)` gives, ending at the horizon.
    fn page(
        &self,
        width: BucketWidth,
        limit: u32,
        mut results: impl FnMut(DateTime<Utc>, DateTime<Utc>) -> Vec<Value>,
    ) -> Reply {
        let mut buckets = Vec::new();
        let mut at = self.start;
        while buckets.len() < limit as usize && at + width.delta() <= self.horizon {
            let end = at + width.delta();
            buckets.push(bucket(at, end, results(at, end)));
            at = end;
        }
        report(buckets, at, width, self.horizon, self.hash)
    }
}

/// Reads `limit` for buckets of `width`: 7, 24 or 60 by default, at most 31, 168 or 1440.
fn limit(q: &[(String, String)], width: BucketWidth) -> Result<u32, Reply> {
    let (default_limit, max_limit) = match width {
        BucketWidth::Day => (7, 31),
        BucketWidth::Hour => (24, 168),
        BucketWidth::Minute => (60, 1440),
    };
    match query_get(q, "limit").map(str::parse::<u32>) {
        None => Ok(default_limit),
        Some(Ok(n)) if (1..=max_limit).contains(&n) => Ok(n),
        Some(Ok(0)) => Err(bad("limit: Input should be greater than or equal to 1")),
        Some(Ok(_)) => Err(bad(&format!(
            "limit: Input should be less than or equal to {max_limit}"
        ))),
        Some(Err(_)) => Err(bad("limit: Input should be a valid integer")),
    }
}

/// Reads `group_by[]`, each one of `allowed`.
fn group_by<'q>(q: &'q [(String, String)], allowed: &[&str]) -> Result<BTreeSet<&'q str>, Reply> {
    let group_by: BTreeSet<&str> = array(q, "group_by").into_iter().collect();
    match group_by.iter().find(|g| !allowed.contains(g)) {
        Some(g) => Err(bad(&format!(
            "group_by: Input should be one of {}; got `{g}`",
            allowed.join(", ")
        ))),
        None => Ok(group_by),
    }
}

fn usage_report(st: &SimState, req: &HttpRequest) -> Reply {
    let data: &AnthropicData = &st.data.anthropic;
    let q = query_pairs(req);
    let width = match query_get(&q, "bucket_width").unwrap_or("1d") {
        "1d" => BucketWidth::Day,
        "1h" => BucketWidth::Hour,
        "1m" => BucketWidth::Minute,
        _ => return bad("bucket_width: Input should be '1d', '1h' or '1m'"),
    };
    let limit = match limit(&q, width) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let group_by = match group_by(&q, &GROUP_BY) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let span = match span(st, &q, width) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let set = |name: &str| -> Option<BTreeSet<&str>> {
        let v = array(&q, name);
        (!v.is_empty()).then(|| v.into_iter().collect())
    };
    let (workspaces, keys, models) = (set("workspace_ids"), set("api_key_ids"), set("models"));
    let by_ws = group_by.contains("workspace_id");
    let by_key = group_by.contains("api_key_id");
    let by_model = group_by.contains("model");

    span.page(width, limit, |at, end| {
        let mut rows: BTreeMap<RowKey, Sums> = BTreeMap::new();
        for e in data.between(at, end) {
            if e.at > span.visible_until
                || workspaces
                    .as_ref()
                    .is_some_and(|w| !e.workspace_id.as_deref().is_some_and(|id| w.contains(id)))
                || keys
                    .as_ref()
                    .is_some_and(|k| !e.api_key_id.as_deref().is_some_and(|id| k.contains(id)))
                || models
                    .as_ref()
                    .is_some_and(|m| !m.contains(e.model.as_str()))
            {
                continue;
            }
            let key: RowKey = (
                by_ws.then(|| e.workspace_id.clone()),
                by_key.then(|| e.api_key_id.clone()),
                by_model.then(|| e.model.clone()),
            );
            rows.entry(key).or_default().add(e);
        }
        rows.iter().map(|(k, s)| row(k, s)).collect()
    })
}

async fn cost_report(req: HttpRequest, st: web::Data<SimState>) -> HttpResponse {
    st.serve("anthropic.cost_report", || {
        guarded(&st, &req, |st| cost_report_page(st, &req))
    })
    .await
}

/// A cost row's key: the workspace when grouped by it (the inner `None` is the default
/// workspace), and `(description, cost_type, model, token_type)` when grouped by description.
type CostKey = (
    Option<Option<String>>,
    Option<(String, &'static str, Option<String>, Option<&'static str>)>,
);

/// The `group_by[]` values of the cost report.
const COST_GROUP_BY: [&str; 2] = ["workspace_id", "description"];

/// `GET /v1/organizations/cost_report`: daily buckets only, `limit` 1..=31 (default 7),
/// `group_by[]` any of `workspace_id`, `description`, no filters; `amount` a decimal string in
/// cents, `currency: "USD"`; grouped by description, rows carry `cost_type`, `model` and
/// `token_type` (and `service_tier`, `context_window` for tokens). Buckets, cursors and
/// freshness as in the usage report.
fn cost_report_page(st: &SimState, req: &HttpRequest) -> Reply {
    let data: &AnthropicData = &st.data.anthropic;
    let q = query_pairs(req);
    let width = BucketWidth::Day;
    match query_get(&q, "bucket_width") {
        None | Some("1d") => {}
        Some(_) => return bad("bucket_width: Input should be '1d'"),
    }
    let limit = match limit(&q, width) {
        Ok(n) => n,
        Err(r) => return r,
    };
    let group_by = match group_by(&q, &COST_GROUP_BY) {
        Ok(g) => g,
        Err(r) => return r,
    };
    for f in ["workspace_ids", "api_key_ids", "models"] {
        if !array(&q, f).is_empty() {
            return bad(&format!("{f}: Extra inputs are not permitted"));
        }
    }
    let span = match span(st, &q, width) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let by_ws = group_by.contains("workspace_id");
    let by_desc = group_by.contains("description");

    span.page(width, limit, |at, end| {
        let mut rows: BTreeMap<CostKey, rust_decimal::Decimal> = BTreeMap::new();
        for e in data.between(at, end) {
            if e.at > span.visible_until {
                continue;
            }
            for item in e.cost_items() {
                let key: CostKey = (
                    by_ws.then(|| e.workspace_id.clone()),
                    by_desc.then_some((
                        item.description,
                        item.cost_type,
                        item.model,
                        item.token_type,
                    )),
                );
                *rows.entry(key).or_default() += item.amount * rust_decimal::Decimal::ONE_HUNDRED;
            }
        }
        rows.into_iter()
            .map(|((ws, desc), cents)| {
                let (description, cost_type, model, token_type) = match desc {
                    Some((text, kind, model, token)) => (Some(text), Some(kind), model, token),
                    None => (None, None, None, None),
                };
                let tokens = cost_type == Some("tokens");
                json!({
                    "amount": cents.normalize().to_string(),
                    "currency": "USD",
                    "workspace_id": ws.flatten(),
                    "description": description,
                    "cost_type": cost_type,
                    "model": model,
                    "service_tier": tokens.then_some("standard"),
                    "context_window": tokens.then_some("0-200k"),
                    "token_type": token_type,
                    "inference_geo": null,
                })
            })
            .collect()
    })
}

fn list_workspaces(st: &SimState, req: &HttpRequest) -> Reply {
    let q = query_pairs(req);
    let limit = match query_get(&q, "limit").map(str::parse::<usize>) {
        None => 20,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => return bad("limit: Input should be between 1 and 1000"),
    };
    let include_archived = matches!(query_get(&q, "include_archived"), Some("true" | "1"));
    let all: Vec<_> = st
        .data
        .anthropic
        .workspaces()
        .iter()
        .filter(|w| include_archived || w.archived_at.is_none())
        .collect();
    let from = match query_get(&q, "after_id") {
        None => 0,
        Some(id) => match all.iter().position(|w| w.id == id) {
            Some(i) => i + 1,
            None => return bad("after_id: unknown workspace id"),
        },
    };
    let page: Vec<_> = all.iter().skip(from).take(limit).collect();
    let data: Vec<Value> = page
        .iter()
        .map(|w| {
            json!({
                "id": w.id,
                "type": "workspace",
                "name": w.name,
                "created_at": w.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
                "archived_at": w.archived_at.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true)),
                "display_color": w.display_color,
            })
        })
        .collect();
    Reply::ok(&json!({
        "data": data,
        "has_more": from + page.len() < all.len(),
        "first_id": page.first().map(|w| w.id.clone()),
        "last_id": page.last().map(|w| w.id.clone()),
    }))
}
