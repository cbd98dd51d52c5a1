//! Resilience against the simulators: retries honouring Retry-After, stale-if-error, the circuit
//! breaker (visible in /v1/sources), body caps and redirects.

use std::time::Duration;

use chrono::{Duration as CDuration, DurationRound, Utc};
use serde_json::Value;
use usage_gateway::auth::mint_dev_token;
use usage_gateway::config::Config;
use usage_gateway::registry::build_providers;
use usage_gateway::state::AppState;
use usage_sim::DataSpec;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

struct Gw {
    base: String,
    token: String,
}

fn config(do_url: &str, extra_source_keys: &str) -> Config {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
request_timeout = "5s"
[auth]
algorithms = ["HS256"]
hs256_secret = "resilience-secret-0123456789abcdef0123"
[cache]
open_ttl = "1s"
closed_ttl = "1s"
stale_if_error = "1h"
[[access]]
claim = "sub"
value = "t"
sources = ["*"]
[[sources]]
name = "do"
provider = "digitalocean"
base_url = "{do_url}"
token = "{token}"
max_attempts = 3
retry_min_delay = "10ms"
retry_max_delay = "50ms"
breaker_failures = 2
breaker_cooldown = "600ms"
{extra_source_keys}
"#,
        token = usage_sim::DO_TOKEN
    );
    Config::parse(&text, &|_| None).unwrap()
}

fn start(config: Config) -> Gw {
    let token = mint_dev_token(&config.auth, "t", Utc::now().timestamp()).unwrap();
    let providers = build_providers(&config).unwrap();
    let state = AppState::new(config, providers).unwrap();
    let bound = usage_gateway::server::bind(state).unwrap();
    let base = format!("http://{}", bound.addr);
    actix_web::rt::spawn(bound.run());
    Gw { base, token }
}

async fn get(gw: &Gw, uri: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(format!("{}{uri}", gw.base))
        .bearer_auth(&gw.token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

fn range() -> String {
    let today = Utc::now().duration_trunc(CDuration::days(1)).unwrap();
    format!(
        "/v1/usage?start={}&end={}",
        (today - CDuration::days(3)).format("%Y-%m-%d"),
        today.format("%Y-%m-%d")
    )
}

#[actix_web::test]
async fn retries_after_429_and_serves_stale_when_the_vendor_fails() {
    let sims = usage_sim::start_all(&DataSpec::small(Utc::now()))
        .await
        .unwrap();
    let gw = start(config(&sims.digitalocean.base_url, ""));
    let do_sim = &sims.digitalocean;

    // A 429 with retry-after: 1 is retried after a second, within the deadline.
    do_sim.faults().force_next(1, 429);
    let started = std::time::Instant::now();
    let (s, v) = get(&gw, &range()).await;
    assert_eq!(s, 200, "{v:#}");
    assert_eq!(v["sources"][0]["status"], "ok", "{v:#}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After honoured"
    );
    let totals = v["totals"].clone();

    // Expired (open_ttl 1s) and the vendor now fails: served stale, with the failure and age.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    do_sim.faults().set_error_rate(1.0);
    let (s, v) = get(&gw, &range()).await;
    assert_eq!(s, 200, "{v:#}");
    let src = &v["sources"][0];
    assert_eq!(src["status"], "stale", "{v:#}");
    assert!(src["age_seconds"].as_u64().unwrap() >= 1);
    assert_eq!(
        src["error"]["type"],
        "urn:usage-gateway:problem:upstream_error"
    );
    assert_eq!(v["complete"], false);
    assert_eq!(
        v["totals"], totals,
        "the stale numbers are the last good ones"
    );

    // The repeated 5xx opened the circuit: answered at once, visible in /v1/sources.
    let (_, sources) = get(&gw, "/v1/sources").await;
    assert_eq!(sources["sources"][0]["circuit"], "open", "{sources:#}");
    let calls = do_sim.calls("do.usage");
    let (s, v) = get(&gw, &range()).await;
    assert_eq!(s, 200);
    assert_eq!(v["sources"][0]["status"], "stale");
    assert_eq!(
        v["sources"][0]["error"]["type"],
        "urn:usage-gateway:problem:circuit_open"
    );
    assert_eq!(
        do_sim.calls("do.usage"),
        calls,
        "an open circuit sends nothing"
    );

    // After the cool-down a probe goes through and closes the circuit.
    do_sim.faults().clear();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (_, sources) = get(&gw, "/v1/sources").await;
    assert_eq!(sources["sources"][0]["circuit"], "half_open");
    let (s, v) = get(&gw, &range()).await;
    assert_eq!(s, 200);
    assert_eq!(v["sources"][0]["status"], "ok", "{v:#}");
    let (_, sources) = get(&gw, "/v1/sources").await;
    assert_eq!(sources["sources"][0]["circuit"], "closed");
    let metrics = reqwest::get(format!("{}/metrics", gw.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("upstream_retries_total{source=\"do\"}")),
        "{metrics}"
    );
    assert!(
        metrics.contains("circuit_state{source=\"do\"} 0"),
        "{metrics}"
    );

    // Without any cached data a failing vendor is an error (502 with one source).
    do_sim.faults().set_error_rate(1.0);
    let (s, v) = get(&gw, "/v1/usage?start=2025-01-01&end=2025-01-02").await;
    assert_eq!(s, 502, "{v:#}");
    // Decode errors are not retried (and do not open the circuit).
    do_sim.faults().clear();
    tokio::time::sleep(Duration::from_millis(700)).await;
    do_sim.faults().set_malformed_json(true);
    let before = do_sim.calls("do.usage");
    let (_, v) = get(
        &gw,
        "/v1/usage?start=2025-02-01&end=2025-02-02&group_by=source",
    )
    .await;
    assert_eq!(v["sources"][0]["status"], "error");
    assert_eq!(
        v["sources"][0]["error"]["type"],
        "urn:usage-gateway:problem:upstream_decode"
    );
    let agents = sims.data.digitalocean.agents().len() as u64;
    let sent = do_sim.calls("do.usage") - before;
    assert!(
        sent >= 1 && sent <= agents,
        "one attempt only: {sent} calls for {agents} agents"
    );
}

#[actix_web::test]
async fn oversized_bodies_and_redirects_are_refused() {
    let vendor = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex("^/v2/gen-ai/agents/big/usage$"))
        .respond_with(ResponseTemplate::new(200).set_body_string(format!(
            r#"{{"usage": {{"measurements": [], "pad": "{}"}}}}"#,
            "x".repeat(4096)
        )))
        .mount(&vendor)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/v2/gen-ai/agents/moved/usage$"))
        .respond_with(ResponseTemplate::new(302).insert_header(
            "location",
            format!("{}/v2/gen-ai/agents/x/usage", elsewhere.uri()),
        ))
        .mount(&vendor)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&elsewhere)
        .await;
    let gw = start(config(
        &vendor.uri(),
        "agents = [\"big\", \"moved\"]\nmax_body_bytes = 2048",
    ));
    let (_, v) = get(&gw, "/v1/usage?start=2025-01-01&end=2025-01-02&agent=big").await;
    let detail = v["sources"][0]["error"]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(detail.contains("max_body_bytes"), "{v:#}");
    let (_, v) = get(&gw, "/v1/usage?start=2025-01-01&end=2025-01-02&agent=moved").await;
    assert_eq!(v["sources"][0]["status"], "error", "{v:#}");
}
