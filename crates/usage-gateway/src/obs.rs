//! Observability: request ids, the per-request access log line, and Prometheus metrics.

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, web};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

use crate::auth::CallerSub;
use crate::error::PROBLEM_JSON;
use crate::state::AppState;

/// The request id header, accepted from callers and returned on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest caller-supplied request id kept; longer or unsafe ones are replaced.
const MAX_REQUEST_ID: usize = 128;

/// The request id of the current request, in request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Latency buckets in seconds, shared by HTTP and upstream histograms.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The names of the gateway's own metric families, all prefixed `usage_gateway_` (process
/// metrics keep their standard `process_` names).
pub mod names {
    /// Counter: HTTP requests answered, by route, method and status.
    pub const HTTP_REQUESTS: &str = "usage_gateway_http_requests_total";
    /// Histogram: HTTP request latency.
    pub const HTTP_DURATION: &str = "usage_gateway_http_request_duration_seconds";
    /// Gauge: HTTP requests being answered.
    pub const HTTP_IN_FLIGHT: &str = "usage_gateway_http_requests_in_flight";
    /// Counter: provider call attempts, by source and outcome.
    pub const UPSTREAM_CALLS: &str = "usage_gateway_upstream_calls_total";
    /// Counter: vendor HTTP requests sent, by source and outcome.
    pub const UPSTREAM_REQUESTS: &str = "usage_gateway_upstream_requests_total";
    /// Histogram: provider call latency, by source and outcome.
    pub const UPSTREAM_DURATION: &str = "usage_gateway_upstream_call_duration_seconds";
    /// Counter: retries after transient failures, by source.
    pub const UPSTREAM_RETRIES: &str = "usage_gateway_upstream_retries_total";
    /// Gauge: 1 for each source's current circuit state, 0 for its other states.
    pub const CIRCUIT_STATE: &str = "usage_gateway_circuit_state";
    /// Counter: window cache lookups, by result.
    pub const CACHE_LOOKUPS: &str = "usage_gateway_cache_lookups_total";
    /// Gauge: entries in the gateway caches, by cache.
    pub const CACHE_ENTRIES: &str = "usage_gateway_cache_entries";
    /// Gauge: approximate bytes held by the gateway caches, by cache.
    pub const CACHE_BYTES: &str = "usage_gateway_cache_weighted_bytes";
    /// Counter: JWKS fetches, by outcome.
    pub const JWKS_REFRESHES: &str = "usage_gateway_jwks_refreshes_total";
    /// Gauge: 1, labelled with the gateway's version.
    pub const BUILD_INFO: &str = "usage_gateway_build_info";
    /// Counter: per-source answers by where their numbers came from (store, mixed, live,
    /// error: the store failed and the answer is live).
    pub const STORE_READS: &str = "usage_gateway_store_reads_total";
    /// Counter: windows written to the usage store, by source, origin (sync, query) and outcome.
    pub const STORE_WRITES: &str = "usage_gateway_store_windows_written_total";
    /// Gauge: closed hours of the backfill range not yet in the store, by source.
    pub const SYNC_BACKLOG: &str = "usage_gateway_sync_backlog_windows";
    /// Gauge: Unix time of the start of the store's history without gaps up to the newest
    /// closed hour, by source (0 while the newest closed hour is not stored).
    pub const SYNC_COVERED_FROM: &str = "usage_gateway_sync_covered_from_timestamp_seconds";
    /// Gauge: Unix time the syncer last finished a pass without error, by source.
    pub const SYNC_LAST_SUCCESS: &str = "usage_gateway_sync_last_success_timestamp_seconds";
    /// Counter: sync passes that failed, by source.
    pub const SYNC_ERRORS: &str = "usage_gateway_sync_errors_total";
    /// Gauge: 1 when this replica holds the source's sync lease, else 0.
    pub const SYNC_LEADER: &str = "usage_gateway_sync_leader";
    /// Gauge: a budget's spend this month over its amount, by budget.
    pub const BUDGET_SPENT_RATIO: &str = "usage_gateway_budget_spent_ratio";
    /// Gauge: a budget's forecast for the month over its amount, by budget.
    pub const BUDGET_FORECAST_RATIO: &str = "usage_gateway_budget_forecast_ratio";
    /// Gauge: 1 when a budget's spend counted everything (no source failed, nothing unpriced).
    pub const BUDGET_COMPLETE: &str = "usage_gateway_budget_complete";
}

/// Collects the process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// ...) at every scrape.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().set_buckets(&BUCKETS).map_or_else(
            |_| PrometheusBuilder::new().build_recorder(),
            PrometheusBuilder::build_recorder,
        );
        let handle = recorder.handle();
        // Another recorder may already be installed (e.g. by an embedding program); the
        // handle then renders only what this recorder saw, which is still correct output.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        process_collector().describe();
        metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        names::HTTP_REQUESTS,
        "HTTP requests answered, by route, method and status"
    );
    describe_histogram!(names::HTTP_DURATION, Unit::Seconds, "HTTP request latency");
    describe_gauge!(names::HTTP_IN_FLIGHT, "HTTP requests being answered");
    describe_counter!(
        names::UPSTREAM_CALLS,
        "Provider call attempts (one or more vendor HTTP requests each), by source and outcome"
    );
    describe_counter!(
        names::UPSTREAM_REQUESTS,
        "Vendor HTTP requests sent, by source and outcome"
    );
    describe_histogram!(
        names::UPSTREAM_DURATION,
        Unit::Seconds,
        "Provider call latency, by source and outcome"
    );
    describe_counter!(
        names::UPSTREAM_RETRIES,
        "Provider call retries after transient failures, by source"
    );
    describe_gauge!(
        names::CIRCUIT_STATE,
        "Circuit breaker state per source: 1 for the current state (closed, half_open, open), 0 for the others"
    );
    describe_counter!(
        names::CACHE_LOOKUPS,
        "Window cache lookups, by result (hit, miss)"
    );
    describe_gauge!(
        names::CACHE_ENTRIES,
        "Entries in the gateway caches, by cache"
    );
    describe_counter!(
        names::JWKS_REFRESHES,
        "JWKS fetches from the identity provider, by outcome (ok, error)"
    );
    describe_gauge!(
        names::CACHE_BYTES,
        Unit::Bytes,
        "Approximate bytes held by the gateway caches, by cache"
    );
    describe_counter!(
        names::STORE_READS,
        "Per-source answers by where their numbers came from: store, mixed (store and live), live, error (the store failed; answered live)"
    );
    describe_counter!(
        names::STORE_WRITES,
        "Windows written to the usage store, by source, origin (sync, query) and outcome"
    );
    describe_gauge!(
        names::SYNC_BACKLOG,
        "Closed hours of the backfill range not yet in the usage store, by source"
    );
    describe_gauge!(
        names::SYNC_COVERED_FROM,
        "Start (Unix time) of the stored history without gaps up to the newest closed hour, by source; 0 while that hour is not stored"
    );
    describe_gauge!(
        names::SYNC_LAST_SUCCESS,
        "Unix time the syncer last finished a pass without error, by source"
    );
    describe_counter!(names::SYNC_ERRORS, "Sync passes that failed, by source");
    describe_gauge!(
        names::SYNC_LEADER,
        "1 when this replica holds the source's sync lease (it syncs the source), else 0"
    );
    describe_gauge!(
        names::BUDGET_SPENT_RATIO,
        "A budget's spend this month over its monthly amount, by budget (1 = the budget is spent)"
    );
    describe_gauge!(
        names::BUDGET_FORECAST_RATIO,
        "A budget's forecast for the month (this month's average rate so far; the spent ratio in the month's first hour) over its amount, by budget"
    );
    describe_gauge!(
        names::BUDGET_COMPLETE,
        "1 when a budget's spend counted all its usage (every source answered, nothing unpriced), else 0 (the ratios are lower bounds)"
    );
    describe_gauge!(
        names::BUILD_INFO,
        "Always 1; the version label is the gateway's version"
    );
}

/// Registers at 0 the counters that would otherwise appear only with their first event, so
/// that rates and alerts see them from start-up: retries per source, and JWKS refreshes per
/// outcome when a JWKS is configured. Counters that already exist keep their value.
pub fn register_series<'a>(sources: impl IntoIterator<Item = &'a String>, jwks: bool) {
    prometheus();
    for name in sources {
        metrics::counter!(names::UPSTREAM_RETRIES, "source" => name.clone()).increment(0);
    }
    if jwks {
        for outcome in ["ok", "error"] {
            metrics::counter!(names::JWKS_REFRESHES, "outcome" => outcome).increment(0);
        }
    }
}

/// Keeps a caller's id when it is short and made of safe characters, else makes one.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| {
            !s.is_empty()
                && s.len() <= MAX_REQUEST_ID
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map_or_else(new_request_id, str::to_owned)
}

/// A new request id: a v4 UUID from the thread's fast generator (`Uuid::new_v4` asks the kernel
/// for randomness on every request, and request ids need no cryptographic strength).
pub(crate) fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes())
        .into_uuid()
        .to_string()
}

/// The `route` of a request whose head was refused before it was parsed (see
/// [`crate::headguard`]), in its access-log line and metrics.
pub const HEAD_ROUTE: &str = "(head)";

/// The in-flight gauge, registered once.
fn in_flight() -> &'static metrics::Gauge {
    static GAUGE: OnceLock<metrics::Gauge> = OnceLock::new();
    // A handle taken before the recorder is installed would be a no-op for good.
    GAUGE.get_or_init(|| {
        prometheus();
        metrics::gauge!(names::HTTP_IN_FLIGHT)
    })
}

/// The most label sets a worker keeps handles for; beyond it (odd methods, say) series are
/// looked up per request, so the list stays short and bounded.
const MAX_CACHED_SERIES: usize = 64;

/// Returns the request counter and latency histogram of one route, method and status.
///
/// Handles are kept per worker thread in a short list: looking a series up in the registry
/// builds its labels and hashes them, which cost more than the rest of a response-cache hit's
/// bookkeeping.
fn http_series(route: &str, method: &str, status: u16) -> (metrics::Counter, metrics::Histogram) {
    type Series = Vec<(String, String, u16, metrics::Counter, metrics::Histogram)>;
    thread_local! {
        static SERIES: RefCell<Series> = const { RefCell::new(Vec::new()) };
    }
    SERIES.with_borrow_mut(|series| {
        if let Some((.., c, h)) = series
            .iter()
            .find(|(r, m, s, ..)| *s == status && r == route && m == method)
        {
            return (c.clone(), h.clone());
        }
        prometheus();
        let labels = [
            ("route", route.to_owned()),
            ("method", method.to_owned()),
            ("status", status.to_string()),
        ];
        let c = metrics::counter!(names::HTTP_REQUESTS, &labels);
        let h = metrics::histogram!(names::HTTP_DURATION, &labels);
        if series.len() < MAX_CACHED_SERIES {
            series.push((
                route.to_owned(),
                method.to_owned(),
                status,
                c.clone(),
                h.clone(),
            ));
        }
        (c, h)
    })
}

/// The `instance` URI of a request's problem body.
pub fn instance_uri(id: &str) -> String {
    format!("urn:request-id:{id}")
}

/// Assigns the request id, logs one line per request, records HTTP metrics, and puts the
/// request id into problem bodies as `instance`.
///
/// A repeated `GET /v1/usage` that this worker remembers as a response-cache hit is answered
/// here, ahead of routing, extractors and the request span (see `routes::usage::fast_hit`);
/// its log line and metrics are the same as any other request's.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    // Size bounds come first: an oversized request reaches neither auth nor any handler.
    let state = req.app_data::<web::Data<AppState>>();
    let refused = state
        .and_then(|s| crate::limits::check(req.query_string(), req.headers(), &s.server).err());
    if refused.is_none()
        && let Some(state) = state
        && req.method() == Method::GET
        && req.path() == "/v1/usage"
        && let Some((res, sub)) = crate::routes::usage::fast_hit(req.request(), state)
    {
        let id = request_id(&req);
        let res = req.into_response(res);
        let status = res.status().as_u16();
        access_log(&id, "GET", "/v1/usage", "/v1/usage", status, started, &sub);
        return Ok(with_request_id(res, &id));
    }
    let id = request_id(&req);
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let span = tracing::info_span!("request", request_id = %id);
    let in_flight = in_flight();
    in_flight.increment(1.0);
    let result = match refused {
        Some(e) => Ok(req.error_response(e)),
        None => next
            .call(req)
            .instrument(span)
            .await
            .map(ServiceResponse::map_into_boxed_body),
    };
    in_flight.decrement(1.0);
    let res = result?;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "(unmatched)".into());
    let status = res.status();
    let sub = res
        .request()
        .extensions()
        .get::<CallerSub>()
        .map(|s| s.0.clone());
    access_log(
        &id,
        &method,
        &path,
        &route,
        status.as_u16(),
        started,
        sub.as_deref().unwrap_or("-"),
    );
    let is_problem = res
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    let res = if is_problem {
        let (request, response) = res.into_parts();
        let (head, body) = response.into_parts();
        let bytes = actix_web::body::to_bytes(body).await.unwrap_or_default();
        let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(serde_json::Value::Object(mut m)) => {
                m.insert(
                    "instance".into(),
                    serde_json::Value::String(instance_uri(&id)),
                );
                serde_json::to_vec(&m).unwrap_or_else(|_| bytes.to_vec())
            }
            _ => bytes.to_vec(),
        };
        let mut builder = HttpResponse::build(head.status());
        for (k, v) in head.headers() {
            builder.append_header((k.clone(), v.clone()));
        }
        ServiceResponse::new(request, builder.body(body))
    } else {
        res.map_into_boxed_body()
    };
    Ok(with_request_id(res, &id))
}

/// Returns every response with its request id.
fn with_request_id(mut res: ServiceResponse<BoxBody>, id: &str) -> ServiceResponse<BoxBody> {
    if let Ok(v) = HeaderValue::from_str(id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    res
}

/// Records a finished request: its line in the access log and its HTTP metrics.
pub(crate) fn access_log(
    request_id: &str,
    method: &str,
    path: &str,
    route: &str,
    status: u16,
    started: Instant,
    sub: &str,
) {
    let elapsed = started.elapsed();
    let (count, latency) = http_series(route, method, status);
    count.increment(1);
    latency.record(elapsed.as_secs_f64());
    tracing::info!(
        request_id,
        method,
        path,
        route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        sub,
        "request"
    );
}

/// Renders the Prometheus text exposition, refreshing the cache gauges, the circuit states and
/// the process metrics first.
pub fn render(state: &crate::state::AppState) -> String {
    let handle = prometheus();
    state.cache.publish_gauges();
    metrics::gauge!(names::CACHE_ENTRIES, "cache" => "responses")
        .set(state.responses.entry_count() as f64);
    metrics::gauge!(names::CACHE_BYTES, "cache" => "responses")
        .set(state.responses.weighted_size() as f64);
    publish_circuit_states(state);
    process_collector().collect();
    handle.render()
}

/// Sets `usage_gateway_circuit_state` of every source from its breaker as it is now, so that
/// the series exist from start-up and an open circuit reads half-open once its cool-down has
/// passed (the breaker itself changes state only when a call comes or ends).
fn publish_circuit_states(state: &crate::state::AppState) {
    use crate::resilience::CircuitState;
    for (name, source) in &state.sources {
        let now = source.resilient.circuit();
        for s in [
            CircuitState::Closed,
            CircuitState::HalfOpen,
            CircuitState::Open,
        ] {
            metrics::gauge!(names::CIRCUIT_STATE, "source" => name.clone(), "state" => s.as_str())
                .set(if s == now { 1.0 } else { 0.0 });
        }
    }
}
