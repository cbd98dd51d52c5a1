//! The shared server plumbing: start/stop, fault layer, counters and vendor error bodies.

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::data::{DataSpec, Dataset};
use crate::faults::{CallCounters, Faults, Forced, Injected};

/// Which vendor a simulator imitates (decides error bodies and extra headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Vendor {
    DigitalOcean,
    Kibana,
    ChatBotKit,
    Anthropic,
    OpenAi,
}

/// Options of the Anthropic simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnthropicOptions {
    /// Requests per admin key in any 60-second window, answered 429 `rate_limit_error` with
    /// `retry-after` above it (`0` disables the limit). Anthropic publishes no number for these
    /// endpoints ("polling once per minute for sustained use"); 60 is the simulator's choice.
    pub rate_limit_per_minute: u32,
    /// Returns only buckets that end strictly before `ending_at`, instead of those ending at or
    /// before it (the default, as the cookbook's use implies). The documentation ("buckets that
    /// end before this") allows either reading; clients must get the same answer under both.
    pub strict_ending_at: bool,
}

impl Default for AnthropicOptions {
    fn default() -> Self {
        Self {
            rate_limit_per_minute: 60,
            strict_ending_at: false,
        }
    }
}

/// Options of the DigitalOcean simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoOptions {
    /// The per-token budget of requests in any 60-second window (`0` disables the limit, and
    /// with it the `ratelimit-*` headers: there is no budget to report).
    pub rate_limit_per_minute: u32,
}

impl Default for DoOptions {
    fn default() -> Self {
        Self {
            rate_limit_per_minute: 250,
        }
    }
}

/// A rate-limit verdict: the values of the `ratelimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateInfo {
    pub(crate) limit: u32,
    pub(crate) remaining: u32,
    pub(crate) reset: u64,
    /// Seconds until a request would pass again (only when limited).
    pub(crate) retry_after: Option<u64>,
}

/// DigitalOcean's per-token sliding-window budget.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: u32,
    window: Duration,
    hits: Mutex<std::collections::HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    fn new(limit: u32) -> Self {
        Self {
            limit,
            window: Duration::from_secs(60),
            hits: Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn info(&self, q: &VecDeque<Instant>, now: Instant) -> RateInfo {
        let used = u32::try_from(q.len()).unwrap_or(u32::MAX);
        let reset_in = q.front().map_or(Duration::ZERO, |t| {
            (*t + self.window).saturating_duration_since(now)
        });
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        RateInfo {
            limit: self.limit,
            remaining: self.limit.saturating_sub(used),
            reset: (epoch + reset_in).as_secs(),
            retry_after: None,
        }
    }

    /// Counts a request of `token`, or refuses it when the budget is spent.
    pub(crate) fn acquire(&self, token: &str) -> Result<RateInfo, RateInfo> {
        let now = Instant::now();
        let mut hits = self.hits.lock().unwrap_or_else(PoisonError::into_inner);
        let q = hits.entry(token.to_owned()).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            q.pop_front();
        }
        if self.limit == 0 {
            return Ok(RateInfo {
                limit: 0,
                remaining: 0,
                reset: self.info(q, now).reset,
                retry_after: None,
            });
        }
        if q.len() >= self.limit as usize {
            let mut info = self.info(q, now);
            let wait = q.front().map_or(Duration::ZERO, |t| {
                (*t + self.window).saturating_duration_since(now)
            });
            info.retry_after = Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
            return Err(info);
        }
        q.push_back(now);
        Ok(self.info(q, now))
    }

    /// Returns the current state of `token`'s budget without counting a request.
    pub(crate) fn peek(&self, token: &str) -> RateInfo {
        let now = Instant::now();
        let hits = self.hits.lock().unwrap_or_else(PoisonError::into_inner);
        match hits.get(token) {
            Some(q) => {
                let live: VecDeque<Instant> = q
                    .iter()
                    .copied()
                    .filter(|t| now.duration_since(*t) < self.window)
                    .collect();
                self.info(&live, now)
            }
            None => self.info(&VecDeque::new(), now),
        }
    }
}

/// A handler's answer before the fault layer and vendor headers are applied.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Vec<u8>,
    pub(crate) content_type: &'static str,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
}

impl Reply {
    pub(crate) fn json(status: u16, v: &Value) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: serde_json::to_vec(v).unwrap_or_default(),
            content_type: "application/json; charset=utf-8",
            headers: Vec::new(),
        }
    }

    /// A JSON body already serialized (e.g. with exact decimal numbers in it).
    pub(crate) fn raw_json(status: u16, body: Vec<u8>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
            content_type: "application/json; charset=utf-8",
            headers: Vec::new(),
        }
    }

    pub(crate) fn ok(v: &Value) -> Self {
        Self::json(200, v)
    }

    #[must_use]
    pub(crate) fn header(mut self, name: &'static str, value: impl std::fmt::Display) -> Self {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            self.headers.push((HeaderName::from_static(name), v));
        }
        self
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n.as_str() == name)
    }
}

/// Returns the HTTP reason phrase of a status (`Bad Request`).
pub(crate) fn reason(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown")
}

impl Vendor {
    /// Builds the vendor's error answer for `status`, with an optional message.
    pub(crate) fn error(self, status: u16, message: Option<&str>) -> Reply {
        match self {
            Self::DigitalOcean => {
                let (id, default) = match status {
                    400 => ("bad_request", "The request was invalid."),
                    401 => ("unauthorized", "Unable to authenticate you."),
                    403 => (
                        "forbidden",
                        "You do not have access for the attempted action.",
                    ),
                    404 => (
                        "not_found",
                        "The resource you requested could not be found.",
                    ),
                    429 => ("too_many_requests", "API rate limit exceeded."),
                    500 => ("server_error", "Unexpected server-side error"),
                    503 => (
                        "service_unavailable",
                        "The service is temporarily unavailable.",
                    ),
                    _ => ("error", reason(status)),
                };
                let request_id = request_id();
                Reply::json(
                    status,
                    &json!({"id": id, "message": message.unwrap_or(default), "request_id": request_id}),
                )
                .header("x-request-id", request_id)
            }
            Self::Kibana => {
                let r = reason(status);
                Reply::json(
                    status,
                    &json!({"statusCode": status, "error": r, "message": message.unwrap_or(r)}),
                )
            }
            Self::ChatBotKit => {
                let code = match status {
                    400 => "BAD_REQUEST",
                    401 => "NOT_AUTHENTICATED",
                    402 => "NO_SUBSCRIPTION",
                    403 => "NOT_AUTHORIZED",
                    404 => "NOT_FOUND",
                    405 => "METHOD_NOT_ALLOWED",
                    408 => "TIMEOUT",
                    409 => "CONFLICT",
                    422 => "UNPROCESSABLE_ENTITY",
                    429 => "TOO_MANY_REQUESTS",
                    500 => "INTERNAL_SERVER_ERROR",
                    501 => "NOT_IMPLEMENTED",
                    502 => "BAD_GATEWAY",
                    503 => "SERVICE_UNAVAILABLE",
                    504 => "GATEWAY_TIMEOUT",
                    _ => "ERROR",
                };
                let default = match status {
                    401 => "Not authenticated",
                    404 => "Not found",
                    429 => "Too many requests",
                    500 => "Internal server error",
                    _ => reason(status),
                };
                Reply::json(
                    status,
                    &json!({"message": message.unwrap_or(default), "code": code}),
                )
            }
            Self::Anthropic => {
                let (kind, default) = match status {
                    400 => (
                        "invalid_request_error",
                        "There was an issue with your request.",
                    ),
                    401 => ("authentication_error", "invalid x-api-key"),
                    402 => ("billing_error", "There is an issue with your billing."),
                    403 => (
                        "permission_error",
                        "Your API key does not have permission to use the specified resource.",
                    ),
                    404 => ("not_found_error", "Not found"),
                    409 => ("conflict_error", "Conflict"),
                    413 => (
                        "request_too_large",
                        "Request exceeds the maximum allowed size.",
                    ),
                    429 => ("rate_limit_error", "Your account has hit a rate limit."),
                    504 => ("timeout_error", "Request timed out."),
                    529 => ("overloaded_error", "Overloaded"),
                    _ => ("api_error", "Internal server error"),
                };
                let request_id = format!("req_{}", request_id().replace('-', ""));
                Reply::json(
                    status,
                    &json!({
                        "type": "error",
                        "error": {"type": kind, "message": message.unwrap_or(default)},
                        "request_id": request_id,
                    }),
                )
                .header("request-id", request_id)
            }
            Self::OpenAi => {
                let (kind, code, default) = match status {
                    400 => ("invalid_request_error", None, "Invalid request."),
                    401 => (
                        "invalid_request_error",
                        Some("invalid_api_key"),
                        "Incorrect API key provided.",
                    ),
                    403 => (
                        "invalid_request_error",
                        Some("insufficient_permissions"),
                        "You have insufficient permissions for this operation.",
                    ),
                    404 => (
                        "invalid_request_error",
                        Some("unknown_url"),
                        "Unknown request URL. Please check the URL for typos.",
                    ),
                    429 => (
                        "requests",
                        Some("rate_limit_exceeded"),
                        "Rate limit reached for requests.",
                    ),
                    s if s >= 500 => (
                        "server_error",
                        None,
                        "The server had an error while processing your request. Sorry about that!",
                    ),
                    _ => ("invalid_request_error", None, reason(status)),
                };
                crate::openai::error(status, kind, None, code, message.unwrap_or(default))
            }
        }
    }

    fn forced(self, f: Forced) -> Reply {
        match (self, f.status, f.limits_reached) {
            (Self::ChatBotKit, 429, true) => Reply::json(
                429,
                &json!({"message": "Usage limits reached", "code": "LIMITS_REACHED"}),
            ),
            (Self::DigitalOcean | Self::Anthropic | Self::OpenAi, 429, _) => {
                self.error(429, None).header("retry-after", 1)
            }
            (_, status, _) => self.error(status, None),
        }
    }
}

/// Returns a fresh uuid-shaped request id.
fn request_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        n & 0xfff,
        n
    )
}

/// The instant a simulator answers as of ([`SimHandle::set_clock`]); `None` = all its data.
#[derive(Debug, Default)]
pub(crate) struct Clock(Mutex<Option<DateTime<Utc>>>);

impl Clock {
    pub(crate) fn get(&self) -> Option<DateTime<Utc>> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, at: Option<DateTime<Utc>>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = at;
    }
}

/// The state every handler of one simulator shares.
#[derive(Debug)]
pub(crate) struct SimState {
    pub(crate) vendor: Vendor,
    pub(crate) data: Arc<Dataset>,
    pub(crate) faults: Arc<Faults>,
    pub(crate) clock: Arc<Clock>,
    pub(crate) calls: Arc<CallCounters>,
    pub(crate) limiter: Option<RateLimiter>,
    /// Anthropic only: [`AnthropicOptions::strict_ending_at`].
    pub(crate) strict_ending_at: bool,
}

impl SimState {
    /// Counts the request, applies the fault layer, runs `handler` and finishes the answer.
    pub(crate) async fn serve(
        &self,
        route: &'static str,
        handler: impl FnOnce() -> Reply,
    ) -> HttpResponse {
        self.calls.bump(route);
        let reply = match self.faults.before().await {
            Injected::Error(f) => self.vendor.forced(f),
            Injected::Pass => {
                let mut reply = handler();
                if reply.status.is_success() {
                    let (malformed, truncated) = self.faults.body_faults();
                    if malformed {
                        reply.body = b"{\"sim: malformed".to_vec();
                        reply.status = StatusCode::OK;
                    } else if truncated {
                        let half = reply.body.len() / 2;
                        reply.body.truncate(half);
                        reply.status = StatusCode::OK;
                    }
                }
                reply
            }
        };
        self.finish(reply)
    }

    fn finish(&self, mut reply: Reply) -> HttpResponse {
        if let Some(l) = &self.limiter
            && self.vendor == Vendor::DigitalOcean
            && !reply.has_header("ratelimit-limit")
        {
            let info = l.peek(crate::DO_TOKEN);
            reply = with_rate_headers(reply, info);
        }
        if reply.status == StatusCode::TOO_MANY_REQUESTS && self.faults.omits_retry_after() {
            reply.headers.retain(|(n, _)| n.as_str() != "retry-after");
        }
        let mut b = HttpResponse::build(reply.status);
        b.insert_header(("content-type", reply.content_type));
        for (n, v) in reply.headers {
            b.append_header((n, v));
        }
        b.body(reply.body)
    }
}

/// Adds the `ratelimit-*` headers (and `retry-after` when limited); none when the limit is off
/// (`ratelimit-remaining: 0` would tell a client that honours it to stop).
pub(crate) fn with_rate_headers(reply: Reply, info: RateInfo) -> Reply {
    if info.limit == 0 {
        return reply;
    }
    let reply = reply
        .header("ratelimit-limit", info.limit)
        .header("ratelimit-remaining", info.remaining)
        .header("ratelimit-reset", info.reset);
    match info.retry_after {
        Some(s) => reply.header("retry-after", s),
        None => reply,
    }
}

/// Parses a query string into ordered pairs (invalid strings give no pairs).
pub(crate) fn query_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    serde_urlencoded::from_str(req.query_string()).unwrap_or_default()
}

/// Returns the first value of query parameter `name`.
pub(crate) fn query_get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Returns the bearer token of a request, if any.
pub(crate) fn bearer(req: &HttpRequest) -> Option<&str> {
    let v = req.headers().get("authorization")?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn unknown_route(st: web::Data<SimState>) -> HttpResponse {
    st.serve("unknown", || st.vendor.error(404, None)).await
}

/// A running simulator: its base URL, faults and request counters.
///
/// Dropping the handle stops the server (without waiting); [`SimHandle::stop`] waits.
#[derive(Debug)]
pub struct SimHandle {
    /// The base URL, like `http://127.0.0.1:PORT` (no trailing slash).
    pub base_url: String,
    /// The bound address.
    pub addr: SocketAddr,
    faults: Arc<Faults>,
    calls: Arc<CallCounters>,
    clock: Arc<Clock>,
    server: ServerHandle,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl SimHandle {
    /// Returns the fault switches of this simulator.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Returns how many requests reached `route` (e.g. `"do.usage"`), including failed ones.
    pub fn calls(&self, route: &str) -> u64 {
        self.calls.get(route)
    }

    /// Returns how many requests reached this simulator on any route (unknown paths included).
    pub fn total_calls(&self) -> u64 {
        self.calls.total()
    }

    /// Sets every counter back to zero.
    pub fn reset_calls(&self) {
        self.calls.reset();
    }

    /// Sets the instant the simulator answers as of; `None` (the default) answers from all of
    /// its data. Applies to the next request.
    ///
    /// The Anthropic simulator shows usage as of `t` (each event only [`crate::ANTHROPIC_FRESHNESS`]
    /// after it happened; its default clock is the data's `now`).
    ///
    /// The Kibana simulator honours it too: with `Some(t)` every consumption answer shows the
    /// conversations [`as of`](crate::KibanaConversation::as_of) `t` (absent before their
    /// first round, otherwise the totals, warnings and `updated_at` of their rounds up to `t`),
    /// sorted, paged and aggregated on that view. The other simulators ignore it.
    pub fn set_clock(&self, at: Option<DateTime<Utc>>) {
        self.clock.set(at);
    }

    /// Returns the instant set by [`Self::set_clock`].
    pub fn clock(&self) -> Option<DateTime<Utc>> {
        self.clock.get()
    }

    /// Stops the server, dropping in-flight (e.g. hung) requests, and waits until it is down.
    pub async fn stop(mut self) {
        self.server.stop(false).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if self.task.is_some() {
            // The stop command is sent eagerly; the returned future only awaits completion.
            drop(self.server.stop(false));
        }
    }
}

/// Binds, configures and spawns one simulator.
pub(crate) fn spawn(
    vendor: Vendor,
    data: Arc<Dataset>,
    limiter: Option<u32>,
    addr: Option<SocketAddr>,
    routes: fn(&mut web::ServiceConfig),
) -> io::Result<SimHandle> {
    spawn_with(vendor, data, limiter, false, addr, routes)
}

/// [`spawn`] with Anthropic's `ending_at` rule ([`AnthropicOptions::strict_ending_at`]).
fn spawn_with(
    vendor: Vendor,
    data: Arc<Dataset>,
    limiter: Option<u32>,
    strict_ending_at: bool,
    addr: Option<SocketAddr>,
    routes: fn(&mut web::ServiceConfig),
) -> io::Result<SimHandle> {
    let addr = addr.unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let faults = Arc::new(Faults::default());
    let calls = Arc::new(CallCounters::default());
    let clock = Arc::new(Clock::default());
    let state = web::Data::new(SimState {
        vendor,
        data,
        faults: faults.clone(),
        calls: calls.clone(),
        clock: clock.clone(),
        limiter: limiter.map(RateLimiter::new),
        strict_ending_at,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(routes)
            .default_service(web::to(unknown_route))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    Ok(SimHandle {
        base_url: format!("http://{local}"),
        addr: local,
        faults,
        calls,
        clock,
        server: handle,
        task: Some(task),
    })
}

/// Starts the DigitalOcean simulator on `addr` (`None` = `127.0.0.1:0`).
#[allow(clippy::unused_async, reason = "async keeps callers inside a runtime")]
pub async fn start_digitalocean(
    data: Arc<Dataset>,
    opts: DoOptions,
    addr: Option<SocketAddr>,
) -> io::Result<SimHandle> {
    spawn(
        Vendor::DigitalOcean,
        data,
        Some(opts.rate_limit_per_minute),
        addr,
        crate::digitalocean::routes,
    )
}

/// Starts the Kibana simulator on `addr` (`None` = `127.0.0.1:0`).
#[allow(clippy::unused_async, reason = "async keeps callers inside a runtime")]
pub async fn start_kibana(data: Arc<Dataset>, addr: Option<SocketAddr>) -> io::Result<SimHandle> {
    spawn(Vendor::Kibana, data, None, addr, crate::kibana::routes)
}

/// Starts the ChatBotKit simulator on `addr` (`None` = `127.0.0.1:0`).
#[allow(clippy::unused_async, reason = "async keeps callers inside a runtime")]
pub async fn start_chatbotkit(
    data: Arc<Dataset>,
    addr: Option<SocketAddr>,
) -> io::Result<SimHandle> {
    spawn(
        Vendor::ChatBotKit,
        data,
        None,
        addr,
        crate::chatbotkit::routes,
    )
}

/// Starts the Anthropic simulator on `addr` (`None` = `127.0.0.1:0`) with the default
/// [`AnthropicOptions`].
#[allow(clippy::unused_async, reason = "async keeps callers inside a runtime")]
pub async fn start_anthropic(
    data: Arc<Dataset>,
    addr: Option<SocketAddr>,
) -> io::Result<SimHandle> {
    start_anthropic_with(data, AnthropicOptions::default(), addr).await
}

/// Starts the Anthropic simulator with `opts` on `addr` (`None` = `127.0.0.1:0`).
#[allow(clippy::unused_async, reason = "async keeps callers inside a runtime")]
pub async fn start_anthropic_with(
    data: Arc<Dataset>,
    opts: AnthropicOptions,
    addr: Option<SocketAddr>,
) -> io::Result<SimHandle> {
    spawn_with(
        Vendor::Anthropic,
        data,
        Some(opts.rate_limit_per_minute),
        opts.strict_ending_at,
        addr,
        crate::anthropic::routes,
    )
}

/// Starts the OpenAI Administration API simulator on `addr` (`None` = `127.0.0.1:0`): usage
/// and projects, answering [`crate::OPENAI_ADMIN_KEY`]; a per-minute limit is set with
/// [`Faults::set_rate_limit`].
#[allow(clippy::unused_async, reason = "async keeps callers inside a runtime")]
pub async fn start_openai(data: Arc<Dataset>, addr: Option<SocketAddr>) -> io::Result<SimHandle> {
    spawn(Vendor::OpenAi, data, None, addr, crate::openai::routes)
}

/// The three simulators over one data set.
#[derive(Debug)]
pub struct Simulators {
    /// The data every simulator answers from (and the ground truth).
    pub data: Arc<Dataset>,
    /// The DigitalOcean simulator.
    pub digitalocean: SimHandle,
    /// The Kibana simulator.
    pub kibana: SimHandle,
    /// The ChatBotKit simulator.
    pub chatbotkit: SimHandle,
    /// The OpenAI simulator.
    pub openai: SimHandle,
    /// The Anthropic simulator.
    pub anthropic: SimHandle,
}

impl Simulators {
    /// Replaces the Anthropic simulator by one with `options` over the same data (e.g. without
    /// or with another per-minute limit), stopping the old one.
    pub async fn restart_anthropic(&mut self, options: AnthropicOptions) -> io::Result<()> {
        let new = start_anthropic_with(self.data.clone(), options, None).await?;
        std::mem::replace(&mut self.anthropic, new).stop().await;
        Ok(())
    }

    /// Every simulator.
    pub fn handles(&self) -> [&SimHandle; 5] {
        [
            &self.digitalocean,
            &self.kibana,
            &self.chatbotkit,
            &self.openai,
            &self.anthropic,
        ]
    }

    /// Stops every simulator.
    pub async fn stop(self) {
        for s in [
            self.digitalocean,
            self.kibana,
            self.chatbotkit,
            self.openai,
            self.anthropic,
        ] {
            s.stop().await;
        }
    }
}

/// Generates the data of `spec` and starts every simulator on free `127.0.0.1` ports
/// (DigitalOcean and Anthropic with their default options).
pub async fn start_all(spec: &DataSpec) -> io::Result<Simulators> {
    start_all_with(spec, DoOptions::default()).await
}

/// [`start_all`] with DigitalOcean's options (e.g. without its rate limit, for tests that send
/// more than its 250 requests per minute).
pub async fn start_all_with(spec: &DataSpec, digitalocean: DoOptions) -> io::Result<Simulators> {
    let data = Arc::new(Dataset::generate(spec));
    Ok(Simulators {
        digitalocean: start_digitalocean(data.clone(), digitalocean, None).await?,
        kibana: start_kibana(data.clone(), None).await?,
        chatbotkit: start_chatbotkit(data.clone(), None).await?,
        openai: start_openai(data.clone(), None).await?,
        anthropic: start_anthropic(data.clone(), None).await?,
        data,
    })
}
