//! Operations: request ids, problem `instance`, Prometheus metrics.

use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;
use usage_core::ProviderError;
use usage_core::test_util::StaticProvider;
use usage_gateway::fetch::SourceSpec;
use usage_gateway::resilience::ResilienceConfig;

use crate::common::{RANGE, app, config_text, get, harness, harness_with, json_of, token};

fn series_value(text: &str, name: &str, must_contain: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && must_contain.iter().all(|m| l.contains(m)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `GET /metrics` (no token: it is not under `/v1`): the Prometheus text, after checking the
/// status and content type.
async fn scrape(
    app: &impl Service<
        actix_http::Request,
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
    >,
) -> String {
    let (status, headers, body) = get(app, "/metrics", None, &[]).await;
    assert_eq!(status, 200);
    assert!(
        headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    String::from_utf8(body).unwrap()
}

#[actix_web::test]
async fn request_ids_are_kept_or_made_and_named_in_problems() {
    let h = harness("2s");
    let app = app(&h).await;
    let resp = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/v1/usage")
            .insert_header(("x-request-id", "abc-123.x"))
            .to_request(),
    )
    .await;
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers().get("x-request-id").unwrap(), "abc-123.x");
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/problem+json"
    );
    assert!(resp.headers().get("www-authenticate").is_some());
    let body: serde_json::Value = test::read_body_json(resp).await;
    assert_eq!(body["instance"], "urn:request-id:abc-123.x");
    for bad in ["has space", "a<script>", &"a".repeat(200)] {
        let req = test::TestRequest::get()
            .uri("/healthz")
            .insert_header(("x-request-id", bad))
            .to_request();
        let resp = test::call_service(&app, req).await;
        let id = resp
            .headers()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap();
        assert_ne!(id, bad);
        assert_eq!(id.len(), 36, "a generated uuid replaces `{bad}`");
    }
    let resp =
        test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
    assert!(resp.headers().get("x-request-id").is_some());
}

#[actix_web::test]
async fn metrics_series_move() {
    let h = harness("2s");
    let app = app(&h).await;
    let before = scrape(&app).await;
    let req = test::TestRequest::get()
        .uri(&format!("/v1/usage?{RANGE}&bucket=day"))
        .insert_header(("Authorization", format!("Bearer {}", token("admin"))))
        .to_request();
    assert_eq!(test::call_service(&app, req).await.status(), 200);
    let after = scrape(&app).await;
    let route = ["route=\"/v1/usage\"", "status=\"200\""];
    assert!(
        series_value(&after, "usage_gateway_http_requests_total", &route)
            >= series_value(&before, "usage_gateway_http_requests_total", &route) + 1.0,
        "{after}"
    );
    assert!(after.contains("usage_gateway_http_request_duration_seconds_bucket"));
    // Other tests share the process-wide registry and the source names: compare before/after.
    let alpha_ok = ["source=\"alpha\"", "outcome=\"ok\""];
    assert!(
        series_value(&after, "usage_gateway_upstream_calls_total", &alpha_ok)
            >= series_value(&before, "usage_gateway_upstream_calls_total", &alpha_ok) + 1.0,
        "{after}"
    );
    let alpha = ["source=\"alpha\""];
    assert!(
        series_value(&after, "usage_gateway_upstream_requests_total", &alpha)
            >= series_value(&before, "usage_gateway_upstream_requests_total", &alpha) + 1.0,
        "{after}"
    );
    assert!(after.contains("usage_gateway_upstream_call_duration_seconds_bucket"));
    assert!(
        series_value(
            &after,
            "usage_gateway_cache_lookups_total",
            &["result=\"miss\""]
        ) >= series_value(
            &before,
            "usage_gateway_cache_lookups_total",
            &["result=\"miss\""]
        ) + 4.0
    );
    assert!(after.contains("usage_gateway_cache_entries{cache=\"windows\"}"));
    assert!(after.contains("usage_gateway_cache_weighted_bytes{cache=\"windows\"}"));
    assert!(after.contains("usage_gateway_http_requests_in_flight"));
}

/// The value of one exact series line (`name{labels}`), if the scrape has it.
fn gauge(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The circuit state a scrape shows for `source`: the one `state` label whose
/// `usage_gateway_circuit_state` series is 1, after checking that each of the three states has
/// a series and the other two are 0.
fn circuit(text: &str, source: &str) -> &'static str {
    let values: Vec<(&'static str, Option<f64>)> = ["closed", "half_open", "open"]
        .into_iter()
        .map(|state| {
            let series =
                format!("usage_gateway_circuit_state{{source=\"{source}\",state=\"{state}\"}}");
            (state, gauge(text, &series))
        })
        .collect();
    let on: Vec<_> = values.iter().filter(|(_, v)| *v == Some(1.0)).collect();
    assert!(
        on.len() == 1
            && values
                .iter()
                .all(|(_, v)| *v == Some(0.0) || *v == Some(1.0)),
        "{source}: {values:?} in {text}"
    );
    on[0].0
}

#[actix_web::test]
async fn circuit_state_exists_from_start_up_and_follows_the_breaker() {
    // Its own source name: the registry is shared by every test of this process.
    let name = "ops-circuit";
    let flaky = Arc::new(StaticProvider::new(name).with_agents(&[("f1", "Flaky")]));
    let h = harness_with(
        &config_text("2s"),
        vec![SourceSpec {
            provider: flaky.clone(),
            resilience: ResilienceConfig {
                max_attempts: 1,
                breaker_failures: 1,
                breaker_cooldown: Duration::from_millis(400),
                ..ResilienceConfig::default()
            },
            rate_limit_per_minute: None,
        }],
    );
    let app = app(&h).await;
    let usage = || async {
        let req = test::TestRequest::get()
            .uri(&format!("/v1/usage?{RANGE}&source={name}"))
            .insert_header(("Authorization", format!("Bearer {}", token("admin"))))
            .to_request();
        test::call_service(&app, req).await.status().as_u16()
    };

    // Before any call: every source has the series, closed.
    let text = scrape(&app).await;
    assert_eq!(circuit(&text, name), "closed");
    for other in ["alpha", "beta"] {
        circuit(&text, other);
    }

    // One vendor fault opens the circuit (breaker_failures = 1).
    flaky.set_failure(Some(ProviderError::Upstream {
        source_name: name.into(),
        status: 503,
        message: "down".into(),
    }));
    assert_eq!(usage().await, 502);
    assert_eq!(circuit(&scrape(&app).await, name), "open");

    // After the cool-down the scrape shows half-open before any probe is sent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = flaky.calls();
    assert_eq!(circuit(&scrape(&app).await, name), "half_open");
    assert_eq!(flaky.calls(), calls, "a scrape never probes");

    // A successful probe closes it again.
    flaky.set_failure(None);
    assert_eq!(usage().await, 200);
    assert_eq!(circuit(&scrape(&app).await, name), "closed");
}

/// What `promtool check metrics` would object to in a scrape, and the naming rules of this
/// gateway: every family has `# HELP` and `# TYPE`; it is the gateway's own
/// (`usage_gateway_`) or a standard process metric (`process_`); counters and only counters
/// end in `_total`.
fn exposition_findings(text: &str) -> Vec<String> {
    use std::collections::BTreeMap;
    let mut help = std::collections::BTreeSet::new();
    let mut kinds = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split(' ');
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("#"), Some("HELP"), Some(name), Some(_)) => {
                help.insert(name.to_owned());
            }
            (Some("#"), Some("TYPE"), Some(name), Some(kind)) => {
                kinds.insert(name.to_owned(), kind.to_owned());
            }
            _ => {}
        }
    }
    let mut findings = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                (kinds.get(base).map(String::as_str) == Some("histogram")).then_some(base)
            })
            .unwrap_or(name);
        if !seen.insert(family.to_owned()) {
            continue;
        }
        if !help.contains(family) {
            findings.push(format!("{family}: no HELP"));
        }
        match kinds.get(family).map(String::as_str) {
            None => findings.push(format!("{family}: no TYPE")),
            Some("counter") if !family.ends_with("_total") => {
                findings.push(format!("{family}: a counter without `_total`"));
            }
            Some(kind) if kind != "counter" && family.ends_with("_total") => {
                findings.push(format!("{family}: a {kind} named `_total`"));
            }
            _ => {}
        }
        if !family.starts_with("usage_gateway_") && !family.starts_with("process_") {
            findings.push(format!("{family}: neither `usage_gateway_` nor `process_`"));
        }
    }
    findings
}

#[actix_web::test]
async fn every_family_has_help_and_the_gateway_prefix() {
    let h = harness("2s");
    let app = app(&h).await;
    let (status, ..) = get(
        &app,
        &format!("/v1/usage?{RANGE}"),
        Some(&token("admin")),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let text = scrape(&app).await;
    assert_eq!(exposition_findings(&text), Vec::<String>::new(), "{text}");
    // The checker sees what it must: an unprefixed family without HELP is a finding.
    assert_eq!(
        exposition_findings("# TYPE circuit_state gauge\ncircuit_state{source=\"a\"} 0\n"),
        [
            "circuit_state: no HELP",
            "circuit_state: neither `usage_gateway_` nor `process_`"
        ]
    );
    for family in [
        "usage_gateway_http_requests_total",
        "usage_gateway_upstream_calls_total",
        "usage_gateway_circuit_state",
        "usage_gateway_cache_lookups_total",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family}: {text}"
        );
    }
    let build = format!(
        "usage_gateway_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(gauge(&text, &build), Some(1.0), "{text}");
}

#[actix_web::test]
async fn upstream_requests_count_failed_attempts_and_agent_listings_too() {
    // Its own source name: the registry is shared by every test of this process.
    let name = "ops-requests";
    let source = Arc::new(StaticProvider::new(name).with_agents(&[("r1", "Requests")]));
    let h = harness_with(
        &config_text("2s"),
        vec![SourceSpec {
            provider: source.clone(),
            resilience: ResilienceConfig {
                max_attempts: 2,
                min_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(2),
                breaker_failures: 100,
                ..ResilienceConfig::default()
            },
            rate_limit_per_minute: None,
        }],
    );
    let app = app(&h).await;
    let requests = || async {
        let text = scrape(&app).await;
        let of = |outcome: &str| {
            series_value(
                &text,
                "usage_gateway_upstream_requests_total",
                &[
                    &format!("source=\"{name}\""),
                    &format!("outcome=\"{outcome}\""),
                ],
            )
        };
        (of("ok"), of("upstream_error"))
    };
    let admin = token("admin");
    let status_of = |uri: String| {
        let (app, admin) = (&app, &admin);
        async move { get(app, &uri, Some(admin), &[]).await.0 }
    };
    assert_eq!(requests().await, (0.0, 0.0));

    // A transient fault, tried twice: both requests count, under the failure's outcome.
    source.set_failure(Some(ProviderError::Upstream {
        source_name: name.into(),
        status: 503,
        message: "down".into(),
    }));
    assert_eq!(
        status_of(format!("/v1/usage?{RANGE}&source={name}")).await,
        502
    );
    assert_eq!(source.calls(), 2);
    assert_eq!(requests().await, (0.0, 2.0));

    // An answered call counts its request as `ok`.
    source.set_failure(None);
    assert_eq!(
        status_of(format!("/v1/usage?{RANGE}&source={name}")).await,
        200
    );
    assert_eq!(requests().await, (1.0, 2.0));

    // So does listing the agents.
    assert_eq!(status_of(format!("/v1/agents?source={name}")).await, 200);
    assert_eq!(requests().await, (2.0, 2.0));
}

#[actix_web::test]
async fn a_call_cut_off_by_the_deadline_still_counts_its_requests() {
    let name = "ops-cancelled";
    let slow = Arc::new(StaticProvider::new(name).with_agents(&[("s1", "Slow")]));
    slow.set_latency(Duration::from_secs(5));
    let h = harness_with(
        &config_text("300ms"),
        vec![SourceSpec {
            provider: slow.clone(),
            resilience: ResilienceConfig::default(),
            rate_limit_per_minute: None,
        }],
    );
    let app = app(&h).await;
    let uri = format!("/v1/agents?source={name}");
    let (status, _, body) = get(&app, &uri, Some(&token("admin")), &[]).await;
    assert_eq!(status, 200);
    let body = json_of(&body);
    assert_eq!(body["sources"][0]["status"], "timeout", "{body}");
    let text = scrape(&app).await;
    let cancelled = [
        &format!("source=\"{name}\"") as &str,
        "outcome=\"cancelled\"",
    ];
    // The attempt's one request, and the attempt itself.
    assert_eq!(
        (
            series_value(&text, "usage_gateway_upstream_requests_total", &cancelled),
            series_value(&text, "usage_gateway_upstream_calls_total", &cancelled)
        ),
        (1.0, 1.0),
        "{text}"
    );
}

#[actix_web::test]
async fn one_json_line_per_request_and_per_upstream_call_with_the_request_id() {
    let logs = crate::common::Captured::default();
    // The binary's own `--log-format json` subscriber.
    let subscriber = usage_gateway::logsink::json_subscriber(logs.clone());
    let _guard = crate::common::scoped_subscriber(subscriber);
    let h = harness("2s");
    let app = app(&h).await;
    let t = token("admin");
    let req = test::TestRequest::get()
        .uri(&format!("/v1/usage?{RANGE}&bucket=day"))
        .insert_header(("Authorization", format!("Bearer {t}")))
        .insert_header(("x-request-id", "log-test-1"))
        .to_request();
    assert_eq!(test::call_service(&app, req).await.status(), 200);
    let lines: Vec<serde_json::Value> = logs
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let request: Vec<_> = lines.iter().filter(|l| l["message"] == "request").collect();
    assert_eq!(request.len(), 1, "{lines:#?}");
    let r = request[0];
    assert_eq!(r["route"], "/v1/usage");
    assert_eq!(r["status"], 200);
    assert_eq!(r["sub"], "admin");
    assert!(r["latency_ms"].is_number());
    assert_eq!(r["level"], "INFO");
    assert!(
        chrono::DateTime::parse_from_rfc3339(r["timestamp"].as_str().unwrap()).is_ok(),
        "{r}"
    );
    assert_eq!(r["request_id"], "log-test-1");
    assert!(r.get("span").is_none(), "the access line stands alone: {r}");
    let upstream: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "upstream call")
        .collect();
    assert_eq!(upstream.len(), 2, "one per source: {lines:#?}");
    for u in upstream {
        assert_eq!(u["outcome"], "ok");
        assert_eq!(u["attempt"], 1);
        assert!(u["duration_ms"].is_number());
        assert_eq!(
            u["span"]["request_id"], "log-test-1",
            "upstream lines carry the request id"
        );
    }
    // The same request again is a remembered cache hit, answered ahead of routing: its line
    // has the same fields.
    let req = test::TestRequest::get()
        .uri(&format!("/v1/usage?{RANGE}&bucket=day"))
        .insert_header(("Authorization", format!("Bearer {t}")))
        .insert_header(("x-request-id", "log-test-2"))
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers().get("x-request-id").unwrap(), "log-test-2");
    let lines: Vec<serde_json::Value> = logs
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let again: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "request" && l["request_id"] == "log-test-2")
        .collect();
    assert_eq!(again.len(), 1, "{lines:#?}");
    let mut fields: Vec<&String> = again[0].as_object().unwrap().keys().collect();
    let mut first: Vec<&String> = r.as_object().unwrap().keys().collect();
    fields.sort();
    first.sort();
    assert_eq!(fields, first, "a cache hit logs the same fields");
    assert_eq!(again[0]["sub"], "admin");
    assert_eq!(again[0]["route"], "/v1/usage");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["message"] == "upstream call")
            .count(),
        2,
        "no upstream call for the hit"
    );
    assert!(!logs.text().contains(&t), "the token is never logged");
}

/// Runs `usage-gateway check-config` on `text` written to a scratch file.
fn check_config(name: &str, text: &str) -> std::process::Output {
    let path = scratch_config(&format!("check-config-{name}"), text);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_usage-gateway"))
        .arg("check-config")
        .arg(&path)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    out
}

#[actix_web::test]
async fn check_config_exits_2_and_names_the_key_path() {
    let good = r#"
[server]
listen = "127.0.0.1:0"
[auth]
algorithms = ["HS256"]
hs256_secret = "0123456789abcdef0123456789abcdef-cli"
[[access]]
claim = "sub"
value = "alice"
sources = ["*"]
[[sources]]
name = "do"
provider = "digitalocean"
token = "cli-test-token"
"#;
    let out = check_config("good", good);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (1 sources"));
    for (name, bad, key) in [
        (
            "unknown-key",
            good.replace("listen =", "listenn ="),
            "server.listenn",
        ),
        (
            "leeway",
            good.replace("[auth]\n", "[auth]\nleeway = \"90s\"\n"),
            "auth.leeway",
        ),
        (
            "provider",
            good.replace("\"digitalocean\"", "\"nope\""),
            "sources[0].provider",
        ),
    ] {
        let out = check_config(name, &bad);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(key),
            "{name}: `{key}` not named in: {stderr}"
        );
    }
}

/// Writes `text` to a scratch config file named after the test and `name`.
fn scratch_config(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "usage-gateway-ops-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn a_fresh_process_shows_retries_and_jwks_refreshes_at_zero() {
    // A process of its own: this test binary's registry has seen retries and JWKS fetches.
    let path = scratch_config(
        "zero",
        r#"
[server]
listen = "127.0.0.1:0"
[auth]
algorithms = ["HS256", "RS256"]
hs256_secret = "0123456789abcdef0123456789abcdef-zero"
jwks_url = "http://127.0.0.1:9/jwks.json"
[[access]]
claim = "sub"
value = "admin"
sources = ["*"]
[[sources]]
name = "do-zero"
provider = "digitalocean"
base_url = "http://127.0.0.1:9"
token = "zero-test-token"
"#,
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_usage-gateway"))
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the gateway logs its address");
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
            && v["message"] == "usage-gateway listening"
        {
            break v["addr"].as_str().unwrap().to_owned();
        }
    };
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_file(&path).unwrap();
    for series in [
        "usage_gateway_upstream_retries_total{source=\"do-zero\"}",
        "usage_gateway_jwks_refreshes_total{outcome=\"ok\"}",
        "usage_gateway_jwks_refreshes_total{outcome=\"error\"}",
    ] {
        assert_eq!(gauge(&text, series), Some(0.0), "{series}: {text}");
    }
    assert_eq!(exposition_findings(&text), Vec::<String>::new(), "{text}");
}

/// Runs `usage-gateway token --config <path> <args>` with `SECRET` set to `secret` (or unset).
fn mint(path: &std::path::Path, args: &[&str], secret: Option<&str>) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_usage-gateway"));
    cmd.arg("token")
        .arg("--config")
        .arg(path)
        .args(args)
        .env("RUST_LOG", "off")
        .env_remove("SECRET")
        .env_remove("OPS_UNSET_LISTEN")
        .env_remove("OPS_UNSET_TOKEN");
    if let Some(s) = secret {
        cmd.env("SECRET", s);
    }
    cmd.output().unwrap()
}

/// The claims of a token minted by the binary, verified with the test secret, issuer and
/// audience.
fn minted_claims(out: &std::process::Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout.clone()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.set_issuer(&["https://idp.test"]);
    v.set_audience(&["usage-gateway"]);
    jsonwebtoken::decode::<serde_json::Value>(
        token.trim(),
        &jsonwebtoken::DecodingKey::from_secret(crate::common::SECRET.as_bytes()),
        &v,
    )
    .unwrap()
    .claims
}

#[actix_web::test]
async fn token_mints_claims_and_scopes_from_the_auth_table_alone() {
    // The harness's config, with a `[server]` and a source that reference unset variables and
    // a provider that does not exist: only `[auth]` must be valid for `token`.
    let text = config_text("2s").replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"${OPS_UNSET_LISTEN}\"",
    ) + "[[sources]]\nname = \"x\"\nprovider = \"nope\"\ntoken = \"${OPS_UNSET_TOKEN}\"\n";
    let path = scratch_config("token", &text);
    let check = check_config("token-broken", &text);
    assert_eq!(
        check.status.code(),
        Some(2),
        "the file is broken outside [auth]"
    );
    let secret = Some(crate::common::SECRET);

    // Without extras: `sub` and the configured scope.
    let plain = minted_claims(&mint(&path, &["--sub", "svc"], secret));
    assert_eq!(plain["sub"], "svc");
    assert_eq!(plain["scope"], "usage:read");

    // Claims are strings; a repeated key is an array; scopes are space-joined.
    let claims = minted_claims(&mint(
        &path,
        &[
            "--sub",
            "svc",
            "--claim",
            "team=ops",
            "--claim",
            "level=3",
            "--claim",
            "team=cx",
            "--claim",
            "note=a=b",
            "--scope",
            "usage:read",
            "--scope",
            "extra",
        ],
        secret,
    ));
    assert_eq!(claims["team"], serde_json::json!(["ops", "cx"]));
    assert_eq!(claims["level"], "3");
    assert_eq!(claims["note"], "a=b");
    assert_eq!(claims["scope"], "usage:read extra");

    // The gateway applies the access rules to them: team ops sees beta only, ops and cx both.
    let h = harness("2s");
    let app = app(&h).await;
    let sources = |args: &'static [&'static str]| {
        let out = mint(&path, args, secret);
        let app = &app;
        async move {
            let token = String::from_utf8(out.stdout).unwrap();
            let (status, _, body) = get(app, "/v1/sources", Some(token.trim()), &[]).await;
            let names: Vec<String> = json_of(&body)["sources"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| s["source"].as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            (status, names)
        }
    };
    assert_eq!(
        sources(&["--sub", "svc", "--claim", "team=ops"]).await,
        (200, vec!["beta".to_owned()])
    );
    assert_eq!(
        sources(&["--sub", "svc", "--claim", "team=ops", "--claim", "team=cx"]).await,
        (200, vec!["alpha".to_owned(), "beta".to_owned()])
    );
    // Without the required scope the token is refused.
    assert_eq!(
        sources(&["--sub", "admin", "--scope", "other"]).await.0,
        403
    );

    // Reserved claims are refused, naming the claim.
    for reserved in ["sub", "scope", "iss", "aud", "exp", "iat", "nbf"] {
        let arg = format!("{reserved}=x");
        let out = mint(&path, &["--sub", "svc", "--claim", &arg], secret);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{reserved}: {stderr}");
        assert!(
            stderr.contains(&format!("`{reserved}`")),
            "{reserved}: {stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    // A claim without `=` is a usage error.
    let out = mint(&path, &["--sub", "svc", "--claim", "team"], secret);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("key=value"));

    // A broken `[auth]` still fails, naming its key.
    let out = mint(&path, &["--sub", "svc"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("auth.hs256_secret"), "{stderr}");
    assert!(!stderr.contains("server.listen"), "{stderr}");
    std::fs::remove_file(&path).unwrap();
}
