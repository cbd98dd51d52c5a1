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
        handle
    })
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by route, method and status"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency"
    );
    describe_gauge!("http_requests_in_flight", "HTTP requests being answered");
    describe_counter!(
        "upstream_calls_total",
        "Provider calls (one or more vendor HTTP requests each), by source and outcome"
    );
    describe_counter!(
        "upstream_requests_total",
        "Vendor HTTP requests sent, by source and outcome"
    );
    describe_histogram!(
        "upstream_call_duration_seconds",
        Unit::Seconds,
        "Provider call latency, by source and outcome"
    );
    describe_counter!(
        "cache_lookups_total",
        "Window cache lookups, by result (hit, miss)"
    );
    describe_gauge!("cache_entries", "Entries in the gateway caches, by cache");
    describe_counter!(
        "jwks_refreshes_total",
        "JWKS fetches from the identity provider, by outcome (ok, error)"
    );
    describe_gauge!(
        "cache_weighted_bytes",
        "Approximate bytes held by the gateway caches, by cache"
    );
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
        .map_or_else(
            // A v4 UUID from the thread's fast generator: `Uuid::new_v4` asks the kernel for
            // randomness on every request, and request ids need no cryptographic strength.
            || {
                uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes())
                    .into_uuid()
                    .to_string()
            },
            str::to_owned,
        )
}

/// The in-flight gauge, registered once.
fn in_flight() -> &'static metrics::Gauge {
    static GAUGE: OnceLock<metrics::Gauge> = OnceLock::new();
    // A handle taken before the recorder is installed would be a no-op for good.
    GAUGE.get_or_init(|| {
        prometheus();
        metrics::gauge!("http_requests_in_flight")
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
        let c = metrics::counter!("http_requests_total", &labels);
        let h = metrics::histogram!("http_request_duration_seconds", &labels);
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
fn access_log(
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

/// Renders the Prometheus text exposition, refreshing the cache gauges first.
pub fn render(state: &crate::state::AppState) -> String {
    let handle = prometheus();
    state.cache.publish_gauges();
    metrics::gauge!("cache_entries", "cache" => "responses")
        .set(state.responses.entry_count() as f64);
    metrics::gauge!("cache_weighted_bytes", "cache" => "responses")
        .set(state.responses.weighted_size() as f64);
    publish_circuit_states(state);
    handle.render()
}

/// Sets `circuit_state` of every source from its breaker as it is now, so that the series
/// exists from start-up and an open circuit reads half-open once its cool-down has passed
/// (the breaker itself only publishes when a call ends).
fn publish_circuit_states(state: &crate::state::AppState) {
    for (name, source) in &state.sources {
        metrics::gauge!("circuit_state", "source" => name.clone())
            .set(circuit_value(source.resilient.circuit()));
    }
}

/// The `circuit_state` value: 0 closed, 1 half-open, 2 open.
fn circuit_value(state: crate::resilience::CircuitState) -> f64 {
    use crate::resilience::CircuitState;
    match state {
        CircuitState::Closed => 0.0,
        CircuitState::HalfOpen => 1.0,
        CircuitState::Open => 2.0,
    }
}
