//! Shared fixtures: a config, static sources with known data, token minting, the app.

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{App, test, web};
use chrono::{DateTime, Duration, TimeZone, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use usage_core::test_util::{StaticEvent, StaticProvider};
use usage_core::{Dimension, DynUsageProvider};
use usage_gateway::app::{configure, not_found};
use usage_gateway::config::Config;
use usage_gateway::fetch::SourceSpec;
use usage_gateway::obs::observe;
use usage_gateway::state::AppState;

pub const SECRET: &str = "test-secret-0123456789abcdef-0123456789";

pub fn config_text(request_timeout: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
request_timeout = "{request_timeout}"
max_range = "100d"
max_buckets = 500
[auth]
algorithms = ["HS256"]
hs256_secret = "${{SECRET}}"
issuer = "https://idp.test"
audience = "usage-gateway"
leeway = "5s"
[cache]
open_ttl = "30s"
closed_ttl = "1h"
settle = "10m"
[[access]]
claim = "sub"
value = "admin"
sources = ["*"]
[[access]]
claim = "team"
value = "cx"
sources = ["alpha"]
[[access]]
claim = "team"
value = "cx-narrow"
sources = ["alpha"]
agents = ["alpha/a1"]
[[access]]
claim = "team"
value = "ops"
sources = ["beta"]
"#
    )
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap()
}

/// alpha: agents a1/a2 with users; every hour of 4 days, 10 in / 5 out (a1) and 1 in / 1 out (a2).
pub fn alpha() -> StaticProvider {
    let events = (0..96).flat_map(|h| {
        let at = t0() + Duration::hours(h);
        [
            StaticEvent::tokens(
                at,
                "a1",
                Some(if h % 2 == 0 { "alice" } else { "bob" }),
                10,
                5,
            ),
            StaticEvent::tokens(at, "a2", Some("carol"), 1, 1),
        ]
    });
    StaticProvider::new("alpha")
        .with_kind(usage_provider_digitalocean::KIND)
        .with_agents(&[("a1", "Support"), ("a2", "Sales")])
        .with_events(events)
}

/// beta: one agent, no user dimension; 100 other tokens per day in credits-free tokens.
pub fn beta() -> StaticProvider {
    let events = (0..4).map(|d| StaticEvent::tokens(t0() + Duration::days(d), "b1", None, 100, 0));
    StaticProvider::new("beta")
        .with_kind(usage_provider_kibana::KIND)
        .with_dimensions(&[Dimension::Agent], &[Dimension::Agent])
        .with_agents(&[("b1", "Ops")])
        .with_events(events)
}

pub struct Harness {
    pub alpha: Arc<StaticProvider>,
    pub beta: Arc<StaticProvider>,
    pub state: web::Data<AppState>,
}

pub fn harness(request_timeout: &str) -> Harness {
    harness_from(&config_text(request_timeout))
}

/// A harness on a config text of its own (`${SECRET}` is the test secret).
pub fn harness_from(text: &str) -> Harness {
    harness_with(text, Vec::new())
}

/// [`harness_from`] with `extra` sources (each with its own resilience) after `alpha` and
/// `beta`.
pub fn harness_with(text: &str, extra: Vec<SourceSpec>) -> Harness {
    let config = Config::parse(text, &|k| (k == "SECRET").then(|| SECRET.to_owned())).unwrap();
    let alpha = Arc::new(alpha());
    let beta = Arc::new(beta());
    let providers: Vec<DynUsageProvider> = vec![alpha.clone(), beta.clone()];
    let specs = providers.into_iter().map(SourceSpec::from).chain(extra);
    let state = web::Data::new(AppState::new(config, specs).unwrap());
    Harness { alpha, beta, state }
}

pub async fn app(
    h: &Harness,
) -> impl Service<
    actix_http::Request,
    Response = ServiceResponse<impl MessageBody>,
    Error = actix_web::Error,
> {
    app_of(h.state.clone(), true).await
}

/// The gateway's app on `state`, as the server builds it (`metrics`: `/metrics` on it too).
pub async fn app_of(
    state: web::Data<AppState>,
    metrics: bool,
) -> impl Service<
    actix_http::Request,
    Response = ServiceResponse<impl MessageBody>,
    Error = actix_web::Error,
> {
    test::init_service(
        App::new()
            .configure(configure(state, metrics))
            .default_service(web::to(not_found))
            .wrap(from_fn(observe)),
    )
    .await
}

/// Sends a GET with an optional bearer token and extra headers; returns status, headers, body.
pub async fn get(
    app: &impl Service<
        actix_http::Request,
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
    >,
    uri: &str,
    bearer: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, actix_web::http::header::HeaderMap, Vec<u8>) {
    let mut req = test::TestRequest::get().uri(uri);
    if let Some(t) = bearer {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let resp = test::call_service(app, req.to_request()).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = test::read_body(resp).await.to_vec();
    (status, headers, body)
}

/// Parses a JSON body, showing it when it is not JSON.
pub fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

pub fn token_with(claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

pub fn claims(sub: &str) -> Value {
    let now = Utc::now().timestamp();
    json!({"sub": sub, "iss": "https://idp.test", "aud": "usage-gateway", "exp": now + 600, "nbf": now - 1, "scope": "usage:read other"})
}

/// The same token with one signature character changed (the first, which carries six whole
/// bits of the signature).
pub fn forge_signature(token: &str) -> String {
    let dot = token.rfind('.').unwrap();
    let first = &token[dot + 1..dot + 2];
    format!(
        "{}.{}{}",
        &token[..dot],
        if first == "A" { "B" } else { "A" },
        &token[dot + 2..]
    )
}

pub fn token(sub: &str) -> String {
    token_with(claims(sub))
}

pub fn team_token(team: &str) -> String {
    let mut c = claims("svc");
    c["team"] = json!(team);
    token_with(c)
}

pub const RANGE: &str = "start=2026-10-01T00:00:00Z&end=2026-10-05T00:00:00Z";

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    /// Returns everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Makes `subscriber` this thread's default while the returned guards live.
///
/// An idle second dispatcher is registered first: with exactly one scoped dispatcher,
/// tracing-core decides a callsite's interest from the thread that hits it first, so a callsite
/// first hit by another test's thread would stay disabled for good and this test would miss
/// those lines. With two, every registration consults both.
pub fn scoped_subscriber(
    subscriber: impl tracing::Subscriber + Send + Sync + 'static,
) -> (tracing::Dispatch, tracing::subscriber::DefaultGuard) {
    let idle = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let guard = tracing::subscriber::set_default(subscriber);
    (idle, guard)
}

/// Stamps each async property `fn(usage_store::testing::Engine)` as one test per store engine,
/// in modules `sqlite` and `postgres` (the PostgreSQL ones skip without a test database, except
/// in CI).
macro_rules! on_both_engines {
    ($($property:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[actix_web::test]
                async fn $property() {
                    super::$property(usage_store::testing::Engine::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[actix_web::test]
                async fn $property() {
                    super::$property(usage_store::testing::Engine::Postgres).await;
                }
            )*
        }
    };
}
pub(crate) use on_both_engines;

/// `GET {base}/v1/usage?{query}` with `token`, expecting 200; the JSON body.
pub async fn usage_json(base: &str, token: &str, query: &str) -> Value {
    let resp = reqwest::Client::new()
        .get(format!("{base}/v1/usage?{query}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{query}");
    resp.json().await.unwrap()
}

/// The counters of a usage row or totals entry.
pub fn counters_of(row: &Value) -> usage_core::Counters {
    usage_core::Counters {
        input: row["input_tokens"].as_u64().unwrap(),
        output: row["output_tokens"].as_u64().unwrap(),
        other: row["other_tokens"].as_u64().unwrap(),
    }
}

/// Simulators over `spec`, DigitalOcean's and Anthropic's without their per-minute limits
/// (for tests that fill a store or run several gateways on one simulator).
pub async fn sims_without_do_limit(spec: &usage_sim::DataSpec) -> usage_sim::Simulators {
    let mut sims = usage_sim::start_all_with(
        spec,
        usage_sim::DoOptions {
            rate_limit_per_minute: 0,
        },
    )
    .await
    .unwrap();
    sims.restart_anthropic(usage_sim::AnthropicOptions {
        rate_limit_per_minute: 0,
        ..usage_sim::AnthropicOptions::default()
    })
    .await
    .unwrap();
    sims
}
