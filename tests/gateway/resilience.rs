//! Resilience against the simulators: retries honouring Retry-After, stale-if-error and its
//! window, the circuit breaker (visible in /v1/sources, also around /v1/agents), the request
//! deadline with a hanging source, vendor budgets under a burst, body caps and redirects.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{Duration as CDuration, DurationRound, Utc};
use futures::StreamExt;
use serde_json::Value;
use usage_gateway::auth::mint_dev_token;
use usage_gateway::config::Config;
use usage_gateway::registry::build_providers;
use usage_gateway::state::AppState;
use usage_sim::DataSpec;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

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
breaker_cooldown = "1500ms"
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

/// Builds a config from the `[server]` and `[cache]` keys and whole `[[sources]]` tables.
fn config_of(server: &str, cache: &str, sources: &str) -> Config {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
{server}
[auth]
algorithms = ["HS256"]
hs256_secret = "resilience-secret-0123456789abcdef0123"
[cache]
{cache}
[[access]]
claim = "sub"
value = "t"
sources = ["*"]
{sources}
"#
    );
    Config::parse(&text, &|_| None).unwrap()
}

/// A `[[sources]]` table of the DigitalOcean simulator named `do`, plus `extra` keys.
fn do_source(url: &str, extra: &str) -> String {
    format!(
        r#"
[[sources]]
name = "do"
provider = "digitalocean"
base_url = "{url}"
token = "{token}"
{extra}
"#,
        token = usage_sim::DO_TOKEN
    )
}

/// A `[[sources]]` table of the Kibana simulator named `kb`.
fn kibana_source(url: &str) -> String {
    format!(
        r#"
[[sources]]
name = "kb"
provider = "kibana"
base_url = "{url}"
api_key = "{key}"
"#,
        key = usage_sim::KIBANA_API_KEY
    )
}

/// Returns the `sources[]` entry of `name`.
fn source<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["sources"]
        .as_array()
        .and_then(|s| s.iter().find(|e| e["source"] == name))
        .unwrap_or_else(|| panic!("no source {name} in {v:#}"))
}

async fn get(gw: &Gw, uri: &str) -> (u16, Value) {
    get_with(&reqwest::Client::new(), gw, uri).await
}

async fn get_with(client: &reqwest::Client, gw: &Gw, uri: &str) -> (u16, Value) {
    let resp = client
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
    tokio::time::sleep(Duration::from_millis(1600)).await;
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
            .any(|l| l.starts_with("usage_gateway_upstream_retries_total{source=\"do\"}")),
        "{metrics}"
    );
    assert!(
        metrics.contains("usage_gateway_circuit_state{source=\"do\",state=\"closed\"} 1"),
        "{metrics}"
    );

    // Without any cached data a failing vendor is an error (502 with one source).
    do_sim.faults().set_error_rate(1.0);
    let (s, v) = get(&gw, "/v1/usage?start=2025-01-01&end=2025-01-02").await;
    assert_eq!(s, 502, "{v:#}");
    // Decode errors are not retried (and do not open the circuit).
    do_sim.faults().clear();
    tokio::time::sleep(Duration::from_millis(1600)).await;
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

/// Answers the first request 429 with `Retry-After: 1`, every later one with empty usage, and
/// records when each request arrived.
struct ThrottledOnce {
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Respond for ThrottledOnce {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut arrivals = self.arrivals.lock().unwrap();
        arrivals.push(Instant::now());
        if arrivals.len() == 1 {
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_string(
                    r#"{"id":"too_many_requests","message":"API Rate limit exceeded."}"#,
                )
        } else {
            ResponseTemplate::new(200).set_body_string(r#"{"usage": {"measurements": []}}"#)
        }
    }
}

#[actix_web::test]
async fn the_retry_after_a_429_reaches_the_vendor_no_sooner_than_retry_after() {
    let vendor = MockServer::start().await;
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("GET"))
        .and(path_regex("^/v2/gen-ai/agents/a1/usage$"))
        .respond_with(ThrottledOnce {
            arrivals: arrivals.clone(),
        })
        .mount(&vendor)
        .await;
    let gw = start(config(&vendor.uri(), "agents = [\"a1\"]"));
    let (s, v) = get(&gw, "/v1/usage?start=2025-01-01&end=2025-01-02").await;
    assert_eq!(s, 200, "{v:#}");
    assert_eq!(v["sources"][0]["status"], "ok", "{v:#}");
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 2, "one 429, one retry");
    let gap = arrivals[1] - arrivals[0];
    assert!(
        gap >= Duration::from_secs(1),
        "the retry reached the vendor {gap:?} after the 429"
    );
}

#[actix_web::test]
async fn stale_entries_are_not_served_past_their_window() {
    let sims = usage_sim::start_all(&DataSpec::small(Utc::now()))
        .await
        .unwrap();
    let do_sim = &sims.digitalocean;
    let gw = start(config_of(
        "request_timeout = \"5s\"",
        "open_ttl = \"1s\"\nclosed_ttl = \"1s\"\nstale_if_error = \"1s\"",
        &do_source(&do_sim.base_url, "max_attempts = 1\nbreaker_failures = 100"),
    ));
    let (s, v) = get(&gw, &range()).await;
    assert_eq!(s, 200, "{v:#}");
    assert_eq!(v["sources"][0]["status"], "ok", "{v:#}");
    let warmed = Instant::now();

    // Expired (1 s) but inside the stale window (1 s more): served stale.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    do_sim.faults().set_error_rate(1.0);
    let (s, v) = get(&gw, &range()).await;
    assert_eq!(s, 200, "{v:#}");
    assert_eq!(v["sources"][0]["status"], "stale", "{v:#}");

    // Past open_ttl + stale_if_error: nothing stale is left to serve.
    tokio::time::sleep(Duration::from_millis(2300).saturating_sub(warmed.elapsed())).await;
    let (s, v) = get(&gw, &range()).await;
    assert_eq!(s, 502, "{v:#}");
    assert_eq!(v["sources"][0]["status"], "error", "{v:#}");
    assert_eq!(
        v["sources"][0]["error"]["type"],
        "urn:usage-gateway:problem:upstream_error"
    );
}

#[actix_web::test]
async fn five_failures_open_the_default_breaker_and_the_next_request_sends_nothing() {
    let sims = usage_sim::start_all(&DataSpec::small(Utc::now()))
        .await
        .unwrap();
    let do_sim = &sims.digitalocean;
    // Default breaker_failures (5) and cool-down (30s); one attempt per request, so each failing
    // request is one failing call. Agents are discovered, so /v1/agents reaches the vendor too.
    let gw = start(config_of(
        "request_timeout = \"5s\"",
        "",
        &do_source(&do_sim.base_url, "max_attempts = 1"),
    ));
    do_sim.faults().set_error_rate(1.0);
    for day in 1..=5 {
        let (s, v) = get(
            &gw,
            &format!("/v1/usage?start=2025-01-0{day}&end=2025-01-0{}", day + 1),
        )
        .await;
        assert_eq!(s, 502, "{v:#}");
        assert_eq!(
            v["sources"][0]["error"]["type"], "urn:usage-gateway:problem:upstream_error",
            "failure {day}: {v:#}"
        );
        let (_, sources) = get(&gw, "/v1/sources").await;
        let expected = if day < 5 { "closed" } else { "open" };
        assert_eq!(sources["sources"][0]["circuit"], expected, "after {day}");
    }
    let sent = do_sim.total_calls();
    let (s, v) = get(&gw, "/v1/usage?start=2025-01-07&end=2025-01-08").await;
    assert_eq!(s, 502, "{v:#}");
    assert_eq!(
        v["sources"][0]["error"]["type"],
        "urn:usage-gateway:problem:circuit_open"
    );
    assert!(v["sources"][0]["error"]["retry_after"].as_u64().unwrap() >= 1);
    // /v1/agents passes the same breaker.
    let (s, v) = get(&gw, "/v1/agents").await;
    assert_eq!(s, 200, "{v:#}");
    assert_eq!(
        v["sources"][0]["error"]["type"], "urn:usage-gateway:problem:circuit_open",
        "{v:#}"
    );
    assert_eq!(do_sim.total_calls(), sent, "an open circuit sends nothing");
}

#[actix_web::test]
async fn a_hanging_source_is_a_timeout_within_the_deadline() {
    let sims = usage_sim::start_all(&DataSpec::small(Utc::now()))
        .await
        .unwrap();
    let gw = start(config_of(
        "request_timeout = \"1s\"",
        "",
        &format!(
            "{}{}",
            do_source(&sims.digitalocean.base_url, ""),
            kibana_source(&sims.kibana.base_url)
        ),
    ));
    sims.kibana.faults().set_hang(true);
    let started = Instant::now();
    let (s, v) = get(&gw, &range()).await;
    let took = started.elapsed();
    sims.kibana.faults().set_hang(false);
    assert_eq!(s, 200, "{v:#}");
    assert_eq!(source(&v, "kb")["status"], "timeout", "{v:#}");
    assert_eq!(source(&v, "do")["status"], "ok", "{v:#}");
    assert!(v["rows"].as_array().is_some_and(|r| !r.is_empty()), "{v:#}");
    // The hanging source would never answer: any answer soon after the deadline shows it was
    // not waited for (the slack absorbs a loaded CI machine's scheduling delays).
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(1500),
        "answered after {took:?} on a 1 s deadline"
    );
}

#[actix_web::test]
async fn a_burst_of_distinct_queries_stays_within_the_digitalocean_budget() {
    const BUDGET: u64 = 20;
    let sims = usage_sim::start_all(&DataSpec::small(Utc::now()))
        .await
        .unwrap();
    let do_sim = &sims.digitalocean;
    let agent = sims.data.digitalocean.agents()[0].uuid.clone();
    // One agent and one window per query: each query needs one DigitalOcean request. Kibana keeps
    // every answer a 200 when DigitalOcean is refused.
    let gw = start(config_of(
        "request_timeout = \"5s\"",
        "",
        &format!(
            "{}{}",
            do_source(
                &do_sim.base_url,
                &format!("agents = [\"{agent}\"]\nrate_limit_per_minute = {BUDGET}")
            ),
            kibana_source(&sims.kibana.base_url)
        ),
    ));
    let day = Utc::now().duration_trunc(CDuration::days(1)).unwrap() - CDuration::days(2);
    let client = reqwest::Client::new();
    let started = Instant::now();
    let answers: Vec<(u16, Value)> = futures::stream::iter(0..1000)
        .map(|i| {
            let start = (day + CDuration::seconds(i)).format("%Y-%m-%dT%H:%M:%SZ");
            let end = (day + CDuration::days(1)).format("%Y-%m-%dT%H:%M:%SZ");
            let (client, gw) = (&client, &gw);
            async move { get_with(client, gw, &format!("/v1/usage?start={start}&end={end}")).await }
        })
        .buffer_unordered(250)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let (mut ok, mut limited) = (0, 0);
    for (s, v) in &answers {
        assert_eq!(*s, 200, "{v:#}");
        let src = source(v, "do");
        match src["status"].as_str() {
            Some("ok") => ok += 1,
            Some("stale") => {}
            Some("error") => {
                assert_eq!(
                    src["error"]["type"], "urn:usage-gateway:problem:rate_limited",
                    "{v:#}"
                );
                assert!(
                    src["error"]["retry_after"].as_u64().is_some_and(|s| s >= 1),
                    "{v:#}"
                );
                limited += 1;
            }
            other => panic!("do answered {other:?}: {v:#}"),
        }
    }
    // The whole minute's budget is a burst; one more request every 60/BUDGET seconds after it.
    let refilled = (elapsed.as_secs_f64() * BUDGET as f64 / 60.0).ceil() as u64;
    let sent = do_sim.calls("do.usage");
    assert!(
        sent <= BUDGET + refilled,
        "{sent} DigitalOcean requests in {elapsed:?} with a budget of {BUDGET}/min"
    );
    assert!(ok >= 1 && limited >= 1, "{ok} ok, {limited} rate limited");
    assert_eq!(ok, sent, "every request sent answered a query");
}

#[actix_web::test]
async fn kibana_and_chatbotkit_requests_pass_their_source_budget() {
    let sims = usage_sim::start_all(&DataSpec::small(Utc::now()))
        .await
        .unwrap();
    // A budget of one vendor request per minute: discovery takes it, so the per-agent requests
    // that follow are refused locally, before they reach the vendor.
    let budget = "rate_limit_per_minute = 1\nmax_attempts = 1";
    let gw = start(config_of(
        "request_timeout = \"5s\"",
        "",
        &format!(
            "{}{budget}\n\n[[sources]]\nname = \"cbk\"\nprovider = \"chatbotkit\"\nbase_url = \"{}\"\ntoken = \"{}\"\n{budget}\n",
            kibana_source(&sims.kibana.base_url),
            sims.chatbotkit.base_url,
            usage_sim::CBK_TOKEN
        ),
    ));
    let (s, v) = get(&gw, &range()).await;
    assert_eq!(s, 502, "{v:#}");
    for name in ["kb", "cbk"] {
        let src = source(&v, name);
        assert_eq!(src["status"], "error", "{v:#}");
        assert_eq!(
            src["error"]["type"], "urn:usage-gateway:problem:rate_limited",
            "{v:#}"
        );
        assert!(src["error"]["retry_after"].as_u64().is_some_and(|s| s >= 1));
    }
    assert_eq!(sims.kibana.total_calls(), 1, "only the discovery was sent");
    assert_eq!(
        sims.chatbotkit.total_calls(),
        1,
        "only the discovery was sent"
    );
}
