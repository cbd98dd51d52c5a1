//! The OpenAI Administration API simulator: `GET /v1/organization/usage/{endpoint}` for the
//! nine metered endpoints and `vector_stores`, and `GET /v1/organization/projects`
//! (CONTRACTS-openai-anthropic.md part A and part D).
//!
//! Buckets start at the UTC boundary at or before `start_time`; every bucket up to `end_time`
//! (default: the data's `now`) is emitted, empty ones with `results: []`, at most `limit` per
//! page (`1d`: default 7, max 31; `1h`: 24/168; `1m`: 60/1440; above the max: 400). Further
//! pages: `has_more` and `next_page` = `page_` + base64 of the next bucket start and a hash of
//! the query, so a cursor sent with another query is refused. Array parameters are accepted
//! repeated as `name=` and as `name[]=`. Completions answer in the current schema, or in the
//! legacy one when [`crate::OpenAiData::legacy_completions`] is set.
//!
//! `GET /v1/organization/costs` answers daily buckets the same way (`limit` 1..=180, default
//! 7; `bucket_width` only `1d`), each result's `amount.value` the exact decimal text of a JSON
//! number in dollars (`currency: "usd"`), priced from the events by the price list in
//! `data/costs.rs`; `line_item` is `<model>, <kind>` (`gpt-4o-mini-2024-07-18, input`) or,
//! for usage of no model, the kind alone (`Code interpreter sessions`).

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::data::OpenAiEndpoint;
use crate::data::openai::{Metrics, OpenAiTokens};
use crate::server::{Reply, SimState, Vendor, bearer, query_get, query_pairs};

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/organization/usage/{endpoint}")
            .route(web::get().to(usage))
            .default_service(web::to(not_found)),
    )
    .service(
        web::resource("/v1/organization/costs")
            .route(web::get().to(costs))
            .default_service(web::to(not_found)),
    )
    .service(
        web::resource("/v1/organization/projects")
            .route(web::get().to(projects))
            .default_service(web::to(not_found)),
    );
}

async fn not_found(st: web::Data<SimState>) -> HttpResponse {
    st.serve("unknown", || Vendor::OpenAi.error(404, None))
        .await
}

/// An endpoint the simulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Metered(OpenAiEndpoint),
    VectorStores,
}

impl Endpoint {
    fn parse(s: &str) -> Option<Self> {
        if s == "vector_stores" {
            return Some(Self::VectorStores);
        }
        OpenAiEndpoint::parse(s).map(Self::Metered)
    }

    fn route(self) -> &'static str {
        use OpenAiEndpoint as E;
        match self {
            Self::VectorStores => "openai.usage.vector_stores",
            Self::Metered(E::Completions) => "openai.usage.completions",
            Self::Metered(E::Embeddings) => "openai.usage.embeddings",
            Self::Metered(E::Moderations) => "openai.usage.moderations",
            Self::Metered(E::Images) => "openai.usage.images",
            Self::Metered(E::AudioSpeeches) => "openai.usage.audio_speeches",
            Self::Metered(E::AudioTranscriptions) => "openai.usage.audio_transcriptions",
            Self::Metered(E::CodeInterpreterSessions) => "openai.usage.code_interpreter_sessions",
            Self::Metered(E::WebSearchCalls) => "openai.usage.web_search_calls",
            Self::Metered(E::FileSearchCalls) => "openai.usage.file_search_calls",
        }
    }

    /// The result `object`.
    fn object(self) -> &'static str {
        use OpenAiEndpoint as E;
        match self {
            Self::VectorStores => "organization.usage.vector_stores.result",
            Self::Metered(E::Completions) => "organization.usage.completions.result",
            Self::Metered(E::Embeddings) => "organization.usage.embeddings.result",
            Self::Metered(E::Moderations) => "organization.usage.moderations.result",
            Self::Metered(E::Images) => "organization.usage.images.result",
            Self::Metered(E::AudioSpeeches) => "organization.usage.audio_speeches.result",
            Self::Metered(E::AudioTranscriptions) => {
                "organization.usage.audio_transcriptions.result"
            }
            Self::Metered(E::CodeInterpreterSessions) => {
                "organization.usage.code_interpreter_sessions.result"
            }
            Self::Metered(E::WebSearchCalls) => "organization.usage.web_searches.result",
            Self::Metered(E::FileSearchCalls) => "organization.usage.file_searches.result",
        }
    }

    /// The `group_by` enum, which is also the result's dimension fields (table A.3).
    fn dimensions(self) -> &'static [&'static str] {
        use OpenAiEndpoint as E;
        const MODEL_DIMS: &[&str] = &["project_id", "user_id", "api_key_id", "model"];
        match self {
            Self::VectorStores | Self::Metered(E::CodeInterpreterSessions) => &["project_id"],
            Self::Metered(E::Completions) => &[
                "project_id",
                "user_id",
                "api_key_id",
                "model",
                "batch",
                "service_tier",
            ],
            Self::Metered(E::Images) => &[
                "project_id",
                "user_id",
                "api_key_id",
                "model",
                "size",
                "source",
            ],
            Self::Metered(E::WebSearchCalls) => &[
                "project_id",
                "user_id",
                "api_key_id",
                "model",
                "context_level",
            ],
            Self::Metered(E::FileSearchCalls) => {
                &["project_id", "user_id", "api_key_id", "vector_store_id"]
            }
            Self::Metered(_) => MODEL_DIMS,
        }
    }

    /// The filters the endpoint takes (`batch` on completions is a boolean).
    fn filters(self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = self
            .dimensions()
            .iter()
            .filter_map(|d| filter_of(d))
            .collect();
        if self == Self::Metered(OpenAiEndpoint::Completions) {
            out.push("batch");
        }
        out
    }
}

/// Every filter and the dimension it matches.
const FILTERS: &[(&str, &str)] = &[
    ("project_ids", "project_id"),
    ("user_ids", "user_id"),
    ("api_key_ids", "api_key_id"),
    ("models", "model"),
    ("sources", "source"),
    ("sizes", "size"),
    ("vector_store_ids", "vector_store_id"),
    ("context_levels", "context_level"),
];

fn filter_of(dim: &str) -> Option<&'static str> {
    FILTERS.iter().find(|(_, d)| *d == dim).map(|(f, _)| *f)
}

/// Checks the admin key and the per-minute limit set in the faults, then runs `f`.
fn guarded(st: &SimState, req: &HttpRequest, f: impl FnOnce() -> Reply) -> Reply {
    match bearer(req) {
        Some(k) if k == crate::OPENAI_ADMIN_KEY => {}
        Some(k) if k == crate::OPENAI_PROJECT_KEY => {
            return error(
                403,
                "invalid_request_error",
                None,
                Some("insufficient_permissions"),
                "You have insufficient permissions for this operation. Missing scopes: \
                 api.usage.read. Use an admin key.",
            );
        }
        _ => {
            return error(
                401,
                "invalid_request_error",
                None,
                Some("invalid_api_key"),
                "Incorrect API key provided. You can find your API key at \
                 https://platform.openai.com/account/api-keys.",
            );
        }
    }
    match st.faults.rate_check() {
        Ok(()) => f(),
        Err(retry_after) => {
            let reply = error(
                429,
                "requests",
                None,
                Some("rate_limit_exceeded"),
                "Rate limit reached for requests to the organization usage API.",
            );
            match retry_after {
                Some(s) => reply.header("retry-after", s),
                None => reply,
            }
        }
    }
}

/// OpenAI's error envelope `{"error": {message, type, param, code}}`.
pub(crate) fn error(
    status: u16,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
    message: &str,
) -> Reply {
    Reply::json(
        status,
        &json!({"error": {"message": message, "type": kind, "param": param, "code": code}}),
    )
}

fn invalid(param: &str, message: &str) -> Reply {
    error(400, "invalid_request_error", Some(param), None, message)
}

/// Every value of an array parameter, sent as `name=` or `name[]=`.
fn values<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == name || k.strip_suffix("[]") == Some(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// FNV-1a over the query without `page`, with `name[]` read as `name` and pairs sorted.
fn query_hash(pairs: &[(String, String)]) -> u64 {
    let mut norm: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| (k.strip_suffix("[]").unwrap_or(k), v.as_str()))
        .collect();
    norm.sort_unstable();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in norm {
        for b in k.bytes().chain([b'=']).chain(v.bytes()).chain([b'&']) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn cursor(next: i64, hash: u64) -> String {
    format!(
        "page_{}",
        crate::kibana::base64(format!("{next}:{hash:016x}").as_bytes())
    )
}

/// Decodes standard base64 (padding optional); `None` for anything else.
fn unbase64(s: &str) -> Option<Vec<u8>> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0_u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.trim_end_matches('=').bytes() {
        let v = T.iter().position(|t| *t == c)?;
        bits = (bits << 6) | u32::try_from(v).ok()?;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push(u8::try_from((bits >> n) & 0xff).ok()?);
        }
    }
    Some(out)
}

/// Reads a cursor back: the bucket start it continues from, if the query hash matches.
fn read_cursor(page: &str, hash: u64) -> Option<i64> {
    let raw = String::from_utf8(unbase64(page.strip_prefix("page_")?)?).ok()?;
    let (next, h) = raw.split_once(':')?;
    (u64::from_str_radix(h, 16).ok()? == hash).then_some(())?;
    next.parse().ok()
}

async fn usage(req: HttpRequest, st: web::Data<SimState>) -> HttpResponse {
    let segment = req.match_info().get("endpoint").unwrap_or_default();
    let Some(endpoint) = Endpoint::parse(segment) else {
        return st
            .serve("unknown", || Vendor::OpenAi.error(404, None))
            .await;
    };
    st.serve(endpoint.route(), || {
        guarded(&st, &req, || usage_page(&st, &req, endpoint))
    })
    .await
}

/// A parsed usage request.
struct UsageRequest {
    width: i64,
    first: i64,
    end: i64,
    limit: i64,
    group_by: Vec<&'static str>,
    /// Dimension → accepted values.
    filters: BTreeMap<&'static str, Vec<String>>,
    batch: Option<bool>,
    hash: u64,
}

/// Reads an integer query parameter.
fn int(pairs: &[(String, String)], name: &str) -> Result<Option<i64>, Reply> {
    query_get(pairs, name)
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| invalid(name, &format!("Invalid '{name}': expected an integer.")))
        })
        .transpose()
}

/// Reads the required `start_time`.
fn start_time(pairs: &[(String, String)]) -> Result<i64, Reply> {
    int(pairs, "start_time")?
        .ok_or_else(|| invalid("start_time", "Missing required parameter: 'start_time'."))
}

/// Reads `end_time` (by default the end of the `width`-second bucket holding now), which must
/// be after `start`.
fn end_time(
    st: &SimState,
    pairs: &[(String, String)],
    start: i64,
    width: i64,
) -> Result<i64, Reply> {
    let now = st.data.openai.now().timestamp();
    let end = int(pairs, "end_time")?.unwrap_or(now + (width - now.rem_euclid(width)) % width);
    if end <= start {
        return Err(invalid(
            "end_time",
            "'end_time' must be after 'start_time'.",
        ));
    }
    Ok(end)
}

fn parse_request(
    st: &SimState,
    pairs: &[(String, String)],
    endpoint: Endpoint,
) -> Result<UsageRequest, Reply> {
    let int = |name: &str| int(pairs, name);
    let start = start_time(pairs)?;
    let (width, default_limit, max_limit) = match query_get(pairs, "bucket_width").unwrap_or("1d") {
        "1m" => (60, 60, 1440),
        "1h" => (3600, 24, 168),
        "1d" => (86_400, 7, 31),
        other => {
            return Err(invalid(
                "bucket_width",
                &format!("Invalid 'bucket_width': '{other}'. Expected one of '1m', '1h', '1d'."),
            ));
        }
    };
    let limit = int("limit")?.unwrap_or(default_limit);
    if !(1..=max_limit).contains(&limit) {
        return Err(invalid(
            "limit",
            &format!("Invalid 'limit': {limit}. It must be between 1 and {max_limit}."),
        ));
    }
    let end = end_time(st, pairs, start, width)?;
    let dims = endpoint.dimensions();
    let mut group_by = Vec::new();
    for g in values(pairs, "group_by") {
        let Some(d) = dims.iter().find(|d| **d == g) else {
            return Err(invalid(
                "group_by",
                &format!(
                    "Invalid 'group_by' value '{g}'. Expected any of: {}.",
                    dims.join(", ")
                ),
            ));
        };
        if !group_by.contains(d) {
            group_by.push(*d);
        }
    }
    let allowed = endpoint.filters();
    let mut filters = BTreeMap::new();
    for (f, d) in FILTERS {
        let v = values(pairs, f);
        if v.is_empty() {
            continue;
        }
        if !allowed.contains(f) {
            return Err(invalid(
                f,
                &format!("Unrecognized request argument supplied: {f}"),
            ));
        }
        filters.insert(*d, v.into_iter().map(str::to_owned).collect());
    }
    let batch = match query_get(pairs, "batch") {
        None => None,
        Some(_) if !allowed.contains(&"batch") => {
            return Err(invalid(
                "batch",
                "Unrecognized request argument supplied: batch",
            ));
        }
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(invalid("batch", "Invalid 'batch': expected a boolean.")),
    };
    let hash = query_hash(pairs);
    let first = match query_get(pairs, "page") {
        None => start - start.rem_euclid(width),
        Some(p) => read_cursor(p, hash).ok_or_else(|| {
            invalid(
                "page",
                "Invalid 'page': the cursor does not belong to this query.",
            )
        })?,
    };
    Ok(UsageRequest {
        width,
        first,
        end,
        limit,
        group_by,
        filters,
        batch,
        hash,
    })
}

fn usage_page(st: &SimState, req: &HttpRequest, endpoint: Endpoint) -> Reply {
    let pairs = query_pairs(req);
    let r = match parse_request(st, &pairs, endpoint) {
        Ok(r) => r,
        Err(reply) => return reply,
    };
    let mut data = Vec::new();
    let mut b = r.first;
    while b < r.end && i64::try_from(data.len()).unwrap_or(i64::MAX) < r.limit {
        let results = match endpoint {
            Endpoint::VectorStores => vector_store_rows(st, &r, b),
            Endpoint::Metered(e) => metered_rows(st, &r, e, b),
        };
        data.push(json!({"object": "bucket", "start_time": b, "end_time": b + r.width, "results": results}));
        b += r.width;
    }
    let has_more = b < r.end;
    Reply::ok(&json!({
        "object": "page",
        "data": data,
        "has_more": has_more,
        "next_page": has_more.then(|| cursor(b, r.hash)),
    }))
}

fn time(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// An event's value of a result dimension.
fn dim_value(e: &crate::OpenAiEvent, dim: &str) -> Value {
    let opt = |v: Option<&String>| v.map_or(Value::Null, |s| Value::String(s.clone()));
    match dim {
        "project_id" => opt(e.project.as_ref()),
        "user_id" => opt(e.user.as_ref()),
        "api_key_id" => {
            let owner = e.user.as_deref().unwrap_or("svc");
            let tail = owner.trim_start_matches("user-");
            Value::String(format!("key_{}", &tail[..tail.len().min(8)]))
        }
        "model" => opt(e.model.as_ref()),
        "batch" => Value::Bool(e.batch),
        "service_tier" => Value::String("default".to_owned()),
        "size" => Value::String("1024x1024".to_owned()),
        "source" => Value::String("image.generation".to_owned()),
        "vector_store_id" => {
            let project = e.project.as_deref().unwrap_or("proj_organization");
            Value::String(format!("vs_{}", &project[5..project.len().min(13)]))
        }
        "context_level" => Value::String("medium".to_owned()),
        _ => Value::Null,
    }
}

fn metered_rows(st: &SimState, r: &UsageRequest, endpoint: OpenAiEndpoint, b: i64) -> Vec<Value> {
    let open = &st.data.openai;
    let mut groups: BTreeMap<String, (Vec<Value>, Metrics)> = BTreeMap::new();
    for e in open.between(time(b), time(b + r.width)) {
        if e.endpoint != endpoint || r.batch.is_some_and(|want| want != e.batch) {
            continue;
        }
        let passes = r.filters.iter().all(|(dim, wanted)| {
            dim_value(e, dim)
                .as_str()
                .is_some_and(|v| wanted.iter().any(|w| w == v))
        });
        if !passes {
            continue;
        }
        let key: Vec<Value> = r.group_by.iter().map(|d| dim_value(e, d)).collect();
        let id = Value::Array(key.clone()).to_string();
        groups
            .entry(id)
            .or_insert_with(|| (key, Metrics::default()))
            .1
            .add(&e.metrics());
    }
    groups
        .into_values()
        .map(|(key, m)| {
            let mut row = Map::new();
            row.insert("object".into(), Endpoint::Metered(endpoint).object().into());
            metric_fields(&mut row, endpoint, &m, open.legacy_completions);
            dimension_fields(&mut row, Endpoint::Metered(endpoint), &r.group_by, &key);
            Value::Object(row)
        })
        .collect()
}

fn dimension_fields(
    row: &mut Map<String, Value>,
    endpoint: Endpoint,
    group_by: &[&str],
    key: &[Value],
) {
    for d in endpoint.dimensions() {
        let v = group_by
            .iter()
            .position(|g| g == d)
            .map_or(Value::Null, |i| key[i].clone());
        row.insert((*d).to_owned(), v);
    }
}

fn metric_fields(
    row: &mut Map<String, Value>,
    endpoint: OpenAiEndpoint,
    m: &Metrics,
    legacy: bool,
) {
    use OpenAiEndpoint as E;
    let t = &m.tokens;
    let fields: Vec<(&str, u64)> = match endpoint {
        E::Completions if legacy => legacy_completion_fields(t),
        E::Completions => vec![
            ("input_tokens", t.uncached() + t.cached() + t.cache_write),
            ("output_tokens", t.output()),
            ("input_cached_tokens", t.cached()),
            ("input_cache_write_tokens", t.cache_write),
            ("input_uncached_tokens", t.uncached()),
            ("input_text_tokens", t.input_text),
            ("output_text_tokens", t.output_text),
            ("input_cached_text_tokens", t.cached_text),
            ("input_audio_tokens", t.input_audio),
            ("input_cached_audio_tokens", t.cached_audio),
            ("output_audio_tokens", t.output_audio),
            ("input_image_tokens", t.input_image),
            ("input_cached_image_tokens", t.cached_image),
            ("output_image_tokens", t.output_image),
        ],
        E::Embeddings | E::Moderations => vec![("input_tokens", m.quantity)],
        E::Images => vec![("images", m.quantity)],
        E::AudioSpeeches => vec![("characters", m.quantity)],
        E::AudioTranscriptions => vec![("seconds", m.quantity)],
        E::CodeInterpreterSessions => vec![("num_sessions", m.quantity)],
        E::WebSearchCalls | E::FileSearchCalls => vec![("num_requests", m.quantity)],
    };
    if !matches!(endpoint, E::CodeInterpreterSessions | E::FileSearchCalls) {
        row.insert("num_model_requests".into(), m.requests.into());
    }
    for (k, v) in fields {
        row.insert(k.to_owned(), v.into());
    }
}

/// The legacy completions schema (spec ≤ 2026-05): `input_tokens` = text input including
/// cached (here also image input and cache writes, which it had no field for),
/// `input_cached_tokens` = cached text (and image), `input_audio_tokens` = audio input
/// including cached, `output_tokens` = text (and image) output, `output_audio_tokens`.
fn legacy_completion_fields(t: &OpenAiTokens) -> Vec<(&'static str, u64)> {
    vec![
        (
            "input_tokens",
            t.input_text + t.cached_text + t.cache_write + t.input_image + t.cached_image,
        ),
        ("input_cached_tokens", t.cached_text + t.cached_image),
        ("output_tokens", t.output_text + t.output_image),
        ("input_audio_tokens", t.input_audio + t.cached_audio),
        ("output_audio_tokens", t.output_audio),
    ]
}

fn vector_store_rows(st: &SimState, r: &UsageRequest, b: i64) -> Vec<Value> {
    let open = &st.data.openai;
    if b >= open.now().timestamp() {
        return Vec::new();
    }
    let grouped = r.group_by.contains(&"project_id");
    let mut rows = Vec::new();
    let mut total = 0;
    for (i, p) in open.projects().iter().enumerate() {
        if r.filters
            .get("project_id")
            .is_some_and(|w| !w.contains(&p.id))
        {
            continue;
        }
        let Some(bytes) = open.vector_store_bytes(i, time(b)) else {
            continue;
        };
        if grouped {
            rows.push(json!({"object": Endpoint::VectorStores.object(), "usage_bytes": bytes, "project_id": p.id}));
        }
        total += bytes;
    }
    if !grouped && total > 0 {
        rows.push(json!({"object": Endpoint::VectorStores.object(), "usage_bytes": total, "project_id": null}));
    }
    rows
}

async fn costs(req: HttpRequest, st: web::Data<SimState>) -> HttpResponse {
    st.serve("openai.costs", || {
        guarded(&st, &req, || costs_page(&st, &req))
    })
    .await
}

/// The `group_by` values of the costs endpoint.
const COST_GROUP_BY: [&str; 3] = ["project_id", "line_item", "api_key_id"];

/// A costs page as sent: typed so that `amount.value` goes out as the exact decimal text of a
/// JSON number (a `serde_json::Value` would hold an `f64`).
#[derive(serde::Serialize)]
struct CostsPage {
    object: &'static str,
    data: Vec<CostsBucket>,
    has_more: bool,
    next_page: Option<String>,
}

#[derive(serde::Serialize)]
struct CostsBucket {
    object: &'static str,
    start_time: i64,
    end_time: i64,
    results: Vec<CostsResult>,
}

#[derive(serde::Serialize)]
struct CostsResult {
    object: &'static str,
    amount: CostsAmount,
    line_item: Option<String>,
    project_id: Option<String>,
    api_key_id: Option<String>,
    quantity: Option<u64>,
    quantity_unit: Option<&'static str>,
}

#[derive(serde::Serialize)]
struct CostsAmount {
    value: Box<serde_json::value::RawValue>,
    currency: &'static str,
}

/// `GET /v1/organization/costs`: daily buckets only (`bucket_width=1d`), `limit` 1..=180
/// (default 7), `group_by` any of `project_id`, `line_item`, `api_key_id`, filters
/// `project_ids` and `api_key_ids`; amounts priced from the events (`crate::data::costs`).
fn costs_page(st: &SimState, req: &HttpRequest) -> Reply {
    const DAY: i64 = 86_400;
    let pairs = query_pairs(req);
    let int = |name: &str| int(&pairs, name);
    let parsed = (|| -> Result<_, Reply> {
        let start = start_time(&pairs)?;
        match query_get(&pairs, "bucket_width") {
            None | Some("1d") => {}
            Some(other) => {
                return Err(invalid(
                    "bucket_width",
                    &format!(
                        "Invalid 'bucket_width': '{other}'. Currently only '1d' is supported."
                    ),
                ));
            }
        }
        let limit = int("limit")?.unwrap_or(7);
        if !(1..=180).contains(&limit) {
            return Err(invalid(
                "limit",
                &format!("Invalid 'limit': {limit}. Limit can range between 1 and 180."),
            ));
        }
        let end = end_time(st, &pairs, start, DAY)?;
        let mut group_by: Vec<&'static str> = Vec::new();
        for g in values(&pairs, "group_by") {
            let Some(d) = COST_GROUP_BY.iter().find(|d| **d == g) else {
                return Err(invalid(
                    "group_by",
                    &format!(
                        "Invalid 'group_by' value '{g}'. Expected any of: {}.",
                        COST_GROUP_BY.join(", ")
                    ),
                ));
            };
            if !group_by.contains(d) {
                group_by.push(*d);
            }
        }
        for (f, _) in FILTERS {
            if !matches!(*f, "project_ids" | "api_key_ids") && !values(&pairs, f).is_empty() {
                return Err(invalid(
                    f,
                    &format!("Unrecognized request argument supplied: {f}"),
                ));
            }
        }
        let hash = query_hash(&pairs);
        let first = match query_get(&pairs, "page") {
            None => start - start.rem_euclid(DAY),
            Some(p) => read_cursor(p, hash).ok_or_else(|| {
                invalid(
                    "page",
                    "Invalid 'page': the cursor does not belong to this query.",
                )
            })?,
        };
        Ok((first, end, limit, group_by, hash))
    })();
    let (first, end, limit, group_by, hash) = match parsed {
        Ok(p) => p,
        Err(reply) => return reply,
    };
    let projects = values(&pairs, "project_ids");
    let keys = values(&pairs, "api_key_ids");
    let by = |d: &str| group_by.contains(&d);
    let mut data = Vec::new();
    let mut b = first;
    while b < end && i64::try_from(data.len()).unwrap_or(i64::MAX) < limit {
        // (project, line item, api key) as grouped → (amount, quantity, unit).
        type Key = (Option<String>, Option<String>, Option<String>);
        let mut groups: BTreeMap<Key, (rust_decimal::Decimal, u64, Option<&'static str>)> =
            BTreeMap::new();
        for e in st.data.openai.between(time(b), time(b + DAY)) {
            let key_id = dim_value(e, "api_key_id").as_str().map(str::to_owned);
            if (!projects.is_empty()
                && !e.project.as_deref().is_some_and(|p| projects.contains(&p)))
                || (!keys.is_empty() && !key_id.as_deref().is_some_and(|k| keys.contains(&k)))
            {
                continue;
            }
            for item in e.cost_items() {
                let key: Key = (
                    e.project.clone().filter(|_| by("project_id")),
                    by("line_item").then(|| item.line_item()),
                    key_id.clone().filter(|_| by("api_key_id")),
                );
                let g = groups
                    .entry(key)
                    .or_insert((rust_decimal::Decimal::ZERO, 0, item.unit));
                g.0 += item.amount;
                g.1 += item.quantity;
            }
        }
        let results = groups
            .into_iter()
            .filter_map(
                |((project_id, line_item, api_key_id), (amount, quantity, unit))| {
                    let grouped_item = line_item.is_some();
                    Some(CostsResult {
                        object: "organization.costs.result",
                        amount: CostsAmount {
                            value: serde_json::value::RawValue::from_string(
                                amount.normalize().to_string(),
                            )
                            .ok()?,
                            currency: "usd",
                        },
                        line_item,
                        project_id,
                        api_key_id,
                        quantity: grouped_item.then_some(quantity),
                        quantity_unit: unit.filter(|_| grouped_item),
                    })
                },
            )
            .collect();
        data.push(CostsBucket {
            object: "bucket",
            start_time: b,
            end_time: b + DAY,
            results,
        });
        b += DAY;
    }
    let has_more = b < end;
    let page = CostsPage {
        object: "page",
        data,
        has_more,
        next_page: has_more.then(|| cursor(b, hash)),
    };
    Reply::raw_json(200, serde_json::to_vec(&page).unwrap_or_default())
}

async fn projects(req: HttpRequest, st: web::Data<SimState>) -> HttpResponse {
    st.serve("openai.projects", || {
        guarded(&st, &req, || list_projects(&st, &req))
    })
    .await
}

fn list_projects(st: &SimState, req: &HttpRequest) -> Reply {
    let pairs = query_pairs(req);
    let limit = match query_get(&pairs, "limit").map(str::parse::<usize>) {
        None => 20,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => return invalid("limit", "Invalid 'limit': it must be between 1 and 100."),
    };
    let archived = query_get(&pairs, "include_archived") == Some("true");
    let all: Vec<_> = st
        .data
        .openai
        .projects()
        .iter()
        .filter(|p| archived || p.archived_at.is_none())
        .collect();
    let from = match query_get(&pairs, "after") {
        None => 0,
        Some(after) => match all.iter().position(|p| p.id == after) {
            Some(i) => i + 1,
            None => return invalid("after", &format!("No project found with id '{after}'.")),
        },
    };
    let page: Vec<Value> = all
        .iter()
        .skip(from)
        .take(limit)
        .map(|p| {
            json!({
                "id": p.id,
                "object": "organization.project",
                "name": p.name,
                "created_at": p.created_at,
                "archived_at": p.archived_at,
                "status": if p.archived_at.is_some() { "archived" } else { "active" },
            })
        })
        .collect();
    let first_id = page.first().map(|p| p["id"].clone());
    let last_id = page.last().map(|p| p["id"].clone());
    Reply::ok(&json!({
        "object": "list",
        "data": page,
        "first_id": first_id,
        "last_id": last_id,
        "has_more": from + limit < all.len(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_belong_to_their_query() {
        let q = |s: &str| serde_urlencoded::from_str::<Vec<(String, String)>>(s).unwrap();
        let a = q("start_time=1&group_by[]=model&group_by[]=project_id");
        let same = q("group_by=project_id&start_time=1&group_by=model&page=x");
        assert_eq!(query_hash(&a), query_hash(&same));
        let c = cursor(1_730_419_200, query_hash(&a));
        assert!(c.starts_with("page_"));
        assert_eq!(read_cursor(&c, query_hash(&same)), Some(1_730_419_200));
        assert_eq!(read_cursor(&c, query_hash(&q("start_time=2"))), None);
        assert_eq!(read_cursor("page_!!", 0), None);
        assert_eq!(unbase64("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(unbase64("Zm8=").unwrap(), b"fo");
    }
}
